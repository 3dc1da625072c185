"""Moodle's scheduled-task manager (tasks.md sections 1–4): which tasks are due now, a DB lock
per task, fail delay, and the state of each task in local_alx_api_sync_status (kind `task`).

`due_tasks(now)` is a pure question over declarations and stored state; a pass runs each due
task once under its lock. "Now" is always a parameter (a callable clock)."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import peewee

from moodle_core.cron import NEVER, Schedule
from moodle_core.engines import Engine, LockBusy
from moodle_core.stored import json_object

log = logging.getLogger("alx_report_api.cron")
MAX_FAIL_DELAY = 86400


@dataclass(frozen=True)
class TaskDef:
    classname: str
    module: str  # dotted module with execute(context) -> summary dict
    cron: str  # five fields, or "disabled"

    @property
    def name(self) -> str:
        return self.classname.rsplit("\\", 1)[-1]

    @property
    def disabled(self) -> bool:
        return self.cron == "disabled"

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.classname.encode()).hexdigest()


@dataclass
class TaskState:
    """One task's stored state (tasks.md section 4)."""

    lastrun: int = 0
    status: str = "never"
    error: str | None = None
    consecutive_failures: int = 0
    data: dict = field(default_factory=dict)

    @property
    def nextrun(self) -> int:
        return int(self.data.get("nextruntime", 0))

    @property
    def faildelay(self) -> int:
        return int(self.data.get("faildelay", 0))


