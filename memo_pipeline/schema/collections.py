"""Org and collection definitions, loaded from YAML and validated with pydantic.

An org file (``config/orgs/<org>.yaml``) names the org's provider settings, redaction tier and
budget, and defines its collections: which properties people and companies carry (with types,
descriptions and extraction instructions), which edge predicates exist, and few-shot examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PropertyType = Literal[
    "string", "email", "phone", "url", "date", "integer", "number", "boolean", "enum"
]


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the file and the field."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PropertySpec(_Spec):
    type: PropertyType = "string"
    description: str
    instructions: str = ""
    values: list[str] = Field(default_factory=list)
    multi: bool = False

    @model_validator(mode="after")
    def _enum_has_values(self) -> PropertySpec:
        if self.type == "enum" and not self.values:
            raise ValueError("an enum property needs a non-empty 'values' list")
        return self


class EntityTypeSpec(_Spec):
    description: str
    properties: dict[str, PropertySpec] = Field(default_factory=dict)


class ExampleSpec(_Spec):
    content: str
    output: dict[str, Any]


class CollectionSpec(_Spec):
    description: str
    instructions: str
    entity_types: dict[Literal["person", "company"], EntityTypeSpec]
    predicates: dict[str, str] = Field(description="predicate name -> meaning")
    examples: list[ExampleSpec] = Field(default_factory=list)


class ProviderChoice(_Spec):
    provider: str = "local"
    model: str | None = None


class OrgSpec(_Spec):
    org: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    display_name: str
    redaction: Literal["off", "mask", "strict"] = "off"
    redact_before_provider: bool = False
    # What the org may spend per UTC day, in USD (0 holds everything); None sets no budget.
    daily_budget_usd: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    # Cosine similarity at or above which two memories of one entity count as the same fact.
    near_duplicate_threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    provider: ProviderChoice = Field(default_factory=ProviderChoice)
    collections: dict[str, CollectionSpec]
    collection_providers: dict[str, ProviderChoice] = Field(default_factory=dict)

    def provider_for(self, collection: str) -> ProviderChoice:
        return self.collection_providers.get(collection, self.provider)


def load_org(path: Path) -> OrgSpec:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read org definition: {exc}") from exc
    try:
        return OrgSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


def load_orgs(folder: Path) -> dict[str, OrgSpec]:
    orgs: dict[str, OrgSpec] = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = load_org(path)
        if spec.org in orgs:
            raise ConfigError(f"{path}: org '{spec.org}' is defined twice")
        orgs[spec.org] = spec
    return orgs
