"""The WSGI application: `create_app(settings)` wires the database, the Moodle read model, the
function registry and the REST server. No module-level app or connection."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import falcon

from moodle_core import replicas
from moodle_core.config import Settings
from moodle_core.engines import Engine, first_line
from moodle_core.moodle import Moodle
from webservice.auth import ConfigCache
from webservice.registry import Registry, load_registry
from webservice.rest.server import ENDPOINT, MAX_BODY, RestServer

log = logging.getLogger("alx_report_api.web")

# Components whose services modules are loaded, like Moodle's db/services.php of each component
SERVICES = ["webservice.core.services", "local_alx_report_api.db.services"]


@dataclass
class Site:
    """Everything a request needs, built once per process."""

    settings: Settings
    engine: Engine
    moodle: Moodle
    registry: Registry
    config: ConfigCache
    clock: Callable[[], int] = field(default=lambda: int(time.time()))
    _timezone: str | None = None

    @property
    def timezone(self) -> str:
        """The site time zone, read once per process (settings.md 1.2)."""
        if self._timezone is None:
            self._timezone = self.moodle.site_timezone(self.settings.site.timezone)[0]
        return self._timezone


class Connections:
    """One database connection per worker thread, kept between requests: opening one costs more
    than reading a page. A connection idle for PING_AFTER seconds is pinged before the request and
    replaced if the server dropped it; a busy one is not (a round trip per request), and a drop
    between two close requests is met by the statements' own reconnect-and-retry."""

    PING_AFTER = 2.0

    def __init__(self, engine: Engine):
        self.engine = engine
        self.used = threading.local()

    def process_request(self, req, resp):
        try:
            idle = time.monotonic() - getattr(self.used, "at", 0.0)
            if not self.engine.db.is_closed() and idle >= self.PING_AFTER and not self.engine.alive():
                self.engine.reconnect()
            self.engine.db.connect(reuse_if_open=True)
        except Exception as exc:  # the resource answers for it: a Moodle envelope, or 503 on /readyz
            log.warning("database connection failed: %s", first_line(exc))

    def process_response(self, req, resp, resource, req_succeeded):
        self.used.at = time.monotonic()
        if not self.engine.db.is_closed() and self.engine.db.in_transaction():  # never carried over
            log.error("a request left a transaction open on %s; rolled back", req.path)
            self.engine.reconnect()


def not_found(req, resp, **kwargs):
    resp.status = falcon.HTTP_404
    resp.content_type = "text/plain"
    resp.text = "Not Found"


class AnyMethod:
    """protocol.md 1: any method other than GET, POST and HEAD is processed like GET. Falcon
    answers methods it does not route itself (TRACE, WebDAV, unknown words) with its own 405 or
    400, so the endpoint's requests reach it as GET, the method as sent kept in `alx.method`."""

    def __init__(self, app: falcon.App):
        self.app = app

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "POST", "HEAD") and environ.get("PATH_INFO") == ENDPOINT:
            environ["alx.method"], environ["REQUEST_METHOD"] = method, "GET"
        return self.app(environ, start_response)


def create_app(settings: Settings, *, engine: Engine | None = None, clock: Callable[[], int] | None = None,
               services: list[str] | None = None) -> AnyMethod:
    """The WSGI app for one Moodle site. `clock` fixes "now" for tests."""
    if engine is None:
        engine = replicas.connect_site(settings.database, web=True)
    else:  # an engine made before the site's tables were (tests) names them now
        engine.name_tables(settings.database.iomad_schema)
    engine.slow_query_ms = settings.local_alx_report_api.slow_query_ms
    engine.retry_attempts, engine.retry_base_delay = settings.database.retry_attempts, settings.database.retry_base_delay
    moodle = Moodle(engine)
    site = Site(settings, engine, moodle, load_registry(services or SERVICES),
                ConfigCache(engine, settings.local_alx_report_api.config_cache_seconds))
    if clock is not None:
        site.clock = clock
    engine.close()  # each worker (after the fork) opens its own at its first request
    app = falcon.App(middleware=[Connections(engine)])
    app.req_options.strip_url_path_trailing_slash = False
    # Falcon stops at 64 parts of 1 MiB: the endpoint's own limits decide instead (decision 92)
    multipart = app.req_options.media_handlers[falcon.MEDIA_MULTIPART].parse_options
    multipart.max_body_part_count = settings.webservice.max_input_vars + 1
    multipart.max_body_part_buffer_size = MAX_BODY
    app.add_route(ENDPOINT, RestServer(site))
    for path, resource in site.registry.routes.items():
        takes_site = resource.__init__ is not object.__init__
        app.add_route(path, resource(site) if takes_site else resource())
    for mount in site.registry.mounts:
        mount(app, site)
    app.add_sink(not_found, "/")
    return AnyMethod(app)
