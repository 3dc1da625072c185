"""Small real tasks for task-manager tests (modules with execute(env), like the plugin's)."""

import os
import time
from pathlib import Path


def execute(env):
    """Records each run in a file named by $FAKE_TASK_LOG, sleeping $FAKE_TASK_SLEEP seconds;
    fails when $FAKE_TASK_FAIL is set."""
    log = Path(os.environ["FAKE_TASK_LOG"])
    with log.open("a") as out:
        out.write(f"start {os.getpid()}\n")
    time.sleep(float(os.environ.get("FAKE_TASK_SLEEP", "0")))
    if os.environ.get("FAKE_TASK_FAIL"):
        raise RuntimeError("asked to fail")
    with log.open("a") as out:
        out.write(f"done {os.getpid()}\n")
    return {"ok": 1}
