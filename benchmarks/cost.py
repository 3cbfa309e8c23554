"""What the bulk path costs against the sync price, per provider, measured from reported usage.

Usage: ``.venv/bin/python benchmarks/cost.py [--records 500] [--providers anthropic,openai,bedrock]``
(right after ``make setup``; it starts what it needs and stops it again).

It starts an embedded PostgreSQL in a temporary ``MEMO_HOME`` and the provider emulator (with
moto's S3 for Bedrock), generates a reference workload (an org whose static prompt prefix is
about 3,000 tokens, records of 500 to 2,000 tokens) and runs it once per provider through the real
pipeline functions and the real SDKs: ``plan_partition`` -> ``submit_partition`` (with a
one-request priming job per prefix where the provider is set to prime) -> ``poll_open_jobs`` ->
``collect_partition``, each provider on its own partition day. Then, per provider:

* ``cost``: ``cost_ratio`` = realised bulk cost / sync counterfactual, both priced from the usage
  the provider reported for every request, and ``floor`` = the same workload priced as if the
  first request of each prefix wrote the cache and every other one read the whole prefix, at the
  batch rates of the price table, over the same counterfactual (``costs.floor_ratio``). The
  prefix length used for the floor is the cached length the provider reported.
* ``ledger``: the cost ledger's totals for the day (``cost_totals``) beside the benchmark's own
  sum over the usage rows; the script fails unless they are equal.
* ``sync``: a sample of the same requests sent through the provider's sync API, priced at sync
  rates: what the sync mode really pays once its own prompt cache is warm.
* ``estimate`` / ``forecast``: the offline token estimate and the bulk-with-cache forecast beside
  the reported tokens and the realised cost.

The emulator's usage is a model of the providers' documented caching (its token count is
``len(text) // 4``, not a tokenizer): the figures say what the pipeline does with the usage it is
given, not what a real provider will report. Bedrock needs at least 100 records per job; the
main Bedrock line lowers the emulator's minimum so that the priming job can hold one record, and
lines starting ``info`` (``min_records=100``) show the realistic priming job of 100 records.

The script exits non-zero if a ratio is more than 5% above its floor or the ledger disagrees.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memo_pipeline.config import REPO_ROOT, Settings  # noqa: E402
from memo_pipeline.costs import (  # noqa: E402
    floor_ratio,
    request_cost,
    sync_counterfactual,
)
from memo_pipeline.defs.resources import MemoRuntime  # noqa: E402
from memo_pipeline.pipeline.collect import (  # noqa: E402
    collect_partition,
    partition_complete,
    poll_open_jobs,
)
from memo_pipeline.pipeline.costs_ledger import (  # noqa: E402
    cost_totals,
    forecast_items,
    planned_items,
)
from memo_pipeline.pipeline.plan import plan_partition  # noqa: E402
from memo_pipeline.pipeline.raw import land, load_partition  # noqa: E402
from memo_pipeline.pipeline.registry import ProviderRegistry  # noqa: E402
from memo_pipeline.pipeline.submit import build_requests, submit_partition  # noqa: E402
from memo_pipeline.prompts.render import render  # noqa: E402
from memo_pipeline.providers.base import Usage  # noqa: E402
from memo_pipeline.records import ContentRecord  # noqa: E402
from memo_pipeline.stores.db import stop_embedded  # noqa: E402
from memo_pipeline.tokens import estimate_tokens  # noqa: E402
from memo_pipeline_emulator import start_emulator  # noqa: E402

ORG = "benchco"
ORG_MIN100 = "benchco-min100"
BUCKET = "memo-benchmark"
ROLE_ARN = "arn:aws:iam::000000000000:role/memo-benchmark"
PROVIDERS = ("anthropic", "openai", "bedrock")
FIRST_DAY = date(2026, 11, 2)
DUMMY_ENV = {
    "ANTHROPIC_API_KEY": "benchmark-anthropic-key",
    "OPENAI_API_KEY": "benchmark-openai-key",
    "AWS_ACCESS_KEY_ID": "benchmark",
    "AWS_SECRET_ACCESS_KEY": "benchmark",
    "AWS_DEFAULT_REGION": "us-east-1",
}
CLEARED_ENV = (
    "ANTHROPIC_BASE_URL",
    "OPENAI_BASE_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "MEMO_PROVIDER",
    "MEMO_PROVIDERS_FILE",
    "MEMO_PRICES_FILE",
    "DATABASE_URL",
)
TOLERANCE = 0.05

FIRST = ["Ada", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jade", "Kofi",
         "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara"]  # fmt: skip
LAST = ["Martin", "Okafor", "Silva", "Kowalski", "Tanaka", "Haddad", "Novak", "Berg", "Rossi",
        "Dubois", "Nakamura", "Larsen", "Moreau", "Schmidt", "Ito", "Walsh"]  # fmt: skip
COMPANIES = ["Northwind Traders", "Globex Corp", "Initech Ltd", "Umbrella Labs", "Hooli Inc",
             "Vandelay Industries", "Contoso Ltd", "Bluefin Systems", "Quillmark GmbH",
             "Stark Logistics"]  # fmt: skip
ROLES = ["procurement lead", "head of finance", "operations manager", "CTO", "account executive",
         "data engineer", "legal counsel", "product owner", "VP of sales", "office manager"]  # fmt: skip
TOPICS = ["the analytics contract", "the data platform migration", "the Q3 renewal",
          "the security review", "the onboarding of the new region", "the pricing proposal",
          "the integration pilot", "the annual audit", "the support escalation",
          "the dashboard rollout"]  # fmt: skip
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "September",
          "October", "November"]  # fmt: skip


def _person(rng: random.Random) -> tuple[str, str, str]:
    first, last, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANIES)
    domain = company.split()[0].lower() + ".example"
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{domain}", company


def _sentence(rng: random.Random) -> str:
    name, email, company = _person(rng)
    other, _, other_company = _person(rng)
    topic, month = rng.choice(TOPICS), rng.choice(MONTHS)
    amount = rng.randrange(5, 900) * 1000
    return rng.choice(
        [
            f"{name} ({rng.choice(ROLES)} at {company}) confirmed that {topic} starts in {month}.",
            f"{other} from {other_company} asked whether the budget of ${amount:,} for {topic} "
            f"still holds after the review in {month}.",
            f"We agreed with {name} that {company} will send the revised quote for {topic} by "
            f"the end of {month}; {other} will check the figures.",
            f"{name} can be reached at {email} or +1 415 555 {rng.randrange(10000):04d} for "
            f"questions about {topic}.",
            f"{other_company} and {company} plan to share the costs of {topic}, about "
            f"${amount:,} a year, starting in {month}.",
            f"{name} reports to {other}, who joined {company} as {rng.choice(ROLES)} in {month}.",
        ]
    )


def generated_content(rng: random.Random, target_tokens: int) -> tuple[str, str]:
    """(identifier, content) of an e-mail of about ``target_tokens`` estimated tokens."""
    name, email, company = _person(rng)
    lines = [f"From: {name} <{email}>", f"Subject: {rng.choice(TOPICS)}", "", "Hi all,", ""]
    text = "\n".join(lines)
    while estimate_tokens(text) < target_tokens:
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randrange(3, 7)))
        text += paragraph + "\n\n"
    return email, text + f"Best regards,\n{name}\n{rng.choice(ROLES).capitalize()}, {company}\n"


def workload(count: int, day: date, tag: str, seed: int = 7, org: str = ORG) -> list[ContentRecord]:
    """``count`` e-mails of 500 to 2,000 estimated tokens, the same for every ``tag``."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        identifier, content = generated_content(rng, rng.randrange(500, 2001))
        out.append(
            ContentRecord(
                source_id=f"{tag}-{i:05d}",
                org=org,
                collection="contacts",
                identifier=identifier,
                kind="email",
                source_ts=datetime.combine(day, datetime.min.time(), UTC) + timedelta(seconds=i),
                content=content,
            )
        )
    return out


