"""The emulator's state, its admin endpoints, and how to start it (in a thread or as a program).

Admin endpoints (all JSON):

* ``POST /_emulator/faults``: add fault rules: one rule object, a list, or ``{"faults": [...]}``
  (fields of ``FaultRule``); ``DELETE /_emulator/faults`` removes them all.
* ``POST /_emulator/config``: change settings of ``EmulatorConfig`` (e.g.
  ``{"batch_delay_seconds": 5, "bedrock_min_records": 100}``).
* ``POST /_emulator/clock``: ``{"advance": seconds}`` moves the emulator clock forward (cache
  lifetimes, batch delays and 24 h windows all run on it).
* ``POST /_emulator/reset``: forget batches, files, jobs, cache entries, faults, counters, and
  the clock offset; restore the configuration given at start.
* ``GET /_emulator/state``: counters (``batches_created``/``sync_calls`` per provider), live
  cache entries, jobs per status, active faults, clock offset.

A batch create may carry an ``x-emulator-batch-delay: <seconds>`` header to override the
configured delay for that batch.
"""

from __future__ import annotations

import copy
import logging
import socket
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from memo_pipeline_emulator import anthropic_api, bedrock_api, openai_api
from memo_pipeline_emulator.caching import (
    DEFAULT_MIN_CACHEABLE_TOKENS,
    Clock,
    PromptCache,
    min_cacheable_tokens,
)
from memo_pipeline_emulator.common import json_body, json_response
from memo_pipeline_emulator.faults import FaultRule, FaultSet


@dataclass
class EmulatorConfig:
    """Settings of one emulator; every field can be changed through ``/_emulator/config``."""

    batch_delay_seconds: float = 0.0
    min_cacheable_tokens: dict[str, int] = field(
        default_factory=lambda: dict(DEFAULT_MIN_CACHEABLE_TOKENS)
    )
    retry_after_seconds: float = 1.0
    results_chunk_size: int = 64  # the Anthropic SDK reads results in 64-byte chunks
    anthropic_max_requests: int = 100_000
    anthropic_max_bytes: int = 256 * 1024 * 1024
    openai_max_requests: int = 50_000
    openai_max_file_bytes: int = 200 * 1024 * 1024
    bedrock_min_records: int = 100
    bedrock_max_records: int = 50_000
    # Prompt caching inside Bedrock batch jobs is undocumented; modelled like Anthropic batches
    # by default, switch off to model "not honoured".
    bedrock_batch_caching: bool = True
    region: str = "us-east-1"
    account_id: str = "123456789012"
    s3_endpoint_url: str | None = None

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown emulator settings: {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self, name, value)


