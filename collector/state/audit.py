"""The operators' audit: who did what, when, from where, at which place, to what.

Every action an operator takes is a row: alerts acknowledged (one, or a group),
silences and maintenance windows made and removed, a province's check profiles
replaced, enrollment tokens made and revoked, agents enrolled in the broker's password
file and revoked, rollouts started and steered, the config signing key rotated and
its rotation finished, console logins and logouts. A row says who (the token's name
and role, or the OS user at the command line), from where (the client's address as
the API judges it, or ``cli``), through what (``api``, ``console``, ``cli``), at which
place (province, commune, agent), to what (an alert's id, a window's, a token's, an
account, a key's id) and the state before and after, as JSON.

``record`` writes into the caller's transaction: where an action writes the store,
its row is written with it, so an action without its record cannot happen. Bounded:
names clipped, every text inside before/after clipped, the JSON at most
``MAX_JSON`` bytes (a profile file is recorded by its SHA-256 and size, never its
text, which holds passwords), rows pruned by the store's retention and capped at
``MAX_ROWS``.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collector.state.store import StateStore

#: What an operator can do, as the audit names it.
ACTIONS = (
    "ack",
    "ack_group",
    "silence_create",
    "silence_delete",
    "maintenance_create",
    "maintenance_delete",
    "profiles_replace",
    "enroll_token_create",
    "enroll_token_revoke",
    "agent_enroll",
    "agent_revoke",
    "login",
    "logout",
    "rollout_start",
    "rollout_pause",
    "rollout_resume",
    "rollout_halt",
    "rollout_promote",
    "config_key_rotate",
    "config_key_finish",
)
VIAS = ("api", "console", "cli")
#: Longest text kept inside before/after (a comment, a reason).
MAX_TEXT = 300
#: Items of a list or keys of a table kept inside before/after.
MAX_ITEMS = 100
#: Bytes of before (or after) at most: beyond, a clipped text of it is kept.
MAX_JSON = 4096
#: Rows at most, whatever the retention: the oldest go first.
MAX_ROWS = 1_000_000
_NAME = 64


@dataclass(frozen=True)
class Actor:
    name: str
    """The token's name, or the OS user at the command line."""
    role: str
    """viewer, technician, admin; cli for the command line (the store's own host)."""
    address: str
    """The client's address (``[api] trusted_proxies`` decide it), or cli."""
    via: str
    """api, console or cli."""


def cli_actor() -> Actor:
    """Whoever runs a command on the collector's host: the OS user says who."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (a container)
        user = "unknown"
    return Actor(user, "cli", "cli", "cli")


@dataclass(frozen=True)
class Entry:
    id: int
    at: float
    actor: str
    role: str
    address: str
    via: str
    action: str
    province: str
    commune: str
    agent: str
    object: str
    """The alert's, window's, silence's or token's id; the profile file's province."""
    before: Any
    after: Any


def _clipped(value: Any, depth: int = 0) -> Any:
    """Plain JSON values, every text and list bounded."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if depth >= 4:
        return str(value)[:MAX_TEXT]
    if isinstance(value, dict):
        items = list(value.items())[:MAX_ITEMS]
        return {str(k)[:_NAME]: _clipped(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        values = list(value)
        kept = [_clipped(v, depth + 1) for v in values[:MAX_ITEMS]]
        if len(values) > MAX_ITEMS:
            kept.append(f"… {len(values) - MAX_ITEMS} more")
        return kept
    return str(value)[:MAX_TEXT]


def bounded_json(value: Any) -> str:
    """``value`` as JSON of at most ``MAX_JSON`` bytes."""
    text = json.dumps(_clipped(value), ensure_ascii=False, sort_keys=True, allow_nan=False)
    if len(text.encode()) <= MAX_JSON:
        return text
    return json.dumps({"clipped": text[: MAX_JSON // 4]}, ensure_ascii=False)


def file_facts(data: bytes | None) -> dict[str, Any] | None:
    """What the audit keeps of a file: its SHA-256 and size, never its text."""
    if data is None:
        return None
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def record(
    db: sqlite3.Connection,
    actor: Actor,
    action: str,
    at: float,
    *,
    province: str = "",
    commune: str = "",
    agent: str = "",
    object: str = "",
    before: Any = None,
    after: Any = None,
) -> None:
    """One row, inside the caller's transaction."""
    if action not in ACTIONS:
        raise ValueError(f"not an audited action: {action[:_NAME]!r}")
    if actor.via not in VIAS:
        raise ValueError(f"not a way in: {actor.via[:_NAME]!r}")
    db.execute(
        """INSERT INTO audit (at, actor, role, address, via, action, province, commune, agent,
             object, before, after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            at, actor.name[:_NAME], actor.role[:16], actor.address[:_NAME], actor.via, action,
            province[:_NAME], commune[:_NAME], agent[:_NAME], object[:_NAME],
            bounded_json(before), bounded_json(after),
        ),
    )  # fmt: skip
    db.execute("DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?", (MAX_ROWS,))


def record_alone(store: StateStore, actor: Actor, action: str, at: float, **where: Any) -> None:
    """A row in a transaction of its own: for actions that do not write the store (a
    login) or write it on their own (the rollout's)."""
    with store.transaction() as db:
        record(db, actor, action, at, **where)


_SELECT = (
    "SELECT id, at, actor, role, address, via, action, province, commune, agent, object, "
    "before, after FROM audit"
)


def entries(
    store: StateStore,
    *,
    since: float | None = None,
    until: float | None = None,
    actor: str | None = None,
    action: str | None = None,
    places: Sequence[tuple[str, str]] | None = None,
    limit: int = 1000,
) -> list[Entry]:
    """Newest first. ``places``: (province, commune) pairs, "" for any; a row is kept
    when one matches it (an empty list keeps none)."""
    clauses: list[str] = []
    params: list[object] = []
    if since is not None:
        clauses.append("at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("at < ?")
        params.append(until)
    for column, value in (("actor", actor), ("action", action)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if places is not None:
        if not places:
            return []
        either = []
        for province, commune in places:
            parts = [f"{c} = ?" for c, v in (("province", province), ("commune", commune)) if v]
            either.append("(" + (" AND ".join(parts) or "1 = 1") + ")")
            params.extend(v for v in (province, commune) if v)
        clauses.append("(" + " OR ".join(either) + ")")
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    with store.reading() as db:
        rows = db.execute(
            _SELECT + where + " ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
    return [_entry(row) for row in rows]


def _entry(row: tuple[Any, ...]) -> Entry:
    actor, role, address, via, action, province, commune, agent, object_ = map(str, row[2:11])
    return Entry(
        int(row[0]), float(row[1]), actor, role, address, via, action, province, commune,
        agent, object_, json.loads(row[11]), json.loads(row[12]),
    )  # fmt: skip


def prune(store: StateStore, before: float) -> int:
    """Forget rows older than ``before``; how many went."""
    with store.transaction() as db:
        return int(db.execute("DELETE FROM audit WHERE at < ?", (before,)).rowcount)