def generated_org(target_prefix_tokens: int) -> dict[str, Any]:
    """The example org's contacts collection with longer instructions and more few-shot
    examples, until its rendered static prefix is about ``target_prefix_tokens``."""
    acme = yaml.safe_load((REPO_ROOT / "config" / "orgs" / "acme.yaml").read_text())
    contacts = acme["collections"]["contacts"]
    contacts["instructions"] += (
        " Keep amounts, dates and product names exactly as written. A memory names its entity in"
        " full and stands on its own without the record. Prefer one precise fact over a vague"
        " summary. When the record contradicts an earlier fact, state the newer fact with its"
        " date. Never infer a job title, an employer or a relationship the record does not state."
    )
    org = {
        "org": ORG,
        "display_name": "Benchmark Co",
        "daily_budget_usd": None,
        "collections": {"contacts": contacts},
    }
    rng = random.Random(11)
    base_example = contacts["examples"][0]
    while True:
        spec_prefix = _prefix_tokens(org)
        if spec_prefix >= target_prefix_tokens:
            return org
        name, email, company = _person(rng)
        sentence = _sentence(rng)
        example = {
            "content": f"From: {name} <{email}>\n{sentence}",
            "output": {
                "entities": [
                    {"ref": "e1", "type": "person", "name": name, "identifiers": [email]},
                    {"ref": "e2", "type": "company", "name": company, "identifiers": []},
                ],
                "properties": [{"entity": "e1", "name": "employer", "value": company}],
                "memories": [{"entity": "e1", "text": sentence}],
                "edges": [{"subject": "e1", "predicate": "works_at", "object": "e2"}],
            },
        }
        contacts["examples"] = [*contacts["examples"], example]
        if len(contacts["examples"]) > 60:
            contacts["examples"] = [base_example]
            raise RuntimeError("could not reach the prefix length with generated examples")


