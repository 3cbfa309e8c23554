"""Tests for ``memo_pipeline.stage2.redaction`` (redaction tiers for memory text).

Covered:
- ``mask`` replaces each PII category with its placeholder (email, phone, payment card, national
  id, IPv4, IPv6), including mixed text;
- negatives: Luhn-invalid cards, invalid SSNs, version numbers, dates, prices, order ids, clock
  times and MAC addresses are left alone; numbers inside URLs are not phones;
- ``off`` returns the text unchanged; unknown tiers raise;
- ``strict`` drops a health (and other special-category) fact with a ``dropped_reason`` and keeps
  a neutral one, masked;
- idempotence: redacting masked text changes nothing;
- findings are sorted and non-overlapping, and offsets point at the matched text;
- on real spamassassin_ham lines (when shared/data is present; skipped otherwise) no e-mail
  address or ``+country`` phone number is left after ``mask``. Data is never printed: failures
  report only file id and line number.

Left out: precision/recall figures (``benchmarks/redaction_eval.py``), the sensitive-category
lexicon's coverage beyond a few phrases, throughput, and non-English text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memo_pipeline.stage2.redaction import (
    Finding,
    RedactionResult,
    detect,
    redact,
    sensitive_categories,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail dana.whitfield@example.com today.", "Mail [EMAIL] today."),
        ("Her office is (212) 555-0142.", "Her office is [PHONE]."),
        ("Call +353 87 555 0199 after six.", "Call [PHONE] after six."),
        ("London: +44 20 7946 0958", "London: [PHONE]"),
        ("Paid with 4111 1111 1111 1111.", "Paid with [CARD]."),
        ("Amex 3782 822463 10005 on file.", "Amex [CARD] on file."),
        ("Card 5555-5555-5555-4444 declined.", "Card [CARD] declined."),
        ("Her SSN is 536-90-4399.", "Her SSN is [NATIONAL_ID]."),
        ("SSN: 536904399 on the form.", "SSN: [NATIONAL_ID] on the form."),
        ("NINO AB 12 34 56 C on the payslip.", "NINO [NATIONAL_ID] on the payslip."),
        ("PPS number 1234567T.", "PPS number [NATIONAL_ID]."),
        ("His SIN is 123-456-782.", "His SIN is [NATIONAL_ID]."),
        ("Gateway 192.0.2.10 is down.", "Gateway [IP] is down."),
        ("Listens on 192.0.2.44:8443 now.", "Listens on [IP]:8443 now."),
        ("Host 2001:db8:85a3::8a2e:370:7334 replied.", "Host [IP] replied."),
        ("Full 2001:0db8:0000:0000:0000:ff00:0042:8329.", "Full [IP]."),
        ("Mapped ::ffff:192.0.2.128 seen.", "Mapped [IP] seen."),
    ],
)
def test_mask_each_category(text: str, expected: str) -> None:
    result = redact(text, "mask")
    assert result.text == expected
    assert result.dropped_reason is None
    assert result.findings


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111 1111 1111 1112 was rejected.",  # Luhn-invalid
        "Reference 1234 5678 9012 3456 is not a card.",
        "Invalid SSNs 666-12-3456 and 000-12-3456.",
        "Acme released version 2.4.18 on 2002-07-19.",
        "Upgrade to version 1.2.3.4 first.",
        "The contract runs from 01/07/2021 to 30/06/2024.",
        "Revenue grew from $1,234,567 to $2,345,678 in 2023.",
        "Order #12345678 shipped on 2024-03-05 at 14:32:10.",
        "Invoice INV-2023-000123 is overdue.",
        "ISBN 978-0-306-40615-7 and build 20020722.",
        "The population was 1,173,179 in 2016.",
        "MAC 00:1A:2B:3C:4D:5E and std::vector at 12:30:45.",
        "Netmask 255.255.255.248 on the router.",
        "See https://example.com/report?id=2125550142 for details.",
        "Ping @dana or admin@localhost on Slack.",
        "",
    ],
)
def test_mask_leaves_non_pii_alone(text: str) -> None:
    result = redact(text, "mask")
    assert result.text == text
    assert result.findings == ()


def test_mixed_text() -> None:
    text = (
        "Dana (dana@example.com, +1 212 555 0142) moved from 192.0.2.1 to 2001:db8::2; "
        "card 4111-1111-1111-1111, SSN 536-90-4399."
    )
    result = redact(text, "mask")
    assert result.text == (
        "Dana ([EMAIL], [PHONE]) moved from [IP] to [IP]; card [CARD], SSN [NATIONAL_ID]."
    )
    assert [f.category for f in result.findings] == [
        "email",
        "phone",
        "ip_address",
        "ip_address",
        "payment_card",
        "national_id",
    ]


def test_detect_offsets_sorted_and_non_overlapping() -> None:
    text = "Reach jo@example.org or (646) 555-0163 from 198.51.100.23."
    findings = detect(text)
    assert all(isinstance(f, Finding) for f in findings)
    assert [f.start for f in findings] == sorted(f.start for f in findings)
    for a, b in zip(findings, findings[1:], strict=False):
        assert a.end <= b.start
    for f in findings:
        assert text[f.start : f.end] == f.text


def test_default_region_reads_local_numbers() -> None:
    assert redact("Call 01 555 0123.", "mask", default_region="IE").text == "Call [PHONE]."
    assert redact("Call 01 555 0123.", "mask", default_region="US").text == "Call 01 555 0123."


@pytest.mark.parametrize(
    "text",
    ["Dana's e-mail is dana@example.com.", "Ana was diagnosed with diabetes.", "", "plain"],
)
def test_off_is_unchanged(text: str) -> None:
    assert redact(text, "off") == RedactionResult(text=text, findings=())


def test_unknown_tier_raises() -> None:
    with pytest.raises(ValueError):
        redact("x", "loud")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Ana was diagnosed with type 2 diabetes in 2019.", "sensitive: health"),
        ("Joe is a devout Catholic.", "sensitive: religion"),
        ("Jordan identifies as bisexual.", "sensitive: sexual_orientation"),
        ("Pat is a member of the Labour Party.", "sensitive: political_opinion"),
        ("Kwame is of Ghanaian descent.", "sensitive: ethnicity"),
        ("Dermot is a trade union member.", "sensitive: trade_union"),
        ("Frank has a criminal record.", "sensitive: criminal_record"),
        ("Kim (kim@example.com) is undergoing chemotherapy.", "sensitive: health"),
    ],
)
def test_strict_drops_sensitive_fact(text: str, reason: str) -> None:
    result = redact(text, "strict")
    assert result.text is None
    assert result.dropped_reason == reason
    assert any(f.category == reason.removeprefix("sensitive: ") for f in result.findings)


def test_strict_reports_every_category() -> None:
    result = redact("Zoe's genetic test at the Catholic hospital came back.", "strict")
    assert result.dropped_reason == "sensitive: religion, biometric_genetic"


@pytest.mark.parametrize(
    "text",
    [
        "Dana works at Acme as head of finance.",
        "Christian Meyer leads the Berlin sales team.",
        "The party for the product launch is on Friday.",
        "The economic depression of the 1930s is her research topic.",
        "Kim converted the report to PDF and disabled the old account.",
        "Tom's GPG key fingerprint is on the wiki.",
    ],
)
def test_strict_keeps_neutral_fact(text: str) -> None:
    assert sensitive_categories(text) == []
    assert redact(text, "strict") == RedactionResult(text=text, findings=())


def test_strict_still_masks_neutral_fact() -> None:
    result = redact("Dana's phone is (212) 555-0142.", "strict")
    assert result.text == "Dana's phone is [PHONE]."
    assert result.dropped_reason is None


@pytest.mark.parametrize(
    "text",
    [
        "Mail dana@example.com or call (212) 555-0142 / +44 20 7946 0958.",
        "Card 4111 1111 1111 1111, SSN 536-90-4399, IP 192.0.2.1 and 2001:db8::1.",
        "Nothing to see here, version 2.4.18.",
    ],
)
@pytest.mark.parametrize("tier", ["mask", "strict"])
def test_idempotent(text: str, tier: str) -> None:
    once = redact(text, tier)  # type: ignore[arg-type]
    assert once.text is not None
    twice = redact(once.text, tier)  # type: ignore[arg-type]
    assert twice.text == once.text
    assert twice.findings == ()


def _shared_data() -> Path | None:
    repo = Path(__file__).resolve().parent.parent
    for candidate in (repo.parent / "shared" / "data", Path("/work/shared/data")):
        if (candidate / "spamassassin_ham" / "emails").is_dir():
            return candidate
    return None


# Independent of the detector: any ``local@domain.tld`` token, and ``+<digits>`` runs of 10+ digits.
_EMAIL_LEFT = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
)
_INTL_PHONE_LEFT = re.compile(r"(?<![\w+])\+\s?\d(?:[\s\-.()]{0,2}\d){9,13}(?!\d)")
_MSGID_LINE = re.compile(r"(?i)^[>\s|]*(?:message-id|content-id|references|in-reply-to)\s*:")


def test_no_email_or_intl_phone_left_on_real_lines() -> None:
    root = _shared_data()
    if root is None:
        pytest.skip("shared/data is not present")
    files = sorted((root / "spamassassin_ham" / "emails").glob("*.eml"))[:150]
    checked = 0
    leaks: list[str] = []
    for path in files:
        lines = path.read_bytes().decode("latin-1").split("\n")
        for n, line in enumerate(lines, start=1):
            if not ("@" in line or "+" in line) or _MSGID_LINE.match(line):
                continue
            masked = redact(line, "mask", default_region="IE").text or ""
            checked += 1
            if _EMAIL_LEFT.search(masked) or _INTL_PHONE_LEFT.search(masked):
                leaks.append(f"{path.name.split('.')[1]}:{n}")
    assert checked > 500
    assert not leaks, f"PII left after mask at {len(leaks)} lines, e.g. {leaks[:5]}"
