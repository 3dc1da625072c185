"""Scheduled tasks, one module per task (tasks.md). Each module has execute(env) -> summary."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from local_alx_report_api.db.tasks import TASKS, short_name
from moodle_core.config import Settings
from moodle_core.engines import Engine
from moodle_core.moodle import Moodle
from moodle_core.taskmanager import TaskDef


def definitions(settings: Settings) -> list[TaskDef]:
    """The scheduled tasks of db/tasks.py with their `[scheduled_tasks]` overrides (tasks.md 1):
    what the cron runner runs, the health check expects and the control center lists."""
    defs = []
    for task in TASKS:
        module = f"{__name__}.{short_name(task['classname'])}"
        if importlib.util.find_spec(module) is None:
            continue  # declared, built with a later part of the product
        cron = settings.get("scheduled_tasks", short_name(task["classname"]))
        defs.append(TaskDef(task["classname"], module, "disabled" if task["disabled"] else cron))
    return defs


@dataclass
class TaskEnv:
    """What a task receives: database, Moodle read model, settings, the clock and its output."""

    engine: Engine
    moodle: Moodle
    settings: Settings
    clock: Callable[[], int]
    say: Callable[[str], None]
    should_stop: Callable[[], bool] = lambda: False

    @property
    def plugin(self):
        return self.settings.local_alx_report_api
