"""Running scheduled tasks in tests with a fixed clock."""

from __future__ import annotations

from local_alx_report_api import settings as plugin_settings
from local_alx_report_api.task import TaskEnv
from moodle_core.moodle import Moodle


def task_env(engine, now: int, lines: list | None = None, should_stop=lambda: False, **settings) -> TaskEnv:
    environ = {f"ALX_{k.split('__')[0]}_{k.split('__')[1]}".upper(): str(v) for k, v in settings.items()}
    clock = now if callable(now) else (lambda: now)
    say = (lines.append if lines is not None else (lambda text: None))
    return TaskEnv(engine, Moodle(engine), plugin_settings.load(None, environ), clock, say, should_stop)
