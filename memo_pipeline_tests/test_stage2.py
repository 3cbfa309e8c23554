"""Stage 2 on the real stores (embedded PostgreSQL, LanceDB, the real embedding model): invalid
answers repaired then dead-lettered, redaction of stored memory text, exact and near-duplicate
dedup with provenance, ordering of property history by source time (inside a batch and across a
late backfill), a process killed between the PostgreSQL commit and the LanceDB write, and
reprocessing under a new schema version. Models are replaced by small LocalProvider subclasses
where a test needs a particular answer; the stores never are. Identity, merges and the graph are
in test_stage2_identity; the checks on real data in test_stage2_real_data.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from memo_pipeline.ingest.loaders import LoadOptions, load
from memo_pipeline.pipeline.collect import collect_partition, partition_complete
from memo_pipeline.pipeline.plan import plan_partition
from memo_pipeline.pipeline.raw import land, load_partition
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.pipeline.store import CRASH_AFTER_PG, StoreSummary, store_counts, store_partition
from memo_pipeline.pipeline.submit import submit_partition
from memo_pipeline.prompts.render import parse_record_part
from memo_pipeline.providers.base import RequestOutcome
from memo_pipeline.providers.local import LocalProvider
from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline_tests.conftest import EXAMPLES

Transform = Callable[[dict[str, str], str, dict[str, Any]], dict[str, Any] | str]


class ScriptedProvider(LocalProvider):
    """The local provider with its answer rewritten by ``transform(fields, content, answer)``:
    a stand-in for a model that answers differently. Requests it saw are kept."""

    def __init__(self, base: LocalProvider, transform: Transform) -> None:
        super().__init__(base.limits, base.root.parent, base.model, base.delay_seconds)
        self.transform = transform
        self.seen_repairs: list[tuple[str, ...]] = []

    def submit_batch(self, job_key, requests):
        self.seen_repairs += [r.repair_errors for r in requests if r.repair_errors]
        return super().submit_batch(job_key, requests)

    def _answer(self, request_id, prompt, prefix_tokens, seen, tier) -> RequestOutcome:
        outcome = super()._answer(request_id, prompt, prefix_tokens, seen, tier)
        fields, content = parse_record_part(prompt)
        answer = self.transform(fields, content, orjson.loads(outcome.answer_text))
        text = answer if isinstance(answer, str) else orjson.dumps(answer).decode()
        return RequestOutcome(
            request_id, outcome.outcome, text, usage=outcome.usage, stop_reason="end_turn"
        )


def scripted_registry(runtime, transform: Transform) -> tuple[ProviderRegistry, ScriptedProvider]:
    registry = ProviderRegistry(runtime.settings)
    base = registry.get("local")
    double = ScriptedProvider(base, transform)
    registry._cache[("local", base.model)] = double
    return registry, double


def land_items(runtime, items: Iterable[ContentRecord], label: str) -> list[str]:
    with runtime.connection() as conn:
        return sorted(land(runtime.settings, conn, items, label).days)


def land_path(runtime, path: Path, fmt: str) -> list[str]:
    return land_items(runtime, load(path, fmt, LoadOptions()), f"{fmt}:{path}")


def run_days(
    runtime,
    days: Iterable[str],
    orgs: dict[str, OrgSpec] | None = None,
    registry: ProviderRegistry | None = None,
) -> dict[str, StoreSummary]:
    """The bulk path for each day, in order, without Dagster: load, plan, submit, collect (and
    retry until every request has a final outcome), store."""
    orgs = orgs or runtime.orgs
    registry = registry or runtime.registry
    out = {}
    with runtime.connection() as conn:
        for day in days:
            load_partition(runtime.settings, conn, orgs, day)
            plan_partition(conn, registry, orgs, day)
            submit_partition(conn, registry, orgs, day)
            for _ in range(6):
                collect_partition(conn, registry, orgs, day)
                if partition_complete(conn, day):
                    break
            out[day] = store_partition(conn, orgs, runtime.vectors, runtime.embedder, day)
    return out


def rows(runtime, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    with runtime.connection() as conn:
        return conn.execute(sql, params).fetchall()


def scalar(runtime, sql: str, params: tuple = ()) -> Any:
    return next(iter(rows(runtime, sql, params)[0].values()))


def entity_by_email(runtime, email: str, org: str = "acme") -> str:
    return scalar(
        runtime,
        "select entity_id from entity_identifiers where org_id = %s and identifier = %s",
        (org, email),
    )


def duplicate_groups(runtime) -> int:
    """Current memories that share org, entity and normalised text with another one."""
    return scalar(
        runtime,
        "select count(*) from (select 1 from memories where superseded_by is null "
        "group by org_id, entity_id, norm_hash having count(*) > 1) d",
    )


def stores_agree(runtime) -> bool:
    pg = {
        r["memory_id"]: r["entity_id"]
        for r in rows(
            runtime, "select memory_id, entity_id from memories where superseded_by is null"
        )
    }
    table = runtime.vectors.table().search().select(["memory_id", "entity_id"]).limit(None)
    lance = {r["memory_id"]: r["entity_id"] for r in table.to_arrow().to_pylist()}
    return pg == lance


def example_records(*source_ids: str) -> list[ContentRecord]:
    items = [i for i in load(EXAMPLES, "jsonl", LoadOptions()) if isinstance(i, ContentRecord)]
    return [i for i in items if not source_ids or i.source_id in source_ids]


def fact_record(source_id: str, when: str, text: str) -> ContentRecord:
    return ContentRecord(
        source_id=source_id,
        kind="note",
        content=text,
        source_ts=datetime.fromisoformat(when).replace(tzinfo=UTC),
    )


PEOPLE = {
    "Dana Okafor": "dana.okafor@northwind.example",
    "Luis Ferreira": "luis.ferreira@northwind.example",
    "Maya Lindqvist": "maya.lindqvist@acme-analytics.example",
}


def one_fact(fields: dict[str, str], content: str, answer: dict[str, Any]) -> dict[str, Any]:
    """A model that states one fact: the record's text, about the person it names first (or the
    person after "About:" when the record says so)."""
    about = content.split("About: ", 1)[1] if "About: " in content else ""
    text = content.split("\nAbout: ", 1)[0]
    name = about or next(n for n in PEOPLE if n.lower() in text.lower())
    return {
        "entities": [{"ref": "e1", "type": "person", "name": name, "identifiers": [PEOPLE[name]]}],
        "properties": [],
        "memories": [{"entity": "e1", "text": text}],
        "edges": [],
    }


def test_exact_and_near_duplicates_keep_every_source_and_each_text_is_embedded_once(runtime):
    rollout = "Dana Okafor wants Acme Pulse rolled out to the supply-chain team in January."
    records = [
        fact_record("f1", "2026-11-23T09:00:00", rollout),
        # Near duplicate inside the same day's batch (cosine ~0.97).
        fact_record(
            "f2",
            "2026-11-23T10:00:00",
            "Dana Okafor wants to roll Acme Pulse out to the supply-chain team in January.",
        ),
        # Exact duplicate once case and the trailing full stop are ignored.
        fact_record("f3", "2026-11-24T09:00:00", rollout.lower().rstrip(".")),
        # Near duplicate of a memory stored on an earlier day (cosine ~0.95), found in LanceDB.
        fact_record(
            "f4",
            "2026-11-24T10:00:00",
            "Dana Okafor wants Acme Pulse rolled out to the supply chain team in January!",
        ),
        fact_record(
            "f5", "2026-11-24T11:00:00", "Luis Ferreira needs the order form by 15 December."
        ),
        # The same text about someone else is that person's memory, not a duplicate.
        fact_record("f6", "2026-11-24T12:00:00", f"{rollout}\nAbout: Maya Lindqvist"),
        # Related but different (cosine ~0.93): kept apart.
        fact_record(
            "f7",
            "2026-11-25T09:00:00",
            "Luis Ferreira needs the order form by 15 December to sign this year.",
        ),
        # A wording met before as a near duplicate lands on the same memory without a search.
        fact_record(
            "f8",
            "2026-11-25T10:00:00",
            "Dana Okafor wants to roll Acme Pulse out to the supply-chain team in January.",
        ),
    ]
    days = land_items(runtime, records, "facts")
    registry, _ = scripted_registry(runtime, one_fact)
    summaries = run_days(runtime, days, registry=registry)

    stored = rows(
        runtime,
        "select e.name, m.text, m.source_record_ids from memories m join entities e "
        "using (entity_id) where m.superseded_by is null order by e.name, m.text",
    )
    ids = {r.source_id: r.record_id for r in records}
    assert sorted((r["name"], r["text"], sorted(r["source_record_ids"])) for r in stored) == sorted(
        [
            ("Dana Okafor", rollout, sorted(ids[k] for k in ("f1", "f2", "f3", "f4", "f8"))),
            ("Luis Ferreira", "Luis Ferreira needs the order form by 15 December.", [ids["f5"]]),
            (
                "Luis Ferreira",
                "Luis Ferreira needs the order form by 15 December to sign this year.",
                [ids["f7"]],
            ),
            ("Maya Lindqvist", rollout, [ids["f6"]]),
        ]
    )
    day1, day2, day3 = (summaries[d] for d in days)
    assert (day1.stage2.memories_new, day1.stage2.memories_near_duplicate) == (1, 1)
    assert (day2.stage2.memories_merged, day2.stage2.memories_near_duplicate) == (1, 1)
    assert day2.stage2.memories_new == 2
    assert (day3.stage2.memories_new, day3.stage2.memories_merged) == (1, 1)
    # Each new text embedded once, its vector reused for LanceDB; stored ones read back from it.
    assert [s.texts_embedded for s in (day1, day2, day3)] == [2, 3, 1]
    assert [s.vectors_written for s in (day1, day2, day3)] == [1, 2, 1]
    assert stores_agree(runtime)


def test_near_duplicate_threshold_comes_from_the_org_when_it_sets_one():
    from types import SimpleNamespace

    from memo_pipeline.stage2.dedup import NEAR_DUPLICATE_THRESHOLD, threshold_for

    assert threshold_for(SimpleNamespace(near_duplicate_threshold=0.9)) == 0.9
    assert threshold_for(SimpleNamespace()) == NEAR_DUPLICATE_THRESHOLD == 0.95


def signature_titles(fields: dict[str, str], content: str, answer: dict[str, Any]) -> dict:
    """A model that also reads job titles from e-mail signatures ("Name\\nTitle | Company")."""
    for entity in answer["entities"]:
        match = re.search(rf"^{re.escape(entity['name'])}\n([^\n|]+?) \| ", content, re.M)
        if match:
            answer["properties"] = [
                p
                for p in answer["properties"]
                if not (p["entity"] == entity["ref"] and p["name"] == "job_title")
            ]
            answer["properties"].append(
                {"entity": entity["ref"], "name": "job_title", "value": match.group(1)}
            )
    return answer


def title_history(runtime) -> list[tuple[str, str, bool]]:
    """Dana Okafor's job titles by source time: (value, source day, current?)."""
    return [
        (r["value"], r["valid_from"].date().isoformat(), r["superseded_by"] is None)
        for r in rows(
            runtime,
            "select value, valid_from, superseded_by from property_values where entity_id = %s "
            "and property = 'job_title' and retracted_by is null order by valid_from",
            (entity_by_email(runtime, "dana.okafor@northwind.example"),),
        )
    ]


