"""Tokens (admin-ui.md 3.4): every permanent token of a service that offers get_course_progress;
creating one as Moodle stores it (moodle-schema.md 2.14) and showing it once; revoking it; and
resetting its sync state (its next pull is a first pull, sync-and-cache.md)."""

from __future__ import annotations

import re
import secrets
import string
from datetime import datetime
from zoneinfo import ZoneInfo

from local_alx_report_api.classes import client_state, company_settings, pulls, ratelimit
from local_alx_report_api.classes.webservice_setup import FUNCTION
from local_alx_report_api.controlcenter.web import Ctx, Page
from webservice.auth import invalid_ip_entries
from webservice.call import token_hash

ONE_CLIENT = ("Give every client its own token where you can: clients sharing a token share its watermark, so "
              "incremental clients take each other's changes (full pulls, as Power BI makes, are kept apart).")
COPY_NOW = "Copy this token now. It will not be shown again."
SHOW_SECONDS = 300  # the new token is shown by the GET right after the POST, never later
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?")
_COLUMNS = ("id", "token", "name", "userid", "externalserviceid", "timecreated", "validuntil", "lastaccess",
            "iprestriction", "creatorid", "username", "firstname", "lastname", "service")


# -- reading -------------------------------------------------------------------------------------
def services(engine) -> list[dict]:
    """The services that offer get_course_progress: the ones a token of this page may use."""
    return [{"id": int(i), "shortname": s or "", "name": n, "enabled": bool(int(e))} for i, s, n, e in engine.rows(
        "SELECT s.id, s.shortname, s.name, s.enabled FROM {t:external_services} s WHERE EXISTS (SELECT 1 FROM "
        "{t:external_services_functions} f WHERE f.externalserviceid = s.id AND f.functionname = ?) ORDER BY s.id",
        (FUNCTION,))]


def tokens(engine, tokenid: int | None = None) -> list[dict]:
    """Permanent tokens (tokentype 0) of those services, with their user, oldest first."""
    where, params = "", [FUNCTION]
    if tokenid is not None:
        where, params = " AND t.id = ?", [FUNCTION, tokenid]
    rows = engine.rows(
        "SELECT t.id, t.token, t.name, t.userid, t.externalserviceid, t.timecreated, t.validuntil, t.lastaccess, "
        "t.iprestriction, t.creatorid, u.username, u.firstname, u.lastname, s.shortname "
        "FROM {t:external_tokens} t JOIN {t:external_services} s ON s.id = t.externalserviceid "
        "LEFT JOIN {t:user} u ON u.id = t.userid "
        "WHERE t.tokentype = 0 AND EXISTS (SELECT 1 FROM {t:external_services_functions} f "
        f"WHERE f.externalserviceid = t.externalserviceid AND f.functionname = ?){where} ORDER BY t.id", params)
    return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]


def find(ctx: Ctx, tokenid: int) -> dict | None:
    if not 0 < tokenid < 2 ** 31:  # beyond any id; PostgreSQL would refuse to compare it
        return None
    found = tokens(ctx.engine, tokenid)
    return found[0] if found else None


def last_pulls(engine, now: int) -> dict[str, dict]:
    """Per token hash: its most recently touched `api` state row, as the last pull to show, with
    why it was full or incremental and its client, and how many pulls are open."""
    found: dict[str, dict] = {}
    for row in client_state.listed(engine):
        state, status = row["data"], row["last_sync_status"]
        # a failed pull does not move last_sync_timestamp (the watermark's time): its time is the update
        when = int(row["updated_at"] or 0) if status == "failed" else int(row["last_sync_timestamp"] or 0)
        last_pull = state.get("last_pull") if isinstance(state.get("last_pull"), dict) else {}
        reason = last_pull.get("reason")
        found[row["token_hash"]] = {"companyid": int(row["companyid"]), "time": when, "status": status,
                                    "mode": row["sync_mode"], "rows": int(row["last_sync_records"] or 0),
                                    "open": len(pulls.open_pulls(state, now)),
                                    "why": pulls.REASONS.get(reason, reason) if reason else None,
                                    "why_mode": last_pull.get("mode"), "user_agent": last_pull.get("user_agent")}
    return found


