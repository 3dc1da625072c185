"""Building the WSGI app for tests and calling the endpoint through webtest (real HTTP semantics,
real database)."""

from __future__ import annotations

from urllib.parse import urlencode

import webtest

from local_alx_report_api import settings as plugin_settings
from webservice.app import create_app

ENDPOINT = "/webservice/rest/server.php"
FUNCTION = "local_alx_report_api_get_course_progress"


def make_app(engine, now: int, **settings) -> webtest.TestApp:
    """The app on `engine` with a fixed clock. Settings as `section__name=value` keyword
    arguments (for example `site__debug="true"`); config values are re-read on every request."""
    environ = {"ALX_DATABASE_URL": engine.url, "ALX_DATABASE_PREFIX": engine.prefix,
               "ALX_LOCAL_ALX_REPORT_API_CONFIG_CACHE_SECONDS": "0", "ALX_SITE_WWWROOT": "http://127.0.0.1:8081"}
    for key, value in settings.items():
        section, name = key.split("__")
        environ[f"ALX_{section}_{name}".upper()] = str(value)
    clock = now if callable(now) else (lambda: now)
    app = create_app(plugin_settings.load(None, environ), engine=engine, clock=clock)
    return webtest.TestApp(app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})


def post(app: webtest.TestApp, headers: dict | None = None, **params) -> webtest.TestResponse:
    """POST form-encoded parameters, as clients and the captures do."""
    return app.post(ENDPOINT, urlencode(params), content_type="application/x-www-form-urlencoded",
                    headers=headers or {}, expect_errors=True)


def progress(app: webtest.TestApp, token: str, fmt: str = "json", **params) -> webtest.TestResponse:
    extra = {"moodlewsrestformat": fmt} if fmt else {}
    return post(app, wstoken=token, wsfunction=FUNCTION, **extra, **params)
