"""Alert email over STARTTLS and implicit TLS with SMTP AUTH, against a real aiosmtpd server with a
certificate from a test CA made here by openssl (monitoring.md 3.7, settings.md 1.6; the trust
store is decision 37)."""

import json
import ssl
import subprocess

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from local_alx_report_api.classes import alerts, notify
from local_alx_report_api.task import send_notifications_task
from tests.local_alx_report_api.monitoring.alerts_test import Inbox, free_port
from tests.sites import NOW, new_site
from tests.tasks import task_env

# aiosmtpd warns about AUTH without STARTTLS even on an implicit-TLS listener, where every byte is encrypted
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A private CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    d = tmp_path_factory.mktemp("certs")
    (d / "openssl.cnf").write_text(OPENSSL_CONFIG)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-config", "openssl.cnf"]
    for command in (["req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                     "-subj", "/CN=ALX test CA", "-extensions", "ca"],
                    ["req", "-new", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
                    ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "2",
                     "-days", "2", "-out", "server.pem", "-extfile", "openssl.cnf", "-extensions", "server"]):
        subprocess.run(["openssl", *command], cwd=d, check=True, capture_output=True)
    return d / "ca.pem", d / "server.pem", d / "server.key"


class TlsInbox(Inbox):
    """Also records, per message, the envelope recipients, the TLS version and the SMTP AUTH login."""

    def __init__(self):
        super().__init__()
        self.sessions = []

    async def handle_DATA(self, server, session, envelope):
        tls = server.transport.get_extra_info("ssl_object")
        self.sessions.append((envelope.rcpt_tos, tls and tls.version(), session.authenticated and session.auth_data.login))
        return await super().handle_DATA(server, session, envelope)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"alerts", b"s3cret pass")
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture
def tls_server(certs):
    """start(security): an aiosmtpd server speaking only that security, requiring AUTH."""
    _, cert, key = certs
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    started = []

    def start(security):
        inbox = TlsInbox()
        common = dict(hostname="127.0.0.1", port=free_port(), authenticator=authenticator, auth_required=True)
        if security == "starttls":
            controller = Controller(inbox, tls_context=context, require_starttls=True, auth_require_tls=True,
                                    **common)
        else:  # implicit TLS: aiosmtpd's auth_require_tls only knows STARTTLS, so it is off here
            controller = Controller(inbox, ssl_context=context, auth_require_tls=False, **common)
        controller.start()
        started.append(controller)
        return controller.port, inbox

    yield start
    for controller in started:
        controller.stop()


def mail_settings(security, port, password="s3cret pass"):
    return dict(mail__smtp_host="127.0.0.1", mail__smtp_port=port, mail__smtp_security=security,
                mail__smtp_user="alerts", mail__smtp_password=password,
                local_alx_report_api__alert_emails="ops@example.com, noc@example.com")


def raise_alert(db, env, subject="company:5"):
    return alerts.raise_alert(db, env.settings, NOW, alert_type="sync", severity="critical", subject=subject,
                              message="Sync failed 3 times in a row for company acme: boom", data={"failures": 3})


def email_result(db, alert_id):
    data = json.loads(db.scalar("SELECT alert_data FROM {t:local_alx_api_alerts} WHERE id = ?", (alert_id,)))
    return data["notifications"]["email"]


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_with_login_delivers_the_alert(sqlite_db, tls_server, certs, monkeypatch, security):
    db = sqlite_db
    monkeypatch.setenv("SSL_CERT_FILE", str(certs[0]))  # the site's trust store holds the test CA
    port, inbox = tls_server(security)
    new_site(db)
    env = task_env(db, NOW, **mail_settings(security, port))
    alert_id = raise_alert(db, env)
    assert send_notifications_task.execute(env)["sent"] == 1
    assert [(to, login) for to, _, login in inbox.sessions] == [(["ops@example.com"], b"alerts"),
                                                                (["noc@example.com"], b"alerts")]
    assert all(version in ("TLSv1.2", "TLSv1.3") for _, version, _ in inbox.sessions)
    message = inbox.messages[0]
    assert message["Subject"] == "[ALX Report API] 🔴 Critical Alert: Sync"
    assert message["To"] == "ops@example.com" and inbox.messages[1]["To"] == "noc@example.com"
    assert message["From"].addresses[0].addr_spec == "noreply@localhost"
    text = message.get_body(("plain",)).get_content()
    assert text.splitlines()[:2] == ["Critical Alert: Sync", "Sync failed 3 times in a row for company acme: boom"]
    assert "failures: 3" in text and f"View alert: http://localhost:8000/local/alx_report_api/alerts?id={alert_id}" in text
    html = message.get_body(("html",)).get_content()
    assert "#dc3545" in html and f'href="http://localhost:8000/local/alx_report_api/alerts?id={alert_id}"' in html
    assert email_result(db, alert_id)["status"] == "sent"


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_an_untrusted_certificate_is_refused(sqlite_db, tls_server, monkeypatch, security):
    """Verification is on: a server certificate from a CA the site does not trust gets no message."""
    monkeypatch.setattr(notify, "RETRY_WAITS", (0.01, 0.01))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the system trust store only
    port, inbox = tls_server(security)
    new_site(sqlite_db)
    env = task_env(sqlite_db, NOW, **mail_settings(security, port))
    alert_id = raise_alert(sqlite_db, env)
    assert send_notifications_task.execute(env)["retry"] == 1
    result = email_result(sqlite_db, alert_id)
    assert result["status"] == "failed" and "CERTIFICATE_VERIFY_FAILED" in result["error"]
    assert inbox.messages == []


def test_starttls_not_offered_sends_nothing_in_clear(sqlite_db, monkeypatch):
    """A server that offers no STARTTLS is a failure, never a silent fall-back to plain text."""
    monkeypatch.setattr(notify, "RETRY_WAITS", (0.01, 0.01))
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        new_site(sqlite_db)
        env = task_env(sqlite_db, NOW, **mail_settings("starttls", controller.port))
        alert_id = raise_alert(sqlite_db, env)
        assert send_notifications_task.execute(env)["retry"] == 1
    finally:
        controller.stop()
    assert "STARTTLS extension not supported" in email_result(sqlite_db, alert_id)["error"]
    assert inbox.messages == []


def test_wrong_password_is_retried_and_nothing_is_lost(sqlite_db, tls_server, certs, monkeypatch):
    db = sqlite_db
    monkeypatch.setattr(notify, "RETRY_WAITS", (0.01, 0.01))  # the waits, not the behaviour
    monkeypatch.setenv("SSL_CERT_FILE", str(certs[0]))
    port, inbox = tls_server("starttls")
    new_site(db)
    wrong = task_env(db, NOW, **mail_settings("starttls", port, password="wrong"))
    alert_id = raise_alert(db, wrong)
    for _ in range(2):
        assert send_notifications_task.execute(wrong)["retry"] == 1
    result = email_result(db, alert_id)
    assert result["status"] == "failed" and result["attempts"] == 3 and result["runs"] == 2
    assert result["error"].startswith("SMTPAuthenticationError: (535")
    assert inbox.messages == []
    assert db.scalar("SELECT notified FROM {t:local_alx_api_alerts} WHERE id = ?", (alert_id,)) == alerts.PENDING
    fixed = task_env(db, NOW, **mail_settings("starttls", port))
    assert send_notifications_task.execute(fixed)["sent"] == 1
    assert [m["To"] for m in inbox.messages] == ["ops@example.com", "noc@example.com"]
    assert db.scalar("SELECT notified FROM {t:local_alx_api_alerts} WHERE id = ?", (alert_id,)) == alerts.SENT
