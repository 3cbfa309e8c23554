"""Records per second and peak memory of request building, result parsing and the Stage 2 write.

Usage: ``.venv/bin/python benchmarks/throughput.py [--sizes 10000,50000] [--stage2-sample 200]``
(right after ``make setup``; it starts an embedded PostgreSQL in a temporary ``MEMO_HOME`` and
stops it at the end).

The records are the reference workload of ``benchmarks/cost.py`` (an org whose static prefix is
about 3,000 tokens; e-mails of 500 to 2,000 tokens, a few phone numbers and addresses each),
written straight into ``content_records`` with COPY (loading is not measured). For each size,
on one partition day:

* ``build``: ``plan_partition`` (render, token estimate, ledger rows) then every pending
  request re-rendered by ``build_requests`` and serialised as the OpenAI batch JSONL that
  ``submit_batch`` uploads, streamed 5,000 requests at a time into a file (no network).
* ``parse``: ``collect_partition`` over an ended job whose output file is local: the OpenAI
  adapter's line parsing, answer validation against the collection, pricing, and the ledger
  writes. The answers are the offline extractor's for a pool of distinct records, reused
  across the job (the extractor answers about 140 records/s, too slow to answer 50,000 here).
* ``stage2``: ``store_partition`` (Stage 2 into PostgreSQL, then the vectors into LanceDB) on a
  bounded sample of records with distinct answers, on a day of its own: the embedder on this
  machine writes tens to a few hundred texts per second, so 50,000 records (about 20 memories
  each) would take hours. ``stage2`` is memories written to both stores per second;
  ``embed_only`` is the embedding model's own encode rate on the same memory texts in the same
  process, measured right before Stage 2 (the answers' memory texts) and right after it (the
  stored ones) and taken together, because the speed of this shared machine drifts.

Peak memory is the resident set of this process and its children (psutil, sampled every 20 ms),
per stage and overall; the embedded PostgreSQL runs as a separate daemon and is reported apart.
``build`` and ``parse`` also print the CPU time they used per record, in microseconds, of this
process tree (``cpu_us_python``) and of PostgreSQL (``cpu_us_postgres``); the ``cpu`` line sets
their sum beside what a rate of 20,000 records per second would leave per record on this
machine's cores, however well the work were spread over them.
The last line is ``throughput build=... parse=... stage2=... embed_only=... peak_rss_mb=...`` for
the largest size.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cost import ORG, generated_org  # noqa: E402

from memo_pipeline.config import Settings  # noqa: E402
from memo_pipeline.defs.resources import MemoRuntime  # noqa: E402
from memo_pipeline.pipeline.collect import collect_partition  # noqa: E402
from memo_pipeline.pipeline.plan import plan_partition, record_from_row  # noqa: E402
from memo_pipeline.pipeline.registry import ProviderRegistry  # noqa: E402
from memo_pipeline.pipeline.store import store_counts, store_partition  # noqa: E402
from memo_pipeline.pipeline.submit import submit_partition  # noqa: E402
from memo_pipeline.prompts.render import record_part_tokens, render  # noqa: E402
from memo_pipeline.providers.base import JobHandle, JobState, JobStatus  # noqa: E402
from memo_pipeline.providers.classify import check_batch, split_lines  # noqa: E402
from memo_pipeline.providers.extractor import answer_for_prompt  # noqa: E402
from memo_pipeline.records import ContentRecord  # noqa: E402
from memo_pipeline.stage2.validate import validate_answer  # noqa: E402
from memo_pipeline.stores.db import stop_embedded  # noqa: E402
from memo_pipeline.tokens import estimate_tokens  # noqa: E402

PROVIDER = "openai"
# The first phone number in an answer's property values: its last seven digits vary per line.
PHONE_IN_ANSWER = re.compile(r'("value":\s*"\+?1?\s*\(?415\)?[ -]?)\d{3}[ -]?\d{4}')
CHUNK = 5000
# The build and parse rate aimed at: the ``cpu`` line says how much CPU per record it leaves.
TARGET_PER_S = 20_000
FIRST_DAY = date(2026, 10, 1)
WORDS = ["renewal", "contract", "budget", "quote", "review", "migration", "rollout", "audit",
         "pilot", "platform", "region", "invoice", "schedule", "meeting", "proposal", "analytics",
         "dashboard", "security", "support", "onboarding", "pricing", "figures", "team", "quarter",
         "deadline", "approval", "vendor", "integration"]  # fmt: skip
NAMES = ["Ada Martin", "Bruno Okafor", "Chen Silva", "Dana Kowalski", "Emeka Tanaka",
         "Farah Haddad", "Goran Novak", "Hana Berg", "Ivan Rossi", "Jade Dubois"]  # fmt: skip
COMPANIES = ["Northwind Traders", "Globex Corp", "Initech Ltd", "Umbrella Labs", "Hooli Inc",
             "Vandelay Industries", "Contoso Ltd", "Bluefin Systems"]  # fmt: skip


class PeakRss:
    """The largest resident set of this process tree seen since the last ``reset``."""

    def __init__(self, interval: float = 0.02) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.overall = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> int:
        rss = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            with suppress(psutil.Error):
                rss += child.memory_info().rss
        self.peak = max(self.peak, rss)
        self.overall = max(self.overall, rss)
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def reset(self) -> None:
        self.peak = self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class CpuClock:
    """CPU seconds (user and system) used so far by this process tree and by this run's
    PostgreSQL: the postmaster of ``pg_dir``, its live children, and the children it has reaped
    (a backend that ended between two readings still counts)."""

    def __init__(self, pg_dir: Path) -> None:
        self.process = psutil.Process()
        self.pg_dir = pg_dir

    @staticmethod
    def _tree(process: psutil.Process) -> float:
        total = 0.0
        for proc in [process, *process.children(recursive=True)]:
            with suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        with suppress(psutil.Error):
            times = process.cpu_times()
            total += times.children_user + times.children_system
        return total

    def read(self) -> tuple[float, float]:
        """(this process tree's CPU seconds, PostgreSQL's)."""
        postgres = 0.0
        with suppress(psutil.Error, ValueError, OSError):
            pid = int((self.pg_dir / "postmaster.pid").read_text().split()[0])
            postgres = self._tree(psutil.Process(pid))
        return self._tree(self.process), postgres


@dataclass
class Stage:
    name: str
    items: int = 0
    seconds: float = 0.0
    peak_mb: float = 0.0
    cpu_seconds: tuple[float, float] = (0.0, 0.0)  # (this process tree, PostgreSQL)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


@contextmanager
def measured(stage: Stage, rss: PeakRss, clock: CpuClock | None = None) -> Iterator[Stage]:
    """Time the block, its peak memory, and (given a clock) the CPU it and PostgreSQL used."""
    rss.reset()
    cpu = clock.read() if clock else (0.0, 0.0)
    started = time.perf_counter()
    yield stage
    stage.seconds = time.perf_counter() - started
    if clock:
        stage.cpu_seconds = tuple(b - a for a, b in zip(cpu, clock.read(), strict=True))
    rss.sample()
    stage.peak_mb = rss.peak / 2**20


def cpu_notes(stage: Stage) -> dict[str, Any]:
    """The stage's CPU time per item, in microseconds: Python (this process tree), PostgreSQL,
    and both together; with ``os.cpu_count()`` cores, a rate of R items per second leaves at
    most cores * 1e6 / R of them per item."""
    python, postgres = (round(s / stage.items * 1e6) for s in stage.cpu_seconds)
    return {"cpu_us_python": python, "cpu_us_postgres": postgres, "cpu_us": python + postgres}


@contextmanager
def profiled(folder: Path | None, name: str) -> Iterator[None]:
    """cProfile the block into ``folder/name.pstats`` when a folder is given."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with cProfile.Profile() as profile:
        yield
    profile.dump_stats(folder / f"{name}.pstats")


