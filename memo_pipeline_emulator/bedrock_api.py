"""Emulated Amazon Bedrock batch inference control plane and the Converse runtime call.

Model invocation jobs read their JSONL input from S3 (moto's server mode) and write
``<outputUri>/<jobId>/<input file>.out`` plus ``manifest.json.out`` back to it, as the service
does. Documented rules enforced: idempotent create on ``clientRequestToken``; a job with fewer
records than the per-model minimum fails validation (G11); a ``modelId`` (or any other unknown
key) inside ``modelInput`` fails that record with "Extra inputs are not permitted" (G12); job
ARNs are accepted URL-encoded in the path. Output order is shuffled (not guaranteed by the
service either). Only ``modelInvocationType="InvokeModel"`` with a Claude Messages body is
emulated.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from memo_pipeline_emulator.anthropic_api import run_messages_request, validate_params
from memo_pipeline_emulator.caching import Breakpoint, CacheUse, estimate_tokens
from memo_pipeline_emulator.common import (
    iso,
    json_body,
    json_response,
    make_answer,
    progress_done,
    result_order,
)
from memo_pipeline_emulator.faults import FaultRule

if TYPE_CHECKING:
    from memo_pipeline_emulator.server import EmulatorState

JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}$")
TOKEN_RE = re.compile(r"^[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}$")
ROLE_RE = re.compile(r"^arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+$")
S3_URI_RE = re.compile(r"^s3://([a-z0-9][-.a-z0-9]{1,61}[a-z0-9])(/.*)?$")
CLAUDE_BODY_KEYS = {
    "anthropic_version",
    "anthropic_beta",
    "max_tokens",
    "system",
    "messages",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "output_config",
}
ITEM_FAULTS = ("expired", "error", "max_tokens", "invalid_json", "refusal")
SYNC_FAULTS = ("error", "max_tokens", "invalid_json", "refusal")
TERMINAL = {"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"}
ERROR_NAMES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    409: "ConflictException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
STOP_REASONS = {"end": "end_turn", "max_tokens": "max_tokens", "refusal": "content_filtered"}


def aws_error(status: int, message: str, name: str | None = None) -> Response:
    name = name or ERROR_NAMES.get(status, "InternalServerException")
    return json_response({"message": message}, status, {"x-amzn-ErrorType": name})


def _fault_status(fault: FaultRule) -> int:
    status = fault.status or 500
    return 503 if status == 529 else status


def _job_id(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    alphabet = string.ascii_lowercase + string.digits
    return "".join(alphabet[b % len(alphabet)] for b in digest[:12])


def _split_s3(uri: str) -> tuple[str, str]:
    match = S3_URI_RE.match(uri)
    if not match:
        raise ValueError(f"not an S3 URI: {uri}")
    return match.group(1), (match.group(2) or "/").lstrip("/")


@dataclass
class InputRecord:
    file: str  # path relative to the input location, e.g. "records.jsonl"
    record_id: str
    model_input: Any


@dataclass
class BedrockJob:
    id: str
    seq: int
    arn: str
    name: str
    token: str | None
    model_id: str
    role_arn: str
    input_config: dict[str, Any]
    output_config: dict[str, Any]
    timeout_hours: int
    invocation_type: str
    created_at: float
    end_at: float
    status: str = "Submitted"
    message: str | None = None
    last_modified: float = 0.0
    end_time: float | None = None
    stop_requested_at: float | None = None
    records: list[InputRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def deadline(self) -> float:
        return self.created_at + self.timeout_hours * 3600.0

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "modelId": self.model_id,
            "roleArn": self.role_arn,
            "status": self.status,
            "submitTime": iso(self.created_at),
            "lastModifiedTime": iso(self.last_modified or self.created_at),
            "inputDataConfig": self.input_config,
            "outputDataConfig": self.output_config,
            "timeoutDurationInHours": self.timeout_hours,
            "jobExpirationTime": iso(self.deadline),
            "modelInvocationType": self.invocation_type,
        }
        if self.token:
            data["clientRequestToken"] = self.token
        if self.message:
            data["message"] = self.message
        if self.end_time is not None:
            data["endTime"] = iso(self.end_time)
        data.update(self.counts)
        return data


class BedrockStore:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.jobs: dict[str, BedrockJob] = {}
        self.tokens: dict[str, str] = {}
        self._seq = 0
        self._s3_client: Any = None

    def reset(self) -> None:
        self.jobs.clear()
        self.tokens.clear()

    def s3(self) -> Any:
        if self._s3_client is None:
            self._s3_client = boto3.client(
                "s3",
                endpoint_url=self.state.config.s3_endpoint_url,
                region_name=self.state.config.region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(retries={"max_attempts": 2, "mode": "standard"}),
            )
        return self._s3_client

    def arn(self, job_id: str) -> str:
        config = self.state.config
        return f"arn:aws:bedrock:{config.region}:{config.account_id}:model-invocation-job/{job_id}"

    def find(self, identifier: str) -> BedrockJob | None:
        return self.jobs.get(unquote(identifier).rsplit("/", 1)[-1])

    def tick(self, now: float) -> None:
        for job in sorted(self.jobs.values(), key=lambda j: j.seq):
            if job.status == "Submitted":
                self._validate(job, now)
            if job.status == "Stopping":
                self._finish(job, now, stop_at=job.stop_requested_at or now, final="Stopped")
            elif job.status == "InProgress":
                if job.end_at > job.deadline and now >= job.deadline:
                    self._finish(job, now, stop_at=job.deadline, final="PartiallyCompleted")
                elif now >= job.end_at:
                    self._finish(job, now)

    def _validate(self, job: BedrockJob, now: float) -> None:
        job.last_modified = now
        try:
            job.records = self._read_input(job)
        except (ValueError, ClientError, BotoCoreError) as exc:
            self._fail(job, now, f"Unable to read the input data: {exc}")
            return
        minimum = self.state.config.bedrock_min_records
        maximum = self.state.config.bedrock_max_records
        count = len(job.records)
        if count < minimum:
            self._fail(
                job,
                now,
                f"Batch job input has {count} records, fewer than the minimum of {minimum} "
                f"records per batch inference job for model {job.model_id}.",
            )
            return
        if count > maximum:
            self._fail(
                job,
                now,
                f"Batch job input has {count} records, more than the maximum of {maximum}.",
            )
            return
        job.counts = {
            "totalRecordCount": count,
            "processedRecordCount": 0,
            "successRecordCount": 0,
            "errorRecordCount": 0,
        }
        job.status = "InProgress"

    def _fail(self, job: BedrockJob, now: float, message: str) -> None:
        job.status = "Failed"
        job.message = message[:2048]
        job.end_time = now

    def _read_input(self, job: BedrockJob) -> list[InputRecord]:
        bucket, key = _split_s3(job.input_config["s3InputDataConfig"]["s3Uri"])
        s3 = self.s3()
        if key.endswith(".jsonl"):
            keys, base = [key], key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        else:
            base = key if key.endswith("/") or not key else key + "/"
            keys = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
                keys.extend(
                    o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".jsonl")
                )
        if not keys:
            raise ValueError("no .jsonl files at the input location")
        records: list[InputRecord] = []
        for object_key in sorted(keys):
            data = s3.get_object(Bucket=bucket, Key=object_key)["Body"].read()
            relative = object_key[len(base) :]
            for number, raw in enumerate(data.split(b"\n"), start=1):
                if not raw.strip():
                    continue
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{relative} line {number} is not valid JSON") from exc
                if not isinstance(line, dict) or "modelInput" not in line:
                    raise ValueError(f"{relative} line {number} has no modelInput")
                record_id = str(
                    line.get("recordId") or _job_id(f"{object_key}:{number}")[:11].upper()
                )
                records.append(InputRecord(relative, record_id, line["modelInput"]))
        return records

    def _finish(
        self, job: BedrockJob, now: float, *, stop_at: float | None = None, final: str | None = None
    ) -> None:
        caching = self.state.config.bedrock_batch_caching
        deferred: list[CacheUse] = []
        outputs: dict[str, list[dict[str, Any]]] = {}
        success = errors = input_tokens = output_tokens = 0
        missing = False
        for record in job.records:
            if stop_at is not None and not progress_done(
                record.record_id, job.created_at, job.end_at, stop_at
            ):
                missing = True
                continue
            fault = self.state.faults.find("bedrock", "batch", record.record_id, ITEM_FAULTS)
            if fault is not None and fault.kind == "expired":
                missing = True
                continue
            line = self._run_record(job, record, fault, deferred if caching else None)
            outputs.setdefault(record.file, []).append(line)
            if "error" in line:
                errors += 1
            else:
                success += 1
                usage = line["modelOutput"]["usage"]
                input_tokens += (
                    usage["input_tokens"]
                    + usage["cache_creation_input_tokens"]
                    + usage["cache_read_input_tokens"]
                )
                output_tokens += usage["output_tokens"]
        self.state.cache.commit(deferred)

        processed = success + errors
        manifest = {
            "totalRecordCount": len(job.records),
            "processedRecordCount": processed,
            "successRecordCount": success,
            "errorRecordCount": errors,
            "inputTokenCount": input_tokens,
            "outputTokenCount": output_tokens,
        }
        try:
            self._write_output(job, outputs, manifest)
        except (ValueError, ClientError, BotoCoreError) as exc:
            self._fail(job, now, f"Unable to write the output data: {exc}")
            return
        job.counts = {k: v for k, v in manifest.items() if k.endswith("RecordCount")}
        if final is not None:
            job.status = final if processed or final == "Stopped" else "Expired"
        else:
            job.status = "PartiallyCompleted" if missing else "Completed"
        job.end_time = now
        job.last_modified = now

    def _run_record(
        self,
        job: BedrockJob,
        record: InputRecord,
        fault: FaultRule | None,
        deferred: list[CacheUse] | None,
    ) -> dict[str, Any]:
        line: dict[str, Any] = {"recordId": record.record_id, "modelInput": record.model_input}
        if fault is not None and fault.kind == "error":
            status = _fault_status(fault)
            line["error"] = {
                "errorCode": status,
                "errorMessage": fault.message or f"emulated error {status}",
            }
            return line
        problem = self._body_problem(record.model_input, job.model_id)
        if problem is not None:
            line["error"] = {"errorCode": 400, "errorMessage": problem}
            return line
        params = {**record.model_input, "model": job.model_id}
        if deferred is None:
            params = _without_cache_control(params)
            deferred = []
        message = run_messages_request(
            self.state, params, fault, namespace="bedrock-batch", tier=None, deferred=deferred
        )
        message["model"] = job.model_id
        line["modelOutput"] = message
        return line

    @staticmethod
    def _body_problem(model_input: Any, model_id: str) -> str | None:
        if not isinstance(model_input, dict):
            return "Malformed input request: modelInput must be a JSON object"
        extra = sorted(set(model_input) - CLAUDE_BODY_KEYS)
        if extra:
            return (
                f"Malformed input request: #: extraneous key [{extra[0]}] is not permitted, "
                "please reformat your input and try again. Extra inputs are not permitted"
            )
        if model_input.get("anthropic_version") != "bedrock-2023-05-31":
            return "Malformed input request: #/anthropic_version: expected bedrock-2023-05-31"
        return validate_params({**model_input, "model": model_id}, in_batch=True)

    def _write_output(
        self, job: BedrockJob, outputs: dict[str, list[dict[str, Any]]], manifest: dict[str, int]
    ) -> None:
        bucket, key = _split_s3(job.output_config["s3OutputDataConfig"]["s3Uri"])
        base = (key if key.endswith("/") or not key else key + "/") + job.id + "/"
        s3 = self.s3()
        for relative, lines in outputs.items():
            order = result_order([line["recordId"] for line in lines], job.id)
            body = b"".join(orjson.dumps(lines[i]) + b"\n" for i in order)
            s3.put_object(Bucket=bucket, Key=f"{base}{relative}.out", Body=body)
        s3.put_object(Bucket=bucket, Key=f"{base}manifest.json.out", Body=orjson.dumps(manifest))

    def create(
        self, body: dict[str, Any], delay: float
    ) -> tuple[BedrockJob | None, Response | None]:
        token = body.get("clientRequestToken")
        if token is not None and token in self.tokens:
            existing = self.jobs.get(self.tokens[token])
            if existing is not None:
                if existing.name != body.get("jobName"):
                    return None, aws_error(
                        409, "The clientRequestToken was already used for a different job."
                    )
                return existing, None
        problem = _create_problem(body)
        if problem is not None:
            return None, aws_error(400, problem)
        if any(j.name == body["jobName"] for j in self.jobs.values()):
            return None, aws_error(
                409, f"A model invocation job named {body['jobName']} already exists."
            )
        now = self.state.clock.now()
        self._seq += 1
        job_id = _job_id(f"{token or ''}:{body['jobName']}:{now}:{self._seq}")
        job = BedrockJob(
            id=job_id,
            seq=self._seq,
            arn=self.arn(job_id),
            name=body["jobName"],
            token=token,
            model_id=body["modelId"],
            role_arn=body["roleArn"],
            input_config=body["inputDataConfig"],
            output_config=body["outputDataConfig"],
            timeout_hours=int(body.get("timeoutDurationInHours") or 24),
            invocation_type=body.get("modelInvocationType") or "InvokeModel",
            created_at=now,
            end_at=now + delay,
            last_modified=now,
        )
        self.jobs[job.id] = job
        if token:
            self.tokens[token] = job.id
        return job, None


def _without_cache_control(params: dict[str, Any]) -> dict[str, Any]:
    """A copy with every ``cache_control`` removed: batch caching switched off in the config."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "cache_control"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(params)


