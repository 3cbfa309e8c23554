"""Running the intake service: uvicorn in the foreground (``memo-pipeline serve``) or in a
thread (tests, the demo), with the background worker that ends events and sends webhooks."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from memo_pipeline.api.app import create_app
from memo_pipeline.intake.service import IntakeService


def serve(service: IntakeService, host: str, port: int) -> None:
    """Serve until interrupted; the worker runs beside uvicorn and stops with it."""
    service.worker.start()
    try:
        uvicorn.run(
            create_app(service), host=host, port=port, log_level="warning", access_log=False
        )
    finally:
        service.close()


class ServerThread:
    """The service on a loopback port in a background thread; ``url`` once started."""

    def __init__(self, service: IntakeService, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(service), log_level="warning", access_log=False, lifespan="off"
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, worker: bool = True) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the intake service failed to start")
            time.sleep(0.01)
        if worker:
            self.service.worker.start()
        return self

    def stop(self) -> None:
        self.service.worker.stop()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