def postgres_rss_mb(pg_dir: Path) -> float:
    """Resident set of this run's PostgreSQL: the postmaster of ``pg_dir`` and its backends."""
    pid_file = pg_dir / "postmaster.pid"
    if not pid_file.exists():
        return 0.0
    total = 0
    with suppress(psutil.Error, ValueError):
        postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
        for proc in [postmaster, *postmaster.children(recursive=True)]:
            with suppress(psutil.Error):
                total += proc.memory_info().rss
    return total / 2**20


def content(rng: random.Random, tokens: int) -> tuple[str, str]:
    """(identifier, text) of an e-mail of about ``tokens`` tokens (4.3 characters each)."""
    name, company = rng.choice(NAMES), rng.choice(COMPANIES)
    email = f"{name.split()[0].lower()}@{company.split()[0].lower()}.example"
    parts = [f"From: {name} <{email}>\nSubject: {rng.choice(WORDS)} {rng.choice(WORDS)}\n\nHi,\n"]
    size = len(parts[0])
    while size < tokens * 4.3:
        other, where = rng.choice(NAMES), rng.choice(COMPANIES)
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(8, 20)))
        sentence = rng.choice(
            [
                f"{other} ({where}) confirmed the {words} for {rng.randrange(1, 28)} March. ",
                f"{other} of {where} asked about the {words}; the figure is "
                f"${rng.randrange(5, 900) * 1000:,}. ",
                f"{other} will call {where} about the {words} next week. ",
                f"We agreed that {where} sends the {words} before Friday. ",
            ]
        )
        parts.append(sentence)
        size += len(sentence)
    parts.append(f"\n\nBest,\n{name}\n{company}\n+1 415 555 {rng.randrange(10000):04d}\n")
    return email, "".join(parts)


