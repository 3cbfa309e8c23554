"""The Dagster instance under ``$MEMO_HOME/dagster``, storing runs in PostgreSQL.

``prepare_instance`` writes ``dagster.yaml`` (storage in the ``dagster`` database of the same
PostgreSQL server, reached through the ``MEMO_DAGSTER_PG_URL`` variable so no URL with a password
is written to disk) and sets the environment for this process and its children.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from memo_pipeline.config import Settings
from memo_pipeline.stores.db import DatabaseUrls

DAGSTER_YAML = {
    "storage": {"postgres": {"postgres_url": {"env": "MEMO_DAGSTER_PG_URL"}}},
    "run_coordinator": {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {
            "max_concurrent_runs": 4,
            "tag_concurrency_limits": [
                {
                    "key": "dagster/partition",
                    "value": {"applyLimitPerUniqueValue": True},
                    "limit": 1,
                }
            ],
        },
    },
    "telemetry": {"enabled": False},
}


def prepare_instance(settings: Settings, urls: DatabaseUrls) -> Path:
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    text = yaml.safe_dump(DAGSTER_YAML, sort_keys=False)
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    os.environ["DAGSTER_HOME"] = str(home)
    # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3; dagster-postgres needs psycopg2.
    os.environ["MEMO_DAGSTER_PG_URL"] = urls.dagster.replace(
        "postgresql://", "postgresql+psycopg2://", 1
    )
    os.environ["MEMO_HOME"] = str(settings.memo_home)
    return home
