"""Rolling a signed agent release out to the province in rings, behind gates.

A rollout names a version, its rings (``rings.py``) and its gate (``gates.py``). It
opens its first ring at start; the running collector judges the open ring's gate
periodically (``evaluate``): held, the next ring opens (the last: the rollout is
done); breached, the rollout pauses and says why. An operator may pause, resume,
halt, or promote the open ring whatever its gate. Every operator's action is
audited in the same transaction as the change.

What each agent is told (``orders``, sent in its config as ``AgentConfig.release``)
comes from the latest rollout only: done, every PC is asked for its version;
running or paused, the PCs of the open rings (and those already running it, so a PC
enrolled later never pulls one back); halted, nobody (every PC stays where it is).
The order grants nothing: the agent installs only what the signed targets list.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from agent.wire import VERSION_PATTERN, ReleaseOrder
from collector.rollout.gates import Gate, Standing, Verdict, judge, say
from collector.rollout.rings import Member, Ring, RingError, assign, choose_pilot, parse_rings
from collector.state import audit
from collector.state.store import StateStore

STATES = ("running", "paused", "halted", "done")
#: Update states that mean "runs the version, for good".
COMMITTED = ("committed", "idle")
#: At most this many lab PCs.
MAX_LAB = 64
#: The longest an order's start may be spread over.
MAX_SPREAD_S = 7 * 86400.0
DEFAULT_RINGS = "lab,pilot:3-communes,10%,50%,100%"


class RolloutError(ValueError):
    """An operator's request that cannot be carried out; the message says why and what
    to do. ``status``: the HTTP answer it makes (400 bad input, 404 unknown, 409 state);
    ``field``: the part of a start it refuses (version, rings, spread, lab), for a form
    to point at."""

    def __init__(self, message: str, status: int = 400, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class RingState:
    position: int
    name: str
    started_at: float | None
    promoted_at: float | None
    promoted_by: str
    """gate, or the operator who promoted it."""


@dataclass(frozen=True)
class Rollout:
    id: str
    version: str
    rings: tuple[Ring, ...]
    gate: Gate
    lab: tuple[str, ...]
    pilot: tuple[str, ...]
    spread_s: float
    state: str
    opened: int
    """The last ring open (0-based)."""
    why: str
    """Why it is paused or halted."""
    breach: bool
    """Paused by a breach of the gate (not by an operator)."""
    created_at: float
    created_by: str
    changed_at: float
    ring_states: tuple[RingState, ...]

    @property
    def active(self) -> bool:
        return self.state in ("running", "paused")


@dataclass(frozen=True)
class FleetAgent:
    key: str
    province: str
    commune: str
    online: bool
    version: str
    """The version its last birth said it runs."""
    update_state: str
    update_version: str
    update_reason: str

    @property
    def member(self) -> Member:
        return Member(self.key, f"{self.province}/{self.commune}")

    def committed(self, version: str) -> bool:
        return self.update_state in COMMITTED and self.version == version

    def rolled_back(self, version: str) -> bool:
        return self.update_state == "rolled_back" and self.update_version == version


@dataclass(frozen=True)
class RingProgress:
    ring: RingState
    open: bool
    verdict: Verdict
    """The gate's judgement of this ring now (for an open or a promoted ring)."""


_SELECT = ("SELECT id, version, rings, gate, lab, pilot, spread_s, state, opened, why, breach, "
           "created_at, created_by, changed_at FROM rollouts")  # fmt: skip


def _rollout(db: sqlite3.Connection, row: tuple[object, ...]) -> Rollout:
    rings = parse_rings(str(row[2]))
    states = tuple(
        RingState(int(r[0]), str(r[1]), r[2], r[3], str(r[4]))
        for r in db.execute(
            "SELECT position, name, started_at, promoted_at, promoted_by FROM rollout_rings "
            "WHERE rollout = ? ORDER BY position",
            (row[0],),
        )
    )
    return Rollout(
        id=str(row[0]),
        version=str(row[1]),
        rings=rings,
        gate=Gate.from_json(json.loads(str(row[3]))),
        lab=tuple(json.loads(str(row[4]))),
        pilot=tuple(json.loads(str(row[5]))),
        spread_s=float(row[6]),  # type: ignore[arg-type]
        state=str(row[7]),
        opened=int(row[8]),  # type: ignore[call-overload]
        why=str(row[9]),
        breach=bool(row[10]),
        created_at=float(row[11]),  # type: ignore[arg-type]
        created_by=str(row[12]),
        changed_at=float(row[13]),  # type: ignore[arg-type]
        ring_states=states,
    )


