"""Verifying a control-center sign-in (admin-ui.md 2.2): Moodle's user row, site admins,
Moodle's password hashes with the site's peppers, lockout, the log row and alert 7c."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field

import bcrypt
from passlib.hash import sha512_crypt

from local_alx_report_api.classes import alerts, session
from moodle_core.engines import Engine
from moodle_core.moodle import Moodle

ENDPOINT = "admin:login"
INVALID = "Invalid login, please try again"
LOCKED = "Too many failed sign-in attempts. Try again in {n} minutes."


@dataclass
class Admin:
    id: int
    username: str
    firstname: str
    lastname: str
    password_hash: str = field(default="", repr=False)

    @property
    def fullname(self) -> str:
        return f"{self.firstname} {self.lastname}"


def password_matches(stored: str, password: str, peppers: list[str]) -> bool:
    """Moodle's validate_internal_user_password: each pepper appended (newest first), then none.
    bcrypt ($2y$/$2a$/$2b$) and SHA-512 crypt ($6$) only; legacy md5 never matches."""
    stored = stored or ""
    for candidate in [password + pepper for pepper in peppers] + [password]:
        if stored.startswith(("$2y$", "$2a$", "$2b$")):
            # PHP's password_verify reads only the first 72 bytes; newer bcrypt refuses longer input
            if bcrypt.checkpw(candidate.encode()[:72], ("$2b$" + stored[4:]).encode()):
                return True
        elif stored.startswith("$6$"):
            try:
                if sha512_crypt.verify(candidate, stored):
                    return True
            except ValueError:  # a malformed hash
                return False
    return False


def site_admin(engine: Engine, moodle: Moodle, userid: int) -> Admin | None:
    """The user, if still a usable site admin (checked on every request, admin-ui.md 2.3)."""
    row = engine.rows("SELECT id, username, firstname, lastname, suspended, auth, deleted, password FROM {t:user} "
                      "WHERE id = ?", (userid,))
    if not row or not _usable(row[0][4], row[0][5], row[0][6]) or userid not in _siteadmins(moodle):
        return None
    return Admin(int(row[0][0]), row[0][1], row[0][2], row[0][3], row[0][7] or "")


# -- sessions (issue 14): ended on the server by sign-out, by a password change, by losing the role
def _generation_name(userid: int) -> str:
    return f"admin_sessions_{userid}"


def session_generation(engine: Engine, userid: int) -> int:
    """The admin's session generation: a sign-in cookie of an older one has been signed out."""
    value = engine.scalar("SELECT setting_value FROM {t:local_alx_api_settings} WHERE companyid = 0 AND "
                          "setting_name = ?", (_generation_name(userid),))
    return int(value or 0)


def end_sessions(engine: Engine, userid: int, now: int) -> None:
    """Sign-out: every sign-in cookie of this admin stops working, on every browser."""
    name = _generation_name(userid)
    with engine.locked_transaction(name):
        if engine.execute("UPDATE {t:local_alx_api_settings} SET setting_value = setting_value + 1, timemodified = ? "
                          "WHERE companyid = 0 AND setting_name = ?", (now, name)).rowcount == 0:
            engine.insert("local_alx_api_settings", {"companyid": 0, "setting_name": name, "setting_value": 1,
                                                     "timecreated": now, "timemodified": now})


def password_mark(secret: str, admin: Admin) -> str:
    """A mark of the admin's password hash in the cookie: a changed password ends the sessions."""
    return hmac.new(secret.encode(), b"password:" + admin.password_hash.encode(), hashlib.sha256).hexdigest()[:16]


def new_session(engine: Engine, settings, admin: Admin, now: int) -> dict:
    return session.signed_in(admin.id, now, gen=session_generation(engine, admin.id),
                             pw=password_mark(settings.admin.secret_key, admin))


def session_admin(engine: Engine, moodle: Moodle, settings, payload: dict | None, now: int) -> Admin | None:
    """The admin a sign-in cookie stands for, if it is still valid: not idle longer than
    `login_minutes`, not older than `login_max_hours`, not signed out, the same password, and the
    user still a usable site admin (admin-ui.md 2.3; Moodle's sessiontimeout is the model)."""
    admin_cfg = settings.admin
    if not session.active(payload, now, admin_cfg.login_minutes):
        return None
    try:
        if now - int(payload["signin"]) > admin_cfg.login_max_hours * 3600:
            return None
        generation = int(payload.get("gen", -1))
    except (KeyError, TypeError, ValueError):
        return None
    admin = site_admin(engine, moodle, int(payload["uid"]))
    if admin is None or generation != session_generation(engine, admin.id):
        return None
    if not session.same(str(payload.get("pw", "")), password_mark(admin_cfg.secret_key, admin)):
        return None
    return admin


def _usable(suspended, auth, deleted) -> bool:
    return int(suspended) == 0 and auth == "manual" and int(deleted) == 0


def _siteadmins(moodle: Moodle) -> set[int]:
    return {int(x) for x in (moodle.config("siteadmins") or "").split(",") if x.strip().isdigit()}


def failures(engine: Engine, username: str, ip: str, now: int, minutes: int) -> list[int]:
    """Times of the failed sign-ins of `username` (case-insensitive) from `ip` within the window."""
    rows = engine.rows("SELECT timeaccessed, additional_data FROM {t:local_alx_api_logs} WHERE endpoint = ? "
                       "AND errorcode = ? AND ip_address = ? AND timeaccessed > ? ORDER BY timeaccessed",
                       (ENDPOINT, "invalidlogin", ip, now - minutes * 60))
    wanted = username.lower()
    return [int(t) for t, data in rows if _typed(data).lower() == wanted]


