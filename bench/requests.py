"""The request path against its floors, before and after (issue 15): the same fixture served by
an earlier commit's code (`--baseline REF`, unpacked with `git archive`) and by this checkout's,
one after the other in one run, each with `serve --workers 4`; then this checkout's code with
gthread workers, to choose the worker model. Every latency is the median of `repeat` requests
over one client connection after WARM warm-ups; floors are the same statements through the
bare driver, measured once in the same run."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from bench import fixture, load, site
from bench.run import LIMIT, floor, stats
from local_alx_report_api.classes import company_state, installer, pulls
from local_alx_report_api.classes.progress import Scope
from local_alx_report_api.settings import load as load_settings
from moodle_core.moodle import Moodle

ROOT = Path(__file__).resolve().parent.parent
WARM = 12  # requests before each series: 3 for each of the 4 workers (a connection goes to any of them)


def unpack(ref: str) -> tuple[Path, str]:
    """The code of `ref` in a temporary folder (no work tree of git's), and its short hash."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    target = Path(tempfile.mkdtemp(prefix=f"alx-baseline-{commit}-"))
    archive = subprocess.run(["git", "archive", "--format=tar", ref, "local_alx_report_api", "moodle_core",
                              "webservice", "install.json"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    # the package reads install.json beside itself when it is not installed (a source tree)
    return target, commit


class RequestPath(site.FixtureBench):
    def __init__(self, db: str, size: fixture.Size, url: str, repeat: int, baseline: str, say=print):
        super().__init__(db, size, url, repeat, say, variants={})
        self.baseline = baseline

    # -- the site: fixture, a populated table, the big company's token ----------------------------
    def prepare(self) -> None:
        fixture.ensure(self.url, self.size, say=self.say)
        engine = self.engine()
        installer.install(engine, int(time.time()))  # this checkout's storage choices (decision 119), for both variants
        companies = Moodle(engine).companies()
        self.big = next(c for c in companies if c.shortname == fixture.BIG_SHORTNAME)
        self.tokens = {int(cid): tok for cid, tok in engine.rows(
            "SELECT cu.companyid, t.token FROM {t:external_tokens} t JOIN {t:company_users} cu ON cu.userid = t.userid "
            "AND cu.managertype = 1")}
        self.mixed = [self.big] + [c for c in companies if c.id != self.big.id][:3]
        engine.db.close()
        self.populate_if_empty()
        engine = self.engine()
        now = int(time.time())
        for company in self.mixed[2:]:  # the throughput mix: two companies with the cache off
            engine.execute("DELETE FROM {t:local_alx_api_settings} WHERE companyid = ? AND setting_name = "
                           "'enable_cache'", (company.id,))
            engine.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, "
                           "timecreated, timemodified) VALUES (?, 'enable_cache', 0, ?, ?)", (company.id, now, now))
        seqs = sorted(int(r[0]) for r in engine.rows("SELECT change_seq FROM {t:local_alx_api_reporting} WHERE "
                                                     "companyid = ?", (self.big.id,)))
        self.since = seqs[-5 * LIMIT]  # an incremental pull of the company's last 5000 changes
        self.pages = [max(1, min(20, self._rows(engine, c.id) // LIMIT)) for c in self.mixed]
        engine.db.close()

    def _rows(self, engine, companyid: int) -> int:
        return int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = ? "
                                 "AND is_deleted = 0", (companyid,)))

    # -- floors ---------------------------------------------------------------------------------------
    def floors(self) -> None:
        engine, raw, n = self.engine(), site.raw_connect(self.url), self.repeat
        settings = load_settings(self.ini).local_alx_report_api
        scope = Scope.load(engine, self.big.id, settings.report_roles)
        req = pulls.PageRequest(self.big.id, "", 0, LIMIT, 0, scope, 0, 24, True, True, int(time.time()), "UTC")
        until = company_state.current(engine, self.big.id)
        out = self.results["floors"]
        for name, definition in (("page", pulls.Definition("full", 0, until, False)),
                                 ("incremental", pulls.Definition("incremental", self.since, until, True))):
            with engine.recording() as calls:
                pulls.table_rows(engine, req, definition, after=(0, 0))
            out[name], _ = floor(raw, *calls[-1], n)
        raw.close()
        engine.db.close()

    # -- one variant of the code ----------------------------------------------------------------------
    def vacuum(self) -> None:
        """What autovacuum does on a production server (off on this CI machine's PostgreSQL): the
        dead versions of hit-counted cache rows and pull states of one variant do not slow the next."""
        engine = self.engine()
        if engine.kind == "postgresql":
            engine.db.execute_sql("VACUUM ANALYZE " + ", ".join(engine.table(t) for t in site.PLUGIN_STATE))
        engine.db.close()

    def variant(self, label: str, code: Path | None, extra: tuple[str, ...] = (), latencies: bool = True) -> None:
        self.vacuum()
        env = dict(self.env)
        if code is not None:
            env["PYTHONPATH"] = str(code)
        self.say(" ".join([f"{label}: serve --workers 4", *extra]))
        server = load.Server(env, workers=4, extra=extra)
        got: dict = {}
        try:
            if latencies:
                got.update(self._latencies(server.port))
            wrk = load.ensure_wrk(self.say)
            if wrk is not None:
                seconds = 20
                engine = self.engine()
                mark = int(engine.scalar("SELECT COALESCE(MAX(id), 0) FROM {t:local_alx_api_logs}"))
                result = load.run_wrk(wrk, server.port, [self.tokens[c.id] for c in self.mixed], self.pages, seconds)
                mix = {str(s or "-"): int(n) for s, n in engine.rows(
                    "SELECT cache_status, COUNT(*) FROM {t:local_alx_api_logs} WHERE id > ? GROUP BY cache_status",
                    (mark,))}
                engine.db.close()
                got["throughput"] = {"requests_per_second": result.get("requests_per_second"),
                                     "non_2xx": result.get("non_2xx", 0), "mix": mix, "seconds": seconds}
        finally:
            server.stop()
        self.results["variants"][label] = got
        self.say(f"  {json.dumps({k: v.get('median', v.get('requests_per_second')) for k, v in got.items()})}")

    def _latencies(self, port: int) -> dict:
        client, engine = load.Client(port), self.engine()
        token, big, n = self.tokens[self.big.id], self.big.id, self.repeat

        def purge():
            engine.execute("DELETE FROM {t:local_alx_api_cache} WHERE companyid = ?", (big,))

        def incremental():
            engine.execute("UPDATE {t:local_alx_api_sync_status} SET change_seq = ?, last_sync_timestamp = ?, "
                           "last_sync_status = 'success' WHERE companyid = ? AND kind = 'api'",
                           (self.since, int(time.time()), big))
            purge()

        def series(fmt="json", before=None, function=pulls.FUNCTION, **params):
            samples = []
            for i in range(WARM + n):
                if before:
                    before()
                elapsed, _ = client.call(token, function, fmt, **params)
                if i >= WARM:
                    samples.append(elapsed)
            return stats(samples)

        page = {"limit": LIMIT, "offset": 0, "mode": "full"}
        out = {"site_info": series(function="core_webservice_get_site_info"), "cache_hit": series(**page)}
        key = engine.scalar("SELECT cache_key FROM {t:local_alx_api_cache} WHERE companyid = ? ORDER BY hit_count "
                            "DESC", (big,))
        with engine.recording() as calls:  # what a hit needs from the database: the entry it read, by key
            engine.execute("SELECT cache_data FROM {t:local_alx_api_cache} WHERE cache_key = ? AND companyid = ?",
                           (key, big)).fetchone()
        raw = site.raw_connect(self.url)
        self.results["floors"]["cache"], _ = floor(raw, *calls[-1], n)  # the last variant's: this checkout's
        raw.close()
        out.update(cache_hit_xml=series("xml", **page), cache_miss=series(before=purge, **page),
                   cache_miss_xml=series("xml", before=purge, **page),
                   incremental=series(before=incremental, limit=LIMIT, offset=0))
        client.close()
        engine.db.close()
        return out

    def run(self) -> dict:
        self.prepare()
        code, commit = unpack(self.baseline)
        self.results["baseline"] = commit
        try:
            self.variant(f"before ({commit})", code)
            self.variant("after", None)
            self.floors()
            # throughput varies from run to run on a shared 2-core machine: a second round of each
            self.variant(f"before ({commit}), second round", code, latencies=False)
            self.variant("after, second round", None, latencies=False)
            self.variant("after, gthread 4 threads", None, ("--threads", "4"), latencies=False)
        finally:
            subprocess.run(["rm", "-rf", str(code)])
        return self.results


ROWS = [("site_info", "core_webservice_get_site_info (no page)", None, "≤ 1.2 ms"),
        ("cache_hit", "cache hit, 1000 rows, JSON", "cache", "≤ 2.5 ms and ≤ 3× floor"),
        ("cache_hit_xml", "cache hit, 1000 rows, XML", "cache", "within 1.5× of JSON"),
        ("cache_miss", "cache miss at offset 0, 1000 rows, JSON", "page", "≤ 3× floor"),
        ("cache_miss_xml", "cache miss at offset 0, 1000 rows, XML", "page", "within 1.5× of JSON"),
        ("incremental", "incremental page (miss)", "incremental", "≤ 2× floor")]


def markdown(r: dict) -> str:
    names = list(r["variants"])
    before, after = names[0], names[1]
    lines = [f"### Request path, {r['db']} {r['size']} ({r['started']}, code {r['commit']}, before = {r['baseline']})",
             "", "Medians of " + str(r["repeat"]) + f" requests after {WARM} warm-ups (ms); the ratio is against the floor "
             "(the same statement with the bare driver, measured in this run).", "",
             "| measurement | floor | before | after | after / floor | before / after | target |",
             "|---|---|---|---|---|---|---|"]
    for key, label, floor_key, target in ROWS:
        b, a = r["variants"][before].get(key), r["variants"][after].get(key)
        fl = r["floors"].get(floor_key) if floor_key else None
        if not (a and b):
            continue
        ratio = f"{a['median'] / fl['median']:.1f}×" if fl else ""
        lines.append(f"| {label} | {fl['median'] if fl else ''} | {b['median']} | {a['median']} | {ratio} | "
                     f"{b['median'] / a['median']:.1f}× | {target} |")
    lines += ["", "| throughput, wrk, 4 connections, mixed pulls (20 s) | requests/s | non-2xx | hit / miss / off |",
              "|---|---|---|---|"]
    for name, got in r["variants"].items():
        t = got.get("throughput")
        if t:
            mix = " / ".join(str(t["mix"].get(k, 0)) for k in ("hit", "miss", "off"))
            lines.append(f"| {name} | {t['requests_per_second']} | {t['non_2xx']} | {mix} |")
    rates = {name: got["throughput"]["requests_per_second"] for name, got in r["variants"].items()
             if got.get("throughput") and "gthread" not in name}
    before_rate = sum(v for k, v in rates.items() if k.startswith("before"))
    after_rate = sum(v for k, v in rates.items() if k.startswith("after"))
    if before_rate and after_rate:
        lines += ["", f"Throughput after / before, both rounds: **{after_rate / before_rate:.2f}×** "
                  "(target ≥ 3×)."]
    return "\n".join(lines) + "\n"


def main(db: str, size: fixture.Size, url: str, repeat: int, baseline: str, say) -> tuple[dict, str]:
    from datetime import UTC, datetime

    from bench.run import _commit
    bench = RequestPath(db, size, url, repeat, baseline, say)
    bench.results.update(started=datetime.now(UTC).isoformat(timespec="seconds"), commit=_commit())
    results = bench.run()
    return results, markdown(results)


if __name__ == "__main__":  # pragma: no cover
    os.sys.exit("use: python -m bench requests")
