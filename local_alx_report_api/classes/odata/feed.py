"""`/local/alx_report_api/odata/`: an OData 4.0 feed of the caller's company's course progress
(issue 13), read by Power BI's OData.Feed, Excel and any OData client.

The same tokens and checks as the REST endpoint (webservice.rest.server.authorize), the same
rate limit (a request without $skiptoken counts, a nextLink within its time does not), the same
request log (source `odata`). Rows come from the reporting table, one keyset statement a page."""

from __future__ import annotations

import base64
import binascii
import logging
import operator
import re
import time
from urllib.parse import parse_qsl, quote, urlencode

import falcon
import orjson

from local_alx_report_api.classes import company_settings, pages, ratelimit, replica_reads
from local_alx_report_api.classes.odata import model, paging
from local_alx_report_api.classes.odata.query import ODataError, Options, bad, parse, single, unsupported
from local_alx_report_api.classes.progress import Scope, live_rows
from local_alx_report_api.classes.pulls import FUNCTION
from moodle_core.engines import QUERY_COMPANY, measure_db_time
from webservice import auth
from webservice.call import Call, RequestLog, token_hash
from webservice.errors import MoodleException
from webservice.rest.server import as_moodle, authorize, finish, hooked_headers

log = logging.getLogger("alx_report_api.odata")
ROOT = "/local/alx_report_api/odata"
_BASIC = re.compile(r"^\s*basic\s+(\S+)\s*$", re.IGNORECASE)
_OFFSET_PLUS = re.compile(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?)\+(\d\d:\d\d)")  # +hh:mm sent unencoded
_MAXPAGESIZE = re.compile(r"(?:^|[,;\s])odata\.maxpagesize\s*=\s*(\d{1,9})", re.IGNORECASE)
_HEADERS = {"OData-Version": "4.0", "Cache-Control": "no-cache, private", "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": "OData-Version, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, "
                                             "X-RateLimit-Reset"}
# the HTTP status of each Moodle error an OData client can meet
_STATUS = {"invalidtoken": 401, "accessexception": 403, "invalidrecord": 403, "nocompanyassociation": 403,
           "sitemaintenance": 503, "ratelimitexceeded": 429, "dbconnectionfailed": 503, "dmlreadexception": 503,
           "dmlwriteexception": 503, "restdisabled": 403}


def _status(errorcode: str) -> int:
    return _STATUS.get(errorcode) or (403 if errorcode.startswith("wsaccess") else 500)


JSON = "application/json;odata.metadata={};odata.streaming=true;IEEE754Compatible={}"


def mount(app, site) -> None:
    feed = Feed(site)
    for template in (ROOT, ROOT + "/", ROOT + "/{rest:path}"):
        app.add_route(template, feed)


def query_pairs(query_string: str) -> dict[str, list[str]]:
    """The query's parameters; a `+` before an offset (…T10:00:00+01:00) is the offset's sign, not a
    space (clients that form-encode send spaces as `+`, others leave the sign as it is)."""
    pairs: dict[str, list[str]] = {}
    for name, value in parse_qsl(_OFFSET_PLUS.sub(r"\1%2B\2", query_string), keep_blank_values=True):
        pairs.setdefault(name, []).append(value)
    return pairs