class TaskManager:
    def __init__(self, engine: Engine, tasks: list[TaskDef], timezone: str, *, clock: Callable[[], int] = lambda: int(time.time()),
                 output: Callable[[str], None] = print, context: Callable[[TaskManager], object] = lambda m: m,
                 on_result: Callable[[TaskDef, TaskState], None] = lambda task, state: None):
        """`context(manager)` builds the object each task's execute() receives; `on_result` hears
        every recorded success or failure (the plugin raises and resolves task alerts there)."""
        self.engine, self.tasks, self.timezone, self.clock, self.output = engine, tasks, timezone, clock, output
        self.context, self.on_result = context, on_result

    # -- state -----------------------------------------------------------------------------------
    def state(self, task: TaskDef) -> TaskState | None:
        row = self.engine.execute(
            "SELECT last_sync_timestamp, last_sync_status, last_sync_error, consecutive_failures, state_data "
            "FROM {t:local_alx_api_sync_status} WHERE companyid = 0 AND token_hash = ?", (task.hash,)).fetchone()
        if row is None:
            return None
        return TaskState(int(row[0]), row[1], row[2], int(row[3]), json.loads(row[4] or "{}"))

    def states(self) -> dict[str, TaskState | None]:
        """`state` of every declared task by short name (None where none is stored yet), in one
        query, for lists that must not fail on one damaged row (it reads as empty data)."""
        stored = {h: TaskState(int(last or 0), status or "never", error, int(failures or 0),
                               json_object(data, "task state"))
                  for h, last, status, error, failures, data in self.engine.rows(
                      "SELECT token_hash, last_sync_timestamp, last_sync_status, last_sync_error, consecutive_failures, "
                      "state_data FROM {t:local_alx_api_sync_status} WHERE companyid = 0 AND kind = 'task'")}
        return {task.name: stored.get(task.hash) for task in self.tasks}

    def _save(self, task: TaskDef, state: TaskState, now: int) -> None:
        values = (state.lastrun, state.status, state.error, state.consecutive_failures,
                  json.dumps(state.data, separators=(",", ":")), now)
        with self.engine.db.atomic():
            updated = self.engine.execute(
                "UPDATE {t:local_alx_api_sync_status} SET last_sync_timestamp = ?, last_sync_status = ?, "
                "last_sync_error = ?, consecutive_failures = ?, state_data = ?, updated_at = ? "
                "WHERE companyid = 0 AND token_hash = ?", (*values, task.hash)).rowcount
            if not updated:
                self._create(task, state, now)

    def ensure_states(self, now: int) -> None:
        """Every declared task gets a state row, due at its next run time after now."""
        for task in self.tasks:
            state = self.state(task)
            if state is None:
                self._create(task, TaskState(data={"nextruntime": self.next_run(task, now), "faildelay": 0,
                                                   "cron": task.cron}), now)
            elif state.data.get("cron") != task.cron:  # schedule changed in settings.ini
                # never postponed: hosts whose schedules differ (a rolling change) keep it running
                upcoming = [t for t in (state.nextrun, self.next_run(task, now)) if t]
                state.data.update(cron=task.cron, nextruntime=min(upcoming) if upcoming else NEVER)
                self._save(task, state, now)

    def _create(self, task: TaskDef, state: TaskState, now: int) -> None:
        """A task's first state row: one INSERT (an UPDATE first would take a gap lock on MariaDB and
        deadlock with another host's runner creating it at the same moment, which keeps its row)."""
        try:
            with self.engine.db.atomic():
                self.engine.insert("local_alx_api_sync_status", {
                    "companyid": 0, "token_hash": task.hash, "kind": "task", "sync_mode": "task",
                    "last_sync_timestamp": state.lastrun, "last_sync_status": state.status,
                    "last_sync_error": state.error, "consecutive_failures": state.consecutive_failures,
                    "state_data": json.dumps(state.data, separators=(",", ":")), "created_at": now, "updated_at": now})
        except peewee.IntegrityError:
            if self.state(task) is None:
                raise

    def next_run(self, task: TaskDef, after: int) -> int:
        return NEVER if task.disabled else Schedule.parse(task.cron).next_run(after, self.timezone)

    # -- due tasks -------------------------------------------------------------------------------
    def due_tasks(self, now: int) -> list[TaskDef]:
        """Not disabled and next run ≤ now; never-run first, then oldest last run, then classname."""
        due = []
        for task in self.tasks:
            state = self.state(task)
            if state is not None and not task.disabled and state.nextrun <= now:
                due.append((state.lastrun, task.classname, task))
        return [task for _, _, task in sorted(due, key=lambda d: (d[0], d[1]))]

    def find(self, name: str) -> TaskDef | None:
        wanted = name.lstrip("\\")
        return next((t for t in self.tasks if t.name == wanted or t.classname.lstrip("\\") == wanted), None)

    # -- running -----------------------------------------------------------------------------------
    def run_pass(self, max_runtime: int, should_stop: Callable[[], bool] = lambda: False) -> list[tuple[str, str]]:
        """One cron pass (tasks.md 3.2). Returns (task name, outcome) for each task looked at."""
        started = self.clock()
        self.ensure_states(started)
        outcomes = []
        for task in self.due_tasks(started):
            if should_stop() or self.clock() - started >= max_runtime:
                break
            outcomes.append((task.name, self.run(task, scheduled_at=started)))
        return outcomes

    def run(self, task: TaskDef, scheduled_at: int | None = None) -> str:
        """Run one task under its lock; `scheduled_at` set means "only if still due then"."""
        try:
            with self.engine.lock(f"task_{task.classname}"):
                self.ensure_states(self.clock())
                state = self.state(task) or TaskState()
                if scheduled_at is not None and (task.disabled or state.nextrun > scheduled_at):
                    return "not due"
                return self._execute(task, state)
        except LockBusy:
            self.say(f"Task {task.name} is running elsewhere; skipped")
            return "busy"

    def _execute(self, task: TaskDef, state: TaskState) -> str:
        start = self.clock()
        if state.status == "running":  # the holder of the lock died mid-run
            self._failed(task, state, start, "The previous run ended without finishing")
        state.status = "running"
        state.data.update(timestarted=start, hostname=socket.gethostname(), pid=os.getpid())
        self._save(task, state, start)
        self.say(f"Execute scheduled task: {task.name} ({task.classname})")
        began = time.monotonic()
        try:
            summary = importlib.import_module(task.module).execute(self.context(self)) or {}
        except Exception as exc:
            self.say(f"... task failed: {exc}")
            log.error("task %s failed:\n%s", task.name, traceback.format_exc())
            state.lastrun = start
            self._failed(task, state, self.clock(), f"{type(exc).__name__}: {exc}")
            return "failed"
        finish = self.clock()
        state.lastrun, state.status, state.error, state.consecutive_failures = start, "success", None, 0
        for key in ("timestarted", "hostname", "pid"):
            state.data.pop(key, None)
        state.data.update(nextruntime=self.next_run(task, finish), faildelay=0,
                          duration=round(time.monotonic() - began, 3), summary=summary)
        self._save(task, state, finish)
        self.on_result(task, state)
        self.say(f"Scheduled task complete: {task.name} ({task.classname})")
        return "success"

    def _failed(self, task: TaskDef, state: TaskState, finish: int, error: str) -> None:
        delay = min(MAX_FAIL_DELAY, 60 if state.faildelay == 0 else state.faildelay * 2)
        state.status, state.error = "failed", error
        state.consecutive_failures += 1
        for key in ("timestarted", "hostname", "pid"):
            state.data.pop(key, None)
        state.data.update(faildelay=delay, nextruntime=finish + delay)
        self._save(task, state, finish)
        self.on_result(task, state)

    def local_time(self, instant: int) -> str:
        return datetime.fromtimestamp(instant, ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M:%S")

    def say(self, text: str) -> None:
        """One line of task output, prefixed with the site-time-zone time."""
        self.output(f"[{self.local_time(self.clock())}] {text}")

