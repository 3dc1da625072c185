"""`/webservice/rest/server.php`: Moodle's REST server (protocol.md sections 1–5, 12–14, 16)."""

from __future__ import annotations

import logging
import re
import time

import falcon
import peewee

from moodle_core.engines import QUERY_COMPANY, measure_db_time
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
from webservice.external import clean_returns, validate_parameters
from webservice.phpparams import parse_pairs, php_parameters

log = logging.getLogger("alx_report_api.rest")
RESERVED = ("wstoken", "wsfunction", "moodlewsrestformat", "moodlewssettingraw", "moodlewssettingfileurl",
            "moodlewssettingfilter", "moodlewssettinglang", "moodlewssettingtimezone")
MAX_BODY = 8 * 1024 * 1024
_BEARER = re.compile(r"^\s*bearer\s+(\S.*?)\s*$", re.IGNORECASE)
COMMON_HEADERS = (("Cache-Control", "private, must-revalidate, pre-check=0, post-check=0, max-age=0"),
                  ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"), ("Pragma", "no-cache"),
                  ("Accept-Ranges", "none"), ("Access-Control-Allow-Origin", "*"))


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
        """Query merged with the body at the top level: a name in both takes the body's whole value."""
        merged = php_parameters(parse_pairs(req.query_string or ""))
        if req.method == "POST":
            merged.update(php_parameters(self._body_pairs(req)))
        return merged

    def _body_pairs(self, req) -> list[tuple[str, str]]:
        kind = (req.content_type or "").split(";")[0].strip().lower()
        if (req.content_length or 0) > MAX_BODY:
            return []
        if kind == "application/x-www-form-urlencoded":
            raw = req.bounded_stream.read()
            return parse_pairs(raw.decode("latin-1")) if raw else []
        if kind == "multipart/form-data":
            pairs = []
            for part in req.get_media():
                if part.name is not None and not part.filename:
                    pairs.append((part.name, part.get_text() or ""))
            return pairs
        return []

    def _token(self, req, params: dict) -> tuple[str, str]:
        """(token, how it came): wstoken, else an Authorization: Bearer header."""
        wstoken = params.get("wstoken")
        if isinstance(wstoken, str) and wstoken != "":
            return wstoken, "wstoken"
        header = req.get_header("Authorization")
        if header and self.site.settings.webservice.allow_bearer_token:
            match = _BEARER.match(header)
            if match:
                return match.group(1), "bearer"
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
        site = self.site
        started = time.perf_counter()
        now = site.clock()
        ip = auth.client_ip(req.remote_addr or "", req.get_header("X-Forwarded-For"),
                            site.settings.webservice.trusted_proxies)
        request_log = RequestLog(site.engine)
        request_log.set(userid=0, companyid=0, company_shortname="unknown", endpoint="", record_count=0,
                        timeaccessed=now, ip_address=ip[:45], user_agent=(req.user_agent or "unknown")[:255],
                        counted=0, response_bytes=0)
        if not auth.webservices_enabled(site.config):
            resp.status = falcon.HTTP_403
            resp.content_type = "text/html; charset=UTF-8"
            resp.data = b""
            request_log.set(errorcode="restdisabled", error_message="Web services are disabled",
                            response_time_ms=round((time.perf_counter() - started) * 1000, 2))
            request_log.write()
            return
        params = self._parameters(req)
        fmt = "json" if params.get("moodlewsrestformat") == "json" else "xml"
        function = params.get("wsfunction") if isinstance(params.get("wsfunction"), str) else ""
        token, how = self._token(req, params)
        request_log.set(endpoint=function[:255], token_hash=token_hash(token) if token else None)
        request_log.extra.update(request_method=req.method, format=fmt, auth=how)
        for name in RESERVED:
            params.pop(name, None)
        call = Call(site.engine, site.moodle, site.settings, site.config, site.timezone, req.method, ip, now,
                    started, function, request_log, site_versions=site.registry.versions,
                    user_agent=req.user_agent or "", pull_id=req.get_header("X-ALX-Pull-Id") or None)
        schema = None
        try:
            try:
                result, schema = self._run(call, token, function, params)
                body = render.to_json(result) if fmt == "json" else render.to_xml(result, schema)
            except MoodleException:
                raise
            except peewee.InterfaceError as exc:
                log.exception("database connection failed")
                raise DmlConnectionException(str(exc).splitlines()[0] if str(exc) else None) from exc
            except peewee.DatabaseError as exc:
                log.exception("database error")
                raise DmlReadException(str(exc).splitlines()[0] if str(exc) else None) from exc
            except Exception as exc:
                log.exception("unexpected error in %s", function)
                raise unexpected(f"{type(exc).__name__}: {exc}") from exc
        except MoodleException as exc:
            body = render.error_json(exc, call.debug) if fmt == "json" else render.error_xml(exc, call.debug)
            request_log.set(error_message=exc.message, errorcode=exc.errorcode, record_count=0)
        self._headers(resp, call, fmt)
        resp.status = falcon.HTTP_200
        resp.data = body
        request_log.set(response_time_ms=call.elapsed_ms(), response_bytes=len(body), db_time_ms=round(db_ms[0], 2))
        request_log.write()
        for hook in site.registry.after_request:
            try:
                hook(call)
            except Exception:  # a hook never changes the answer
                log.exception("after-request hook failed")

    def _run(self, call: Call, token: str, function: str, params: dict):
        site, engine = self.site, self.site.engine
        call.caller = auth.authenticate(engine, token, call.ip, call.now)
        call.log.set(userid=call.caller.userid, token_hash=token_hash(call.caller.token))
        auth.check_user(engine, site.config, call.caller, call.now)
        call.company = site.moodle.user_company(call.caller.userid)
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
        known = engine.scalar("SELECT id FROM {t:external_functions} WHERE name = ?", (function,)) is not None
        if implemented is None or not known:
            if known:
                log.warning("function %s is in external_functions but not implemented by this service", function)
            raise DmlMissingRecordException("external_functions", "SELECT * FROM {external_functions} WHERE name = ?",
                                            [function])
        auth.check_function_access(engine, site.config, call.caller, function, call.ip, call.now)
        logged = [k for k in ("limit", "offset") if k in implemented.parameters["properties"]]
        call.log.extra.update({k: params[k] for k in logged if k in params})
        arguments = validate_parameters(implemented.parameters, params)
        call.log.extra.update({k: arguments[k] for k in logged})
        result = implemented.execute(call, **arguments)
        call.log.set(record_count=len(result) if isinstance(result, list) else 1)
        changed: list = []
        cleaned = clean_returns(implemented.returns, result, changed)
        if changed:
            call.log.extra["cleaned_values"] = len(changed)
            log.warning("cleaned %d values in %s: %s", len(changed), function,
                        ", ".join(f"{key}={before!r}" for key, before in changed[:20]))
        return cleaned, implemented.returns

    def _headers(self, resp, call: Call, fmt: str) -> None:
        if fmt == "json":
            resp.content_type = "application/json"
        else:
            resp.content_type = "application/xml; charset=utf-8"
            resp.set_header("Content-Disposition", 'inline; filename="response.xml"')
        for name, value in COMMON_HEADERS:
            resp.set_header(name, value)
        if call.authenticated:
            for hook in self.site.registry.response_headers:
                try:
                    call.headers.update(hook(call))
                except Exception:
                    log.exception("response header hook failed")
        for name, value in call.headers.items():
            resp.set_header(name, value)