def test_late_backfill_of_an_older_day_never_replaces_a_newer_value(runtime):
    days = land_path(runtime, EXAMPLES, "jsonl")
    registry, _ = scripted_registry(runtime, signature_titles)
    # The newer days first; the first days arrive later, as a backfill.
    run_days(runtime, ["2026-11-25", "2026-11-26"], registry=registry)
    assert title_history(runtime) == [("VP of Data", "2026-11-25", True)]

    run_days(runtime, ["2026-11-23", "2026-11-24"], registry=registry)
    assert title_history(runtime) == [
        ("Director of Data Platform", "2026-11-23", False),
        ("VP of Data", "2026-11-25", True),
    ]
    assert duplicate_groups(runtime) == 0 and stores_agree(runtime)

    # Running every day again applies nothing, embeds nothing and changes nothing.
    count = scalar(runtime, "select count(*) from memories")
    again = run_days(runtime, days, registry=registry)
    assert all(s.answers == 0 and s.texts_embedded == 0 for s in again.values())
    assert scalar(runtime, "select count(*) from memories") == count
    older = rows(
        runtime,
        "select v.superseded_by, n.value as next_value from property_values v "
        "join property_values n on n.value_id = v.superseded_by "
        "where v.value = '\"Director of Data Platform\"'",
    )
    assert [r["next_value"] for r in older] == ["VP of Data"]
    assert set(days) == {"2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"}


