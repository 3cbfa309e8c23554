"""Pytest fixtures for the provider tests: the emulator and moto S3, once per test module.

The emulator and a moto S3 server run on free loopback ports with dummy credentials in the
environment (the adapters read credentials from there, as they would real ones); ``emu`` hands
each test a freshly reset emulator. Load with
``pytest_plugins = ["memo_pipeline_tests.conftest_emulator"]`` or import both fixtures into a
conftest.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from memo_pipeline_emulator import EmulatorHandle, start_emulator
from memo_pipeline_tests.emulator_fixtures import BUCKET, EmulatorAdmin

DUMMY_ENV = {
    "ANTHROPIC_API_KEY": "test-anthropic-key",
    "OPENAI_API_KEY": "test-openai-key",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables that would send the SDKs elsewhere than the emulator.
CLEARED_ENV = (
    "ANTHROPIC_BASE_URL",
    "OPENAI_BASE_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    """The emulator and a moto S3 server on free loopback ports, with dummy credentials."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in DUMMY_ENV.items():
            env.setenv(name, value)
        for name in CLEARED_ENV:
            env.delenv(name, raising=False)
        handle = start_emulator()
        try:
            s3 = boto3.client("s3", endpoint_url=handle.s3_url, region_name="us-east-1")
            s3.create_bucket(Bucket=BUCKET)
            yield handle
        finally:
            handle.stop()


@pytest.fixture
def emu(emulator: EmulatorHandle) -> Iterator[EmulatorAdmin]:
    """The admin client of a freshly reset emulator."""
    admin = EmulatorAdmin(emulator)
    admin.reset()
    try:
        yield admin
    finally:
        admin.close()
