"""`/webservice/rest/server.php`: Moodle's REST server (protocol.md sections 1–5, 12–14, 16)."""

from __future__ import annotations

import io
import logging
import re
import time
import traceback

import falcon
import peewee

from moodle_core.engines import QUERY_COMPANY, first_line, measure_db_time
from webservice import auth, render
from webservice.call import Call, RequestLog, token_hash
from webservice.errors import (
    DmlConnectionException,
    DmlMissingRecordException,
    DmlReadException,
    InvalidParameterException,
    MoodleException,
    WebserviceAccessException,
    unexpected,
)
from webservice.external import Encoded, clean_returns, validate_parameters
from webservice.phpparams import InputLimitError, parse_pairs, php_parameters, too_many

log = logging.getLogger("alx_report_api.rest")
RESERVED = ("wstoken", "wsfunction", "moodlewsrestformat", "moodlewssettingraw", "moodlewssettingfileurl",
            "moodlewssettingfilter", "moodlewssettinglang", "moodlewssettingtimezone")
ENDPOINT = "/webservice/rest/server.php"
MAX_BODY = 8 * 1024 * 1024
DROP_AT_MOST = 16 * 1024 * 1024  # nginx (deploy/) passes bodies up to 16 MiB


def _drop(stream) -> None:
    """Read and throw away a body that is not used, up to DROP_AT_MOST: closing a socket with
    unread data resets it, and the reset can overtake the answer (a client, or nginx with a 502,
    then never sees it). PHP reads such a body too."""
    left = DROP_AT_MOST
    while left > 0:
        chunk = stream.read(min(65536, left))
        if not chunk:
            return
        left -= len(chunk)
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
_JSON_FORMAT = re.compile(r"(?:^|&)moodlewsrestformat=json(?:&|$)")
COMMON_HEADERS = (("Cache-Control", "private, must-revalidate, pre-check=0, post-check=0, max-age=0"),
                  ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"), ("Pragma", "no-cache"),
                  ("Accept-Ranges", "none"), ("Access-Control-Allow-Origin", "*"))


def as_moodle(exc: Exception, doing: str) -> MoodleException:
    """The Moodle error for an exception that is not one: the database's own, or
    `unexpectederror`. Logged once, the traceback cut to its last frames (a RecursionError's
    runs to hundreds)."""
    first = first_line(exc)[:500] if str(exc).strip() else None
    if isinstance(exc, peewee.InterfaceError) or (isinstance(exc, peewee.OperationalError) and first
                                                    and "connect" in first.lower()):
        log.error("database connection failed in %s: %s", doing, first)
        return DmlConnectionException(first)
    if isinstance(exc, peewee.DatabaseError):
        log.error("database error in %s: %s", doing, first)
        return DmlReadException(first)
    log.error("unexpected error in %s: %s: %s\n%s", doing, type(exc).__name__, first,
              "".join(traceback.format_exception(exc, limit=-8)))
    return unexpected(f"{type(exc).__name__}: {first}")


def authorize(site, call: Call, token: str, function: str):
    """Token, user, protocol capability, function and function-access checks in Moodle's order
    (protocol.md 4-5), for every endpoint that answers with a function's data (REST, OData).
    Fills the caller, company and log fields as they become known; returns the function."""
    engine = site.engine
    call.caller = auth.authenticate(engine, token, call.ip, call.now)
    call.log.set(userid=call.caller.userid, token_hash=token_hash(call.caller.token))
    auth.check_user(engine, site.config, call.caller, call.now)
    call.company = call.caller.company
    if call.company:
        call.log.set(companyid=call.company.id, company_shortname=call.company.shortname)
    call.authenticated = True
    if not auth.has_capability(engine, site.config, call.caller.userid, call.caller.contextid,
                               "webservice/rest:use"):
        raise WebserviceAccessException(
            "You are not allowed to use the rest protocol (missing capability: webservice/rest:use)")
    if not function:
        raise InvalidParameterException("Missing function name")
    implemented = site.registry.functions.get(function)

    def in_table() -> bool:
        return engine.scalar("SELECT id FROM {t:external_functions} WHERE name = ?", (function,)) is not None
    # reused only for the functions this service has (a name from the client would grow the memo)
    known = "\x00" not in function and (site.config.remember(("function", function), in_table)
                                        if implemented is not None else in_table())
    if implemented is None or not known:
        if known:
            log.warning("function %s is in external_functions but not implemented by this service", function)
        raise DmlMissingRecordException("external_functions", "SELECT * FROM {external_functions} WHERE name = ?",
                                        [function])
    auth.check_function_access(engine, site.config, call.caller, function, call.ip, call.now)
    return implemented


