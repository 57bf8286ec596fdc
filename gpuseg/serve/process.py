"""`gpuseg serve` in a child process on a free loopback port, for tests, benchmarks and scripts."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (another process may take it before it is used)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(
    *options: str, log_path: Path, token: str | None = None, ready_timeout: float = 300
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``(url, process)`` of ``python -m gpuseg serve --port <free> OPTIONS...`` once ``/v1/ready`` answers
    200; its output goes to ``log_path``. When the block ends, the server gets SIGTERM (and SIGKILL if it has
    not exited 60 s later).

    Raises
    ------
    RuntimeError
        The server exited, or was not ready within ``ready_timeout`` seconds (the message holds its log).
    """
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpuseg", "serve", "--port", str(port), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {proc.returncode}: {log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v1/ready", headers=headers, timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready within {ready_timeout:g} s: {log_path.read_text()}")
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
