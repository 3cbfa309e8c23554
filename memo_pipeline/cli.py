"""``memo-pipeline``: the command line. Results go to stdout, logs to stderr."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from datetime import date
from decimal import Decimal
from pathlib import Path

from memo_pipeline.config import Settings
from memo_pipeline.schema.collections import ConfigError

log = logging.getLogger("memo_pipeline")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "botocore", "urllib3", "sentence_transformers", "lancedb", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        from dagster import BetaWarning, PreviewWarning

        warnings.filterwarnings("ignore", category=BetaWarning)
        warnings.filterwarnings("ignore", category=PreviewWarning)
    except ImportError:
        pass


def _load_options(args: argparse.Namespace):
    from memo_pipeline.ingest.loaders import LoadOptions

    return LoadOptions(
        org=args.org,
        collection=args.collection,
        start_date=args.start_date,
        manifest=args.manifest,
    )


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def _input_options(parser: argparse.ArgumentParser) -> None:
    """The options that say what to load and how to date it (run, forecast)."""
    from memo_pipeline.ingest.loaders import FORMATS

    parser.add_argument(
        "--format", default="jsonl", choices=FORMATS, help="input format (default: %(default)s)"
    )
    parser.add_argument("--provider", default=None, help="route every org to this provider")
    parser.add_argument(
        "--org", default="acme", help="org of records that name none (default: %(default)s)"
    )
    parser.add_argument(
        "--collection",
        default=None,
        help="collection of records that name none (default: the format's own)",
    )
    parser.add_argument(
        "--start-date", type=_iso_date, default=None, help="date for undated input (YYYY-MM-DD)"
    )
    parser.add_argument(
        "--manifest", type=_existing_file, default=None, help="CSV giving dates for undated input"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from memo_pipeline.defs.resources import MemoRuntime
    from memo_pipeline.defs.runner import run_bulk
    from memo_pipeline.pipeline.stats import partition_stats

    if args.provider:
        os.environ["MEMO_PROVIDER"] = args.provider
    settings = Settings.from_env()
    data = Path(args.data)
    if not data.exists():
        log.error("input %s does not exist", data)
        return 2
    report = run_bulk(
        settings, data, args.format, _load_options(args), timeout_seconds=args.timeout
    )
    runtime = MemoRuntime(settings)
    with runtime.connection() as conn:
        stats = partition_stats(conn, runtime.vectors)
    days = set(report.days)
    print(
        f"{'day':<12} {'records':>8} {'requests':>9} {'memories':>9} {'vectors':>8} "
        f"{'dead':>5}  jobs"
    )
    for day, s in stats.items():
        if day in days:
            jobs = ",".join(f"{k}={v}" for k, v in sorted(s["jobs"].items()))
            print(
                f"{day:<12} {s['records']:>8} {s['requests']:>9} {s['memories']:>9} "
                f"{s['vectors']:>8} {s['dead_letters']:>5}  {jobs}"
            )
    shown = [stats[d] for d in report.days if d in stats]
    print(
        f"days={len(report.days)} records={sum(s['records'] for s in shown)} "
        f"memories={sum(s['memories'] for s in shown)} "
        f"vectors={sum(s['vectors'] for s in shown)} load_errors={report.load_errors} "
        f"seconds={report.seconds:.1f}"
    )
    print(f"MEMO_HOME={settings.memo_home}")
    print("Open the Dagster UI with: make ui   (then http://127.0.0.1:3000)")
    if not report.ok:
        for day, reasons in report.waiting.items():
            for reason in reasons[:5]:
                log.error("%s: %s", day, reason)
        log.error(
            "failed runs: %s; incomplete days: %s", report.failed_runs, report.incomplete_days
        )
        return 1
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from memo_pipeline.defs.resources import MemoRuntime
    from memo_pipeline.pipeline.stats import partition_stats

    runtime = MemoRuntime(Settings.from_env())
    with runtime.connection() as conn:
        stats = partition_stats(conn, runtime.vectors)
        undated = conn.execute(
            "select count(*) as n from dead_letters where partition_day is null"
        ).fetchone()["n"]
    print(json.dumps(stats, indent=2, sort_keys=True))
    if undated:
        # Not a day's count (the JSON is keyed by day), but never out of sight.
        log.warning(
            "%d dead letter(s) have no day (their date could not be read); "
            "memo-pipeline dead-letters --undated lists them",
            undated,
        )
    return 0


def cmd_costs(args: argparse.Namespace) -> int:
    from memo_pipeline.costs import cost_markdown
    from memo_pipeline.defs.resources import MemoRuntime
    from memo_pipeline.pipeline.costs_ledger import DIMENSIONS, cost_totals

    by = [name.strip() for name in args.by.split(",") if name.strip()]
    unknown = [name for name in by if name not in DIMENSIONS]
    if unknown:
        log.error("--by %s: choose from %s", ",".join(unknown), ", ".join(sorted(DIMENSIONS)))
        return 2
    runtime = MemoRuntime(Settings.from_env())
    with runtime.connection() as conn:
        summary = cost_totals(conn, args.day.isoformat() if args.day else None, by=by)
    if not args.json:
        print(cost_markdown(summary), end="")
        return 0

    def row(totals) -> dict[str, object]:
        return {
            "requests": totals.requests,
            "realised_usd": str(totals.realised_usd),
            "counterfactual_usd": str(totals.counterfactual_usd),
            "saving_usd": str(totals.saving_usd),
            "ratio": totals.ratio,
            "requests_reading_cache": totals.requests_with_cache_read,
            "prompt_tokens": totals.prompt_tokens,
            "cache_read_tokens": totals.cache_read_tokens,
            "cache_write_tokens": totals.cache_write_tokens,
            "output_tokens": totals.output_tokens,
        }

    groups = [{**dict(zip(summary.by, g.key, strict=True)), **row(g)} for g in summary.groups]
    print(json.dumps({"groups": groups, "total": row(summary.total)}, indent=2))
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from memo_pipeline.defs.resources import MemoRuntime

    runtime = MemoRuntime(Settings.from_env())
    with runtime.connection() as conn:
        rows = conn.execute(
            "select id, stage, org_id, partition_day::text as day, source, source_line, "
            "record_id, request_id, reason, created_at from dead_letters "
            "where (%s::date is null or partition_day = %s::date) "
            "and (not %s or partition_day is null) order by id",
            (args.day, args.day, args.undated),
        ).fetchall()
    if args.json:
        print(json.dumps(rows, indent=2, default=_json_value))
        return 0
    for r in rows:
        where = r["source"] or "-"
        if r["source_line"]:
            where += f":{r['source_line']}"
        print(f"{r['id']}\t{r['day'] or 'no day'}\t{r['stage']}\t{where}\t{r['reason']}")
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    from memo_pipeline.ingest.loaders import LoadError, load
    from memo_pipeline.pipeline.costs_ledger import PlannedItem, forecast_items, forecast_markdown
    from memo_pipeline.pipeline.plan import Planner
    from memo_pipeline.pipeline.registry import ProviderRegistry

    if args.provider:
        os.environ["MEMO_PROVIDER"] = args.provider
    settings = Settings.from_env()
    data = Path(args.data)
    if not data.exists():
        log.error("input %s does not exist", data)
        return 2
    registry = ProviderRegistry(settings)
    planner = Planner(registry)
    items, errors = [], 0
    for item in load(data, args.format, _load_options(args)):
        if isinstance(item, LoadError):
            errors += 1
            log.warning("not forecast: %s", item)
            continue
        org = settings.orgs.get(item.org)
        if org is None or item.collection not in org.collections:
            errors += 1
            log.warning(
                "not forecast: %s%s: record %s: unknown org/collection %s/%s",
                item.source,
                f":{item.source_line}" if item.source_line else "",
                item.source_id,
                item.org,
                item.collection,
            )
            continue
        plan = planner.plan(org, item)
        items.append(
            PlannedItem(
                item.partition_day,
                org.org,
                item.collection,
                plan.provider,
                plan.model,
                plan.shape.prefix_key,
                plan.prefix_tokens,
                plan.record_tokens,
            )
        )
    forecasts = forecast_items(items, registry, settings.prices)
    priced = [f.forecast for f in forecasts if f.forecast is not None]
    totals = {
        mode: str(sum((f.cost(mode) for f in priced), Decimal(0)))
        for mode in ("sync", "async", "bulk", "bulk_cached")
    }
    if not items:
        log.error("nothing to forecast: no record could be forecast (%d problem(s) above)", errors)
        return 1
    print(forecast_markdown(forecasts))
    print(
        json.dumps(
            {
                "records": len(items),
                "not_forecast": errors,
                "total_usd": totals,
                "forecasts": [f.row() for f in forecasts],
            },
            indent=2,
        )
    )
    return 0


def _json_value(value: object) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def cmd_entities(args: argparse.Namespace) -> int:
    from memo_pipeline.pipeline.graph import list_entities
    from memo_pipeline.stores.db import connect, ensure_databases

    with connect(ensure_databases(Settings.from_env()).app) as conn:
        entities = list_entities(conn, args.org)
    if args.json:
        print(json.dumps(entities, indent=2))
        return 0
    for e in entities:
        names, ids = "; ".join(e["names"]), ", ".join(e["identifiers"])
        print(f"{e['org']}\t{e['id']}\t{e['type']}\t{e['memory_count']}\t{names}\t{ids}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from memo_pipeline.pipeline.graph import (
        EntityNotFound,
        find_entity,
        neighbours,
        reachable_memories,
    )
    from memo_pipeline.stores.db import connect, ensure_databases

    with connect(ensure_databases(Settings.from_env()).app) as conn:
        try:
            entity = find_entity(conn, args.org, args.entity)
        except EntityNotFound as exc:
            log.error("%s", exc)
            return 2
        out = {
            "org": args.org,
            "entity": entity,
            "hops": args.hops,
            "neighbours": neighbours(conn, args.org, entity["id"]),
            "memories": reachable_memories(conn, args.org, entity["id"], args.hops),
        }
    if args.json:
        print(json.dumps(out, indent=2, default=_json_value))
        return 0
    print(f"{entity['type']} {entity['name']} ({entity['id']})")
    for n in out["neighbours"]:
        arrow = "->" if n["direction"] == "out" else "<-"
        print(f"  {arrow} {n['predicate']} {n['type']} {n['name']} ({n['id']})")
    for m in out["memories"]:
        print(f"  [{m['hops']}] {m['entity']}: {m['text']}")
    return 0


def cmd_merges(args: argparse.Namespace) -> int:
    from memo_pipeline.stores.db import connect, ensure_databases

    with connect(ensure_databases(Settings.from_env()).app) as conn:
        merges = conn.execute(
            "select m.merge_id, m.org_id, m.survivor_id, s.names as survivor_names, m.merged_id, "
            "d.names as merged_names, m.evidence, m.created_at, m.undone_at from entity_merges m "
            "join entities s on s.entity_id = m.survivor_id "
            "join entities d on d.entity_id = m.merged_id "
            "where %s::text is null or m.org_id = %s order by m.merge_id",
            (args.org, args.org),
        ).fetchall()
    if args.json:
        print(json.dumps(merges, indent=2, default=_json_value))
        return 0
    for m in merges:
        state = f"undone {m['undone_at']:%Y-%m-%d}" if m["undone_at"] else "active"
        print(
            f"{m['merge_id']}\t{m['org_id']}\t{state}\t{m['evidence'].get('rule', '')}\t"
            f"{'; '.join(m['merged_names'])} ({m['merged_id']}) -> "
            f"{'; '.join(m['survivor_names'])} ({m['survivor_id']})"
        )
    return 0


def _sync_dirty_vectors(runtime, conn) -> tuple[int, int]:
    """LanceDB follows the memories a merge or its undo moved now, not at the next run."""
    from memo_pipeline.pipeline.store import StoreSummary, sync_vectors

    dirty = conn.execute(
        "select distinct partition_day::text as day from memories where vector_dirty order by 1"
    ).fetchall()
    summary = StoreSummary(day="")
    for row in dirty:
        sync_vectors(conn, runtime.vectors, runtime.embedder, row["day"], summary)
    return summary.vectors_moved, summary.vectors_written


def cmd_merge(args: argparse.Namespace) -> int:
    from memo_pipeline.defs.resources import MemoRuntime
    from memo_pipeline.stage2.merge import MergeError, merge_by_hand

    runtime = MemoRuntime(Settings.from_env())
    with runtime.connection() as conn:
        try:
            with conn.transaction():
                merge_id = merge_by_hand(
                    conn, runtime.orgs, args.survivor_id, args.merged_id, args.note
                )
        except MergeError as exc:
            log.error("%s", exc)
            return 2
        moved, written = _sync_dirty_vectors(runtime, conn)
    log.info(
        "merge %d: %s folded into %s; LanceDB: %d vectors re-tagged, %d written",
        merge_id,
        args.merged_id,
        args.survivor_id,
        moved,
        written,
    )
    return 0


def cmd_undo_merge(args: argparse.Namespace) -> int:
    from memo_pipeline.defs.resources import MemoRuntime
    from memo_pipeline.stage2.merge import MergeError, undo_merge

    runtime = MemoRuntime(Settings.from_env())
    with runtime.connection() as conn:
        try:
            with conn.transaction():
                undo_merge(conn, args.merge_id)
        except MergeError as exc:
            log.error("%s", exc)
            return 2
        moved, written = _sync_dirty_vectors(runtime, conn)
    log.info(
        "merge %d undone; LanceDB: %d vectors re-tagged, %d written", args.merge_id, moved, written
    )
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from memo_pipeline.defs.instance import prepare_instance
    from memo_pipeline.defs.resources import MemoRuntime

    settings = Settings.from_env()
    runtime = MemoRuntime(settings)
    prepare_instance(settings, runtime.urls)
    command = ["dagster", "dev", "-w", "workspace.yaml", "-h", args.host, "-p", str(args.port)]
    log.info("DAGSTER_HOME=%s; starting %s", os.environ["DAGSTER_HOME"], " ".join(command))
    os.execvp(command[0], command)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from memo_pipeline.stores.db import ensure_databases, stop_embedded

    settings = Settings.from_env()
    if args.action == "stop":
        stopped = stop_embedded(settings)
        log.info("embedded PostgreSQL %s", "stopped" if stopped else "was not running")
        return 0
    urls = ensure_databases(settings)
    print(urls.app)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from memo_pipeline.api.server import serve
    from memo_pipeline.intake.crypto import SecretKeyError
    from memo_pipeline.intake.service import IntakeService

    try:
        service = IntakeService.from_settings(Settings.from_env())
    except (SecretKeyError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    log.info("intake API on http://%s:%d (OpenAPI at /openapi.json)", args.host, args.port)
    serve(service, args.host, args.port)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from memo_pipeline.intake import keys
    from memo_pipeline.intake.config import parse_networks
    from memo_pipeline.intake.runtime import IntakeRuntime

    if args.action == "revoke" and not args.key_id:
        log.error("keys revoke needs --key-id")
        return 2
    if args.action != "revoke" and not args.org:
        log.error("keys %s needs --org", args.action)
        return 2
    runtime = IntakeRuntime(Settings.from_env())
    with runtime.connection() as conn:
        try:
            if args.action == "create":
                issued = keys.create_key(conn, runtime.orgs, args.org, args.label)
                out = {"org": issued.org, "key_id": issued.key_id, "api_key": issued.api_key}
            elif args.action == "rotate":
                grace = timedelta(minutes=args.grace_minutes)
                issued = keys.rotate_key(conn, runtime.orgs, args.org, grace, args.label)
                out = {
                    "org": issued.org,
                    "key_id": issued.key_id,
                    "api_key": issued.api_key,
                    "expiring_key_ids": list(issued.expiring_key_ids),
                    "old_keys_expire_at": issued.expires_at.isoformat(),
                }
            elif args.action == "list":
                out = {"keys": keys.list_keys(conn, args.org)}
            elif args.action == "revoke":
                out = {"key_id": args.key_id, "revoked": keys.revoke_key(conn, args.key_id)}
            else:
                networks = None
                if args.allow_webhook_networks is not None:
                    text = (
                        "" if args.allow_webhook_networks == "none" else args.allow_webhook_networks
                    )
                    networks = set(parse_networks(text, "--allow-webhook-networks"))
                out = keys.set_policy(
                    conn,
                    runtime.orgs,
                    args.org,
                    webhook_networks=networks,
                    rate_per_second=args.rate,
                    burst=args.burst,
                )
        except ValueError as exc:
            log.error("%s", exc)
            return 2
    if args.action in ("create", "rotate"):
        log.warning("the API key is shown once: store it now")
    print(json.dumps(out, default=str, indent=2))
    return 0


def _read_writes(path: Path, args: argparse.Namespace) -> list[dict]:
    if args.jsonl or path.suffix == ".jsonl":
        writes = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {number}: invalid JSON: {exc}") from None
            if not isinstance(item, dict) or "content" not in item:
                raise ValueError(f"{path} line {number}: expected an object with 'content'")
            writes.append(item)
        return writes
    return [{"content": path.read_text(), "title": args.title or path.name}]


def cmd_memorize(args: argparse.Namespace) -> int:
    from memo_pipeline.client import MemoApiError, MemoClient

    api_key = os.environ.get("MEMO_API_KEY")
    if not api_key:
        log.error("set MEMO_API_KEY to an API key (memo-pipeline keys create --org ORG)")
        return 2
    path = Path(args.file)
    try:
        writes = _read_writes(path, args)
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    failed = 0
    with MemoClient(args.url, api_key) as client:
        for number, write in enumerate(writes, start=1):
            options = {
                "execution_mode": write.get("execution_mode") or args.mode,
                "identifier": write.get("identifier") or args.identifier,
                "collection": write.get("collection") or args.collection,
                "deadline": write.get("deadline") or args.deadline,
                "source_ts": write.get("source_ts"),
                "title": write.get("title"),
            }
            try:
                answer = client.memorize(write["content"], **options)
            except MemoApiError as exc:
                failed += 1
                log.error("write %d of %s: %s", number, path, exc)
                continue
            print(json.dumps({"write": number, **answer}, default=str))
    return 1 if failed else 0


def cmd_demo_modes(args: argparse.Namespace) -> int:
    from memo_pipeline.demo import main as demo_main

    return demo_main(
        ["--writes", str(args.writes), "--timeout", str(args.timeout)]
        + (["--provider", args.provider] if args.provider else [])
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memo-pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="load input and run every day through the bulk path")
    run.add_argument(
        "--data", default="examples/input", help="input file or folder (default: %(default)s)"
    )
    _input_options(run)
    run.add_argument(
        "--timeout",
        type=float,
        default=3600,
        help="seconds to wait for provider jobs before giving up (default: %(default)s)",
    )
    run.set_defaults(func=cmd_run)

    forecast = sub.add_parser(
        "forecast", help="estimate what extracting the input costs in each mode (no database)"
    )
    forecast.add_argument("--data", required=True, help="input file or folder")
    _input_options(forecast)
    forecast.set_defaults(func=cmd_forecast)

    stats = sub.add_parser("stats", help="per-day counts as JSON")
    stats.set_defaults(func=cmd_stats)

    costs = sub.add_parser(
        "costs",
        help="the cost ledger's totals: realised USD beside the sync counterfactual, per group",
    )
    costs.add_argument(
        "--day", type=_iso_date, default=None, help="one partition day (default: all)"
    )
    costs.add_argument(
        "--by",
        default="day,provider,model",
        help="comma-separated: day, org, collection, provider, model, path "
        "(default: %(default)s; empty for the total alone)",
    )
    costs.add_argument(
        "--json",
        action="store_true",
        help="JSON on stdout: the groups and the total (USD as exact strings)",
    )
    costs.set_defaults(func=cmd_costs)

    entities = sub.add_parser("entities", help="current entities (all orgs, or --org)")
    entities.add_argument("--org", default=None)
    entities.add_argument("--json", action="store_true", help="a JSON list on stdout")
    entities.set_defaults(func=cmd_entities)

    graph = sub.add_parser("graph", help="an entity's neighbours and memories within --hops edges")
    graph.add_argument("--org", required=True)
    graph.add_argument("--entity", required=True, help="entity id, e-mail, web domain or name")
    graph.add_argument("--hops", type=int, default=1)
    graph.add_argument("--json", action="store_true", help="a JSON object on stdout")
    graph.set_defaults(func=cmd_graph)

    merges = sub.add_parser("merges", help="entity merges (all orgs, or --org), oldest first")
    merges.add_argument("--org", default=None)
    merges.add_argument("--json", action="store_true", help="a JSON list on stdout")
    merges.set_defaults(func=cmd_merges)

    dead = sub.add_parser(
        "dead-letters", help="what could not be stored, with its reason (all, --day or --undated)"
    )
    dead.add_argument("--day", type=_iso_date, default=None)
    dead.add_argument("--undated", action="store_true", help="only those with no day")
    dead.add_argument("--json", action="store_true", help="a JSON list on stdout")
    dead.set_defaults(func=cmd_dead_letters)

    merge = sub.add_parser(
        "merge", help="fold one entity into another by hand (recorded, and undone by undo-merge)"
    )
    merge.add_argument("survivor_id", help="the entity that stays")
    merge.add_argument("merged_id", help="the entity folded into it")
    merge.add_argument("--note", default="", help="why, kept in the merge's evidence")
    merge.set_defaults(func=cmd_merge)

    undo = sub.add_parser(
        "undo-merge", help="restore both entities of a merge (undo later merges of them first)"
    )
    undo.add_argument("merge_id", type=int)
    undo.set_defaults(func=cmd_undo_merge)

    ui = sub.add_parser("ui", help="dagster dev on the project's instance")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    db = sub.add_parser("db", help="the embedded PostgreSQL")
    db.add_argument("action", choices=["start", "stop"])
    db.set_defaults(func=cmd_db)

    serve = sub.add_parser("serve", help="the HTTP intake API (OpenAPI at /openapi.json)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="API keys and access policy of an org")
    keys.add_argument("action", choices=["create", "rotate", "list", "revoke", "policy"])
    keys.add_argument("--org", help="the org (create, rotate, list, policy)")
    keys.add_argument("--key-id", help="the key to revoke")
    keys.add_argument("--label", default=None)
    keys.add_argument(
        "--grace-minutes", type=float, default=60, help="rotate: how long old keys keep working"
    )
    keys.add_argument(
        "--allow-webhook-networks",
        default=None,
        help="policy: address classes the org's webhook may use: loopback,private,link-local|none",
    )
    keys.add_argument("--rate", type=float, default=None, help="policy: requests per second")
    keys.add_argument("--burst", type=int, default=None, help="policy: burst size")
    keys.set_defaults(func=cmd_keys)

    memorize = sub.add_parser(
        "memorize", help="send FILE (its content, or JSONL of writes) to the intake API"
    )
    memorize.add_argument("file")
    memorize.add_argument("--mode", choices=["sync", "async", "bulk"], default="async")
    memorize.add_argument("--url", default=os.environ.get("MEMO_API_URL", "http://127.0.0.1:8080"))
    memorize.add_argument("--identifier", default=None)
    memorize.add_argument("--collection", default=None)
    memorize.add_argument("--deadline", default=None, help="ISO datetime")
    memorize.add_argument("--title", default=None)
    memorize.add_argument("--jsonl", action="store_true", help="FILE holds one write per line")
    memorize.set_defaults(func=cmd_memorize)

    demo = sub.add_parser(
        "demo-modes", help="start everything, send writes in every mode, wait for webhooks"
    )
    demo.add_argument("--writes", type=int, default=20, help="writes per mode")
    demo.add_argument("--timeout", type=float, default=540)
    demo.add_argument("--provider", default=None, help="emulated provider (default anthropic)")
    demo.set_defaults(func=cmd_demo_modes)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        # A configuration file or option the user can fix: its message names the file and
        # field, and a traceback would only bury it.
        log.error("configuration error: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
