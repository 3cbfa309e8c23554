"""Applying the org's redaction tier to the memory texts of one answer.

``redaction.redact`` reads a phone number written without ``+<country code>`` in one default
region (US). Records are not all American: a Dublin signature's ``01 8xx xxxx`` is a valid Irish
number and an invalid US one. So each memory text is masked in every region the answer itself
points at: the country-code top-level domains of its e-mail addresses and web domains, and the
country of each phone number it states in international form. A number that follows a phone
label (``Tel:``, ``mobile``, ``fax`` ...) is masked whatever its region, because the label says
what it is. Typed contact properties (``email``, ``phone``) are never masked: only memory text is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from memo_pipeline.schema.output import ExtractionOutput
from memo_pipeline.stage2.redaction import PLACEHOLDERS, Tier, redact

DEFAULT_REGION = "US"
# Top-level domains that are not the region code of the same name.
TLD_REGIONS = {"uk": "GB"}
REGION_RE = re.compile(r"\.([a-z]{2})\.?$")
LABELLED_PHONE_RE = re.compile(
    r"\b(?:tel|telephone|phone|ph|mobile|mob|cell|cellphone|fax|call me on|call me at)\b\.?"
    r"\s*[:.]?\s*(\+?\(?\d[\d ()./-]{5,20}\d)",
    re.IGNORECASE,
)
MIN_PHONE_DIGITS = 7
MAX_PHONE_DIGITS = 15


@dataclass(frozen=True)
class MaskedMemory:
    text: str | None  # None: dropped by the ``strict`` tier
    dropped_reason: str | None = None


def _region_of(value: str) -> str | None:
    text = value.strip().lower()
    if text.startswith("+"):
        try:
            return phonenumbers.region_code_for_number(phonenumbers.parse(text)) or None
        except phonenumbers.NumberParseException:
            return None
    host = text.rsplit("@", 1)[-1].split("/", 1)[0]
    match = REGION_RE.search(host)
    if not match:
        return None
    region = TLD_REGIONS.get(match.group(1), match.group(1).upper())
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


def answer_regions(output: ExtractionOutput, identifier: str | None = None) -> tuple[str, ...]:
    """The default region first, then every region the answer's identifiers and values name."""
    values = [i for e in output.entities for i in e.identifiers]
    values += [p.value for p in output.properties if p.name in {"email", "phone", "domain"}]
    if identifier:
        values.append(identifier)
    found = {r for v in values if (r := _region_of(v)) and r != DEFAULT_REGION}
    return (DEFAULT_REGION, *sorted(found))


def _mask_labelled_phones(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = sum(c.isdigit() for c in match.group(1))
        if not MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS:
            return match.group(0)
        start = match.start(1) - match.start(0)
        return match.group(0)[:start] + PLACEHOLDERS["phone"]

    return LABELLED_PHONE_RE.sub(replace, text)


def mask_memory_text(text: str, tier: Tier, regions: tuple[str, ...]) -> MaskedMemory:
    """One memory text under the org's tier, with phone numbers read in each of ``regions``."""
    first = redact(text, tier, regions[0] if regions else DEFAULT_REGION)
    if first.text is None or tier == "off":
        return MaskedMemory(first.text, first.dropped_reason)
    masked = first.text
    for region in regions[1:]:
        # Placeholders hold no digits and no "@", so masking masked text again is safe.
        masked = redact(masked, "mask", region).text or masked
    return MaskedMemory(_mask_labelled_phones(masked).strip())


def masked_memories(
    output: ExtractionOutput, tier: Tier, identifier: str | None = None
) -> list[MaskedMemory]:
    """The answer's memories as they will be stored, in answer order."""
    regions = answer_regions(output, identifier)
    return [mask_memory_text(m.text, tier, regions) for m in output.memories]