class EmulatorState:
    """Everything one emulator holds. Handlers take ``lock`` around every read and change."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.initial_config = copy.deepcopy(config or EmulatorConfig())
        self.config = copy.deepcopy(self.initial_config)
        self.clock = Clock()
        self.cache = PromptCache(self.clock)
        self.faults = FaultSet()
        self.lock = threading.RLock()
        self.counters: dict[str, Counter[str]] = {
            "batches_created": Counter(),
            "sync_calls": Counter(),
        }
        self.anthropic = anthropic_api.AnthropicStore(self)
        self.openai = openai_api.OpenAIStore(self)
        self.bedrock = bedrock_api.BedrockStore(self)

    def tick(self) -> None:
        """Advance every job whose time has come (end of delay, cancel, 24 h window)."""
        with self.lock:
            now = self.clock.now()
            self.anthropic.tick(now)
            self.openai.tick(now)
            self.bedrock.tick(now)

    def count(self, counter: str, provider: str) -> None:
        self.counters[counter][provider] += 1

    def min_cacheable(self, model: str) -> int:
        return min_cacheable_tokens(self.config.min_cacheable_tokens, model)

    def add_fault(self, **rule: Any) -> FaultRule:
        return self.faults.add(FaultRule(**rule))

    def reset(self) -> None:
        with self.lock:
            # In place: route handlers hold this object.
            s3_endpoint = self.config.s3_endpoint_url
            vars(self.config).update(vars(copy.deepcopy(self.initial_config)))
            self.config.s3_endpoint_url = s3_endpoint
            self.clock.reset()
            self.cache.reset()
            self.faults.clear()
            for counter in self.counters.values():
                counter.clear()
            self.anthropic.reset()
            self.openai.reset()
            self.bedrock.reset()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "batches_created": {
                    p: self.counters["batches_created"][p]
                    for p in ("anthropic", "openai", "bedrock")
                },
                "sync_calls": {
                    p: self.counters["sync_calls"][p] for p in ("anthropic", "openai", "bedrock")
                },
                "anthropic_batches": dict(
                    Counter(b.processing_status for b in self.anthropic.batches.values())
                ),
                "openai_batches": dict(Counter(b.status for b in self.openai.batches.values())),
                "bedrock_jobs": dict(Counter(j.status for j in self.bedrock.jobs.values())),
                "cache_entries": len(self.cache),
                "faults": [rule.as_dict() for rule in self.faults.rules()],
                "clock_offset": self.clock.offset,
                "config": asdict(self.config),
            }


def _admin_routes(state: EmulatorState) -> list[Route]:
    async def add_faults(request: Request) -> Response:
        body = await json_body(request)
        items = body.get("faults", [body]) if isinstance(body, dict) else body
        if not isinstance(items, list):
            return json_response(
                {"error": "expected a fault rule, a list, or {'faults': [...]}"}, 400
            )
        try:
            added = [state.add_fault(**item) for item in items]
        except (TypeError, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"faults": [rule.as_dict() for rule in added]})

    async def clear_faults(request: Request) -> Response:
        state.faults.clear()
        return json_response({"faults": []})

    async def set_config(request: Request) -> Response:
        body = await json_body(request)
        try:
            with state.lock:
                state.config.update(body or {})
        except (TypeError, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(asdict(state.config))

    async def move_clock(request: Request) -> Response:
        body = await json_body(request) or {}
        offset = state.clock.advance(float(body.get("advance", 0.0)))
        state.tick()
        return json_response({"clock_offset": offset, "now": state.clock.now()})

    async def reset(request: Request) -> Response:
        state.reset()
        return json_response({"reset": True})

    async def get_state(request: Request) -> Response:
        state.tick()
        return json_response(state.snapshot())

    return [
        Route("/_emulator/faults", add_faults, methods=["POST"]),
        Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_emulator/config", set_config, methods=["POST"]),
        Route("/_emulator/clock", move_clock, methods=["POST"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/state", get_state, methods=["GET"]),
    ]


def build_app(state: EmulatorState) -> Starlette:
    """The ASGI app serving all three providers and the admin endpoints."""
    return Starlette(
        routes=[
            *_admin_routes(state),
            *anthropic_api.routes(state),
            *openai_api.routes(state),
            *bedrock_api.routes(state),
        ]
    )


class EmulatorHandle:
    """A running emulator (and its moto S3 server, when it started one)."""

    def __init__(
        self,
        state: EmulatorState,
        server: uvicorn.Server,
        thread: threading.Thread,
        url: str,
        s3_url: str | None,
        moto: Any,
    ) -> None:
        self.state = state
        self.url = url
        self.s3_url = s3_url
        self._server = server
        self._thread = thread
        self._moto = moto

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def bedrock_endpoint_url(self) -> str:
        return self.url

    def urls(self) -> dict[str, str | None]:
        return {
            "url": self.url,
            "s3_url": self.s3_url,
            "anthropic_base_url": self.anthropic_base_url,
            "openai_base_url": self.openai_base_url,
            "bedrock_endpoint_url": self.bedrock_endpoint_url,
        }

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._moto is not None:
            self._moto.stop()

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_moto(port: int = 0, host: str = "127.0.0.1") -> tuple[Any, str]:
    """moto in server mode on loopback; returns the server and its URL."""
    from moto.server import ThreadedMotoServer

    # werkzeug logs every S3 request on stderr; keep the emulator quiet unless something fails.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    moto.start()
    bound_host, bound_port = moto.get_host_and_port()
    return moto, f"http://{bound_host}:{bound_port}"


def start_emulator(
    port: int = 0,
    *,
    moto_port: int | None = 0,
    s3_endpoint_url: str | None = None,
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
) -> EmulatorHandle:
    """Start the emulator in a background thread on loopback.

    Args:
        port: port for the emulator; 0 picks a free one.
        moto_port: port for a moto S3 server started alongside (0 picks a free one); None starts
            none, and Bedrock jobs then use ``s3_endpoint_url``.
        s3_endpoint_url: an S3 endpoint already running (used when ``moto_port`` is None).
        config: emulator settings; defaults apply otherwise.
        host: the interface to bind; loopback unless you know why not.

    Returns:
        A handle with ``.url``, ``.s3_url``, ``.state`` and ``.stop()``.
    """
    state = EmulatorState(config)
    moto = None
    s3_url = s3_endpoint_url
    if moto_port is not None:
        moto, s3_url = start_moto(moto_port, host)
    state.config.s3_endpoint_url = s3_url
    state.initial_config.s3_endpoint_url = s3_url

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(build_app(state), log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the emulator server failed to start")
        threading.Event().wait(0.01)
    return EmulatorHandle(state, server, thread, f"http://{host}:{bound_port}", s3_url, moto)
