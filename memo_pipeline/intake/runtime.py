"""What the intake needs from a process: settings, orgs, stores, providers.

``Runtime`` is the shape; the Dagster layer's ``MemoRuntime`` has it, and ``IntakeRuntime`` is
the same thing for processes that do not load Dagster (the HTTP service, the CLI).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cached_property
from typing import Protocol

import psycopg

from memo_pipeline.config import Settings
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline.stores.db import DatabaseUrls, connect, ensure_databases
from memo_pipeline.stores.vectors import Embedder, VectorStore


class Runtime(Protocol):
    settings: Settings

    @property
    def urls(self) -> DatabaseUrls: ...

    @property
    def orgs(self) -> dict[str, OrgSpec]: ...

    @property
    def registry(self) -> ProviderRegistry: ...

    @property
    def vectors(self) -> VectorStore: ...

    @property
    def embedder(self) -> Embedder: ...

    def connection(self) -> AbstractContextManager[psycopg.Connection]: ...


class IntakeRuntime:
    """Settings, stores and providers for one process; everything starts on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        orgs: dict[str, OrgSpec] | None = None,
        urls: DatabaseUrls | None = None,
    ) -> None:
        self.settings = settings
        if orgs is not None:
            self.__dict__["orgs"] = orgs
        if urls is not None:
            self.__dict__["urls"] = urls

    @cached_property
    def urls(self) -> DatabaseUrls:
        self.settings.ensure_dirs()
        return ensure_databases(self.settings)

    @cached_property
    def orgs(self) -> dict[str, OrgSpec]:
        return self.settings.orgs

    @cached_property
    def registry(self) -> ProviderRegistry:
        return ProviderRegistry(self.settings)

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
