"""What every control-center page shares (admin-ui.md 1 and 2): the gate (enabled, configured,
signed in, CSRF), rendering with Jinja2, redirects with a one-line notice, JSON answers."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

import falcon
import jinja2

from local_alx_report_api.classes import session, signin

log = logging.getLogger("alx_report_api.controlcenter")
PREFIX = "/local/alx_report_api"
NAV = [("Overview", "/"), ("Companies", "/companies"), ("Tokens", "/tokens"), ("Data", "/data"),
       ("Cache", "/cache"), ("Monitoring", "/monitoring"), ("Alerts", "/alerts"), ("Logs", "/logs"),
       ("Configuration", "/configuration")]
NOT_CONFIGURED = "The control center is not configured: set [admin] secret_key."
EXPIRED_FORM = "This form has expired. Please reload the page and try again."
NOTICE = "alx_notice"
MAX_FORM_BYTES = 256 * 1024  # the largest form (a company's course switches) is a few KiB


def whole(text: str) -> int | None:
    """A non-negative whole number typed in ASCII digits (at most 18 of them, so it fits every
    id column), else None: `²` or a 5,000-digit number is a wrong value, not an error."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


class Form:
    """Submitted fields: the first value of a name, or all of them."""

    def __init__(self, pairs: dict[str, list[str]]):
        self.pairs = pairs

    @classmethod
    def parse(cls, text: str) -> Form:
        """Fields of a query string or form body. A NUL (which no database column may hold and no
        valid value contains) becomes U+FFFD, so the value fails validation like any typo."""
        return cls(parse_qs(text.replace("\x00", "\ufffd").replace("%00", "%EF%BF%BD"), keep_blank_values=True))

    def get(self, name: str, default: str = "") -> str:
        return self.pairs.get(name, [default])[0]

    def getall(self, name: str) -> list[str]:
        return self.pairs.get(name, [])

    def __contains__(self, name: str) -> bool:
        return name in self.pairs


class ControlCenter:
    """Built once per process: the site (database, Moodle read model, settings, clock) and templates."""

    def __init__(self, site):
        self.site = site
        self.templates = jinja2.Environment(loader=jinja2.PackageLoader("local_alx_report_api", "templates"),
                                            autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                            undefined=jinja2.StrictUndefined)
        self.templates.filters.update(dt=self.local_time, ago=self.ago, num=number, pct=percent,
                                      json=lambda v: json.dumps(v, indent=2, sort_keys=True, default=str))
        self.templates.globals.update(url=url, nav=NAV, prefix=PREFIX)

    @property
    def settings(self):
        return self.site.settings

    @property
    def engine(self):
        return self.site.engine

    @property
    def moodle(self):
        return self.site.moodle

    def now(self) -> int:
        return self.site.clock()

    def local_time(self, instant) -> str:
        """`YYYY-MM-DD HH:MM:SS` in the site time zone (admin-ui.md 1); '—' for none."""
        if not instant:
            return "—"
        return datetime.fromtimestamp(int(instant), ZoneInfo(self.site.timezone)).strftime("%Y-%m-%d %H:%M:%S")

    def ago(self, instant) -> str:
        if not instant:
            return "never"
        seconds = self.now() - int(instant)
        if seconds < 0:
            return "in " + _span(-seconds)
        return "just now" if seconds < 60 else _span(seconds) + " ago"


def _span(seconds: int) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def number(value) -> str:
    """Thousands separated; at most 2 decimals."""
    if value is None:
        return "—"
    value = float(value)
    return f"{int(value):,}" if value.is_integer() else f"{value:,.2f}".rstrip("0").rstrip(".")


def percent(value) -> str:
    return "—" if value is None else f"{float(value):.1f}%"


def url(path: str = "/", **query) -> str:
    """A control-center URL: `url('/companies/5', sort='name')`."""
    text = PREFIX + (path if path.startswith("/") else "/" + path)
    pairs = [f"{quote(str(k))}={quote(str(v))}" for k, v in query.items() if v is not None and v != ""]
    return text + ("?" + "&".join(pairs) if pairs else "")


class Ctx:
    """One request to a page: the signed-in admin, the form, and the ways to answer."""

    def __init__(self, cc: ControlCenter, req: falcon.Request, resp: falcon.Response, admin, payload: dict | None):
        self.cc, self.req, self.resp, self.admin, self.payload = cc, req, resp, admin, payload
        self.now = cc.now()
        self.query = Form.parse(req.query_string or "")
        self.form = Form({})
        self.notice = None
        self.notice_failed = False  # a notice of failure looks different (red, role=alert)
        self.flash: dict | None = None

    @property
    def engine(self):
        return self.cc.engine

    @property
    def settings(self):
        return self.cc.settings

    @property
    def sesskey(self) -> str:
        return (self.payload or {}).get("sesskey", "")

    def render(self, template: str, status: str = falcon.HTTP_200, **values) -> None:
        self.resp.status = status
        self.resp.content_type = falcon.MEDIA_HTML
        self.resp.text = self.cc.templates.get_template(template).render(
            admin=self.admin, sesskey=self.sesskey, notice=self.notice, notice_failed=self.notice_failed, now=self.now, path=self.req.path, **values)

    def redirect(self, path: str, notice: str | None = None, flash: dict | None = None, *,
                 failed: bool = False) -> None:
        """303 to a control-center path, with a one-line notice shown there (admin-ui.md 1), marked
        as a failure if `failed`. `flash`: small signed data the next GET receives once as `ctx.flash`
        (never secrets)."""
        if notice or flash:
            payload = {"text": notice or "", **({"data": flash} if flash else {}), **({"failed": 1} if failed else {})}
            self.resp.set_cookie(NOTICE, session.sign(self.cc.settings.admin.secret_key, payload),
                                 path=PREFIX + "/", http_only=True, same_site="Lax", secure=secure(self.cc))
        self.resp.status = falcon.HTTP_303
        self.resp.location = path if path.startswith(PREFIX) else url(path)

    def json(self, value, status: str = falcon.HTTP_200) -> None:
        self.resp.status = status
        self.resp.content_type = falcon.MEDIA_JSON
        self.resp.text = json.dumps(value, separators=(",", ":"), default=str)

    def not_found(self, what: str = "The page you asked for does not exist.") -> None:
        self.render("error.html", falcon.HTTP_404, title="Not found", message=what)

    def fail(self, status: str, message: str) -> None:
        self.render("error.html", status, title=status.split(" ", 1)[1], message=message)