def with_details(ctx: Ctx, rows: list[dict]) -> list[dict]:
    """Adds company, calls today / effective limit (per token user, as the rate limit counts)
    and the last pull to each token row."""
    start, end = ratelimit.day_bounds(ctx.now, ctx.cc.site.timezone)
    userids = [row["userid"] for row in rows]
    companies = ctx.cc.moodle.user_companies(userids)
    loaded = company_settings.load_all(ctx.engine, {c.id for c in companies.values()})
    calls, last = ratelimit.counted_by_user(ctx.engine, userids, start, end), last_pulls(ctx.engine, ctx.now)
    for row in rows:
        company = companies.get(int(row["userid"]))
        row.update(company=company, short=row["token"][:8], calls=calls.get(int(row["userid"]), 0),
                   limit=ratelimit.effective_limit(ctx.engine, ctx.settings, company,
                                                   loaded[company.id] if company else None),
                   pull=last.get(token_hash(row["token"])))
    return rows


# -- creating --------------------------------------------------------------------------------------
def parse_local(text: str, zone: str) -> int | None:
    """A `datetime-local` value (site time zone) as a Unix time; None when it is not one."""
    if not _DATETIME.fullmatch(text):
        return None
    try:
        local = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        return None
    return int(local.replace(tzinfo=ZoneInfo(zone)).timestamp())


def validate(ctx: Ctx) -> tuple[dict, dict]:
    """The create form's values and a message per wrong field (admin-ui.md 3.4)."""
    form, errors, values = ctx.form, {}, {}
    typed = form.get("username").strip().lower()  # Moodle keeps usernames in lower case
    user = ctx.engine.execute(
        "SELECT id, deleted FROM {t:user} WHERE username = ? AND mnethostid = ? ORDER BY deleted, id LIMIT 1",
        (typed, int(ctx.cc.moodle.config("mnet_localhost_id") or 1))).fetchone() if typed else None
    if not typed:
        errors["username"] = "Enter the username of the token's user."
    elif user is None:
        errors["username"] = f"There is no user with the username {typed}."
    elif int(user[1]):
        errors["username"] = f"The user {typed} has been deleted."
    else:
        values["userid"] = int(user[0])
    offered = {str(s["id"]): s for s in services(ctx.engine)}
    if form.get("service") not in offered:
        errors["service"] = "Choose a service from the list."
    else:
        values["externalserviceid"] = offered[form.get("service")]["id"]
    name = form.get("name").strip()
    if len(name) > 255:
        errors["name"] = "Use at most 255 characters."
    values["name"] = name or "ALX Report API token " + ctx.cc.local_time(ctx.now)[:16]
    until_text = form.get("validuntil").strip()
    values["validuntil"] = 0
    if until_text:
        until = parse_local(until_text, ctx.cc.site.timezone)
        if until is None:
            errors["validuntil"] = "Enter a date and time such as 2030-12-31T17:00, or leave it empty."
        elif until <= ctx.now:
            errors["validuntil"] = "Choose a time in the future, or leave it empty for a token that never expires."
        else:
            values["validuntil"] = until
    ips = ", ".join(e.strip() for e in form.get("iprestriction").split(",") if e.strip())
    bad = invalid_ip_entries(ips)
    if bad:
        errors["iprestriction"] = ("Not an IP address, CIDR range (10.0.0.0/8), last-part range (192.168.1.1-20) "
                                   "or prefix (192.168.): " + ", ".join(bad))
    elif len(ips) > 255:
        errors["iprestriction"] = "Use at most 255 characters."
    values["iprestriction"] = ips or None
    return values, errors


