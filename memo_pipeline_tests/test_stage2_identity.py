"""Identity resolution, entity merges and the graph on the real stores: exact identifiers (case,
plus-tags, www), conservative name rules, merges recorded with their evidence and undone exactly,
no matching across orgs, vectors following a merge, neighbours from both ends, memories reachable
within N hops, and the ``entities`` and ``graph`` commands. Answers are written by hand (fictional
people from examples/input) and applied with Stage 2's own ``apply_answer``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from memo_pipeline import cli
from memo_pipeline.pipeline.graph import find_entity, neighbours, reachable_memories
from memo_pipeline.stage2.apply import ApplySummary, Provenance, apply_answer
from memo_pipeline.stage2.merge import MergeError, undo_merge
from memo_pipeline.stage2.validate import validate_answer
from memo_pipeline_tests.test_stage2 import (
    entity_by_email,
    land_items,
    rows,
    run_days,
    scalar,
    scripted_registry,
    stores_agree,
)

DANA = "dana.okafor@northwind.example"
DANA_HOME = "dana@okafor-family.example"


def run_cli(*argv: str) -> int:
    """A command as ``memo-pipeline`` runs it, minus its logging set-up (pytest owns logging)."""
    args = cli.build_parser().parse_args(list(argv))
    return args.func(args)


def person(ref: str, name: str, *identifiers: str) -> dict[str, Any]:
    return {"ref": ref, "type": "person", "name": name, "identifiers": list(identifiers)}


def company(ref: str, name: str, *identifiers: str) -> dict[str, Any]:
    return {"ref": ref, "type": "company", "name": name, "identifiers": list(identifiers)}


def apply(
    runtime,
    record: str,
    entities: list[dict[str, Any]],
    memories: list[tuple[str, str]] = (),
    edges: list[tuple[str, str, str]] = (),
    properties: list[tuple[str, str, str]] = (),
    when: str = "2026-11-23T10:00:00",
    org: str = "acme",
) -> ApplySummary:
    """Apply one hand-written answer as record ``record`` of ``org``."""
    collection = runtime.orgs["acme"].collections["contacts"]
    answer = {
        "entities": entities,
        "properties": [{"entity": e, "name": n, "value": v} for e, n, v in properties],
        "memories": [{"entity": e, "text": t} for e, t in memories],
        "edges": [{"subject": s, "predicate": p, "object": o} for s, p, o in edges],
    }
    ts = datetime.fromisoformat(when).replace(tzinfo=UTC)
    prov = Provenance(
        org=org,
        record_id=record,
        collection="contacts",
        partition_day=ts.date().isoformat(),
        source_ts=ts,
        schema_version="sv-test",
        request_id=f"q-{record}",
    )
    validated = validate_answer(orjson.dumps(answer).decode(), collection)
    with runtime.connection() as conn:
        summary = apply_answer(conn, validated, prov, collection, "mask")
        conn.commit()
    return summary


def live(runtime, type_: str = "person", org: str = "acme") -> list[dict[str, Any]]:
    return rows(
        runtime,
        "select entity_id, name, names from entities where org_id = %s and type = %s "
        "and merged_into is null order by created_at",
        (org, type_),
    )


def test_exact_identifiers_ignore_case_plus_tags_and_www(runtime):
    apply(
        runtime,
        "r1",
        [
            person("e1", "Dana Okafor", "Dana.Okafor+crm@Northwind.Example"),
            company("e2", "Northwind Traders", "https://www.northwind.example/about"),
        ],
    )
    apply(
        runtime,
        "r2",
        [
            person("e1", "D. Okafor", "DANA.OKAFOR@northwind.example"),
            company("e2", "Northwind", "northwind.example"),
        ],
        properties=[("e1", "email", "dana.okafor+sales@northwind.example")],
    )
    people, companies = live(runtime), live(runtime, "company")
    assert [p["names"] for p in people] == [["Dana Okafor", "D. Okafor"]]
    assert [c["names"] for c in companies] == [["Northwind Traders", "Northwind"]]
    identifiers = rows(runtime, "select identifier from entity_identifiers order by 1")
    assert [r["identifier"] for r in identifiers] == [DANA, "northwind.example"]


def test_names_match_only_conservatively(runtime):
    apply(runtime, "r1", [person("e1", "Dana Okafor", DANA), company("e2", "Northwind Traders")])
    # Same full name, honorific and case aside, no identifier of its own: the same person.
    apply(runtime, "r2", [person("e1", "Dr. dana OKAFOR"), company("e2", "Northwind Traders Inc.")])
    assert len(live(runtime)) == 1 and len(live(runtime, "company")) == 1
    # A first name alone never matches by name.
    apply(runtime, "r3", [person("e1", "Dana")])
    # Same name, but an address of its own that nobody else holds: another person.
    apply(runtime, "r4", [person("e1", "Dana Okafor", "dana.okafor@bluefin-logistics.example")])
    assert [p["names"][0] for p in live(runtime)] == ["Dana Okafor", "Dana", "Dana Okafor"]
    # Now two entities carry the name: a bare mention goes to the oldest, as it did before the
    # namesake appeared.
    apply(runtime, "r5", [person("e1", "Dana Okafor")], memories=[("e1", "Dana Okafor called.")])
    owner = rows(runtime, "select entity_id from memories where source_record_ids = '{r5}'")
    assert owner[0]["entity_id"] == entity_by_email(runtime, DANA)
    assert len(live(runtime)) == 3


def test_nothing_is_matched_or_merged_across_orgs(runtime, monkeypatch, capsys):
    for org in ("acme", "globex"):
        apply(
            runtime,
            f"{org}-1",
            [person("e1", "Dana Okafor", DANA), company("e2", "Northwind Traders")],
            memories=[("e1", "Dana Okafor leads the data platform team.")],
            org=org,
        )
    # In globex only: an answer linking Dana's two addresses (one known in acme only).
    apply(runtime, "acme-2", [person("e1", "Dana Okafor", DANA_HOME)], org="acme")
    apply(runtime, "globex-2", [person("e1", "Dana Okafor", DANA, DANA_HOME)], org="globex")

    assert entity_by_email(runtime, DANA, "acme") != entity_by_email(runtime, DANA, "globex")
    assert scalar(runtime, "select count(*) from entity_merges") == 0
    assert scalar(runtime, "select count(*) from entity_identifiers where org_id = 'globex'") == 2
    assert (
        scalar(
            runtime,
            "select count(*) from entity_identifiers i join entities e using (entity_id) "
            "where i.org_id <> e.org_id",
        )
        == 0
    )

    monkeypatch.setenv("MEMO_HOME", str(runtime.settings.memo_home))
    assert run_cli("entities", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert {e["org"] for e in listed} == {"acme", "globex"}
    assert all(
        set(e) == {"org", "id", "type", "names", "identifiers", "memory_count"} for e in listed
    )
    assert run_cli("entities", "--json", "--org", "globex") == 0
    globex = json.loads(capsys.readouterr().out)
    assert {e["org"] for e in globex} == {"globex"}
    dana = next(e for e in globex if e["type"] == "person")
    assert dana["identifiers"] == sorted([DANA, DANA_HOME]) and dana["memory_count"] == 1


def snapshot(runtime) -> dict[str, list[tuple]]:
    """Everything a merge touches, as plain tuples (update times and the outbox flag aside)."""
    queries = {
        "entities": "select entity_id, names, norm_names, merged_into from entities",
        "identifiers": "select identifier, entity_id from entity_identifiers",
        "memories": "select memory_id, entity_id, superseded_by, source_record_ids, alias_hashes, "
        "source_ts "
        "from memories",
        "edges": "select edge_id, subject_id, object_id, superseded_by, source_record_ids, "
        "first_seen from edges",
        "values": "select value_id, entity_id, superseded_by, retracted_by from property_values",
    }
    return {
        name: sorted(tuple(map(str, r.values())) for r in rows(runtime, sql))
        for name, sql in queries.items()
    }


def seed_two_danas(runtime) -> tuple[str, str]:
    """Dana under her work address, then (later) under her home address with a copy of one fact,
    an edge to the same company, a newer job title and an edge between the two."""
    rollout = "Dana Okafor wants Acme Pulse rolled out to the supply-chain team in January."
    apply(
        runtime,
        "r1",
        [
            person("e1", "Dana Okafor", DANA),
            company("e2", "Northwind Traders", "northwind.example"),
        ],
        memories=[("e1", rollout), ("e1", "Dana Okafor leads the data platform team.")],
        edges=[("e1", "works_at", "e2")],
        properties=[("e1", "job_title", "Director of Data Platform")],
    )
    apply(
        runtime,
        "r2",
        [
            person("e1", "D. Okafor", DANA_HOME),
            company("e2", "Northwind Traders", "northwind.example"),
            person("e3", "Dana Okafor", DANA),
        ],
        memories=[("e1", rollout), ("e1", "D. Okafor prefers calls before 10:00.")],
        edges=[("e1", "works_at", "e2"), ("e1", "knows", "e3")],
        properties=[("e1", "job_title", "VP of Data")],
        when="2026-11-25T10:00:00",
    )
    return entity_by_email(runtime, DANA), entity_by_email(runtime, DANA_HOME)


def test_identifiers_of_two_entities_merge_the_younger_into_the_older_and_undo_exactly(
    runtime, monkeypatch, capsys
):
    work, home = seed_two_danas(runtime)
    assert work != home
    before = snapshot(runtime)

    summary = apply(runtime, "r3", [person("e1", "Dana Okafor", DANA, DANA_HOME)])
    assert summary.entities_merged == 1
    merge = rows(runtime, "select * from entity_merges")[0]
    assert (merge["survivor_id"], merge["merged_id"]) == (work, home)
    assert merge["evidence"]["rule"] == "shared_identifiers"
    assert merge["evidence"]["identifiers"] == {DANA: work, DANA_HOME: home}
    assert merge["evidence"]["record_id"] == "r3"
    assert entity_by_email(runtime, DANA_HOME) == work
    assert scalar(runtime, "select merged_into from entities where entity_id = %s", (home,)) == work

    memories = rows(
        runtime,
        "select text, source_record_ids from memories where entity_id = %s "
        "and superseded_by is null order by text",
        (work,),
    )
    assert [(m["text"][:20], m["source_record_ids"]) for m in memories] == [
        ("D. Okafor prefers ca", ["r2"]),
        ("Dana Okafor leads th", ["r1"]),
        ("Dana Okafor wants Ac", ["r1", "r2"]),  # the copy collapsed into the older memory
    ]
    edges = rows(
        runtime,
        "select predicate, subject_id, source_record_ids from edges e where superseded_by is null",
    )
    assert [(e["predicate"], e["subject_id"], e["source_record_ids"]) for e in edges] == [
        ("works_at", work, ["r1", "r2"])  # the edge between the two is gone with the difference
    ]
    titles = rows(
        runtime,
        "select value, superseded_by is null as current from property_values "
        "where entity_id = %s and property = 'job_title' order by valid_from",
        (work,),
    )
    assert [(t["value"], t["current"]) for t in titles] == [
        ("Director of Data Platform", False),
        ("VP of Data", True),
    ]
    assert [e["names"] for e in live(runtime)] == [["Dana Okafor", "D. Okafor"]]
    monkeypatch.setenv("MEMO_HOME", str(runtime.settings.memo_home))
    assert run_cli("entities", "--json") == 0
    listed = {e["id"]: e for e in json.loads(capsys.readouterr().out)}
    assert home not in listed  # merged away
    assert listed[work]["identifiers"] == sorted([DANA, DANA_HOME])
    assert listed[work]["memory_count"] == 3

    assert run_cli("merges", "--json") == 0
    merges = json.loads(capsys.readouterr().out)
    assert [(m["merge_id"], m["survivor_id"], m["merged_id"]) for m in merges] == [
        (merge["merge_id"], work, home)
    ]
    assert merges[0]["undone_at"] is None
    assert run_cli("undo-merge", str(merge["merge_id"])) == 0
    assert snapshot(runtime) == before
    assert run_cli("undo-merge", str(merge["merge_id"])) == 2  # already undone
    with runtime.connection() as conn, pytest.raises(MergeError, match="already undone"):
        undo_merge(conn, merge["merge_id"])

    # Someone decided these are two people: the same evidence does not merge them again.
    apply(runtime, "r4", [person("e1", "Dana Okafor", DANA, DANA_HOME)])
    assert scalar(runtime, "select count(*) from entity_merges") == 1
    assert len(live(runtime)) == 2


def test_name_and_identifier_link_two_entities_and_merges_undo_latest_first(runtime):
    # A transcript names Wei Zhang; an e-mail from a differently written name brings an address.
    apply(runtime, "r1", [person("e1", "Wei Zhang")], memories=[("e1", "Wei Zhang staffs pilots.")])
    apply(
        runtime,
        "r2",
        [person("e1", "W. Zhang", "wei.zhang@quillmark.example")],
        memories=[("e1", "W. Zhang set up Acme Pulse for two utilities.")],
        when="2026-11-24T10:00:00",
    )
    apply(
        runtime,
        "r3",
        [person("e1", "Zhang Wei", "wz@quillmark-mail.example")],
        when="2026-11-25T10:00:00",
    )
    named, mailed, other = (p["entity_id"] for p in live(runtime))
    before = snapshot(runtime)

    # "Zhang Wei" holds both addresses: merge the third into the second.
    apply(
        runtime,
        "r4",
        [person("e1", "W. Zhang", "wei.zhang@quillmark.example", "wz@quillmark-mail.example")],
    )
    # The full name with the address links the address holder to the name-only entity.
    summary = apply(runtime, "r5", [person("e1", "Wei Zhang", "wei.zhang@quillmark.example")])
    assert summary.entities_merged == 1
    first, second = rows(runtime, "select * from entity_merges order by merge_id")
    assert (first["survivor_id"], first["merged_id"]) == (mailed, other)
    assert (second["survivor_id"], second["merged_id"]) == (named, mailed)
    assert second["evidence"]["rule"] == "name_and_identifier"
    assert second["evidence"]["name_match"] == named
    assert [p["entity_id"] for p in live(runtime)] == [named]
    assert scalar(runtime, "select count(*) from memories where entity_id = %s", (named,)) == 2

    with runtime.connection() as conn:
        with pytest.raises(MergeError, match=f"undo the later merges .*{second['merge_id']}"):
            undo_merge(conn, first["merge_id"])
        conn.rollback()
        undo_merge(conn, second["merge_id"])
        undo_merge(conn, first["merge_id"])
        conn.commit()
    assert snapshot(runtime) == before


def test_a_namesake_with_an_address_of_its_own_is_not_merged(runtime):
    apply(runtime, "r1", [person("e1", "Grace Nakamura", "grace.nakamura@northwind.example")])
    apply(runtime, "r2", [person("e1", "Grace Nakamura", "gnakamura@tallgrass.example")])
    apply(runtime, "r3", [person("e1", "Grace Nakamura", "grace.nakamura@northwind.example")])
    assert len(live(runtime)) == 2
    assert scalar(runtime, "select count(*) from entity_merges") == 0


def test_one_name_at_one_organisation_domain_is_one_person_by_a_recorded_merge(runtime):
    apply(
        runtime,
        "r1",
        [person("e1", "Grace Nakamura", "grace.nakamura@northwind.example")],
        memories=[("e1", "Grace Nakamura runs procurement.")],
    )
    before = snapshot(runtime)
    # The same name from another mailbox of the same employer, and from a subdomain of it.
    apply(
        runtime,
        "r2",
        [person("e1", "Grace Nakamura", "gnakamura@northwind.example")],
        memories=[("e1", "Grace Nakamura approved the pilot budget.")],
    )
    apply(runtime, "r3", [person("e1", "Grace Nakamura", "grace@eu.northwind.example")])
    people = live(runtime)
    assert len(people) == 1
    merges = rows(runtime, "select * from entity_merges order by merge_id")
    assert [m["evidence"]["rule"] for m in merges] == ["name_and_mail_domain"] * 2
    assert merges[0]["evidence"]["identifiers"] == ["gnakamura@northwind.example"]
    assert merges[0]["evidence"]["record_id"] == "r2"
    assert (
        scalar(
            runtime, "select count(*) from memories where entity_id = %s", (people[0]["entity_id"],)
        )
        == 2
    )

    # Undone, the pair stays apart, and the address keeps its own entity and facts.
    with runtime.connection() as conn:
        undo_merge(conn, merges[1]["merge_id"])
        undo_merge(conn, merges[0]["merge_id"])
        conn.commit()
    apply(runtime, "r3", [person("e1", "Grace Nakamura", "grace@eu.northwind.example")])
    apply(
        runtime,
        "r4",
        [person("e1", "Grace Nakamura", "gnakamura@northwind.example")],
        memories=[("e1", "Grace Nakamura signed the order form.")],
    )
    assert len(live(runtime)) == 3
    assert entity_by_email(runtime, "gnakamura@northwind.example") != entity_by_email(
        runtime, "grace.nakamura@northwind.example"
    )
    assert scalar(runtime, "select count(*) from entity_merges where undone_at is null") == 0
    assert snapshot(runtime)["entities"] != before["entities"]


def test_an_address_known_first_under_another_name_joins_its_colleague_later(runtime):
    apply(runtime, "r1", [person("e1", "Luis Ferreira", "luis.ferreira@bluefin.example")])
    apply(runtime, "r2", [person("e1", "L. Ferreira", "lf@bluefin.example")])
    assert len(live(runtime)) == 2  # the names differ: nothing links them yet
    summary = apply(runtime, "r3", [person("e1", "Luis Ferreira", "lf@bluefin.example")])
    assert summary.entities_merged == 1
    assert [p["names"] for p in live(runtime)] == [["Luis Ferreira", "L. Ferreira"]]


def test_a_public_mail_domain_or_two_employers_do_not_link_namesakes(runtime):
    apply(runtime, "r1", [person("e1", "Sam Patel", "sam.patel@gmail.com")])
    apply(runtime, "r2", [person("e1", "Sam Patel", "sampatel77@gmail.com")])
    apply(runtime, "r3", [person("e1", "Sam Patel", "sam.patel@tallgrass.example")])
    apply(runtime, "r4", [person("e1", "Sam Patel", "spatel@quillmark.example")])
    assert len(live(runtime)) == 4
    assert scalar(runtime, "select count(*) from entity_merges") == 0


def test_merge_command_joins_two_entities_by_hand_and_undo_merge_parts_them(
    runtime, monkeypatch, capsys
):
    apply(runtime, "r1", [person("e1", "Grace Nakamura", "grace.nakamura@northwind.example")])
    apply(
        runtime,
        "r2",
        [person("e1", "Grace Nakamura", "gnakamura@tallgrass.example")],
        memories=[("e1", "Grace Nakamura moved to Tallgrass in November.")],
    )
    before = snapshot(runtime)
    old, new = (p["entity_id"] for p in live(runtime))
    monkeypatch.setenv("MEMO_HOME", str(runtime.settings.memo_home))

    assert run_cli("merge", old, new, "--note", "changed jobs") == 0
    assert [p["entity_id"] for p in live(runtime)] == [old]
    merge = rows(runtime, "select * from entity_merges")[0]
    assert merge["evidence"] == {"rule": "manual", "note": "changed jobs"}
    assert stores_agree(runtime)
    assert run_cli("merge", old, new) == 2  # already merged away
    assert run_cli("merge", old, "e-does-not-exist") == 2

    assert run_cli("undo-merge", str(merge["merge_id"])) == 0
    assert snapshot(runtime) == before
    assert stores_agree(runtime)


def about(fields: dict[str, str], content: str, answer: dict[str, Any]) -> dict[str, Any]:
    """A model for records written as "<fact>\\nAbout: <name> | <address>[, <address>]"."""
    text, _, who = content.partition("\nAbout: ")
    name, _, addresses = who.partition(" | ")
    identifiers = [a.strip() for a in addresses.split(",") if a.strip()]
    return {
        "entities": [person("e1", name, *identifiers)],
        "properties": [],
        "memories": [{"entity": "e1", "text": text}],
        "edges": [],
    }


def test_vectors_follow_a_merge_and_its_undo(runtime):
    from memo_pipeline.records import ContentRecord
    from memo_pipeline.stage2.merge import undo_merge as undo

    def note(source_id: str, day: str, text: str) -> ContentRecord:
        return ContentRecord(
            source_id=source_id,
            content=text,
            source_ts=datetime.fromisoformat(f"{day}T10:00:00").replace(tzinfo=UTC),
        )

    registry, _ = scripted_registry(runtime, about)
    days = land_items(
        runtime,
        [
            note(
                "n1",
                "2026-11-23",
                f"Dana Okafor leads the data platform.\nAbout: Dana Okafor | {DANA}",
            ),
            note(
                "n2",
                "2026-11-24",
                f"D. Okafor prefers calls before ten.\nAbout: D. Okafor | {DANA_HOME}",
            ),
            note(
                "n3",
                "2026-11-25",
                f"Dana Okafor is VP of Data.\nAbout: Dana Okafor | {DANA}, {DANA_HOME}",
            ),
        ],
        "notes",
    )
    summaries = run_days(runtime, days, registry=registry)
    work = entity_by_email(runtime, DANA)
    assert summaries["2026-11-25"].stage2.entities_merged == 1
    assert summaries["2026-11-25"].vectors_moved == 1  # the memory of 2026-11-24 moved
    assert stores_agree(runtime)
    lance = runtime.vectors.table().search().select(["entity_id"]).limit(None).to_arrow()
    assert set(lance.column("entity_id").to_pylist()) == {work}

    with runtime.connection() as conn:
        undo(conn, scalar(runtime, "select merge_id from entity_merges"))
        conn.commit()
    assert not stores_agree(runtime)
    run_days(runtime, ["2026-11-23"], registry=registry)  # any later store run catches up
    assert stores_agree(runtime)


def seed_graph(runtime) -> dict[str, str]:
    apply(
        runtime,
        "g1",
        [
            person("e1", "Dana Okafor", DANA),
            company("e2", "Northwind Traders", "northwind.example"),
            person("e3", "Luis Ferreira", "luis.ferreira@northwind.example"),
            person("e4", "Grace Nakamura"),
        ],
        memories=[
            ("e1", "Dana Okafor wants Acme Pulse for the supply-chain team."),
            ("e2", "Northwind Traders runs a supply-chain team of 60 analysts."),
            ("e3", "Luis Ferreira needs the order form by 15 December."),
            ("e4", "Grace Nakamura signs anything above $40,000."),
        ],
        edges=[("e1", "works_at", "e2"), ("e3", "works_at", "e2"), ("e1", "knows", "e3")],
    )
    apply(
        runtime,
        "g2",
        [
            person("e1", "Maya Lindqvist", "maya.lindqvist@acme-analytics.example"),
            person("e2", "Dana Okafor", DANA),
            person("e3", "Grace Nakamura"),
            person("e4", "Luis Ferreira", "luis.ferreira@northwind.example"),
        ],
        memories=[("e1", "Maya Lindqvist sends the order form on Friday.")],
        edges=[("e1", "knows", "e2"), ("e4", "reports_to", "e3")],
    )
    # The same names in another org stay out of acme's graph.
    apply(
        runtime,
        "x1",
        [person("e1", "Dana Okafor", DANA), person("e2", "Priti Shah")],
        memories=[("e2", "Priti Shah is in another org.")],
        edges=[("e1", "knows", "e2")],
        org="globex",
    )
    return {
        "dana": entity_by_email(runtime, DANA),
        "maya": entity_by_email(runtime, "maya.lindqvist@acme-analytics.example"),
        "northwind": entity_by_email(runtime, "northwind.example"),
    }


def test_edges_are_seen_from_both_ends_and_memories_reached_within_hops(runtime):
    ids = seed_graph(runtime)
    with runtime.connection() as conn:
        from_company = neighbours(conn, "acme", ids["northwind"])
        from_dana = neighbours(conn, "acme", ids["dana"])
        reach = {
            hops: [
                (m["entity"], m["hops"])
                for m in reachable_memories(conn, "acme", ids["maya"], hops)
            ]
            for hops in (0, 1, 2, 3)
        }
    assert [(n["name"], n["predicate"], n["direction"]) for n in from_company] == [
        ("Dana Okafor", "works_at", "in"),
        ("Luis Ferreira", "works_at", "in"),
    ]
    assert [(n["name"], n["predicate"], n["direction"]) for n in from_dana] == [
        ("Luis Ferreira", "knows", "out"),
        ("Maya Lindqvist", "knows", "in"),
        ("Northwind Traders", "works_at", "out"),
    ]
    assert reach[0] == [("Maya Lindqvist", 0)]
    assert reach[1] == [("Maya Lindqvist", 0), ("Dana Okafor", 1)]
    assert reach[2] == [
        ("Maya Lindqvist", 0),
        ("Dana Okafor", 1),
        ("Luis Ferreira", 2),
        ("Northwind Traders", 2),
    ]
    assert reach[3] == [*reach[2], ("Grace Nakamura", 3)]


def test_graph_command_finds_the_entity_by_id_address_or_name(runtime, monkeypatch, capsys):
    ids = seed_graph(runtime)
    monkeypatch.setenv("MEMO_HOME", str(runtime.settings.memo_home))
    outputs = []
    for ref in (ids["dana"], "Dana.Okafor+x@Northwind.example", "dana okafor"):
        assert run_cli("graph", "--org", "acme", "--entity", ref, "--hops", "2", "--json") == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1] == outputs[2]
    out = outputs[0]
    assert out["entity"]["id"] == ids["dana"] and out["hops"] == 2
    assert {n["name"] for n in out["neighbours"]} == {
        "Luis Ferreira",
        "Maya Lindqvist",
        "Northwind Traders",
    }
    assert {m["entity"] for m in out["memories"]} == {
        "Dana Okafor",
        "Luis Ferreira",
        "Maya Lindqvist",
        "Northwind Traders",
        "Grace Nakamura",
    }
    assert "Priti Shah" not in json.dumps(out)
    assert run_cli("graph", "--org", "acme", "--entity", "Nobody Here", "--json") == 2
    with runtime.connection() as conn:
        assert find_entity(conn, "globex", "dana okafor")["org"] == "globex"


def test_near_duplicates_embed_stored_memories_the_vector_store_lacks(runtime):
    from memo_pipeline.stage2.dedup import NearDuplicates

    apply(
        runtime,
        "r1",
        [person("e1", "Dana Okafor", DANA)],
        memories=[("e1", "Dana Okafor wants Acme Pulse rolled out to supply chain in January.")],
    )
    entity = entity_by_email(runtime, DANA)
    # A vector store that lost the vector (a crash between the two writes): the memory's text
    # is read from PostgreSQL and embedded instead.
    near = NearDuplicates(runtime.embedder.encode, lambda ids: {}, threshold=0.9)
    with runtime.connection() as conn:
        hit = near.find(
            conn,
            "acme",
            entity,
            "Dana Okafor wants Acme Pulse rolled out to the supply chain in January.",
        )
    assert hit is not None and hit[1] >= 0.9
    assert near.embedded == 2  # the stored memory's text and the new one


def test_candidates_grow_past_their_matrix_and_find_what_was_added():
    import numpy as np

    from memo_pipeline.stage2.dedup import Candidates, NearDuplicates

    def unit(i: int) -> np.ndarray:
        vector = np.zeros(16, dtype=np.float32)
        vector[i] = 1.0
        return vector

    texts = {f"text {i}": unit(i) for i in range(16)}
    near = NearDuplicates(lambda batch: [texts[t] for t in batch], lambda ids: {}, threshold=0.99)
    empty = Candidates([], [])
    assert near.closest(empty, "text 0") is None
    stored = Candidates(["m0", "m1"], [unit(0), unit(1)])
    # Added one at a time past the first matrix's size and past the spare rows twice.
    for i in range(2, 12):
        stored.add(f"m{i}", unit(i))
        empty.add(f"m{i}", unit(i))
    assert stored.matrix().shape == (12, 16) and empty.matrix().shape == (10, 16)
    assert [near.closest(stored, f"text {i}")[0] for i in range(12)] == [f"m{i}" for i in range(12)]
    assert near.closest(empty, "text 1") is None and near.closest(empty, "text 11")[0] == "m11"
    assert near.closest(stored, "text 13") is None
