"""A refresh storm on a primary alone, then on the same primary with a streaming replica (issue
17): a PostgreSQL primary of the bench's own (initdb on a free port) with the fixture site, and a
standby made by pg_basebackup -R. The storm: CLIENTS keep-alive connections, each pulling whole
companies (full pulls, 1000-row pages) from a queue holding every company's manager token
ROUNDS times (the second round meets the pages the first one cached), through
`serve --workers 4`.

Measured per variant: pages per second; the CPU time of the primary's and the replica's server
processes (psutil, their backends' user + system time) and what pg_stat_database counts on each
(rows returned and fetched, blocks read from cache or disk); from the request log, how many
pages were read from a table on the primary, on the replica, or from the cache."""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench import fixture, load, site
from bench.run import LIMIT
from tests.faults import PostgresServer

CLIENTS = 8
ROUNDS = 2
VARIANTS = (("primary only", False, True), ("with a replica", True, True),
            ("primary only, cache off", False, False), ("with a replica, cache off", True, False))
STAT = ("tup_returned", "tup_fetched", "blks_hit", "blks_read", "xact_commit")


def server_cpu(server: PostgresServer) -> float:
    """User + system seconds of the cluster's processes (the postmaster and its children)."""
    pid = int(Path(f"{server.dir}/data/postmaster.pid").read_text().split()[0])
    total = 0.0
    postmaster = psutil.Process(pid)
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def db_stats(server: PostgresServer) -> dict[str, int]:
    row = server.psql(f"SELECT {', '.join(STAT)} FROM pg_stat_database WHERE datname = current_database()")
    return dict(zip(STAT, (int(v) for v in row.split("|")), strict=True))