def create(engine, now: int, creatorid: int, values: dict) -> int:
    """The external_tokens row as Moodle writes it (moodle-schema.md 2.14); returns its id."""
    with engine.write_transaction():
        while True:  # 32 random hex characters, drawn again in the unlikely case they exist
            token = secrets.token_hex(16)
            if engine.scalar("SELECT id FROM {t:external_tokens} WHERE token = ?", (token,)) is None:
                break
        system = engine.scalar("SELECT id FROM {t:context} WHERE contextlevel = 10 ORDER BY id LIMIT 1") or 1
        private = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(64))
        return engine.insert("external_tokens", {
            "token": token, "privatetoken": private, "tokentype": 0, "userid": values["userid"],
            "externalserviceid": values["externalserviceid"], "sid": None, "contextid": int(system),
            "creatorid": creatorid, "iprestriction": values["iprestriction"], "validuntil": values["validuntil"],
            "timecreated": now, "lastaccess": None, "name": values["name"]})


def reset_state(engine, token: str) -> int:
    """Deletes the token's `api` sync rows (every company); returns how many."""
    return client_state.forget_token(engine, token)


# -- pages -----------------------------------------------------------------------------------------
class Tokens(Page):
    def get(self, ctx: Ctx) -> None:
        created = self.just_created(ctx)
        if created is not None:
            return ctx.render("token_created.html", title="Token created", token=created, copy_now=COPY_NOW,
                              wwwroot=ctx.settings.site.wwwroot.rstrip("/"), function=FUNCTION)
        self.show(ctx)

    def show(self, ctx: Ctx, errors: dict | None = None, status: str = "200 OK") -> None:
        offered = services(ctx.engine)
        default = next((s["id"] for s in offered if s["shortname"] == "alx_report_api_custom"), None)
        ctx.render("tokens.html", status=status, title="Tokens", tokens=with_details(ctx, tokens(ctx.engine)),
                   services=offered, default_service=default, one_client=ONE_CLIENT, errors=errors or {},
                   form=ctx.form, min_until=ctx.cc.local_time(ctx.now + 60)[:16].replace(" ", "T"))

    def just_created(self, ctx: Ctx) -> dict | None:
        """The token created by this admin's POST just before (its id came in the signed flash)."""
        tokenid = (ctx.flash or {}).get("created")
        if not isinstance(tokenid, int):
            return None
        found = find(ctx, tokenid)
        if found is None or found["creatorid"] != ctx.admin.id or ctx.now - int(found["timecreated"]) > SHOW_SECONDS:
            return None
        return with_details(ctx, [found])[0]

    def post(self, ctx: Ctx) -> None:
        values, errors = validate(ctx)
        if errors:
            return self.show(ctx, errors)  # 200 with the messages (decision 54)
        tokenid = create(ctx.engine, ctx.now, ctx.admin.id, values)
        ctx.redirect("/tokens", "Token created.", flash={"created": tokenid})


class Revoke(Page):
    def get(self, ctx: Ctx, tokenid: int) -> None:
        token = find(ctx, tokenid)
        if token is None:
            return ctx.not_found(f"There is no token {tokenid} of a service with {FUNCTION}.")
        ctx.render("token_revoke.html", title="Revoke token", token=with_details(ctx, [token])[0])

    def post(self, ctx: Ctx, tokenid: int) -> None:
        token = find(ctx, tokenid)
        if token is None:
            return ctx.not_found(f"There is no token {tokenid} of a service with {FUNCTION}.")
        with ctx.engine.write_transaction():  # the row and its client states go together
            ctx.engine.execute("DELETE FROM {t:external_tokens} WHERE id = ?", (token["id"],))
            reset_state(ctx.engine, token["token"])
        ctx.redirect("/tokens", f"Token {token['token'][:8]}… revoked.")


class Reset(Page):
    def post(self, ctx: Ctx, tokenid: int) -> None:
        token = find(ctx, tokenid)
        if token is None:
            return ctx.not_found(f"There is no token {tokenid} of a service with {FUNCTION}.")
        with ctx.engine.write_transaction():
            removed = reset_state(ctx.engine, token["token"])
        ctx.redirect("/tokens", f"Sync state of token {token['token'][:8]}… reset ({removed} "
                                f"row{'' if removed == 1 else 's'} deleted): its next pull is a first pull.")


ROUTES = {"/tokens": Tokens, "/tokens/{tokenid:int}/revoke": Revoke, "/tokens/{tokenid:int}/reset": Reset}
