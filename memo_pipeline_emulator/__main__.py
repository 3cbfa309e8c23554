"""``python -m memo_pipeline_emulator``: serve the emulator until interrupted.

Prints one JSON line with the base URLs on stdout once both servers listen, e.g.
``{"url": "http://127.0.0.1:51234", "s3_url": "http://127.0.0.1:51235", ...}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from memo_pipeline_emulator.server import EmulatorConfig, start_emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memo_pipeline_emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="emulator port (0: pick a free one)")
    parser.add_argument(
        "--moto-port", type=int, default=0, help="moto S3 port (0: pick a free one; -1: none)"
    )
    parser.add_argument(
        "--s3-endpoint-url", default=None, help="an S3 endpoint to use instead of moto"
    )
    parser.add_argument("--batch-delay", type=float, default=0.0, help="seconds before batches end")
    parser.add_argument(
        "--bedrock-min-records", type=int, default=100, help="minimum records per Bedrock job"
    )
    args = parser.parse_args(argv)

    config = EmulatorConfig(
        batch_delay_seconds=args.batch_delay, bedrock_min_records=args.bedrock_min_records
    )
    handle = start_emulator(
        args.port,
        moto_port=None if args.moto_port < 0 else args.moto_port,
        s3_endpoint_url=args.s3_endpoint_url,
        config=config,
    )
    sys.stdout.write(json.dumps(handle.urls()) + "\n")
    sys.stdout.flush()

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    handle.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