def test_answers_applied_out_of_order_inside_one_batch_keep_source_time_order(runtime):
    from memo_pipeline.prompts.render import render
    from memo_pipeline.stage2.apply import Provenance, apply_answer
    from memo_pipeline.stage2.validate import validate_answer

    org = runtime.orgs["acme"]
    collection = org.collections["contacts"]
    newer, older = sorted(
        example_records("ex-2026-11-23-01", "ex-2026-11-25-02"),
        key=lambda r: r.source_ts,
        reverse=True,
    )
    with runtime.connection() as conn:
        for record in (newer, older):  # arrival order: the newer answer first
            prompt = render(org, record)
            fields, content = parse_record_part(prompt.text)
            base = LocalProvider(runtime.registry.get("local").limits, Path("/nonexistent"))
            raw = orjson.loads(base.call_sync(_request(prompt)).answer_text)
            answer = validate_answer(
                orjson.dumps(signature_titles(fields, content, raw)).decode(), collection
            )
            prov = Provenance(
                org="acme",
                record_id=record.record_id,
                collection="contacts",
                partition_day=record.partition_day,
                source_ts=record.source_ts,
                schema_version=prompt.schema_version,
                request_id=f"test-{record.source_id}",
                identifier=record.identifier,
            )
            apply_answer(conn, answer, prov, collection, org.redaction)
        conn.commit()
    assert title_history(runtime) == [
        ("Director of Data Platform", "2026-11-23", False),
        ("VP of Data", "2026-11-25", True),
    ]