def _create_problem(body: dict[str, Any]) -> str | None:
    for key in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"):
        if not body.get(key):
            return f"1 validation error detected: Value null at '{key}' failed to satisfy constraint: Member must not be null"
    if len(body["jobName"]) > 63 or not JOB_NAME_RE.match(body["jobName"]):
        return "1 validation error detected: Value at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern"
    token = body.get("clientRequestToken")
    if token is not None and not TOKEN_RE.match(token):
        return "1 validation error detected: Value at 'clientRequestToken' failed to satisfy constraint: Member must satisfy regular expression pattern"
    if not ROLE_RE.match(body["roleArn"]):
        return "1 validation error detected: Value at 'roleArn' failed to satisfy constraint: Member must satisfy regular expression pattern"
    timeout = body.get("timeoutDurationInHours")
    if timeout is not None and not 24 <= int(timeout) <= 168:
        return "1 validation error detected: Value at 'timeoutDurationInHours' failed to satisfy constraint: Member must have value between 24 and 168"
    invocation = body.get("modelInvocationType", "InvokeModel")
    if invocation != "InvokeModel":
        return f"The emulator supports modelInvocationType InvokeModel only, not {invocation}"
    try:
        _split_s3(body["inputDataConfig"]["s3InputDataConfig"]["s3Uri"])
        _split_s3(body["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"])
    except (KeyError, TypeError, ValueError):
        return "Invalid S3 URI in inputDataConfig or outputDataConfig"
    return None