def copy_records(conn, day: str, count: int, seed: int, tag: str) -> None:
    """Write ``count`` generated records of ``day`` into content_records, streaming (COPY)."""
    rng = random.Random(seed)
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy content_records (record_id, org_id, source_id, collection, partition_day, kind, "
            "identifier, content, content_hash, source_ts, source, record_tokens) from stdin"
        ) as copy,
    ):
        for i in range(count):
            identifier, text = content(rng, rng.randrange(500, 2001))
            record = ContentRecord(
                source_id=f"{tag}-{i:06d}",
                org=ORG,
                collection="contacts",
                identifier=identifier,
                kind="email",
                source_ts=start + timedelta(seconds=i),
                content=text,
            )
            copy.write_row(
                (
                    record.record_id,
                    ORG,
                    record.source_id,
                    "contacts",
                    day,
                    "email",
                    identifier,
                    text,
                    record.content_hash,
                    record.source_ts,
                    "benchmark",
                    record_part_tokens(record),
                )
            )
    conn.commit()


def answer_pool(conn, orgs, day: str, size: int) -> list[str]:
    """Offline-extractor answers for the first ``size`` records of ``day``."""
    rows = conn.execute(
        "select * from content_records where partition_day = %s order by record_id limit %s",
        (day, size),
    ).fetchall()
    return [answer_for_prompt(render(orgs[ORG], record_from_row(r)).text) for r in rows]


class CountingSubmit:
    """The OpenAI adapter with the network left out: ``submit_batch`` builds the input file and
    checks it against the limits exactly as the adapter does, then counts its bytes instead of
    uploading them; ``find_job`` (which lists the provider's batches over HTTP) finds nothing."""

    def __init__(self, adapter) -> None:
        self.adapter = adapter
        self.bytes = 0
        self.jobs = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def find_job(self, job_key: str, requests, *, exclude_job_ids=()) -> None:
        return None

    def submit_batch(self, job_key: str, requests) -> JobHandle:
        data = self.adapter._jsonl(requests)  # noqa: SLF001 - the bytes the SDK would upload
        check_batch(self.adapter.name, self.adapter.limits, requests, len(data))
        self.bytes += len(data)
        self.jobs += 1
        return JobHandle(
            provider=self.adapter.name,
            job_id=f"bench-{job_key}",
            request_count=len(requests),
            bytes=len(data),
            model=self.adapter.model,
            submitted_at=datetime.now(UTC),
        )


