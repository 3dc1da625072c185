"""Signing in and out (admin-ui.md 2.1)."""

from __future__ import annotations

from local_alx_report_api.classes import session, signin
from local_alx_report_api.controlcenter.web import PREFIX, Ctx, Page, secure, url
from webservice.auth import client_ip


def safe_next(target: str) -> str:
    """Only a relative path inside the control center (no open redirect)."""
    ok = target.startswith(PREFIX + "/") and "//" not in target and "\\" not in target
    return target if ok else url("/")


class Login(Page):
    public = True

    def _prelogin(self, ctx: Ctx) -> str:
        """The pre-login CSRF value, bound to a short-lived cookie."""
        payload = session.unsign(ctx.settings.admin.secret_key, ctx.req.cookies.get(session.PRELOGIN))
        if payload and ctx.now - int(payload.get("t", 0)) < session.PRELOGIN_SECONDS:
            return str(payload["v"])
        value = session.new_sesskey()
        ctx.resp.set_cookie(session.PRELOGIN, session.sign(ctx.settings.admin.secret_key, {"v": value, "t": ctx.now}),
                            path=PREFIX + "/", http_only=True, same_site="Lax", secure=secure(ctx.cc),
                            max_age=session.PRELOGIN_SECONDS)
        return value

    def sesskey_ok(self, ctx: Ctx) -> bool:
        payload = session.unsign(ctx.settings.admin.secret_key, ctx.req.cookies.get(session.PRELOGIN))
        return bool(payload) and ctx.now - int(payload.get("t", 0)) < session.PRELOGIN_SECONDS \
            and session.same(ctx.form.get("sesskey"), str(payload.get("v", "")))

    def get(self, ctx: Ctx) -> None:
        target = safe_next(ctx.query.get("next"))
        if ctx.admin is not None:
            return ctx.redirect(target)
        ctx.render("login.html", title="Sign in", next=target, username="", error=None,
                   login_sesskey=self._prelogin(ctx))

    def post(self, ctx: Ctx) -> None:
        target = safe_next(ctx.form.get("next"))
        settings = ctx.settings
        ip = client_ip(ctx.req.remote_addr or "", ctx.req.get_header("X-Forwarded-For"),
                       settings.webservice.trusted_proxies)
        admin, error = signin.attempt(ctx.engine, ctx.cc.moodle, settings, username=ctx.form.get("username"),
                                      password=ctx.form.get("password"), ip=ip,
                                      user_agent=ctx.req.user_agent or "", now=ctx.now)
        if admin is None:
            return ctx.render("login.html", title="Sign in", next=target, username=ctx.form.get("username").strip(),
                              error=error, login_sesskey=self._prelogin(ctx))
        ctx.admin, ctx.payload = admin, signin.new_session(ctx.engine, settings, admin, ctx.now)  # set by Page
        ctx.resp.unset_cookie(session.PRELOGIN, path=PREFIX + "/")
        ctx.redirect(target)


class Logout(Page):
    def post(self, ctx: Ctx) -> None:
        if ctx.admin is not None:  # ended on the server: a copy of the cookie no longer works
            signin.end_sessions(ctx.engine, ctx.admin.id, ctx.now)
        ctx.admin = ctx.payload = None  # not renewed
        ctx.resp.unset_cookie(session.COOKIE, path=PREFIX + "/")
        ctx.redirect("/login")


ROUTES = {"/login": Login, "/logout": Logout}
