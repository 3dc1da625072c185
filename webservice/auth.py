"""Token, user, capability and function-access checks, in Moodle's order (protocol.md 4–5)."""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass

from moodle_core.engines import Engine
from moodle_core.moodle import Company
from webservice.errors import DmlMissingRecordException, MoodleException, WebserviceAccessException


class ConfigCache:
    """What a worker reuses between requests because it rarely changes (issue 15): Moodle `config`
    values, and anything given to `remember` (capability answers, service definitions, role ids),
    all read again at most every `seconds` (0 = on every request). Never what must be exact: tokens,
    users, company settings, rate-limit counts and pull state are read by every request."""

    def __init__(self, engine: Engine, seconds: int):
        self.engine, self.seconds = engine, seconds
        self._values: dict[str, str | None] = {}
        self._remembered: dict = {}
        self._read_at = -1e18

    def _fresh(self) -> None:
        if time.monotonic() - self._read_at >= self.seconds or self.seconds == 0:
            self._values = dict(self.engine.rows("SELECT name, value FROM {t:config}"))
            self._remembered = {}
            self._read_at = time.monotonic()

    def get(self, name: str) -> str | None:
        self._fresh()
        return self._values.get(name)

    def remember(self, key: tuple, read):
        """`read()`, or its answer for `key` from an earlier request of this period."""
        self._fresh()
        if self.seconds == 0:
            return read()
        remembered = self._remembered  # one period's dict, even if another thread starts the next
        if key not in remembered:
            remembered[key] = read()
        return remembered[key]


_BEARER = re.compile(r"^\s*bearer\s+(\S.*?)\s*$", re.IGNORECASE)


def bearer_token(header: str | None, allowed: bool) -> str | None:
    """The token of an `Authorization: Bearer` header, where the site allows them."""
    match = _BEARER.match(header or "") if allowed else None
    return match.group(1) if match else None


def webservices_enabled(config: ConfigCache) -> bool:
    enabled = (config.get("enablewebservices") or "").strip()
    protocols = [p.strip() for p in (config.get("webserviceprotocols") or "").split(",")]
    return enabled not in ("", "0") and "rest" in protocols


# -- client IP -----------------------------------------------------------------------------------
def in_networks(addr: str, networks: list[str]) -> bool:
    """Whether an address is in one of the networks (CIDRs): a trusted proxy, an allowed scraper."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def client_ip(remote_addr: str, forwarded_for: str | None, trusted: list[str]) -> str:
    """The peer, or the right-most untrusted X-Forwarded-For address when the peer is trusted."""
    if not trusted or not forwarded_for or not in_networks(remote_addr, trusted):
        return remote_addr
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not in_networks(hop, trusted):
            return hop
    return remote_addr


def ip_in_list(addr: str, entries: str) -> bool:
    """Moodle's address_in_subnet: full addresses, CIDR, last-part ranges and prefixes."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(_entry_matches(ip, addr, entry) for entry in _entries(entries))


def invalid_ip_entries(entries: str) -> list[str]:
    """The entries of an IP restriction list that are none of the forms of protocol.md 4.3."""
    bad = []
    for entry in _entries(entries):
        try:
            parse_ip_entry(entry)
        except ValueError:
            bad.append(entry)
    return bad


def _entries(entries: str) -> list[str]:
    return [e for e in (e.strip() for e in entries.split(",")) if e]


_V4_PREFIX = re.compile(r"(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){0,2}\.?")
_V6_PREFIX = re.compile(r"[0-9a-fA-F]{1,4}(:[0-9a-fA-F]{1,4}){0,6}:?")


def parse_ip_entry(entry: str) -> tuple[str, object]:
    """One entry as (form, value): ("network", CIDR), ("range", (first, last)) for a last-part
    range such as `192.168.1.10-20`, ("address", ip) or ("prefix", text) such as `192.168.`.
    Raises ValueError for anything else (such an entry never matches)."""
    if "/" in entry:
        return "network", ipaddress.ip_network(entry, strict=False)
    if "-" in entry:
        first, last = (part.strip() for part in entry.split("-", 1))
        start = ipaddress.ip_address(first)
        sep = ":" if start.version == 6 else "."
        end = ipaddress.ip_address(f"{first.rsplit(sep, 1)[0]}{sep}{last}")
        if end < start:
            raise ValueError(f"range ends before it starts: {entry}")
        return "range", (start, end)
    try:
        return "address", ipaddress.ip_address(entry)
    except ValueError:
        pass
    if _V4_PREFIX.fullmatch(entry) or _V6_PREFIX.fullmatch(entry):
        return "prefix", entry
    raise ValueError(f"not an address, CIDR range, last-part range or prefix: {entry}")