def _typed(data: str | None) -> str:
    try:
        return str(json.loads(data or "{}").get("username", ""))
    except (ValueError, AttributeError):
        return ""


_DUMMIES: dict[str, str] = {}  # scheme and cost → a hash of that kind, checked for unknown users


def _dummy_hash(engine: Engine, moodle: Moodle) -> str:
    """A hash of the same scheme and cost as a site admin's (bcrypt `$2y$NN$` or SHA-512 crypt
    `$6$rounds=N$`), so an unknown username costs what a real one costs."""
    ids = sorted(_siteadmins(moodle))
    stored = (engine.scalar("SELECT password FROM {t:user} WHERE id = ?", (ids[0],)) if ids else None) or ""
    if stored.startswith("$6$"):
        rounds = stored.split("$")[2][7:] if stored.split("$")[2].startswith("rounds=") else "5000"
        kind = "6:" + (rounds if rounds.isascii() and rounds.isdigit() else "5000")
    else:
        cost = stored[4:6] if stored.startswith(("$2y$", "$2a$", "$2b$")) else "10"
        kind = "2:" + (cost if cost.isascii() and cost.isdigit() and 4 <= int(cost) <= 14 else "10")
    if kind not in _DUMMIES:
        scheme, cost = kind.split(":")
        _DUMMIES[kind] = (sha512_crypt.using(rounds=int(cost)).hash("not a password") if scheme == "6" else
                          bcrypt.hashpw(b"not a password", bcrypt.gensalt(int(cost))).decode())
    return _DUMMIES[kind]


def attempt(engine: Engine, moodle: Moodle, settings, *, username: str, password: str, ip: str, user_agent: str,
            now: int) -> tuple[Admin | None, str | None]:
    """(admin, None) on success, else (None, the message to show). Every attempt is logged.

    The lockout count, the password check and the log row happen under a lock per (username, IP),
    so concurrent tries get exactly `login_max_failures` password checks; a password is checked
    whoever the username names (for an unknown user, a dummy hash like a site admin's), so the
    answer time does not say which usernames exist or are site admins (issue 14)."""
    admin_cfg = settings.admin
    typed = username.strip()[:100]  # Moodle's username length; what is logged stays small
    window, limit = admin_cfg.login_lockout_minutes, admin_cfg.login_max_failures
    # a named lock, not a write transaction: on SQLite that would stop every writer during bcrypt
    with engine.lock(f"login_{typed.lower()}_{ip}", timeout=30):
        row = engine.rows("SELECT id, password, suspended, auth FROM {t:user} WHERE username = ? AND mnethostid = ? "
                          "AND deleted = 0", (typed.lower(), int(moodle.config("mnet_localhost_id") or 1)))
        userid = int(row[0][0]) if row else 0
        past = failures(engine, typed, ip, now, window)
        if len(past) >= limit:
            minutes = max(1, math.ceil((past[-limit] + window * 60 - now) / 60))
            message = LOCKED.format(n=minutes)
            _log(engine, now, userid, ip, user_agent, typed, "loginlocked", message)
        else:
            message = None
            matches = password_matches(row[0][1] if row else _dummy_hash(engine, moodle), password,
                                       admin_cfg.password_peppers)
            ok = bool(row) and matches and _usable(row[0][2], row[0][3], 0) and userid in _siteadmins(moodle)
            _log(engine, now, userid, ip, user_agent, typed, *((None, None) if ok else ("invalidlogin", INVALID)))
    if message is not None:
        _lockout_alert(engine, settings, now, typed, len(past), ip)
        return None, message
    if ok:
        return site_admin(engine, moodle, userid), None
    if len(past) + 1 >= limit:
        _lockout_alert(engine, settings, now, typed, len(past) + 1, ip)
    return None, INVALID


def _log(engine: Engine, now: int, userid: int, ip: str, user_agent: str, typed: str, errorcode: str | None,
         message: str | None) -> None:
    engine.insert("local_alx_api_logs", {
        "userid": userid, "endpoint": ENDPOINT, "record_count": 0, "timeaccessed": now, "ip_address": ip[:45],
        "user_agent": (user_agent or "unknown")[:255], "errorcode": errorcode, "companyid": 0, "counted": 0,
        "response_bytes": 0, "error_message": message,
        "additional_data": json.dumps({"username": typed}, separators=(",", ":"))})


def _lockout_alert(engine: Engine, settings, now: int, typed: str, n: int, ip: str) -> None:
    """Condition 7c of monitoring.md 3.2."""
    alerts.raise_alert(engine, settings, now, alert_type="security", severity="high",
                       subject=f"admin_login:{typed.lower()}",
                       message=f"Control center sign-in locked for {typed} after {n} failed attempts from {ip}",
                       data={"username": typed, "ip": ip, "failures": n,
                             "threshold": settings.admin.login_max_failures,
                             "window_minutes": settings.admin.login_lockout_minutes})


def lockout_ended(engine: Engine, settings, alert_data: dict, now: int) -> bool:
    """Whether the lockout an alert 7c reported is over (it auto-resolves then)."""
    past = failures(engine, str(alert_data.get("username", "")), str(alert_data.get("ip", "")), now,
                    settings.admin.login_lockout_minutes)
    return len(past) < settings.admin.login_max_failures
