"""The ``local`` provider: an offline stand-in for a batch API. It is not a model.

Jobs are folders under ``<staging>/local/<job_id>`` holding the submitted requests and the submit
time, so a job submitted by one process (a Dagster run) can be polled and collected by another
(the sensor, a later run). A job ends ``delay_seconds`` after submission (zero in tests). Answers
come from the deterministic heuristic extractor in ``extractor.py``. Usage is estimated from the
prompt text so that cost figures have the same shape as a real provider's; the local provider
models a warm cache: the prefix is read from cache after the first request of a prefix, within
a job, and for sync calls within the adapter's lifetime (one process).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson

from memo_pipeline.providers.base import (
    JobHandle,
    JobState,
    JobStatus,
    Outcome,
    Provider,
    ProviderLimits,
    ProviderRequest,
    RequestOutcome,
    Usage,
)
from memo_pipeline.providers.extractor import answer_for_prompt
from memo_pipeline.tokens import estimate_tokens


class LocalProvider(Provider):
    name = "local"

    def __init__(
        self,
        limits: ProviderLimits,
        staging_dir: Path,
        model: str = "offline-heuristic-1",
        delay_seconds: float = 0.0,
    ) -> None:
        self.limits = limits
        self.model = model
        self.root = staging_dir / "local"
        self.delay_seconds = delay_seconds
        # Prefixes a sync call has written: later sync calls read them (calls come from threads).
        self._sync_prefixes: set[str] = set()
        self._sync_lock = threading.Lock()

    def _job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def submit_batch(self, job_key: str, requests: Sequence[ProviderRequest]) -> JobHandle:
        if len(requests) > self.limits.max_requests_per_batch:
            raise ValueError(f"{len(requests)} requests exceed the local batch limit")
        job_id = "local-" + hashlib.sha256(job_key.encode()).hexdigest()[:20]
        folder = self._job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            orjson.dumps(
                {
                    "request_id": r.request_id,
                    "prompt": r.prompt.text,
                    "prefix_tokens": estimate_tokens(r.prompt.static_prefix),
                }
            )
            for r in requests
        ]
        body = b"\n".join(lines)
        (folder / "requests.jsonl").write_bytes(body)
        now = time.time()
        (folder / "job.json").write_bytes(
            orjson.dumps({"job_key": job_key, "submitted": now, "ends": now + self.delay_seconds})
        )
        return JobHandle(
            provider=self.name,
            job_id=job_id,
            request_count=len(requests),
            bytes=len(body),
            model=self.model,
            submitted_at=datetime.fromtimestamp(now, UTC),
        )

    def find_job(
        self,
        job_key: str,
        requests: Sequence[ProviderRequest],
        *,
        exclude_job_ids: Collection[str] = (),
    ) -> JobHandle | None:
        job_id = "local-" + hashlib.sha256(job_key.encode()).hexdigest()[:20]
        meta = self._job_dir(job_id) / "job.json"
        if not meta.exists():
            return None
        info = orjson.loads(meta.read_bytes())
        return JobHandle(
            provider=self.name,
            job_id=job_id,
            request_count=len(requests),
            bytes=(self._job_dir(job_id) / "requests.jsonl").stat().st_size,
            model=self.model,
            submitted_at=datetime.fromtimestamp(info["submitted"], UTC),
        )

    def poll(self, job_id: str) -> JobStatus:
        meta = self._job_dir(job_id) / "job.json"
        if not meta.exists():
            return JobStatus(JobState.FAILED, "missing", message=f"local job {job_id} not found")
        info = orjson.loads(meta.read_bytes())
        if info.get("canceled"):
            return JobStatus(JobState.ENDED, "canceled")
        if time.time() < info["ends"]:
            return JobStatus(JobState.IN_PROGRESS, "in_progress")
        return JobStatus(JobState.ENDED, "ended")

    def results(self, job_id: str) -> Iterator[RequestOutcome]:
        folder = self._job_dir(job_id)
        canceled = orjson.loads((folder / "job.json").read_bytes()).get("canceled", False)
        seen_prefixes: set[str] = set()
        with (folder / "requests.jsonl").open("rb") as handle:
            for raw in handle:
                item = orjson.loads(raw)
                if canceled:
                    yield RequestOutcome(item["request_id"], Outcome.RETRYABLE, error="canceled")
                    continue
                yield self._answer(
                    item["request_id"],
                    item["prompt"],
                    item["prefix_tokens"],
                    seen_prefixes,
                    tier="batch",
                )

    def _answer(
        self, request_id: str, prompt: str, prefix_tokens: int, seen: set[str], tier: str
    ) -> RequestOutcome:
        answer = answer_for_prompt(prompt)
        total = estimate_tokens(prompt)
        prefix_hash = _prefix_hash(prompt)
        cached = prefix_tokens >= self.limits.min_cacheable_tokens
        first = prefix_hash not in seen
        seen.add(prefix_hash)
        usage = Usage(
            input_tokens=total - (prefix_tokens if cached else 0),
            cache_write_1h_tokens=prefix_tokens if cached and first else 0,
            cache_read_tokens=prefix_tokens if cached and not first else 0,
            output_tokens=estimate_tokens(answer),
            service_tier=tier,
        )
        return RequestOutcome(
            request_id, Outcome.SUCCEEDED, answer_text=answer, usage=usage, stop_reason="end_turn"
        )

    def cancel(self, job_id: str) -> None:
        meta = self._job_dir(job_id) / "job.json"
        info = orjson.loads(meta.read_bytes())
        info["canceled"] = True
        meta.write_bytes(orjson.dumps(info))

    def call_sync(self, request: ProviderRequest) -> RequestOutcome:
        prefix_tokens = estimate_tokens(request.prompt.static_prefix)
        key = _prefix_hash(request.prompt.text)
        with self._sync_lock:
            seen = {key} if key in self._sync_prefixes else set()
            self._sync_prefixes.add(key)
        return self._answer(
            request.request_id, request.prompt.text, prefix_tokens, seen, tier="standard"
        )


def _prefix_hash(prompt: str) -> str:
    """What a cache entry is keyed on: the prompt up to its record part."""
    return hashlib.sha256(prompt[: prompt.rfind("<record>")].encode()).hexdigest()