def _request(prompt):
    from memo_pipeline.providers.base import ProviderRequest

    return ProviderRequest(request_id="test-request", prompt=prompt, model="offline-heuristic-1")


BAD_PHONE = {"entity": "e1", "name": "phone", "value": "call me maybe"}
PHONE_ERROR = "(phone): 'call me maybe' is not a phone number"


def test_invalid_answers_become_repair_requests_with_their_errors_then_a_dead_letter(runtime):
    dana, maya = "dana.okafor@northwind.example", "maya.lindqvist@acme-analytics.example"
    answered: dict[str, int] = {}

    def flaky(fields, content, answer):
        # Dana's record is always answered invalidly, Maya's only the first time.
        answered[fields["identifier"]] = answered.get(fields["identifier"], 0) + 1
        if fields["identifier"] == dana or answered[fields["identifier"]] == 1:
            answer["properties"].append(BAD_PHONE)
        return answer

    days = land_items(runtime, example_records("ex-2026-11-23-01", "ex-2026-11-23-02"), "two")
    registry, double = scripted_registry(runtime, flaky)
    summary = run_days(runtime, days, registry=registry)[days[0]]

    ledger = rows(
        runtime,
        "select c.identifier, q.attempt, q.kind, q.status, q.repair_errors, q.redacted "
        "from extraction_requests q join content_records c using (record_id) "
        "order by c.identifier, q.attempt",
    )
    assert [(r["identifier"], r["attempt"], r["kind"], r["status"]) for r in ledger] == [
        (dana, 1, "extract", "invalid"),
        (dana, 2, "repair", "invalid"),
        (dana, 3, "repair", "dead"),
        (maya, 1, "extract", "invalid"),
        (maya, 2, "repair", "succeeded"),
    ]
    for row in ledger:
        if row["kind"] == "repair":
            assert any(PHONE_ERROR in e for e in row["repair_errors"]), row["repair_errors"]
    assert not any(r["redacted"] for r in ledger)  # this org does not redact before the call
    # The repair requests carried the errors to the model.
    assert len(double.seen_repairs) == 3
    assert all(any(PHONE_ERROR in e for e in errors) for errors in double.seen_repairs)

    letters = rows(runtime, "select stage, record_id, request_id, reason from dead_letters")
    assert len(letters) == 1
    assert letters[0]["stage"] == "extract"
    assert "invalid after 3 attempt(s)" in letters[0]["reason"]
    assert PHONE_ERROR in letters[0]["reason"]
    assert letters[0]["record_id"] == example_records("ex-2026-11-23-01")[0].record_id

    # Maya's repaired answer is stored; nothing of Dana's dead request is.
    assert summary.answers == 1 and summary.stage2.memories_new > 0
    assert (
        scalar(
            runtime,
            "select count(*) from memories where %s = any(source_record_ids)",
            (letters[0]["record_id"],),
        )
        == 0
    )


