"""Console sessions: a signed cookie after logging in with an API token, and CSRF tokens.

The cookie holds who and until when, signed with HMAC-SHA256 under a secret
(from a file, or made at start: then a restart logs everyone out). Forms carry a
token derived from the session cookie; a form posted from another site cannot
know it, and the cookie is SameSite=Strict anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

COOKIE = "commune_session"


@dataclass(frozen=True)
class Session:
    name: str
    role: str
    expires: float


class Sessions:
    def __init__(self, secret: bytes, lifetime_s: float = 12 * 3600) -> None:
        self.secret = secret
        self.lifetime_s = lifetime_s

    @classmethod
    def from_file(cls, path: str, lifetime_s: float) -> Sessions:
        secret = Path(path).read_bytes().strip() if path else secrets.token_bytes(32)
        return cls(secret, lifetime_s)

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self.secret, payload, hashlib.sha256).hexdigest()

    def issue(self, name: str, role: str, now: float) -> str:
        payload = f"{name}|{role}|{int(now + self.lifetime_s)}".encode()
        return base64.urlsafe_b64encode(payload).decode() + "." + self._sign(payload)

    def read(self, cookie: str | None, now: float) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        encoded, signature = cookie.rsplit(".", 1)
        try:
            payload = base64.urlsafe_b64decode(encoded.encode())
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            name, role, expires = payload.decode().split("|")
            session = Session(name, role, float(expires))
        except ValueError:
            return None
        return session if session.expires > now else None

    def csrf(self, cookie: str) -> str:
        return self._sign(b"csrf:" + cookie.encode())[:32]

    def csrf_ok(self, cookie: str | None, token: str) -> bool:
        return bool(cookie) and hmac.compare_digest(self.csrf(cookie or ""), token)
