"""Helpers for the provider tests: a test org, requests, adapters wired to the emulator.

The fixtures that start the emulator live in ``conftest_emulator.py``; a test module loads them
with ``pytest_plugins = ["memo_pipeline_tests.conftest_emulator"]`` and imports helpers from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from memo_pipeline.prompts.render import RenderedPrompt, render
from memo_pipeline.providers.anthropic import AnthropicProvider
from memo_pipeline.providers.base import Outcome, ProviderLimits, ProviderRequest, RequestOutcome
from memo_pipeline.providers.bedrock import BedrockProvider
from memo_pipeline.providers.classify import packaged_provider_settings
from memo_pipeline.providers.openai import OpenAIProvider
from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline_emulator import EmulatorHandle

BUCKET = "memo-batch-test"
ROLE_ARN = "arn:aws:iam::123456789012:role/memo-bedrock-batch"
ANTHROPIC_MODEL = "claude-haiku-5-5"
OPENAI_MODEL = "gpt-6-luna"
BEDROCK_MODEL = "us.anthropic.claude-haiku-5-5-v1:0"

# A self-contained org, so edits to config/orgs do not move these tests. Its rendered prefix is
# about 1,400 estimated tokens: above the 1,024-token default minimum, below 4,096.
TEST_ORG = OrgSpec.model_validate(
    {
        "org": "emutest",
        "display_name": "Emulator Test Org",
        "collections": {
            "contacts": {
                "description": "People and companies seen in e-mail and meeting notes.",
                "instructions": (
                    "Extract durable facts about the people and companies in the record: roles, "
                    "employers, responsibilities, plans, preferences, decisions, commitments and "
                    "relationships. Skip greetings, signatures without facts, quoted earlier "
                    "messages and small talk. Dates in facts are absolute: use the record's date "
                    "to resolve relative dates such as yesterday, next week or in March. A fact "
                    "names its entity in full and stands on its own without the record. When "
                    "the record contradicts an earlier fact, state the newer fact with its date. "
                    "Never infer a job title, an employer or a relationship that the record does "
                    "not state, and never copy e-mail signatures or legal disclaimers into facts. "
                    "Prefer one precise fact over a vague summary; keep numbers, amounts and "
                    "dates exactly as written, and keep product and project names as written."
                ),
                "entity_types": {
                    "person": {
                        "description": "A human being named in the record.",
                        "properties": {
                            "email": {"type": "email", "description": "E-mail address."},
                            "phone": {"type": "phone", "description": "Phone number, E.164."},
                            "job_title": {"description": "Current job title."},
                            "employer": {"description": "Company the person works for."},
                        },
                    },
                    "company": {
                        "description": "A company or other organisation.",
                        "properties": {"domain": {"description": "Main web domain."}},
                    },
                },
                "predicates": {
                    "works_at": "the person is employed by the company",
                    "knows": "the two people have talked or worked together",
                },
                "examples": [
                    {
                        "content": (
                            "From: Priya Raman <priya@northwind.example>\n"
                            "I'm the procurement lead at Northwind Traders."
                        ),
                        "output": {
                            "entities": [
                                {
                                    "ref": "e1",
                                    "type": "person",
                                    "name": "Priya Raman",
                                    "identifiers": ["priya@northwind.example"],
                                }
                            ],
                            "properties": [
                                {"entity": "e1", "name": "job_title", "value": "procurement lead"}
                            ],
                            "memories": [
                                {
                                    "entity": "e1",
                                    "text": "Priya Raman is the procurement lead at Northwind.",
                                }
                            ],
                            "edges": [],
                        },
                    },
                    {
                        "content": (
                            "Meeting notes, 3 March. Tom Becker (finance, Northwind Traders) "
                            "confirmed the budget for the renewal. Lena Vogel from Contoso Ltd "
                            "will send the revised quote by Friday."
                        ),
                        "output": {
                            "entities": [
                                {
                                    "ref": "e1",
                                    "type": "person",
                                    "name": "Tom Becker",
                                    "identifiers": [],
                                },
                                {
                                    "ref": "e2",
                                    "type": "company",
                                    "name": "Northwind Traders",
                                    "identifiers": [],
                                },
                                {
                                    "ref": "e3",
                                    "type": "person",
                                    "name": "Lena Vogel",
                                    "identifiers": [],
                                },
                                {
                                    "ref": "e4",
                                    "type": "company",
                                    "name": "Contoso Ltd",
                                    "identifiers": [],
                                },
                            ],
                            "properties": [
                                {"entity": "e1", "name": "employer", "value": "Northwind Traders"},
                                {"entity": "e3", "name": "employer", "value": "Contoso Ltd"},
                            ],
                            "memories": [
                                {
                                    "entity": "e1",
                                    "text": "Tom Becker confirmed the renewal budget on 3 March.",
                                },
                                {
                                    "entity": "e3",
                                    "text": "Lena Vogel will send Northwind the revised quote.",
                                },
                            ],
                            "edges": [
                                {"subject": "e1", "predicate": "works_at", "object": "e2"},
                                {"subject": "e3", "predicate": "works_at", "object": "e4"},
                                {"subject": "e1", "predicate": "knows", "object": "e3"},
                            ],
                        },
                    },
                ],
            }
        },
    }
)

FIRST = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jade"]
LAST = ["Martin", "Okafor", "Silva", "Kowalski", "Tanaka", "Haddad", "Novak", "Berg"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay"]


def record(index: int) -> ContentRecord:
    first, last = FIRST[index % len(FIRST)], LAST[index % len(LAST)]
    company = COMPANIES[index % len(COMPANIES)]
    email = f"{first.lower()}.{last.lower()}@{company.lower()}.example"
    content = (
        f"From: {first} {last} <{email}>\n"
        f"Hi team, I'm the operations manager at {company} Labs. We plan to renew the analytics "
        f"contract in March, and {FIRST[(index + 3) % len(FIRST)]} {LAST[(index + 1) % len(LAST)]} "
        f"will join the call. Reach me at +1 415 555 {index % 10000:04d}. Ticket {index}."
    )
    return ContentRecord(
        source_id=f"src-{index}",
        org="emutest",
        collection="contacts",
        identifier=email,
        content=content,
        source_ts=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
        kind="email",
    )


def make_requests(
    count: int,
    *,
    model: str = "",
    start: int = 0,
    prefix: str | None = None,
    id_prefix: str = "req",
    max_tokens: int = 4096,
) -> list[ProviderRequest]:
    """``count`` requests over distinct records sharing one static prefix.

    ``prefix`` replaces the rendered static prefix (e.g. a short one below the cache minimum).
    """
    requests = []
    for index in range(start, start + count):
        prompt = render(TEST_ORG, record(index))
        if prefix is not None:
            prompt = RenderedPrompt(
                prefix, prompt.record_part, prompt.schema_version, "short-prefix"
            )
        requests.append(
            ProviderRequest(
                request_id=f"{id_prefix}-{index:05d}",
                prompt=prompt,
                model=model,
                max_tokens=max_tokens,
            )
        )
    return requests


def limits_for(provider: str, **overrides: Any) -> ProviderLimits:
    """Limits from the packaged providers.yaml, as the registry builds them."""
    config = packaged_provider_settings(provider)
    values: dict[str, Any] = {
        "max_requests_per_batch": int(config["max_requests_per_batch"]),
        "max_bytes_per_batch": int(config["max_bytes_per_batch"]),
        "min_requests_per_batch": int(config.get("min_requests_per_batch", 1)),
        "min_cacheable_tokens": int(config["min_cacheable_tokens"]["default"]),
    }
    values.update(overrides)
    return ProviderLimits(**values)


class EmulatorAdmin:
    """The emulator's admin endpoints, over HTTP as any client would use them."""

    def __init__(self, handle: EmulatorHandle) -> None:
        self.handle = handle
        self.url = handle.url
        self._http = httpx.Client(base_url=handle.url, timeout=30)

    def reset(self) -> None:
        self._http.post("/_emulator/reset").raise_for_status()

    def faults(self, *rules: dict[str, Any]) -> list[dict[str, Any]]:
        response = self._http.post("/_emulator/faults", json={"faults": list(rules)})
        response.raise_for_status()
        return response.json()["faults"]

    def config(self, **settings: Any) -> dict[str, Any]:
        response = self._http.post("/_emulator/config", json=settings)
        response.raise_for_status()
        return response.json()

    def advance(self, seconds: float) -> None:
        self._http.post("/_emulator/clock", json={"advance": seconds}).raise_for_status()

    def state(self) -> dict[str, Any]:
        response = self._http.get("/_emulator/state")
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self._http.close()


