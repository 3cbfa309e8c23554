"""``memo-pipeline demo-modes``: every execution mode end to end, on this machine, in minutes.

It starts, in a fresh ``MEMO_HOME`` of its own: the provider emulator (Anthropic by default;
``--provider local`` skips it), the embedded PostgreSQL, the intake service
(``memo-pipeline serve``), the Dagster daemon on the project's workspace (so the intake and bulk
sensors run as they would in production) and a webhook receiver that verifies every signature
with ``standardwebhooks``. It creates an org and its API key, sends ``--writes`` writes in each
mode, and waits until every event is stored and its webhook verified: sync writes inline, async
writes through ``intake_async_sensor``, bulk writes through ``bulk_dispatch_sensor``, the batch
API and ``batch_completion_sensor``. Then it stops everything it started and prints, last,
``events=<n> stored=<n> webhooks_verified=<n>``. Exit status 0 only if all three are equal.

Run it with ``python -m memo_pipeline.demo`` or ``memo-pipeline demo-modes``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from memo_pipeline.client import MemoClient
from memo_pipeline.config import REPO_ROOT, Settings
from memo_pipeline.records import DEFAULT_ORG
from memo_pipeline.schema.collections import load_orgs

log = logging.getLogger("memo_pipeline.demo")

DEMO_ORG = "demo"
FIRST = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jade"]
LAST = ["Martin", "Okafor", "Silva", "Kowalski", "Tanaka", "Haddad", "Novak", "Berg"]
COMPANIES = ["Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Northwind"]


class Receiver:
    """A webhook endpoint that verifies Standard Webhooks signatures and remembers events."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.verified: dict[str, str] = {}  # event id -> status
        self.rejected = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    payload = Webhook(receiver.secret or "").verify(body, dict(self.headers))
                except (WebhookVerificationError, ValueError, TypeError):
                    with receiver.lock:
                        receiver.rejected += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.verified[payload["data"]["event_id"]] = payload["data"]["status"]
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/memo"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _content(index: int, mode: str) -> tuple[str, str]:
    first, last = FIRST[index % len(FIRST)], LAST[(index // 2) % len(LAST)]
    company = COMPANIES[index % len(COMPANIES)]
    email = f"{first.lower()}.{last.lower()}.{mode}{index}@{company.lower()}.example"
    text = (
        f"From: {first} {last} <{email}>\n"
        f"Hi, I'm the operations manager at {company} Labs. We plan to renew the analytics "
        f"contract in March ({mode} write {index}). Call me at +1 415 555 {index:04d}."
    )
    return text, email


def _write_org(home: Path, provider: str) -> Path:
    folder = home / "orgs"
    folder.mkdir(parents=True, exist_ok=True)
    base = load_orgs(REPO_ROOT / "config" / "orgs")[DEFAULT_ORG]
    spec = base.model_dump(mode="json", exclude_none=True)
    spec.update(org=DEMO_ORG, display_name="Demo Org", provider={"provider": provider})
    spec["collection_providers"] = {}
    (folder / f"{DEMO_ORG}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def _stop_postgres(settings: Settings) -> None:
    """Stop the demo's embedded PostgreSQL, also when running as root (pgserver then runs the
    server as its own system user, and pg_ctl must be run as that user)."""
    from memo_pipeline.stores.db import stop_embedded

    stop_embedded(settings)
    if not (settings.pg_dir / "postmaster.pid").exists():
        return
    from pgserver._commands import pg_ctl  # noqa: PLC2701 - pgserver has no stop API

    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pg_dir, user=user)
    except Exception:  # noqa: BLE001 - report and go on stopping the rest
        log.warning("could not stop PostgreSQL in %s", settings.pg_dir)


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        root = Path(os.environ.get("MEMO_HOME") or REPO_ROOT / ".memo").resolve()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.home = root / f"demo-modes-{stamp}-{os.getpid()}"
        self.logs = self.home / "logs"
        self.processes: list[subprocess.Popen] = []
        self.emulator: Any = None
        self.receiver: Receiver | None = None
        self.settings: Settings | None = None

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        out = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT
        )
        self.processes.append(process)
        log.info("started %s (pid %d), log %s", name, process.pid, self.logs / f"{name}.log")
        return process

    def start(self) -> str:
        """Start everything; returns the service URL."""
        self.logs.mkdir(parents=True, exist_ok=True)
        provider = self.args.provider
        orgs_dir = _write_org(self.home, provider)
        os.environ.update(
            {
                "MEMO_HOME": str(self.home),
                "MEMO_ORGS_DIR": str(orgs_dir),
                "MEMO_WEBHOOK_ALLOW_NETWORKS": "loopback",
                "MEMO_INTAKE_BULK_DISPATCH_MIN_RECORDS": str(self.args.writes),
                "MEMO_INTAKE_BULK_DISPATCH_MAX_AGE_SECONDS": "30",
                "MEMO_INTAKE_WORKER_INTERVAL_SECONDS": "0.5",
            }
        )
        os.environ.pop("MEMO_PROVIDER", None)
        os.environ.pop("DATABASE_URL", None)
        if provider != "local":
            from memo_pipeline_emulator import EmulatorConfig, start_emulator

            # The emulator accepts any key; a real one must never be sent to it.
            os.environ["ANTHROPIC_API_KEY"] = "demo-emulator-key"
            os.environ["OPENAI_API_KEY"] = "demo-emulator-key"
            self.emulator = start_emulator(
                moto_port=None, config=EmulatorConfig(batch_delay_seconds=5)
            )
            base_url = self.emulator.openai_base_url if provider == "openai" else self.emulator.url
            (self.home / "providers.yaml").write_text(
                yaml.safe_dump({"providers": {provider: {"base_url": base_url, "max_retries": 2}}})
            )
            log.info("%s emulator at %s", provider, base_url)

        from memo_pipeline.defs.instance import prepare_instance
        from memo_pipeline.intake.keys import create_key
        from memo_pipeline.intake.runtime import IntakeRuntime

        self.settings = Settings.from_env()
        runtime = IntakeRuntime(self.settings)
        prepare_instance(self.settings, runtime.urls)
        with runtime.connection() as conn:
            self.api_key = create_key(conn, runtime.orgs, DEMO_ORG, "demo-modes").api_key
        self.receiver = Receiver().start()

        port = _free_port()
        bin_dir = Path(sys.executable).parent
        self._spawn(
            "service",
            [sys.executable, "-m", "memo_pipeline.cli", "serve", "--port", str(port)],
        )
        self._spawn(
            "dagster-daemon",
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
        )
        url = f"http://127.0.0.1:{port}"
        self._wait_healthy(url)
        return url

    def _wait_healthy(self, url: str) -> None:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.processes[0].poll() is not None:
                raise RuntimeError(f"the service exited; see {self.logs / 'service.log'}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the service did not become healthy within 120 s")

    def send(self, client: MemoClient) -> dict[str, str]:
        """Send the writes; returns event id -> mode."""
        events: dict[str, str] = {}
        for mode in ("bulk", "async"):
            for index in range(self.args.writes):
                content, email = _content(index, mode)
                answer = client.memorize(content, execution_mode=mode, identifier=email)
                events[answer["event_id"]] = mode
            log.info("sent %d %s writes", self.args.writes, mode)

        def sync_write(index: int) -> str:
            content, email = _content(index, "sync")
            return client.memorize(content, execution_mode="sync", identifier=email)["event_id"]

        with ThreadPoolExecutor(max_workers=4) as pool:
            for event_id in pool.map(sync_write, range(self.args.writes)):
                events[event_id] = "sync"
        log.info("sent %d sync writes (answered once stored)", self.args.writes)
        return events

    def wait(self, client: MemoClient, events: dict[str, str], deadline: float) -> dict[str, str]:
        statuses: dict[str, str] = {}
        last_report = 0.0
        while time.monotonic() < deadline:
            for event_id in events:
                if statuses.get(event_id) not in ("stored", "failed"):
                    statuses[event_id] = client.event(event_id)["status"]
            verified = set(self.receiver.verified) & set(events)
            done = sum(1 for s in statuses.values() if s in ("stored", "failed"))
            if done == len(events) and len(verified) == len(events):
                break
            if time.monotonic() - last_report > 15:
                last_report = time.monotonic()
                by_mode = {
                    mode: sum(1 for e, m in events.items() if m == mode and statuses[e] == "stored")
                    for mode in ("sync", "async", "bulk")
                }
                log.info(
                    "stored by mode %s; webhooks verified %d of %d",
                    json.dumps(by_mode),
                    len(verified),
                    len(events),
                )
            time.sleep(2)
        return statuses

    def _stop_strays(self) -> None:
        """Stop what the daemon started in sessions of their own (its code servers), found by
        this demo's MEMO_HOME in their environment."""
        import psutil

        home = str(self.home)
        strays = []
        for process in psutil.process_iter(["pid", "name"]):
            try:
                if (
                    process.pid != os.getpid()
                    and "postgres" not in (process.info["name"] or "")
                    and process.environ().get("MEMO_HOME") == home
                ):
                    process.terminate()
                    strays.append(process)
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        _, alive = psutil.wait_procs(strays, timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self._stop_strays()
        if self.receiver is not None:
            self.receiver.stop()
        if self.emulator is not None:
            self.emulator.stop()
        if self.settings is not None:
            _stop_postgres(self.settings)
        if not self.args.keep:
            shutil.rmtree(self.home, ignore_errors=True)
        else:
            log.info("state kept in %s", self.home)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memo-pipeline demo-modes", description=__doc__)
    parser.add_argument("--writes", type=int, default=20, help="writes per mode")
    parser.add_argument("--timeout", type=float, default=540, help="seconds to wait for webhooks")
    parser.add_argument("--provider", choices=["anthropic", "openai", "local"], default="anthropic")
    parser.add_argument("--keep", action="store_true", help="keep the demo's MEMO_HOME")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
        )
    # pgserver logs its shutdown at exit, after the summary line.
    for noisy in ("httpx", "sentence_transformers", "lancedb", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    started = time.monotonic()
    demo = Demo(args)
    events: dict[str, str] = {}
    statuses: dict[str, str] = {}
    verified = 0
    try:
        url = demo.start()
        with MemoClient(url, demo.api_key, timeout=300) as client:
            demo.receiver.secret = client.set_webhook(demo.receiver.url)["secret"]
            events = demo.send(client)
            statuses = demo.wait(client, events, started + args.timeout)
        verified = len(set(demo.receiver.verified) & set(events))
    except Exception:
        log.exception("the demo failed")
    finally:
        try:
            demo.stop()
        except Exception:
            log.exception("stopping the demo failed; see %s", demo.logs)
    stored = sum(1 for s in statuses.values() if s == "stored")
    log.info("finished in %.0f s", time.monotonic() - started)
    sys.stdout.write(f"events={len(events)} stored={stored} webhooks_verified={verified}\n")
    sys.stdout.flush()
    expected = 3 * args.writes
    return 0 if len(events) == stored == verified == expected else 1


if __name__ == "__main__":
    sys.exit(main())
