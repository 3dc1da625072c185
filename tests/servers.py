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


def service_env(engine, settings_dir: Path) -> dict[str, str]:
    """The environment that points a command at `engine`, with no settings file."""
    return {"ALX_DATABASE_URL": engine.url, "ALX_DATABASE_PREFIX": engine.prefix,
            "ALX_REPORT_API_SETTINGS": str(settings_dir / "none.ini")}


@contextmanager
def gunicorn(engine, settings_dir: Path, workers: int, threads: int = 1, **settings: str) -> Iterator[str]:
    """`serve` against `engine` (its connection is closed first) until the block ends; yields the
    base URL (`http://127.0.0.1:PORT/`) once the server answers. `settings`: more ALX_* variables;
    `threads` > 1: gthread workers."""
    engine.db.close()
    port = free_port()
    env = {**os.environ, **service_env(engine, settings_dir), **settings}
    output = open(settings_dir / f"serve-{port}.log", "w+")  # a file: a full pipe would block the workers
    proc = subprocess.Popen([sys.executable, "-m", "local_alx_report_api.cli", "serve", "--bind",
                             f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)], env=env,
                            stdout=output,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "healthz", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None:
                output.seek(0)
                pytest.fail("gunicorn exited: " + output.read())
            time.sleep(0.2)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        output.close()
