"""One web-service request as functions see it, and its row in local_alx_api_logs."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moodle_core.config import Settings
from moodle_core.engines import DATABASE_ERRORS, Engine, first_line
from moodle_core.moodle import Moodle
from webservice.auth import Caller, ConfigCache
from webservice.external import Encoded

log = logging.getLogger("alx_report_api.requests")
_WIDTHS = {"company_shortname": 100, "endpoint": 255, "ip_address": 45, "errorcode": 100}  # char columns (install.json)


@dataclass
class RequestLog:
    """The one log row of a request: written at admission (rate limit) or at the end."""

    engine: Engine
    fields: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # additional_data
    row_id: int | None = None

    def set(self, **values) -> None:
        self.fields.update(values)

    def _values(self) -> dict:
        # a NUL is stored escaped (PostgreSQL refuses it in text): every request is logged
        # (escaped, then cut to the column's width again)
        values = {k: v.replace("\x00", "\\x00")[:_WIDTHS.get(k)] if isinstance(v, str) else v
                  for k, v in self.fields.items()}
        values["additional_data"] = json.dumps(self.extra, separators=(",", ":")) if self.extra else None
        return values

    def insert(self) -> int:
        self.row_id = self.engine.insert("local_alx_api_logs", self._values())
        return self.row_id

    def write(self) -> None:
        """Finish the row; a failure goes to the process log and never fails the request."""
        try:  # one statement, committed on its own (no BEGIN and COMMIT round trips around it)
            if self.row_id is None:
                self.insert()
            else:
                values = self._values()
                sets = ", ".join(f"{c} = ?" for c in values)
                self.engine.execute(f"UPDATE {{t:local_alx_api_logs}} SET {sets} WHERE id = ?",
                                    [*values.values(), self.row_id], retry=False)
        except DATABASE_ERRORS as exc:  # the request is answered anyway; keep its fields (no traceback:
            # during an outage every request comes here)
            log.error("could not write the request log row (%s): %s", first_line(exc),
                      json.dumps(self._values(), default=str))
        except Exception:
            log.exception("could not write the request log row: %s", json.dumps(self._values(), default=str))


@dataclass
class Call:
    """What a function's execute() receives."""

    engine: Engine
    moodle: Moodle
    settings: Settings
    config: ConfigCache
    timezone: str
    method: str
    ip: str
    now: int
    started: float
    function: str
    log: RequestLog
    site_versions: dict[str, str] = field(default_factory=dict)  # component → version (site info)
    caller: Caller | None = None
    company: Any = None  # the token user's company, once resolved
    rate: dict | None = None  # the rate-limit state for headers: limit, count, reset
    authenticated: bool = False  # token and user checks passed: rate-limit headers apply
    headers: dict[str, str] = field(default_factory=dict)
    user_agent: str = ""  # the User-Agent header as received
    pull_id: str | None = None  # X-ALX-Pull-Id: which of the token's pulls a page belongs to
    format: str = "json"  # moodlewsrestformat: json or xml
    encoder: Callable[[Any], bytes] | None = None  # the server's cleaning and encoding of this function's returns

    @property
    def debug(self) -> bool:
        return bool(self.settings.site.debug)

    def encode(self, result) -> Encoded:
        """The answer as the server would send it (cleaned, in the request's format), for a
        function that keeps the bytes (the response cache)."""
        return Encoded(self.encoder(result), len(result) if isinstance(result, list) else 1)

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
