"""PostgreSQL: the embedded server, connections and versioned migrations.

When ``DATABASE_URL`` is unset the project runs its own PostgreSQL (pgserver) with its data under
``$MEMO_HOME/pg``; it keeps running after the command that started it, so the Dagster daemon, the
web UI and later commands share it (``memo-pipeline db stop`` stops it). The application tables
live in the ``memo`` database and the Dagster instance in its own ``dagster`` database on the same
server. Migrations in ``migrations/NNNN_name.sql`` are applied in order on start, under an
advisory lock so that concurrent starters apply each one once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

from memo_pipeline.config import Settings

log = logging.getLogger(__name__)

APP_DB = "memo"
DAGSTER_DB = "dagster"
MIGRATION_LOCK = 7_310_001


@dataclass(frozen=True)
class DatabaseUrls:
    app: str
    dagster: str


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _create_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not exists:
            with suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'create database "{name}"')


def _start_embedded(settings: Settings) -> str:
    import pgserver  # heavy import, only needed for the embedded default

    settings.pg_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(settings.pg_dir, cleanup_mode=None)
    return server.get_uri()


def ensure_databases(settings: Settings) -> DatabaseUrls:
    """Start the embedded server if needed, create both databases, migrate the app one."""
    if settings.database_url:
        app = settings.database_url
        dagster = _with_database(app, urlsplit(app).path.lstrip("/") + "_dagster")
        server = _with_database(app, "postgres")
    else:
        server = _start_embedded(settings)
        app = _with_database(server, APP_DB)
        dagster = _with_database(server, DAGSTER_DB)
        _create_database(server, APP_DB)
    try:
        _create_database(server, urlsplit(dagster).path.lstrip("/"))
    except psycopg.Error as exc:
        # A managed server may not allow CREATE DATABASE; Dagster then needs DAGSTER_PG_URL.
        log.warning("could not create the Dagster database: %s", exc.__class__.__name__)
    with connect(app) as conn:
        migrate(conn)
    return DatabaseUrls(app=app, dagster=dagster)


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server of this ``MEMO_HOME``; False if it was not running."""
    import subprocess

    import pgserver

    pg_ctl = pgserver._commands.POSTGRES_BIN_PATH / "pg_ctl"  # noqa: SLF001 - pgserver has no stop API
    if not (settings.pg_dir / "postmaster.pid").exists():
        return False
    # pgserver runs PostgreSQL as its own 'pgserver' user when started by root; pg_ctl must too.
    user = "pgserver" if os.geteuid() == 0 else None
    done = subprocess.run(
        [str(pg_ctl), "-D", str(settings.pg_dir), "-m", "fast", "-w", "stop"],
        check=False,
        capture_output=True,
        text=True,
        user=user,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctl stop failed for {settings.pg_dir}: {done.stderr.strip()}")
    return True


def connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, row_factory=dict_row)
    # json/jsonb columns (answers, metadata) decode with orjson: several times the stdlib's speed.
    set_json_loads(orjson.loads, conn)
    return conn


def migrations() -> list[tuple[str, str]]:
    folder = resources.files("memo_pipeline.stores") / "migrations"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(p.name.removesuffix(".sql"), p.read_text()) for p in files]


def migrate(conn: psycopg.Connection) -> list[str]:
    applied: list[str] = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "create table if not exists schema_migrations "
            "(version text primary key, applied_at timestamptz not null default now())"
        )
        done = {r["version"] for r in conn.execute("select version from schema_migrations")}
        for version, sql in migrations():
            if version in done:
                continue
            conn.execute(sql)
            conn.execute("insert into schema_migrations (version) values (%s)", (version,))
            applied.append(version)
    if applied:
        log.info("applied migrations %s", ", ".join(applied))
    return applied


@contextmanager
def session(url: str) -> Iterator[psycopg.Connection]:
    with connect(url) as conn:
        yield conn