def _entry_matches(ip, addr: str, entry: str) -> bool:
    try:
        form, value = parse_ip_entry(entry)
    except ValueError:
        return False
    if form == "network":
        return ip in value
    if form == "range":
        start, end = value
        return type(ip) is type(start) and start <= ip <= end
    if form == "address":
        return ip == value
    prefix = value if value.endswith((".", ":")) else value + ("." if ip.version == 4 else ":")
    text = addr if ip.version == 4 else ip.exploded
    return text.startswith(prefix) or addr.startswith(prefix)


# -- tokens and users ------------------------------------------------------------------------------
@dataclass
class Caller:
    """The authenticated token and its user."""

    token: str  # as stored
    token_id: int
    serviceid: int
    contextid: int
    userid: int
    username: str
    user: dict
    company: Company | None = None  # IOMAD: the lowest company id among the user's (Moodle.user_company)


_TOKEN_COLUMNS = ("id", "token", "userid", "externalserviceid", "sid", "contextid", "iprestriction",
                  "validuntil", "lastaccess")
_USER_COLUMNS = ("id", "username", "auth", "confirmed", "deleted", "suspended", "timecreated", "firstname",
                 "lastname", "lang", "calendartype", "picture", "policyagreed")


def authenticate(engine: Engine, token: str, ip: str, now: int) -> Caller:
    """Token lookup and checks 1–5 of protocol.md 4.3; the token's user and the user's company
    (IOMAD's, as `Moodle.user_company` finds it) come in the same read."""
    # a NUL never occurs in a stored token, and PostgreSQL refuses it in a parameter
    columns = ", ".join([*(f"t.{c}" for c in _TOKEN_COLUMNS), *(f"u.{c}" for c in _USER_COLUMNS),
                         "c.id", "c.shortname", "c.name"])
    row = engine.execute(
        f"SELECT {columns} FROM {{t:external_tokens}} t LEFT JOIN {{t:user}} u ON u.id = t.userid "
        "LEFT JOIN {t:company} c ON c.id = (SELECT MIN(cu.companyid) FROM {t:company_users} cu "
        "WHERE cu.userid = t.userid AND EXISTS (SELECT 1 FROM {t:company} m WHERE m.id = cu.companyid)) "
        "WHERE t.token = ? AND t.tokentype = 0 ORDER BY t.id LIMIT 1",
        (token,)).fetchone() if token and "\x00" not in token else None
    if row is None:
        raise MoodleException("invalidtoken", "Invalid token - token not found")
    t = dict(zip(_TOKEN_COLUMNS, row[:len(_TOKEN_COLUMNS)], strict=True))
    if t["validuntil"] and t["validuntil"] < now:
        with engine.db.atomic():
            engine.execute("DELETE FROM {t:external_tokens} WHERE token = ? AND tokentype = 0", (t["token"],))
        raise WebserviceAccessException("Invalid token - token expired - check validuntil time for the token")
    if t["sid"]:
        raise WebserviceAccessException("Invalid token - token linked to a browser login")
    if t["iprestriction"] and not ip_in_list(ip, t["iprestriction"]):
        raise WebserviceAccessException(f"Invalid service - IP:{ip} is not supported - check this allowed user")
    user = dict(zip(_USER_COLUMNS, row[len(_TOKEN_COLUMNS):-3], strict=True))
    if user["id"] is None:
        raise DmlMissingRecordException("user", "SELECT id,username,deleted,auth,confirmed,suspended FROM {user} "
                                        "WHERE id = ?", [t["userid"]])
    if now >= (t["lastaccess"] or 0) + 60:
        engine.execute("UPDATE {t:external_tokens} SET lastaccess = ? WHERE id = ?", (now, t["id"]))
    company = Company(int(row[-3]), row[-2], row[-1]) if row[-3] is not None else None
    return Caller(t["token"], t["id"], t["externalserviceid"], t["contextid"], t["userid"], user["username"], user,
                  company)


def check_user(engine: Engine, config: ConfigCache, caller: Caller, now: int) -> None:
    """User checks 1–6 of protocol.md 4.4."""
    user, name = caller.user, caller.username
    if (config.get("maintenance_enabled") or "") == "1" and not has_capability(
            engine, config, caller.userid, 1, "moodle/site:maintenanceaccess"):
        raise MoodleException("sitemaintenance", "The site is undergoing maintenance and is currently not available")
    if user["deleted"]:
        raise MoodleException("wsaccessuserdeleted", f"Refused web service access for deleted username: {name}")
    if not user["confirmed"]:
        raise MoodleException("wsaccessuserunconfirmed", f"Refused web service access for unconfirmed username: {name}")
    if user["suspended"]:
        raise MoodleException("wsaccessusersuspended", f"Refused web service access for suspended username: {name}")
    if user["auth"] == "manual" and _password_expired(engine, config, user, now):
        raise MoodleException("wsaccessuserexpired",
                              f"Refused web service access for password expired username: {name}")
    if user["auth"] == "nologin":
        raise MoodleException("wsaccessusernologin",
                              f"Refused web service access for nologin authentication username: {name}")


