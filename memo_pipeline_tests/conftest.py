"""Shared fixtures: one embedded PostgreSQL and LanceDB per test session, emptied per test.

Integration tests use the real stores: pgserver's PostgreSQL (or ``DATABASE_URL`` when set) and
LanceDB in a temporary ``MEMO_HOME``. The embedding model loads once per session.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from memo_pipeline.config import REPO_ROOT, Settings
from memo_pipeline.defs.resources import _RUNTIMES, MemoResource, MemoRuntime
from memo_pipeline.stores.db import stop_embedded

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
EXAMPLES = REPO_ROOT / "examples" / "input"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

APP_TABLES = [
    "cache_primes", "request_results", "extraction_requests", "provider_jobs", "property_values",
    "memories", "edges", "entity_identifiers", "entities", "dead_letters", "content_records",
]  # fmt: skip


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("memo_home")


@pytest.fixture(scope="session")
def session_runtime(session_home: Path) -> Iterator[MemoRuntime]:
    runtime = MemoRuntime(Settings.from_env(memo_home=session_home))
    runtime.urls  # noqa: B018 - start PostgreSQL and migrate once
    # Resources copied by Dagster find this same runtime through the per-process registry.
    _RUNTIMES[(str(session_home.resolve()), 0.0)] = runtime
    yield runtime
    # The embedded server outlives this process unless stopped (a no-op with DATABASE_URL).
    if runtime.settings.database_url is None:
        stop_embedded(runtime.settings)


@pytest.fixture
def runtime(session_runtime: MemoRuntime) -> MemoRuntime:
    """The session's stores, emptied: no rows, no vectors, no landed files, no local jobs."""
    settings = session_runtime.settings
    with session_runtime.connection() as conn:
        conn.execute(f"truncate {', '.join(APP_TABLES)} restart identity cascade")
        conn.commit()
    for folder in (settings.landing_dir, settings.staging_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    if settings.lance_dir.exists():
        session_runtime.vectors.db.drop_all_tables()
    session_runtime.__dict__.pop("registry", None)
    return session_runtime


@pytest.fixture
def memo(runtime: MemoRuntime) -> MemoResource:
    resource = MemoResource(memo_home=str(runtime.settings.memo_home))
    resource._runtime = runtime  # noqa: SLF001
    return resource