def _prefix_tokens(org_spec: dict[str, Any]) -> int:
    from memo_pipeline.schema.collections import OrgSpec

    spec = OrgSpec.model_validate(org_spec)
    record = workload(1, FIRST_DAY, "probe")[0]
    return estimate_tokens(render(spec, record).static_prefix)


def provider_overrides(emulator, bedrock_min: int) -> dict[str, Any]:
    return {
        "anthropic": {"base_url": emulator.anthropic_base_url},
        "openai": {"base_url": emulator.openai_base_url},
        "bedrock": {
            "endpoint_url": emulator.bedrock_endpoint_url,
            "runtime_endpoint_url": emulator.bedrock_endpoint_url,
            "s3_endpoint_url": emulator.s3_url,
            "bucket": BUCKET,
            "role_arn": ROLE_ARN,
            "region": "us-east-1",
            "min_requests_per_batch": bedrock_min,
            # The emulator models Bedrock batch caching like Anthropic's (a cold batch reads
            # nothing), so Bedrock is primed the same way; see the README on what is unknown.
            "prime_cache": True,
        },
    }


def usage_rows(conn, day: str) -> list[dict[str, Any]]:
    return conn.execute(
        "select r.*, q.provider, q.model, q.prefix_key from request_results r "
        "join extraction_requests q using (request_id) where q.partition_day = %s",
        (day,),
    ).fetchall()


