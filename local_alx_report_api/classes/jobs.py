"""Jobs (tasks.md 11): one-off populate, sync-now and reconcile-now work queued by an admin and
run by the cron runner, with progress stored after every committed batch (tasks.md 10.3).

A job is a `kind = 'job'` row of local_alx_api_sync_status (tasks.md 4): `sync_mode` = type,
`last_sync_status` = status, `last_sync_timestamp` = finish time (0 until it finishes), `userid`
= the admin, `last_sync_records` = rows changed, `last_sync_error` = why it failed, `updated_at` =
the last time its runner was heard from, and `state_data`:

    {"params": {"companyids": [3, 5] | null, "batch_size": 1000 | null},
     "queued": …, "started": …, "runner": {"hostname": …, "pid": …}, "cancel": {"time": …} | null,
     "progress": {… PopulateProgress.as_dict() …}, "per_company": [{…}], "summary": "…"}

Every change of a job row is a read-modify-write under the row's lock (`_change`), so the
runner's progress saves never overwrite an admin's cancel request, and a queued job is either
cancelled or started, never both. A running job holds the lock `job_<id>` for its whole run, so
"running" with that lock free means its runner died (`_reap`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from local_alx_report_api.classes import company_runner, reconcile, sync
from local_alx_report_api.classes.populate import PopulateProgress, populate
from local_alx_report_api.classes.reporting import Counts
from moodle_core.engines import Engine, LockBusy
from moodle_core.moodle import Company, Moodle

log = logging.getLogger(__name__)

TYPES = ("populate", "sync", "reconcile")
EXCLUSIVE = ("populate", "reconcile")  # at most one of these queued or running per company
ACTIVE = ("queued", "running")
FINISHED = ("success", "failed", "cancelled")
CONFLICT = "A job for this company is already queued or running."
DIED = "The cron runner ended before the job finished; committed work stays. Queue the job again to finish it."
SHUTDOWN = "The cron runner was stopped before the job finished; committed work stays. Queue the job again to finish it."
_ACTIVE_SQL = "('queued', 'running')"


class JobConflict(Exception):
    """Queuing a populate or reconcile job for a company that already has one queued or running."""

    def __init__(self, message: str = CONFLICT):
        super().__init__(message)


def company_lock_wait(plugin) -> float:
    """How long a job (or the populate command) waits for a company's lock before recording the
    company as busy (tasks.md 3.3)."""
    return plugin.max_sync_time + 60


# -- queuing -----------------------------------------------------------------------------------
def _ids(companyids) -> list[int] | None:
    if companyids is None:
        return None
    if isinstance(companyids, (str, bytes)) or not hasattr(companyids, "__iter__"):
        raise ValueError(f"companyids: expected a list of company ids or None for all companies, got {companyids!r}")
    ids = list(companyids)
    if not ids:
        raise ValueError("companyids: select at least one company (None means all companies)")
    for cid in ids:
        if isinstance(cid, bool) or not isinstance(cid, int) or cid <= 0:
            raise ValueError(f"companyids: expected positive integer company ids, got {cid!r}")
    return sorted(set(ids))


def _validate(moodle: Moodle, job_type, companyids, userid, batch_size) -> list[int] | None:
    if job_type not in TYPES:
        raise ValueError(f"Unknown job type {job_type!r}: expected populate, sync or reconcile")
    if isinstance(userid, bool) or not isinstance(userid, int) or userid < 0:
        raise ValueError(f"userid: expected the id of the admin who queues the job, got {userid!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or not 100 <= batch_size <= 5000):
        raise ValueError(f"batch_size: expected an integer between 100 and 5000, got {batch_size!r}")
    ids = _ids(companyids)
    if ids is not None:
        missing = [cid for cid in ids if moodle.company(cid) is None]
        if missing:
            raise ValueError(f"Company {missing[0]} does not exist")
    return ids


def _overlaps(mine: list[int] | None, theirs: list[int] | None) -> bool:
    """An all-companies selection overlaps every other selection."""
    return mine is None or theirs is None or bool(set(mine) & set(theirs))


def queue(engine: Engine, now: int, *, job_type: str, companyids: list[int] | None, userid: int,
          batch_size: int | None = None) -> int:
    """Queue a job; returns its id. Raises ValueError for bad input and JobConflict when a
    populate or reconcile job overlapping these companies is queued or running (nothing is
    written in either case). Race-safe: the check and the insert hold the `job_queue` lock."""
    moodle = Moodle(engine)
    ids = _validate(moodle, job_type, companyids, userid, batch_size)
    total = len(ids) if ids is not None else len(moodle.companies())
    progress = PopulateProgress(total).as_dict() | {"started": None, "elapsed": 0.0}
    state = {"params": {"companyids": ids, "batch_size": batch_size}, "queued": now, "started": None,
             "runner": None, "cancel": None, "progress": progress, "per_company": [], "summary": None}
    with engine.locked_transaction("job_queue"):
        if job_type in EXCLUSIVE:
            for (raw,) in engine.rows(
                    "SELECT state_data FROM {t:local_alx_api_sync_status} WHERE kind = 'job' AND sync_mode IN "
                    f"('populate', 'reconcile') AND last_sync_status IN {_ACTIVE_SQL}"):
                if _overlaps(ids, json.loads(raw or "{}").get("params", {}).get("companyids")):
                    raise JobConflict()
        return engine.insert("local_alx_api_sync_status", {
            "companyid": ids[0] if ids is not None and len(ids) == 1 else 0,
            "token_hash": hashlib.sha256(uuid.uuid4().hex.encode()).hexdigest(), "kind": "job",
            "sync_mode": job_type, "last_sync_status": "queued", "last_sync_timestamp": 0, "last_sync_records": 0,
            "userid": userid, "state_data": _dump(state), "created_at": now, "updated_at": now})


def _dump(state: dict) -> str:
    return json.dumps(state, separators=(",", ":"), default=str)


# -- reading and changing one job row ------------------------------------------------------------
_COLUMNS = ("id", "sync_mode", "last_sync_status", "last_sync_timestamp", "last_sync_records", "last_sync_error",
            "userid", "created_at", "updated_at", "state_data")


def _rows(engine: Engine, where: str, params=(), *, tail: str = "") -> list[dict]:
    out = []
    for row in engine.rows(f"SELECT {', '.join(_COLUMNS)} FROM {{t:local_alx_api_sync_status}} "
                           f"WHERE kind = 'job' AND {where}{tail}", params):
        job = dict(zip(_COLUMNS, row, strict=True))
        job["state"] = json.loads(job.pop("state_data") or "{}")
        out.append(job)
    return out


def _row(engine: Engine, jobid: int, *, lock: bool = False) -> dict | None:
    found = _rows(engine, "id = ?", (jobid,), tail=engine.for_update if lock else "")
    return found[0] if found else None


def _change(engine: Engine, jobid: int, now: int | None, change: Callable[[dict], dict | None]) -> dict | None:
    """Read the job under its row lock, let `change(row)` edit row["state"] and return the other
    columns to set (None: write nothing); returns the row as written, or None."""
    with engine.write_transaction():
        row = _row(engine, jobid, lock=True)
        if row is None:
            return None
        columns = change(row)
        if columns is None:
            return None
        columns = {"state_data": _dump(row["state"]), "updated_at": row["updated_at"] if now is None else now,
                   **columns}
        engine.execute(f"UPDATE {{t:local_alx_api_sync_status}} SET {', '.join(f'{c} = ?' for c in columns)} "
                       "WHERE id = ?", (*columns.values(), jobid))
        row.update(columns)
        return row


def cancel(engine: Engine, jobid: int, now: int) -> bool:
    """Cancel a job: a queued one at once (it never runs), a running one after its current batch
    (committed work stays). False when the job does not exist or has already finished."""
    def change(row):
        status = row["last_sync_status"]
        if status == "queued":
            row["state"]["cancel"] = {"time": now}
            row["state"]["summary"] = "Cancelled before it started"
            return {"last_sync_status": "cancelled", "last_sync_timestamp": now}
        if status == "running":
            row["state"]["cancel"] = row["state"].get("cancel") or {"time": now}
            return {}
        return None

    return _change(engine, int(jobid), now, change) is not None


def _cancel_requested(engine: Engine, jobid: int) -> bool:
    raw = engine.scalar("SELECT state_data FROM {t:local_alx_api_sync_status} WHERE id = ?", (jobid,))
    return bool(json.loads(raw or "{}").get("cancel"))


def _reap(engine: Engine, jobid: int) -> None:
    """A job shown as running whose `job_<id>` lock is free lost its runner: it is recorded as
    failed, finished at the last time its runner was heard from (tasks.md 11; decisions)."""
    def change(row):
        if row["last_sync_status"] != "running":
            return None  # it finished normally meanwhile
        progress = row["state"].setdefault("progress", {})
        progress.setdefault("log", []).append({"time": row["updated_at"], "level": "error", "message": DIED})
        progress.setdefault("errors", [])
        row["state"]["summary"] = _summary(row["sync_mode"], progress, stopped=True)
        return {"last_sync_status": "failed", "last_sync_timestamp": row["updated_at"], "last_sync_error": DIED}

    try:
        with engine.lock(f"job_{jobid}"):
            _change(engine, jobid, None, change)
    except LockBusy:
        pass  # its runner is alive


def _reap_dead(engine: Engine, rows: list[dict]) -> list[dict]:
    """Reap the running jobs among `rows`; returns the rows re-read where something changed."""
    out = []
    for row in rows:
        if row["last_sync_status"] == "running":
            _reap(engine, row["id"])
            row = _row(engine, row["id"]) or row
        out.append(row)
    return out


def finished_before(engine: Engine, before: int) -> list[int]:
    """Jobs that finished before `before` (cleanup, tasks.md 8)."""
    return [int(r[0]) for r in engine.rows(
        "SELECT id FROM {t:local_alx_api_sync_status} WHERE kind = 'job' AND last_sync_status IN "
        "('success', 'failed', 'cancelled') AND last_sync_timestamp < ?", (before,))]


def delete(engine: Engine, ids: list[int]) -> None:
    if ids:
        engine.execute("DELETE FROM {t:local_alx_api_sync_status} WHERE kind = 'job' AND id IN "
                       f"({', '.join(str(int(i)) for i in ids)})")


def counts_by_status(engine: Engine) -> list[tuple[str, int]]:
    return [(status, int(n)) for status, n in engine.rows(
        "SELECT last_sync_status, COUNT(*) FROM {t:local_alx_api_sync_status} WHERE kind = 'job' "
        "GROUP BY last_sync_status")]


def _public(row: dict) -> dict:
    state, status = row["state"], row["last_sync_status"]
    params = state.get("params", {})
    progress = dict(state.get("progress") or {})
    progress["status"] = status
    return {"id": int(row["id"]), "type": row["sync_mode"], "companyids": params.get("companyids"),
            "batch_size": params.get("batch_size"), "status": status, "userid": int(row["userid"]),
            "queued": int(row["created_at"]), "started": state.get("started"),
            "finished": int(row["last_sync_timestamp"]) if status in FINISHED else None,
            "cancel_requested": bool(state.get("cancel")), "progress": progress, "summary": state.get("summary"),
            "per_company": state.get("per_company", []), "error": row["last_sync_error"],
            "changed": int(row["last_sync_records"] or 0), "runner": state.get("runner")}


def get(engine: Engine, jobid: int) -> dict | None:
    """The job with its progress (tasks.md 10.3 plus `status`), or None."""
    if isinstance(jobid, bool) or not isinstance(jobid, int):
        raise ValueError(f"jobid: expected an integer, got {jobid!r}")
    row = _row(engine, jobid)
    if row is None:
        return None
    return _public(_reap_dead(engine, [row])[0])


def recent(engine: Engine, limit: int = 50) -> list[dict]:
    """The most recent jobs, newest first."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValueError(f"limit: expected an integer between 1 and 1000, got {limit!r}")
    return [_public(r) for r in _reap_dead(engine, _rows(engine, "1 = 1", tail=f" ORDER BY id DESC LIMIT {limit}"))]


