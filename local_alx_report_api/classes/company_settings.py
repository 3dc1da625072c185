"""Per-company settings (settings.md section 2): rows of local_alx_api_settings over defaults."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from moodle_core.engines import Engine

log = logging.getLogger(__name__)

FIELDS = ("userid", "firstname", "lastname", "email", "courseid", "coursename", "timecompleted",
          "timecompleted_unix", "timestarted", "timestarted_unix", "percentage", "status")
# name → (low, high, default); None default = "absent" (rate_limit falls back to the global value)
RANGES = {**{f"field_{f}": (0, 1, 1) for f in FIELDS},
          "sync_mode": (0, 3, 0), "sync_window_hours": (0, 8760, 24), "adaptive_sync_window": (0, 1, 1),
          "incremental_deletions": (0, 1, 1), "enable_cache": (0, 1, 1), "cache_ttl_minutes": (1, 1440, 60),
          "rate_limit": (0, 1000000, None)}


@dataclass
class CompanySettings:
    companyid: int
    values: dict[str, int]
    switched_off: frozenset[int]

    def get(self, name: str):
        return self.values.get(name, RANGES[name][2])

    @property
    def fields(self) -> tuple[str, ...]:
        """The enabled response keys, in response order."""
        return tuple(f for f in FIELDS if self.get(f"field_{f}") != 0)


def load(engine: Engine, companyid: int) -> CompanySettings:
    values, off = {}, set()
    for name, value in engine.rows("SELECT setting_name, setting_value FROM {t:local_alx_api_settings} "
                                   "WHERE companyid = ?", (companyid,)):
        value = int(value)
        if name.startswith("course_") and name[7:].isdigit():
            if value == 0:
                off.add(int(name[7:]))
        elif name in RANGES:
            low, high, _ = RANGES[name]
            if low <= value <= high:
                values[name] = value
            else:
                log.warning("company %s setting %s = %s is out of range %s-%s; using the default",
                            companyid, name, value, low, high)
    return CompanySettings(companyid, values, frozenset(off))
