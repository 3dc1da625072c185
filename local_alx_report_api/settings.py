"""Every global setting of the service, declared once (settings.md section 1)."""

from local_alx_report_api.db.tasks import TASKS, cron_line, short_name
from moodle_core.config import Setting

LEVELS = ("low", "medium", "high", "critical")


def _s(section, name, type_, default, help_, **kw):
    return Setting(section, name, type_, default, help_, **kw)


DECLARATIONS = [
    # [site]
    _s("site", "wwwroot", "string", "http://localhost:8000", "Base URL of the service as clients reach it."),
    _s("site", "timezone", "timezone", "", "IANA site time zone; empty = Moodle's config timezone (99/none = UTC)."),
    _s("site", "debug", "bool", False, "Add debuginfo to error answers. Never in production."),
    # [database]
    _s("database", "url", "string", "sqlite:///moodle.sqlite3", "The Moodle database URL (sqlite, postgresql, mariadb/mysql)."),
    _s("database", "lock_url", "string", "", "The same PostgreSQL database reached directly, when url goes through "
       "PgBouncer in transaction pooling mode: the named locks' connections use it (admin guide 2.5). Empty = url."),
    _s("database", "replica_urls", "list", [], "PostgreSQL streaming standbys of url, for the reads that may lag "
       "(report pages, Moodle's live tables for sync, populate and reconcile): docs/scaling.md. Empty = none."),
    _s("database", "replica_max_lag", "float", 30.0, "Seconds a replica may lag before reads leave it for the primary "
       "(and the health check and an alert say so).", min=1, max=3600),
    _s("database", "prefix", "string", "mdl_", "Moodle table prefix, applied to Moodle, IOMAD and plugin tables."),
    _s("database", "iomad_schema", "enum", "auto", "IOMAD table names: auto, 4 or 5.", choices=("auto", "4", "5")),
    _s("database", "retry_attempts", "int", 3, "Attempts per unit of database work.", min=1, max=10),
    _s("database", "retry_base_delay", "float", 1.0, "Seconds before the second attempt; doubled after.", min=0.01, max=60),
    # [webservice]
    _s("webservice", "trusted_proxies", "cidrs", [], "Peers whose X-Forwarded-For is trusted."),
    _s("webservice", "allow_bearer_token", "bool", True, "Accept Authorization: Bearer when wstoken is absent."),
    _s("webservice", "max_input_vars", "int", 1000, "Most parameters per query string or body (PHP's max_input_vars).",
       min=1, max=1000000),
    _s("webservice", "max_input_nesting_level", "int", 64, "Deepest parameter name nesting (PHP's "
       "max_input_nesting_level).", min=1, max=200),
    # [local_alx_report_api]
    *[_s("local_alx_report_api", *row[:4], **(row[4] if len(row) > 4 else {})) for row in [
        ("max_records", "int", 1000, "Largest allowed limit.", {"min": 1, "max": 10000}),
        ("rate_limit", "int", 100, "Requests per token user per day; 0 = unlimited.", {"min": 0}),
        ("rate_limit_per_pull", "bool", True, "Count a pull once: its next pages are free. false counts every "
         "request, as the original did. A company can override it."),
        ("full_pull_user_agents", "list", ["Microsoft.Data.Mashup"], "User-Agent prefixes of clients whose "
         "pulls are full in Auto mode (Power Query: Power BI, Excel, Dataflows); empty = none."),
        ("allow_get_method", "bool", False, "Allow methods other than POST for get_course_progress."),
        ("report_roles", "list", ["student"], "Role shortnames that put a user in row scope."),
        ("log_retention_days", "int", 90, "Delete log rows older than this; 0 keeps them.", {"min": 0}),
        ("alert_retention_days", "int", 90, "Delete resolved alerts older than this.", {"min": 1}),
        ("max_sync_time", "int", 300, "Seconds after which the sync task starts no new batch.", {"min": 30, "max": 86400}),
        ("sync_batch_size", "int", 1000, "Pairs per batch (sync, populate, reconcile).", {"min": 100, "max": 5000}),
        ("sync_lookback_seconds", "int", 600, "Overlap subtracted from change-detection cutoffs.", {"min": 0, "max": 86400}),
        ("reconcile_max_time", "int", 3600, "Time budget of the reconcile task.", {"min": 60, "max": 86400}),
        ("enable_alerting", "bool", True, "Master switch for alerts."),
        ("enable_email_alerts", "bool", True, "Email channel on/off."),
        ("alert_threshold", "enum", "medium", "Lowest severity that is notified.", {"choices": LEVELS}),
        ("alert_emails", "list", [], "Alert recipients."),
        ("alert_cooldown", "int", 60, "De-duplication window after resolution, minutes.", {"min": 0}),
        ("metrics_window_minutes", "int", 60, "Window of the request metrics.", {"min": 5, "max": 1440}),
        ("alert_min_requests", "int", 20, "Minimum sample for rate-based conditions.", {"min": 1}),
        ("alert_response_time_ms", "int", 2000, "Response time alert threshold.", {"min": 1}),
        ("alert_error_rate_percent", "float", 5.0, "Error rate alert threshold.", {"min": 0, "max": 100}),
        ("alert_cache_hit_rate_percent", "float", 70.0, "Cache hit rate alert threshold.", {"min": 0, "max": 100}),
        ("db_response_time_threshold", "int", 200, "Database latency threshold, ms.", {"min": 1}),
        ("config_cache_seconds", "int", 10, "How long a worker reuses Moodle config values, capability answers "
         "and service definitions (0: read on every request).", {"min": 0}),
        ("slow_query_ms", "int", 1000, "Queries slower than this are logged.", {"min": 1}),
        ("high_api_usage_threshold", "int", 200, "Calls per hour that raise a usage alert.", {"min": 1}),
        ("health_score_threshold", "int", 70, "Health score below which an alert is raised.", {"min": 0, "max": 100}),
        ("alert_invalid_token_count", "int", 10, "Invalid token attempts that raise an alert.", {"min": 1}),
        ("alert_invalid_token_minutes", "int", 15, "Window of the invalid token condition.", {"min": 1}),
        ("alert_token_ip_count", "int", 5, "Distinct IPs per token that raise an alert.", {"min": 2}),
        ("alert_access_denied_count", "int", 5, "Access-denied answers that raise an alert.", {"min": 1}),
        ("sync_failure_threshold", "int", 3, "Consecutive sync failures that raise an alert.", {"min": 1}),
        ("task_failure_threshold", "int", 3, "Consecutive task failures that raise an alert.", {"min": 1}),
    ]],
    # [mail]
    _s("mail", "smtp_host", "string", "localhost", "SMTP server."),
    _s("mail", "smtp_port", "int", 25, "SMTP port.", min=1, max=65535),
    _s("mail", "smtp_security", "enum", "none", "none, starttls or ssl.", choices=("none", "starttls", "ssl")),
    _s("mail", "smtp_user", "string", "", "Authenticate when non-empty."),
    _s("mail", "smtp_password", "string", "", "SMTP password.", secret=True),
    _s("mail", "from_address", "string", "noreply@localhost", "Sender address."),
    _s("mail", "from_name", "string", "ALX Report API", "Sender name."),
    _s("mail", "timeout_seconds", "int", 30, "SMTP timeout.", min=1, max=300),
    # [sms]
    _s("sms", "enabled", "bool", False, "SMS channel on/off."),
    _s("sms", "gateway_url", "string", "", "SMS gateway URL; required when enabled."),
    _s("sms", "method", "enum", "POST", "HTTP method.", choices=("POST", "GET")),
    _s("sms", "content_type", "enum", "json", "Body encoding.", choices=("json", "form")),
    _s("sms", "headers", "multiline", "", "One 'Name: value' per line.", secret=True),
    _s("sms", "body_template", "string", "", "Body template; empty = the default."),
    _s("sms", "recipients", "list", [], "E.164 numbers."),
    _s("sms", "min_severity", "enum", "high", "Lowest severity sent by SMS.", choices=LEVELS),
    _s("sms", "timeout_seconds", "int", 10, "Gateway timeout.", min=1, max=120),
    # [admin]
    _s("admin", "enabled", "bool", True, "Serve the control center."),
    _s("admin", "secret_key", "string", "", "Signs login cookies and CSRF tokens (>= 32 characters).",
       secret=True, min_length=32),
    _s("admin", "login_minutes", "int", 120, "Sign-in expiry without a request.", min=5, max=1440),
    _s("admin", "login_max_hours", "int", 24, "Sign-in expiry however active (an absolute lifetime).", min=1, max=720),
    _s("admin", "password_peppers", "list", [], "Moodle passwordpeppers, newest first.", secret=True),
    _s("admin", "login_max_failures", "int", 5, "Failed sign-ins before lockout.", min=1),
    _s("admin", "login_lockout_minutes", "int", 15, "Lockout length and counting window.", min=1),
    # [metrics]
    _s("metrics", "token", "string", "", "Bearer token required on /metrics when set.", secret=True),
    _s("metrics", "allowed_ips", "cidrs", ["127.0.0.1", "::1"], "Clients allowed to read /metrics; empty = any."),
    # [cron] and [scheduled_tasks]
    _s("cron", "max_runtime", "int", 1800, "A pass starts no new task after this many seconds.", min=60, max=86400),
    _s("cron", "job_poll_seconds", "int", 5, "Queued-job check interval of cron --keep-alive.", min=1, max=60),
    *[_s("scheduled_tasks", short_name(t["classname"]), "cron", cron_line(t),
         f"Schedule override of {short_name(t['classname'])}.") for t in TASKS],
]


def load(path=None, environ=None):
    """Load the effective settings (settings.md 1.1) and check cross-setting rules."""
    from moodle_core.config import ConfigError, load_settings

    settings = load_settings(DECLARATIONS, path, environ)
    if settings.get("sms", "enabled") and not settings.get("sms", "gateway_url"):
        raise ConfigError("Invalid value for [sms] gateway_url: expected a URL when [sms] enabled is true, got ''")
    return settings