# -- running -------------------------------------------------------------------------------------
def run_queued(env, *, should_stop: Callable[[], bool] = lambda: False, deadline: float | None = None,
               lock_wait: float | None = None) -> list[tuple[int, str]]:
    """Run queued jobs oldest first, each under its lock `job_<id>`, until none is left, the
    runner is stopping, or `deadline` (a time.monotonic() value) has passed: no job starts after
    it. Jobs of dead runners are reaped first. Returns (job id, final status) of each job run.

    `lock_wait` (default `max_sync_time` + 60 s) is how long a job waits for a company's lock."""
    engine = env.engine
    _reap_dead(engine, _rows(engine, "last_sync_status = 'running'"))
    wait = company_lock_wait(env.plugin) if lock_wait is None else lock_wait
    ran: list[tuple[int, str]] = []
    tried: set[int] = set()
    while not should_stop() and (deadline is None or time.monotonic() < deadline):
        queued = [int(r[0]) for r in engine.rows("SELECT id FROM {t:local_alx_api_sync_status} WHERE kind = 'job' "
                                                 "AND last_sync_status = 'queued' ORDER BY id")]
        jobid = next((i for i in queued if i not in tried), None)
        if jobid is None:
            break
        tried.add(jobid)
        status = run_job(env, jobid, should_stop=should_stop, lock_wait=wait)
        if status is not None:
            ran.append((jobid, status))
    return ran


