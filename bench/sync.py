"""The sync task and populate, before and after (issue 16): the same fixture populated and synced by
an earlier commit's code (`--baseline REF`, unpacked with `git archive`) and by this checkout's,
one after the other in one run. Each variant starts from its own populate (measured, next to the
in-database INSERT ... SELECT floor of the same run), then runs the task: its first run (a full
check), quiet runs (nothing changed) and runs after 1k, 10k and 100k changed pairs (profile edits
of learners, every pair of each counted). Every run is the task in a process of the variant's own
code with a clock set by the bench: each round lies 700 s after the last, so a round's edits are
found by its run (and, within `sync_lookback_seconds` of a source's mark, by the next). Freshness
is measured first, on the real clock."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import fixture, load, site
from bench.requests import ROOT, unpack
from bench.run import RESULTS, populate_floor, timed_populate
from local_alx_report_api.settings import load as load_settings
from moodle_core import engines, generator
from moodle_core.moodle import Moodle

# the task in the variant's process: its own code, the bench's clock; prints its summary as JSON
RUNNER = r"""
import json, sys, time
from local_alx_report_api.settings import load
from local_alx_report_api.task import TaskEnv, sync_reporting_data_task
from moodle_core import engines
from moodle_core.moodle import Moodle
args = json.loads(sys.argv[1])
engine = engines.connect(args["url"], "mdl_")
env = TaskEnv(engine, Moodle(engine), load(args["ini"]), lambda: args["now"], lambda text: None)
started = time.perf_counter()
summary = sync_reporting_data_task.execute(env)
print(json.dumps({"seconds": round(time.perf_counter() - started, 3), **summary}))
"""
CHANGED = {"small": (200, 2_000, 10_000), "medium": (1_000, 5_000, 50_000), "full": (1_000, 10_000, 100_000),
           "many": (1_000, 10_000)}
ROUND = 700  # seconds between rounds: more than sync_lookback_seconds (600)


class SyncBench:
    def __init__(self, db: str, size: fixture.Size, url: str, repeat: int, baseline: str, say=print,
                 freshness: int = 0):
        self.db, self.size, self.url, self.repeat, self.baseline, self.say = db, size, url, repeat, baseline, say
        self.freshness_samples = freshness
        self.ini = site.settings_file(url, db, size.name)
        self.results: dict = {"db": db, "size": size.name, "repeat": repeat, "variants": {}}

    def engine(self) -> engines.Engine:
        return engines.connect(self.url, "mdl_")

    def _env(self, code: Path | None) -> tuple[dict, str]:
        env = site.env_for(self.ini)
        if code is not None:
            env["PYTHONPATH"] = str(code)
        return env, str(code or ROOT)

    def vacuum(self) -> None:
        engine = self.engine()
        if engine.kind == "postgresql":  # autovacuum is off on this machine's server
            engine.db.execute_sql("VACUUM ANALYZE")
        engine.db.close()

    def populate(self, code: Path | None) -> dict:
        engine = self.engine()
        # earlier edits carry the bench's clock, ahead of the real one: back before the fixture's
        # times, or the runs of this variant would find another variant's edits
        engine.execute("UPDATE {t:user} SET timemodified = ? WHERE timemodified > ?",
                       (generator.BASE_TIME, generator.BASE_TIME))
        site.reset_plugin_state(engine)
        engine.db.close()
        self.vacuum()
        env, cwd = self._env(code)
        out = timed_populate([sys.executable, "-m", "local_alx_report_api.cli", "populate", "--quiet"], env,
                             self.url, cwd)
        self.vacuum()
        return out

    def task(self, code: Path | None) -> dict:
        self.clock += ROUND
        env, cwd = self._env(code)
        args = json.dumps({"url": self.url, "ini": str(self.ini), "now": self.clock})
        done = subprocess.run([sys.executable, "-c", RUNNER, args], env=env, cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"sync failed: {done.stderr[-2000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        out["changed"] = sum(out[k] for k in ("inserted", "updated", "reactivated", "deleted"))
        return {k: out[k] for k in ("seconds", "processed", "pairs", "changed", "stopped")}

    def change(self, pairs: int) -> int:
        """Profile edits of learners in the round before the run, about `pairs` active rows; returns
        the active rows of the edited learners (what the run must rewrite)."""
        engine = self.engine()
        learners = self.learners
        step = max(1, round(pairs / self.per_user))
        chosen = learners[self.cursor % len(learners):][:step]
        self.cursor += step
        marks = ", ".join(str(int(u)) for u in chosen)
        with engine.db.atomic():
            engine.execute(f"UPDATE {{t:user}} SET firstname = ?, timemodified = ? WHERE id IN ({marks})",
                           (f"B{self.clock}", self.clock + 1))
        expected = int(engine.scalar(f"SELECT COUNT(*) FROM {{t:local_alx_api_reporting}} WHERE is_deleted = 0 "
                                     f"AND userid IN ({marks})"))
        engine.db.close()
        return expected

    def variant(self, label: str, code: Path | None) -> None:
        self.say(f"{label}: populate")
        out: dict = {"populate": self.populate(code)}
        self.say(f"  {out['populate']}")
        out["first"] = self.task(code)
        self.say(f"  first run after populate: {out['first']}")
        out["quiet"] = [self.task(code) for _ in range(self.repeat)]
        self.say(f"  quiet runs: {[r['seconds'] for r in out['quiet']]}")
        out["changed"] = {}
        self.cursor = 0
        for target in CHANGED[self.size.name]:
            runs = []
            for _ in range(self.repeat if target == CHANGED[self.size.name][1] else 1):
                expected = self.change(target)
                run = self.task(code)
                run["expected"] = expected
                runs.append(run)
                self.say(f"  {target} changed pairs: {run}")
            out["changed"][str(target)] = runs
        self.results["variants"][label] = out

    def run(self) -> dict:
        fixture.ensure(self.url, self.size, say=self.say)
        engine = self.engine()
        self.companies = Moodle(engine).companies()
        self.learners = [int(r[0]) for r in engine.rows(
            "SELECT id FROM {t:user} WHERE username LIKE 'learner%' AND deleted = 0 AND suspended = 0 ORDER BY id")]
        enrolments = int(engine.scalar("SELECT COUNT(*) FROM {t:user_enrolments}"))
        engine.db.close()
        self.per_user = enrolments / max(1, len(self.learners)) * 1.3  # pairs per learner (second memberships)
        self.results["companies"] = len(self.companies)
        if self.freshness_samples:  # first: on the real clock, from this checkout's populate
            self.say("freshness: populate, then cron with the sync task every minute")
            self.populate(None)
            self.results["freshness"] = self.freshness(self.freshness_samples)
        # the rounds' clock: after every real time so far (populate, the freshness edits)
        self.clock = int(time.time()) + 60
        code, commit = unpack(self.baseline)
        self.results["baseline"] = commit
        self.variant("before", code)
        self.variant("after", None)
        roles = load_settings(self.ini).local_alx_report_api.report_roles
        self.results["floor_seconds"] = round(populate_floor(self.url, roles, self.companies), 2)
        self.results["rows"] = self.results["variants"]["after"]["populate"]["rows"]
        return self.results

    # -- freshness: a Moodle change until the API serves it ----------------------------------------
    def freshness(self, samples: int) -> dict:
        """This checkout's server and `cron --keep-alive` with the sync task every minute, under the
        mixed read load of `bench run` (wrk: the big company's first pages, a company from the
        cache, two with the cache off); a learner's profile edited now and then, at a different
        second of the minute each time; each sample is the time from the edit's commit to the
        first page of the learner's company that shows it (pages polled every second)."""
        ini = self.ini.with_name(self.ini.stem + "-every-minute.ini")
        ini.write_text(self.ini.read_text() + "\n[scheduled_tasks]\nsync_reporting_data_task = * * * * *\n")
        env = site.env_for(ini)
        engine = self.engine()
        tokens = {int(cid): tok for cid, tok in engine.rows(
            "SELECT cu.companyid, t.token FROM {t:external_tokens} t JOIN {t:company_users} cu ON cu.userid = t.userid "
            "AND cu.managertype = 1")}
        big = next(c for c in self.companies if c.shortname == fixture.BIG_SHORTNAME)
        regular = [c for c in self.companies if c.id != big.id]
        mix = [big] + regular[:3]
        now = int(time.time())
        for company in mix[2:]:  # as bench run's throughput mix: two companies with the cache off
            engine.execute("DELETE FROM {t:local_alx_api_settings} WHERE companyid = ? AND setting_name = "
                           "'enable_cache'", (company.id,))
            engine.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, "
                           "timecreated, timemodified) VALUES (?, 'enable_cache', 0, ?, ?)", (company.id, now, now))
        pages = [min(20, max(1, self._active(engine, c.id) // 1000)) for c in mix]
        targets = regular[10::max(1, len(regular) // (samples + 1))][:samples]
        wrk = load.ensure_wrk(self.say)
        server = load.Server(env, workers=4)
        cron = subprocess.Popen([load.CLI, "cron", "--keep-alive", "--quiet"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        duration = 75 * (samples + 2)
        loader = None
        if wrk:
            import threading

            loader = threading.Thread(target=load.run_wrk, args=(wrk, server.port, [tokens[c.id] for c in mix], pages,
                                                                 duration))
            loader.start()
        client = load.Client(server.port)
        results = []
        try:
            time.sleep(20)  # the load and the first pass of cron under way
            for n, company in enumerate(targets):
                learner = int(engine.scalar("SELECT userid FROM {t:local_alx_api_reporting} WHERE companyid = ? "
                                            "AND is_deleted = 0 ORDER BY userid LIMIT 1", (company.id,)))
                marker = f"Fresh{n}x{int(time.time())}"
                with engine.db.atomic():
                    engine.execute("UPDATE {t:user} SET lastname = ?, timemodified = ? WHERE id = ?",
                                   (marker, int(time.time()), learner))
                written = time.time()
                served = None
                while served is None and time.time() - written < 300:
                    if self._shows(client, tokens[company.id], learner, marker):
                        served = time.time()
                    else:
                        time.sleep(1)
                sample = {"company": company.id, "written_second_of_minute": int(written % 60),
                          "seconds": None if served is None else round(served - written, 1)}
                results.append(sample)
                self.say(f"  freshness {n + 1}: {sample}")
                time.sleep(11 + 17 * n % 40)  # the next edit at another second of the minute
        finally:
            client.close()
            cron.terminate()
            cron.wait()
            if loader:
                self.say(f"  waiting for the load to end ({duration} s after it started)")
                loader.join()
            server.stop()
            engine.db.close()
        seconds = [r["seconds"] for r in results if r["seconds"] is not None]
        return {"samples": results, "max": max(seconds) if seconds else None,
                "median": statistics.median(seconds) if seconds else None, "lost": len(results) - len(seconds),
                "load": "wrk" if wrk else "none (wrk missing)", "target": "≤ 120 s"}

    def _active(self, engine, companyid: int) -> int:
        return int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = ? "
                                 "AND is_deleted = 0", (companyid,)))

    def _shows(self, client, token: str, learner: int, marker: str) -> bool:
        offset = 0
        while True:
            _, body = client.call(token, load.FUNCTION, limit=1000, offset=offset)
            rows = json.loads(body)
            if any(r.get("userid") == learner and r.get("lastname") == marker for r in rows):
                return True
            if len(rows) < 1000:
                return False
            offset += 1000


def _median(runs: list[dict]) -> float:
    return round(statistics.median(r["seconds"] for r in runs), 3)


def markdown(r: dict) -> str:
    before, after = r["variants"]["before"], r["variants"]["after"]
    floor = r["floor_seconds"]
    lines = [f"#### Sync and populate, {r['db']} {r['size']} ({r['companies']} companies, {r['rows']:,} rows), "
             f"before `{r['baseline']}` and after `{r.get('commit', '')}`", "",
             "| what | before | after | before / after |", "|---|---|---|---|"]

    def row(what, b, a, unit="s"):
        ratio = f"{b / a:.1f}×" if a else ""
        lines.append(f"| {what} | {b} {unit} | {a} {unit} | {ratio} |")

    bp, ap = before["populate"], after["populate"]
    lines.append(f"| populate | {bp['rows_per_second']:,} rows/s ({bp['seconds']} s, {bp['peak_rss_mb']} MB) | "
                 f"{ap['rows_per_second']:,} rows/s ({ap['seconds']} s, {ap['peak_rss_mb']} MB) | "
                 f"{bp['seconds'] / ap['seconds']:.1f}× |")
    lines.append(f"| populate floor (INSERT … SELECT, same run) | | {round(r['rows'] / floor):,} rows/s ({floor} s); "
                 f"after / floor {ap['seconds'] / floor:.2f}× | |")
    row("first run after populate (before: a full check)", before["first"]["seconds"], after["first"]["seconds"])
    row(f"quiet run, median of {len(after['quiet'])}", _median(before["quiet"]), _median(after["quiet"]))
    for target, runs in after["changed"].items():
        b = before["changed"][target]
        row(f"{int(target):,} changed pairs ({runs[0]['changed']:,} rows rewritten), median of {len(runs)}",
            _median(b), _median(runs))
    fresh = r.get("freshness")
    if fresh:
        lines += ["", f"Freshness (this checkout, sync every minute, load: {fresh['load']}): a learner's edit served "
                  f"after {', '.join(str(x['seconds']) for x in fresh['samples'])} s (median {fresh['median']} s, "
                  f"max {fresh['max']} s, {fresh['lost']} not served within 300 s); target {fresh['target']}."]
    return "\n".join(lines) + "\n"


def plot(db: str) -> Path | None:
    """sync-<db>.png from every sync result of the database (the latest per size): time against
    changed pairs (the largest fixture) and a quiet run's time against companies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latest: dict[str, dict] = {}
    for path in sorted(RESULTS.glob(f"*-sync-{db}-*.json")):
        data = json.loads(path.read_text())
        latest[data["size"]] = data
    if not latest:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    big = max(latest.values(), key=lambda d: d["rows"])
    for label, style in (("before", "o--"), ("after", "o-")):
        v = big["variants"][label]
        xs = [int(t) for t in v["changed"]]
        left.plot(xs, [_median(v["changed"][str(x)]) for x in xs], style, label=label)
        sizes = sorted(latest.values(), key=lambda d: d["companies"])
        right.plot([d["companies"] for d in sizes], [_median(d["variants"][label]["quiet"]) for d in sizes], style,
                   label=label)
    left.set(xscale="log", yscale="log", xlabel="changed pairs", ylabel="sync run (s)",
             title=f"{db} {big['size']}: {big['rows']:,} rows, {big['companies']} companies")
    right.set(xscale="log", yscale="log", xlabel="companies", ylabel="quiet sync run (s)",
              title=f"{db}: nothing changed")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = RESULTS / f"sync-{db}.png"
    fig.savefig(path, dpi=100)
    return path


def main(db: str, size: fixture.Size, url: str, repeat: int, baseline: str, say, freshness: int = 0
         ) -> tuple[dict, str]:
    from datetime import UTC, datetime

    from bench.run import _commit
    bench = SyncBench(db, size, url, repeat, baseline, say, freshness)
    bench.results.update(started=datetime.now(UTC).isoformat(timespec="seconds"), commit=_commit())
    results = bench.run()
    return results, markdown(results)


if __name__ == "__main__":  # pragma: no cover
    os.sys.exit("use: python -m bench sync")
