"""Bedrock adapter: batch inference jobs (model invocation jobs) for bulk, Converse for sync.

Batch input is one JSONL file in S3, one ``{"recordId", "modelInput"}`` line per request, where
``modelInput`` is the Claude InvokeModel body: the static prefix (which already holds the answer
schema: batch inference offers no structured output) as a system block with ``cache_control``
at its end, and the record as the user turn. The model is named only at job level; a
``modelId`` inside ``modelInput`` fails the record (G12).

Submission is idempotent: the job's ``clientRequestToken`` and ``jobName`` both derive from the
job key, so a repeated submit returns the same job and ``find_job`` finds it by name. Results are
every ``*.jsonl.out`` under ``<output>/<jobId>/`` joined on ``recordId`` (order is not
guaranteed); records missing from the output (a partially completed, stopped or expired job)
come back retryable. Jobs below the per-model minimum record count are refused before any call
(G11): send those requests through ``call_sync``.

Converse calls carry the request id in ``requestMetadata`` (``memo_request_id``), which
invocation logs record.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from memo_pipeline.providers.base import (
    JobHandle,
    JobState,
    JobStatus,
    Provider,
    ProviderLimits,
    ProviderRequest,
    RequestOutcome,
    Usage,
)
from memo_pipeline.providers.classify import (
    ProviderCallError,
    answer_outcome,
    check_batch,
    console_url,
    conversation,
    failed_outcome,
    packaged_provider_settings,
    retry_after_note,
    retryable_error,
    setting,
    single_model,
    warn_if_uncacheable,
)
from memo_pipeline.providers.jsonl import batch_jsonl

log = logging.getLogger(__name__)

ANTHROPIC_VERSION = "bedrock-2023-05-31"
CACHE_TTLS = ("5m", "1h")
IN_PROGRESS = {"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"}
ENDED = {"Completed", "PartiallyCompleted", "Stopped", "Expired"}
S3_URI_RE = re.compile(r"^s3://([^/]+)/?(.*)$")
INPUT_FILE = "records.jsonl"
# A name clash or a bad parameter fails the same way on every retry.
NOT_RETRYABLE_CODES = {"ValidationException", "ConflictException", "AccessDeniedException"}


def job_name(job_key: str) -> str:
    """A valid job name (``[a-zA-Z0-9]`` then ``-+.``, at most 63) that is unique per job key."""
    readable = re.sub(r"[^a-zA-Z0-9]+", "-", job_key).strip("-")[:36]
    digest = hashlib.sha256(job_key.encode()).hexdigest()[:12]
    return f"memo-{readable}-{digest}" if readable else f"memo-{digest}"


def client_token(job_key: str) -> str:
    """The idempotency token of a job key (alphanumeric, as the API requires)."""
    return hashlib.sha256(job_key.encode()).hexdigest()


def _split_s3(uri: str) -> tuple[str, str]:
    match = S3_URI_RE.match(uri)
    if not match:
        raise ProviderCallError(f"bedrock: not an S3 URI: {uri}", retryable=False)
    return match.group(1), match.group(2)


class BedrockProvider(Provider):
    """Claude on Amazon Bedrock.

    Credentials come from the AWS credential chain only (environment, profile, role). Pass
    ``endpoint_url`` (and ``s3_endpoint_url``) to talk to the emulator and moto.
    """

    name = "bedrock"

    def __init__(
        self,
        *,
        limits: ProviderLimits,
        model: str,
        bucket: str,
        role_arn: str,
        s3_prefix: str = "memo-pipeline",
        cache_ttl: str = "1h",
        region: str | None = None,
        endpoint_url: str | None = None,
        runtime_endpoint_url: str | None = None,
        s3_endpoint_url: str | None = None,
        max_retries: int = 4,
        timeout: float = 120.0,
        job_timeout_hours: int = 24,
        console_url_template: str | None = None,
        session: boto3.Session | None = None,
    ) -> None:
        """Build the adapter and its boto3 clients (bedrock, bedrock-runtime, s3).

        Args:
            limits: batch limits (records, bytes, minimum records, minimum cacheable tokens).
            model: model or inference profile id, e.g. ``us.anthropic.claude-haiku-5-5-v1:0``.
            bucket: S3 bucket for job input and output.
            role_arn: the service role Bedrock assumes to read and write ``bucket``.
            s3_prefix: key prefix under which each job gets ``jobs/<job name>/``.
            cache_ttl: lifetime of the prompt-cache breakpoint, "5m" or "1h".
            region: AWS region; the credential chain's default region otherwise.
            endpoint_url: control-plane endpoint (the emulator's in tests).
            runtime_endpoint_url: bedrock-runtime endpoint; defaults to ``endpoint_url``.
            s3_endpoint_url: S3 endpoint (moto's in tests).
            max_retries: botocore retries (standard mode) per call.
            timeout: read timeout in seconds per call.
            job_timeout_hours: ``timeoutDurationInHours`` of each job (24 to 168).
            console_url_template: ``{job_id}`` link template; defaults to providers.yaml's.
            session: a boto3 session to build the clients from.
        """
        if cache_ttl not in CACHE_TTLS:
            raise ValueError(f"bedrock: cache ttl must be one of {CACHE_TTLS}, not {cache_ttl!r}")
        if not 24 <= job_timeout_hours <= 168:
            raise ValueError("bedrock: job_timeout_hours must be between 24 and 168")
        self.limits = limits
        self.model = model
        self.bucket = bucket
        self.role_arn = role_arn
        self.s3_prefix = s3_prefix.strip("/")
        self.cache_ttl = cache_ttl
        self.job_timeout_hours = job_timeout_hours
        self.console_url_template = console_url_template or packaged_provider_settings(
            "bedrock"
        ).get("console_url")
        session = session or boto3.Session(region_name=region)
        config = Config(
            retries={"max_attempts": max_retries + 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=timeout,
        )
        self._bedrock = session.client("bedrock", endpoint_url=endpoint_url, config=config)
        self._runtime = session.client(
            "bedrock-runtime", endpoint_url=runtime_endpoint_url or endpoint_url, config=config
        )
        self._s3 = session.client("s3", endpoint_url=s3_endpoint_url, config=config)

    @classmethod
    def from_config(
        cls,
        *,
        limits: ProviderLimits,
        model: str,
        config: dict[str, Any],
        staging_dir: Path | None = None,
    ) -> BedrockProvider:
        """Build from the provider's providers.yaml section (``staging_dir`` is not used).

        Keys read: ``bucket`` and ``role_arn`` (required), ``s3_prefix``, ``cache_ttl``,
        ``region``, ``endpoint_url``, ``runtime_endpoint_url``, ``s3_endpoint_url``,
        ``max_retries``, ``timeout_seconds``, ``job_timeout_hours``, ``console_url``.
        Credentials never come from configuration.
        """
        bucket, role_arn = setting(config, "bucket"), setting(config, "role_arn")
        if not bucket or not role_arn:
            raise ValueError(
                "bedrock: set 'bucket' and 'role_arn' under providers.bedrock in providers.yaml "
                "(the S3 bucket for job files and the role Bedrock assumes to read and write it)"
            )
        return cls(
            limits=limits,
            model=model,
            bucket=bucket,
            role_arn=role_arn,
            s3_prefix=setting(config, "s3_prefix", "memo-pipeline"),
            cache_ttl=setting(config, "cache_ttl", "1h"),
            region=setting(config, "region"),
            endpoint_url=setting(config, "endpoint_url"),
            runtime_endpoint_url=setting(config, "runtime_endpoint_url"),
            s3_endpoint_url=setting(config, "s3_endpoint_url"),
            max_retries=int(setting(config, "max_retries", 4)),
            timeout=float(setting(config, "timeout_seconds", 120.0)),
            job_timeout_hours=int(setting(config, "job_timeout_hours", 24)),
            console_url_template=setting(config, "console_url"),
        )

    def model_input(self, request: ProviderRequest) -> dict[str, Any]:
        """The Claude InvokeModel body of one record. Never holds ``modelId`` (G12)."""
        body: dict[str, Any] = {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": turn.role, "content": [{"type": "text", "text": turn.text}]}
                for turn in conversation(request)
            ],
        }
        if request.prompt.static_prefix:
            body["system"] = [
                {
                    "type": "text",
                    "text": request.prompt.static_prefix,
                    "cache_control": {"type": "ephemeral", "ttl": self.cache_ttl},
                }
            ]
        return body

    def record(self, request: ProviderRequest) -> dict[str, Any]:
        """One line of the job's input file."""
        return {"recordId": request.request_id, "modelInput": self.model_input(request)}

    def _jsonl(self, requests: Sequence[ProviderRequest]) -> bytes:
        return batch_jsonl(requests, self.record)

    def _job_prefix(self, name: str) -> str:
        return f"{self.s3_prefix}/jobs/{name}" if self.s3_prefix else f"jobs/{name}"

    def _handle(self, job: dict[str, Any], request_count: int, size: int) -> JobHandle:
        arn = job["jobArn"]
        return JobHandle(
            provider=self.name,
            job_id=arn,
            request_count=request_count,
            bytes=size,
            model=job.get("modelId", self.model),
            submitted_at=job["submitTime"],
            console_url=console_url(self.console_url_template, arn),
        )

    def submit_batch(self, job_key: str, requests: Sequence[ProviderRequest]) -> JobHandle:
        """Write the input JSONL to S3, then create the job (idempotent on the job key)."""
        model = single_model(self.name, self.model, requests)
        data = self._jsonl(requests)
        check_batch(self.name, self.limits, requests, len(data))
        warn_if_uncacheable(self.name, model, requests[0], self.limits.min_cacheable_tokens)
        name = job_name(job_key)
        prefix = self._job_prefix(name)
        try:
            self._s3.put_object(Bucket=self.bucket, Key=f"{prefix}/input/{INPUT_FILE}", Body=data)
            created = self._bedrock.create_model_invocation_job(
                jobName=name,
                roleArn=self.role_arn,
                modelId=model,
                clientRequestToken=client_token(job_key),
                timeoutDurationInHours=self.job_timeout_hours,
                modelInvocationType="InvokeModel",
                inputDataConfig={
                    "s3InputDataConfig": {
                        "s3Uri": f"s3://{self.bucket}/{prefix}/input/",
                        "s3InputFormat": "JSONL",
                    }
                },
                outputDataConfig={
                    "s3OutputDataConfig": {"s3Uri": f"s3://{self.bucket}/{prefix}/output/"}
                },
            )
            job = self._get(created["jobArn"])
        except ClientError as exc:
            raise _call_error("create job", exc) from exc
        except BotoCoreError as exc:
            raise ProviderCallError(f"bedrock: create job failed: {exc}", retryable=True) from exc
        log.info(
            "bedrock: submitted job %s (%s, %d records)", job["jobArn"], job_key, len(requests)
        )
        return self._handle(job, len(requests), len(data))

    def find_job(
        self,
        job_key: str,
        requests: Sequence[ProviderRequest],
        *,
        exclude_job_ids: Collection[str] = (),
    ) -> JobHandle | None:
        """The job named after this job key, if one was created (read-only: creates nothing)."""
        name = job_name(job_key)
        try:
            pages = self._bedrock.get_paginator("list_model_invocation_jobs").paginate(
                nameContains=name
            )
            for page in pages:
                for summary in page.get("invocationJobSummaries", []):
                    if summary.get("jobName") == name:
                        return self._handle(summary, len(requests), len(self._jsonl(requests)))
        except ClientError as exc:
            raise _call_error("list jobs", exc) from exc
        return None

    def _get(self, job_id: str) -> dict[str, Any]:
        # boto3 URL-encodes the ARN (it contains '/') into the path itself.
        return self._bedrock.get_model_invocation_job(jobIdentifier=job_id)

    def poll(self, job_id: str) -> JobStatus:
        try:
            job = self._get(job_id)
        except ClientError as exc:
            raise _call_error(f"get job {job_id}", exc) from exc
        status = job["status"]
        counts = {
            key: int(job[field])
            for key, field in (
                ("total", "totalRecordCount"),
                ("processed", "processedRecordCount"),
                ("succeeded", "successRecordCount"),
                ("errored", "errorRecordCount"),
            )
            if field in job
        }
        if status in IN_PROGRESS:
            state = JobState.IN_PROGRESS
        elif status in ENDED:
            state = JobState.ENDED
        else:
            state = JobState.FAILED
        return JobStatus(state, status, counts, job.get("message"))

    def results(self, job_id: str) -> Iterator[RequestOutcome]:
        """Outcomes from every ``*.jsonl.out``; input records with no output line are retryable."""
        try:
            job = self._get(job_id)
        except ClientError as exc:
            raise _call_error(f"get job {job_id}", exc) from exc
        status = job["status"]
        if status in IN_PROGRESS:
            raise ProviderCallError(f"bedrock: job {job_id} is still {status}", retryable=True)
        input_ids = self._input_ids(job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"])
        if status == "Failed":
            # The job failed validation (e.g. below the minimum record count): nothing ran.
            reason = job.get("message") or "job failed"
            for record_id in input_ids:
                yield failed_outcome(record_id, f"job failed: {reason}", retryable=True)
            return

        seen: set[str] = set()
        for line in self._output_lines(job):
            outcome = self._line_outcome(line)
            if outcome.request_id not in seen:
                seen.add(outcome.request_id)
                yield outcome
        for record_id in input_ids:
            if record_id not in seen:
                seen.add(record_id)
                yield failed_outcome(
                    record_id, f"no output for this record (job {status})", retryable=True
                )

    def _input_ids(self, input_uri: str) -> list[str]:
        bucket, prefix = _split_s3(input_uri)
        keys = [prefix] if prefix.endswith(".jsonl") else self._keys(bucket, prefix, ".jsonl")
        ids: list[str] = []
        for key in keys:
            for raw in self._read_lines(bucket, key):
                ids.append(str(orjson.loads(raw).get("recordId")))
        return ids

    def _output_lines(self, job: dict[str, Any]) -> Iterator[dict[str, Any]]:
        bucket, prefix = _split_s3(job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"])
        job_id = job["jobArn"].rsplit("/", 1)[-1]
        base = f"{prefix.rstrip('/')}/{job_id}/" if prefix.strip("/") else f"{job_id}/"
        manifest_key = f"{base}manifest.json.out"
        try:
            manifest = orjson.loads(
                self._s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
            )
            log.info("bedrock: job %s manifest %s", job_id, manifest)
        except ClientError:
            log.warning("bedrock: job %s has no %s", job_id, manifest_key)
        for key in self._keys(bucket, base, ".jsonl.out"):
            for raw in self._read_lines(bucket, key):
                yield orjson.loads(raw)

    def _keys(self, bucket: str, prefix: str, suffix: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            ):
                keys.extend(o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(suffix))
        except ClientError as exc:
            raise _call_error(f"list s3://{bucket}/{prefix}", exc) from exc
        return sorted(keys)

    def _read_lines(self, bucket: str, key: str) -> Iterator[bytes]:
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            raise _call_error(f"read s3://{bucket}/{key}", exc) from exc
        for raw in body.iter_lines():
            if raw.strip():
                yield raw

    def _line_outcome(self, line: dict[str, Any]) -> RequestOutcome:
        record_id = str(line.get("recordId"))
        error = line.get("error")
        if error:
            code = error.get("errorCode")
            status = int(code) if isinstance(code, int) or str(code).isdigit() else None
            return failed_outcome(
                record_id,
                f"record error {code}: {error.get('errorMessage', '')}",
                retryable=retryable_error(str(code), status),
            )
        output = line.get("modelOutput") or {}
        text = "".join(
            block.get("text", "")
            for block in output.get("content", [])
            if block.get("type") == "text"
        )
        usage = _invoke_usage(output.get("usage") or {}, self.cache_ttl)
        return answer_outcome(record_id, text, output.get("stop_reason"), usage)

    def cancel(self, job_id: str) -> None:
        """Stop a job; stopping one that already ended is not an error."""
        try:
            self._bedrock.stop_model_invocation_job(jobIdentifier=job_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ValidationException":
                log.info("bedrock: job %s not stopped: %s", job_id, exc)
                return
            raise _call_error(f"stop job {job_id}", exc) from exc

    def call_sync(self, request: ProviderRequest) -> RequestOutcome:
        """One Converse call with a ``cachePoint`` after the static prefix."""
        system: list[dict[str, Any]] = []
        if request.prompt.static_prefix:
            system = [
                {"text": request.prompt.static_prefix},
                {"cachePoint": {"type": "default", "ttl": self.cache_ttl}},
            ]
        try:
            response = self._runtime.converse(
                modelId=request.model or self.model,
                system=system,
                messages=[
                    {"role": turn.role, "content": [{"text": turn.text}]}
                    for turn in conversation(request)
                ],
                inferenceConfig={"maxTokens": request.max_tokens},
                requestMetadata={"memo_request_id": request.request_id},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = exc.response.get("Error", {}).get("Message", "")
            return failed_outcome(
                request.request_id,
                f"HTTP {status} {code}: {message[:500]}"
                + retry_after_note(exc.response.get("ResponseMetadata", {}).get("HTTPHeaders")),
                retryable=retryable_error(code, status),
            )
        except BotoCoreError as exc:
            return failed_outcome(
                request.request_id, f"call failed: {type(exc).__name__}", retryable=True
            )
        content = response.get("output", {}).get("message", {}).get("content", [])
        text = "".join(block.get("text", "") for block in content)
        usage = _converse_usage(response.get("usage") or {}, self.cache_ttl)
        return answer_outcome(request.request_id, text, response.get("stopReason"), usage)


def _split_writes(written: int, details: Any, requested_ttl: str) -> tuple[int, int]:
    """(5m, 1h) cache writes; without a TTL breakdown they count under the requested TTL."""
    if isinstance(details, list) and details:
        short = sum(d.get("inputTokens", 0) for d in details if d.get("ttl") == "5m")
        long = sum(d.get("inputTokens", 0) for d in details if d.get("ttl") == "1h")
        return short, long
    if isinstance(details, dict):
        return (
            int(details.get("ephemeral_5m_input_tokens", 0)),
            int(details.get("ephemeral_1h_input_tokens", 0)),
        )
    return (0, written) if requested_ttl == "1h" else (written, 0)


def _invoke_usage(usage: dict[str, Any], requested_ttl: str) -> Usage:
    """Usage of a Claude InvokeModel body (Anthropic field names)."""
    written = int(usage.get("cache_creation_input_tokens") or 0)
    write_5m, write_1h = _split_writes(written, usage.get("cache_creation"), requested_ttl)
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0),
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=int(usage.get("cache_read_input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        service_tier="batch",
    )


def _converse_usage(usage: dict[str, Any], requested_ttl: str) -> Usage:
    """Usage of a Converse response: ``inputTokens`` already excludes cache reads and writes."""
    written = int(usage.get("cacheWriteInputTokens") or 0)
    write_5m, write_1h = _split_writes(written, usage.get("cacheDetails"), requested_ttl)
    return Usage(
        input_tokens=int(usage.get("inputTokens") or 0),
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=int(usage.get("cacheReadInputTokens") or 0),
        output_tokens=int(usage.get("outputTokens") or 0),
        service_tier="standard",
    )


def _call_error(call: str, exc: ClientError) -> ProviderCallError:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = error.get("Code")
    return ProviderCallError(
        f"bedrock: {call} failed: {code}: {error.get('Message', '')[:500]}",
        retryable=retryable_error(code, status) and code not in NOT_RETRYABLE_CODES,
        status=status,
    )