def test_redact_before_provider_masks_the_prompt_and_is_recorded_per_request(runtime):
    acme = runtime.orgs["acme"]
    orgs = {"acme": acme.model_copy(update={"redact_before_provider": True})}
    answered: set[str] = set()

    def invalid_once(fields, content, answer):
        if fields["identifier"] not in answered:
            answered.add(fields["identifier"])
            answer["properties"].append(BAD_PHONE)
        return answer

    days = land_items(runtime, example_records("ex-2026-11-23-01", "ex-2026-11-23-02"), "two")
    registry, _ = scripted_registry(runtime, invalid_once)
    run_days(runtime, days, orgs=orgs, registry=registry)

    ledger = rows(runtime, "select attempt, redacted from extraction_requests order by attempt")
    assert [r["attempt"] for r in ledger] == [1, 1, 2, 2]
    assert all(r["redacted"] for r in ledger)  # retries keep the flag
    prompts = [
        orjson.loads(line)["prompt"]
        for path in (runtime.settings.staging_dir / "local").glob("*/requests.jsonl")
        for line in path.read_bytes().splitlines()
    ]
    assert len(prompts) == 4
    for prompt in prompts:
        _, content = parse_record_part(prompt)
        assert "@" not in content and "555" not in content
        assert "[EMAIL]" in content and "[PHONE]" in content
    assert scalar(runtime, "select count(*) from memories where superseded_by is null") > 0


