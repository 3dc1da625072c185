"""The `alx-report-api` command: the composition root that wires settings, database, the Moodle
read model and the plugin together. Nothing imports this module."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from local_alx_report_api import settings as plugin_settings
from local_alx_report_api.classes import inline_alerts, installer, jobs, webservice_setup
from local_alx_report_api.classes.outage import OutageGuard
from local_alx_report_api.classes.populate import populate
from local_alx_report_api.db import services
from moodle_core import engines, generator, replicas
from moodle_core.config import ConfigError, settings_path
from moodle_core.cron import NEVER
from moodle_core.moodle import Moodle

log = logging.getLogger("alx_report_api")


class CliError(Exception):
    """One clear line for the user; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _positive(low: int, high: int, name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got '{text}'") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be between {low} and {high}, got {value}")
        return value
    return parse


class DefaultsFormatter(argparse.HelpFormatter):
    """--help shows an option's default after its description, unless it has none (None, or a
    flag's False) or the description already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """One clear line and exit status 2, instead of usage text."""
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="alx-report-api", description="Moodle/IOMAD course progress API service.")
    parser.add_argument("--config", metavar="PATH", help="settings file (default: $ALX_REPORT_API_SETTINGS or ./settings.ini)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    sub.add_parser("settings", help="print the effective settings and where each value came from")
    p = sub.add_parser("install", help="create or adopt the plugin tables and record the schema version")
    p.add_argument("--enable-webservices", action="store_true", help="switch Moodle's web services and REST on")
    p = sub.add_parser("demo-site", help="write a generated Moodle + IOMAD demo site into the configured database")
    p.add_argument("--companies", type=_positive(1, 100000, "--companies"), default=3, help="IOMAD companies")
    p.add_argument("--users", type=_positive(0, 10000000, "--users"), default=60, help="learners, spread over them")
    p.add_argument("--courses", type=_positive(1, 100000, "--courses"), default=8, help="courses of the site")
    p.add_argument("--enrolments-per-user", type=_positive(0, 1000, "--enrolments-per-user"), default=3,
                   help="courses each learner is enrolled in")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed writes the same site")
    p.add_argument("--admin-password", default="Admin#12345", help="password of the site admin `admin`")
    p = sub.add_parser("serve", help="serve the web service with gunicorn")
    p.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT to listen on")
    p.add_argument("--workers", type=_positive(1, 256, "--workers"), default=2, help="gunicorn worker processes")
    p.add_argument("--threads", type=_positive(1, 64, "--threads"), default=1,
                   help="threads per worker (more than 1: gunicorn's gthread workers; see BENCHMARKS.md)")
    p = sub.add_parser("cron", help="run every due scheduled task once (like admin/cli/cron.php)")
    p.add_argument("--keep-alive", nargs="?", type=_positive(1, 10**9, "--keep-alive"), const=0, default=None,
                   metavar="SECONDS", help="keep running a pass every minute (stop after SECONDS if given)")
    p.add_argument("--quiet", action="store_true", help="no line per pass (the tasks' own output stays)")
    p = sub.add_parser("job", help="list the queued and recent jobs, run the queued ones now, or cancel one")
    jsub = p.add_subparsers(dest="job_command", required=True, metavar="list|run|cancel", parser_class=Parser)
    jl = jsub.add_parser("list", help="the most recent jobs: type, companies, status, times, progress, summary")
    jl.add_argument("--limit", type=_positive(1, 1000, "--limit"), default=50, help="how many jobs to list")
    jsub.add_parser("run", help="run the queued jobs now, oldest first, each under its lock")
    jc = jsub.add_parser("cancel", help="cancel a queued job, or stop a running one after its current batch")
    jc.add_argument("jobid", type=_positive(1, 2**62, "jobid"), help="the job's id (see job list)")
    p = sub.add_parser("task", help="list the scheduled tasks or run one now")
    tsub = p.add_subparsers(dest="task_command", required=True, metavar="list|run", parser_class=Parser)
    tsub.add_parser("list", help="each task's schedule, last and next run, fail delay and status")
    run = tsub.add_parser("run", help="run one task now, under its lock")
    run.add_argument("name", help="short name (sync_reporting_data_task) or classname")
    p = sub.add_parser("scheduled-task", help="Moodle's admin/cli/scheduled_task.php: --list or --execute=CLASS")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--list", action="store_true", help="list the scheduled tasks")
    group.add_argument("--execute", metavar="CLASSNAME", help="run this task now, under its lock")
    p = sub.add_parser("alerts", help="alert tools")
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="test", parser_class=Parser)
    asub.add_parser("test", help="send a test alert through every configured channel and report each result")
    p = sub.add_parser("populate", help="build the reporting table from the live Moodle tables")
    p.add_argument("--companyid", type=_positive(1, 2**62, "--companyid"), action="append",
                   help="company to populate (repeatable; default all)")
    p.add_argument("--batch-size", type=_positive(100, 5000, "--batch-size"),
                   help="pairs per batch (default: [local_alx_report_api] sync_batch_size)")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    return parser


class Context:
    """Settings, database and Moodle read model for one command."""

    def __init__(self, args, create: bool = False):
        self.settings = plugin_settings.load(settings_path(args.config, os.environ))
        db = self.settings.database
        self.engine = replicas.connect_site(db, create=create)
        self.engine.slow_query_ms = self.settings.local_alx_report_api.slow_query_ms
        self.engine.retry_attempts, self.engine.retry_base_delay = db.retry_attempts, db.retry_base_delay
        self._moodle = None

    @property
    def moodle(self) -> Moodle:
        if self._moodle is None:
            self._moodle = Moodle(self.engine)
        return self._moodle

    def clock(self):
        zone = ZoneInfo(self.moodle.site_timezone(self.settings.site.timezone)[0])
        return lambda: datetime.fromtimestamp(time.time(), zone).strftime("%Y-%m-%d %H:%M:%S")

    def require_plugin(self) -> None:
        if not self.engine.table_exists("local_alx_api_reporting"):
            raise CliError(f"The plugin tables are not installed (table {self.engine.prefix}local_alx_api_reporting "
                           "is missing): run alx-report-api install")


def cmd_settings(args) -> int:
    settings = plugin_settings.load(settings_path(args.config, os.environ))
    print(f"# settings file: {settings.path}" + ("" if os.path.exists(settings.path or "") else " (not found: defaults)"))
    section = None
    for sec, name, value, source in settings.describe():
        if sec != section:
            print(f"[{sec}]")
            section = sec
        print(f"{name} = {value}    ; {source}")
    return 0


def cmd_install(args) -> int:
    ctx = Context(args)
    ctx.moodle.require_tables()
    now = int(time.time())
    try:
        webservice_setup.check(ctx.engine)
        installer.plan(ctx.engine)
        report = installer.Report()
        webservice_setup.prepare(ctx.engine, now, args.enable_webservices, report)
        report.lines += installer.install(ctx.engine, now).lines
    except installer.InstallError as exc:
        raise CliError(str(exc)) from exc
    for line in report.lines or ["Nothing to do: the plugin tables are up to date"]:
        print(line)
    print("Moodle's web services:")  # always, whatever was done (issue 18)
    for check in webservice_setup.checks(ctx.engine, services.SERVICE_SHORTNAME):
        print(f"  {check['name']}: {check['status']}" + (f" ({check['detail']})" if check["detail"] else ""))
    return 0


def cmd_demo_site(args) -> int:
    ctx = Context(args, create=True)
    existing = ctx.engine.prefix + "user"
    if existing in ctx.engine.tables():
        raise CliError(f"The database already holds a Moodle site (table {existing} exists): "
                       "point [database] url at an empty database")
    started = time.time()
    site = generator.generate(ctx.engine, companies=args.companies, users=args.users, courses=args.courses,
                              enrolments_per_user=args.enrolments_per_user, seed=args.seed,
                              admin_password=args.admin_password, progress=print)
    installer.install(ctx.engine, int(time.time()))
    print(f"Demo site written to {ctx.engine.describe()} in {time.time() - started:.1f} s: "
          f"{len(site.companies)} companies, {site.users} learners, {site.enrolments} enrolments")
    print(f"Site admin: admin / {site.admin_password}")
    for token, username, companyid in site.tokens[:20]:
        print(f"Token for {username} (company {companyid}): {token}")
    if len(site.tokens) > 20:
        print(f"... and {len(site.tokens) - 20} more tokens (one per company manager)")
    return 0


def cmd_populate(args) -> int:
    ctx = Context(args)
    ctx.moodle.require_tables()
    ctx.require_plugin()
    plugin = ctx.settings.local_alx_report_api
    companies = ctx.moodle.companies()
    if args.companyid:
        known = {c.id for c in companies}
        for cid in args.companyid:
            if cid not in known:
                raise CliError(f"--companyid: company {cid} does not exist", 2)
        companies = [c for c in companies if c.id in set(args.companyid)]
    stamp = ctx.clock()
    bar = _progress_bar() if sys.stdout.isatty() and not args.quiet else None

    def emit(level: str, text: str) -> None:
        if args.quiet and not text.startswith("Finished"):
            return
        line = f"[{stamp()}] {text}"
        if bar is not None:
            bar.write(line)
        else:
            print(line, flush=True)

    def on_progress(state) -> None:
        if bar is not None:
            bar.total = 1000
            bar.n = int(state.percent * 10)
            bar.refresh()

    state = populate(ctx.engine, companies, batch_size=args.batch_size or plugin.sync_batch_size,
                     report_roles=plugin.report_roles, now=lambda: int(time.time()),
                     lock_wait=jobs.company_lock_wait(plugin), emit=emit, on_progress=on_progress)
    if bar is not None:
        bar.close()
    return 1 if state.errors else 0


def cmd_serve(args) -> int:
    from gunicorn.app.base import BaseApplication

    from webservice.app import create_app

    ctx = Context(args)
    ctx.moodle.require_tables()
    ctx.require_plugin()
    ctx.engine.close()
    settings = ctx.settings

    # Request metrics of all workers of this host are aggregated through files (monitoring.md 4)
    import tempfile
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="alx-report-api-metrics-"))

    def child_exit(server, worker):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("child_exit", child_exit)
            self.cfg.set("bind", [args.bind])
            self.cfg.set("workers", args.workers)
            if args.threads > 1:  # measured against sync workers in bench/requests.py (decision 116)
                self.cfg.set("worker_class", "gthread")
                self.cfg.set("threads", args.threads)
            self.cfg.set("accesslog", None)
            self.cfg.set("limit_request_line", 8190)  # gunicorn's largest (nginx's default too): an OData $filter
            # the control center's "Send test alert" waits for both channels (3 tries each)
            self.cfg.set("timeout", max(30, 3 * (settings.mail.timeout_seconds + settings.sms.timeout_seconds) + 10))
            if "control_socket_disable" in self.cfg.settings:  # newer gunicorn: no shared control socket
                self.cfg.set("control_socket_disable", True)

        def load(self):
            return create_app(settings)  # in each worker: its own connections

    print(f"Serving {ctx.engine.describe()} on http://{args.bind}/webservice/rest/server.php "
          f"with {args.workers} workers" + (f" of {args.threads} threads" if args.threads > 1 else ""), flush=True)
    Server().run()
    return 0


def task_manager(ctx: Context, output=print, should_stop=lambda: False):
    """The scheduled tasks of tasks.md 1 (with settings.ini overrides) and their runner."""
    from local_alx_report_api.db.tasks import definitions
    from moodle_core.taskmanager import TaskManager

    zone = ctx.moodle.site_timezone(ctx.settings.site.timezone)[0]
    clock = lambda: int(time.time())  # noqa: E731
    manager = TaskManager(ctx.engine, definitions(ctx.settings), zone, clock=clock, output=output)
    manager.context = lambda m: job_env(ctx, m, should_stop)
    manager.on_result = lambda task, state: inline_alerts.task_result(ctx.engine, ctx.settings, clock(), task, state)
    return manager


def job_env(ctx: Context, manager, should_stop=lambda: False):
    """What tasks and jobs receive: database, Moodle, settings, the runner's clock and output."""
    from local_alx_report_api.task import TaskEnv

    return TaskEnv(ctx.engine, ctx.moodle, ctx.settings, manager.clock, manager.say, should_stop)


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and SIGINT ask the runner to finish the batch in progress, record state and exit 0;
    yields the should_stop callable. The previous handlers come back afterwards."""
    import signal

    stopping: list = []
    previous = {sig: signal.signal(sig, lambda *_: stopping.append(True)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: bool(stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_cron(args) -> int:
    ctx = Context(args)
    ctx.moodle.require_tables()
    ctx.require_plugin()
    with _stop_on_signals() as stop:
        return _cron(ctx, args, stop)


def _cron(ctx: Context, args, stop) -> int:
    import schedule

    manager = task_manager(ctx, should_stop=stop)
    env = job_env(ctx, manager, stop)
    max_runtime = ctx.settings.cron.max_runtime

    def cron_pass() -> None:
        """tasks.md 3.2: the due tasks, then the queued jobs; nothing new starts after max_runtime.
        One line per pass says what ran (issue 18), unless --quiet."""
        started = time.monotonic()
        deadline = started + max_runtime
        tasks = manager.run_pass(max_runtime, should_stop=stop)
        ran = jobs.run_queued(env, should_stop=stop, deadline=deadline)
        if not args.quiet:
            print(f"Cron pass: {len(tasks)} task{'' if len(tasks) == 1 else 's'} run, {len(ran)} "
                  f"job{'' if len(ran) == 1 else 's'} run, {time.monotonic() - started:.1f} s", flush=True)

    if args.keep_alive is None:
        cron_pass()
        return 0
    # kept alive through database outages and bugs: the runner never stops by itself (issue 14)
    guard = OutageGuard(ctx.engine, ctx.settings, lambda: int(time.time()))
    guard.run(cron_pass, "cron pass")
    stop_at = time.monotonic() + args.keep_alive if args.keep_alive else float("inf")
    runner = schedule.Scheduler()
    runner.every().minute.at(":00").do(lambda: guard.run(cron_pass, "cron pass"))
    runner.every(ctx.settings.cron.job_poll_seconds).seconds.do(lambda: guard.run(
        lambda: jobs.run_queued(env, should_stop=stop, deadline=time.monotonic() + max_runtime), "job poll"))
    while not stop() and time.monotonic() < stop_at:
        runner.run_pending()
        time.sleep(max(0.0, min(1.0, stop_at - time.monotonic())))
    return 0


def cmd_job(args) -> int:
    ctx = Context(args)
    ctx.moodle.require_tables()
    ctx.require_plugin()
    if args.job_command == "list":
        manager = task_manager(ctx)

        def stamp(instant) -> str:
            return manager.local_time(instant) if instant else "-"

        print(f"{'id':>5} {'type':9} {'companies':12} {'status':9} {'by':>5} {'queued':19} {'started':19} "
              f"{'finished':19} {'done':>6} summary")
        for job in jobs.recent(ctx.engine, args.limit):
            companies = "all" if job["companyids"] is None else ",".join(map(str, job["companyids"]))
            print(f"{job['id']:>5} {job['type']:9} {companies:12} {job['status']:9} {job['userid']:>5} "
                  f"{stamp(job['queued']):19} {stamp(job['started']):19} {stamp(job['finished']):19} "
                  f"{job['progress'].get('percent', 0):>5.1f}% {job['summary'] or ''}")
        return 0
    if args.job_command == "cancel":
        if not jobs.cancel(ctx.engine, args.jobid, int(time.time())):
            raise CliError(f"Job {args.jobid} is not queued or running")
        job = jobs.get(ctx.engine, args.jobid)
        print(f"Job {args.jobid} " + ("cancelled" if job["status"] == "cancelled" else
                                      "will stop after its current batch"))
        return 0
    with _stop_on_signals() as stop:
        ran = jobs.run_queued(job_env(ctx, task_manager(ctx, should_stop=stop), stop), should_stop=stop)
    if not ran:
        print("No queued jobs")
    return 0 if all(status == "success" for _, status in ran) else 1


def cmd_task(args) -> int:
    ctx = Context(args)
    ctx.moodle.require_tables()
    ctx.require_plugin()
    manager = task_manager(ctx)
    if getattr(args, "task_command", None) == "list" or getattr(args, "list", False):
        manager.ensure_states(manager.clock())
        print(f"{'name':28} {'cron':14} {'disabled':8} {'last run':19} {'next run':19} {'fail delay':10} status")
        def stamp(instant: int) -> str:
            return "never" if not instant else "-" if instant >= NEVER else manager.local_time(instant)

        for task in manager.tasks:
            state = manager.state(task)
            print(f"{task.name:28} {task.cron:14} {'yes' if task.disabled else 'no':8} {stamp(state.lastrun):19} "
                  f"{stamp(state.nextrun):19} {state.faildelay:<10} {state.status}")
        return 0
    name = getattr(args, "name", None) or args.execute
    task = manager.find(name)
    if task is None:
        raise CliError(f"Unknown task {name}: see alx-report-api task list", 2)
    return 0 if manager.run(task) == "success" else 1


def cmd_alerts(args) -> int:
    """`alerts test` (monitoring.md 3.9): a stored, already resolved test alert, sent at once."""
    from local_alx_report_api.classes import notifications

    ctx = Context(args)
    ctx.moodle.require_tables()
    ctx.require_plugin()
    outcome = notifications.send_test_alert(ctx.engine, ctx.moodle, ctx.settings, int(time.time()))
    for line in outcome.lines():
        print(line)
    return 0 if outcome.ok else 1


def _progress_bar():
    from tqdm import tqdm
    return tqdm(total=1000, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining}", leave=False)


COMMANDS = {"settings": cmd_settings, "install": cmd_install, "demo-site": cmd_demo_site, "populate": cmd_populate,
            "serve": cmd_serve, "cron": cmd_cron, "job": cmd_job, "task": cmd_task, "scheduled-task": cmd_task, "alerts": cmd_alerts}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its one line (or --help)
        return int(exc.code or 0)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except (CliError, ConfigError) as exc:
        print(f"alx-report-api: {exc}", file=sys.stderr)
        return getattr(exc, "code", 1)
    except engines.DATABASE_ERRORS as exc:  # decision 10: one line (a missing grant, a lost server), no traceback
        print(f"alx-report-api: database error: {engines.first_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `alx-report-api … | head`: the reader has gone; leave quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as the shell's own tools


if __name__ == "__main__":
    sys.exit(main())
