"""Console sessions: a signed cookie after logging in with an API token, and CSRF tokens.

The cookie holds who, with which role, until when, a session id and a
fingerprint of the token used to log in, signed with HMAC-SHA256 under a secret
(from a file of at least 32 bytes, or made at start: then a restart logs
everyone out). It is not taken on its word: every request checks it against
the tokens configured now (a token removed, or given another role, ends its
sessions) and against the sessions logged out (kept in the state store, so a
logged-out cookie stays dead across restarts); its scope is the token's as
configured at each request. Forms carry a token derived
from the session cookie; a form posted from another site cannot know it, and
the cookie is SameSite=Strict anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from collector.config import MIN_SECRET_BYTES, read_session_secret
from collector.web.scope import EVERYWHERE, Scope

COOKIE = "commune_session"
#: The fingerprint of the open_on_loopback development access (no token).
LOOPBACK = "loopback"


@dataclass(frozen=True)
class Session:
    name: str
    role: str
    expires: float
    sid: str = ""
    token: str = ""
    """Fingerprint of the token the session was opened with (``LOOPBACK`` without one)."""
    scope: Scope = EVERYWHERE
    """The token's scope as configured now (not in the cookie: a changed config changes
    what the session sees at its next request)."""


class Sessions:
    def __init__(self, secret: bytes, lifetime_s: float = 12 * 3600) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"a session secret needs at least {MIN_SECRET_BYTES} bytes")
        self.secret = secret
        self.lifetime_s = lifetime_s

    @classmethod
    def from_file(cls, path: str, lifetime_s: float) -> Sessions:
        secret = read_session_secret(path) if path else secrets.token_bytes(32)
        return cls(secret, lifetime_s)

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self.secret, payload, hashlib.sha256).hexdigest()

    def fingerprint(self, token_digest: str) -> str:
        """What a cookie says of its token: not the token's digest, which would let a
        stolen cookie be turned into a guess at the token."""
        return self._sign(b"token:" + token_digest.encode())[:24]

    def issue(self, name: str, role: str, now: float, token: str = LOOPBACK) -> str:
        """A session cookie; ``token`` is the fingerprint of the token logged in with."""
        sid = secrets.token_urlsafe(12)
        payload = f"{name}|{role}|{int(now + self.lifetime_s)}|{sid}|{token}".encode()
        return base64.urlsafe_b64encode(payload).decode() + "." + self._sign(payload)

    def read(self, cookie: str | None, now: float) -> Session | None:
        if not cookie or "." not in cookie or len(cookie) > 1024:
            return None
        encoded, signature = cookie.rsplit(".", 1)
        try:
            payload = base64.urlsafe_b64decode(encoded.encode())
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            name, role, expires, sid, token = payload.decode().split("|")
            session = Session(name, role, float(expires), sid, token)
        except ValueError:
            return None
        return session if session.expires > now else None

    def csrf(self, cookie: str) -> str:
        return self._sign(b"csrf:" + cookie.encode())[:32]

    def csrf_ok(self, cookie: str | None, token: str) -> bool:
        return bool(cookie) and hmac.compare_digest(self.csrf(cookie or ""), token)
