"""One bench run: fixture, populate, sync, every HTTP measurement of issue 8 with its floor, throughput
and RSS under sustained load; results as JSON and Markdown."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bench import fixture, load, site
from local_alx_report_api.classes import company_state, pulls
from local_alx_report_api.classes.progress import Scope, reported_query
from local_alx_report_api.settings import load as load_settings
from local_alx_report_api.task import TaskEnv, sync_reporting_data_task
from moodle_core import engines
from moodle_core.engines import Engine
from moodle_core.moodle import Moodle

RESULTS = Path(__file__).resolve().parent / "results"
LIMIT = 1000
SYNC_CHANGES = {"small": 2_000, "medium": 5_000, "full": 10_000}


def _commit() -> str:
    """The code measured: HEAD, marked dirty when bench-relevant files differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "local_alx_report_api", "moodle_core",
                                "webservice", "bench/*.py"], cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (modified)" if dirty.strip() else "")


def stats(samples: list[float]) -> dict:
    """min / median / p95 / max of seconds, reported in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms) + 0.5) - 1))]
    return {"n": len(ms), "min": round(ms[0], 2), "median": round(statistics.median(ms), 2), "p95": round(p95, 2),
            "max": round(ms[-1], 2)}


def floor(raw, sql: str, params: tuple, repeat: int, warmup: int = 3) -> tuple[dict, int]:
    """The same statement with the driver alone: execute and fetch every row."""
    cur = raw.cursor()
    samples, count = [], 0
    for i in range(warmup + repeat):
        started = time.perf_counter()
        cur.execute(sql, params)
        rows = cur.fetchall()
        elapsed = time.perf_counter() - started
        count = len(rows)
        if i >= warmup:
            samples.append(elapsed)
    cur.close()
    return stats(samples), count


def timed_populate(args: list[str], env: dict, url: str, cwd: str | None = None) -> dict:
    """`populate` as a subprocess: seconds, rows after it, rows/s and its peak RSS (wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    out = proc.stdout.read()
    proc.stdout.close()
    if status != 0:
        raise RuntimeError(f"populate failed: {out[-2000:]}")
    engine = engines.connect(url, "mdl_")
    rows = int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting}"))
    engine.db.close()
    return {"seconds": round(elapsed, 2), "rows": rows, "rows_per_second": round(rows / elapsed),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def populate_floor(url: str, roles: list[str], companies) -> float:
    """In-database INSERT ... SELECT of every company's in-scope pairs, one statement per company,
    into a copy of the reporting table with the same indexes (no batches, no Python per row)."""
    engine = engines.connect(url, "mdl_")
    copy = "bench_floor_reporting"
    engine.db.execute_sql(f"DROP TABLE IF EXISTS {copy}")
    real = engine.table("local_alx_api_reporting")
    if engine.kind == "postgresql":
        engine.db.execute_sql(f"CREATE TABLE {copy} (LIKE {real} INCLUDING ALL)")
    elif engine.kind == "mariadb":
        engine.db.execute_sql(f"CREATE TABLE {copy} LIKE {real}")
    else:
        for (sql,) in engine.rows("SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL",
                                  (engine.prefix + "local_alx_api_reporting",)):
            sql = sql.replace(f'"{engine.prefix}local_alx_api_reporting"', copy)
            sql = sql.replace(f'INDEX "{engine.prefix}', f'INDEX "bench_floor_{engine.prefix}')
            engine.db.execute_sql(sql)
    now = int(time.time())
    total = 0.0
    for company in companies:
        scope = Scope.load(engine, company.id, roles)
        query = reported_query(engine, scope, now, after=(0, 0), upto_user=None, limit=10**9)
        if query is None:
            continue
        select, params = query
        sql = (f"INSERT INTO {copy} (userid, companyid, courseid, firstname, lastname, email, coursename, "
               "timecompleted, timestarted, percentage, status, last_updated, is_deleted, created_at, updated_at, "
               f"change_seq) SELECT r.userid, {company.id}, r.courseid, r.firstname, r.lastname, r.email, "
               f"r.coursename, r.timecompleted, r.timestarted, r.hundredths / 100.0, r.status, {now}, 0, {now}, "
               f"{now}, ROW_NUMBER() OVER (ORDER BY r.userid, r.courseid) FROM ({select}) r")
        t0 = time.perf_counter()
        with engine.db.atomic():
            engine.execute(sql, params)
        total += time.perf_counter() - t0
    engine.db.execute_sql(f"DROP TABLE {copy}")
    engine.db.close()
    return total


class Bench:
    def __init__(self, db: str, size: fixture.Size, url: str, repeat: int, soak: int, say=print):
        self.db, self.size, self.url, self.repeat, self.soak, self.say = db, size, url, repeat, soak, say
        self.results: dict = {"db": db, "size": size.name, "url": engines.connect(url, check=False).describe(),
                              "started": datetime.now(UTC).isoformat(timespec="seconds"),
                              "repeat": repeat, "soak_seconds": soak, "measurements": {}, "notes": []}
        self.results["commit"] = _commit()
        self.ini = site.settings_file(url, db, size.name)
        self.env = site.env_for(self.ini)

    # -- helpers ---------------------------------------------------------------------------------
    def engine(self) -> Engine:
        return engines.connect(self.url, "mdl_")

    def record(self, name: str, **values) -> None:
        self.results["measurements"][name] = values
        shown = {k: v for k, v in values.items() if k not in ("samples", "wrk_output")}
        self.say(f"  {name}: {json.dumps(shown, default=str)}")

    def run(self) -> dict:
        started = time.perf_counter()
        build = fixture.ensure(self.url, self.size, say=self.say)
        self.results["fixture"] = {**fixture.params(self.size), **build}
        engine = self.engine()
        companies = Moodle(engine).companies()
        self.big = next(c for c in companies if c.shortname == fixture.BIG_SHORTNAME)
        regular = [c for c in companies if c.id != self.big.id]
        self.fallback = regular[-1]  # never populated: its pages come from the live tables
        self.filled = [c for c in companies if c.id != self.fallback.id]
        self.tokens = {int(cid): tok for cid, tok in engine.rows(
            "SELECT cu.companyid, t.token FROM {t:external_tokens} t JOIN {t:company_users} cu ON cu.userid = t.userid "
            "AND cu.managertype = 1")}
        engine.db.close()
        self.populate()
        self.server = load.Server(self.env, workers=4)
        try:
            self.results["server"] = {"workers": 4, "pids": self.server.worker_pids()}
            self.http_pages()
            self.sync()
            self.incremental()
            self.throughput_and_rss()
        finally:
            self.server.stop()
        self.results["seconds"] = round(time.perf_counter() - started, 1)
        return self.results

    # -- populate --------------------------------------------------------------------------------
    def populate(self) -> None:
        self.say("populate: every company but the fallback one, from an empty reporting table")
        runs, rows = [], 0
        for n in range(max(1, min(self.repeat, 3))):
            engine = self.engine()
            site.reset_plugin_state(engine)
            engine.db.close()
            args = [load.CLI, "populate", "--quiet"] + [f"--companyid={c.id}" for c in self.filled]
            runs.append(timed_populate(args, self.env, self.url))
            self.say(f"  populate run {n + 1}: {runs[-1]}")
        floor_seconds = self.populate_floor()
        best = min(r["seconds"] for r in runs)
        self.record("populate", unit="rows/s", runs=runs, rows=rows,
                    rows_per_second_median=round(rows / statistics.median(r["seconds"] for r in runs)),
                    rows_per_second_best=round(rows / best), peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
                    floor_rows_per_second=round(rows / floor_seconds), floor_seconds=round(floor_seconds, 2),
                    ratio=round(statistics.median(r["seconds"] for r in runs) / floor_seconds, 2),
                    target="≥ 30,000 rows/s, peak RSS ≤ 250 MB")

    def populate_floor(self) -> float:
        return populate_floor(self.url, load_settings(self.ini).local_alx_report_api.report_roles, self.filled)

    # -- HTTP pages with their floors -----------------------------------------------------------
    def _request(self, engine: Engine, company, limit: int = LIMIT, offset: int = 0) -> pulls.PageRequest:
        settings = load_settings(self.ini).local_alx_report_api
        scope = Scope.load(engine, company.id, settings.report_roles)
        return pulls.PageRequest(company.id, "", 0, limit, offset, scope, 0, 24, True, True, int(time.time()), "UTC")

    def _series(self, client: load.Client, token: str, offsets, before=None) -> tuple[list[float], list[int]]:
        samples, counts = [], []
        for offset in offsets:
            if before:
                before()
            elapsed, data = client.page(token, LIMIT, offset)
            samples.append(elapsed)
            counts.append(len(json.loads(data)))
        return samples, counts

    def _log_status(self, engine: Engine, since_id: int, companyid: int) -> dict:
        rows = engine.rows("SELECT cache_status, data_source, COUNT(*) FROM {t:local_alx_api_logs} WHERE id > ? "
                           "AND companyid = ? GROUP BY cache_status, data_source", (since_id, companyid))
        return {f"{c or '-'}/{d or '-'}": int(n) for c, d, n in rows}

    def _last_log(self, engine: Engine) -> int:
        return int(engine.scalar("SELECT COALESCE(MAX(id), 0) FROM {t:local_alx_api_logs}"))

    def http_pages(self) -> None:
        self.say("HTTP pages (4 gunicorn workers, one keep-alive client) and their floors")
        engine = self.engine()
        raw = site.raw_connect(self.url)
        client = load.Client(self.server.port)
        big, token, n, warm = self.big, self.tokens[self.big.id], self.repeat, 3

        def purge():
            engine.execute("DELETE FROM {t:local_alx_api_cache} WHERE companyid = ?", (big.id,))

        # 0. the fixed cost of a request: core_webservice_get_site_info (token, auth, log row; no page)
        info = [client.call(token, "core_webservice_get_site_info")[0] for _ in range(warm + n)][warm:]
        self.record("site_info", unit="ms", **stats(info), note="no page: the fixed cost of an authenticated call")

        # 1. cache hit: the offset-0 page of a pull, asked again (a new pull each time)
        mark = self._last_log(engine)
        self._series(client, token, [0] * warm)
        samples, counts = self._series(client, token, [0] * n)
        key, = engine.rows("SELECT cache_key FROM {t:local_alx_api_cache} WHERE companyid = ? "
                           "ORDER BY hit_count DESC LIMIT 1", (big.id,))[0]
        with engine.recording() as calls:
            from local_alx_report_api.classes import cache
            cache.read(engine, big.id, key, int(time.time()))
        sql, params = calls[0]
        fl, _ = floor(raw, sql, params, n)
        self.record("cache_hit", unit="ms", rows=counts[0], **stats(samples), floor=fl,
                    ratio=round(stats(samples)["median"] / fl["median"], 2), log=self._log_status(engine, mark, big.id),
                    target="median ≤ 5 ms", floor_sql="SELECT of the cache row by key")

        # 2. cache miss: a full pull's page at offset 0 (the company's cache purged before each)
        mark = self._last_log(engine)
        self._series(client, token, [0] * warm, before=purge)
        samples, counts = self._series(client, token, [0] * n, before=purge)
        req = self._request(engine, big)
        definition = pulls.Definition("full", 0, company_state.current(engine, big.id), False)
        with engine.recording() as calls:
            pulls.table_rows(engine, req, definition, after=(0, 0))
        fl, floor_rows = floor(raw, *calls[-1], n)
        miss = stats(samples)
        self.record("cache_miss_offset_0", unit="ms", rows=counts[0], floor_rows=floor_rows, **miss, floor=fl,
                    ratio=round(miss["median"] / fl["median"], 2), log=self._log_status(engine, mark, big.id),
                    target="≤ 2× floor")

        # 3. the page at the deep offset within a pull: the token's pull is moved there (its state
        # as if the pages before had been read), then pages are read on, each a cache miss
        deep = min(self.size.deep_offset, self._active_rows(engine, big.id) - (n + warm + 1) * LIMIT)
        deep -= deep % LIMIT
        start = deep - warm * LIMIT
        key_before = pulls.table_rows(engine, replace(req, limit=1), definition, offset=start - 1)[0].progress.key
        client.page(token, LIMIT, 0)  # a pull in progress
        state = engine.execute("SELECT id, state_data FROM {t:local_alx_api_sync_status} WHERE companyid = ? "
                               "AND kind = 'api'", (big.id,)).fetchone()
        data = json.loads(state[1])
        data["open"][0].update(next_offset=start, after=list(key_before), prev_offset=None, prev_after=None, rows=start)
        engine.execute("UPDATE {t:local_alx_api_sync_status} SET state_data = ? WHERE id = ?",
                       (json.dumps(data), state[0]))
        purge()
        mark = self._last_log(engine)
        self._series(client, token, [start + i * LIMIT for i in range(warm)])
        samples, counts = self._series(client, token, [deep + i * LIMIT for i in range(n)])
        key_deep = pulls.table_rows(engine, replace(req, limit=1), definition, offset=deep - 1)[0].progress.key
        with engine.recording() as calls:
            pulls.table_rows(engine, req, definition, after=key_deep)
        fl, floor_rows = floor(raw, *calls[-1], n)
        got = stats(samples)
        self.record("deep_page", unit="ms", offset=deep, rows=counts[0], floor_rows=floor_rows, **got, floor=fl,
                    ratio=round(got["median"] / fl["median"], 2),
                    vs_offset_0=round(got["median"] / miss["median"], 2),
                    log=self._log_status(engine, mark, big.id), target="≤ 1.2× the offset-0 page")

        # 4. live-table fallback: a company that was never filled
        fb, fb_token = self.fallback, self.tokens[self.fallback.id]
        mark = self._last_log(engine)
        self._series(client, fb_token, [0] * warm)
        samples, counts = self._series(client, fb_token, [0] * n)
        with engine.recording() as calls:
            pulls.live_page(engine, self._request(engine, fb), after=(0, 0), offset=0)
        fl, floor_rows = floor(raw, *calls[-1], n)
        got = stats(samples)
        self.record("fallback_live_page", unit="ms", rows=counts[0], floor_rows=floor_rows, **got, floor=fl,
                    ratio=round(got["median"] / fl["median"], 2), log=self._log_status(engine, mark, fb.id),
                    target="≤ 3× floor")
        client.close()
        raw.close()
        engine.db.close()

    def _active_rows(self, engine: Engine, companyid: int) -> int:
        return int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = ? "
                                 "AND is_deleted = 0", (companyid,)))

    # -- sync -----------------------------------------------------------------------------------
    def _task_env(self, engine: Engine) -> TaskEnv:
        settings = load_settings(self.ini)
        return TaskEnv(engine, Moodle(engine), settings, lambda: int(time.time()), lambda text: None)

    def sync(self) -> None:
        self.say("sync task: first run after populate (full check), then runs after changed pairs")
        engine = self.engine()
        env = self._task_env(engine)
        t0 = time.perf_counter()
        summary = sync_reporting_data_task.execute(env, companies=self.filled)
        first = time.perf_counter() - t0
        self.record("sync_first_run", unit="s", seconds=round(first, 2), pairs=summary["pairs"],
                    changed=sum(summary[k] for k in ("inserted", "updated", "reactivated", "deleted")),
                    note="first run after populate: every company's full sync (no cutoffs yet)")
        # the big company's token: a completed pull right now (its watermark = the counter)
        self.watermark = company_state.current(engine, self.big.id)
        learners = [r[0] for r in engine.rows("SELECT id FROM {t:user} WHERE username LIKE 'learner%' AND deleted = 0 "
                                              "AND suspended = 0 ORDER BY id")]
        rows = self._active_rows_all(engine)
        per_user = rows / max(1, int(engine.scalar("SELECT COUNT(DISTINCT userid) FROM {t:local_alx_api_reporting}")))
        step = max(1, round(SYNC_CHANGES[self.size.name] / per_user))
        runs = []
        for r in range(max(1, min(self.repeat, 5))):
            chosen = learners[(r * step) % len(learners):][:step]
            marks = ", ".join("?" * len(chosen))
            with engine.db.atomic():
                engine.execute(f"UPDATE {{t:user}} SET firstname = ?, timemodified = ? WHERE id IN ({marks})",
                               (f"Bench{int(time.time())}r{r}", int(time.time()), *chosen))
            expected = int(engine.scalar(f"SELECT COUNT(*) FROM {{t:local_alx_api_reporting}} WHERE is_deleted = 0 "
                                         f"AND companyid <> ? AND userid IN ({marks})", (self.fallback.id, *chosen)))
            time.sleep(1)  # the change lies strictly before the run's clock second
            t0 = time.perf_counter()
            summary = sync_reporting_data_task.execute(env, companies=self.filled)
            elapsed = time.perf_counter() - t0
            changed = sum(summary[k] for k in ("inserted", "updated", "reactivated", "deleted"))
            runs.append({"seconds": round(elapsed, 3), "changed": changed, "expected": expected,
                         "companies": summary["processed"], "pairs_checked": summary["pairs"]})
            self.say(f"  sync run {r + 1}: {runs[-1]}")
        secs = [r["seconds"] for r in runs]
        self.record("sync_changed_pairs", unit="s", runs=runs, rows=rows, min=min(secs),
                    median=round(statistics.median(secs), 3), max=max(secs),
                    target=f"≤ 5 s for 10,000 changed pairs among 1M rows ({SYNC_CHANGES[self.size.name]} at this size)")
        engine.db.close()

    def _active_rows_all(self, engine: Engine) -> int:
        return int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE is_deleted = 0"))

    # -- incremental ----------------------------------------------------------------------------
    def incremental(self) -> None:
        self.say("incremental page: the big company's token after the sync runs (watermark before them)")
        engine = self.engine()
        raw = site.raw_connect(self.url)
        client = load.Client(self.server.port)
        big, token, n, warm = self.big, self.tokens[self.big.id], self.repeat, 3

        def completed_pull():
            engine.execute("UPDATE {t:local_alx_api_sync_status} SET change_seq = ?, last_sync_timestamp = ?, "
                           "last_sync_status = 'success' WHERE companyid = ? AND kind = 'api'",
                           (self.watermark, int(time.time()), big.id))
            engine.execute("DELETE FROM {t:local_alx_api_cache} WHERE companyid = ?", (big.id,))

        mark = self._last_log(engine)
        self._series(client, token, [0] * warm, before=completed_pull)
        samples, counts = self._series(client, token, [0] * n, before=completed_pull)
        req = self._request(engine, big)
        definition = pulls.Definition("incremental", self.watermark, company_state.current(engine, big.id), True)
        with engine.recording() as calls:
            pulls.table_rows(engine, req, definition, after=(0, 0))
        fl, floor_rows = floor(raw, *calls[-1], n)
        got = stats(samples)
        self.record("incremental_page", unit="ms", rows=counts[0], floor_rows=floor_rows, **got, floor=fl,
                    ratio=round(got["median"] / fl["median"], 2), log=self._log_status(engine, mark, big.id),
                    since=self.watermark, target="≤ 2× floor")
        client.close()
        raw.close()
        engine.db.close()

    # -- throughput and memory ------------------------------------------------------------------
    def throughput_and_rss(self) -> None:
        wrk = load.ensure_wrk(self.say)
        if wrk is None:
            self.results["notes"].append("wrk is not installed: throughput and RSS under load not measured")
            return
        engine = self.engine()
        # mixed pulls: two companies answer from the cache after their first pass, two have the
        # cache switched off (every page read from the table); one connection per company
        chosen = [self.big] + [c for c in self.filled if c.id != self.big.id][:3]
        now = int(time.time())
        for company in chosen[2:]:
            engine.execute("DELETE FROM {t:local_alx_api_settings} WHERE companyid = ? AND setting_name = 'enable_cache'",
                           (company.id,))
            engine.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
                           "timemodified) VALUES (?, 'enable_cache', '0', ?, ?)", (company.id, now, now))
        pages = [max(1, self._active_rows(engine, c.id) // LIMIT) for c in chosen]
        pages[0] = min(pages[0], 20)  # the big company: its first 20 pages, over and over
        tokens = [self.tokens[c.id] for c in chosen]
        seconds = 30 if self.size.name == "full" else 15
        self.say(f"throughput: wrk, 4 connections, mixed pulls, {seconds} s")
        mark = self._last_log(engine)
        result = load.run_wrk(wrk, self.server.port, tokens, pages, seconds)
        rows, requests, mix = self._log_totals(engine, mark)
        self.record("throughput", unit="requests/s", requests_per_second=result.get("requests_per_second"),
                    rows_per_second=round(rows / seconds), requests=result.get("requests"), logged_requests=requests,
                    non_2xx=result.get("non_2xx", 0), mix=mix, seconds=seconds, wrk_output=result["output"],
                    target="reported")
        self.say(f"RSS: {self.soak} s of the same load, worker RSS sampled every 5 s")
        samples: list[dict] = []
        import threading
        done = threading.Event()

        def sample():
            t0 = time.monotonic()
            while not done.is_set():
                samples.append({"t": round(time.monotonic() - t0, 1), "rss": self.server.worker_rss()})
                done.wait(5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        mark = self._last_log(engine)
        result = load.run_wrk(wrk, self.server.port, tokens, pages, self.soak)
        done.set()
        sampler.join()
        rows, requests, mix = self._log_totals(engine, mark)
        workers = sorted({pid for s in samples for pid in s["rss"]})
        per_worker = {}
        for pid in workers:
            series = [(s["t"], s["rss"][pid]) for s in samples if pid in s["rss"]]
            head = [v for t, v in series if t <= series[-1][0] * 0.1 + 5]
            tail = [v for t, v in series if t >= series[-1][0] * 0.9 - 5]
            per_worker[str(pid)] = {"first_mb": round(series[0][1], 1), "after_warmup_mb": round(max(head), 1),
                                    "last_mb": round(series[-1][1], 1), "max_mb": round(max(v for _, v in series), 1),
                                    "growth_after_warmup_mb": round(statistics.mean(tail) - statistics.mean(head), 1)}
        self.record("rss_under_load", unit="MB", seconds=self.soak, requests=requests,
                    requests_per_second=result.get("requests_per_second"), rows=rows, mix=mix, workers=per_worker,
                    samples=samples, target="flat (no growth)")
        engine.db.close()

    def _log_totals(self, engine: Engine, since: int) -> tuple[int, int, dict]:
        rows = engine.rows("SELECT cache_status, COUNT(*), COALESCE(SUM(record_count), 0) FROM {t:local_alx_api_logs} "
                           "WHERE id > ? GROUP BY cache_status", (since,))
        return (sum(int(r[2]) for r in rows), sum(int(r[1]) for r in rows),
                {str(r[0] or "-"): int(r[1]) for r in rows})


def write(results: dict) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{results['started'][:10]}-{results['db']}-{results['size']}"
    json_path = RESULTS / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    md_path = RESULTS / f"{stem}.md"
    md_path.write_text(markdown(results))
    return json_path, md_path


def _ms(d: dict | None) -> str:
    return "" if not d else f"{d['min']} / {d['median']} / {d['p95']} / {d['max']}"


def markdown(r: dict) -> str:
    m = r["measurements"]
    lines = [f"### {r['db']}, {r['size']} ({r['started']}, code {r.get('commit', 'unknown')})", "",
             f"Fixture: {r['fixture']['companies']} companies + bigco ({r['fixture']['big_share']} % of the learners), "
             f"{r['fixture']['users']:,} users, {r['fixture']['courses']} courses, "
             f"{r['fixture']['enrolments_per_user']} enrolments per user; repeats {r['repeat']}, "
             f"HTTP through gunicorn with 4 workers on 127.0.0.1.", "",
             "| measurement | rows | min / median / p95 / max (ms) | floor min / median / p95 / max (ms) | ratio | target |",
             "|---|---|---|---|---|---|"]
    names = {"cache_hit": "cache hit, offset 0", "cache_miss_offset_0": "cache miss, full pull page at offset 0",
             "deep_page": "page at offset {offset} within a pull", "incremental_page": "incremental page (miss)",
             "fallback_live_page": "live-table fallback page"}
    for key, label in names.items():
        if key in m:
            x = m[key]
            ratio = f"{x['ratio']}×" + (f" (vs offset 0: {x['vs_offset_0']}×)" if "vs_offset_0" in x else "")
            lines.append(f"| {label.format(**x)} | {x.get('rows')} | {_ms(x)} | {_ms(x['floor'])} | {ratio} | "
                         f"{x['target']} |")
    if "site_info" in m:
        lines.append(f"| core_webservice_get_site_info (no page: a call's fixed cost) | | {_ms(m['site_info'])} | | | "
                     "reference |")
    lines += ["", "| measurement | figure | floor | ratio | target |", "|---|---|---|---|---|"]
    if "populate" in m:
        p = m["populate"]
        lines.append(f"| populate, {p['rows']:,} pairs ({len(p['runs'])} runs) | median {p['rows_per_second_median']:,} "
                     f"rows/s (best {p['rows_per_second_best']:,}), peak RSS {p['peak_rss_mb']} MB | INSERT … SELECT "
                     f"{p['floor_rows_per_second']:,} rows/s | {p['ratio']}× | {p['target']} |")
    if "sync_first_run" in m:
        s = m["sync_first_run"]
        lines.append(f"| sync, first run after populate ({s['pairs']:,} pairs checked, {s['changed']} changed) | "
                     f"{s['seconds']} s | | | |")
    if "sync_changed_pairs" in m:
        s = m["sync_changed_pairs"]
        changed = ", ".join(str(x["changed"]) for x in s["runs"])
        lines.append(f"| sync task, changed pairs per run: {changed} (of {s['rows']:,} rows) | min / median / max "
                     f"{s['min']} / {s['median']} / {s['max']} s | | | {s['target']} |")
    if "throughput" in m:
        t = m["throughput"]
        lines.append(f"| throughput, 4 workers, mixed pulls ({t['mix']}) | {t['requests_per_second']} requests/s, "
                     f"{t['rows_per_second']:,} rows/s | | | reported |")
    if "rss_under_load" in m:
        s = m["rss_under_load"]
        per = "; ".join(f"{w['after_warmup_mb']}→{w['last_mb']} MB (max {w['max_mb']})" for w in s["workers"].values())
        lines.append(f"| RSS per worker over {s['seconds']} s of load ({s['requests']} requests) | {per} | | | "
                     f"{s['target']} |")
    for note in r.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"
