"""Scheduled task declarations, as Moodle's `db/tasks.php` (tasks.md section 1)."""

from moodle_core.taskmanager import TaskDef

NAMESPACE = "\\local_alx_report_api\\task\\"

# classname, blocking, minute, hour, day, month, dayofweek, disabled
TASKS = [
    {"classname": NAMESPACE + "sync_reporting_data_task", "blocking": 0,
     "minute": "0", "hour": "*", "day": "*", "month": "*", "dayofweek": "*", "disabled": 0},
    {"classname": NAMESPACE + "check_alerts_task", "blocking": 0,
     "minute": "*/15", "hour": "*", "day": "*", "month": "*", "dayofweek": "*", "disabled": 0},
    {"classname": NAMESPACE + "send_notifications_task", "blocking": 0,
     "minute": "*", "hour": "*", "day": "*", "month": "*", "dayofweek": "*", "disabled": 0},
    {"classname": NAMESPACE + "cleanup_task", "blocking": 0,
     "minute": "30", "hour": "*", "day": "*", "month": "*", "dayofweek": "*", "disabled": 0},
    {"classname": NAMESPACE + "reconcile_task", "blocking": 0,
     "minute": "15", "hour": "3", "day": "*", "month": "*", "dayofweek": "*", "disabled": 0},
]


def short_name(classname: str) -> str:
    """`\\local_alx_report_api\\task\\cleanup_task` → `cleanup_task`."""
    return classname.rsplit("\\", 1)[-1]


def cron_line(task: dict) -> str:
    return " ".join(task[f] for f in ("minute", "hour", "day", "month", "dayofweek"))


def definitions(settings) -> list[TaskDef]:
    """The scheduled tasks with their `[scheduled_tasks]` overrides (tasks.md 1): what the cron
    runner runs, the health check expects and the control center lists."""
    return [TaskDef(task["classname"], f"local_alx_report_api.task.{short_name(task['classname'])}",
                    "disabled" if task["disabled"] else settings.get("scheduled_tasks", short_name(task["classname"])))
            for task in TASKS]