def _usage(row: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=row["input_tokens"],
        cache_write_5m_tokens=row["cache_write_5m_tokens"],
        cache_write_1h_tokens=row["cache_write_1h_tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        output_tokens=row["output_tokens"],
    )


def drive(runtime: MemoRuntime, settings: Settings, records: list[ContentRecord], day: str):
    registry = ProviderRegistry(settings)
    with runtime.connection() as conn:
        land(settings, conn, iter(records), f"benchmark-{day}")
        load_partition(settings, conn, settings.orgs, day)
        plan_partition(conn, registry, settings.orgs, day)
        submit_partition(conn, registry, settings.orgs, day)
        deadline = time.monotonic() + 600
        while not partition_complete(conn, day):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{day} did not complete within 10 minutes")
            poll_open_jobs(conn, registry, limit=100, day=day)
            collect_partition(conn, registry, settings.orgs, day)
        jobs = conn.execute(
            "select count(*) filter (where is_priming) as priming, count(*) as jobs "
            "from provider_jobs where partition_day = %s",
            (day,),
        ).fetchone()
    return registry, jobs


def measure(
    runtime: MemoRuntime,
    settings: Settings,
    provider: str,
    day: str,
    records: list[ContentRecord],
    sync_sample: int,
    label: str = "",
) -> bool:
    """Run one provider's workload and print its lines; True when within tolerance."""
    settings = dataclasses.replace(settings, provider_override=provider)
    started = time.monotonic()
    registry, jobs = drive(runtime, settings, records, day)
    seconds = time.monotonic() - started
    prices = settings.prices
    config = registry.config(provider)
    with runtime.connection() as conn:
        rows = usage_rows(conn, day)
        ledger = cost_totals(conn, day).total
        forecasts = forecast_items(planned_items(conn, day), registry, prices)
        estimated = conn.execute(
            "select sum(est_prefix_tokens + est_record_tokens) as tokens from extraction_requests "
            "where partition_day = %s and attempt = 1",
            (day,),
        ).fetchone()["tokens"]
        sample = conn.execute(
            "select * from extraction_requests where partition_day = %s order by request_id "
            "limit %s",
            (day, sync_sample),
        ).fetchall()
        sync_requests = build_requests(conn, settings.orgs, sample)

    failed = [r for r in rows if r["outcome"] != "succeeded"]
    model = rows[0]["model"]
    price = prices.rate(provider, model)
    realised = counterfactual = Decimal(0)
    prefix: dict[str, int] = {}
    for row in rows:
        usage = _usage(row)
        path = "batch" if row["job_key"] else "sync"
        realised += request_cost(usage, price, path)
        counterfactual += sync_counterfactual(usage, price)
        cached = usage.cache_read_tokens + usage.cache_write_tokens
        prefix[row["prefix_key"]] = max(prefix.get(row["prefix_key"], 0), cached)
    work = []
    for row in rows:
        usage = _usage(row)
        cached = prefix[row["prefix_key"]]
        work.append((row["prefix_key"], cached, usage.prompt_tokens - cached, usage.output_tokens))
    floor = floor_ratio(work, price, str(config["cache_ttl"]))
    ratio = float(realised / counterfactual)
    reading = sum(1 for r in rows if r["cache_read_tokens"] > 0)
    reported_prompt = sum(_usage(r).prompt_tokens for r in rows)
    reported_output = sum(r["output_tokens"] for r in rows)
    forecast = forecasts[0].forecast
    ok = abs(ratio / floor - 1) <= TOLERANCE and not failed and min(prefix.values()) > 0
    equal = ledger.realised_usd == realised and ledger.counterfactual_usd == counterfactual

    extra = f" {label}" if label else ""
    # An informational run's lines start with "info", so each provider has one "cost" line.
    lead = "info " if label else ""
    print(f"{lead}cost provider={provider}{extra} cost_ratio={ratio:.4f} floor={floor:.4f}")
    print(
        f"{lead}detail provider={provider}{extra} model={model} requests={len(rows)} failed={len(failed)} "
        f"jobs={jobs['jobs']} priming_jobs={jobs['priming']} requests_reading_cache={reading} "
        f"cached_prefix_tokens={max(prefix.values())} over_floor={ratio / floor - 1:+.2%} "
        f"seconds={seconds:.1f}"
    )
    print(
        f"{lead}ledger provider={provider}{extra} realised_usd={ledger.realised_usd} "
        f"counterfactual_usd={ledger.counterfactual_usd} benchmark_realised_usd={realised} "
        f"benchmark_counterfactual_usd={counterfactual} equal={equal}"
    )
    print(
        f"{lead}estimate provider={provider}{extra} estimated_prompt_tokens={estimated} "
        f"reported_prompt_tokens={reported_prompt} ratio={estimated / reported_prompt:.3f} "
        f"forecast_output_tokens={forecast.output_tokens} reported_output_tokens={reported_output} "
        f"ratio={forecast.output_tokens / reported_output:.3f}"
    )
    print(
        f"{lead}forecast provider={provider}{extra} bulk_cached_usd={forecast.cost('bulk_cached'):.6f} "
        f"realised_usd={realised:.6f} ratio={float(forecast.cost('bulk_cached') / realised):.3f} "
        f"forecast_sync_usd={forecast.cost('sync'):.6f} counterfactual_usd={counterfactual:.6f}"
    )
    if sync_requests:
        adapter = registry.get(provider, model)
        sync_realised = sync_counterfactual_sum = Decimal(0)
        for request in sync_requests:
            usage = adapter.call_sync(request).usage
            sync_realised += request_cost(usage, price, "sync")
            sync_counterfactual_sum += sync_counterfactual(usage, price)
        print(
            f"{lead}sync provider={provider}{extra} requests={len(sync_requests)} "
            f"cost_ratio={float(sync_realised / sync_counterfactual_sum):.4f} "
            "(sync API with its own prompt cache, over the same sync counterfactual)"
        )
    assert equal, "the ledger's totals differ from the benchmark's figures"
    return bool(ok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--prefix-tokens", type=int, default=3000)
    parser.add_argument("--sync-sample", type=int, default=50)
    parser.add_argument("--skip-bedrock-minimum", action="store_true",
                        help="leave out the extra Bedrock run with 100-record jobs")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for name in CLEARED_ENV:
        os.environ.pop(name, None)
    os.environ.update(DUMMY_ENV)
    providers = [p for p in args.providers.split(",") if p]

    with tempfile.TemporaryDirectory(prefix="memo-cost-") as tmp:
        home, orgs = Path(tmp) / "home", Path(tmp) / "orgs"
        orgs.mkdir()
        org = generated_org(args.prefix_tokens)
        (orgs / f"{ORG}.yaml").write_text(yaml.safe_dump(org, sort_keys=False))
        # The same prompt under another org: a prefix the ledger has never primed.
        (orgs / f"{ORG_MIN100}.yaml").write_text(
            yaml.safe_dump({**org, "org": ORG_MIN100}, sort_keys=False)
        )
        os.environ["MEMO_HOME"] = str(home)
        emulator = start_emulator()
        settings = None
        try:
            boto3.client("s3", endpoint_url=emulator.s3_url).create_bucket(Bucket=BUCKET)
            settings = Settings.from_env(
                memo_home=home,
                orgs_dir=orgs,
                provider_overrides=provider_overrides(emulator, bedrock_min=1),
            )
            runtime = MemoRuntime(settings)
            runtime.urls  # noqa: B018 - start PostgreSQL and migrate
            sample = workload(args.records, FIRST_DAY, "probe")
            tokens = [estimate_tokens(r.content) for r in sample]
            print(
                f"workload records={args.records} prefix_tokens={_prefix_tokens(org)} "
                f"content_tokens_min={min(tokens)} content_tokens_max={max(tokens)} "
                f"content_tokens_mean={sum(tokens) / len(tokens):.0f} (offline estimate)"
            )
            ok = True
            admin_state = emulator.state
            for index, provider in enumerate(providers):
                admin_state.reset()
                admin_state.config.update({"bedrock_min_records": 1})
                day = (FIRST_DAY + timedelta(days=index)).isoformat()
                records = workload(args.records, date.fromisoformat(day), provider)
                ok &= measure(runtime, settings, provider, day, records, args.sync_sample)
            if "bedrock" in providers and not args.skip_bedrock_minimum:
                admin_state.reset()
                admin_state.config.update({"bedrock_min_records": 100})
                day = (FIRST_DAY + timedelta(days=len(providers))).isoformat()
                real_minimum = dataclasses.replace(
                    settings, provider_overrides=provider_overrides(emulator, bedrock_min=100)
                )
                records = workload(args.records, date.fromisoformat(day), "min100", org=ORG_MIN100)
                # Informational: not held to the floor (100 requests write the cache).
                measure(runtime, real_minimum, "bedrock", day, records, 0, "min_records=100")
        finally:
            emulator.stop()
            if settings is not None:
                stop_embedded(settings)
    print(f"cost_benchmark within_{TOLERANCE:.0%}_of_floor={ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
