"""Forecasts before anything is paid and the cost report after: ``memo-pipeline forecast`` on the
example input without a database, its errors (a bad prices file, an unknown provider, nothing to
forecast) as one line and a non-zero exit, ``memo-pipeline costs`` against the ledger, forecasts of
a provider/model without a price, the forecast in the ``extraction_requests`` metadata, and the
``extraction_costs`` asset (table, chart embedded as a data URI and saved under $MEMO_HOME/reports,
the non-blocking cache hit rate check at its default and at a configured threshold, leaving out
requests that could not read the cache) on the real embedded PostgreSQL with the local provider.

Leaves out: the forecast arithmetic (test_costs) and how close the token estimate is to reported
usage (measured by benchmarks/cost.py, figures in the README).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from decimal import Decimal
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance, materialize

from memo_pipeline.cli import main
from memo_pipeline.config import Settings
from memo_pipeline.definitions import defs
from memo_pipeline.defs.bulk.assets import extraction_costs
from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.ingest.loaders import load
from memo_pipeline.pipeline.collect import collect_partition
from memo_pipeline.pipeline.costs_ledger import (
    PlannedItem,
    cost_report,
    cost_totals,
    forecast_items,
    forecast_markdown,
)
from memo_pipeline.pipeline.plan import plan_partition
from memo_pipeline.pipeline.raw import land, load_partition
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.pipeline.submit import submit_partition
from memo_pipeline_tests.conftest import EXAMPLES

DAY = "2026-11-23"


def test_forecast_command_needs_no_database(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("MEMO_HOME", str(tmp_path))
    monkeypatch.delenv("MEMO_PROVIDER", raising=False)
    assert main(["forecast", "--data", str(EXAMPLES), "--format", "jsonl"]) == 0
    out = capsys.readouterr().out
    table, _, rest = out.partition("\n{")
    report = json.loads("{" + rest)

    assert not (tmp_path / "pg").exists()
    assert report["records"] == 32 and report["not_forecast"] == 0
    assert [f["day"] for f in report["forecasts"]] == [
        "2026-11-23",
        "2026-11-24",
        "2026-11-25",
        "2026-11-26",
    ]
    totals = {mode: Decimal(usd) for mode, usd in report["total_usd"].items()}
    assert totals["sync"] == totals["async"] > totals["bulk"] > totals["bulk_cached"] > 0
    assert totals["bulk"] == totals["sync"] / 2
    first = report["forecasts"][0]
    assert first["windows"]["bulk"] == "1-24 h" and 0.5 < first["cacheable_share"] < 1
    # The documents collection's prefix is below the 1,024-token minimum: said, and not cached.
    assert "acme-documents" in first["warnings"][0] and "will not be cached" in table
    # Said once for the four days it applies to.
    assert table.count("acme-documents") == 1
    assert "- warning: 4 days from 2026-11-23 to 2026-11-26 acme: prefix acme-documents" in table
    assert table.startswith("| day | org | provider/model | requests |")


def test_forecast_command_errors_are_one_line_and_exit_non_zero(
    tmp_path: Path, monkeypatch, caplog
):
    monkeypatch.setenv("MEMO_HOME", str(tmp_path))
    # ``--provider`` sets MEMO_PROVIDER for the process: setting it here first makes the
    # monkeypatch take it away again afterwards.
    monkeypatch.setenv("MEMO_PROVIDER", "local")
    monkeypatch.delenv("MEMO_PROVIDER")
    prices = tmp_path / "bad-prices.yaml"
    prices.write_text("providers: {local: {offline-heuristic-1: {input: -1}}}\n")
    monkeypatch.setenv("MEMO_PRICES_FILE", str(prices))
    assert main(["forecast", "--data", str(EXAMPLES)]) == 2
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith("configuration error: ") and str(prices) in error
    assert "providers.local.offline-heuristic-1: input: " in error
    monkeypatch.delenv("MEMO_PRICES_FILE")

    caplog.clear()
    assert main(["forecast", "--data", str(EXAMPLES), "--provider", "nosuch"]) == 2
    assert "unknown provider 'nosuch'" in caplog.text

    caplog.clear()
    (tmp_path / "empty").mkdir()
    assert main(["forecast", "--data", str(tmp_path / "empty")]) == 1
    assert "nothing to forecast" in caplog.text


def test_a_provider_without_prices_is_named_in_the_forecast(tmp_path: Path):
    settings = Settings.from_env(
        memo_home=tmp_path, provider_overrides={"local": {"default_model": "mystery-9"}}
    )
    item = PlannedItem(DAY, "acme", "contacts", "local", "mystery-9", "p", 2000, 300)
    (forecast,) = forecast_items([item], ProviderRegistry(settings), settings.prices)
    assert forecast.forecast is None
    assert "no price for provider 'local' model 'mystery-9'" in forecast.error
    assert "mystery-9" in forecast_markdown([forecast])
    assert forecast.row()["error"] == forecast.error


@pytest.fixture
def example_day(runtime, memo):
    """One example day planned and submitted through Dagster, then collected (no Stage 2)."""
    with runtime.connection() as conn:
        land(runtime.settings, conn, load(EXAMPLES, "jsonl"), "examples")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(ingest_days.name, [DAY])
        result = defs.resolve_job_def("bulk_submit_job").execute_in_process(
            partition_key=DAY, instance=instance, resources={"memo": memo}
        )
        assert result.success
        with runtime.connection() as conn:
            collect_partition(conn, runtime.registry, runtime.orgs, DAY)
        yield instance


def test_forecast_is_in_the_extraction_requests_metadata(example_day):
    event = example_day.get_latest_materialization_event(AssetKey("extraction_requests"))
    metadata = event.asset_materialization.metadata
    table = metadata["forecast"].value
    assert "| 2026-11-23 | acme | local/offline-heuristic-1 | 9 |" in table
    assert "below the 1024-token minimum" in table
    (row,) = metadata["forecast_json"].value
    assert Decimal(row["bulk_cached_usd"]) < Decimal(row["bulk_usd"]) < Decimal(row["sync_usd"])
    assert metadata["forecast_bulk_cached_usd"].value == pytest.approx(
        float(row["bulk_cached_usd"])
    )


def _materialize_costs(instance, memo, **config):
    result = materialize(
        [extraction_costs],
        partition_key=DAY,
        instance=instance,
        resources={"memo": memo},
        run_config={"ops": {"extraction_costs": {"config": config}}},
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    return result, check


def test_extraction_costs_reports_and_warns_on_a_low_cache_hit_rate(runtime, memo, example_day):
    result, check = _materialize_costs(example_day, memo)
    (materialization,) = result.asset_materializations_for_node("extraction_costs")
    metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}

    # 8 contacts share a cached prefix (1 write, 7 reads); the document's prefix is too short to
    # be cached, so it is left out of the rate.
    assert metadata["requests"] == 9
    assert metadata["cache_hit_rate"] == pytest.approx(7 / 8)
    assert 0.3 < metadata["ratio"] < 0.5
    assert metadata["unpriced_requests"] == 0
    assert "| local | offline-heuristic-1 | batch | 9 |" in metadata["by_provider_model_path"]
    assert "| 2026-11-23 | 9 |" in metadata["by_day"]
    prefix = "![realised vs sync counterfactual](data:image/png;base64,"
    assert metadata["chart"].startswith(prefix)
    png = base64.b64decode(metadata["chart"][len(prefix) : -1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(metadata["chart_file"]).read_bytes() == png
    assert Path(metadata["chart_file"]).parent == runtime.settings.memo_home / "reports"
    assert check.passed and check.severity is AssetCheckSeverity.WARN

    _, strict = _materialize_costs(example_day, memo, min_cache_hit_rate=0.9)
    assert not strict.passed and strict.severity is AssetCheckSeverity.WARN
    assert strict.metadata["min_cache_hit_rate"].value == 0.9


def test_the_cache_hit_rate_leaves_out_priming_requests(runtime, tmp_path: Path):
    settings = dataclasses.replace(
        runtime.settings, provider_overrides={"local": {"prime_cache": True}}
    )
    registry = ProviderRegistry(settings)
    with runtime.connection() as conn:
        land(settings, conn, load(EXAMPLES, "jsonl"), "examples")
        load_partition(settings, conn, runtime.orgs, DAY)
        plan_partition(conn, registry, runtime.orgs, DAY)
        first = submit_partition(conn, registry, runtime.orgs, DAY)
        assert first.held_for_priming == 7 and len(first.jobs) == 2  # the primer, the document
        collect_partition(conn, registry, runtime.orgs, DAY, resubmit=False)
        # What is answered so far could not read the cache: no rate, rather than 0%.
        assert cost_report(conn, registry, settings.prices, [DAY], tmp_path).cache_hit_rate is None

        collect_partition(conn, registry, runtime.orgs, DAY)  # submits the seven held back
        collect_partition(conn, registry, runtime.orgs, DAY, resubmit=False)
        report = cost_report(conn, registry, settings.prices, [DAY], tmp_path)
    # The local provider's cache lasts one job: the second job's first request writes again.
    assert report.summary.total.requests == 9 and report.cache_hit_rate == pytest.approx(6 / 7)


def test_costs_command_prints_the_ledger_totals(runtime, example_day, monkeypatch, capsys):
    monkeypatch.setenv("MEMO_HOME", str(runtime.settings.memo_home))
    assert main(["costs", "--day", DAY, "--by", "provider,path", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    with runtime.connection() as conn:
        expected = cost_totals(conn, DAY, by=("provider", "path"))
    ((group, totals),) = zip(report["groups"], expected.groups, strict=True)
    assert (group["provider"], group["path"], group["requests"]) == ("local", "batch", 9)
    assert Decimal(group["realised_usd"]) == totals.realised_usd
    assert Decimal(report["total"]["counterfactual_usd"]) == expected.total.counterfactual_usd
    assert report["total"]["requests_reading_cache"] == 7

    assert main(["costs", "--by", "day"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| day | requests | realised |") and f"| {DAY} | 9 |" in table
    assert main(["costs", "--by", "vendor"]) == 2
