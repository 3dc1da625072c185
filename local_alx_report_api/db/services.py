"""The plugin's web-service functions, as Moodle's db/services.php (protocol.md section 9)."""

COMPONENT = "local_alx_report_api"
VERSION = 2026112500
SERVICE_SHORTNAME = "alx_report_api_custom"
SERVICE_NAME = "ALX Report API Custom Service"
LEGACY_SHORTNAME = "alx_report_api"
FUNCTIONS = {
    "local_alx_report_api_get_course_progress": {
        "classname": "local_alx_report_api_external",
        "methodname": "get_course_progress",
        "classpath": "local/alx_report_api/externallib.php",
        "description": "Get course progress data for company users",
        "type": "read",
        "module": "local_alx_report_api.classes.external.get_course_progress",
    },
}
# Rate-limit headers on every response once the token and user are known (protocol.md 14)
RESPONSE_HEADERS = "local_alx_report_api.classes.ratelimit.response_headers"
# Alerts raised where requests happen (monitoring.md 3.2, "inline")
AFTER_REQUEST = ["local_alx_report_api.classes.inline_alerts.after_request",
                 "local_alx_report_api.classes.prometheus.observe"]
# Extra routes of the web app: path → resource class (constructed with the site when it takes one)
ROUTES = {"/metrics": "local_alx_report_api.classes.prometheus.Metrics",
          "/healthz": "local_alx_report_api.classes.prometheus.Healthz",
          "/readyz": "local_alx_report_api.classes.prometheus.Readyz"}
# Route groups of the web app: (app, site) → None (the control center, admin-ui.md)
MOUNTS = ["local_alx_report_api.controlcenter.mount", "local_alx_report_api.classes.odata.feed.mount"]