def test_crash_between_the_postgres_commit_and_the_lancedb_write_is_repaired(runtime):
    day = "2026-11-24"
    land_path(runtime, EXAMPLES, "jsonl")
    with runtime.connection() as conn:
        load_partition(runtime.settings, conn, runtime.orgs, day)
        plan_partition(conn, runtime.registry, runtime.orgs, day)
        submit_partition(conn, runtime.registry, runtime.orgs, day)
        collect_partition(conn, runtime.registry, runtime.orgs, day)
    script = (
        "from memo_pipeline.config import Settings\n"
        "from memo_pipeline.pipeline.store import store_partition\n"
        "from memo_pipeline.stores.db import connect, ensure_databases\n"
        "from memo_pipeline.stores.vectors import Embedder, VectorStore\n"
        "s = Settings.from_env()\n"
        "with connect(ensure_databases(s).app) as conn:\n"
        f"    store_partition(conn, s.orgs, VectorStore(s.lance_dir), Embedder(), '{day}')\n"
    )
    env = {**os.environ, CRASH_AFTER_PG: "1", "MEMO_HOME": str(runtime.settings.memo_home)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 9, done.stderr[-3000:]

    with runtime.connection() as conn:
        pg, lance = store_counts(conn, runtime.vectors, day)
    assert pg > 0 and lance == 0  # PostgreSQL committed, LanceDB never written
    assert scalar(runtime, "select count(*) from memories where vector_dirty") == pg
    assert scalar(runtime, "select count(*) from request_results where applied_at is null") == 0

    with runtime.connection() as conn:
        summary = store_partition(conn, runtime.orgs, runtime.vectors, runtime.embedder, day)
        assert store_counts(conn, runtime.vectors, day) == (pg, pg)
    assert summary.answers == 0  # nothing applied twice
    assert summary.vectors_written == pg
    assert scalar(runtime, "select count(*) from memories where vector_dirty") == 0
    assert stores_agree(runtime)


def test_a_new_schema_version_supersedes_the_old_extraction_without_duplicates(runtime):
    from memo_pipeline.prompts.render import schema_version
    from memo_pipeline.stage2.masking import masked_memories
    from memo_pipeline.stage2.validate import validate_answer

    day = "2026-11-23"
    land_path(runtime, EXAMPLES, "jsonl")
    run_days(runtime, [day])
    acme = runtime.orgs["acme"]
    contacts = acme.collections["contacts"]
    before = scalar(runtime, "select count(*) from memories where superseded_by is null")

    changed = contacts.model_copy(
        update={"instructions": contacts.instructions + " Prefer commitments over small talk."}
    )
    orgs = {
        "acme": acme.model_copy(update={"collections": {**acme.collections, "contacts": changed}})
    }
    new_version = schema_version(orgs["acme"], "contacts")
    assert new_version != schema_version(acme, "contacts")
    old_first_texts = {
        masked_memories(
            validate_answer(orjson.dumps(r["answer"]).decode(), contacts).output,
            acme.redaction,
            r["identifier"],
        )[0].text
        for r in rows(
            runtime,
            "select res.answer, c.identifier from request_results res join extraction_requests q "
            "using (request_id) join content_records c using (record_id)",
        )
        if r["answer"]["memories"]
    }

    def narrower(fields, content, answer):
        # The new extraction drops each record's first memory and first edge, and every phone.
        answer["memories"] = answer["memories"][1:]
        answer["edges"] = answer["edges"][1:]
        answer["properties"] = [p for p in answer["properties"] if p["name"] != "phone"]
        return answer

    registry, _ = scripted_registry(runtime, narrower)
    summary = run_days(runtime, [day], orgs=orgs, registry=registry)[day]
    s = summary.stage2
    assert summary.answers == scalar(  # only the changed collection is extracted again
        runtime,
        "select count(*) from content_records where partition_day = %s and collection = %s",
        (day, "contacts"),
    )
    assert s.memories_new == 0 and s.memories_retracted > 0 and s.edges_retracted > 0
    assert (
        scalar(runtime, "select count(*) from memories where superseded_by is null")
        == before - s.memories_retracted
    )
    assert duplicate_groups(runtime) == 0
    assert (
        scalar(
            runtime,
            "select count(*) from memories where superseded_by is null "
            "and cardinality(source_record_ids) = 0",
        )
        == 0
    )
    retracted = rows(
        runtime,
        "select m.text, m.source_record_ids from memories m join extraction_requests q "
        "on q.request_id = m.superseded_by where q.schema_version = %s",
        (new_version,),
    )
    assert len(retracted) == s.memories_retracted
    assert all(r["source_record_ids"] == [] and r["text"] in old_first_texts for r in retracted)
    assert (
        scalar(
            runtime,
            "select count(*) from edges e join extraction_requests q "
            "on q.request_id = e.superseded_by where q.schema_version = %s",
            (new_version,),
        )
        == s.edges_retracted
    )
    phones = rows(
        runtime, "select retracted_by, superseded_by from property_values where property = 'phone'"
    )
    assert phones and all(p["retracted_by"] and p["superseded_by"] for p in phones)
    assert stores_agree(runtime)  # vectors of superseded memories are gone

    # An answer of the old extraction arriving again never undoes the new one.
    with runtime.connection() as conn:
        conn.execute(
            "update request_results r set applied_at = null from extraction_requests q "
            "where q.request_id = r.request_id and q.schema_version <> %s",
            (new_version,),
        )
        conn.commit()
        again = store_partition(conn, orgs, runtime.vectors, runtime.embedder, day)
    assert again.stage2.answers_stale == summary.answers
    assert again.stage2.memories_new == 0 and again.texts_embedded == 0
    assert (
        scalar(runtime, "select count(*) from memories where superseded_by is null")
        == before - s.memories_retracted
    )
    assert stores_agree(runtime)