def hooked_headers(site, call: Call) -> dict[str, str]:
    """The headers the components add once the caller is known (rate limit, protocol.md 14)."""
    headers: dict[str, str] = {}
    for hook in site.registry.response_headers:
        try:
            headers.update(hook(call))
        except Exception:
            log.exception("response header hook failed")
    return headers


def finish(site, call: Call, body: bytes, db_ms: list[float]) -> None:
    """The request's log row completed and written, then the components' after-request hooks."""
    call.log.set(response_time_ms=call.elapsed_ms(), response_bytes=len(body), db_time_ms=round(db_ms[0], 2))
    call.log.write()
    for hook in site.registry.after_request:
        try:
            hook(call)
        except Exception:  # a hook never changes the answer
            log.exception("after-request hook failed")


class RestServer:
    """The endpoint resource. Every method is processed like GET or POST (section 1)."""

    def __init__(self, site):
        self.site = site  # webservice.app.Site: settings, engine, moodle, registry, clock

    def on_post(self, req, resp):
        self.handle(req, resp)

    def on_head(self, req, resp):
        self.handle(req, resp)
        resp.data = b""

    on_get = on_options = on_put = on_patch = on_delete = on_post

    # -- reading the request -------------------------------------------------------------------
    def _parameters(self, req) -> dict:
        """Query merged with the body at the top level: a name in both takes the body's whole
        value. Too many variables or too deep a name raise InputLimitError (PHP's limits)."""
        limits = self.site.settings.webservice
        merged = php_parameters(parse_pairs(req.query_string or "", limits.max_input_vars),
                                limits.max_input_nesting_level)
        if req.method == "POST":
            merged.update(php_parameters(self._body_pairs(req, limits.max_input_vars), limits.max_input_nesting_level))
        return merged

    def _body_pairs(self, req, max_vars: int) -> list[tuple[str, str]]:
        kind = (req.content_type or "").split(";")[0].strip().lower()
        if (req.content_length or 0) > MAX_BODY or kind not in FORMS:
            _drop(req.bounded_stream if req.content_length is not None else req.stream)
            return []
        if req.content_length is None:  # a chunked body: read to its end, at most MAX_BODY
            raw = req.stream.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                _drop(req.stream)
                return []
            req.stream = req.env["wsgi.input"] = io.BytesIO(raw)
            req.env["CONTENT_LENGTH"] = str(len(raw))
        if kind == "application/x-www-form-urlencoded":
            raw = req.env["alx.body"] = req.bounded_stream.read()  # kept: a refused body still names the format
            return parse_pairs(raw.decode("latin-1"), max_vars) if raw else []
        return self._multipart_pairs(req, max_vars)

    def _multipart_pairs(self, req, max_vars: int) -> list[tuple[str, str]]:
        """The text fields of a multipart body. A malformed body keeps the fields read before the
        fault (PHP skips what it cannot parse); a part whose name is not UTF-8 is skipped."""
        pairs = []
        try:
            for part in req.get_media():
                try:
                    if part.name is not None and not part.filename:
                        pairs.append((part.name, part.get_text() or ""))
                except (UnicodeDecodeError, falcon.MediaMalformedError):
                    continue
                if len(pairs) > max_vars:
                    raise too_many(max_vars)
        except (falcon.MediaMalformedError, falcon.HTTPError) as exc:
            log.info("malformed multipart body: %s", exc)
        return pairs

    def _token(self, req, params: dict) -> tuple[str, str]:
        """(token, how it came): wstoken, else an Authorization: Bearer header."""
        wstoken = params.get("wstoken")
        if isinstance(wstoken, str) and wstoken != "":
            return wstoken, "wstoken"
        bearer = auth.bearer_token(req.get_header("Authorization"), self.site.settings.webservice.allow_bearer_token)
        if bearer:
            return bearer, "bearer"
        return "", "none"

    # -- the request ---------------------------------------------------------------------------
    def handle(self, req, resp) -> None:
        company = QUERY_COMPANY.set(None)
        try:
            with measure_db_time() as db_ms:
                self._handle(req, resp, db_ms)
        finally:
            QUERY_COMPANY.reset(company)

    def _handle(self, req, resp, db_ms: list[float]) -> None:
        """Every answer is Moodle-shaped (or the 403 of a disabled site), whatever arrives and
        whatever fails; every request writes its log row."""
        site = self.site
        started = time.perf_counter()
        now = site.clock()
        method = req.env.get("alx.method", req.method)
        ip = auth.client_ip(req.remote_addr or "", req.get_header("X-Forwarded-For"),
                            site.settings.webservice.trusted_proxies)
        request_log = RequestLog(site.engine)
        request_log.set(userid=0, companyid=0, company_shortname="unknown", endpoint="", record_count=0,
                        timeaccessed=now, ip_address=ip[:45], user_agent=(req.user_agent or "unknown")[:255],
                        counted=0, response_bytes=0)
        request_log.extra.update(request_method=method)
        early: MoodleException | None = None
        try:
            enabled = auth.webservices_enabled(site.config)
        except Exception as exc:  # the database is down: answered as Moodle would, below
            enabled, early = True, as_moodle(exc, "reading the site configuration")
        if not enabled:
            resp.status = falcon.HTTP_403
            resp.content_type = "text/html; charset=UTF-8"
            resp.data = b""
            request_log.set(errorcode="restdisabled", error_message="Web services are disabled",
                            response_time_ms=round((time.perf_counter() - started) * 1000, 2))
            request_log.write()
            return
        try:
            params = self._parameters(req)
        except Exception as exc:  # PHP's limits, or anything else the input provokes
            raw = (req.query_string or "") + "&" + req.env.get("alx.body", b"").decode("latin-1")
            params = {"moodlewsrestformat": "json"} if _JSON_FORMAT.search(raw) else {}
            failed = (InvalidParameterException(str(exc)) if isinstance(exc, InputLimitError)
                      else as_moodle(exc, "reading the parameters"))
            early = early or failed
        fmt = "json" if params.get("moodlewsrestformat") == "json" else "xml"
        function = params.get("wsfunction") if isinstance(params.get("wsfunction"), str) else ""
        token, how = self._token(req, params)
        request_log.set(endpoint=function[:255], token_hash=token_hash(token) if token else None)
        request_log.extra.update(format=fmt, auth=how)
        for name in RESERVED:
            params.pop(name, None)
        call = Call(site.engine, site.moodle, site.settings, site.config, "UTC", method, ip, now,
                    started, function, request_log, site_versions=site.registry.versions,
                    user_agent=req.user_agent or "", pull_id=req.get_header("X-ALX-Pull-Id") or None, format=fmt)
        try:
            try:
                if early is not None:
                    raise early
                call.timezone = site.timezone
                body = self._run(call, token, function, params)
            except MoodleException:
                raise
            except Exception as exc:
                raise as_moodle(exc, function) from exc
        except MoodleException as exc:
            body = render.error_json(exc, call.debug) if fmt == "json" else render.error_xml(exc, call.debug)
            request_log.set(error_message=exc.message, errorcode=exc.errorcode, record_count=0)
        self._headers(resp, call, fmt)
        resp.status = falcon.HTTP_200
        resp.data = body
        finish(site, call, body, db_ms)

    def _run(self, call: Call, token: str, function: str, params: dict):
        implemented = authorize(self.site, call, token, function)
        logged = [k for k in ("limit", "offset") if k in implemented.parameters["properties"]]
        call.log.extra.update({k: params[k] for k in logged if k in params})
        arguments = validate_parameters(implemented.parameters, params)
        call.log.extra.update({k: arguments[k] for k in logged})
        call.encoder = lambda result: self._encode(call, implemented.returns, result)
        result = implemented.execute(call, **arguments)
        if isinstance(result, Encoded):  # cleaned and encoded by the function (a cached page)
            call.log.set(record_count=result.count)
            return result.body
        call.log.set(record_count=len(result) if isinstance(result, list) else 1)
        return call.encoder(result)

    def _encode(self, call: Call, returns: dict, result) -> bytes:
        """protocol.md 7, 10 and 11: the returns cleaned by their description, then written."""
        changed: list = []
        cleaned = clean_returns(returns, result, changed)
        if changed:
            call.log.extra["cleaned_values"] = call.log.extra.get("cleaned_values", 0) + len(changed)
            log.warning("cleaned %d values in %s: %s", len(changed), call.function,
                        ", ".join(f"{key}={before!r}" for key, before in changed[:20]))
        return render.to_json(cleaned) if call.format == "json" else render.to_xml(cleaned, returns)

    def _headers(self, resp, call: Call, fmt: str) -> None:
        if fmt == "json":
            resp.content_type = "application/json"
        else:
            resp.content_type = "application/xml; charset=utf-8"
            resp.set_header("Content-Disposition", 'inline; filename="response.xml"')
        for name, value in COMMON_HEADERS:
            resp.set_header(name, value)
        if call.authenticated:
            call.headers.update(hooked_headers(self.site, call))
        for name, value in call.headers.items():
            resp.set_header(name, value)