class Feed:
    def __init__(self, site):
        self.site = site

    def on_get(self, req, resp, rest: str | None = None) -> None:
        company = QUERY_COMPANY.set(None)
        try:
            with measure_db_time() as db_ms:
                self._handle(req, resp, rest or "", db_ms)
        finally:
            QUERY_COMPANY.reset(company)

    on_head = on_post = on_put = on_patch = on_delete = on_options = on_get

    def _handle(self, req, resp, rest: str, db_ms: list[float]) -> None:
        site = self.site
        started, now = time.perf_counter(), site.clock()
        ip = auth.client_ip(req.remote_addr or "", req.get_header("X-Forwarded-For"),
                            site.settings.webservice.trusted_proxies)
        request_log = RequestLog(site.engine)
        path = rest.strip("/")
        request_log.set(userid=0, companyid=0, company_shortname="unknown", endpoint=f"odata/{path}"[:255],
                        record_count=0, timeaccessed=now, ip_address=ip[:45],
                        user_agent=(req.user_agent or "unknown")[:255], counted=0, response_bytes=0, source="odata")
        request_log.extra.update(request_method=req.method)
        call = Call(site.engine, site.moodle, site.settings, site.config, "UTC", req.method, ip, now, started,
                    f"odata/{path}"[:100], request_log, user_agent=req.user_agent or "")
        try:
            try:
                body, content_type = self._answer(req, resp, call, path)
                status = 200
            except MoodleException as exc:
                raise ODataError(_status(exc.errorcode), exc.errorcode, exc.message) from exc
            except ODataError:
                raise
            except Exception as exc:
                failed = as_moodle(exc, f"odata/{path}")
                raise ODataError(_status(failed.errorcode), failed.errorcode, failed.message) from exc
        except ODataError as exc:
            status, content_type = exc.status, "application/json"
            body = orjson.dumps({"error": {"code": exc.code, "message": exc.message}})
            request_log.set(errorcode=exc.code[:100], error_message=exc.message, record_count=0)
            resp.set_headers(exc.headers)
            if exc.status == 401:
                resp.set_header("WWW-Authenticate", 'Basic realm="alx-report-api", Bearer')
            if exc.status == 503:  # a 429's Retry-After comes with the rate limit's headers
                resp.set_header("Retry-After", "30")
        resp.status = falcon.code_to_http_status(status)
        resp.content_type = content_type
        resp.set_headers(_HEADERS)
        if call.authenticated:
            resp.set_headers(hooked_headers(site, call))
        resp.data = b"" if req.method == "HEAD" else body
        finish(site, call, body, db_ms)

    # -- the answer --------------------------------------------------------------------------------
    def _answer(self, req, resp, call: Call, path: str) -> tuple[bytes, str]:
        site = self.site
        if req.method == "OPTIONS":  # a browser's CORS preflight: what a GET from another origin may send
            resp.set_headers({"Allow": "GET, HEAD, OPTIONS", "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
                              "Access-Control-Allow-Headers": "Authorization, Accept, Prefer, OData-Version, "
                                                              "OData-MaxVersion", "Access-Control-Max-Age": "600"})
            return b"", "text/plain"
        if req.method not in ("GET", "HEAD"):
            raise ODataError(405, "methodnotallowed", "The feed is read-only: use GET", {"Allow": "GET, HEAD, OPTIONS"})
        if path not in ("", "$metadata", model.ENTITY_SET, f"{model.ENTITY_SET}/$count"):
            if path.startswith(model.ENTITY_SET):
                raise unsupported(f"{path[:100]}: entities are read through the entity set and its query options")
            raise ODataError(404, "notfound", f"No resource at {path[:100]!r}: the feed has "
                                              f"'{model.ENTITY_SET}' and '$metadata'")
        if not auth.webservices_enabled(site.config):
            raise ODataError(403, "restdisabled", "Web services (the REST protocol) are disabled on this site")
        query = query_pairs(req.query_string or "")
        token, how = self._token(req, query)
        call.log.set(token_hash=token_hash(token) if token else None)
        call.log.extra["auth"] = how
        authorize(site, call, token, FUNCTION)
        call.timezone = site.timezone
        if call.company is None:
            raise ODataError(403, "nocompanyassociation", "The token's user is not a member of any company")
        settings = company_settings.load(site.engine, call.company.id, with_table=True)
        props = model.properties(settings.fields)
        root = self._root(req)
        if path == "":
            return orjson.dumps(model.service_document(root)), JSON.format("minimal", "false")
        if path == "$metadata":
            return model.csdl(props), "application/xml"
        options = parse(single(query), props, site.engine.kind, req.get_header("Accept"))
        return self._entities(req, resp, call, settings, options, root, path.endswith("/$count"), query)

    def _token(self, req, query: dict[str, list[str]]) -> tuple[str, str]:
        """(token, how it came): wstoken in the query (Power BI's ApiKeyName), else Authorization:
        Bearer (where the site allows it, as for REST) or Basic with the token as password."""
        values = {v for v in query.get("wstoken", []) if v}
        if len(values) > 1:
            raise bad("wstoken is given more than once with different values")
        if values:
            return values.pop(), "wstoken"
        header = req.get_header("Authorization") or ""
        bearer = auth.bearer_token(header, self.site.settings.webservice.allow_bearer_token)
        if bearer:
            return bearer, "bearer"
        basic = _BASIC.match(header)
        if basic:
            try:
                _, _, password = base64.b64decode(basic.group(1), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise ODataError(401, "invalidtoken", "The Basic credentials cannot be read") from None
            return password, "basic"
        return "", "none"

    def _root(self, req) -> str:
        """The service root as the client reached it (behind a trusted proxy, as the proxy says)."""
        scheme, host = req.scheme, req.get_header("Host") or req.netloc
        if auth.in_networks(req.remote_addr or "", self.site.settings.webservice.trusted_proxies):
            scheme = (req.get_header("X-Forwarded-Proto") or scheme).split(",")[0].strip()
            host = (req.get_header("X-Forwarded-Host") or host).split(",")[0].strip()
        return f"{scheme}://{host}{ROOT}/"

    def _entities(self, req, resp, call: Call, settings, options: Options, root: str, only_count: bool,
                  query: dict[str, list[str]]) -> tuple[bytes, str]:
        engine, plugin = call.engine, call.settings.local_alx_report_api
        key = paging.secret(engine, call.config, call.now)
        hashed = call.log.fields["token_hash"]
        position = (paging.verify(key, options.skiptoken, options, hashed, call.now)
                    if options.skiptoken is not None and not only_count else None)
        QUERY_COMPANY.set(call.company.id)
        scope = Scope.load(engine, call.company.id, plugin.report_roles, settings.switched_off)
        read = paging.Read(call.company.id, scope.courses)
        if (settings.table is not None and not settings.table[1]
                and live_rows(replica_reads.live(engine), scope, call.now, limit=1)):
            raise ODataError(503, "notready", "The company's report table has not been filled yet; it is filled "
                                              "by the sync task (or `alx-report-api populate`)")
        if position is not None and position.free:
            ratelimit.admit_free(call, settings)
        else:
            ratelimit.admit(call, settings)
        call.log.set(data_source="table")
        call.log.extra.update({k: v[:500] for k, v in options.text.items()})
        version = settings.table[0] if settings.table is not None else None

        def on_server(reading):  # a replica holding the company's rows as read here, else the primary
            if version is None:
                return reading(engine)
            result, on_replica = replica_reads.company_rows(engine, call.company.id, version, reading)
            if on_replica:
                call.log.extra["replica"] = True
            return result

        if only_count:
            total = on_server(lambda server: paging.count(server, read, options))
            call.log.set(record_count=1)
            return str(total).encode(), "text/plain"
        if position is None:
            size = self._page_size(req, resp, plugin.max_records)
            left, total = options.top, on_server(lambda server: paging.count(server, read, options)) if options.count else None
            after, offset = None, options.skip
        else:
            size, left, total, after, offset = position.size, position.left, position.count, position.after, 0
            call.log.extra["page"] = "next" if position.free else "next_counted"
            if size < plugin.max_records:  # the first page's preference, kept by the chain
                resp.set_header("Preference-Applied", f"odata.maxpagesize={size}")
        limit = size if left is None else min(size, left)
        columns = tuple(dict.fromkeys([*(p.column for p in options.select), *(p.column for p, _ in options.order)]))
        rows = on_server(lambda server: paging.page(server, read, options, columns, after=after, offset=offset,
                                                    limit=limit + 1)) if limit else []
        more = len(rows) > limit
        rows = rows[:limit]
        left = None if left is None else left - len(rows)
        call.log.set(record_count=len(rows))
        document: dict = {}
        if options.metadata != "none":
            chosen = f"({','.join(p.name for p in options.select)})" if options.selected else ""
            document["@odata.context"] = f"{root}$metadata#{model.ENTITY_SET}{chosen}"
        if total is not None:
            document["@odata.count"] = str(total) if options.ieee754 else total
        document["value"] = self._values(rows, columns, options, call.timezone, root)
        if more and left != 0:
            started = call.now if position is None else position.started
            last = paging.position_of(rows[-1], columns, options)
            token = paging.sign(key, paging.Position(last, left, total, size, started), options, hashed)
            document["@odata.nextLink"] = self._next(root, query, token)
        return orjson.dumps(document), JSON.format(options.metadata, str(options.ieee754).lower())

    def _page_size(self, req, resp, largest: int) -> int:
        """max_records, or less when the client prefers (Prefer: odata.maxpagesize)."""
        found = _MAXPAGESIZE.search(req.get_header("Prefer") or "")
        if found and 0 < int(found.group(1)) < largest:
            resp.set_header("Preference-Applied", f"odata.maxpagesize={int(found.group(1))}")
            return int(found.group(1))
        return largest

    @staticmethod
    def _next(root: str, query: dict[str, list[str]], token: str) -> str:
        """The next page's URL: the query as sent (wstoken too: a client given a URL follows the
        link as it is), without $skip, $top and the old $skiptoken."""
        kept = list(dict.fromkeys((name, value) for name, values in query.items() for value in values
                                  if name.lower() not in ("$skip", "$top", "$skiptoken")))  # a key a client adds again
        return f"{root}{model.ENTITY_SET}?" + urlencode([*kept, ("$skiptoken", token)], quote_via=quote, safe="$,'()")

    @staticmethod
    def _values(rows: list[tuple], columns: tuple[str, ...], options: Options, timezone: str, root: str) -> list[dict]:
        """The entities of a page. The drivers give ids and times as int and text as str: only the
        times (to ISO with the site's offset), the percentage (Decimal, or SQLite's float) and, with
        IEEE754Compatible, the numbers are converted; the rest are taken as they are."""
        iso = pages.local_times(timezone, True)
        at = paging.positions(columns)
        text = options.ieee754
        names = tuple(p.name for p in options.select)
        typed = {p.name: "#" + p.edm[4:] for p in options.select if p.edm != "Edm.String"}
        pick = operator.itemgetter(*(at[p.column] for p in options.select))
        converted = []
        for j, p in enumerate(options.select):
            if p.edm == "Edm.DateTimeOffset":
                converted.append((j, iso))
            elif p.edm == "Edm.Decimal":
                converted.append((j, (lambda v: f"{float(v):.2f}") if text else float))
            elif p.edm == "Edm.Int64" and text:
                converted.append((j, str))
        out = []
        for r in rows:
            values = list(pick(r)) if len(names) > 1 else [pick(r)]
            for j, convert in converted:
                values[j] = convert(values[j])
            if options.metadata == "full":
                entity = {"@odata.type": f"#{model.ENTITY_TYPE}",
                          "@odata.id": f"{root}{model.ENTITY_SET}(userid={r[0]},courseid={r[1]})"}
                for name, value in zip(names, values, strict=True):
                    if name in typed:  # JSON cannot tell these types from the value
                        entity[f"{name}@odata.type"] = typed[name]
                    entity[name] = value
            else:
                entity = dict(zip(names, values, strict=True))
            out.append(entity)
        return out
