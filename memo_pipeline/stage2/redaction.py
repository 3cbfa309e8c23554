"""Redaction tiers for memory text, chosen per org: ``off``, ``mask`` and ``strict``.

A memory is one short atomic fact written by the extractor ("Dana Whitfield can be reached at
+1 212 555 ..."). Before it is stored, Stage 2 passes its text through :func:`redact` with the org's
tier:

* ``off``: the text is returned unchanged and nothing is detected.
* ``mask``: personal identifiers in the text are replaced by a placeholder for their category:
  ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[NATIONAL_ID]`` and ``[IP]``. Only the *memory text* is
  masked. Typed contact properties (a person's ``email`` or ``phone`` field) are kept by the caller;
  deciding whether to store those is not this module's concern.
* ``strict``: everything ``mask`` does, and a memory whose text falls in a special category of
  personal data (GDPR Art. 9: health, religion, sexual orientation, political opinion, racial or
  ethnic origin, trade-union membership, biometric/genetic data; Art. 10: criminal records) is
  dropped: :attr:`RedactionResult.text` is ``None`` and ``dropped_reason`` reads
  ``"sensitive: health"`` (several categories are joined with ``", "``).

Detectors (all deterministic, no model, no network):

* **email**: an addr-spec whose domain has at least one dot and an alphabetic TLD;
  ``user@localhost`` is not masked.
* **phone**: :class:`phonenumbers.PhoneNumberMatcher` in the org's default region, with leniency
  ``VALID`` (the number must be a valid number for its region). Numbers written with an explicit
  ``+<country code>`` are parsed in their own country whatever the default region is. ``VALID``
  was chosen over ``POSSIBLE`` on the labelled sample (``benchmarks/redaction_eval.py``):
  ``POSSIBLE`` lifts phone recall from 0.75 to 0.96 but drops precision from 1.00 to 0.05,
  because it accepts mail ids, timestamps and other digit runs. A local number without an area
  code (``555-0123`` in the US) is not valid and not masked.
* **payment_card**: 13-19 digits, bare or in the usual groups (4-4-4-4[-3], 4-6-5, 4-6-4), a known
  issuer prefix and a valid Luhn check digit (:mod:`stdnum.luhn`).
* **national_id**: US SSN ``AAA-GG-SSSS`` (or bare nine digits after "SSN"/"social security"),
  validated by :mod:`stdnum.us.ssn`; UK National Insurance number (``AB 12 34 56 C``; python-stdnum
  has no ``gb.nino``, so the prefix rules are written here); Irish PPS number (:mod:`stdnum.ie.pps`,
  with its check letter); Canadian SIN after "SIN"/"social insurance" (:mod:`stdnum.ca.sin`, Luhn);
  Indian Aadhaar in 4-4-4 groups (:mod:`stdnum.in_.aadhaar`, Verhoeff).
* **ip_address**: IPv4 and IPv6 candidates validated by :mod:`ipaddress`; an IPv4-shaped token
  right after "version"/"v"/"release" (or ``v=``) is taken as a version number and kept, and so is
  a netmask (``255.255.255.0``). A version written after a product name (``NAVGW 2.5.2.11``) is
  still masked as an address.

Overlaps are resolved by priority ``email > ip_address > payment_card > national_id > phone``;
phone, card and id candidates inside a URL are ignored (``?id=2125550142`` is not a phone), and so
are phone matches glued to a word (``pool-198-51-100-7.example.net``, ``INV-2023-000123``).
Known misses, measured by ``benchmarks/redaction_eval.py``: local numbers of another country than
the default region (a US number in an Irish org, ``(0)31 555 0100`` without ``+46``), national
numbers written with the country code but no ``+`` (``254 20 555 0100``), phone numbers split
across lines; message ids shaped like addresses (``<1027000000.1.TMDA@host.example.com>``)
are masked as e-mails.
Placeholders contain no digits and no ``@``, so redacting masked text again changes nothing.

Sensitive categories (``strict``) come from a hand-written lexicon of English keywords and phrases
matched case-insensitively on word boundaries (see ``_SENSITIVE_LEXICON``). There is no offline
classifier model, and the lexicon is deliberately conservative: it lists words that are rarely
neutral ("diagnosed with", "chemotherapy", "bisexual", "convicted of", "trade union") and leaves
out ambiguous ones ("depression", "party", "union", "race", "fingerprint", "disabled",
"probation"), or only accepts them in a phrase ("clinical depression", "labour party", "racial").
Its limits:

* it misses paraphrases ("spent a week in St James's for his heart"), euphemisms, typos and
  every language but English;
* it does not know who the fact is about: "Acme sells diabetes test strips" is dropped;
* it flags the topic, not the person's status: "campaigns against racial discrimination" is dropped.

So ``strict`` lowers the risk of storing special-category data; it does not guarantee it. Findings
carry the matched text, so callers must not log or persist :attr:`Finding.text`.

Throughput: cheap pre-checks gate every detector (an ``@`` for e-mails; four digits and three dots
or two colons for IPs; six digits for ids, seven for phones, thirteen for cards, not counting
digits already inside an e-mail or IP), so a plain sentence costs a few microseconds. phonenumbers
costs ~0.1-0.3 ms per text that holds a phone-like number; memory-like sentences redact at
>20,000 texts/s on one core (see the benchmark).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, Literal

import phonenumbers
from stdnum import luhn
from stdnum.ca import sin as ca_sin
from stdnum.ie import pps as ie_pps
from stdnum.in_ import aadhaar as in_aadhaar
from stdnum.us import ssn as us_ssn

__all__ = [
    "PII_CATEGORIES",
    "PLACEHOLDERS",
    "SENSITIVE_CATEGORIES",
    "Finding",
    "RedactionResult",
    "Tier",
    "detect",
    "redact",
    "sensitive_categories",
]

Tier = Literal["off", "mask", "strict"]

#: PII categories found by :func:`detect`, highest priority first (used to resolve overlaps).
PII_CATEGORIES: Final[tuple[str, ...]] = (
    "email",
    "ip_address",
    "payment_card",
    "national_id",
    "phone",
)

#: The placeholder written in place of each PII category by ``mask`` and ``strict``.
PLACEHOLDERS: Final[dict[str, str]] = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "payment_card": "[CARD]",
    "national_id": "[NATIONAL_ID]",
    "ip_address": "[IP]",
}


@dataclass(frozen=True)
class Finding:
    """One detected span of ``text[start:end]``.

    Attributes:
        category: A PII category (``email``, ``phone``, ``payment_card``, ``national_id``,
            ``ip_address``) or, for ``strict``, a sensitive category (``health``, ...).
        start: Start offset in the original text.
        end: End offset (exclusive) in the original text.
        text: The matched text. It is personal data: do not log or persist it.
    """

    category: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class RedactionResult:
    """The outcome of :func:`redact`.

    Attributes:
        text: The redacted text, or ``None`` when ``strict`` dropped the memory.
        findings: PII findings (and, for a dropped memory, the sensitive-category findings),
            sorted by offset into the *original* text.
        dropped_reason: ``"sensitive: <category>[, <category>...]"`` when dropped, else ``None``.
    """

    text: str | None
    findings: tuple[Finding, ...]
    dropped_reason: str | None = None


# --------------------------------------------------------------------------------------------
# PII patterns
# --------------------------------------------------------------------------------------------

_EMAIL_RE: Final = re.compile(
    r"(?<![\w.%+\-])"
    r"[A-Za-z0-9][A-Za-z0-9_%+\-]*(?:\.[A-Za-z0-9_%+\-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![\w\-]|\.[A-Za-z0-9])"
)

_URL_RE: Final = re.compile(r"\b(?:https?|ftp)://[^\s<>\"']+|\bwww\.[^\s<>\"']+", re.IGNORECASE)

_IPV4_RE: Final = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6_RE: Final = re.compile(
    r"(?<![\w:.])"
    r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4}|(?<=:))"
    r"(?:%[0-9A-Za-z]+)?"
    r"(?![\w:]|\.\d)"
)
_VERSION_BEFORE_RE: Final = re.compile(
    r"(?:\bv|\bver\.?|\bversion|\brelease|\brel\.?)\s*[=:]?\s*$", re.I
)
_HEX_RE: Final = re.compile(r"[0-9A-Fa-f]")

# 13-19 digits; separators (one space or dash) checked against known groupings below.
_CARD_RE: Final = re.compile(r"(?<![\w.\-])\d(?:[ \-]?\d){12,18}(?![\w\-]|[.,]\d)")
_CARD_GROUPINGS: Final[frozenset[tuple[int, ...]]] = frozenset(
    {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 4, 4, 1), (4, 4, 4, 2), (4, 4, 4, 3), (4, 6, 5), (4, 6, 4)}
)
_CARD_PREFIX_RE: Final = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|35|6(?:011|5|4[4-9]|2)"
    r"|5[06-9]|6"
)

_SSN_RE: Final = re.compile(r"(?<![\w\-])\d{3}([\- ])\d{2}\1\d{4}(?![\w\-]|[.,]\d)")
_ID_GLUE: Final = r"(?:\s*(?:\bis\b|\bwas\b|\bnumber\b|\bno\.?|#|:))*\s*"
_SSN_BARE_RE: Final = re.compile(
    r"\b(?:SSN|social security(?: number| no\.?)?)" + _ID_GLUE + r"(\d{9})\b",
    re.IGNORECASE,
)
_NINO_RE: Final = re.compile(
    r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"(?: ?\d{2}){3} ?[A-D]\b"
)
_PPS_RE: Final = re.compile(r"\b\d{7}[A-W][ABHW]?\b")
_SIN_RE: Final = re.compile(
    r"\b(?:SIN|[Ss]ocial [Ii]nsurance(?: [Nn]umber| [Nn]o\.?)?)"
    + _ID_GLUE
    + r"(\d{3}([\- ]?)\d{3}\2\d{3})\b",
)
_AADHAAR_RE: Final = re.compile(r"(?<![\w\-])[2-9]\d{3}([ \-])\d{4}\1\d{4}(?![\w\-]|[.,]\d)")

_DIGITS: Final = "0123456789"
_PHONE_LENIENCY: Final = phonenumbers.Leniency.VALID


def _digit_count(text: str) -> int:
    return sum(map(text.count, _DIGITS))


def _url_spans(text: str) -> list[tuple[int, int]]:
    if "://" not in text and "www." not in text.lower():
        return []
    return [m.span() for m in _URL_RE.finditer(text)]


def _inside(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(s < end and start < e for s, e in spans)


def _emails(text: str) -> list[Finding]:
    return [Finding("email", m.start(), m.end(), m.group()) for m in _EMAIL_RE.finditer(text)]


def _ips(text: str) -> list[Finding]:
    found: list[Finding] = []
    if text.count(".") >= 3:
        for m in _IPV4_RE.finditer(text):
            if _VERSION_BEFORE_RE.search(text, max(0, m.start() - 10), m.start()):
                continue
            if m.group().startswith("255."):
                continue  # a netmask or broadcast address, never a host
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            found.append(Finding("ip_address", m.start(), m.end(), m.group()))
    if text.count(":") >= 2:
        for m in _IPV6_RE.finditer(text):
            cand = m.group()
            groups = [g for g in cand.split("%")[0].split(":") if g]
            if cand != "::1" and (len(groups) < 2 or len(_HEX_RE.findall(cand)) < 4):
                continue
            if "::" not in cand and cand.count(":") < 6:
                continue
            try:
                ipaddress.IPv6Address(cand)
            except ValueError:
                continue
            found.append(Finding("ip_address", m.start(), m.end(), cand))
    return found


def _cards(text: str) -> list[Finding]:
    found: list[Finding] = []
    for m in _CARD_RE.finditer(text):
        raw = m.group()
        digits = re.sub(r"\D", "", raw)
        if len(raw) != len(digits):
            groups = tuple(len(g) for g in re.split(r"[ \-]", raw))
            if groups not in _CARD_GROUPINGS or len({c for c in raw if not c.isdigit()}) > 1:
                continue
        if not _CARD_PREFIX_RE.match(digits) or not luhn.is_valid(digits):
            continue
        found.append(Finding("payment_card", m.start(), m.end(), raw))
    return found


def _national_ids(text: str) -> list[Finding]:
    found: list[Finding] = []
    for m in _SSN_RE.finditer(text):
        if us_ssn.is_valid(m.group().replace(" ", "-")):
            found.append(Finding("national_id", m.start(), m.end(), m.group()))
    for m in _SSN_BARE_RE.finditer(text):
        if us_ssn.is_valid(m.group(1)):
            found.append(Finding("national_id", m.start(1), m.end(1), m.group(1)))
    for m in _NINO_RE.finditer(text):
        found.append(Finding("national_id", m.start(), m.end(), m.group()))
    for m in _PPS_RE.finditer(text):
        if ie_pps.is_valid(m.group()):
            found.append(Finding("national_id", m.start(), m.end(), m.group()))
    for m in _SIN_RE.finditer(text):
        if ca_sin.is_valid(m.group(1)):
            found.append(Finding("national_id", m.start(1), m.end(1), m.group(1)))
    for m in _AADHAAR_RE.finditer(text):
        if in_aadhaar.is_valid(m.group()):
            found.append(Finding("national_id", m.start(), m.end(), m.group()))
    return found


def _embedded(text: str, start: int, end: int) -> bool:
    """True when a digit run is glued to a word: ``pool-198-51-100-7.host``, ``INV-2023-0001``."""
    if start > 0:
        prev = text[start - 1]
        if (
            prev.isalnum()
            or prev == "/"
            or (prev in "-._" and start >= 2 and text[start - 2].isalnum())
        ):
            return True
    if end < len(text):
        nxt = text[end]
        if nxt.isalnum() or (nxt in "-./_" and end + 1 < len(text) and text[end + 1].isalnum()):
            return True
    return False


def _phones(text: str, region: str) -> list[Finding]:
    return [
        Finding("phone", m.start, m.end, m.raw_string)
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=_PHONE_LENIENCY)
        if not _embedded(text, m.start, m.end)
    ]


def _resolve(candidates: list[Finding]) -> list[Finding]:
    """Keep non-overlapping findings, preferring higher-priority categories then longer spans."""
    rank = {c: i for i, c in enumerate(PII_CATEGORIES)}
    ordered = sorted(candidates, key=lambda f: (rank.get(f.category, 99), -(f.end - f.start)))
    kept: list[Finding] = []
    for f in ordered:
        if not any(k.start < f.end and f.start < k.end for k in kept):
            kept.append(f)
    kept.sort(key=lambda f: (f.start, f.end))
    return kept


def detect(text: str, default_region: str = "US") -> list[Finding]:
    """Find personal identifiers (PII) in ``text``.

    Args:
        text: Any text; typically one memory sentence.
        default_region: ISO 3166-1 alpha-2 region used to read phone numbers written without a
            ``+<country code>`` (the org's home country).

    Returns:
        Non-overlapping findings sorted by offset. Categories are those in ``PII_CATEGORIES``.
    """
    if not text:
        return []
    candidates: list[Finding] = []
    if "@" in text:
        candidates.extend(_emails(text))
    digits = _digit_count(text)
    if digits >= 4 and (text.count(".") >= 3 or text.count(":") >= 2):
        candidates.extend(_ips(text))
    if candidates:
        # Digits inside an e-mail or IP address cannot start a phone, card or id.
        digits -= sum(_digit_count(f.text) for f in candidates)
    if digits >= 6:
        urls = _url_spans(text)
        numeric = _national_ids(text)
        if digits >= 13:
            numeric.extend(_cards(text))
        if digits >= 7:
            numeric.extend(_phones(text, default_region))
        candidates.extend(f for f in numeric if not _inside(f.start, f.end, urls))
    if not candidates:
        return []
    return _resolve(candidates)


def _mask(text: str, findings: list[Finding]) -> str:
    parts: list[str] = []
    pos = 0
    for f in findings:
        parts.append(text[pos : f.start])
        parts.append(PLACEHOLDERS[f.category])
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Sensitive categories (strict)
# --------------------------------------------------------------------------------------------

#: Sensitive categories in the order used for ``dropped_reason``.
SENSITIVE_CATEGORIES: Final[tuple[str, ...]] = (
    "health",
    "religion",
    "sexual_orientation",
    "political_opinion",
    "ethnicity",
    "trade_union",
    "biometric_genetic",
    "criminal_record",
)

# Each entry is a regular-expression fragment matched case-insensitively between word
# boundaries (``\b...\b``). Entries under ``_CASE_SENSITIVE`` are matched as written, for words
# that are also names ("Gay") or common words in another case ("aids").
_SENSITIVE_LEXICON: Final[dict[str, tuple[str, ...]]] = {
    "health": (
        r"diagnos(?:ed|is|es)",
        r"medical (?:condition|history|leave|records?|treatment|appointment)s?",
        r"mental (?:health|illness|disorder)",
        r"(?:chronic|terminal|serious|long-term) (?:illness|condition|pain)",
        r"illness(?:es)?",
        r"sick leave",
        r"cancer",
        r"tumou?rs?",
        r"leukaemia|leukemia|lymphoma|melanoma",
        r"chemo(?:therapy)?",
        r"radiotherapy",
        r"diabet(?:es|ic)",
        r"HIV(?:-positive)?",
        r"hepatitis",
        r"asthma(?:tic)?",
        r"epilep(?:sy|tic)",
        r"heart (?:attack|disease|condition|surgery|failure)",
        r"(?:had|suffered|suffers) a stroke",
        r"high blood pressure|hypertension",
        r"clinical(?:ly)? depress(?:ion|ed)",
        r"depressive",
        r"anxiety (?:disorder|attacks?)",
        r"panic attacks?",
        r"bipolar",
        r"schizophreni[ac]",
        r"PTSD",
        r"OCD",
        r"ADHD",
        r"autis(?:m|tic)",
        r"dementia",
        r"alzheimer'?s",
        r"parkinson'?s",
        r"multiple sclerosis",
        r"eating disorder|anorexi[ac]|bulimi[ac]",
        r"addiction|alcoholi(?:c|sm)|rehab",
        r"disability|disabilities",
        r"(?:wheelchair user|uses a wheelchair)",
        r"pregnan(?:t|cy)",
        r"miscarriage",
        r"IVF",
        r"surgery",
        r"hospitali[sz](?:ed|ation)",
        r"(?:in|into|out of) (?:the )?hospital",
        r"therapist|psychiatrist|psychotherapy",
        r"physiotherapy|physical therapy",
        r"antidepressants?",
        r"medication",
        r"prescri(?:bed|ption)",
        r"allerg(?:y|ies|ic)",
        r"covid(?:-19)? positive|tested positive",
        r"injur(?:y|ies|ed)",
        r"broken (?:leg|arm|wrist|ankle|hip)",
        r"migraines?",
    ),
    "religion": (
        r"religio(?:n|us|ns)",
        r"(?:roman )?catholic(?:s|ism)?",
        r"protestant(?:s|ism)?",
        r"christianity",
        r"(?:a|is|are|was|devout|practi[cs]ing|born-again) christians?",
        r"evangelical",
        r"muslims?|islam(?:ic)?",
        r"jewish|judaism",
        r"hindu(?:s|ism)?",
        r"buddhis[mt]s?",
        r"sikh(?:s|ism)?",
        r"mormons?|latter-day saints",
        r"jehovah'?s witness(?:es)?",
        r"atheis[mt]s?|agnostic",
        r"(?:goes|go|went|going) to (?:church|mass|mosque|synagogue|temple)",
        r"(?:attends|attended|attend) (?:church|mass|mosque|synagogue|temple)",
        r"(?:church|mosque|synagogue) (?:member|community|choir)",
        r"ramadan|yom kippur|passover|diwali",
        r"(?:his|her|their|my) faith",
        r"bar mitzvah|bat mitzvah",
    ),
    "sexual_orientation": (
        r"lesbians?",
        r"bisexual(?:s|ity)?",
        r"homosexual(?:s|ity)?",
        r"heterosexual",
        r"transgender|trans (?:woman|man|person)",
        r"LGBT(?:Q\+?|QIA\+?|\+)?",
        r"queer",
        r"sexual orientation",
        r"same-sex (?:partner|marriage|couple|relationship)",
        r"pride (?:parade|march)",
    ),
    "political_opinion": (
        r"political (?:views?|opinions?|beliefs?|affiliation|leanings?)",
        r"(?:democratic|republican|labour|labor|conservative|liberal|green|socialist|"
        r"communist|libertarian|reform) party",
        r"democrats?",
        r"republicans?",
        r"tory|tories",
        r"sinn f[eé]in|fianna f[aá]il|fine gael",
        r"left-wing|right-wing|far-right|far-left",
        r"(?:party|political) (?:member|membership|activist|donor)",
        r"(?:member|supporter) of the \w+ party",
        r"(?:supports|supported|campaigned for) (?:the )?\w+ (?:party|candidate)",
        r"pro-life|pro-choice",
        r"brexit(?:eer)?",
        r"MAGA",
    ),
    "ethnicity": (
        r"ethnic(?:ity|ities)?",
        r"racial(?:ly)?",
        r"race and ethnicity",
        r"african[- ]americans?",
        r"asian[- ]americans?",
        r"native americans?",
        r"hispanics?",
        r"latin[oax]s?",
        r"caucasians?",
        r"indigenous",
        r"first nations",
        r"aboriginal",
        r"of \w+ (?:descent|heritage|ancestry)",
        r"person of colou?r|people of colou?r",
    ),
    "trade_union": (
        r"trade[- ]unions?",
        r"labou?r unions?",
        r"union (?:member(?:ship)?|rep(?:resentative)?|steward|dues|card)",
        r"unioni[sz]ed",
        r"shop steward",
        r"collective bargaining",
        r"teamsters|AFL-CIO|SIPTU|unite the union",
    ),
    "biometric_genetic": (
        r"biometrics?",
        r"genetic (?:test|testing|condition|disorder|data|screening|marker|predisposition)",
        r"genetically predisposed",
        r"genome (?:sequenc\w+|test\w*)|(?:his|her|their|my) genome",
        r"DNA (?:test|testing|sample|profile|results?|analysis)",
        r"BRCA[12]?",
        r"face (?:scan|id|print)|facial recognition",
        r"retina(?:l)? scan|iris scan",
        r"fingerprint (?:scan|reader|data)|fingerprints (?:taken|on file)",
        r"voiceprint",
    ),
    "criminal_record": (
        r"criminal (?:record|history|conviction|charges?|offen[cs]es?|past)",
        r"convicted",
        r"ex-con(?:vict)?",
        r"felon(?:y|ies|s)?",
        r"misdemeanou?rs?",
        r"arrested",
        r"indict(?:ed|ment)",
        r"pleaded guilty|pled guilty|found guilty",
        r"sentenced",
        r"(?:in|to|from|out of) (?:prison|jail|gaol)",
        r"served time",
        r"imprison(?:ed|ment)",
        r"on parole|paroled",
        r"DUI|DWI|drunk driving",
        r"sex offender",
    ),
}
_CASE_SENSITIVE: Final[dict[str, tuple[str, ...]]] = {
    "health": (r"AIDS",),
    "sexual_orientation": (r"gay(?:s)?",),
}


def _compile_lexicon() -> list[tuple[str, re.Pattern[str]]]:
    compiled: list[tuple[str, re.Pattern[str]]] = []
    for category in SENSITIVE_CATEGORIES:
        terms = _SENSITIVE_LEXICON.get(category, ())
        if terms:
            alt = "|".join(f"(?:{t})" for t in terms)
            compiled.append((category, re.compile(rf"\b(?:{alt})\b", re.IGNORECASE)))
        cs_terms = _CASE_SENSITIVE.get(category, ())
        if cs_terms:
            alt = "|".join(f"(?:{t})" for t in cs_terms)
            compiled.append((category, re.compile(rf"\b(?:{alt})\b")))
    return compiled


_LEXICON_RES: Final = _compile_lexicon()


def _sensitive_findings(text: str) -> list[Finding]:
    found: list[Finding] = []
    for category, pattern in _LEXICON_RES:
        found.extend(
            Finding(category, m.start(), m.end(), m.group()) for m in pattern.finditer(text)
        )
    found.sort(key=lambda f: (f.start, f.end))
    return found


def sensitive_categories(text: str) -> list[str]:
    """Return the GDPR special categories that ``text`` appears to fall in.

    A keyword/phrase lexicon, not a classifier: see the module docstring for its limits.

    Args:
        text: One memory sentence.

    Returns:
        The matched categories, in ``SENSITIVE_CATEGORIES`` order, without repeats.
    """
    hits = {category for category, pattern in _LEXICON_RES if pattern.search(text)}
    return [c for c in SENSITIVE_CATEGORIES if c in hits]


def redact(text: str, tier: Tier, default_region: str = "US") -> RedactionResult:
    """Apply an org's redaction tier to one memory text.

    Only the memory text is changed; typed contact properties (a contact's e-mail or phone
    field) are kept or dropped by the caller, not here.

    Args:
        text: The memory text.
        tier: ``"off"``, ``"mask"`` or ``"strict"``.
        default_region: Region for phone numbers written without ``+<country code>``.

    Returns:
        The redacted text and what was found. With ``strict``, a text in a sensitive category
        comes back with ``text=None`` and a ``dropped_reason``.

    Raises:
        ValueError: If ``tier`` is not one of the three tiers.
    """
    if tier == "off":
        return RedactionResult(text=text, findings=())
    if tier not in ("mask", "strict"):
        raise ValueError(f"unknown redaction tier: {tier!r}")
    findings = detect(text, default_region)
    if tier == "strict":
        sensitive = _sensitive_findings(text)
        if sensitive:
            cats = {f.category for f in sensitive}
            reason = "sensitive: " + ", ".join(c for c in SENSITIVE_CATEGORIES if c in cats)
            merged = sorted([*findings, *sensitive], key=lambda f: (f.start, f.end))
            return RedactionResult(text=None, findings=tuple(merged), dropped_reason=reason)
    if not findings:
        return RedactionResult(text=text, findings=())
    return RedactionResult(text=_mask(text, findings), findings=tuple(findings))