def secure(cc: ControlCenter) -> bool:
    return cc.settings.site.wwwroot.startswith("https://")


class Page:
    """A control-center resource. Subclasses define get(ctx, **kw) and/or post(ctx, **kw)."""

    public = False  # the sign-in page
    is_json = False  # JSON endpoints answer 401 JSON when signed out

    def __init__(self, cc: ControlCenter):
        self.cc = cc

    def on_get(self, req, resp, **kw):
        self._handle(req, resp, "get", kw)

    def on_post(self, req, resp, **kw):
        self._handle(req, resp, "post", kw)

    def _handle(self, req, resp, method: str, kw: dict) -> None:
        cc, admin_cfg = self.cc, self.cc.settings.admin
        if not gate(cc, resp):
            return
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("X-Frame-Options", "DENY")
        started = time.monotonic()
        payload = session.unsign(admin_cfg.secret_key, req.cookies.get(session.COOKIE))
        admin = signin.session_admin(cc.engine, cc.moodle, cc.settings, payload, cc.now()) if payload else None
        ctx = Ctx(cc, req, resp, admin, payload if admin else None)
        try:
            self._answer(ctx, method, kw)
        finally:  # the sign-in cookie is decided once: renewed, set by the sign-in, or cleared
            if ctx.admin is not None and ctx.payload is not None:
                ctx.payload["last"] = ctx.now
                set_signin_cookie(cc, resp, ctx.payload)
            elif session.COOKIE in req.cookies:
                resp.unset_cookie(session.COOKIE, path=PREFIX + "/")
            resp.set_header("Server-Timing", f"app;dur={(time.monotonic() - started) * 1000:.1f}")

    def _answer(self, ctx: Ctx, method: str, kw: dict) -> None:
        req, resp = ctx.req, ctx.resp
        handler = getattr(self, method, None)
        if handler is None:
            raise falcon.HTTPMethodNotAllowed([m.upper() for m in ("get", "post") if hasattr(self, m)])
        if ctx.admin is None and not self.public:
            if self.is_json:
                return ctx.json({"error": "login required"}, falcon.HTTP_401)
            if method == "post":
                return ctx.fail(falcon.HTTP_403, "You must sign in as a site administrator to do this.")
            target = req.path + (f"?{req.query_string}" if req.query_string else "")
            resp.status, resp.location = falcon.HTTP_303, url("/login", next=target)
            return
        if method == "post":
            if (req.content_length or 0) > MAX_FORM_BYTES:
                return ctx.fail(falcon.HTTP_413, "The form is too large.")
            body = req.bounded_stream.read(MAX_FORM_BYTES + 1)
            if len(body) > MAX_FORM_BYTES:
                return ctx.fail(falcon.HTTP_413, "The form is too large.")
            ctx.form = Form.parse(body.decode("utf-8", "replace"))
            if not self.sesskey_ok(ctx):
                return ctx.fail(falcon.HTTP_403, EXPIRED_FORM)
        notice = session.unsign(self.cc.settings.admin.secret_key, req.cookies.get(NOTICE))
        if notice and method == "get" and not self.is_json:  # a poll never takes a page's notice
            ctx.notice = str(notice.get("text", ""))
            ctx.notice_failed = bool(notice.get("failed"))
            ctx.flash = notice.get("data") if isinstance(notice.get("data"), dict) else None
            resp.unset_cookie(NOTICE, path=PREFIX + "/")
        try:
            handler(ctx, **kw)
        except falcon.HTTPError:
            raise
        except Exception:  # a page error is logged with its cause; the admin sees a plain page
            log.exception("control center %s %s failed", req.method, req.path)
            ctx.fail(falcon.HTTP_500, "Something went wrong on this page; the process log has the details.")

    def sesskey_ok(self, ctx: Ctx) -> bool:
        return session.same(ctx.sesskey, ctx.form.get("sesskey"))


def gate(cc: ControlCenter, resp) -> bool:
    """admin-ui.md 1: 404 everywhere when disabled, 503 everywhere while unconfigured; True = open."""
    if not cc.settings.admin.enabled:
        raise falcon.HTTPNotFound()
    if not cc.settings.admin.secret_key:
        resp.status, resp.content_type, resp.text = falcon.HTTP_503, falcon.MEDIA_TEXT, NOT_CONFIGURED
        return False
    return True


def set_signin_cookie(cc: ControlCenter, resp, payload: dict) -> None:
    resp.set_cookie(session.COOKIE, session.sign(cc.settings.admin.secret_key, payload), path=PREFIX + "/",
                    http_only=True, same_site="Lax", secure=secure(cc))