def anthropic_provider(
    handle: EmulatorHandle, *, model: str = ANTHROPIC_MODEL, **kwargs: Any
) -> AnthropicProvider:
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("timeout", 30.0)
    return AnthropicProvider(
        limits=kwargs.pop("limits", limits_for("anthropic")),
        model=model,
        base_url=handle.anthropic_base_url,
        **kwargs,
    )


def openai_provider(
    handle: EmulatorHandle, *, model: str = OPENAI_MODEL, **kwargs: Any
) -> OpenAIProvider:
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("timeout", 30.0)
    return OpenAIProvider(
        limits=kwargs.pop("limits", limits_for("openai")),
        model=model,
        base_url=handle.openai_base_url,
        **kwargs,
    )


def bedrock_provider(
    handle: EmulatorHandle, *, model: str = BEDROCK_MODEL, **kwargs: Any
) -> BedrockProvider:
    kwargs.setdefault("max_retries", 1)
    kwargs.setdefault("timeout", 30.0)
    kwargs.setdefault("s3_prefix", "memo-test")
    return BedrockProvider(
        limits=kwargs.pop("limits", limits_for("bedrock")),
        model=model,
        bucket=BUCKET,
        role_arn=ROLE_ARN,
        region="us-east-1",
        endpoint_url=handle.bedrock_endpoint_url,
        s3_endpoint_url=handle.s3_url,
        **kwargs,
    )


def by_id(outcomes: Sequence[RequestOutcome]) -> dict[str, RequestOutcome]:
    """Outcomes keyed by request id; fails on a repeated id."""
    keyed: dict[str, RequestOutcome] = {}
    for outcome in outcomes:
        assert outcome.request_id not in keyed, f"{outcome.request_id} reported twice"
        keyed[outcome.request_id] = outcome
    return keyed


def outcome_counts(outcomes: Sequence[RequestOutcome]) -> dict[Outcome, int]:
    counts = dict.fromkeys(Outcome, 0)
    for outcome in outcomes:
        counts[outcome.outcome] += 1
    return counts
