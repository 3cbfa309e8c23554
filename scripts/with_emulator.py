"""Run a command against the provider emulator: ``python scripts/with_emulator.py -- CMD ...``.

Starts ``python -m memo_pipeline_emulator`` (and moto's S3 server) on free loopback ports, creates
the Bedrock staging bucket, writes a providers file pointing every provider at the emulator,
runs the command with dummy credentials in its environment, and stops the emulator afterwards,
whatever the command's outcome. The product never imports the emulator: only this script and the
tests start it. The emulator's usage figures model the providers' documented behaviour; they are
not measurements of the real services.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import yaml

BUCKET = "memo-pipeline-emulator"
ROLE_ARN = "arn:aws:iam::000000000000:role/memo-pipeline-batch"
DUMMY_ENV = {
    "ANTHROPIC_API_KEY": "emulator-anthropic-key",
    "OPENAI_API_KEY": "emulator-openai-key",
    "AWS_ACCESS_KEY_ID": "emulator",
    "AWS_SECRET_ACCESS_KEY": "emulator",
    "AWS_DEFAULT_REGION": "us-east-1",
}
CLEARED_ENV = ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN",
               "AWS_ENDPOINT_URL")  # fmt: skip


def providers_file(urls: dict[str, str], folder: Path) -> Path:
    config = {
        "providers": {
            "anthropic": {"base_url": urls["anthropic_base_url"]},
            "openai": {"base_url": urls["openai_base_url"]},
            "bedrock": {
                "endpoint_url": urls["bedrock_endpoint_url"],
                "runtime_endpoint_url": urls["bedrock_endpoint_url"],
                "s3_endpoint_url": urls["s3_url"],
                "bucket": BUCKET,
                "role_arn": ROLE_ARN,
                "region": "us-east-1",
            },
        }
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "emulator-providers.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=True))
    return path


def main(argv: list[str]) -> int:
    if "--" not in argv:
        sys.stderr.write(__doc__ or "")
        return 2
    command = argv[argv.index("--") + 1 :]
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(DUMMY_ENV)
    emulator = subprocess.Popen(
        [sys.executable, "-m", "memo_pipeline_emulator", "--port", "0", "--moto-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = emulator.stdout.readline() if emulator.stdout else ""
        if not line:
            sys.stderr.write("the provider emulator did not start\n")
            return 1
        urls = json.loads(line)
        sys.stderr.write(f"provider emulator at {urls['url']}, S3 (moto) at {urls['s3_url']}\n")
        s3 = boto3.client(
            "s3",
            endpoint_url=urls["s3_url"],
            region_name="us-east-1",
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator",
        )
        s3.create_bucket(Bucket=BUCKET)
        home = Path(env.get("MEMO_HOME") or Path.cwd() / ".memo")
        env["MEMO_PROVIDERS_FILE"] = str(providers_file(urls, home))
        return subprocess.call(command, env=env)
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            emulator.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