def build(conn, registry: ProviderRegistry, orgs, day: str, stage: Stage) -> None:
    """``extraction_requests`` then ``provider_batches`` of one day, minus the HTTP calls."""
    model = registry.default_model(PROVIDER)
    sender = CountingSubmit(registry.get(PROVIDER, model))
    registry._cache[(PROVIDER, model)] = sender  # noqa: SLF001
    started = time.perf_counter()
    plan = plan_partition(conn, registry, orgs, day)
    conn.commit()
    stage.notes["plan_records_per_s"] = round(plan.records / (time.perf_counter() - started))
    submit_started = time.perf_counter()
    summary = submit_partition(conn, registry, orgs, day)
    conn.commit()
    stage.items = summary.submitted_requests
    stage.notes["submit_records_per_s"] = round(
        stage.items / (time.perf_counter() - submit_started)
    )
    stage.notes["jobs"] = sender.jobs
    stage.notes["wire_mb"] = round(sender.bytes / 2**20)
    registry._cache[(PROVIDER, model)] = sender.adapter  # noqa: SLF001


class FileResults:
    """The OpenAI adapter reading each job's output file from a folder instead of the Files API."""

    def __init__(self, adapter, folder: Path) -> None:
        self.adapter, self.folder = adapter, folder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def poll(self, job_id: str) -> JobStatus:
        return JobStatus(JobState.ENDED, "completed")

    def results(self, job_id: str) -> Iterator[Any]:
        with (self.folder / f"{job_id}.jsonl").open("rb") as source:
            chunks = iter(lambda: source.read(1 << 20), b"")
            for raw in split_lines(chunks):
                yield self.adapter._line_outcome(orjson.loads(raw))  # noqa: SLF001


def estimate_rate(conn, day: str, sample: int = 2000) -> float:
    """The token estimate's own speed (MB of record text per second) on the day's records."""
    texts = [
        r["content"]
        for r in conn.execute(
            "select content from content_records where partition_day = %s limit %s", (day, sample)
        )
    ]
    started = time.perf_counter()
    for text in texts:
        estimate_tokens(text)
    return round(sum(map(len, texts)) / 2**20 / (time.perf_counter() - started), 1)


def parse_breakdown(registry, orgs, model: str, answers: list[str]) -> dict[str, int]:
    """Rates of the parts of parsing alone: reading result lines, validating answers."""
    results = registry.get(PROVIDER, model)
    started = time.perf_counter()
    lines = sum(
        1 for path in sorted(results.folder.glob("*.jsonl")) for _ in results.results(path.stem)
    )
    line_rate = lines / (time.perf_counter() - started)
    collection = orgs[ORG].collections["contacts"]
    texts = [distinct(a, i) for i, a in enumerate(answers)]
    started = time.perf_counter()
    for answer in texts:
        validate_answer(answer, collection)
    return {
        "lines_per_s": round(line_rate),
        "validate_per_s": round(len(answers) / (time.perf_counter() - started)),
    }


def output_line(index: int, request_id: str, answer: str, model: str) -> bytes:
    """One line of an OpenAI batch output file answering ``request_id`` with ``answer``."""
    body = {
        "id": f"chatcmpl-{index}",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 4600,
            "completion_tokens": len(answer) // 4,
            "prompt_tokens_details": {"cached_tokens": 3200, "cache_write_tokens": 0},
        },
    }
    line = {
        "id": f"batch_req_{index}",
        "custom_id": request_id,
        "response": {"status_code": 200, "request_id": f"r{index}", "body": body},
        "error": None,
    }
    return orjson.dumps(line) + b"\n"


def distinct(answer: str, index: int) -> str:
    """The pool answer with this line's own phone number, so no two lines validate alike."""
    return PHONE_IN_ANSWER.sub(lambda m: f"{m.group(1)}{index % 10_000_000:07d}", answer, count=1)


def answer_jobs(conn, day: str, answers: list[str], folder: Path, model: str) -> None:
    """Write an output file for each submitted job of ``day`` and mark the jobs ended."""
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    jobs = conn.execute(
        "select job_key, job_id from provider_jobs where partition_day = %s and status = "
        "'submitted' order by job_key",
        (day,),
    ).fetchall()
    for job in jobs:
        with (folder / f"{job['job_id']}.jsonl").open("wb") as sink, conn.cursor(name="ids") as ids:
            ids.execute(
                "select request_id from extraction_requests where job_key = %s", (job["job_key"],)
            )
            while chunk := ids.fetchmany(CHUNK):
                for row in chunk:
                    answer = distinct(answers[index % len(answers)], index)
                    sink.write(output_line(index, row["request_id"], answer, model))
                    index += 1
        conn.execute(
            "update provider_jobs set status = 'ended', ended_at = now() where job_key = %s",
            (job["job_key"],),
        )
    conn.commit()


