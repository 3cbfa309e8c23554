"""The one resource the Dagster layer needs: a handle on memo_pipeline's stores and providers.

Nothing is read from the environment or the network when Definitions load; the first use inside
a run, sensor or schedule resolves settings, starts the embedded PostgreSQL when needed and runs
migrations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import psycopg
from dagster import ConfigurableResource
from pydantic import PrivateAttr

from memo_pipeline.config import Settings
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline.stores.db import DatabaseUrls, connect, ensure_databases
from memo_pipeline.stores.vectors import Embedder, VectorStore


class MemoRuntime:
    """Settings, stores and providers for one process."""

    def __init__(self, settings: Settings, local_delay_seconds: float = 0.0) -> None:
        self.settings = settings
        self.local_delay_seconds = local_delay_seconds

    @cached_property
    def urls(self) -> DatabaseUrls:
        self.settings.ensure_dirs()
        return ensure_databases(self.settings)

    @cached_property
    def orgs(self) -> dict[str, OrgSpec]:
        return self.settings.orgs

    @cached_property
    def registry(self) -> ProviderRegistry:
        return ProviderRegistry(self.settings, self.local_delay_seconds)

    @cached_property
    def vectors(self) -> VectorStore:
        return VectorStore(self.settings.lance_dir)

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with connect(self.urls.app) as conn:
            yield conn


_RUNTIMES: dict[tuple[str, float], MemoRuntime] = {}


class MemoResource(ConfigurableResource):
    """memo_pipeline's stores and providers. ``memo_home`` empty means ``$MEMO_HOME``."""

    memo_home: str = ""
    local_delay_seconds: float = 0.0
    _runtime: MemoRuntime | None = PrivateAttr(default=None)

    @property
    def runtime(self) -> MemoRuntime:
        if self._runtime is None:
            overrides = {"memo_home": Path(self.memo_home)} if self.memo_home else {}
            settings = Settings.from_env(**overrides)
            key = (str(settings.memo_home), self.local_delay_seconds)
            if key not in _RUNTIMES:
                _RUNTIMES[key] = MemoRuntime(settings, self.local_delay_seconds)
            self._runtime = _RUNTIMES[key]
        return self._runtime
