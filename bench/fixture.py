"""Fixture sites for the benchmarks: generated once per (engine, size) and reused while their
parameters match.

The site is the demo-site generator's (`moodle_core.generator.generate`) plus one large company
("bigco") that groups a share of all learners over every course, so one token has a pull deep
enough for the offset-500,000 page (the generator spreads learners evenly, about 2,000 pairs per
company at 500 companies). A marker table written last records the parameters: a database whose
marker is missing or different is dropped and built again."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from local_alx_report_api.classes import installer
from moodle_core import engines, generator

WORK = Path(__file__).resolve().parent / "work"
MARKER = "bench_fixture"
VERSION = 1  # bump when the fixture's construction changes


@dataclass(frozen=True)
class Size:
    name: str
    companies: int
    users: int
    courses: int
    enrolments_per_user: int
    big_share: int  # percent of learners who are also members of bigco
    deep_offset: int  # the "offset 500,000" page of the issue, scaled to the size
    soak_seconds: int
    repeats: int
    seed: int = 8


SIZES = {
    "small": Size("small", 20, 10_000, 40, 6, 60, 20_000, 60, 10),
    "medium": Size("medium", 100, 30_000, 100, 10, 60, 100_000, 180, 10),
    "full": Size("full", 500, 100_000, 200, 10, 65, 500_000, 600, 10),
    # a hosting provider's site: 5,000 small companies of 20 learners (issue 16)
    "many": Size("many", 5000, 100_000, 200, 3, 10, 20_000, 60, 3),
}

DEFAULT_URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/alx_bench_{size}",
    "mariadb": "mariadb://root@127.0.0.1:3306/alx_bench_{size}",
    "sqlite": "sqlite:///" + str(WORK / "alx_bench_{size}.sqlite3"),
}


def default_url(db: str, size: str) -> str:
    return DEFAULT_URLS[db].format(size=size)


def params(size: Size) -> dict:
    return {"version": VERSION, **asdict(size)} | {"soak_seconds": None, "repeats": None}


def _admin_connection(url: str):
    """A raw driver connection to the server (not to the bench database) for CREATE/DROP."""
    parts = urlsplit(url)
    if url.startswith("postgres"):
        import psycopg2
        conn = psycopg2.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres",
                                password=parts.password or None, dbname="postgres")
        conn.autocommit = True
        return conn
    import pymysql
    return pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
                           password=parts.password or "", autocommit=True)


def _dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def recreate(url: str) -> None:
    """Drop and create the bench database (an SQLite file is removed)."""
    path = engines.sqlite_file(url)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        for extra in ("", "-wal", "-shm"):
            Path(path + extra).unlink(missing_ok=True)
        for lock in Path(path).parent.glob(Path(path).name + ".*.lock"):
            lock.unlink()
        return
    name = _dbname(url)
    if not name.startswith("alx_bench"):
        raise SystemExit(f"refusing to drop database {name!r}: bench databases are named alx_bench*")
    conn = _admin_connection(url)
    with conn.cursor() as cur:
        if url.startswith("postgres"):
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        else:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()


def stored_params(url: str) -> dict | None:
    path = engines.sqlite_file(url)
    if path is not None and not Path(path).exists():
        return None
    try:
        engine = engines.connect(url, "mdl_")
    except Exception:  # noqa: BLE001 - no database yet
        return None
    try:
        if MARKER not in engine.tables():
            return None
        return json.loads(engine.scalar(f"SELECT params FROM {MARKER}"))
    finally:
        engine.db.close()


def ensure(url: str, size: Size, say=print, rebuild: bool = False) -> dict:
    """The fixture at `url` for `size`, built if missing or different. Returns build info."""
    wanted = params(size)
    if not rebuild and stored_params(url) == wanted:
        say(f"fixture: reusing {engines.connect(url, check=False).describe()} ({size.name})")
        return {"reused": True}
    say(f"fixture: building {size.name} site at {url} (companies {size.companies}, users {size.users}, "
        f"courses {size.courses}, enrolments per user {size.enrolments_per_user}, bigco {size.big_share}%)")
    recreate(url)
    engine = engines.connect(url, "mdl_", create=True)
    started = time.perf_counter()
    site = generator.generate(engine, companies=size.companies, users=size.users, courses=size.courses,
                              enrolments_per_user=size.enrolments_per_user, seed=size.seed,
                              progress=lambda text: say(f"fixture: {text}"))
    generated = time.perf_counter() - started
    big = add_big_company(engine, size)
    installer.install(engine, int(time.time()))
    engine.execute(f"CREATE TABLE {MARKER} (params TEXT)")
    engine.execute(f"INSERT INTO {MARKER} (params) VALUES (?)", (json.dumps(wanted),))
    engine.db.close()
    total = time.perf_counter() - started
    say(f"fixture: generated in {generated:.1f} s ({site.enrolments} enrolments), bigco {big['members']} members, "
        f"total {total:.1f} s")
    return {"reused": False, "generate_seconds": round(generated, 1), "total_seconds": round(total, 1),
            "enrolments": site.enrolments, "bigco_members": big["members"]}


BIG_SHORTNAME = "bigco"


def add_big_company(engine: engines.Engine, size: Size) -> dict:
    """One more company: `big_share` % of the learners (a second membership) over every course,
    with its API manager and token (derived from the seed like the generator's)."""
    import random

    b = generator.SiteBuilder(engine)
    cid = b.company("Big Company Ltd", BIG_SHORTNAME)
    courses = [r[0] for r in engine.rows("SELECT id FROM {t:course} WHERE category <> 0 ORDER BY id")]
    for course in courses:
        b.company_course(cid, course)
    service = engine.scalar("SELECT id FROM {t:external_services} WHERE shortname = ?", (generator.SERVICE_SHORTNAME,))
    uid = b.user(f"{BIG_SHORTNAME}_api", "API", "Bigco", f"{BIG_SHORTNAME}_api@example.com")
    b.member(cid, uid, managertype=1)
    b.add("role_assignments", roleid=13, contextid=1, userid=uid, timemodified=generator.BASE_TIME)
    token = f"{random.Random(size.seed * 7919).getrandbits(128):032x}"
    b.token(uid, service, token, name=f"{BIG_SHORTNAME} token")
    members = 0
    for (learner,) in engine.rows("SELECT id FROM {t:user} WHERE username LIKE 'learner%' ORDER BY id"):
        if learner % 100 < size.big_share:
            b.member(cid, learner)
            members += 1
    b.finish()
    return {"companyid": cid, "members": members, "token": token}