def ended_job(conn, day: str, answers: list[str], folder: Path, model: str) -> None:
    """Claim the day's pending requests into one job, answered from ``answers``, ended."""
    job_key = f"bench-{day}"
    conn.execute(
        "insert into provider_jobs (job_key, provider, model, partition_day, job_id, status, "
        "request_count, bytes) select %s, %s, %s, %s, %s, 'submitted', count(*), 0 "
        "from extraction_requests where partition_day = %s and status = 'pending'",
        (job_key, PROVIDER, model, day, job_key, day),
    )
    conn.execute(
        "update extraction_requests set job_key = %s, status = 'submitted' "
        "where partition_day = %s and status = 'pending'",
        (job_key, day),
    )
    conn.commit()
    answer_jobs(conn, day, answers, folder, model)


def run_size(
    runtime: MemoRuntime, settings: Settings, size: int, day: str, args, rss: PeakRss
) -> dict:
    clock = CpuClock(settings.pg_dir)
    registry = ProviderRegistry(settings)
    orgs = settings.orgs
    work = Path(settings.memo_home) / "work"
    work.mkdir(exist_ok=True)
    with runtime.connection() as conn:
        copy_records(conn, day, size, seed=size, tag=f"n{size}")
        answers = answer_pool(conn, orgs, day, args.answers)

        registry.get(PROVIDER)  # the SDK import is not part of building requests
        with (
            measured(Stage("build"), rss, clock) as built,
            profiled(args.profile, f"build-{day}"),
        ):
            build(conn, registry, orgs, day, built)
        built.notes.update(cpu_notes(built))
        built.notes["estimate_mb_per_s"] = estimate_rate(conn, day)

        model = registry.default_model(PROVIDER)
        answer_jobs(conn, day, answers, work / day, model)
        registry._cache[(PROVIDER, model)] = FileResults(  # noqa: SLF001
            registry.get(PROVIDER, model), work / day
        )
        parsed = Stage("parse")
        parsed.notes.update(parse_breakdown(registry, orgs, model, answers))
        with measured(parsed, rss, clock), profiled(args.profile, f"parse-{day}"):
            summary = collect_partition(conn, registry, orgs, day, resubmit=False)
            parsed.items = summary.outcomes.succeeded + summary.outcomes.invalid
            parsed.notes["succeeded"] = summary.outcomes.succeeded
        parsed.notes.update(cpu_notes(parsed))
    shutil.rmtree(work / day)
    return {"build": built, "parse": parsed}


