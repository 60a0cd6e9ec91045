"""Enrollment tokens: one token enrolls up to ``uses`` PCs of one commune until it expires.

A token reads ``<id>.<secret>``: the id (public, 8 hex digits) finds its row, the
secret (32 random bytes) is kept only as its SHA-256: a copy of the store gives no
token. A high-entropy secret needs no slow hash; a wrong guess costs the guesser
its address's lockout (the API's limiter), not the collector.

Taking a use is one conditional UPDATE: two PCs enrolling at once can never both
take the last use. A use taken for an enrollment that then fails is given back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass

from agent.wire import IDENT_PATTERN
from collector.rollout.registry import place_filter
from collector.state.store import StateStore

#: What a token's holder may be told went wrong, by the counter key.
REFUSALS = {
    "malformed": "not an enrollment token",
    "unknown": "no such enrollment token",
    "revoked": "this enrollment token was revoked",
    "expired": "this enrollment token has expired",
    "used_up": "this enrollment token has no uses left",
}
TOKEN = re.compile(r"(?P<id>[0-9a-f]{8})\.(?P<secret>[A-Za-z0-9_-]{43})")
MAX_USES = 10_000
MAX_TTL_S = 366 * 86400.0


class TokenRefused(Exception):
    def __init__(self, reason: str, token: Token | None = None) -> None:
        super().__init__(REFUSALS[reason])
        self.reason = reason
        self.token = token
        """The token, when the text named a real one (its commune, for the audit)."""


@dataclass(frozen=True)
class Token:
    id: str
    province: str
    commune: str
    profile: str
    uses: int
    used: int
    expires: float
    allow_replace: bool
    created_at: float
    created_by: str
    revoked_at: float | None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires <= now:
            return "expired"
        return "used_up" if self.used >= self.uses else "active"


_SELECT = (
    "SELECT id, province, commune, profile, uses, used, expires, allow_replace, created_at, "
    "created_by, revoked_at, digest FROM enroll_tokens"
)


def _token(row: tuple[object, ...]) -> Token:
    tid, province, commune, profile, uses, used, expires, replace, created, by, revoked = row[:11]
    return Token(
        str(tid),
        str(province),
        str(commune),
        str(profile),
        int(uses),  # type: ignore[call-overload]
        int(used),  # type: ignore[call-overload]
        float(expires),  # type: ignore[arg-type]
        bool(replace),
        float(created),  # type: ignore[arg-type]
        str(by),
        None if revoked is None else float(revoked),  # type: ignore[arg-type]
    )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(
    store: StateStore,
    *,
    province: str,
    commune: str,
    profile: str,
    uses: int,
    ttl_s: float,
    created_by: str,
    now: float,
    allow_replace: bool = False,
) -> tuple[Token, str]:
    """A new token and its text, which is shown once and never stored."""
    for what, value in (("province", province), ("commune", commune), ("profile", profile)):
        if not re.fullmatch(IDENT_PATTERN, value):
            raise ValueError(f"{what} {value!r}: letters, digits, '.', '_' or '-' only")
    if not 1 <= uses <= MAX_USES:
        raise ValueError(f"uses: between 1 and {MAX_USES}, not {uses}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError("ttl: more than nothing and at most a year")
    secret = secrets.token_urlsafe(32)
    with store.transaction() as db:
        while True:
            token_id = secrets.token_hex(4)
            try:
                db.execute(
                    """INSERT INTO enroll_tokens (id, digest, province, commune, profile, uses,
                       expires, allow_replace, created_at, created_by)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        token_id,
                        _digest(secret),
                        province,
                        commune,
                        profile,
                        uses,
                        now + ttl_s,
                        int(allow_replace),
                        now,
                        created_by,
                    ),
                )
                break
            except sqlite3.IntegrityError:  # an id taken already: 1 in 4 billion
                continue
        token = _token(db.execute(_SELECT + " WHERE id = ?", (token_id,)).fetchone())
    return token, f"{token_id}.{secret}"


def tokens(
    store: StateStore, province: str | None = None, commune: str | None = None
) -> list[Token]:
    where, args = place_filter(province, commune)
    query = _SELECT + " WHERE 1 = 1" + where + " ORDER BY created_at DESC"
    with store.reading() as db:
        return [_token(r) for r in db.execute(query, args)]


def revoke(store: StateStore, token_id: str, now: float) -> Token:
    """KeyError for an unknown id; revoking twice keeps the first time."""
    with store.transaction() as db:
        db.execute(
            "UPDATE enroll_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
            (now, token_id),
        )
        found = db.execute(_SELECT + " WHERE id = ?", (token_id,)).fetchone()
    if found is None:
        raise KeyError(token_id)
    return _token(found)


def take_use(db: sqlite3.Connection, text: str, now: float) -> Token:
    """The token the text names, with one use taken (inside the caller's transaction);
    TokenRefused by reason otherwise."""
    match = TOKEN.fullmatch(text.strip())
    if match is None:
        raise TokenRefused("malformed")
    token_id = match["id"]
    row = db.execute(_SELECT + " WHERE id = ?", (token_id,)).fetchone()
    if row is None or not hmac.compare_digest(str(row[11]), _digest(match["secret"])):
        raise TokenRefused("unknown")
    token = _token(row)
    state = token.state(now)
    if state != "active":
        raise TokenRefused(state, token)
    taken = db.execute(
        "UPDATE enroll_tokens SET used = used + 1 WHERE id = ? AND used < uses", (token_id,)
    )
    if taken.rowcount != 1:
        raise TokenRefused("used_up", token)
    return token


def give_back(db: sqlite3.Connection, token_id: str) -> None:
    """A use taken for an enrollment that did not happen."""
    db.execute("UPDATE enroll_tokens SET used = MAX(0, used - 1) WHERE id = ?", (token_id,))


def enroll_commands(collector_url: str, token: str) -> tuple[str, str]:
    """The one-liners a technician runs on each PC: Windows (as administrator, beside the
    province's kit: ``commune-collector windows-kit``), then Linux."""
    windows = f"msiexec /i commune-agent.msi /qn ENROLL_TOKEN={token} SERVER={collector_url}"
    linux = (
        f"sudo commune-agent enroll --collector {collector_url} --token {token} "
        "&& sudo commune-agent install-service"
    )
    return windows, linux
