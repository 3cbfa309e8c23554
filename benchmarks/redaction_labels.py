"""Labelled sample for ``benchmarks/redaction_eval.py``: real shared/data lines and fictional text.

Nothing from the data is copied into this file: real examples are *selected* from
``shared/data`` at run time by the rules below and labelled either by a structural rule or by
hand-checked ``(category, start, end)`` offsets. The labels never call the detector under test
(``memo_pipeline.stage2.redaction``). Run ``python benchmarks/redaction_labels.py --show`` to print
every real labelled span for an audit (the output is personal data from the corpus: read it, do
not commit it).

Sources (``LabelledUnit.source``), each with the categories it is *exhaustive* for: a unit only
counts toward a category's precision and recall when every span of that category in it is
labelled.

``sa_headers`` (email; phone, payment_card and national_id are empty)
    spamassassin_ham ``From``/``To``/``Cc``/``Reply-To``/``Sender``/``Errors-To``/
    ``Return-Path``/``Delivered-To``/``X-Beenthere``/``Resent-*`` header lines that fit on one
    physical line, deduplicated by text. Labels: the addr-specs returned by
    :func:`email.utils.getaddresses` (an RFC 5322 parser), located in the line, and display names
    that are themselves addresses (``"'list@example.org'" <list@example.org>``). A line with an
    address whose domain has no dot (``user@localhost``) or that cannot be located is skipped.
``sa_received`` (ip_address; phone, payment_card and national_id are empty)
    every distinct physical line of a ``Received:`` header holding ``digit.digit`` or a bracketed
    IPv6 literal. RFC 5321 trace fields name relays by address, so every dotted quad with octets
    <= 255 is labelled an IPv4 address and every ``[...]`` literal with a colon an IPv6 address.
    The one exception, found by auditing all 2,739 such lines by hand: a software version written
    after a product name (``NAVGW 2.5.2.11``). E-mail-like ``ident@host`` tokens make these lines
    unsuitable for the email category, so it is not scored there.
``ek_headers`` (email; phone, payment_card, national_id empty)
    enron_kaggle_sample ``From:`` and ``To:`` values (recovered with the regex given in that
    folder's README), labelled by :func:`email.utils.getaddresses`.
``sa_body``, ``aeslc_body``, ``hb_pages``, ``ek_body`` (all five categories)
    spamassassin_ham body lines (after the first blank line, decoded as latin-1), enron_aeslc body
    lines (before ``@subject``), handbook_18f page lines, and enron_kaggle_sample message bodies,
    in that order, deduplicated by text; kept when the text has at least 7 digits, an ``@``, a
    dotted quad or a hex ``x:y:`` group, and is not a quoted ``Message-ID``/``Content-ID``/
    ``References``/``In-Reply-To`` header. Labels: ``HAND_LABELS`` below, written by reading every
    numeric chunk of >= 7 digits, every ``@`` token and every dotted quad of the selected units.
    Units without an entry hold no PII. Judgement calls: Lotus Notes names (``Name/HOU/ECT@ECT``),
    shell prompts (``user@host``), wildcards (``*@aol.com``), ``V@R`` and message ids are not
    e-mails; ICQ numbers, a frequent-flyer number, an employer id (FEIN) and a subnet mask are not
    PII of these categories; line-wrapped phone fragments (the last seven digits, with ``(877)``
    on the previous line) are phones.
``synthetic`` (all five categories)
    fictional text written for this benchmark (``SYNTHETIC``): test card numbers, 555-01xx and
    Ofcom drama phone numbers, documentation IP ranges, and negatives (Luhn-invalid cards, dates,
    versions, prices, order ids, MAC addresses, clock times).

Phone numbers are read with a default region per source (``REGIONS``): ``IE`` for spamassassin
(most lists are Irish), ``US`` elsewhere.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path

ALL_CATEGORIES = frozenset({"email", "phone", "payment_card", "national_id", "ip_address"})
_NON_EMAIL = frozenset({"phone", "payment_card", "national_id"})
_NON_IP = frozenset({"phone", "payment_card", "national_id", "ip_address"})

REGIONS = {
    "sa_headers": "IE",
    "sa_received": "IE",
    "sa_body": "IE",
    "ek_headers": "US",
    "ek_body": "US",
    "aeslc_body": "US",
    "hb_pages": "US",
    "synthetic": "US",
}


@dataclass(frozen=True)
class LabelledUnit:
    """One labelled text.

    Attributes:
        source: Which rule produced it (see the module docstring).
        locator: Where it comes from, e.g. ``"sa:00027:62"`` (file id and 1-based line).
        text: The text to run the detector on.
        spans: Expected ``(category, start, end)`` spans.
        exhaustive: Categories for which ``spans`` lists every occurrence in ``text``.
        region: Default phone region for this unit.
    """

    source: str
    locator: str
    text: str
    spans: tuple[tuple[str, int, int], ...]
    exhaustive: frozenset[str]
    region: str


def default_data_root() -> Path | None:
    """Find ``shared/data``: ``$MEMO_SHARED_DATA``, then beside the repo, then ``/work/shared``."""
    env = os.environ.get("MEMO_SHARED_DATA")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parent.parent
    candidates += [repo.parent / "shared" / "data", Path("/work/shared/data")]
    for c in candidates:
        if (c / "spamassassin_ham" / "emails").is_dir():
            return c
    return None


# Hand labels for the body sources: locator -> space-separated spans "<code><start>-<end>" with
# code e=email, p=phone, i=ip_address, c=payment_card, n=national_id. Offsets are into the unit
# text (a line, or for ek:<row> the message body after the X-FileName header).
HAND_LABELS: dict[str, str] = {
    "aeslc:beck-s_inbox_142.subject:6": "p55-67",
    "aeslc:beck-s_inbox_447.subject:7": "p91-103",
    "aeslc:beck-s_inbox_583.subject:7": "p51-65 p90-104",
    "aeslc:beck-s_sent_353.subject:3": "p52-64",
    "aeslc:dasovich-j_inbox_59.subject:9": "e76-93",
    "aeslc:dasovich-j_inbox_84.subject:2": "e57-80 e184-207",
    "aeslc:kaminski-v_inbox_237.subject:5": "p81-95",
    "aeslc:kaminski-v_inbox_30.subject:4": "e8-28",
    "aeslc:kaminski-v_inbox_680.subject:5": "p24-38",
    "aeslc:kaminski-v_inbox_680.subject:9": "p31-45",
    "aeslc:lay-k_inbox_222.subject:4": "p29-41",
    "aeslc:lay-k_inbox_5.subject:8": "p59-71 p76-88 e89-112",
    "aeslc:lay-k_inbox_57.subject:8": "p85-99 e106-128",
    "aeslc:lay-k_inbox_942.subject:7": "p97-109",
    "aeslc:lay-k_inbox_950.subject:3": "e67-87",
    "aeslc:lay-k_inbox_950.subject:8": "e7-27",
    "aeslc:lay-k_sent_131.subject:2": "p45-57",
    "aeslc:skilling-j_inbox_1012.subject:4": "e383-405 p411-423 p430-442",
    "aeslc:skilling-j_inbox_1260.subject:2": "p133-145",
    "aeslc:skilling-j_inbox_1424.subject:4": "e75-102 p106-118",
    "aeslc:skilling-j_inbox_1451.subject:6": "e50-73 p89-101",
    "aeslc:skilling-j_inbox_165.subject:3": "p60-74",
    "aeslc:skilling-j_sent_108.subject:2": "p89-101",
    "aeslc:skilling-j_sent_127.subject:3": "p27-39 e58-79",
    "ek:10": "e133-159 e193-209 e213-229 p2033-2045 p2048-2060 p2064-2076 p2079-2091",
    "ek:11": "p184-196",
    "ek:19": "e135-155 e202-222 e245-261 e283-309",
    "ek:20": "p639-651",
    "ek:26": "e135-155 e202-222 e245-261 e283-309 e335-352",
    "ek:27": "e135-155 e202-222 e245-261 e283-309 e335-352",
    "ek:33": "e128-146 e186-205 e230-255",
    "ek:7": "e74-90 e106-128 e143-159",
    "ek:9": "i114-125 i155-166 i173-185",
    "hb:18f/chapters/engineering.md:209": "e3-18",
    "hb:18f/chapters/engineering.md:213": "e3-29",
    "hb:18f/chapters/product.md:138": "e53-72",
    "hb:18f/how-18f-works/agreements.md:118": "e57-79",
    "hb:18f/how-18f-works/agreements.md:5": "e4-26",
    "hb:18f/how-18f-works/business-development.md:59": "e0-20",
    "hb:18f/how-18f-works/state-local-agreements.md:94": "e30-53",
    "hb:about-us/tts-consulting/operations/internal-communications.md:24": "e3-18",
    "hb:about-us/tts-consulting/operations/internal-communications.md:26": "e3-29",
    "hb:general-information-and-resources/chicago.md:125": "e195-219 e278-300",
    "hb:general-information-and-resources/chicago.md:154": "e60-79",
    "hb:general-information-and-resources/chicago.md:172": "e319-341",
    "hb:general-information-and-resources/chicago.md:194": "e78-100 e109-131 e225-249",
    "hb:general-information-and-resources/chicago.md:21": "e24-46",
    "hb:general-information-and-resources/collaboration-tools.md:151": "e3-27 e36-60",
    "hb:general-information-and-resources/distributed.md:15": "e26-49",
    "hb:general-information-and-resources/employee-resources-policies/deaf-hoh.md:165": "p9-23",
    "hb:general-information-and-resources/employee-resources-policies/deaf-hoh.md:187": "p6-20",
    "hb:general-information-and-resources/employee-resources-policies/deaf-hoh.md:280": "e17-39",
    "hb:general-information-and-resources/employee-resources-policies/deaf-hoh.md:309": "e19-38",
    "hb:general-information-and-resources/employee-resources-policies/deaf-hoh.md:41": "e6-27 e36-57",
    "hb:general-information-and-resources/employee-resources-policies/employment-verification.md:20": "p2-14",
    "hb:general-information-and-resources/employee-resources-policies/employment-verification.md:21": "e9-27 e36-54",
    "hb:general-information-and-resources/employee-resources-policies/transit-benefit.md:5": "e4-30",
    "hb:general-information-and-resources/employee-resources-policies/transit-benefit.md:56": "e9-36 e45-72",
    "hb:general-information-and-resources/general-contacts.md:34": "e13-28 e37-52",
    "hb:general-information-and-resources/general-contacts.md:38": "e18-29 e38-49",
    "hb:general-information-and-resources/general-contacts.md:39": "e20-43 e52-75",
    "hb:general-information-and-resources/general-contacts.md:41": "e3-23 e32-52",
    "hb:general-information-and-resources/general-contacts.md:42": "e21-35 e44-58",
    "hb:general-information-and-resources/general-contacts.md:43": "e27-41 e50-64",
    "hb:general-information-and-resources/general-contacts.md:44": "e17-36 e45-64",
    "hb:general-information-and-resources/general-contacts.md:48": "e18-33 e42-57",
    "hb:general-information-and-resources/general-contacts.md:49": "e18-32 e41-55",
    "hb:general-information-and-resources/general-contacts.md:50": "e20-34 e43-57",
    "hb:general-information-and-resources/general-contacts.md:54": "e26-42 e51-67",
    "hb:general-information-and-resources/general-contacts.md:56": "e3-30 e39-66",
    "hb:general-information-and-resources/general-contacts.md:61": "e3-31 e40-68",
    "hb:general-information-and-resources/general-contacts.md:63": "e3-32 e41-70",
    "hb:general-information-and-resources/general-contacts.md:67": "e36-52 e61-77",
    "hb:general-information-and-resources/general-contacts.md:71": "e13-29 e38-54",
    "hb:general-information-and-resources/general-contacts.md:72": "e20-43 e52-75",
    "hb:general-information-and-resources/new-york-city.md:150": "e1-61",
    "hb:general-information-and-resources/new-york-city.md:183": "e20-46",
    "hb:general-information-and-resources/new-york-city.md:43": "e46-61 e63-78",
    "hb:general-information-and-resources/purchase-requests.md:5": "e4-26",
    "hb:general-information-and-resources/san-francisco.md:147": "p8-22",
    "hb:general-information-and-resources/san-francisco.md:165": "e57-78",
    "hb:general-information-and-resources/san-francisco.md:201": "e8-37",
    "hb:general-information-and-resources/san-francisco.md:214": "e39-63",
    "hb:general-information-and-resources/san-francisco.md:365": "e35-64",
    "hb:general-information-and-resources/san-francisco.md:391": "p19-31",
    "hb:general-information-and-resources/san-francisco.md:402": "e32-53",
    "hb:general-information-and-resources/san-francisco.md:413": "e25-46",
    "hb:general-information-and-resources/sensitive-information.md:144": "e20-42",
    "hb:general-information-and-resources/software.md:5": "e4-24",
    "hb:general-information-and-resources/software.md:87": "e35-56",
    "hb:general-information-and-resources/software.md:89": "e58-78",
    "hb:general-information-and-resources/tech-policies/fitara.md:49": "e35-49",
    "hb:general-information-and-resources/tech-policies/security-incidents.md:187": "e18-39 e61-75 e76-103",
    "hb:general-information-and-resources/tech-policies/security-incidents.md:190": "e45-70",
    "hb:general-information-and-resources/tech-policies/security-incidents.md:23": "e16-37",
    "hb:general-information-and-resources/tech-policies/security-incidents.md:50": "e23-37 e46-60",
    "hb:general-information-and-resources/tech-policies/security-incidents.md:69": "e20-41 e46-60",
    "hb:general-information-and-resources/tech-policies/security-incidents.md:83": "e20-41 e43-57 e63-77",
    "hb:general-information-and-resources/washington-dc.md:209": "e24-50",
    "hb:general-information-and-resources/washington-dc.md:22": "e26-52",
    "hb:general-information-and-resources/washington-dc.md:228": "e44-70",
    "hb:general-information-and-resources/washington-dc.md:292": "e24-50",
    "hb:general-information-and-resources/washington-dc.md:326": "e33-59",
    "hb:getting-started/classes.md:150": "e3-25 e34-56",
    "hb:getting-started/classes/benefits.md:117": "p47-61 p65-77",
    "hb:getting-started/classes/benefits.md:137": "p62-76",
    "hb:getting-started/classes/benefits.md:138": "p0-12",
    "hb:getting-started/classes/benefits.md:307": "e10-22 e31-43",
    "hb:getting-started/classes/benefits.md:320": "e3-15",
    "hb:getting-started/classes/benefits.md:326": "e1-32 e41-72",
    "hb:getting-started/classes/benefits.md:351": "p52-66",
    "hb:getting-started/classes/benefits.md:352": "e20-46",
    "hb:getting-started/classes/benefits.md:358": "e4-30 e39-65",
    "hb:getting-started/classes/benefits.md:57": "p43-57",
    "hb:getting-started/classes/travel-101.md:104": "e39-57",
    "hb:getting-started/classes/travel-101.md:121": "p16-30 e44-64",
    "hb:getting-started/classes/travel-101.md:124": "e0-21",
    "hb:getting-started/classes/travel-101.md:30": "p14-28",
    "hb:getting-started/classes/travel-101.md:52": "p59-73",
    "hb:getting-started/classes/travel-101.md:97": "p46-60",
    "hb:getting-started/equipment.md:167": "e11-34 e43-66",
    "hb:getting-started/equipment.md:22": "e1-24 e33-56",
    "hb:getting-started/equipment.md:270": "e1-22 e31-52",
    "hb:getting-started/equipment.md:5": "e4-25",
    "hb:getting-started/equipment.md:85": "e0-21",
    "hb:getting-started/how-to-log-in.md:64": "e20-41",
    "hb:getting-started/piv.md:15": "e1-24 e33-56",
    "hb:getting-started/piv.md:21": "e1-29",
    "hb:getting-started/piv.md:24": "e7-30 e39-62",
    "hb:hiring-staying-or-changing-jobs/external-details.md:100": "e24-45",
    "hb:hiring-staying-or-changing-jobs/external-details.md:101": "e17-39",
    "hb:hiring-staying-or-changing-jobs/external-details.md:25": "e110-131",
    "hb:hiring-staying-or-changing-jobs/external-details.md:26": "e17-39 e65-87",
    "hb:hiring-staying-or-changing-jobs/external-details.md:6": "e4-28",
    "hb:hiring-staying-or-changing-jobs/fair-and-equitable-hiring-practices.md:6": "e4-19",
    "hb:hiring-staying-or-changing-jobs/gsa-details.md:36": "e19-40",
    "hb:hiring-staying-or-changing-jobs/gsa-details.md:37": "e20-42",
    "hb:hiring-staying-or-changing-jobs/gsa-details.md:64": "e21-42",
    "hb:hiring-staying-or-changing-jobs/gsa-details.md:68": "e38-59",
    "hb:hiring-staying-or-changing-jobs/gsa-details.md:89": "e19-40",
    "hb:hiring-staying-or-changing-jobs/gsa-details.md:90": "e17-39 e66-88",
    "hb:hiring-staying-or-changing-jobs/leaving-tts.md:115": "e31-49",
    "hb:hiring-staying-or-changing-jobs/leaving-tts.md:117": "e1-19 e28-46",
    "hb:hiring-staying-or-changing-jobs/resume.md:36": "e0-23",
    "hb:hiring-staying-or-changing-jobs/resume.md:377": "e7-31",
    "hb:hiring-staying-or-changing-jobs/resume.md:60": "p8-20",
    "hb:hiring-staying-or-changing-jobs/resume.md:61": "e7-30",
    "hb:hiring-staying-or-changing-jobs/term-extensions.md:80": "e21-42 e51-72",
    "hb:launching-software/infrastructure.md:175": "e10-37",
    "hb:launching-software/lifecycle.md:309": "e8-29",
    "hb:office-of-acquisition/index.md:66": "e2-22",
    "hb:office-of-acquisition/index.md:68": "e32-50",
    "hb:office-of-operations/bizops.md:27": "e11-33",
    "hb:office-of-operations/bizops.md:48": "e13-34",
    "hb:office-of-operations/bizops.md:50": "e13-31",
    "hb:office-of-operations/bizops.md:52": "e13-31",
    "hb:office-of-operations/bizops.md:73": "e11-26",
    "hb:office-of-operations/empmo.md:26": "e10-45 e54-89",
    "hb:office-of-operations/empmo.md:29": "e10-28 e37-55",
    "hb:office-of-operations/empmo.md:36": "e10-28 e37-55",
    "hb:office-of-operations/empmo.md:40": "e9-36 e45-72",
    "hb:office-of-operations/fas-speaker-guide.md:21": "e29-42",
    "hb:office-of-operations/fas-speaker-guide.md:22": "e8-21",
    "hb:office-of-operations/fas-speaker-guide.md:28": "e0-16",
    "hb:office-of-operations/fas-speaker-guide.md:65": "e41-61",
    "hb:office-of-operations/market-dev-and-partnerships.md:19": "e22-37 e46-61",
    "hb:office-of-operations/outreach.md:40": "e11-24",
    "hb:office-of-operations/outreach.md:54": "e37-57",
    "hb:office-of-operations/social-media.md:5": "e4-24",
    "hb:office-of-operations/talent.md:119": "e5-20 e29-44",
    "hb:office-of-solutions/innovation-portfolio.md:45": "e19-37",
    "hb:office-of-solutions/innovation-portfolio.md:53": "e19-38",
    "hb:office-of-solutions/innovation-portfolio.md:65": "e19-47",
    "hb:office-of-solutions/innovation-portfolio.md:75": "e19-37",
    "hb:office-of-solutions/innovation-portfolio.md:82": "e19-41",
    "hb:office-of-solutions/tech-operations.md:8": "e4-31",
    "hb:tools/airtable.md:15": "e74-101",
    "hb:tools/airtable.md:17": "e292-319",
    "hb:tools/airtable.md:29": "e818-839",
    "hb:tools/zoom.md:4": "e4-23",
    "hb:training-and-development/external-speaking-request-playbook.md:100": "e36-56",
    "hb:training-and-development/external-speaking-request-playbook.md:119": "e22-38 e47-63",
    "hb:training-and-development/external-speaking-request-playbook.md:17": "e23-41 e50-68",
    "hb:training-and-development/external-speaking-request-playbook.md:178": "e55-75",
    "hb:training-and-development/external-speaking-request-playbook.md:187": "e1-19 e28-46",
    "hb:training-and-development/external-speaking-request-playbook.md:34": "e50-70",
    "hb:training-and-development/external-speaking-request-playbook.md:7": "e30-43 e52-65",
    "hb:training-and-development/external-speaking-request-playbook.md:92": "e22-42",
    "hb:training-and-development/idp.md:6": "e4-25",
    "hb:training-and-development/index.md:91": "e43-59 e68-84",
    "hb:training-and-development/pra-for-user-research.md:100": "e292-309",
    "hb:training-and-development/pra-for-user-research.md:11": "e190-210",
    "hb:training-and-development/pra-for-user-research.md:126": "e131-148",
    "hb:training-and-development/pra-for-user-research.md:134": "e42-59",
    "hb:training-and-development/pra-for-user-research.md:67": "e149-171",
    "hb:training-and-development/pra-for-user-research.md:78": "e142-159",
    "hb:training-and-development/pra-for-user-research.md:82": "e116-136",
    "hb:training-and-development/pra-for-user-research.md:90": "e65-85",
    "hb:travel-and-leave/leave.md:277": "e74-95 e104-125",
    "hb:travel-and-leave/leave.md:285": "e269-295 e304-330",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-complete-concur-profile.md:6": "e4-22",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur-pre-olu.md:20": "p0-8",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur-pre-olu.md:26": "e4-37 e46-79",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur-pre-olu.md:34": "e1-19 e28-46 e98-121 e130-153",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur-pre-olu.md:37": "e18-36 e45-63",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur-pre-olu.md:44": "p3-11",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur-pre-olu.md:46": "e9-27",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur-pre-olu.md:77": "e22-40 e49-67",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur-pre-olu.md:88": "p50-64",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur-pre-olu.md:93": "e25-44",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur.md:32": "e1-19 e28-46",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur.md:87": "e96-114",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur.md:89": "e134-152",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-get-in-concur.md:91": "e29-56 e103-121",
    "hb:travel-and-leave/travel-and-leave-policies/first-time-travel-travel-card.md:5": "e4-25",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-2-book-travel.md:57": "p53-67",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-2-book-travel.md:83": "e18-41",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-4-reimbursement.md:51": "e2-25",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-a-amended-authorizations.md:184": "p61-75",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-a-amended-authorizations.md:194": "p29-43",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-a-amended-authorizations.md:46": "p13-27",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-a-amended-authorizations.md:70": "p0-8",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-b-after-hours-emergency-travel-authorizations.md:24": "p28-40",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-b-after-hours-emergency-travel-authorizations.md:25": "e36-56",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-b-after-hours-emergency-travel-authorizations.md:60": "e38-58",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:128": "p65-79",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:199": "e1-19 e28-46",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:30": "p0-8",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:414": "e15-33 e42-60",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:477": "e1-19 e28-46",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:536": "p15-29",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:551": "p50-64",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:631": "e3-21 e30-48",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:808": "e12-30 e39-57",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:875": "e18-43",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:876": "e11-29",
    "hb:travel-and-leave/travel-and-leave-policies/travel-guide-faq.md:88": "e9-27 e36-54",
    "hb:travel-and-leave/travel-guide-table-of-contents.md:123": "p56-70",
    "hb:travel-and-leave/travel-guide-table-of-contents.md:124": "e5-25",
    "hb:updating-the-handbook/components.md:81": "e4-15",
    "hb:updating-the-handbook/components.md:91": "e22-33 e35-46",
    "sa:00027:72": "e15-30 p33-48",
    "sa:00027:77": "e40-55",
    "sa:00027:79": "e17-36",
    "sa:00031:48": "e0-17",
    "sa:00040:43": "e21-39",
    "sa:00045:115": "e11-24 e25-39",
    "sa:00045:116": "e36-51",
    "sa:00048:57": "e33-49",
    "sa:00048:58": "p33-48",
    "sa:00049:79": "e10-24",
    "sa:00052:59": "e12-36",
    "sa:00055:44": "e21-35",
    "sa:00055:57": "e22-45",
    "sa:00055:58": "e10-33",
    "sa:00055:59": "e17-41",
    "sa:00055:60": "e24-45",
    "sa:00055:61": "e4-19 e32-51 e54-78",
    "sa:00055:62": "e16-33 e55-69",
    "sa:00055:63": "e3-23 e25-50",
    "sa:00058:55": "e26-39",
    "sa:00059:62": "e28-41",
    "sa:00059:64": "e19-38",
    "sa:00060:48": "e25-39",
    "sa:00060:93": "e55-73",
    "sa:00060:94": "p66-77",
    "sa:00064:59": "e28-42",
    "sa:00064:61": "e4-17",
    "sa:00065:50": "e28-49",
    "sa:00070:51": "e12-26",
    "sa:00070:69": "e0-16",
    "sa:00071:43": "e21-37",
    "sa:00072:48": "e24-42",
    "sa:00073:48": "e23-39",
    "sa:00073:50": "e16-30",
    "sa:00078:46": "e42-61",
    "sa:00082:73": "p10-25",
    "sa:00082:74": "p10-26",
    "sa:00082:75": "e10-32",
    "sa:00082:76": "e10-35",
    "sa:00091:55": "e12-25",
    "sa:00094:64": "e0-24",
    "sa:00095:53": "e12-56",
    "sa:00096:63": "e21-45",
    "sa:00096:64": "e5-18",
    "sa:00098:74": "e25-61",
    "sa:00103:43": "e15-39",
    "sa:00105:53": "e28-44",
    "sa:00106:51": "e27-44",
    "sa:00107:113": "e0-17",
    "sa:00107:132": "p0-10",
    "sa:00107:77": "e91-104",
    "sa:00107:79": "e29-48",
    "sa:00112:49": "e23-39",
    "sa:00114:45": "e22-38",
    "sa:00117:63": "e8-27 e36-55",
    "sa:00117:93": "e2-19",
    "sa:00118:129": "p3-17 p22-36",
    "sa:00121:58": "p2-12",
    "sa:00125:84": "e0-24 e40-68",
    "sa:00131:45": "e26-45",
    "sa:00131:47": "e22-40",
    "sa:00131:48": "e14-27",
    "sa:00132:154": "e13-29",
    "sa:00136:53": "e29-52",
    "sa:00136:55": "e18-31",
    "sa:00141:49": "e0-14 e18-32",
    "sa:00142:66": "e0-27",
    "sa:00143:51": "e6-25 e34-53",
    "sa:00143:52": "e0-19",
    "sa:00144:45": "e14-30",
    "sa:00144:81": "p30-40",
    "sa:00144:82": "p30-40",
    "sa:00147:45": "e14-27",
    "sa:00148:43": "e16-29",
    "sa:00150:53": "e28-49",
    "sa:00150:54": "e4-36",
    "sa:00150:77": "p13-26 p29-43",
    "sa:00150:78": "p13-26",
    "sa:00150:80": "e18-39",
    "sa:00151:54": "e39-56",
    "sa:00151:55": "e0-16 e21-37",
    "sa:00151:56": "e25-42",
    "sa:00151:57": "e7-23",
    "sa:00151:58": "e0-17",
    "sa:00154:49": "e41-58",
    "sa:00154:50": "e2-18 e23-39",
    "sa:00154:51": "e27-44",
    "sa:00154:52": "e9-25",
    "sa:00154:53": "e2-19",
    "sa:00155:58": "e0-22",
    "sa:00155:60": "e23-45",
    "sa:00155:61": "e0-20",
    "sa:00155:63": "e18-40 e41-63",
    "sa:00156:64": "e40-60",
    "sa:00156:69": "e26-43",
    "sa:00157:50": "e20-42 e43-65",
    "sa:00158:44": "e17-41",
    "sa:00159:69": "p46-62",
    "sa:00159:70": "p46-62",
    "sa:00159:71": "p46-62",
    "sa:00164:45": "e23-37",
    "sa:00169:55": "e27-49",
    "sa:00177:48": "e29-45",
    "sa:00178:45": "e22-40",
    "sa:00181:60": "e0-16",
    "sa:00184:56": "e14-36",
    "sa:00187:59": "e21-43",
    "sa:00188:61": "e24-44",
    "sa:00188:72": "e21-54",
    "sa:00190:48": "e26-44",
    "sa:00190:75": "e52-70",
    "sa:00190:76": "p63-74",
    "sa:00195:40": "e14-36",
    "sa:00195:55": "e0-19",
    "sa:00196:48": "e23-42",
    "sa:00197:51": "e27-46",
    "sa:00201:52": "i0-12",
    "sa:00201:53": "i0-13",
    "sa:00205:47": "i30-43",
    "sa:00207:59": "e18-34",
    "sa:00211:50": "e0-19",
    "sa:00214:62": "e6-21 e30-45",
    "sa:00214:88": "e0-15",
    "sa:00217:48": "e6-29 e38-61",
    "sa:00222:49": "e29-48",
    "sa:00222:52": "e6-25",
    "sa:00222:53": "e5-34 e37-66",
    "sa:00228:44": "e16-38",
    "sa:00232:53": "e51-71",
    "sa:00232:71": "e12-34",
    "sa:00234:50": "e22-42",
    "sa:00235:79": "e38-57",
    "sa:00235:80": "p4-18 p26-40 p48-63",
    "sa:00237:44": "e29-49 e51-64",
    "sa:00239:47": "e0-19",
    "sa:00241:40": "e8-31 e33-56",
    "sa:00241:61": "e0-19",
    "sa:00245:48": "e24-40",
    "sa:00246:60": "i19-30",
    "sa:00249:45": "e25-50",
    "sa:00253:45": "e52-68",
    "sa:00254:57": "e54-70",
    "sa:00255:92": "e45-63",
    "sa:00256:48": "e42-57",
    "sa:00257:40": "e8-23 e25-40",
    "sa:00257:54": "e0-19",
    "sa:00258:54": "e42-65",
    "sa:00259:67": "e42-65",
    "sa:00260:42": "e25-40",
    "sa:00260:64": "e0-19",
    "sa:00272:84": "e0-16",
    "sa:00281:72": "e0-44",
    "sa:00283:50": "e16-40",
    "sa:00283:51": "e4-21",
    "sa:00287:72": "e25-51",
    "sa:00291:60": "e2-46",
    "sa:00291:64": "e25-69",
    "sa:00294:77": "e1-17",
    "sa:00294:78": "e31-46 e50-65",
    "sa:00295:48": "e18-39",
    "sa:00298:52": "p1-9",
    "sa:00300:65": "p3-11",
    "sa:00314:47": "e11-29",
    "sa:00323:40": "e13-33",
    "sa:00328:91": "p20-34",
    "sa:00329:100": "p22-36",
    "sa:00329:111": "e21-40",
    "sa:00339:41": "e22-40",
    "sa:00339:73": "e0-19",
    "sa:00340:68": "e27-40",
    "sa:00340:70": "e18-37",
    "sa:00343:39": "e11-30",
    "sa:00344:39": "e12-27",
    "sa:00347:41": "e22-38",
    "sa:00350:39": "e18-34",
    "sa:00351:43": "e22-34",
    "sa:00354:45": "e20-36",
    "sa:00355:42": "e24-40",
    "sa:00356:40": "e20-35",
    "sa:00359:44": "e11-30",
    "sa:00361:49": "e13-32",
    "sa:00364:46": "e13-32",
    "sa:00366:89": "p16-30",
    "sa:00366:90": "p16-31",
    "sa:00366:91": "e16-40",
    "sa:00374:79": "e25-40",
    "sa:00386:64": "e25-69",
    "sa:00389:54": "p5-19",
    "sa:00389:55": "p5-19",
    "sa:00390:42": "e45-61",
    "sa:00393:50": "p10-26",
    "sa:00393:53": "e22-43",
    "sa:00393:55": "e28-41",
    "sa:00394:41": "e8-35",
    "sa:00410:41": "e23-47",
    "sa:00487:74": "e0-17",
    "sa:00488:54": "e15-33",
    "sa:00489:102": "e0-18",
    "sa:00489:103": "p9-23",
    "sa:00489:104": "p9-23",
    "sa:00490:40": "e13-30",
    "sa:00490:41": "e13-35",
    "sa:00492:41": "e13-40",
    "sa:00493:71": "e1-18",
    "sa:00493:77": "e4-19 p46-62",
    "sa:00495:37": "e4-21",
    "sa:00495:47": "e11-33",
    "sa:00496:52": "i13-26",
    "sa:00497:53": "i14-27",
    "sa:00497:73": "p59-70",
    "sa:00498:109": "e2-19",
    "sa:00498:56": "e23-46",
    "sa:00498:57": "e5-18",
    "sa:00498:69": "i16-29",
    "sa:00498:87": "e3-20",
    "sa:00498:91": "p61-72",
    "sa:00499:111": "e4-21",
    "sa:00499:58": "e24-47",
    "sa:00499:59": "e6-19",
    "sa:00499:71": "i18-31",
    "sa:00499:89": "e5-22",
    "sa:00499:93": "p63-74",
    "sa:00500:110": "e7-24",
    "sa:00500:115": "p65-76",
    "sa:00500:137": "e6-23",
    "sa:00500:73": "e26-49",
    "sa:00500:74": "e8-21",
    "sa:00500:86": "i20-33",
    "sa:00502:37": "e4-21",
    "sa:00502:50": "e11-28",
    "sa:00502:53": "e11-32",
    "sa:00507:57": "e0-15",
    "sa:00510:69": "e2-17",
    "sa:00526:82": "e0-33",
    "sa:00527:88": "p20-34 p38-52",
    "sa:00528:89": "e2-35",
    "sa:00530:55": "e17-40",
    "sa:00530:66": "e46-68",
    "sa:00536:61": "e0-15",
    "sa:00537:56": "e9-33",
    "sa:00538:51": "e11-35",
    "sa:00543:61": "e14-40 e47-65",
    "sa:00543:94": "e2-35",
    "sa:00544:108": "p0-12",
    "sa:00544:97": "e1-34",
    "sa:00546:110": "p2-14",
    "sa:00546:60": "e35-53",
    "sa:00546:61": "e5-40",
    "sa:00546:99": "e3-36",
    "sa:00547:72": "e8-22",
    "sa:00548:62": "e14-26",
    "sa:00548:63": "e14-25",
    "sa:00548:64": "i35-50",
    "sa:00548:66": "e6-15",
    "sa:00548:67": "e41-53",
    "sa:00548:68": "e4-13",
    "sa:00548:77": "e14-55",
    "sa:00548:78": "e14-26",
    "sa:00548:80": "i1-16",
    "sa:00548:82": "e6-18",
    "sa:00549:101": "i3-18",
    "sa:00549:103": "e8-20",
    "sa:00549:83": "e16-28",
    "sa:00549:84": "e16-27",
    "sa:00549:85": "i37-52",
    "sa:00549:87": "e8-17",
    "sa:00549:88": "e43-55",
    "sa:00549:89": "e6-15",
    "sa:00549:92": "e15-57",
    "sa:00549:98": "e16-57",
    "sa:00549:99": "e16-28",
    "sa:00559:157": "i42-54",
    "sa:00559:159": "i42-54",
    "sa:00559:164": "i7-19",
    "sa:00559:167": "i56-68",
    "sa:00559:59": "e27-41",
    "sa:00559:60": "e12-24",
    "sa:00559:61": "e5-40",
    "sa:00561:86": "e17-35",
    "sa:00562:164": "e5-18",
    "sa:00562:165": "p5-17 p24-36",
    "sa:00562:80": "e15-40",
    "sa:00562:81": "e12-30",
    "sa:00562:83": "e6-20",
    "sa:00562:84": "e21-34",
    "sa:00562:86": "e10-30",
    "sa:00562:87": "e15-29",
    "sa:00562:90": "e19-41",
    "sa:00562:92": "e21-35",
    "sa:00562:93": "e21-43",
    "sa:00562:95": "e19-41",
    "sa:00563:142": "e3-16",
    "sa:00563:143": "p3-15 p22-34",
    "sa:00563:63": "e13-38",
    "sa:00563:64": "e10-28",
    "sa:00563:66": "e4-18",
    "sa:00563:67": "e19-32",
    "sa:00563:69": "e8-28",
    "sa:00563:70": "e13-27",
    "sa:00563:73": "e17-39",
    "sa:00563:75": "e19-33",
    "sa:00563:76": "e19-41",
    "sa:00563:78": "e17-39",
    "sa:00564:77": "e4-27",
    "sa:00565:61": "e33-50",
    "sa:00566:55": "e12-26",
    "sa:00568:57": "e25-45",
    "sa:00569:114": "e13-30 e46-63",
    "sa:00569:118": "e10-43",
    "sa:00569:120": "e15-48 e50-73",
    "sa:00569:65": "e6-41",
    "sa:00572:69": "e29-45",
    "sa:00575:65": "e15-31",
    "sa:00583:112": "e2-35",
    "sa:00583:59": "e32-46",
    "sa:00584:61": "e4-18",
    "sa:00585:64": "e24-46",
    "sa:00585:65": "e22-39",
    "sa:00585:66": "e5-19 e40-75",
    "sa:00585:72": "e18-35",
    "sa:00585:84": "e48-70",
    "sa:00586:149": "e24-48",
    "sa:00586:60": "e4-18 e20-55",
    "sa:00586:90": "e4-39",
    "sa:00587:59": "e27-54",
    "sa:00587:62": "e4-39",
    "sa:00589:58": "e25-53",
    "sa:00590:61": "e7-27",
    "sa:00590:64": "e35-57",
    "sa:00590:73": "e3-33",
    "sa:00590:95": "e51-68",
    "sa:00591:73": "e0-16",
    "sa:00597:69": "e18-53",
    "sa:00597:82": "e2-24",
    "sa:00597:99": "e33-55",
    "sa:00598:60": "e16-51",
    "sa:00598:71": "e0-22",
    "sa:00604:57": "e8-49",
    "sa:00604:58": "e10-49",
    "sa:00606:64": "e28-46",
    "sa:00606:66": "e22-57",
    "sa:00615:58": "e8-25",
    "sa:00615:59": "e6-41",
    "sa:00621:98": "e4-37",
    "sa:00623:131": "e4-37",
    "sa:00624:112": "e6-39",
    "sa:00625:52": "i38-49",
    "sa:00625:66": "i19-30",
    "sa:00627:56": "e22-40",
    "sa:00627:57": "e12-24",
    "sa:00627:58": "e6-41",
    "sa:00631:101": "e29-51",
    "sa:00631:119": "p2-14",
    "sa:00631:120": "p2-14",
    "sa:00631:121": "e2-24",
    "sa:00631:126": "e36-58",
    "sa:00631:128": "e7-42",
    "sa:00631:64": "p0-12",
    "sa:00631:65": "p0-12",
    "sa:00631:66": "e0-22",
    "sa:00631:71": "e6-47",
    "sa:00631:72": "e8-47",
    "sa:00631:96": "p5-17",
    "sa:00631:97": "p5-17",
    "sa:00631:98": "e0-17",
    "sa:00633:58": "p7-21 p37-51",
    "sa:00642:72": "e0-17",
    "sa:00647:106": "e18-39",
    "sa:00647:107": "e9-44",
    "sa:00647:164": "e8-43",
    "sa:00647:165": "e24-50",
    "sa:00647:180": "p11-25 p41-55",
    "sa:00647:191": "e4-37",
    "sa:00647:95": "e10-49",
    "sa:00647:98": "e6-27",
    "sa:00670:74": "e0-39",
    "sa:00680:104": "e0-23",
    "sa:00680:72": "e3-26",
    "sa:00680:98": "e0-17",
    "sa:00681:123": "p19-34",
    "sa:00681:79": "e26-47",
    "sa:00681:82": "e28-49",
    "sa:00682:106": "e0-13",
    "sa:00682:113": "e0-21",
    "sa:00682:67": "e39-57",
    "sa:00682:68": "e2-26 e38-51",
    "sa:00682:87": "e4-22",
    "sa:00682:93": "e21-40",
    "sa:00686:80": "e26-47",
    "sa:00686:93": "e29-44",
    "sa:00689:81": "e22-39",
    "sa:00704:128": "e3-24",
    "sa:00704:70": "e3-13",
    "sa:00704:71": "e13-39",
    "sa:00706:70": "e0-40",
    "sa:00720:100": "e4-25",
    "sa:00720:103": "e23-63",
    "sa:00720:94": "e14-54",
    "sa:00720:95": "e14-35",
    "sa:00720:97": "i54-63 e84-124",
    "sa:00720:99": "e15-36",
    "sa:00721:103": "e13-54",
    "sa:00721:105": "i45-59",
    "sa:00721:107": "e6-33",
    "sa:00721:108": "e62-78",
    "sa:00721:109": "i79-93",
    "sa:00721:111": "e6-22",
    "sa:00721:112": "i70-79",
    "sa:00721:115": "e14-57",
    "sa:00721:116": "i73-87",
    "sa:00721:118": "e6-37",
    "sa:00721:121": "e5-36",
    "sa:00721:122": "i47-60",
    "sa:00721:124": "e6-29",
    "sa:00721:125": "i36-50",
    "sa:00721:127": "e6-29",
    "sa:00721:128": "e6-22",
    "sa:00721:129": "e64-99",
    "sa:00721:130": "i57-69",
    "sa:00721:132": "e6-29",
    "sa:00721:133": "i45-58",
    "sa:00721:135": "e6-29",
    "sa:00721:136": "i35-44",
    "sa:00721:138": "e6-29",
    "sa:00721:140": "e4-39",
    "sa:00721:142": "e10-34",
    "sa:00721:144": "e8-43",
    "sa:00721:145": "e8-49",
    "sa:00721:146": "e11-52",
    "sa:00721:147": "e13-48",
    "sa:00721:150": "e19-62",
    "sa:00721:151": "e19-54",
    "sa:00721:153": "e9-40",
    "sa:00721:156": "e9-40",
    "sa:00722:79": "e10-26",
    "sa:00722:89": "e8-24",
    "sa:00724:68": "e12-29",
    "sa:00724:91": "e0-18",
    "sa:00724:93": "e4-28",
    "sa:00725:83": "e9-30 p40-54 p56-71",
    "sa:00735:78": "e26-49",
    "sa:00738:73": "e5-39",
    "sa:00739:70": "e0-25",
    "sa:00740:90": "e2-27",
    "sa:00740:95": "e5-33",
    "sa:00745:72": "e42-53",
    "sa:00745:85": "e40-51",
    "sa:00757:61": "e1-17",
    "sa:00758:72": "e1-17",
    "sa:00759:68": "e14-32",
    "sa:00760:84": "e8-26",
    "sa:00760:85": "p11-27 p37-52 p58-72",
    "sa:00770:62": "e30-48",
    "sa:00771:101": "e4-25",
    "sa:00771:84": "e34-52",
    "sa:00773:83": "e28-49",
    "sa:00774:57": "e14-27",
    "sa:00774:58": "e16-34",
    "sa:00775:69": "e10-27",
    "sa:01283:105": "e31-56",
    "sa:01283:106": "e0-22",
    "sa:01283:134": "e22-39",
    "sa:01283:136": "p5-19 p27-39",
    "sa:01283:137": "p5-19 p27-42",
    "sa:01284:66": "e31-53",
    "sa:01284:68": "e4-43",
    "sa:01284:82": "e3-23",
    "sa:01289:77": "i7-16",
    "sa:01289:90": "e50-69",
    "sa:01290:77": "e46-64",
    "sa:01307:78": "p7-21 p27-41",
    "sa:01308:80": "e0-21",
    "sa:01311:101": "i43-56",
    "sa:01311:103": "i50-61",
    "sa:01311:108": "e25-55",
    "sa:01311:109": "e26-67",
    "sa:01311:113": "e17-32",
    "sa:01311:120": "e8-55",
    "sa:01311:121": "e11-58",
    "sa:01311:122": "e13-54",
    "sa:01311:125": "e19-68",
    "sa:01311:126": "e19-60",
    "sa:01311:128": "e9-56",
    "sa:01311:131": "e9-56",
    "sa:01311:65": "e1-18 i51-66",
    "sa:01311:75": "e25-42",
    "sa:01311:77": "i58-73",
    "sa:01311:85": "i37-46",
    "sa:01311:87": "e6-23",
    "sa:01311:88": "i33-45 i81-90 e134-151",
    "sa:01311:89": "i73-88",
    "sa:01311:91": "e6-23",
    "sa:01311:92": "i48-57",
    "sa:01311:95": "i33-46",
    "sa:01311:98": "e6-45",
    "sa:01311:99": "i36-47",
    "sa:01313:53": "p61-73",
    "sa:01322:58": "e36-61",
    "sa:01322:62": "e1-27",
    "sa:01322:63": "e36-70",
    "sa:01322:76": "e0-26",
    "sa:01322:78": "e0-28",
    "sa:01322:79": "e0-34",
    "sa:01322:82": "e0-25",
    "sa:01357:64": "e21-39",
    "sa:01366:56": "e3-21",
    "sa:01366:99": "e10-38",
    "sa:01391:104": "e2-41",
    "sa:01391:112": "e0-15",
    "sa:01391:113": "e0-20",
    "sa:01391:114": "p0-13",
}
_CODES = {"e": "email", "p": "phone", "i": "ip_address", "c": "payment_card", "n": "national_id"}

# Shape checks run on every hand label, so a changed data file fails loudly instead of silently
# mislabelling.
_SHAPES = {
    "email": re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]+"),
    "phone": re.compile(r"[+(\d][\d\s().+/\-]*\d"),
    "ip_address": re.compile(r"[\d.:A-Fa-f]+"),
}

_ADDRESS_HEADERS = re.compile(
    r"(?i)^(from|to|cc|reply-to|sender|errors-to|return-path|delivered-to|x-beenthere|"
    r"resent-from|resent-to):"
)
_SKIP_LINE = re.compile(r"^[>\s|]*(?:message-id|content-id|references|in-reply-to)\s*:", re.I)
_QUAD = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w|\.\d)")
_V6_LITERAL = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f]*:[0-9A-Fa-f:.]*)\]")
_NAME_IS_ADDRESS = re.compile(r"[^\s@\"'<>]+@[^\s@\"'<>]+")
_KAGGLE_HEADERS = re.compile(r" From: (.*?) To: (.*?) Subject:")
_KAGGLE_BODY = re.compile(r"X-FileName: \S+(?: \(Non-Privileged\)\.pst|\.nsf)?")


def _parse_hand(spec: str) -> tuple[tuple[str, int, int], ...]:
    out = []
    for item in spec.split():
        start, end = item[1:].split("-")
        out.append((_CODES[item[0]], int(start), int(end)))
    return tuple(out)


def _locate_addresses(text: str, value_offset: int) -> list[tuple[str, int, int]] | None:
    """Label the addresses of an address-header value; ``None`` if the rule cannot be applied.

    The addr-specs come from :func:`email.utils.getaddresses`. A display name that is itself an
    address (``"'list@example.org'" <list@example.org>``) is labelled too.
    """
    spans: list[tuple[str, int, int]] = []
    cursor = value_offset
    for name, addr in getaddresses([text[value_offset:]]):
        if "@" not in addr:
            continue
        shown = name.strip("'\" ")
        wanted = [shown] if _NAME_IS_ADDRESS.fullmatch(shown) else []
        for item in [*wanted, addr]:
            if "." not in item.rsplit("@", 1)[1]:
                return None
            pos = text.find(item, cursor)
            if pos < 0:
                return None
            spans.append(("email", pos, pos + len(item)))
            cursor = pos + len(item)
    return spans


def _sa_files(root: Path) -> list[Path]:
    return sorted((root / "spamassassin_ham" / "emails").glob("*.eml"))


def _sa_lines(path: Path) -> list[str]:
    return path.read_bytes().decode("latin-1").split("\n")


def _sa_id(path: Path) -> str:
    return path.name.split(".")[1]


def _sa_header_units(root: Path) -> Iterator[LabelledUnit]:
    seen_addr: set[str] = set()
    seen_recv: set[str] = set()
    for path in _sa_files(root):
        lines = _sa_lines(path)
        current = ""
        for i, line in enumerate(lines):
            if line == "":
                break
            m = re.match(r"([A-Za-z0-9-]+):", line)
            if m:
                current = m.group(1).lower()
            loc = f"sa:{_sa_id(path)}:{i + 1}"
            if current == "received":
                if line in seen_recv or not (
                    re.search(r"\d\.\d", line) or _V6_LITERAL.search(line)
                ):
                    continue
                seen_recv.add(line)
                spans: list[tuple[str, int, int]] = []
                for v6 in _V6_LITERAL.finditer(line):
                    spans.append(("ip_address", v6.start(1), v6.end(1)))
                for q in _QUAD.finditer(line):
                    if any(s <= q.start() < e for _, s, e in spans):
                        continue
                    if not all(int(p) <= 255 for p in q.group().split(".")):
                        continue
                    if line[: q.start()].endswith("NAVGW "):
                        continue
                    spans.append(("ip_address", q.start(), q.end()))
                yield LabelledUnit(
                    "sa_received",
                    loc,
                    line,
                    tuple(sorted(spans, key=lambda s: s[1])),
                    _NON_IP,
                    REGIONS["sa_received"],
                )
                continue
            hm = _ADDRESS_HEADERS.match(line)
            if not hm or line in seen_addr:
                continue
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if nxt[:1] in (" ", "\t"):
                continue
            seen_addr.add(line)
            found = _locate_addresses(line, hm.end())
            if found is None:
                continue
            yield LabelledUnit(
                "sa_headers",
                loc,
                line,
                tuple(found),
                _NON_EMAIL | {"email"},
                REGIONS["sa_headers"],
            )


def _keep_body_line(line: str) -> bool:
    if _SKIP_LINE.match(line):
        return False
    if sum(map(line.count, "0123456789")) >= 7 or "@" in line:
        return True
    return bool(
        re.search(r"\d\.\d+\.\d+\.\d", line) or re.search(r"[0-9A-Fa-f]:[0-9A-Fa-f]{0,4}:", line)
    )


def _body_line_units(root: Path) -> Iterator[LabelledUnit]:
    seen: set[str] = set()

    def unit(source: str, loc: str, line: str) -> LabelledUnit | None:
        if line in seen or not _keep_body_line(line):
            return None
        seen.add(line)
        spans = _parse_hand(HAND_LABELS.get(loc, ""))
        return LabelledUnit(source, loc, line, spans, ALL_CATEGORIES, REGIONS[source])

    for path in _sa_files(root):
        lines = _sa_lines(path)
        start = lines.index("") + 1
        for i in range(start, len(lines)):
            u = unit("sa_body", f"sa:{_sa_id(path)}:{i + 1}", lines[i])
            if u:
                yield u
    for path in sorted((root / "enron_aeslc" / "emails").glob("*")):
        for i, line in enumerate(path.read_text(encoding="utf-8").split("\n")):
            if line.startswith("@subject"):
                break
            u = unit("aeslc_body", f"aeslc:{path.name}:{i + 1}", line)
            if u:
                yield u
    pages = root / "handbook_18f" / "pages"
    for path in sorted(pages.glob("**/*.md")):
        rel = path.relative_to(pages).as_posix()
        for i, line in enumerate(path.read_text(encoding="utf-8").split("\n")):
            u = unit("hb_pages", f"hb:{rel}:{i + 1}", line)
            if u:
                yield u


def _kaggle_units(root: Path) -> Iterator[LabelledUnit]:
    path = root / "enron_kaggle_sample" / "enron_sample_rows_1-40.csv"
    csv.field_size_limit(sys.maxsize)
    seen: set[str] = set()
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        msg = row["message"]
        hm = _KAGGLE_HEADERS.search(msg)
        if hm:
            for field in (1, 2):
                value = hm.group(field).strip()
                if not value or value in seen:
                    continue
                seen.add(value)
                found = _locate_addresses(value, 0)
                if found is not None:
                    yield LabelledUnit(
                        "ek_headers",
                        f"ek:{row['id']}:h{field}",
                        value,
                        tuple(found),
                        _NON_EMAIL | {"email"},
                        REGIONS["ek_headers"],
                    )
        bm = _KAGGLE_BODY.search(msg)
        if bm:
            body = msg[bm.end() :]
            if body in seen:
                continue
            seen.add(body)
            loc = f"ek:{row['id']}"
            yield LabelledUnit(
                "ek_body",
                loc,
                body,
                _parse_hand(HAND_LABELS.get(loc, "")),
                ALL_CATEGORIES,
                REGIONS["ek_body"],
            )


def _check(unit: LabelledUnit) -> None:
    for category, start, end in unit.spans:
        shape = _SHAPES.get(category)
        if not 0 <= start < end <= len(unit.text) or (
            shape and not shape.fullmatch(unit.text[start:end])
        ):
            raise ValueError(f"label {category} {start}-{end} does not fit {unit.locator}")


def real_units(root: Path | None = None) -> list[LabelledUnit]:
    """Select and label the real units; an empty list when shared/data is not there.

    Raises:
        ValueError: If a hand label no longer fits its text (the data changed).
    """
    root = root or default_data_root()
    if root is None:
        return []
    units = [*_sa_header_units(root), *_body_line_units(root), *_kaggle_units(root)]
    known = {u.locator for u in units}
    missing = [loc for loc in HAND_LABELS if loc not in known]
    if missing:
        raise ValueError(f"hand labels for units that were not selected: {missing[:5]}")
    for u in units:
        _check(u)
    return units


# Fictional examples: (text, [(category, substring), ...]). Substrings are located left to right.
SYNTHETIC: list[tuple[str, list[tuple[str, str]]]] = [
    # e-mail
    (
        "Dana Whitfield's work e-mail is dana.whitfield@example.com.",
        [("email", "dana.whitfield@example.com")],
    ),
    (
        "Reach the Acme billing team at billing+invoices@acme.example.org or via the portal.",
        [("email", "billing+invoices@acme.example.org")],
    ),
    (
        "Send the signed NDA to LEGAL@Example.CO.UK before Friday.",
        [("email", "LEGAL@Example.CO.UK")],
    ),
    (
        "Omar (omar_k@mail.example.net) will join the kickoff.",
        [("email", "omar_k@mail.example.net")],
    ),
    (
        "CC: a.b-c@sub.domain.example, x@y.example",
        [("email", "a.b-c@sub.domain.example"), ("email", "x@y.example")],
    ),
    ("Mention @channel in Slack or ping @dana for access.", []),
    ("The login is admin@localhost on the test box.", []),
    ("Bob used the handle bob@work in the chat.", []),
    # phones
    ("Dana's office phone is (212) 555-0142.", [("phone", "(212) 555-0142")]),
    ("Call the front desk on +1 202 555 0147 between 9 and 5.", [("phone", "+1 202 555 0147")]),
    ("His mobile is 202.555.0173.", [("phone", "202.555.0173")]),
    ("The London office number is +44 20 7946 0958.", [("phone", "+44 20 7946 0958")]),
    ("Siobhan can be reached on +353 87 555 0199 after 6pm.", [("phone", "+353 87 555 0199")]),
    ("Support line: 1-800-555-0199, option 2.", [("phone", "1-800-555-0199")]),
    (
        "Fax 312-555-0110 / phone 312-555-0111",
        [("phone", "312-555-0110"), ("phone", "312-555-0111")],
    ),
    ("The Sydney team uses +61 2 5550 1234 for the hotline.", [("phone", "+61 2 5550 1234")]),
    ("Paris reception: +33 1 99 00 12 34.", [("phone", "+33 1 99 00 12 34")]),
    ("Extension: call (646) 555-0163 ext. 204 for sales.", [("phone", "(646) 555-0163 ext. 204")]),
    # phone-like negatives
    ("Acme released version 2.4.18 on 2002-07-19.", []),
    ("The contract runs from 01/07/2021 to 30/06/2024.", []),
    ("Revenue grew from $1,234,567 to $2,345,678 in 2023.", []),
    ("Order #12345678 shipped on 2024-03-05 at 14:32:10.", []),
    ("Invoice INV-2023-000123 is overdue by 45 days.", []),
    ("The ISBN of the handbook is 978-0-306-40615-7.", []),
    ("Build 20020722 fixed the bug reported in ticket 4471923.", []),
    ("The meeting is at 10:30-11:45 in room 3.14, floor 2.", []),
    ("The population of Dublin was 1,173,179 in 2016.", []),
    ("Acme paid 3,500,000 EUR for 12.5% of the company in 2019.", []),
    ("Model number XR-2000-5540 ships with firmware 10.2.1.", []),
    ("Coordinates 38.8977, -77.0365 mark the office.", []),
    # payment cards
    ("Customer paid with card 4111 1111 1111 1111.", [("payment_card", "4111 1111 1111 1111")]),
    ("The corporate Mastercard is 5555-5555-5555-4444.", [("payment_card", "5555-5555-5555-4444")]),
    ("Amex on file: 3782 822463 10005.", [("payment_card", "3782 822463 10005")]),
    ("Card number 6011111111111117 was declined.", [("payment_card", "6011111111111117")]),
    ("Backup card 4012888888881881 expires 12/27.", [("payment_card", "4012888888881881")]),
    # card-like negatives (Luhn-invalid or not a card)
    ("Card number 4111 1111 1111 1112 was rejected as invalid.", []),
    ("Reference 1234 5678 9012 3456 is not a card.", []),
    ("Tracking number 1Z999AA10123456784 was sent by UPS.", []),
    ("The Slack thread id is p1536779475000100.", []),
    ("Account ts 1674077147.004539 logged the event.", []),
    # national ids
    ("Her SSN is 536-90-4399.", [("national_id", "536-90-4399")]),
    ("SSN: 536904399 on the W-2 form.", [("national_id", "536904399")]),
    ("Invalid SSN 666-12-3456 and 000-12-3456 were rejected.", []),
    ("His National Insurance number is AB 12 34 56 C.", [("national_id", "AB 12 34 56 C")]),
    ("NINO AB123456C is on the payslip.", [("national_id", "AB123456C")]),
    ("Her PPS number is 1234567T.", [("national_id", "1234567T")]),
    ("PPS 1234567TW was issued in 2013.", [("national_id", "1234567TW")]),
    ("His SIN is 123-456-782.", [("national_id", "123-456-782")]),
    ("Aadhaar 2341 2341 2346 was used for KYC.", [("national_id", "2341 2341 2346")]),
    ("The EIN 12-3456789 belongs to the company.", []),
    # IP addresses
    ("The VPN gateway is 192.0.2.10.", [("ip_address", "192.0.2.10")]),
    (
        "Blocked 198.51.100.23 and 203.0.113.7 after the attack.",
        [("ip_address", "198.51.100.23"), ("ip_address", "203.0.113.7")],
    ),
    ("The server listens on 192.0.2.44:8443.", [("ip_address", "192.0.2.44")]),
    (
        "Her home router has IPv6 address 2001:db8:85a3::8a2e:370:7334.",
        [("ip_address", "2001:db8:85a3::8a2e:370:7334")],
    ),
    (
        "The full form is 2001:0db8:0000:0000:0000:ff00:0042:8329.",
        [("ip_address", "2001:0db8:0000:0000:0000:ff00:0042:8329")],
    ),
    (
        "Loopback ::1 and link-local fe80::1ff:fe23:4567:890a are allowed.",
        [("ip_address", "::1"), ("ip_address", "fe80::1ff:fe23:4567:890a")],
    ),
    (
        "Mapped address ::ffff:192.0.2.128 appeared in the log.",
        [("ip_address", "::ffff:192.0.2.128")],
    ),
    # IP-like negatives
    ("Upgrade to version 1.2.3.4 before the audit.", []),
    ("The value 300.1.2.3 is not an address.", []),
    ("MAC 00:1A:2B:3C:4D:5E belongs to the printer.", []),
    ("The call started at 12:30:45 and used std::vector.", []),
    ("The aspect ratio is 16:9:4 in the spec.", []),
    # mixed
    (
        "Dana (dana@example.com, +1 212 555 0142) moved from 192.0.2.1 to 2001:db8::2.",
        [
            ("email", "dana@example.com"),
            ("phone", "+1 212 555 0142"),
            ("ip_address", "192.0.2.1"),
            ("ip_address", "2001:db8::2"),
        ],
    ),
    (
        "Pay 4111-1111-1111-1111, SSN 536-90-4399, phone (415) 555-0100.",
        [
            ("payment_card", "4111-1111-1111-1111"),
            ("national_id", "536-90-4399"),
            ("phone", "(415) 555-0100"),
        ],
    ),
    ("See https://example.com/report?id=2125550142&v=1.2.3.4 for details.", []),
    (
        "Email jo@example.org; the web page is www.example.org/contact/2125550199.",
        [("email", "jo@example.org")],
    ),
]


def synthetic_units() -> list[LabelledUnit]:
    """The fictional examples as labelled units (exhaustive for every category)."""
    units = []
    for n, (text, expected) in enumerate(SYNTHETIC):
        spans = []
        cursor = 0
        for category, sub in expected:
            pos = text.index(sub, cursor)
            spans.append((category, pos, pos + len(sub)))
            cursor = pos + len(sub)
        units.append(
            LabelledUnit("synthetic", f"syn:{n}", text, tuple(spans), ALL_CATEGORIES, "US")
        )
    return units


def all_units(root: Path | None = None) -> list[LabelledUnit]:
    """Real units (if shared/data is present) followed by the synthetic ones."""
    return [*real_units(root), *synthetic_units()]


# Sensitive-category sample for ``strict``: fictional memory sentences and the categories a
# careful human would flag ([] = neutral, must be kept).
SENSITIVE_SAMPLE: list[tuple[str, list[str]]] = [
    ("Ana was diagnosed with type 2 diabetes in 2019.", ["health"]),
    ("Marco is recovering from knee surgery and works from home.", ["health"]),
    ("Priya is pregnant and starts maternity leave in May.", ["health"]),
    ("Tom takes medication for high blood pressure.", ["health"]),
    ("Lena has been on sick leave since March because of burnout.", ["health"]),
    ("Jae sees a therapist every week for his anxiety disorder.", ["health"]),
    ("Sam's son is autistic.", ["health"]),
    ("Chris had a heart attack last year.", ["health"]),
    ("Nina is allergic to peanuts.", ["health"]),
    ("Grace was in hospital for two weeks in June.", ["health"]),
    ("Ravi is HIV-positive.", ["health"]),
    ("Kim is undergoing chemotherapy.", ["health"]),
    ("Joe is a devout Catholic and goes to mass every Sunday.", ["religion"]),
    ("Aisha observes Ramadan and prefers no lunch meetings that month.", ["religion"]),
    ("David is Jewish.", ["religion"]),
    ("Mei is a practising Buddhist.", ["religion"]),
    ("Luis is an atheist.", ["religion"]),
    ("Alex is gay and lives with his partner in Cork.", ["sexual_orientation"]),
    ("Jordan identifies as bisexual.", ["sexual_orientation"]),
    ("Robin is transgender.", ["sexual_orientation"]),
    ("Kate volunteers for an LGBTQ support group.", ["sexual_orientation"]),
    ("Pat is a member of the Labour Party.", ["political_opinion"]),
    ("Mike is a registered Republican.", ["political_opinion"]),
    ("Siobhan canvassed for Sinn Féin in the last election.", ["political_opinion"]),
    ("Hugo holds far-right political views.", ["political_opinion"]),
    ("Carmen is Hispanic.", ["ethnicity"]),
    ("Kwame is of Ghanaian descent.", ["ethnicity"]),
    ("The survey recorded Li's ethnicity as Han Chinese.", ["ethnicity"]),
    ("Dermot is a SIPTU shop steward.", ["trade_union"]),
    ("Eva is a trade union member.", ["trade_union"]),
    ("Acme collects employees' biometric data at the door.", ["biometric_genetic"]),
    ("Zoe's genetic test showed a BRCA1 mutation.", ["health", "biometric_genetic"]),
    ("Frank has a criminal record for fraud.", ["criminal_record"]),
    ("Gary was convicted of drunk driving in 2015.", ["criminal_record"]),
    ("Ian served time in prison in the 1990s.", ["criminal_record"]),
    ("Dana works at Acme as head of finance.", []),
    ("Omar prefers morning meetings.", []),
    ("Siobhan moved from Dublin to Galway in 2021.", []),
    ("Christian Meyer leads the Berlin sales team.", []),
    ("Marco's team runs the disaster recovery drill every quarter.", []),
    ("The party for the product launch is on Friday.", []),
    ("Acme's union with Beta Corp closed in 2020.", []),
    ("Lena ran a 10k race in April.", []),
    ("Tom's GPG key fingerprint is on the wiki.", []),
    ("The economic depression of the 1930s is Ana's research topic.", []),
    ("Priya disabled two-factor login on the test account.", []),
    ("New hires have a six-month probation period.", []),
    ("Kim converted the report to PDF.", []),
    ("The team voted for the blue logo.", []),
    ("The feature is coming out next month.", []),
    ("Ellen Gay leads the Cork office.", []),
    ("Acme's genetic algorithm team ships on Tuesdays.", []),
    ("Our DNA as a company is customer focus.", []),
]


def main() -> None:
    """Print a summary, or with ``--show`` every real labelled span for a manual audit."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--show", action="store_true", help="print labelled spans (personal data)")
    args = parser.parse_args()
    units = all_units()
    counts: dict[str, int] = {}
    for u in units:
        for category, _, _ in u.spans:
            counts[f"{u.source}/{category}"] = counts.get(f"{u.source}/{category}", 0) + 1
        if args.show and u.source != "synthetic":
            for category, start, end in u.spans:
                print(f"{u.locator}\t{category}\t{u.text[start:end]!r}")
    for key in sorted(counts):
        print(f"{key}\t{counts[key]}")
    print(f"units={len(units)} spans={sum(counts.values())}")


if __name__ == "__main__":
    main()
