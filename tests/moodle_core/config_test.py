"""settings.ini: declared settings, types, ranges, sources and the exact start-up messages."""

import pytest

from local_alx_report_api import settings as plugin_settings
from moodle_core.config import ConfigError


def load(tmp_path, text, env=None):
    path = tmp_path / "settings.ini"
    path.write_text(text)
    return plugin_settings.load(path, env or {})


def test_defaults_without_a_file(tmp_path):
    s = plugin_settings.load(tmp_path / "absent.ini", {})
    assert s.database.url == "sqlite:///moodle.sqlite3" and s.database.prefix == "mdl_"
    assert s.local_alx_report_api.report_roles == ["student"]
    assert s.metrics.allowed_ips == ["127.0.0.1", "::1"]
    assert s.scheduled_tasks.sync_reporting_data_task == "0 * * * *"
    assert s.sources[("database", "url")] == "default"


def test_every_type_is_parsed(tmp_path):
    s = load(tmp_path, "[site]\ndebug = YES\ntimezone = Europe/London\n[local_alx_report_api]\n"
                       "report_roles = student, , editingteacher\nalert_error_rate_percent = 2.5\n"
                       "max_records = 500\n[sms]\nheaders =\n  X-Api-Key: abc\n  X-Other: 1\n"
                       "[scheduled_tasks]\ncleanup_task = */30 1-5 * * 0,7\n")
    assert s.site.debug is True and s.site.timezone == "Europe/London"
    assert s.local_alx_report_api.report_roles == ["student", "editingteacher"]
    assert s.local_alx_report_api.alert_error_rate_percent == 2.5
    assert s.local_alx_report_api.max_records == 500
    assert s.sms.headers == "X-Api-Key: abc\nX-Other: 1"
    assert s.scheduled_tasks.cleanup_task == "*/30 1-5 * * 0,7"
    assert s.sources[("local_alx_report_api", "max_records")] == str(tmp_path / "settings.ini")


@pytest.mark.parametrize("text, message", [
    ("[database]\nurll = x\n", "Unknown setting [database] urll"),
    ("[databse]\nurl = x\n", "Unknown setting [databse] url"),
    ("[local_alx_report_api]\nmax_records = 0\n",
     "Invalid value for [local_alx_report_api] max_records: expected int 1-10000, got '0'"),
    ("[local_alx_report_api]\nrate_limit = ten\n",
     "Invalid value for [local_alx_report_api] rate_limit: expected int >= 0, got 'ten'"),
    ("[site]\ndebug = maybe\n", "Invalid value for [site] debug: expected bool, got 'maybe'"),
    ("[site]\ntimezone = Mars/Olympus\n",
     "Invalid value for [site] timezone: expected an IANA time zone name, got 'Mars/Olympus'"),
    ("[local_alx_report_api]\nalert_threshold = urgent\n",
     "Invalid value for [local_alx_report_api] alert_threshold: expected one of low, medium, high, critical, got 'urgent'"),
    ("[scheduled_tasks]\ncleanup_task = 61 * * * *\n",
     "Invalid value for [scheduled_tasks] cleanup_task: expected five cron fields (minute hour day month dayofweek) "
     "or disabled, got '61 * * * *'"),
    ("[webservice]\ntrusted_proxies = 10.0.0.0/8, nonsense\n",
     "Invalid value for [webservice] trusted_proxies: expected a comma-separated list of IP addresses or CIDR ranges, "
     "got '10.0.0.0/8, nonsense'"),
    ("[admin]\nsecret_key = short\n",
     "Invalid value for [admin] secret_key: expected a string of at least 32 characters, got 'short'"),
])
def test_bad_settings_stop_startup_with_the_spec_message(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert str(err.value) == message


def test_environment_overrides_the_file(tmp_path):
    s = load(tmp_path, "[database]\nurl = sqlite:///file.sqlite3\n",
             {"ALX_DATABASE_URL": "postgresql://u@h/db", "ALX_MAIL_SMTP_PORT": "2525",
              "ALX_SCHEDULED_TASKS_SYNC_REPORTING_DATA_TASK": "disabled"})
    assert s.database.url == "postgresql://u@h/db"
    assert s.sources[("database", "url")] == "env ALX_DATABASE_URL"
    assert s.mail.smtp_port == 2525 and s.scheduled_tasks.sync_reporting_data_task == "disabled"
    with pytest.raises(ConfigError, match=r"\[mail\] smtp_port: expected int 1-65535, got '0'"):
        load(tmp_path, "", {"ALX_MAIL_SMTP_PORT": "0"})


def test_secrets_are_masked_when_described(tmp_path):
    s = load(tmp_path, "", {"ALX_MAIL_SMTP_PASSWORD": "hunter2", "ALX_ADMIN_SECRET_KEY": "x" * 40})
    shown = {(sec, name): value for sec, name, value, _ in s.describe()}
    assert shown[("mail", "smtp_password")] == "********" and shown[("admin", "secret_key")] == "********"
    assert shown[("mail", "smtp_host")] == "localhost"


def test_every_url_of_a_list_is_shown_without_its_password(tmp_path):
    s = load(tmp_path, "", {"ALX_DATABASE_URL": "postgresql://alx:pw0@db/moodle",
                            "ALX_DATABASE_REPLICA_URLS": "postgresql://alx:pw1@r1/moodle, postgresql://alx:pw2@r2/moodle"})
    shown = {(sec, name): value for sec, name, value, _ in s.describe()}
    assert shown[("database", "url")] == "postgresql://alx:********@db/moodle"
    assert shown[("database", "replica_urls")] == ("postgresql://alx:********@r1/moodle, "
                                                   "postgresql://alx:********@r2/moodle")
    for given, seen in (("postgresql://u:p@ss@db/m", "postgresql://u:********@db/m"),  # an @ in the password
                        ("postgresql://u@db/m?sslmode=require&sslpassword=k", "postgresql://u@db/m?sslmode=require&sslpassword=********"),
                        ("postgresql://a:x@db/mpostgresql://b:y@db/m", "postgresql://a:********@db/mpostgresql://b:********@db/m")):
        s = load(tmp_path, "", {"ALX_DATABASE_URL": given})
        assert {(sec, name): value for sec, name, value, _ in s.describe()}[("database", "url")] == seen


def test_sms_needs_a_gateway_when_enabled(tmp_path):
    with pytest.raises(ConfigError, match=r"\[sms\] gateway_url"):
        load(tmp_path, "[sms]\nenabled = true\n")