def fleet(store: StateStore) -> list[FleetAgent]:
    """The enrolled agents not revoked, with what their births said."""
    with store.reading() as db:
        rows = db.execute(
            """SELECT m.agent_key, m.province, m.commune, COALESCE(a.state, 'unknown'),
                      COALESCE(a.version, ''), COALESCE(u.state, ''), COALESCE(u.version, ''),
                      COALESCE(u.reason, '')
               FROM managed_agents m LEFT JOIN agents a USING (agent_key)
               LEFT JOIN agent_updates u USING (agent_key)
               WHERE m.revoked_at IS NULL ORDER BY m.agent_key"""
        ).fetchall()
    return [FleetAgent(r[0], r[1], r[2], r[3] == "online", r[4], r[5], r[6], r[7]) for r in rows]


class Rollouts:
    def __init__(
        self,
        store: StateStore,
        signed_versions: Callable[[], set[str]],
        clock: Callable[[], float] = time.time,
        lab: Sequence[str] = (),
    ) -> None:
        """``signed_versions``: the versions the release repository's signed targets list
        now (a rollout of any other is refused); ``lab``: the lab PCs of a rollout that
        names none (``[rollouts] lab``)."""
        self.store = store
        self.lab = tuple(lab)
        self.signed_versions = signed_versions
        self.clock = clock
        self._orders_seen = ""
        """The digest of the release orders at the last ``follow``."""

    # reading ---------------------------------------------------------------------

    def all(self, limit: int = 50) -> list[Rollout]:
        with self.store.reading() as db:
            rows = db.execute(f"{_SELECT} ORDER BY created_at DESC, id DESC LIMIT ?", (limit,))
            return [_rollout(db, row) for row in rows.fetchall()]

    def latest(self) -> Rollout | None:
        found = self.all(limit=1)
        return found[0] if found else None

    def get(self, rollout_id: str) -> Rollout:
        with self.store.reading() as db:
            row = db.execute(f"{_SELECT} WHERE id = ?", (rollout_id,)).fetchone()
            if row is None:
                raise RolloutError(f"no rollout {rollout_id!r} (rollout status lists them)", 404)
            return _rollout(db, row)

    def members(self, rollout: Rollout, agents: Sequence[FleetAgent]) -> dict[str, int]:
        return assign([a.member for a in agents], rollout.rings, rollout.lab, rollout.pilot)

    def progress(
        self, rollout: Rollout, agents: Sequence[FleetAgent] | None = None
    ) -> list[RingProgress]:
        """Each ring's members and figures, judged by the gate as of now."""
        agents = fleet(self.store) if agents is None else agents
        ring_of = self.members(rollout, agents)
        now = self.clock()
        out = []
        for state in rollout.ring_states:
            verdict = self._verdict(rollout, state.position, agents, ring_of, now)
            out.append(RingProgress(state, state.position <= rollout.opened, verdict))
        return out

    def _verdict(
        self,
        rollout: Rollout,
        position: int,
        agents: Sequence[FleetAgent],
        ring_of: dict[str, int],
        now: float,
    ) -> Verdict:
        version = rollout.version

        def standing(agent: FleetAgent) -> Standing:
            return Standing(agent.online, agent.committed(version), agent.rolled_back(version))

        ring = [standing(a) for a in agents if ring_of.get(a.key) == position]
        rest = [
            standing(a)
            for a in agents
            if ring_of.get(a.key, len(rollout.rings)) > rollout.opened and a.version != version
        ]
        started = rollout.ring_states[position].started_at or now
        return judge(rollout.gate, ring, rest, started, now)

    # orders ----------------------------------------------------------------------

    def orders(self, agents: Sequence[FleetAgent] | None = None) -> dict[str, ReleaseOrder]:
        """Agent key -> the release order its config carries (absent: none)."""
        rollout = self.latest()
        if rollout is None or rollout.state == "halted":
            return {}
        agents = fleet(self.store) if agents is None else agents
        ring_of = self.members(rollout, agents)
        names = [ring.name for ring in rollout.rings]
        paused = rollout.state == "paused"
        orders = {}
        for agent in agents:
            position = ring_of.get(agent.key)
            asked = rollout.state == "done" or (position is not None and position <= rollout.opened)
            if asked or agent.version == rollout.version:
                orders[agent.key] = ReleaseOrder(
                    version=rollout.version,
                    rollout=rollout.id,
                    ring=names[position] if position is not None else "",
                    paused=paused,
                    spread_s=rollout.spread_s,
                )
        return orders

    # operators' actions ------------------------------------------------------------

    def start(
        self,
        version: str,
        rings: str,
        gate: Gate,
        actor: audit.Actor,
        *,
        lab: Sequence[str] = (),
        spread_s: float = 3600.0,
    ) -> Rollout:
        """A new rollout of a signed ``version``, its first ring open."""
        if not re.fullmatch(VERSION_PATTERN, version):
            raise RolloutError(f"{version!r} is not a version like 0.3.0", field="version")
        try:
            plan = parse_rings(rings)
        except RingError as exc:
            raise RolloutError(str(exc), field="rings") from None
        if not 0 <= spread_s <= MAX_SPREAD_S:
            raise RolloutError(f"--spread: from 0 to {MAX_SPREAD_S / 86400:g} days", field="spread")
        signed = self.signed_versions()
        if version not in signed:
            listed = ", ".join(sorted(signed)) or "none"
            raise RolloutError(
                f"version {version} is not in the signed release repository (signed: {listed}): "
                "add and sign it first (commune-collector release add, release sign)",
                field="version",
            )
        agents = fleet(self.store)
        known = {a.key for a in agents}
        labs = tuple(dict.fromkeys(lab or self.lab))
        if len(labs) > MAX_LAB:
            raise RolloutError(f"--lab: {len(labs)} lab PCs, at most {MAX_LAB}", field="lab")
        unknown = [key for key in labs if key not in known]
        if unknown:
            raise RolloutError(f"--lab: not enrolled agents: {', '.join(unknown[:5])} "
                               "(give province/commune/agent of enrolled PCs)",
                               field="lab")  # fmt: skip
        if any(r.kind == "lab" for r in plan) and not labs:
            raise RolloutError(
                "the lab ring needs named lab PCs: --lab province/commune/agent "
                "(one per anti-malware product), or leave lab out of --rings",
                field="lab",
            )
        pilot_ring = next((r for r in plan if r.kind == "pilot"), None)
        communes = sorted({a.member.commune for a in agents if a.key not in labs})
        pilot = choose_pilot(communes, int(pilot_ring.size)) if pilot_ring else ()
        now = self.clock()
        with self.store.transaction() as db:
            active = db.execute(
                "SELECT id, state FROM rollouts WHERE state IN ('running', 'paused')"
            ).fetchone()
            if active is not None:
                raise RolloutError(f"rollout {active[0]} is {active[1]}: halt it first "
                                   f"(rollout halt {active[0]})", 409)  # fmt: skip
            rollout_id = self._new_id(db, version)
            db.execute(
                "INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, 'running', 0, '', 0, ?, ?, ?)",
                (rollout_id, version, ",".join(r.name for r in plan), json.dumps(gate.as_json()),
                 json.dumps(list(labs)), json.dumps(list(pilot)), spread_s, now, actor.name,
                 now),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO rollout_rings (rollout, position, name, started_at) VALUES "
                "(?, ?, ?, ?)",
                [(rollout_id, i, r.name, now if i == 0 else None) for i, r in enumerate(plan)],
            )
            audit.record(
                db, actor, "rollout_start", now, object=rollout_id,
                after={"version": version, "rings": [r.name for r in plan],
                       "gate": gate.as_json(), "lab": list(labs), "pilot": list(pilot),
                       "spread_s": spread_s},
            )  # fmt: skip
        return self.get(rollout_id)

    @staticmethod
    def _new_id(db: sqlite3.Connection, version: str) -> str:
        count = db.execute("SELECT COUNT(*) FROM rollouts WHERE version = ?", (version,))
        return f"{version}-{int(count.fetchone()[0]) + 1}"

    def pause(self, rollout_id: str, why: str, actor: audit.Actor) -> Rollout:
        return self._change(rollout_id, actor, "rollout_pause", ("running",), "paused",
                            why.strip()[:300] or say("paused_by", name=actor.name))  # fmt: skip

    def resume(self, rollout_id: str, actor: audit.Actor) -> Rollout:
        return self._change(rollout_id, actor, "rollout_resume", ("paused",), "running", "")

    def halt(self, rollout_id: str, why: str, actor: audit.Actor) -> Rollout:
        return self._change(rollout_id, actor, "rollout_halt", ("running", "paused"), "halted",
                            why.strip()[:300] or say("halted_by", name=actor.name))  # fmt: skip

    def promote(self, rollout_id: str, actor: audit.Actor) -> Rollout:
        """The open ring promoted by an operator, whatever its gate; the rollout runs."""
        now = self.clock()
        with self.store.transaction() as db:
            before = self._locked(db, rollout_id, ("running", "paused"))
            self._promote(db, before, now, actor.name)
            audit.record(
                db, actor, "rollout_promote", now, object=rollout_id,
                before={"state": before.state, "ring": before.rings[before.opened].name,
                        "why": before.why},
            )  # fmt: skip
        return self.get(rollout_id)

    def _locked(self, db: sqlite3.Connection, rollout_id: str, states: Sequence[str]) -> Rollout:
        row = db.execute(f"{_SELECT} WHERE id = ?", (rollout_id,)).fetchone()
        if row is None:
            raise RolloutError(f"no rollout {rollout_id!r} (rollout status lists them)", 404)
        rollout = _rollout(db, row)
        if rollout.state not in states:
            raise RolloutError(f"rollout {rollout_id} is {rollout.state}: it can only be done to "
                               f"a rollout {' or '.join(states)}", 409)  # fmt: skip
        return rollout

    def _change(
        self,
        rollout_id: str,
        actor: audit.Actor,
        action: str,
        states: Sequence[str],
        to: str,
        why: str,
    ) -> Rollout:
        now = self.clock()
        with self.store.transaction() as db:
            before = self._locked(db, rollout_id, states)
            db.execute(
                "UPDATE rollouts SET state = ?, why = ?, breach = 0, changed_at = ? WHERE id = ?",
                (to, why, now, rollout_id),
            )
            audit.record(
                db, actor, action, now, object=rollout_id,
                before={"state": before.state, "why": before.why},
                after={"state": to, "why": why},
            )  # fmt: skip
        return self.get(rollout_id)

    @staticmethod
    def _promote(db: sqlite3.Connection, rollout: Rollout, now: float, by: str) -> None:
        db.execute(
            "UPDATE rollout_rings SET promoted_at = ?, promoted_by = ? "
            "WHERE rollout = ? AND position = ?",
            (now, by, rollout.id, rollout.opened),
        )
        if rollout.opened + 1 >= len(rollout.rings):
            db.execute(
                "UPDATE rollouts SET state = 'done', why = '', breach = 0, changed_at = ? "
                "WHERE id = ?",
                (now, rollout.id),
            )
            return
        db.execute(
            "UPDATE rollouts SET state = 'running', opened = opened + 1, why = '', breach = 0, "
            "changed_at = ? WHERE id = ?",
            (now, rollout.id),
        )
        db.execute(
            "UPDATE rollout_rings SET started_at = ? WHERE rollout = ? AND position = ?",
            (now, rollout.id, rollout.opened + 1),
        )

    # the running collector's round ------------------------------------------------------

    def evaluate(self) -> str:
        """Judge the running rollout's open ring: promote it when its gate holds, pause the
        rollout on a breach. What happened, in words ("" : nothing)."""
        rollout = self.latest()
        if rollout is None or rollout.state != "running":
            return ""
        agents = fleet(self.store)
        now = self.clock()
        verdict = self._verdict(rollout, rollout.opened, agents, self.members(rollout, agents), now)
        ring = rollout.rings[rollout.opened].name
        with self.store.transaction() as db:
            if self._locked_state(db, rollout.id) != "running":
                return ""  # an operator acted meanwhile
            if verdict.breach:
                why = say("ring", ring=ring, why=verdict.breach)
                db.execute(
                    "UPDATE rollouts SET state = 'paused', why = ?, breach = 1, changed_at = ? "
                    "WHERE id = ?",
                    (why, now, rollout.id),
                )
                return f"rollout {rollout.id} paused: {why}"
            if verdict.held:
                self._promote(db, rollout, now, "gate")
                last = rollout.opened + 1 >= len(rollout.rings)
                return f"rollout {rollout.id}: ring {ring} promoted" + (", done" if last else "")
        return ""

    def follow(self) -> tuple[str, bool]:
        """The running collector's round: ``evaluate``, then whether the orders changed
        since the last round (by the gate, or by an operator at the command line or the
        API): what happened, and whether configs are due."""
        happened = self.evaluate()
        orders = sorted(self.orders().items())
        digest = hashlib.sha256(msgspec.json.encode(orders)).hexdigest()
        changed, self._orders_seen = digest != self._orders_seen, digest
        return happened, changed

    @staticmethod
    def _locked_state(db: sqlite3.Connection, rollout_id: str) -> str:
        row = db.execute("SELECT state FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        return str(row[0]) if row else ""


def no_signed_versions() -> set[str]:
    """Until the release repository is wired in: nothing is signed, no rollout starts."""
    return set()
