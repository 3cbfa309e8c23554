"""Builds provider clients from configuration; one instance per (provider, model) per process."""

from __future__ import annotations

import importlib
from typing import Any

from memo_pipeline.config import Settings
from memo_pipeline.providers.base import Provider, ProviderLimits
from memo_pipeline.schema.collections import ConfigError

# Adapter classes by provider name; imported lazily so a missing SDK only fails its own path.
ADAPTERS = {
    "anthropic": "memo_pipeline.providers.anthropic:AnthropicProvider",
    "openai": "memo_pipeline.providers.openai:OpenAIProvider",
    "bedrock": "memo_pipeline.providers.bedrock:BedrockProvider",
}


def limits_from_config(config: dict[str, Any], model: str) -> ProviderLimits:
    min_cache = config.get("min_cacheable_tokens", {})
    return ProviderLimits(
        max_requests_per_batch=int(config["max_requests_per_batch"]),
        max_bytes_per_batch=int(config["max_bytes_per_batch"]),
        min_requests_per_batch=int(config.get("min_requests_per_batch", 1)),
        min_cacheable_tokens=int(min_cache.get(model, min_cache.get("default", 1024))),
    )


def remainders_wait(config: dict[str, Any]) -> bool:
    """Whether requests below the provider's job minimum wait for more (``remainder_policy:
    wait``) rather than go through the sync API (``sync``, the default, and anything else)."""
    return config.get("remainder_policy", "sync") == "wait"


def cache_ttl_of(config: dict[str, Any]) -> str:
    """The cache-write lifetime the cost figures assume for the provider (``1h`` if unnamed)."""
    return str(config.get("cache_ttl", "1h"))


class ProviderRegistry:
    def __init__(self, settings: Settings, local_delay_seconds: float = 0.0) -> None:
        self.settings = settings
        self.local_delay_seconds = local_delay_seconds
        self._cache: dict[tuple[str, str], Provider] = {}

    def config(self, name: str) -> dict[str, Any]:
        try:
            return self.settings.providers_config[name]
        except KeyError:
            known = ", ".join(sorted(self.settings.providers_config))
            raise ConfigError(f"unknown provider {name!r}; configured: {known}") from None

    def default_model(self, name: str) -> str:
        return str(self.config(name)["default_model"])

    def get(self, name: str, model: str | None = None) -> Provider:
        model = model or self.default_model(name)
        key = (name, model)
        if key not in self._cache:
            self._cache[key] = self._build(name, model)
        return self._cache[key]

    def _build(self, name: str, model: str) -> Provider:
        config = self.config(name)
        limits = limits_from_config(config, model)
        if name == "local":
            from memo_pipeline.providers.local import LocalProvider

            delay = float(config.get("delay_seconds", self.local_delay_seconds))
            return LocalProvider(limits, self.settings.staging_dir, model, delay_seconds=delay)
        module_name, _, class_name = ADAPTERS[name].partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls.from_config(
            limits=limits, model=model, config=config, staging_dir=self.settings.staging_dir
        )
