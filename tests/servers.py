"""Real servers for tests: `alx-report-api serve` (gunicorn) on a free port of the loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(engine, settings_dir: Path, workers: int) -> Iterator[str]:
    """`serve` against `engine` (its connection is closed first) until the block ends; yields the
    base URL (`http://127.0.0.1:PORT/`) once the server answers."""
    engine.db.close()
    port = free_port()
    env = {**os.environ, "ALX_DATABASE_URL": engine.url, "ALX_DATABASE_PREFIX": engine.prefix,
           "ALX_REPORT_API_SETTINGS": str(settings_dir / "none.ini")}
    proc = subprocess.Popen([sys.executable, "-m", "local_alx_report_api.cli", "serve", "--bind",
                             f"127.0.0.1:{port}", "--workers", str(workers)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "healthz", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("gunicorn exited: " + proc.stdout.read())
            time.sleep(0.2)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
