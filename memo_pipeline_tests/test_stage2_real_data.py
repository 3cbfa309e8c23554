"""Stage 2's done-when checks on real input from ../shared/data (skipped when it is absent): two
days of SpamAssassin mail and three LoCoMo sessions go through the bulk path, then the same
content is ingested a second time, as a re-run and as copies under new source ids. Checked:
no duplicate memories (exact or near), one entity per e-mail address or speaker, and with the
``mask`` tier no e-mail address or phone number in stored memory text while typed contact
properties keep theirs. Assertions compare counts only: no fact about a real person is written
into this file.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import phonenumbers

from memo_pipeline.ingest.loaders import LoadOptions, load
from memo_pipeline.records import ContentRecord
from memo_pipeline.stage2.dedup import NEAR_DUPLICATE_THRESHOLD
from memo_pipeline.stage2.identity import normalize_email, normalize_name
from memo_pipeline_tests.conftest import shared_data
from memo_pipeline_tests.test_stage2 import (
    duplicate_groups,
    land_items,
    rows,
    run_days,
    scalar,
    stores_agree,
)

SPAM_DAYS = ["2002-07-20", "2002-07-21"]
LOCOMO_SESSIONS = ["conv-26-session-1", "conv-26-session-2", "conv-26-session-3"]
# An independent check, not the redaction module's own detector: any address-shaped token, and
# any number that is a valid phone number in the regions this mail comes from.
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CHECK_REGIONS = ("US", "IE", "GB")


def pii_count(texts: list[str]) -> int:
    """How many texts still hold an e-mail address or a valid phone number."""
    found = 0
    for text in texts:
        phones = any(
            True
            for region in CHECK_REGIONS
            for _ in phonenumbers.PhoneNumberMatcher(text, region, phonenumbers.Leniency.VALID)
        )
        found += bool(EMAIL_RE.search(text) or phones)
    return found


def resent(records: list[ContentRecord]) -> list[ContentRecord]:
    """The same content again under new source ids: a second ingest of overlapping content."""
    return [r.model_copy(update={"source_id": f"resent:{r.source_id}"}) for r in records]


def near_duplicate_pairs(runtime) -> int:
    """Pairs of current memories of one entity at or above the near-duplicate threshold."""
    table = runtime.vectors.table().search().select(["entity_id", "vector"]).limit(None)
    by_entity: dict[str, list] = defaultdict(list)
    for row in table.to_arrow().to_pylist():
        by_entity[row["entity_id"]].append(row["vector"])
    pairs = 0
    for vectors in by_entity.values():
        if len(vectors) > 1:
            matrix = np.asarray(vectors, dtype=np.float32)
            scores = np.triu(matrix @ matrix.T, k=1)
            pairs += int((scores >= NEAR_DUPLICATE_THRESHOLD).sum())
    return pairs


def active_memories(runtime) -> list[dict]:
    return rows(runtime, "select text, source_record_ids from memories where superseded_by is null")


def assert_second_ingest_adds_nothing(runtime, records: list[ContentRecord], days: list[str]):
    before = active_memories(runtime)
    land_items(runtime, records, "again")
    land_items(runtime, resent(records), "resent")
    second = run_days(runtime, days)
    after = active_memories(runtime)

    assert sum(s.stage2.memories_new for s in second.values()) == 0
    assert sorted(m["text"] for m in after) == sorted(m["text"] for m in before)
    assert duplicate_groups(runtime) == 0 and near_duplicate_pairs(runtime) == 0
    # Every memory a record supports is now supported by its copy too.
    copies = {r.record_id: c.record_id for r, c in zip(records, resent(records), strict=True)}
    for memory in after:
        sources = set(memory["source_record_ids"])
        assert {copies[s] for s in sources if s in copies} <= sources
    assert stores_agree(runtime)


def test_spamassassin_mail_is_masked_deduplicated_and_one_entity_per_address(runtime):
    mail = shared_data("spamassassin_ham", "emails")
    records = [
        r
        for r in load(mail, "email", LoadOptions())
        if isinstance(r, ContentRecord) and r.partition_day in SPAM_DAYS
    ]
    assert len(records) > 20
    land_items(runtime, records, "spam")
    run_days(runtime, SPAM_DAYS)
    assert runtime.orgs["acme"].redaction == "mask"

    memories = active_memories(runtime)
    assert len(memories) > 50
    assert duplicate_groups(runtime) == 0 and near_duplicate_pairs(runtime) == 0
    assert pii_count([m["text"] for m in memories]) == 0

    # Typed contact properties keep the address and the number; only memory text is masked.
    emails = rows(
        runtime, "select value #>> '{}' as v from property_values where property = 'email'"
    )
    assert emails and all("@" in e["v"] and "[" not in e["v"] for e in emails)

    senders = {normalize_email(r.identifier) for r in records if r.identifier}
    owners = rows(
        runtime,
        "select i.identifier, e.merged_into from entity_identifiers i join entities e "
        "using (entity_id) where i.org_id = 'acme' and i.identifier = any(%s)",
        (sorted(senders),),
    )
    # Each sender's address belongs to exactly one current entity, however many messages.
    assert {o["identifier"] for o in owners} == senders
    assert all(o["merged_into"] is None for o in owners)
    assert (
        scalar(
            runtime,
            "select count(*) from entity_identifiers i join entities e using (entity_id) "
            "where e.merged_into is not null",
        )
        == 0
    )
    repeat_senders = len(senders) < sum(1 for r in records if r.identifier)
    assert repeat_senders  # the check above covers people who wrote more than once

    assert_second_ingest_adds_nothing(runtime, records, SPAM_DAYS)


def test_locomo_sessions_keep_one_entity_per_speaker_and_add_nothing_twice(runtime):
    chats = shared_data("locomo", "locomo10_shared_8conv.json")
    records = [
        r
        for r in load(chats, "locomo", LoadOptions())
        if isinstance(r, ContentRecord) and r.source_id in LOCOMO_SESSIONS
    ]
    assert len(records) == len(LOCOMO_SESSIONS)
    days = sorted({r.partition_day for r in records})
    land_items(runtime, records, "locomo")
    run_days(runtime, days)

    memories = active_memories(runtime)
    assert memories and pii_count([m["text"] for m in memories]) == 0
    assert duplicate_groups(runtime) == 0 and near_duplicate_pairs(runtime) == 0
    speakers = {s for r in records for s in r.metadata["speakers"]}
    for speaker in speakers:
        holders = scalar(
            runtime,
            "select count(*) from entities where org_id = 'acme' and type = 'person' "
            "and merged_into is null and %s = any(norm_names)",
            (normalize_name(speaker, "person"),),
        )
        assert holders == 1

    assert_second_ingest_adds_nothing(runtime, records, days)