def run_stage2(
    runtime: MemoRuntime,
    settings: Settings,
    sample: int,
    day: str,
    rss: PeakRss,
    profile: Path | None = None,
) -> dict:
    """Stage 2 on ``sample`` records with distinct answers, then the embedder alone."""
    registry = ProviderRegistry(settings)
    orgs = settings.orgs
    with runtime.connection() as conn:
        # Content of its own (the seed is the day): identical content would reuse answers.
        copy_records(conn, day, sample, seed=int(day.replace("-", "")), tag=f"s{day}")
        answers = answer_pool(conn, orgs, day, sample)
        plan_partition(conn, registry, orgs, day)
        results = Path(settings.memo_home) / f"stage2-{day}"
        model = registry.default_model(PROVIDER)
        ended_job(conn, day, answers, results, model)
        registry._cache[(PROVIDER, model)] = FileResults(  # noqa: SLF001
            registry.get(PROVIDER, model), results
        )
        collect_partition(conn, registry, orgs, day, resubmit=False)
        # Loading the model and opening LanceDB happen once per process, not per memory.
        runtime.embedder.encode(["warm up the model"])
        runtime.vectors.count()
        # The machine is shared, so its speed drifts: the embedder alone runs on the answers'
        # memory texts right before Stage 2 and on the stored texts right after, and
        # ``embed_only`` is the two together.
        before = [m["text"] for a in answers for m in orjson.loads(a)["memories"]]
        started = time.perf_counter()
        runtime.embedder.encode(before)
        before_seconds = time.perf_counter() - started

        with measured(Stage("stage2"), rss) as stage2, profiled(profile, f"stage2-{day}"):
            store = store_partition(conn, orgs, runtime.vectors, runtime.embedder, day)
            conn.commit()
        pg, lance = store_counts(conn, runtime.vectors, day)
        stage2.items = min(pg, lance)
        stage2.notes.update(answers=store.answers, postgres=pg, lancedb=lance)
        texts = [
            r["text"]
            for r in conn.execute(
                "select text from memories where partition_day = %s and superseded_by is null",
                (day,),
            )
        ]
    with measured(Stage("embed_only", items=len(texts)), rss) as embed:
        runtime.embedder.encode(texts)
    embed.notes["before_per_s"] = round(len(before) / before_seconds, 1)
    embed.notes["after_per_s"] = round(embed.rate, 1)
    embed.items += len(before)
    embed.seconds += before_seconds
    return {"stage2": stage2, "embed_only": embed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--stage2-sample", type=int, default=200, help="records for Stage 2")
    parser.add_argument("--answers", type=int, default=300, help="distinct answers for parse")
    parser.add_argument(
        "--profile", type=Path, help="folder for cProfile dumps of each stage (pstats)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for name in ("DATABASE_URL", "MEMO_PROVIDERS_FILE", "MEMO_PRICES_FILE", "OPENAI_BASE_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("OPENAI_API_KEY", "benchmark-openai-key")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rss = PeakRss()

    with tempfile.TemporaryDirectory(prefix="memo-throughput-") as tmp:
        home, orgs_dir = Path(tmp) / "home", Path(tmp) / "orgs"
        orgs_dir.mkdir()
        (orgs_dir / f"{ORG}.yaml").write_text(yaml.safe_dump(generated_org(3000)))
        os.environ["MEMO_HOME"] = str(home)
        settings = Settings.from_env(memo_home=home, orgs_dir=orgs_dir, provider_override=PROVIDER)
        runtime = MemoRuntime(settings)
        runtime.urls  # noqa: B018 - start PostgreSQL and migrate
        results = []
        try:
            for index, size in enumerate(sizes):
                day = (FIRST_DAY + timedelta(days=index)).isoformat()
                stages = run_size(runtime, settings, size, day, args, rss)
                stage2_day = (FIRST_DAY + timedelta(days=100 + index)).isoformat()
                stages |= run_stage2(
                    runtime, settings, args.stage2_sample, stage2_day, rss, args.profile
                )
                for stage in stages.values():
                    notes = " ".join(f"{k}={v}" for k, v in stage.notes.items())
                    print(
                        f"stage records={size} {stage.name} items={stage.items} "
                        f"seconds={stage.seconds:.1f} per_s={stage.rate:.0f} "
                        f"peak_rss_mb={stage.peak_mb:.0f} {notes}".rstrip()
                    )
                print(
                    f"memory records={size} process_tree_peak_mb={rss.overall / 2**20:.0f} "
                    f"postgres_rss_mb={postgres_rss_mb(settings.pg_dir):.0f}"
                )
                results.append((size, stages))
        finally:
            rss.stop()
            stop_embedded(settings)
    size, stages = results[-1]
    cores = os.cpu_count() or 1
    print(
        f"cpu records={size} cores={cores} cpu_us_per_record_at_{TARGET_PER_S}_per_s="
        f"{cores * 1e6 / TARGET_PER_S:.0f} build_cpu_us={stages['build'].notes['cpu_us']} "
        f"parse_cpu_us={stages['parse'].notes['cpu_us']}"
    )
    print(
        f"note stage2 and embed_only measured on {args.stage2_sample} records "
        f"({stages['stage2'].items} memories), not on {size}; build and parse on all {size}"
    )
    print(
        f"throughput build={stages['build'].rate:.0f} parse={stages['parse'].rate:.0f} "
        f"stage2={stages['stage2'].rate:.1f} embed_only={stages['embed_only'].rate:.1f} "
        f"peak_rss_mb={rss.overall / 2**20:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
