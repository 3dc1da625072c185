"""The control center (admin-ui.md): server-rendered pages for Moodle site administrators under
/local/alx_report_api/, served by the same web process as the REST endpoint.

Each page module lists its ROUTES (path under the prefix → Page class); `mount` adds them."""

from __future__ import annotations

import importlib
from pathlib import Path

import falcon

from local_alx_report_api.controlcenter.web import PREFIX, ControlCenter, gate

PAGES = ["login", "overview", "companies", "tokens", "data", "cache", "monitoring", "alerts", "logs",
         "configuration"]
STATIC = Path(__file__).resolve().parent.parent / "static"
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class Static:
    """The service's own CSS and script (no external resources, admin-ui.md 1)."""

    def __init__(self, cc: ControlCenter):
        self.cc = cc

    def on_get(self, req, resp, name: str):
        if not gate(self.cc, resp):
            return
        path = STATIC / name
        if path.suffix not in TYPES or path.parent != STATIC or not path.is_file():
            raise falcon.HTTPNotFound()
        resp.content_type, resp.data = TYPES[path.suffix], path.read_bytes()
        resp.set_header("Cache-Control", "public, max-age=3600")


class Slash:
    def __init__(self, cc: ControlCenter):
        self.cc = cc

    def on_get(self, req, resp):
        if gate(self.cc, resp):
            raise falcon.HTTPFound(PREFIX + "/")


def mount(app: falcon.App, site) -> None:
    cc = ControlCenter(site)
    app.add_route(PREFIX + "/static/{name}", Static(cc))
    app.add_route(PREFIX, Slash(cc))
    for name in PAGES:
        try:
            module = importlib.import_module(f"local_alx_report_api.controlcenter.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"local_alx_report_api.controlcenter.{name}":
                raise
            continue  # a page built later
        for path, page in module.ROUTES.items():
            app.add_route(PREFIX + path, page(cc))
