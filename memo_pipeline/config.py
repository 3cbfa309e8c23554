"""Settings: where state lives and which configuration files apply.

All embedded state (PostgreSQL data, LanceDB, landing zone, staging, DAGSTER_HOME) lives under one
folder, ``MEMO_HOME`` (default ``.memo/`` in the working directory), so two runs with different
homes never see each other. Settings are read from the environment when a command starts, never
at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from memo_pipeline.schema.collections import ConfigError, OrgSpec, ProviderChoice, load_orgs

if TYPE_CHECKING:
    from memo_pipeline.costs import PriceTable

PACKAGE_CONFIG = Path(__file__).resolve().parent / "config"
REPO_ROOT = Path(__file__).resolve().parent.parent


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """An override file over packaged defaults: mappings merge key by key, anything else
    (null included) replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Settings:
    memo_home: Path
    orgs_dir: Path
    database_url: str | None = None
    provider_overrides: dict[str, Any] = field(default_factory=dict)
    # Routes every org and collection to one provider (``make run PROVIDER=...``).
    provider_override: str | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        home = Path(os.environ.get("MEMO_HOME") or Path.cwd() / ".memo").resolve()
        orgs = Path(os.environ.get("MEMO_ORGS_DIR") or REPO_ROOT / "config" / "orgs").resolve()
        values: dict[str, Any] = {
            "memo_home": home,
            "orgs_dir": orgs,
            "database_url": os.environ.get("DATABASE_URL") or None,
            "provider_override": os.environ.get("MEMO_PROVIDER") or None,
        }
        values.update(overrides)
        return cls(**values)

    @property
    def pg_dir(self) -> Path:
        return self.memo_home / "pg"

    @property
    def lance_dir(self) -> Path:
        return self.memo_home / "lancedb"

    @property
    def landing_dir(self) -> Path:
        return self.memo_home / "landing"

    @property
    def staging_dir(self) -> Path:
        return self.memo_home / "staging"

    @property
    def dagster_home(self) -> Path:
        return self.memo_home / "dagster"

    @cached_property
    def orgs(self) -> dict[str, OrgSpec]:
        if not self.orgs_dir.is_dir():
            raise ConfigError(f"{self.orgs_dir}: org definitions folder does not exist")
        orgs = load_orgs(self.orgs_dir)
        if self.provider_override:
            choice = ProviderChoice(provider=self.provider_override)
            orgs = {
                name: spec.model_copy(update={"provider": choice, "collection_providers": {}})
                for name, spec in orgs.items()
            }
        return orgs

    @cached_property
    def providers_config(self) -> dict[str, Any]:
        """Provider limits and defaults: packaged file, then ``$MEMO_HOME/providers.yaml``."""
        config = yaml.safe_load((PACKAGE_CONFIG / "providers.yaml").read_text())["providers"]
        user_file = Path(os.environ.get("MEMO_PROVIDERS_FILE") or self.memo_home / "providers.yaml")
        if user_file.is_file():
            config = deep_merge(
                config, (yaml.safe_load(user_file.read_text()) or {}).get("providers", {})
            )
        return deep_merge(config, self.provider_overrides)

    @property
    def prices_file(self) -> Path | None:
        """The user prices file: ``MEMO_PRICES_FILE``, else ``$MEMO_HOME/prices.yaml`` if it
        exists, else None (packaged prices only)."""
        named = os.environ.get("MEMO_PRICES_FILE")
        if named:
            return Path(named)
        user_file = self.memo_home / "prices.yaml"
        return user_file if user_file.is_file() else None

    @cached_property
    def prices(self) -> PriceTable:
        """The packaged price table with the user prices file merged over it."""
        from memo_pipeline.costs import load_prices

        return load_prices(self.prices_file)

    def ensure_dirs(self) -> None:
        for path in (self.memo_home, self.landing_dir, self.staging_dir, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)