def converse_prompt(body: dict[str, Any]) -> tuple[str, str, Breakpoint | None]:
    """(text for the extractor, all prompt text, breakpoint at the last ``cachePoint``)."""
    blocks: list[tuple[str, dict[str, Any] | None, str]] = []
    for block in body.get("system") or []:
        if "cachePoint" in block:
            blocks.append(("", block["cachePoint"], "system"))
        else:
            blocks.append((block.get("text", ""), None, "system"))
    for message in body.get("messages") or []:
        for block in message.get("content") or []:
            point = block.get("cachePoint")
            blocks.append((block.get("text", ""), point, message.get("role", "user")))
    extractor_text = "".join(t for t, _, role in blocks if role in ("system", "user"))
    all_text = "".join(t for t, _, _ in blocks)
    marked = [i for i, (_, point, _) in enumerate(blocks) if point is not None]
    if not marked:
        return extractor_text, all_text, None
    last = marked[-1]
    salt = orjson.dumps(
        {
            "model": body.get("modelId"),
            "toolConfig": body.get("toolConfig"),
            "outputConfig": body.get("outputConfig"),
        },
        option=orjson.OPT_SORT_KEYS,
    ).decode()
    prefix = "".join(t for t, _, _ in blocks[: last + 1])
    return extractor_text, all_text, Breakpoint(prefix, blocks[last][1].get("ttl", "5m"), salt)