def run_job(env, jobid: int, *, should_stop: Callable[[], bool] = lambda: False,
            lock_wait: float | None = None) -> str | None:
    """Run one queued job now; its final status, or None when it was not queued (cancelled,
    finished, or started by another runner)."""
    try:
        with env.engine.lock(f"job_{jobid}"):
            return _Run.start(env, jobid, should_stop,
                              company_lock_wait(env.plugin) if lock_wait is None else lock_wait)
    except LockBusy:
        return None


class _Run:
    """One job being run: its progress record, per-company results and output."""

    def __init__(self, env, row: dict, should_stop, wait: float):
        self.env, self.engine, self.id, self.type = env, env.engine, int(row["id"]), row["sync_mode"]
        params = row["state"].get("params", {})
        self.companyids, self.batch_size = params.get("companyids"), params.get("batch_size")
        self.should_stop, self.wait = should_stop, wait
        self.cancelled = False
        self.progress = PopulateProgress(0)
        self.extra_errors: list[dict] = []  # companies that no longer exist
        self.per_company: list[dict] = []
        self.stopped = False

    @classmethod
    def start(cls, env, jobid: int, should_stop, wait: float) -> str | None:
        now = env.clock()

        def claim(row):
            if row["last_sync_status"] != "queued":
                return None
            row["state"].update(started=now, runner={"hostname": socket.gethostname(), "pid": os.getpid()})
            return {"last_sync_status": "running"}

        row = _change(env.engine, jobid, now, claim)
        if row is None:
            return None
        return cls(env, row, should_stop, wait).run()

    # -- output and saving --
    def say(self, text: str, level: str = "info", *, record: bool = True) -> None:
        if record:
            self.progress.note(level, text)
        self.env.say(f"Job {self.id} ({self.type}): {text}")

    def stop(self) -> bool:
        """Checked before each batch: the runner is stopping, or an admin cancelled the job."""
        if self.should_stop():
            return True
        if not self.cancelled and _cancel_requested(self.engine, self.id):
            self.cancelled = True
            self.say("Cancel requested: stopping after the current batch", "warning")
        return self.cancelled

    def progress_dict(self) -> dict:
        out = self.progress.as_dict()
        out["errors"] = self.extra_errors + out["errors"]
        return out

    def save(self) -> None:
        """Store the progress (after every committed batch and every company)."""
        progress, per_company = self.progress_dict(), list(self.per_company)

        def change(row):
            row["state"].update(progress=progress, per_company=per_company)
            return {}
        _change(self.engine, self.id, self.env.clock(), change)

    # -- the run --
    def run(self) -> str:
        scope = "all companies" if self.companyids is None else \
            f"compan{'y' if len(self.companyids) == 1 else 'ies'} {', '.join(map(str, self.companyids))}"
        self.say(f"Execute job {self.id}: {self.type} of {scope}", record=False)
        error = None
        try:
            companies = self.companies()
            self.progress = PopulateProgress(len(companies))
            self.save()
            if self.type == "populate":
                self.run_populate(companies)
            else:
                self.say(f"{self.type.capitalize()} of {len(companies)} compan{'y' if len(companies) == 1 else 'ies'}"
                         + (f", batch size {self.batch_size}" if self.batch_size else ""))
                work = self.sync_company if self.type == "sync" else self.reconcile_company
                self.each_company(companies, work)
        except Exception as exc:  # the job fails; the runner goes on with the next job
            log.exception("job %s failed", self.id)
            error = f"{type(exc).__name__}: {exc}"
            self.say(f"Failed: {error}", "error")
        return self.finish(error)

    def companies(self) -> list[Company]:
        moodle = self.env.moodle
        if self.companyids is None:
            return moodle.companies()
        found = []
        for cid in self.companyids:
            company = moodle.company(cid)
            if company is None:
                self.extra_errors.append({"companyid": cid, "message": f"company {cid} does not exist"})
                self.say(f"Company {cid} does not exist; skipped", "error")
            else:
                found.append(company)
        return found

    def finish(self, error: str | None) -> str:
        errors = self.progress_dict()["errors"]
        if error is None and self.stopped:
            status = "cancelled" if self.cancelled else "failed"
            error = None if self.cancelled else SHUTDOWN
        elif error is None and errors:
            status = "failed"
            error = "; ".join(f"company {e['companyid']}: {e['message']}" for e in errors[:5]) + \
                (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        else:
            status = "success" if error is None else "failed"
        summary = _summary(self.type, self.progress_dict(), stopped=self.stopped)
        self.say(f"Job {self.id} {status}: {summary}", "success" if status == "success" else "warning")
        now = self.env.clock()
        progress, per_company = self.progress_dict(), self.per_company

        def change(row):
            row["state"].update(progress=progress, per_company=per_company, summary=summary, finished=now)
            return {"last_sync_status": status, "last_sync_timestamp": now, "last_sync_error": error,
                    "last_sync_records": self.progress.totals.changed}
        _change(self.engine, self.id, now, change)
        return status

    # -- populate: classes/populate.py does the work and keeps the progress --
    def run_populate(self, companies: list[Company]) -> None:
        plugin = self.env.plugin
        order = sorted(companies, key=lambda c: c.id)
        mark = {"done": 0, "totals": Counts(), "time": time.time()}

        def on_progress(state: PopulateProgress) -> None:
            self.progress = state
            while mark["done"] < state.companies_done:  # a company has just finished
                self.record(order[mark["done"]], state, mark)
            self.save()

        state = populate(self.engine, companies, batch_size=self.batch_size or plugin.sync_batch_size,
                         report_roles=plugin.report_roles, now=self.env.clock, lock_wait=self.wait,
                         emit=lambda level, text: self.say(text, level, record=False), on_progress=on_progress,
                         should_stop=self.stop)
        self.progress = state
        if state.companies_done < state.companies_total:
            self.stopped = True
            if state.current is not None:
                self.record(order[mark["done"]], state, mark, stopped=True)

    def record(self, company: Company, state: PopulateProgress, mark: dict, *, stopped: bool = False) -> None:
        """The per-company line of a populate: the change in the running totals since the last company."""
        counts = Counts(**{k: v - getattr(mark["totals"], k) for k, v in state.totals.as_dict().items()})
        error = next((e["message"] for e in reversed(state.errors) if e["companyid"] == company.id), None)
        self.per_company.append(_company_result(company, counts, time.time() - mark["time"], error, stopped))
        mark["done"] += 1
        mark["totals"] = Counts(**state.totals.as_dict())
        mark["time"] = time.time()

    # -- sync and reconcile: one company at a time, with the same progress record --
    def each_company(self, companies: list[Company], work) -> None:
        """`work(company, on_batch)` → company_runner.Outcome, for each company in turn."""
        def step(company: Company) -> company_runner.Outcome:
            label = company_runner.label(company)
            self.progress.current = {"id": company.id, "shortname": company.shortname, "total": 0, "processed": 0}
            self.say(f"{label}: started", "company")
            self.save()
            counts = Counts()

            def on_batch(batch: Counts, processed: int, total: int) -> None:
                counts.add(batch)
                self.progress.totals.add(batch)
                self.progress.current.update(total=max(total, processed), processed=processed)
                self.progress.update()
                self.say(f"{label}: {processed}/{self.progress.current['total']} inserted {counts.inserted}, "
                         f"updated {counts.updated}, reactivated {counts.reactivated}, deleted {counts.deleted}, "
                         f"unchanged {counts.unchanged}")
                self.save()

            outcome = work(company, on_batch)
            if outcome.status == "stopped":
                self.per_company.append(_company_result(company, counts, outcome.seconds, None, True))
                return outcome
            if outcome.error:
                self.progress.errors.append({"companyid": company.id, "message": outcome.error})
                self.say(f"{label}: {outcome.error}", "error")
            else:
                drift = f", drift {outcome.result['drift']}" if "drift" in outcome.result else ""
                self.say(f"{label}: done in {outcome.seconds:.1f} s: {counts.checked} pairs checked, inserted "
                         f"{counts.inserted}, updated {counts.updated}, reactivated {counts.reactivated}, deleted "
                         f"{counts.deleted}, unchanged {counts.unchanged}{drift}", "success")
            result = _company_result(company, counts, outcome.seconds, outcome.error, False)
            if outcome.status == "done":
                result.update({k: outcome.result[k] for k in ("pairs", "drift") if k in outcome.result})
            self.per_company.append(result)
            self.progress.companies_done += 1
            self.progress.current = None
            self.progress.update()
            self.save()
            return outcome

        run = company_runner.each(sorted(companies, key=lambda c: c.id), step, should_stop=self.stop)
        for _ in run:
            pass
        self.stopped = self.stopped or run.stopped

    def company_env(self):
        """The task environment of the shared per-company steps (their lines go to the runner's
        output; the job's log gets its own lines)."""
        return dataclasses.replace(self.env, say=lambda text: self.say(text, record=False), should_stop=self.stop)

    def sync_company(self, company: Company, on_batch) -> company_runner.Outcome:
        """tasks.md 5.6 for the company, without the max_sync_time limit."""
        return sync.sync_company(self.company_env(), company, out_of_time=self.stop, lock_wait=self.wait,
                                 batch_size=self.batch_size, on_batch=on_batch)

    def reconcile_company(self, company: Company, on_batch) -> company_runner.Outcome:
        """tasks.md 9 for the company, without the time budget."""
        return reconcile.reconcile_one(self.company_env(), company, self.stop, lock_wait=self.wait,
                                       batch_size=self.batch_size, on_batch=on_batch)


def _company_result(company: Company, counts: Counts, seconds: float, error: str | None, stopped: bool) -> dict:
    return {"companyid": company.id, "shortname": company.shortname, **counts.as_dict(),
            "duration": round(seconds, 1), "error": error, "stopped": stopped}


def _summary(job_type: str, progress: dict, *, stopped: bool) -> str:
    """One line for the jobs list."""
    done, total = progress.get("companies_done", 0), progress.get("companies_total", 0)
    counts = ", ".join(f"{progress.get(k, 0)} {k}" for k in ("inserted", "updated", "reactivated", "deleted",
                                                             "unchanged"))
    errors = len(progress.get("errors", []))
    return (f"{'Stopped after' if stopped else 'Finished'} {done} of {total} compan{'y' if total == 1 else 'ies'}: "
            f"{progress.get('checked', 0)} pairs checked, {counts}; {errors} error{'' if errors == 1 else 's'}")
