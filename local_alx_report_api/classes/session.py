"""The signed sign-in cookie and the CSRF value (admin-ui.md 2.3, 2.4).

The cookie holds user id, sign-in time, last-activity time, the sesskey and two marks that tie it
to the server (the admin's session generation and a mark of the password hash), as JSON signed
with HMAC-SHA256 under `[admin] secret_key` (signin.session_admin checks it)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

COOKIE = "alx_admin"
PRELOGIN = "alx_login"  # the pre-login CSRF value of the sign-in form
PRELOGIN_SECONDS = 3600


def sign(secret: str, payload: dict) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{body}.{_mac(secret, body)}"


def unsign(secret: str, value: str | None) -> dict | None:
    """The payload of a cookie we signed, or None (a bad signature is ignored, admin-ui.md 2.3)."""
    if not value or "." not in value:
        return None
    body, mac = value.rsplit(".", 1)
    if not same(mac, _mac(secret, body)):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def same(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of two secrets (any text: a cookie may hold anything)."""
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _mac(secret: str, body: str) -> str:
    return hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def new_sesskey() -> str:
    return secrets.token_urlsafe(18)


def signed_in(userid: int, now: int, **marks) -> dict:
    """A new sign-in; `marks` tie it to server-side state (signin.new_session)."""
    return {"uid": userid, "signin": now, "last": now, "sesskey": new_sesskey(), **marks}


def active(payload: dict | None, now: int, login_minutes: int) -> bool:
    """A sign-in payload that has not been idle longer than `login_minutes`."""
    try:
        return payload is not None and int(payload["uid"]) > 0 and now - int(payload["last"]) <= login_minutes * 60
    except (KeyError, TypeError, ValueError):
        return False