class Storm(site.FixtureBench):
    def __init__(self, size: fixture.Size, repeat: int, say=print):
        self.primary = PostgresServer(database="alx_bench_replicas")
        super().__init__("postgresql", size, self.primary.url, repeat, say, variants={})
        self.standby: PostgresServer | None = None

    def prepare(self) -> None:
        fixture.ensure(self.url, self.size, say=self.say)
        self.populate_if_empty()
        engine = self.engine()
        engine.db.execute_sql("VACUUM ANALYZE")
        self.tokens = [t for (t,) in engine.rows(
            "SELECT MIN(t.token) FROM {t:external_tokens} t JOIN {t:company_users} cu ON cu.userid = t.userid AND "
            "cu.managertype = 1 GROUP BY cu.companyid ORDER BY cu.companyid")]
        self.pairs = int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE is_deleted = 0"))
        engine.db.close()
        self.say(f"standby: pg_basebackup of the primary ({self.pairs} report rows, {len(self.tokens)} companies)")
        self.standby = PostgresServer(standby_of=self.primary, database=self.primary.database)
        self.standby.caught_up_with(self.primary)

    def storm(self, port: int) -> dict:
        work: queue.Queue = queue.Queue()
        for _ in range(ROUNDS):
            for token in self.tokens:
                work.put(token)
        pages, rows, errors = [0], [0], []

        def client():
            conn = load.Client(port)
            try:
                while True:
                    try:
                        token = work.get_nowait()
                    except queue.Empty:
                        return
                    offset = 0
                    while True:
                        _, data = conn.call(token, load.FUNCTION, limit=LIMIT, offset=offset, mode="full")
                        answer = json.loads(data)
                        if not isinstance(answer, list):
                            raise RuntimeError(f"not a page: {data[:300]!r}")
                        pages[0] += 1
                        rows[0] += len(answer)
                        offset += len(answer)
                        if len(answer) < LIMIT:
                            break
            except Exception as exc:  # noqa: BLE001 - reported with the results
                errors.append(repr(exc))
            finally:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        if errors:
            raise RuntimeError(f"storm failed: {errors[:3]}")
        return {"seconds": round(seconds, 2), "pages": pages[0], "rows": rows[0],
                "pages_per_second": round(pages[0] / seconds, 1)}

    def variant(self, name: str, replica: bool, cache: bool) -> dict:
        engine = self.engine()
        for table in ("local_alx_api_cache", "local_alx_api_logs"):
            engine.execute(f"TRUNCATE TABLE {{t:{table}}}")
        engine.execute("DELETE FROM {t:local_alx_api_sync_status} WHERE kind <> 'cron'")  # the tokens' pulls
        engine.execute("DELETE FROM {t:local_alx_api_settings} WHERE setting_name = 'enable_cache'")
        if not cache:
            engine.executemany("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, "
                               "timecreated, timemodified) VALUES (?, 'enable_cache', 0, 0, 0)",
                               [(c,) for (c,) in engine.rows("SELECT id FROM {t:company}")])
        engine.db.close()
        self.standby.caught_up_with(self.primary)
        ini = site.settings_file(self.url, "replicas", name)
        if replica:
            ini.write_text(ini.read_text().replace("prefix = mdl_\n", f"prefix = mdl_\nreplica_urls = {self.standby.url}\n"))
        env = site.env_for(ini)
        self.say(f"{name}: serve --workers 4, {CLIENTS} clients pulling {len(self.tokens)} companies {ROUNDS} times")
        server = load.Server(env, workers=4)
        try:
            cpu = {"primary": server_cpu(self.primary), "replica": server_cpu(self.standby)}
            stats = {"primary": db_stats(self.primary), "replica": db_stats(self.standby)}
            out = self.storm(server.port)
            out["cpu_seconds"] = {k: round(server_cpu(s) - cpu[k], 2)
                                  for k, s in (("primary", self.primary), ("replica", self.standby))}
            out["pg_stat_database"] = {k: {f: v - stats[k][f] for f, v in db_stats(s).items()}
                                       for k, s in (("primary", self.primary), ("replica", self.standby))}
        finally:
            server.stop()
        engine = self.engine()
        reads = {"table_primary": 0, "table_replica": 0, "cache_primary": 0, "cache_replica": 0}
        for source, extra in engine.rows("SELECT data_source, additional_data FROM {t:local_alx_api_logs} "
                                         "WHERE endpoint = ?", (load.FUNCTION,)):
            on = "replica" if extra and json.loads(extra).get("replica") else "primary"
            reads[f"{'cache' if source == 'cache' else 'table'}_{on}"] += 1
        engine.db.close()
        out["page_reads"] = reads
        out["primary_share_of_page_reads"] = round(
            100 * (reads["table_primary"] + reads["cache_primary"]) / max(sum(reads.values()), 1), 1)
        self.say(f"{name}: {out['pages_per_second']} pages/s, primary CPU {out['cpu_seconds']['primary']} s, "
                 f"page reads {reads}")
        return out

    def run(self) -> dict:
        try:
            self.prepare()
            runs: dict[str, list[dict]] = {name: [] for name, _, _ in VARIANTS}
            for _ in range(self.repeat):  # interleaved: a drift of the machine meets every variant alike
                for name, replica, cache in VARIANTS:
                    runs[name].append(self.variant(name.replace(" ", "-").replace(",", ""), replica, cache))
            for name, done in runs.items():  # the run of the median primary CPU, with every run's figures
                middle = sorted(done, key=lambda v: v["cpu_seconds"]["primary"])[len(done) // 2]
                self.results["variants"][name] = {**middle, "runs": [
                    {"pages_per_second": v["pages_per_second"], "cpu_seconds": v["cpu_seconds"]} for v in done]}
        finally:
            if self.standby is not None:
                self.standby.remove()
            self.primary.remove()
        return self.results


def markdown(r: dict) -> str:
    lines = [f"### Refresh storm, primary alone and with a streaming replica, {r['size']} ({r['started']}, code "
             f"{r['commit']})", "",
             f"{CLIENTS} clients pull every company's rows {ROUNDS} times (full pulls, {LIMIT}-row pages) through "
             "`serve --workers 4`; primary and replica are PostgreSQL 15 clusters on this 2-core machine, beside the "
             f"server and the clients. CPU: the clusters' processes; reads: the request log. The run of the median "
             f"primary CPU of {r['repeat']} (variants interleaved); pages/s of every run in the JSON.", "",
             "| variant | pages/s | primary CPU s | replica CPU s | primary rows returned + fetched | "
             "pages read from the table on the primary / on the replica | from the cache on the primary / on the "
             "replica | primary's share of page reads |",
             "|---|---|---|---|---|---|---|---|"]
    for name, v in r["variants"].items():
        p, reads = v["pg_stat_database"]["primary"], v["page_reads"]
        lines.append(f"| {name} | {v['pages_per_second']} | {v['cpu_seconds']['primary']} | "
                     f"{v['cpu_seconds']['replica']} | {p['tup_returned'] + p['tup_fetched']:,} | "
                     f"{reads['table_primary']} / {reads['table_replica']} | {reads['cache_primary']} / "
                     f"{reads['cache_replica']} | {v['primary_share_of_page_reads']}% |")
    return "\n".join(lines) + "\n"


def main(size: fixture.Size, repeat: int, say) -> tuple[dict, str]:
    from bench.run import _commit

    bench = Storm(size, repeat, say)
    bench.results.update(started=datetime.now(UTC).isoformat(timespec="seconds"), commit=_commit(),
                         clients=CLIENTS, rounds=ROUNDS)
    results = bench.run()
    return results, markdown(results)
