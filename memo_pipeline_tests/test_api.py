"""The intake API over real HTTP (uvicorn on a loopback port, httpx), on real PostgreSQL and
LanceDB with the ``local`` provider.

Covers: the OpenAPI document; a sync memorize answered 200 with what was stored; async and bulk
answered 202 after the event row is committed; idempotency keys; keys (missing, wrong, rotated,
revoked); tenancy (one org's key can neither read nor write another org's events, entities or
memories); error shapes naming the field for malformed, invalid and oversized requests; the
per-org rate limit (429 with Retry-After, and the client honouring it); saveBatch without
extraction (chunks as memories of a document entity, vectors in LanceDB, replaced on re-save)
and with it (the document prompt); the Python client and ``memo-pipeline memorize``.

Leaves out: the async and bulk paths through Dagster and deadlines (test_intake_paths.py), and
webhook delivery (test_webhooks.py).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from memo_pipeline.client import MemoApiError, MemoClient
from memo_pipeline.intake.documents import document_entity_id
from memo_pipeline.intake.extract import process_events
from memo_pipeline.intake.keys import revoke_key, rotate_key, set_policy
from memo_pipeline.prompts.render import DOCUMENT_FORMAT
from memo_pipeline_tests.test_intake_support import SOURCE_TS, email, http, new_key, wait_for

pytest_plugins = ["memo_pipeline_tests.test_intake_support"]


def test_openapi_is_published(server):
    with http(server, None) as client:
        doc = client.get("/openapi.json").json()
    assert {"/v1/memorize", "/v1/context/saveBatch", "/v1/events/{event_id}"} <= set(doc["paths"])
    schema = doc["components"]["schemas"]["MemorizeRequest"]
    assert {"content", "execution_mode", "identifier", "deadline"} <= set(schema["properties"])


def test_sync_memorize_answers_with_what_was_stored(server, service):
    key = new_key(service, "acme")
    content, address = email("Dana Okafor")
    with http(server, key) as client:
        response = client.post(
            "/v1/memorize",
            json={
                "content": content,
                "identifier": address,
                "executionMode": "sync",
                "source_ts": SOURCE_TS.isoformat(),
                "title": "renewal",
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "stored" and body["execution_mode"] == "sync"
        assert [h["status"] for h in body["history"]] == [
            "accepted",
            "submitted",
            "extracted",
            "stored",
        ]
        result = body["result"]
        assert result["counts"]["memories"] >= 1 and result["counts"]["entities"] >= 1
        assert any(p["property"] == "email" and p["value"] == address for p in result["properties"])
        assert body["requests"][0]["path"] == "sync"

        again = client.get(f"/v1/events/{body['event_id']}").json()
        assert again["status"] == "stored" and again["result"] == result
        person = next(p["entity_id"] for p in result["properties"] if p["property"] == "email")
        entity = client.get(f"/v1/entities/{person}").json()
        assert address in entity["identifiers"]
        listed = client.get("/v1/memories").json()["memories"]
        assert {m["memory_id"] for m in listed} == {m["memory_id"] for m in result["memories"]}

    ids = [m["memory_id"] for m in result["memories"]]
    quoted = ", ".join(f"'{m}'" for m in ids)
    assert service.runtime.vectors.ids(f"memory_id in ({quoted})") == set(ids)


@pytest.mark.parametrize("mode", ["async", "bulk"])
def test_async_and_bulk_answer_202_after_the_event_is_committed(server, service, mode):
    key = new_key(service, "acme")
    content, address = email("Bruno Silva")
    with http(server, key) as client:
        response = client.post(
            "/v1/memorize",
            json={"content": content, "identifier": address, "execution_mode": mode},
            headers={"idempotency-key": f"write-{mode}"},
        )
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]
        # Another connection sees the event: it was committed before the answer.
        with service.runtime.connection() as conn:
            row = conn.execute(
                "select execution_mode, status from intake_events where event_id = %s", (event_id,)
            ).fetchone()
        assert row == {"execution_mode": mode, "status": "accepted"}

        repeat = client.post(
            "/v1/memorize",
            json={"content": content, "identifier": address, "execution_mode": mode},
            headers={"idempotency-key": f"write-{mode}"},
        )
        assert repeat.status_code == 202 and repeat.json()["event_id"] == event_id
        assert repeat.json()["created"] is False
        view = client.get(f"/v1/events/{event_id}").json()
    assert view["status"] == "accepted" and view["history"][0]["status"] == "accepted"
    with service.runtime.connection() as conn:
        count = conn.execute(
            "select count(*) as n from intake_events where org_id = 'acme'"
        ).fetchone()
    assert count["n"] == 1


def test_keys_missing_wrong_rotated_and_revoked(server, service):
    old = new_key(service, "acme")
    body = {"content": "Hana Novak joined Hooli Labs.", "execution_mode": "async"}
    with http(server, None) as anonymous:
        missing = anonymous.post("/v1/memorize", json=body)
    assert missing.status_code == 401 and missing.json()["field"] == "authorization"
    with http(server, old[:-2] + "xx") as wrong:
        assert wrong.post("/v1/memorize", json=body).status_code == 401
    with http(server, "not-a-key") as garbage:
        assert garbage.get("/v1/events/evt_x").status_code == 401

    with service.runtime.connection() as conn:
        rotated = rotate_key(conn, service.runtime.orgs, "acme", timedelta(0))
    with http(server, old) as client:
        assert client.post("/v1/memorize", json=body).status_code == 401
    with http(server, rotated.api_key) as client:
        assert client.post("/v1/memorize", json=body).status_code == 202
    with service.runtime.connection() as conn:
        stored = conn.execute("select key_hash, salt from intake_api_keys").fetchall()
        assert all(rotated.api_key.split("_", 2)[2] not in r["key_hash"] for r in stored)
        assert revoke_key(conn, rotated.key_id)
    with http(server, rotated.api_key) as client:
        assert client.post("/v1/memorize", json=body).status_code == 401


def test_one_org_cannot_read_or_write_another_orgs_data(server, service):
    acme_key, beta_key = new_key(service, "acme"), new_key(service, "beta")
    content, address = email("Chen Kowalski")
    with http(server, acme_key) as acme:
        stored = acme.post(
            "/v1/memorize",
            json={"content": content, "identifier": address, "execution_mode": "sync"},
        ).json()
        event_id = stored["event_id"]
        entity_id = stored["result"]["entities"][0]["entity_id"]
        assert acme.get(f"/v1/entities/{entity_id}").status_code == 200

    with http(server, beta_key) as beta:
        assert beta.get(f"/v1/events/{event_id}").status_code == 404
        assert beta.get(f"/v1/entities/{entity_id}").status_code == 404
        assert beta.get("/v1/memories", params={"entity_id": entity_id}).json()["memories"] == []
        assert beta.get("/v1/memories", params={"identifier": address}).json()["memories"] == []
        assert beta.get("/v1/memories").json()["memories"] == []
        forged = beta.post(
            "/v1/memorize",
            json={"content": content, "execution_mode": "async", "org": "acme"},
        )
        assert forged.status_code == 403 and forged.json()["field"] == "org"
        deliveries = beta.get("/v1/webhook/deliveries", params={"event_id": event_id}).json()
        assert deliveries["deliveries"] == []
    with service.runtime.connection() as conn:
        orgs = conn.execute("select distinct org_id from intake_events").fetchall()
    assert orgs == [{"org_id": "acme"}]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"execution_mode": "async"}, 422, "content"),
        ({"content": "   ", "execution_mode": "async"}, 422, "content"),
        ({"content": "x"}, 422, "execution_mode"),
        ({"content": "x", "execution_mode": "later"}, 422, "execution_mode"),
        ({"content": "x", "execution_mode": "bulk", "deadline": "soon"}, 422, "deadline"),
        ({"content": "x", "execution_mode": "bulk", "colour": "red"}, 422, "colour"),
        ({"content": "x", "execution_mode": "bulk", "collection": "nope"}, 422, "collection"),
        ({"content": "x" * 2100, "execution_mode": "bulk"}, 413, "content"),
        ([1, 2], 400, "body"),
        # Dates UTC cannot hold, or outside the accepted source range, and text PostgreSQL
        # cannot store: each a 422 naming the field, never a 500.
        (
            {"content": "x", "execution_mode": "bulk", "deadline": "9999-12-31T23:00:00-05:00"},
            422,
            "deadline",
        ),
        (
            {"content": "x", "execution_mode": "bulk", "source_ts": "0001-01-01T00:30:00+01:00"},
            422,
            "source_ts",
        ),
        (
            {"content": "x", "execution_mode": "bulk", "source_ts": "1850-01-01T00:00:00Z"},
            422,
            "source_ts",
        ),
        ({"content": "a\u0000b", "execution_mode": "bulk"}, 422, "content"),
        ({"content": "x", "execution_mode": "bulk", "title": "t\u0000"}, 422, "title"),
        (
            {"content": "x", "execution_mode": "bulk", "identifier": "a\u0000@b.example"},
            422,
            "identifier",
        ),
    ],
)
def test_invalid_memorize_names_the_field(server, service, body, status, field):
    service.config = service.config.with_changes(max_content_bytes=2000)
    with http(server, new_key(service, "acme")) as client:
        response = client.post("/v1/memorize", json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["field"] == field
    if status == 422:
        assert answer["error"].startswith(field) or field in answer["error"]


def test_malformed_and_oversized_requests(server, service):
    service.config = service.config.with_changes(max_batch_documents=3)
    with http(server, new_key(service, "acme")) as client:
        broken = client.post(
            "/v1/memorize",
            content=b'{"content": "x",',
            headers={"content-type": "application/json"},
        )
        assert broken.status_code == 400
        assert broken.json() == {"error": "request body is not valid JSON", "field": "body"}

        huge = client.post(
            "/v1/memorize",
            content=b'{"content": "' + b"y" * 9_000_000 + b'"}',
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413 and huge.json()["field"] == "body"

        docs = [{"content": f"Document {i} about Initech Labs."} for i in range(4)]
        too_many = client.post(
            "/v1/context/saveBatch",
            json={"documents": docs, "aiExtraction": False, "execution_mode": "async"},
        )
        assert too_many.status_code == 413 and too_many.json()["field"] == "documents"

        bad_doc = client.post(
            "/v1/context/saveBatch",
            json={"documents": [{"title": "no content"}], "execution_mode": "async"},
        )
        assert bad_doc.status_code == 422
        assert bad_doc.json()["field"] == "documents[0].content"
    with service.runtime.connection() as conn:
        assert conn.execute("select count(*) as n from intake_events").fetchone()["n"] == 0


def test_reads_and_webhooks_refuse_unstorable_text_and_bad_urls_by_field(server, service):
    key = new_key(service, "acme")
    with service.runtime.connection() as conn:
        set_policy(conn, service.runtime.orgs, "acme", webhook_networks={"loopback"})
    with http(server, key) as client:
        for path, params, field in [
            ("/v1/events/a%00b", None, "event_id"),
            ("/v1/entities/%00", None, "entity_id"),
            ("/v1/memories", {"identifier": "a\x00b"}, "identifier"),
            ("/v1/webhook/deliveries", {"event_id": "\x00"}, "event_id"),
        ]:
            answer = client.get(path, params=params)
            assert (answer.status_code, answer.json()["field"]) == (422, field), path
        bad_port = client.put("/v1/webhook", json={"url": "http://example.com:99999/x"})
        assert (bad_port.status_code, bad_port.json()["field"]) == (422, "url")
        bad_secret = client.put(
            "/v1/webhook", json={"url": "http://127.0.0.1:9/x", "secret": "whsec_!!!"}
        )
        assert (bad_secret.status_code, bad_secret.json()["field"]) == (422, "secret")
        assert "whsec_ secret followed by base64" in bad_secret.json()["error"]
        source = client.post(
            "/v1/context/saveBatch",
            json={
                "documents": [{"content": "x", "source_ts": "9999-12-31T23:00:00-05:00"}],
                "execution_mode": "async",
            },
        )
        assert (source.status_code, source.json()["field"]) == (422, "documents[0].source_ts")


def test_rate_limit_answers_429_with_retry_after(server, service):
    key = new_key(service, "beta")
    with service.runtime.connection() as conn:
        set_policy(conn, service.runtime.orgs, "beta", rate_per_second=0.2, burst=2)
    with http(server, key) as client:
        answers = [client.get("/v1/events/evt_none") for _ in range(3)]
    assert [a.status_code for a in answers] == [404, 404, 429]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert answers[2].json()["error"].startswith("rate limit of org beta")

    # The client waits what Retry-After says, then succeeds.
    with service.runtime.connection() as conn:
        set_policy(conn, service.runtime.orgs, "beta", rate_per_second=2, burst=1)
    service._policies.clear()
    with MemoClient(server.url, key, max_attempts=4) as client:
        first = client.memorize("Ivan Berg moved to Vandelay Labs.", execution_mode="bulk")
        second = client.memorize("Jade Martin moved to Vandelay Labs.", execution_mode="bulk")
    assert first["event_id"] != second["event_id"]


def test_documents_without_extraction_are_chunked_embedded_and_replaced(server, service):
    service.config = service.config.with_changes(chunk_chars=120)
    key = new_key(service, "gamma")
    text = (
        "Northwind Traders renews its analytics contract every March.\n\n"
        "The procurement lead is Dana Okafor; the finance contact is Tom Becker.\n\n"
        "Support tickets go to the shared inbox and are answered within a day."
    )
    with http(server, key) as client:
        saved = client.post(
            "/v1/context/saveBatch",
            json={
                "documents": [{"id": "handbook-1", "title": "Northwind", "content": text}],
                "aiExtraction": False,
                "execution_mode": "sync",
            },
        )
        assert saved.status_code == 200, saved.text
        first = saved.json()["result"]
        entity_id = document_entity_id("gamma", "doc:handbook-1")
        assert {e["entity_id"] for e in first["entities"]} == {entity_id}
        assert first["counts"]["memories"] >= 2
        entity = client.get(f"/v1/entities/{entity_id}").json()
        assert entity["type"] == "document" and entity["identifiers"] == ["doc:handbook-1"]

        resaved = client.post(
            "/v1/context/saveBatch",
            json={
                "documents": [{"id": "handbook-1", "title": "Northwind", "content": text[:60]}],
                "aiExtraction": False,
                "execution_mode": "sync",
            },
        ).json()["result"]
    old_ids = {m["memory_id"] for m in first["memories"]}
    new_ids = {m["memory_id"] for m in resaved["memories"]}
    assert len(new_ids) == 1 and new_ids <= old_ids
    vectors = service.runtime.vectors.ids("org_id = 'gamma'")
    assert vectors == new_ids


def test_documents_with_extraction_use_the_document_prompt(server, service):
    key = new_key(service, "acme")
    content, _ = email("Emeka Haddad", "globex")
    with http(server, key) as client:
        accepted = client.post(
            "/v1/context/saveBatch",
            json={
                "documents": [
                    {"id": "kb-7", "title": "Globex contacts", "content": content},
                    {"title": "untitled", "content": "Farah Tanaka leads Umbrella Labs."},
                ],
                "aiExtraction": True,
                "execution_mode": "async",
            },
        )
        assert accepted.status_code == 202, accepted.text
        event_id = accepted.json()["event_id"]
        summary = process_events(service.runtime, service.config, [event_id])
        assert summary.records == 2 and summary.calls == 2
        # The service's worker may end the event before process_events' own finalize does.
        view = wait_for(
            lambda: (v := client.get(f"/v1/events/{event_id}").json())["status"] == "stored" and v
        )
    assert view["status"] == "stored" and len(view["records"]) == 2
    with service.runtime.connection() as conn:
        prefixes = conn.execute(
            "select q.prefix_key from extraction_requests q join intake_event_records r "
            "on r.request_key = q.request_key where r.event_id = %s",
            (event_id,),
        ).fetchall()
    assert len(prefixes) == 2 and all(p["prefix_key"].endswith(DOCUMENT_FORMAT) for p in prefixes)


def test_client_and_cli_memorize(server, service, tmp_path, monkeypatch, capsys):
    from memo_pipeline import cli

    key = new_key(service, "acme")
    with MemoClient(server.url, key) as client:
        with pytest.raises(MemoApiError) as refused:
            client.memorize("x", execution_mode="bulk", collection="nope")
        assert refused.value.status == 422 and refused.value.field == "collection"

    writes = tmp_path / "writes.jsonl"
    writes.write_text(
        json.dumps({"content": "Goran Novak runs Initech Labs.", "identifier": "g@initech.example"})
        + "\n"
        + json.dumps({"content": "Hana Berg joined Hooli Labs.", "execution_mode": "async"})
        + "\n"
    )
    monkeypatch.setenv("MEMO_API_KEY", key)
    assert cli.main(["memorize", "--mode", "bulk", "--url", server.url, str(writes)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["execution_mode"] for line in lines] == ["bulk", "async"]
    with service.runtime.connection() as conn:
        modes = conn.execute(
            "select execution_mode from intake_events order by created_at"
        ).fetchall()
    assert [m["execution_mode"] for m in modes] == ["bulk", "async"]
