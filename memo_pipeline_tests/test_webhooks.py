"""Webhooks over real HTTP: a receiver in the test verifies every delivery with
``standardwebhooks``; the service's worker drains the outbox.

Covers: a signed webhook per stored write with the Standard Webhooks headers; a receiver that
fails and then recovers (the attempts in the delivery log, one message id throughout); a
webhook owed while no endpoint answers is delivered later, never lost; the secret shown once and
stored encrypted; the secret key file created with mode 0600; endpoints refused by address
class (loopback, private, link-local, reserved) unless the org or the deployment allows them.

Leaves out: which events end when (test_intake_paths.py) and the API's auth (test_api.py).
"""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from memo_pipeline.config import Settings
from memo_pipeline.intake.crypto import KEY_FILE, SecretBox, SecretKeyError
from memo_pipeline.intake.keys import set_policy
from memo_pipeline.intake.netguard import WebhookUrlRefused, address_class, check_webhook_url
from memo_pipeline_tests.test_intake_support import Receiver, email, http, new_key, wait_for

pytest_plugins = ["memo_pipeline_tests.test_intake_support"]


def _memorize(client, name: str, mode: str = "sync") -> str:
    content, address = email(name)
    response = client.post(
        "/v1/memorize", json={"content": content, "identifier": address, "execution_mode": mode}
    )
    assert response.status_code in (200, 202), response.text
    return response.json()["event_id"]


def test_stored_write_sends_one_signed_webhook(server, service, receiver):
    with http(server, new_key(service, "acme")) as client:
        answer = client.put("/v1/webhook", json={"url": receiver.url})
        assert answer.status_code == 200, answer.text
        receiver.secret = answer.json()["secret"]
        assert receiver.secret.startswith("whsec_")
        assert client.get("/v1/webhook").json() == {
            "url": receiver.url,
            "configured": True,
            "allowed_networks": [],
            "updated_at": client.get("/v1/webhook").json()["updated_at"],
        }

        event_id = _memorize(client, "Dana Okafor")
        wait_for(lambda: event_id in receiver.events())
        log = client.get("/v1/webhook/deliveries", params={"event_id": event_id}).json()
    payload = receiver.verified[0]
    assert payload["type"] == "event.stored"
    assert payload["data"]["event_id"] == event_id and payload["data"]["org"] == "acme"
    assert payload["data"]["counts"]["memories"] == len(payload["data"]["memory_ids"]) >= 1
    headers = {k.lower(): v for k, v in receiver.headers[0].items()}
    assert headers["webhook-id"] == f"msg_{event_id}_stored"
    assert headers["webhook-signature"].startswith("v1,")
    assert receiver.rejected == 0 and len(receiver.verified) == 1
    assert [(d["attempt"], d["status_code"], d["message_status"]) for d in log["deliveries"]] == [
        (1, 204, "delivered")
    ]
    assert log["deliveries"][0]["url"] == receiver.url

    with service.runtime.connection() as conn:
        row = conn.execute(
            "select webhook_secret from intake_orgs where org_id = 'acme'"
        ).fetchone()
    assert receiver.secret not in row["webhook_secret"]
    assert service.box.decrypt(row["webhook_secret"]) == receiver.secret


def test_failing_receiver_is_retried_until_it_recovers(server, service):
    flaky = Receiver(fail_first=2)
    try:
        with http(server, new_key(service, "beta")) as client:
            flaky.secret = client.put("/v1/webhook", json={"url": flaky.url}).json()["secret"]
            event_id = _memorize(client, "Bruno Silva")
            wait_for(lambda: event_id in flaky.events(), timeout=30)
            log = client.get("/v1/webhook/deliveries", params={"event_id": event_id}).json()
    finally:
        flaky.close()
    attempts = sorted(log["deliveries"], key=lambda d: d["attempt"])
    assert [(d["attempt"], d["status_code"], d["error"]) for d in attempts] == [
        (1, 500, "HTTP 500"),
        (2, 500, "HTTP 500"),
        (3, 204, None),
    ]
    assert {d["message_id"] for d in attempts} == {f"msg_{event_id}_stored"}
    assert flaky.seen == 3 and len(flaky.verified) == 1


