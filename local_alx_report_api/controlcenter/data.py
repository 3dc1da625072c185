"""Data (admin-ui.md 3.5): populate and reconcile queued as jobs (tasks.md 11), the jobs list,
and each job's live progress page (`/jobs/{id}` and `/jobs/{id}.json`)."""

from __future__ import annotations

from local_alx_report_api.classes import jobs
from local_alx_report_api.controlcenter.web import Ctx, Page, whole

BATCH_NOTE = "The batch size is the number of rows written per step, not a limit: every row is processed."
WAITING = "Waiting for the cron runner to start this job."


def selected_companies(ctx: Ctx, companies) -> tuple[list[int] | None, str | None]:
    """The companies ticked in the form: None for all; an error message when none or unknown."""
    picked = ctx.form.getall("companyids")
    if "all" in picked:
        return None, None
    known = {c.id for c in companies}
    try:
        ids = sorted({int(v) for v in picked})
    except ValueError:
        return [], "Choose companies from the list."
    if not ids:
        return [], "Choose at least one company, or All companies."
    if not set(ids) <= known:
        return [], "Choose companies from the list."
    return ids, None


class Data(Page):
    def get(self, ctx: Ctx) -> None:
        self.show(ctx)

    def show(self, ctx: Ctx, errors: dict | None = None, status: str = "200 OK") -> None:
        companies = ctx.cc.moodle.companies()
        recent = jobs.recent(ctx.engine, 50)
        names = {c.id: c.shortname for c in companies}
        ctx.render("data.html", status=status, title="Data", companies=companies, names=names, jobs=recent,
                   users=ctx.cc.moodle.users(j["userid"] for j in recent), errors=errors or {},
                   batch_default=ctx.settings.local_alx_report_api.sync_batch_size, batch_note=BATCH_NOTE,
                   form=ctx.form)


class Queue(Page):
    """POST /data/populate and /data/reconcile."""

    job_type = ""

    def post(self, ctx: Ctx) -> None:
        companies = ctx.cc.moodle.companies()
        ids, error = selected_companies(ctx, companies)
        errors = {f"{self.job_type}_companyids": error} if error else {}
        batch, text = None, ctx.form.get("batch_size").strip()
        if self.job_type == "populate":
            if not text:
                batch = ctx.settings.local_alx_report_api.sync_batch_size
            elif whole(text) is not None and 100 <= whole(text) <= 5000:
                batch = whole(text)
            else:
                errors["batch_size"] = "Enter a whole number from 100 to 5000."
        if not errors:
            try:
                jobid = jobs.queue(ctx.engine, ctx.now, job_type=self.job_type, companyids=ids, userid=ctx.admin.id,
                                   batch_size=batch)
            except jobs.JobConflict as exc:
                errors[f"{self.job_type}_companyids"] = str(exc)
            else:
                return ctx.redirect(f"/jobs/{jobid}", f"{self.job_type.capitalize()} job {jobid} queued.")
        Data(self.cc).show(ctx, errors)  # 200 with the messages, like every form (decision 54)


def _job(ctx: Ctx, jobid: str) -> dict | None:
    return jobs.get(ctx.engine, whole(jobid)) if whole(jobid) is not None and len(jobid) < 10 else None


class Job(Page):
    def get(self, ctx: Ctx, jobid: str) -> None:
        job = _job(ctx, jobid)
        if job is None:
            return ctx.not_found(f"There is no job {jobid}.")
        names = {c.id: c.shortname for c in ctx.cc.moodle.companies()}
        ctx.render("job.html", title=f"Job {job['id']}: {job['type']}", job=job, names=names, waiting=WAITING,
                   queued_by=ctx.cc.moodle.users([job["userid"]]).get(job["userid"]))


class JobJson(Page):
    is_json = True

    def get(self, ctx: Ctx, jobid: str) -> None:
        job = _job(ctx, jobid)
        if job is None:
            return ctx.json({"error": "job not found"}, "404 Not Found")
        ctx.json(job["progress"])


class Cancel(Page):
    def post(self, ctx: Ctx, jobid: str) -> None:
        job = _job(ctx, jobid)
        if job is None:
            return ctx.not_found(f"There is no job {jobid}.")
        if jobs.cancel(ctx.engine, job["id"], ctx.now):
            notice = "Job cancelled." if job["status"] == "queued" else "The job stops after its current batch."
        else:
            notice = f"The job has already finished ({job['status']})."
        ctx.redirect(ctx.form.get("back") if ctx.form.get("back") == "/data" else f"/jobs/{job['id']}", notice)


class QueuePopulate(Queue):
    job_type = "populate"


class QueueReconcile(Queue):
    job_type = "reconcile"


ROUTES = {"/data": Data, "/data/populate": QueuePopulate, "/data/reconcile": QueueReconcile,
          "/jobs/{jobid}": Job, "/jobs/{jobid}.json": JobJson, "/jobs/{jobid}/cancel": Cancel}