def _converse_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "A conversation must start with a user message."
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return "Each message needs a role of user or assistant."
        if not isinstance(message.get("content"), list) or not message["content"]:
            return "Each message needs at least one content block."
    system = body.get("system")
    if system is not None and not isinstance(system, list):
        return "system must be a list of content blocks"
    points = sum(1 for b in system or [] if "cachePoint" in b) + sum(
        1 for m in messages for b in m["content"] if isinstance(b, dict) and "cachePoint" in b
    )
    if points > 4:
        return "A request may contain at most 4 cache points."
    return None


def routes(state: EmulatorState) -> list[Route]:
    store = state.bedrock
    config = state.config

    async def create_job(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            return aws_error(400, "The request body must be a JSON object")
        delay = float(request.headers.get("x-emulator-batch-delay", config.batch_delay_seconds))
        with state.lock:
            state.tick()
            fault = state.faults.find_any(
                "bedrock", "create", [str(body.get("jobName", ""))], ["error"]
            )
            if fault is not None:
                return aws_error(_fault_status(fault), fault.message or "emulated error")
            stuck = state.faults.find_any(
                "bedrock", "batch", [str(body.get("jobName", ""))], ["stuck"]
            )
            known = body.get("clientRequestToken") in store.tokens
            job, error = store.create(body, delay + ((stuck.seconds or 0.0) if stuck else 0.0))
            if error is not None:
                return error
            assert job is not None
            if not known:
                state.count("batches_created", "bedrock")
            return json_response({"jobArn": job.arn})

    async def get_job(request: Request) -> Response:
        with state.lock:
            state.tick()
            job = store.find(request.path_params["job"])
            if job is None:
                return aws_error(404, "The specified model invocation job was not found.")
            return json_response(job.summary())

    async def stop_job(request: Request) -> Response:
        with state.lock:
            state.tick()
            job = store.find(request.path_params["job"])
            if job is None:
                return aws_error(404, "The specified model invocation job was not found.")
            if job.status in TERMINAL or job.status == "Stopping":
                return aws_error(400, f"The job is in status {job.status} and cannot be stopped.")
            job.status = "Stopping"
            job.stop_requested_at = state.clock.now()
            job.last_modified = job.stop_requested_at
            return json_response({})

    async def list_jobs(request: Request) -> Response:
        query = request.query_params
        try:
            limit = int(query.get("maxResults", 1000))
            start = int(query.get("nextToken", 0))
        except ValueError:
            return aws_error(400, "Invalid maxResults or nextToken")
        with state.lock:
            state.tick()
            jobs = sorted(
                store.jobs.values(),
                key=lambda j: j.seq,
                reverse=query.get("sortOrder") != "Ascending",
            )
            if query.get("nameContains"):
                jobs = [j for j in jobs if query["nameContains"] in j.name]
            if query.get("statusEquals"):
                jobs = [j for j in jobs if j.status == query["statusEquals"]]
            page = jobs[start : start + limit]
            data: dict[str, Any] = {"invocationJobSummaries": [j.summary() for j in page]}
            if start + limit < len(jobs):
                data["nextToken"] = str(start + limit)
        return json_response(data)

    async def converse(request: Request) -> Response:
        model_id = unquote(request.path_params["model_id"])
        body = await json_body(request)
        with state.lock:
            state.tick()
            state.count("sync_calls", "bedrock")
            metadata = (body or {}).get("requestMetadata") or {} if isinstance(body, dict) else {}
            request_id = metadata.get("memo_request_id") or request.headers.get("x-memo-request-id")
            fault = state.faults.find("bedrock", "sync", request_id, SYNC_FAULTS)
            if fault is not None and fault.kind == "error":
                return aws_error(_fault_status(fault), fault.message or "emulated error")
            problem = _converse_problem(body)
            if problem is not None:
                return aws_error(400, problem)
            body["modelId"] = model_id
            extractor_text, all_text, breakpoint_ = converse_prompt(body)
            total = estimate_tokens(all_text)
            use = state.cache.use("bedrock-sync", breakpoint_, total, state.min_cacheable(model_id))
            max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens") or 4096
            answer = make_answer(extractor_text, max_tokens, fault)
        usage: dict[str, Any] = {
            # Converse reports inputTokens without the cached part.
            "inputTokens": use.uncached_tokens,
            "outputTokens": answer.output_tokens,
            "totalTokens": use.uncached_tokens
            + use.read_tokens
            + use.write_tokens
            + answer.output_tokens,
            "cacheReadInputTokens": use.read_tokens,
            "cacheWriteInputTokens": use.write_tokens,
        }
        if use.write_tokens:
            usage["cacheDetails"] = [{"ttl": use.write_ttl, "inputTokens": use.write_tokens}]
        return json_response(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": answer.text}]}},
                "stopReason": STOP_REASONS[answer.stop],
                "usage": usage,
                "metrics": {"latencyMs": 1},
            }
        )

    return [
        Route("/model-invocation-job", create_job, methods=["POST"]),
        Route("/model-invocation-jobs", list_jobs, methods=["GET"]),
        Route("/model-invocation-job/{job:path}/stop", stop_job, methods=["POST"]),
        Route("/model-invocation-job/{job:path}", get_job, methods=["GET"]),
        Route("/model/{model_id:path}/converse", converse, methods=["POST"]),
    ]