def test_webhook_owed_while_the_endpoint_is_down_is_delivered_later(server, service):
    down = Receiver()
    url = down.url
    down.close()  # nothing listens on the port now
    with http(server, new_key(service, "gamma")) as client:
        secret = client.put("/v1/webhook", json={"url": url}).json()["secret"]
        event_id = _memorize(client, "Chen Tanaka")
        wait_for(
            lambda: len(client.get("/v1/webhook/deliveries").json()["deliveries"]) >= 2,
            timeout=20,
        )
        up = Receiver()
        up.secret = secret
        try:
            client.put("/v1/webhook", json={"url": up.url, "secret": secret})
            wait_for(lambda: event_id in up.events(), timeout=20)
        finally:
            up.close()
        log = client.get("/v1/webhook/deliveries").json()["deliveries"]
    assert log[0]["status_code"] == 204
    assert all(d["status_code"] is None and d["error"] for d in log[1:])


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://[::1]:9/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://0.0.0.0/hook", "reserved"),
        ("ftp://example.com/hook", "http or https"),
        ("http://user:pw@127.0.0.1/hook", "credentials"),
    ],
)
def test_webhook_endpoints_are_refused_by_address_class(server, service, url, refused):
    service.config = service.config.with_changes(webhook_allowed_networks=frozenset())
    with http(server, new_key(service, "acme")) as client:
        answer = client.put("/v1/webhook", json={"url": url})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "url" and refused in answer.json()["error"]


def test_an_org_can_be_allowed_loopback_webhooks(server, service, receiver):
    service.config = service.config.with_changes(webhook_allowed_networks=frozenset())
    key = new_key(service, "acme")
    with http(server, key) as client:
        assert client.put("/v1/webhook", json={"url": receiver.url}).status_code == 422
        with service.runtime.connection() as conn:
            set_policy(conn, service.runtime.orgs, "acme", webhook_networks={"loopback"})
        assert client.put("/v1/webhook", json={"url": receiver.url}).status_code == 200
        assert client.get("/v1/webhook").json()["allowed_networks"] == ["loopback"]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.216.34", None),
        ("2606:2800:220:1::", None),
        ("127.0.0.5", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fe80::1", "link-local"),
        ("172.16.5.4", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("224.0.0.1", "reserved"),
    ],
)
def test_address_classes(address, kind):
    assert address_class(address) == kind


def test_a_name_is_checked_for_every_address_it_resolves_to():
    def resolver(host, port):
        return ["93.184.216.34", "10.0.0.7"]

    with pytest.raises(WebhookUrlRefused, match="10.0.0.7, a private address"):
        check_webhook_url("https://hooks.example.com/x", set(), resolver)
    assert check_webhook_url("https://hooks.example.com/x", {"private"}, resolver)


def test_secret_key_file_is_created_private_and_required_with_a_database_url(tmp_path, monkeypatch):
    monkeypatch.delenv("MEMO_SECRET_KEY", raising=False)
    settings = Settings.from_env(memo_home=tmp_path / "home")
    box = SecretBox.from_settings(settings)
    path = tmp_path / "home" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = box.encrypt("whsec_abc")
    assert SecretBox.from_settings(settings).decrypt(token) == "whsec_abc"

    path.chmod(0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        SecretBox.from_settings(settings)

    external = Settings.from_env(memo_home=tmp_path / "other", database_url="postgresql://x/y")
    with pytest.raises(SecretKeyError, match="MEMO_SECRET_KEY"):
        SecretBox.from_settings(external)
    monkeypatch.setenv("MEMO_SECRET_KEY", Fernet.generate_key().decode())
    assert (
        SecretBox.from_settings(external).decrypt(SecretBox.from_settings(external).encrypt("s"))
        == "s"
    )
