"""Settings, resets and raw-driver connections for a bench database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bench.fixture import WORK
from bench.load import CLI
from moodle_core import engines

PLUGIN_STATE = ("local_alx_api_reporting", "local_alx_api_cache", "local_alx_api_sync_status", "local_alx_api_logs",
                "local_alx_api_alerts")


def settings_file(url: str, db: str, size: str) -> Path:
    """A settings.ini of the bench run: no rate limit, 1000-row pages, quiet slow-query log."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{db}-{size}.ini"
    path.write_text("[site]\nwwwroot = http://127.0.0.1\n\n"
                    f"[database]\nurl = {url}\nprefix = mdl_\n\n"
                    "[local_alx_report_api]\nmax_records = 1000\nrate_limit = 0\nreport_roles = student\n"
                    "sync_batch_size = 1000\nmax_sync_time = 86400\nslow_query_ms = 600000\n"
                    "enable_alerting = false\n")
    return path


def env_for(settings: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALX_")}
    env["ALX_REPORT_API_SETTINGS"] = str(settings)
    return env


def reset_plugin_state(engine: engines.Engine) -> None:
    """Empty the reporting table and everything that depends on it (counters, tokens' pulls,
    cache, logs): the state right after `install`."""
    for table in PLUGIN_STATE:
        if engine.kind == "sqlite":
            engine.execute(f"DELETE FROM {{t:{table}}}")
        else:
            engine.execute(f"TRUNCATE TABLE {{t:{table}}}")
    if engine.kind == "sqlite":
        engine.db.execute_sql("VACUUM")


def raw_connect(url: str):
    """A plain DB-API connection (psycopg2, pymysql, sqlite3): the floor's driver."""
    path = engines.sqlite_file(url)
    if path is not None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=wal")
        return conn
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if url.startswith("postgres"):
        import psycopg2
        conn = psycopg2.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username,
                                password=parts.password or None, dbname=name)
        conn.autocommit = True
        return conn
    import pymysql
    return pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                           password=parts.password or "", database=name, charset="utf8mb4", autocommit=True)


class FixtureBench:
    """A measurement on one fixture: its settings file, the environment of the service's commands,
    the results so far, and connections to it."""

    def __init__(self, db: str, size, url: str, repeat: int, say=print, **results):
        self.db, self.size, self.url, self.repeat, self.say = db, size, url, repeat, say
        self.ini = settings_file(url, db, size.name)
        self.env = env_for(self.ini)
        self.results: dict = {"db": db, "size": size.name, "repeat": repeat, "floors": {}, **results}

    def engine(self) -> engines.Engine:
        return engines.connect(self.url, "mdl_")

    def populate_if_empty(self) -> None:
        engine = self.engine()
        filled = int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting}"))
        engine.db.close()
        if not filled:
            self.say("populate (the reporting table is empty)")
            subprocess.run([CLI, "populate", "--quiet"], env=self.env, check=True, stdout=subprocess.DEVNULL)
