"""Scheduled tasks, one module per task (tasks.md). Each module has execute(env) -> summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from moodle_core.config import Settings
from moodle_core.engines import Engine
from moodle_core.moodle import Moodle


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
