"""A loopback emulator of the Anthropic, OpenAI and Bedrock batch APIs, for tests and demos.

It is a separate program beside the product: ``memo_pipeline`` never imports it. It speaks the
HTTP the real SDKs speak, answers with the offline extractor, models prompt caching from the
providers' documentation (see ``caching``), and injects faults on demand (see ``faults``).

Start it from code with ``start_emulator()`` or from a shell with
``python -m memo_pipeline_emulator --port 0 --moto-port 0``.
"""

from memo_pipeline_emulator.faults import FaultRule
from memo_pipeline_emulator.server import (
    EmulatorConfig,
    EmulatorHandle,
    EmulatorState,
    build_app,
    start_emulator,
)

__all__ = [
    "EmulatorConfig",
    "EmulatorHandle",
    "EmulatorState",
    "FaultRule",
    "build_app",
    "start_emulator",
]
