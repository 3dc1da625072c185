"""Read model of a Moodle + IOMAD site: table names behind the prefix, peewee models of the core
tables, Moodle's `config`, the site time zone and IOMAD companies."""

from __future__ import annotations

import functools
import logging
import zoneinfo
from dataclasses import dataclass

from moodle_core.config import ConfigError
from moodle_core.engines import Engine
from moodle_core.moodle_schema import moodle_tables
from moodle_core.xmldb import make_models

log = logging.getLogger(__name__)

REQUIRED = ("user", "course", "course_completions", "course_modules", "modules",
            "course_modules_completion", "enrol", "user_enrolments", "role", "role_assignments",
            "context", "config", "company", "company_users", "company_course")


@dataclass(frozen=True)
class Company:
    id: int
    shortname: str
    name: str


@dataclass(frozen=True)
class User:
    id: int
    username: str
    firstname: str
    lastname: str

    @property
    def fullname(self) -> str:
        return f"{self.firstname} {self.lastname}"


class Moodle:
    """The Moodle site behind one database connection (cheap to make: it holds no state of its
    own; the engine knows the table names)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @property
    def iomad(self) -> str | None:
        return self.engine.iomad

    @functools.cached_property
    def models(self) -> dict:
        """peewee models of Moodle's core tables (built on first use)."""
        models = make_models(moodle_tables(), self.engine.db, self.engine.prefix)
        for logical, physical in self.engine.aliases.items():
            models[logical]._meta.table_name = self.engine.prefix + physical
        return models

    def missing_tables(self) -> list[str]:
        """Required tables that are absent, with their physical names."""
        present = self.engine.tables()
        names = [self.engine.prefix + self.engine.aliases.get(t, t) for t in REQUIRED]
        return [n for n in names if n not in present]

    def require_tables(self) -> None:
        missing = self.missing_tables()
        if missing:
            raise ConfigError(f"Not a Moodle/IOMAD database: table {missing[0]} is missing "
                              f"(prefix '{self.engine.prefix}', {self.engine.describe()})")

    # -- config -------------------------------------------------------------------------------
    def config(self, name: str) -> str | None:
        return self.engine.scalar("SELECT value FROM {t:config} WHERE name = ?", (name,))

    def site_timezone(self, override: str = "") -> tuple[str, str]:
        """(IANA zone, where it came from), settings.md section 1.2."""
        if override:
            return override, "settings.ini"
        value = (self.config("timezone") or "").strip()
        if value in ("", "99"):
            return "UTC", "Moodle config (server time: UTC)"
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            log.warning("Moodle config timezone %r is not an IANA zone name; using UTC", value)
            return "UTC", f"Moodle config ({value!r} is not an IANA zone: UTC)"
        return value, "Moodle config"

    def users(self, ids) -> dict[int, User]:
        """The users with these ids (ids of no user are left out)."""
        ids = sorted({int(i) for i in ids if i})
        if not ids:
            return {}
        return {int(row[0]): User(int(row[0]), *row[1:]) for row in self.engine.rows(
            f"SELECT id, username, firstname, lastname FROM {{t:user}} WHERE id IN ({', '.join('?' * len(ids))})",
            ids)}

    # -- IOMAD --------------------------------------------------------------------------------
    def companies(self) -> list[Company]:
        return [Company(*row) for row in self.engine.rows(
            "SELECT id, shortname, name FROM {t:company} ORDER BY id")]

    def company(self, companyid: int) -> Company | None:
        row = self.engine.execute("SELECT id, shortname, name FROM {t:company} WHERE id = ?",
                                  (companyid,)).fetchone()
        return Company(*row) if row else None

    def user_company(self, userid: int) -> Company | None:
        """The token user's company: the lowest company id among its memberships."""
        return self.user_companies([userid]).get(int(userid))

    def user_companies(self, userids) -> dict[int, Company]:
        """`user_company` for many users in one query (users of no company are left out)."""
        ids = sorted({int(u) for u in userids})
        if not ids:
            return {}
        found: dict[int, Company] = {}
        for userid, *company in sorted(self.engine.rows_in(
                "SELECT cu.userid, c.id, c.shortname, c.name FROM {t:company_users} cu JOIN {t:company} c "
                "ON c.id = cu.companyid WHERE cu.userid IN ({in})", ids)):
            found.setdefault(int(userid), Company(*company))
        return found