def _password_expired(engine: Engine, config: ConfigCache, user: dict, now: int) -> bool:
    settings = config.remember(("auth_manual",), lambda: dict(engine.rows(
        "SELECT name, value FROM {t:config_plugins} WHERE plugin = 'auth_manual' AND name IN ('expiration', "
        "'expirationtime')")))
    days = int(settings.get("expirationtime") or 0) if str(settings.get("expirationtime") or "0").isdigit() else 0
    if str(settings.get("expiration")) != "1" or days <= 0:
        return False
    last = engine.scalar("SELECT value FROM {t:user_preferences} WHERE userid = ? AND name = "
                         "'auth_manual_passwordupdatetime'", (user["id"],))
    last = int(last) if last and str(last).isdigit() else int(user["timecreated"])
    return last + days * 86400 < now


def is_siteadmin(config: ConfigCache, userid: int) -> bool:
    return str(userid) in [a.strip() for a in (config.get("siteadmins") or "").split(",")]


def has_capability(engine: Engine, config: ConfigCache, userid: int, contextid: int, capability: str) -> bool:
    """The capability algorithm of protocol.md 4.5 (its answer reused for `config.seconds`)."""
    if is_siteadmin(config, userid):
        return True
    return config.remember(("capability", userid, contextid, capability),
                           lambda: _role_capability(engine, config, userid, contextid, capability))


def _role_capability(engine: Engine, config: ConfigCache, userid: int, contextid: int, capability: str) -> bool:
    path = engine.scalar("SELECT path FROM {t:context} WHERE id = ?", (contextid,)) or f"/{contextid}"
    contexts = [int(c) for c in reversed(path.strip("/").split("/")) if c.isdigit()]
    if not contexts:
        return False
    marks = ", ".join("?" * len(contexts))
    roles = {r[0] for r in engine.rows(f"SELECT DISTINCT roleid FROM {{t:role_assignments}} WHERE userid = ? "
                                        f"AND contextid IN ({marks})", (userid, *contexts))}
    default_role = config.get("defaultuserroleid")
    if default_role and str(default_role).isdigit() and str(userid) != str(config.get("siteguest") or ""):
        roles.add(int(default_role))
    if not roles:
        return False
    rmarks = ", ".join("?" * len(roles))
    found: dict[tuple[int, int], int] = {
        (r, c): int(p) for r, c, p in engine.rows(
            f"SELECT roleid, contextid, permission FROM {{t:role_capabilities}} WHERE capability = ? "
            f"AND roleid IN ({rmarks}) AND contextid IN ({marks})", (capability, *roles, *contexts))}
    if any(p == -1000 for p in found.values()):
        return False
    for role in roles:
        for context in contexts:
            if (role, context) in found:
                if found[(role, context)] == 1:
                    return True
                break
    return False


# Moodle's text (webservice/lib.php), indentation included
_ACCESS_REASONS = """
                There could be multiple reasons for this:
                1. The service linked to the user token does not contain the function.
                2. The service is user-restricted and the user is not listed.
                3. The service is IP-restricted and the user IP is not listed.
                4. The service is time-restricted and the time has expired.
                5. The token is time-restricted and the time has expired.
                6. The service requires a specific capability which the user does not have.
                7. The function is called with username/password (no user token is sent)
                and none of the above applies."""


def check_function_access(engine: Engine, config: ConfigCache, caller: Caller, function: str, ip: str,
                          now: int) -> None:
    """Access to the function through the token's service (protocol.md 5, check 3)."""
    row = config.remember(("service", caller.serviceid, function), lambda: engine.execute(
        "SELECT s.enabled, s.restrictedusers, s.requiredcapability FROM {t:external_services} s WHERE s.id = ? "
        "AND EXISTS (SELECT 1 FROM {t:external_services_functions} f WHERE f.externalserviceid = s.id "
        "AND f.functionname = ?)", (caller.serviceid, function)).fetchone())
    allowed = row is not None and int(row[0]) == 1
    if allowed and int(row[1]) == 1:
        user = config.remember(("service user", caller.serviceid, caller.userid), lambda: engine.execute(
            "SELECT validuntil, iprestriction FROM {t:external_services_users} WHERE externalserviceid = ? "
            "AND userid = ?", (caller.serviceid, caller.userid)).fetchone())
        allowed = user is not None and (user[0] is None or user[0] < now) and (
            not user[1] or ip_in_list(ip, user[1]))
    if allowed and row[2]:
        allowed = has_capability(engine, config, caller.userid, caller.contextid, row[2])
    if not allowed:
        raise WebserviceAccessException(f"Access to the function {function}() is not allowed.{_ACCESS_REASONS}")
