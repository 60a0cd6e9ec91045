"""Alert lifecycle: pending -> firing -> resolved, by the samples' own times.

One state machine per rule and subject (an agent's check target, an agent, a
commune), kept in the state store and advanced in the same transaction as the
samples that drive it — so a redelivered batch changes nothing and a crash
loses nothing.

- ``for``: the condition must hold from a first sample to a later one at least
  ``for`` apart; the alert starts when the condition began.
- ``resolve_after`` (flap damping): a firing alert whose condition turns false
  waits that long before resolving; if the condition comes back meanwhile it
  is the same alert (a flap, counted), not a new page.
- Late data: an alert that fires from samples older than ``late_after`` (a
  backlog replayed after a line outage) is recorded as late and not paged; if
  it resolves within the backlog it is history. Should fresh data show it still
  firing, it is paged then.
- Sample rules are driven by samples; agent, commune and collector rules by
  ``tick`` (wall clock), which also applies inhibition and repeats. Collector rules
  read the collector's own broker sessions (``sessions``): an alert about the
  collector has no province or commune.

Notifications are queued in the ``notifications`` table in the same
transaction; the notifier sends them.
"""

from __future__ import annotations

import operator
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from agent.wire import Envelope, Sample
from collector.alerts import round as round_reads
from collector.alerts.certificates import Expiry
from collector.alerts.escalation import Escalation, escalation_event
from collector.alerts.records import muted, record_step
from collector.alerts.rules import Rule
from collector.alerts.verdicts import Verdict, Verdicts
from collector.common.sessions import SessionWatch
from collector.state.inventory import is_uplink
from collector.state.store import (
    RolloutStanding,
    StateStore,
    agent_key,
)
from collector.state.systemhealth import (
    SUBJECT_PREFIX,
    Reach,
    SystemHealth,
    SystemsModel,
    system_subject,
)
from collector.state.systems import WEBSITE

_encode = msgspec.json.Encoder().encode
#: The shared systems are judged at most this often: their probes run every minute or
#: more, and judging reads every commune's line.
SYSTEMS_EVERY_S = 30.0
TROUBLED_RECOUNT_S = 300.0
"""How often the subjects noted as not fine are recounted from the store (a subject
back to "ok" is stepped on every observation until then)."""


@dataclass(frozen=True)
class Subject:
    key: str
    province: str
    commune: str
    agent: str = ""
    name: str = ""
    target: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Added to the rule's labels when the alert fires (a shared system's owner's route)."""


class ReleaseRole(Protocol):
    """A role of the release repository, as the collector's re-signing job sees it."""

    @property
    def role(self) -> str: ...
    @property
    def expires(self) -> float: ...
    @property
    def expiring(self) -> bool: ...


def subject_key(envelope: Envelope, sample: Sample) -> str:
    place = f"{envelope.province}/{envelope.commune}/{envelope.agent}"
    return f"{place}|{sample.name}|{sample.item}|{sample.target}"


def sample_subject(envelope: Envelope, sample: Sample) -> Subject:
    return Subject(
        key=subject_key(envelope, sample),
        province=envelope.province,
        commune=envelope.commune,
        agent=envelope.agent,
        name=sample.name,
        target=sample.target,
    )


def _reach_value(rule: Rule, reach: Reach) -> str:
    """What a commune's alert on a system shows: the certificate's days, else why."""
    if any(c.field in ("cert_days", "cert_expiring") for c in rule.when) and reach.cert_days:
        return f"{reach.cert_days:g}"
    said = reach.error or (f"{reach.total_ms:g} ms" if reach.total_ms else reach.state)
    return said[:200]


def _route(name: str) -> dict[str, str]:
    """The labels that send an alert to an owner's route too."""
    return {"route": name} if name else {}


def _system_value(rule: Rule, health: SystemHealth) -> str:
    """What a system's alert shows: its certificate's days, its median time, or how
    many communes with their line up cannot use it ("3/4")."""
    fields = {c.field for c in rule.when}
    if fields & {"cert_days", "cert_expiring"} and health.cert_days is not None:
        return f"{health.cert_days:g}"
    if fields & {"median_ms", "slow"} or (
        health.verdict == "slow" and "verdict" in fields and health.median_ms is not None
    ):
        return f"{health.median_ms:g}" if health.median_ms is not None else ""
    return f"{len(health.unreachable)}/{health.probing - len(health.line_down)}"


_by_time = operator.attrgetter("ts")
_SampleRule = tuple[Rule, bool, bool, tuple[tuple[str, str], ...], Callable[[Sample], bool | None]]


def _has_tags(tags: Mapping[str, str], wanted: tuple[tuple[str, str], ...]) -> bool:
    return all(tags.get(name) == value for name, value in wanted)


#: What an ``on = "agent"`` rule is given of each agent, in this order.
def _value_text(rule: Rule, values: dict[str, Any]) -> str:
    shown = [values.get(c.field) for c in rule.when if c.op not in ("==", "!=")]
    value = next((v for v in shown if v is not None), None)
    if value is None:
        value = values.get(rule.when[0].field)
    if isinstance(value, float):
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return "" if value is None else str(value)


class AlertEngine:
    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        late_after: float = 600.0,
        uplinks: Mapping[str, frozenset[str]] | None = None,
        escalation: Sequence[Escalation] = (),
        clock: Callable[[], float] = time.time,
        sessions: Callable[[], Sequence[SessionWatch]] = tuple,
        releases: Callable[[], Sequence[ReleaseRole]] = tuple,
        certificates: Callable[[], Sequence[Expiry]] = tuple,
        systems: SystemsModel | None = None,
    ) -> None:
        self.rules = [r for r in rules if r.enabled]
        self.systems = systems
        """The shared systems' views (``on = "system"`` and ``"reach"`` rules)."""
        self._systems_at = float("-inf")
        """When the shared systems were last judged (at most every ``SYSTEMS_EVERY_S``)."""
        self.sessions = sessions
        self.releases = releases
        self.certificates = certificates
        self.escalation = list(escalation)
        self.late_after = late_after
        self.uplinks = uplinks or {}
        """The inventory's uplinks per "province/commune": "device:port" or "port"."""
        self.clock = clock
        self._seen_up: set[str] = set()
        """Ports seen operating (for ever, once seen): no need to read them again."""
        self._sample_rules: dict[tuple[str, str], list[_SampleRule]] = defaultdict(list)
        """Each (check, item)'s rules, with what is asked once here rather than for every
        sample: whether the rule reads what the collector knows of the subject, whether
        it has a scope, the tags it needs, its test of a sample (``Rule.sample_test``)."""
        self._verdicts: dict[tuple[str, str], Verdicts] = {}
        """The (check, item)s whose every rule reads the sample alone, judged together
        (``alerts/verdicts.py``); the others' rules are tested one by one."""
        for rule in self.rules:
            if rule.on == "sample":
                self._sample_rules[(rule.check, rule.item)].append(
                    (
                        rule,
                        rule.names_subject_fields(),
                        bool(rule.provinces or rule.communes),
                        tuple(rule.tags.items()),
                        rule.sample_test(),
                    )
                )
        for group, found in self._sample_rules.items():
            if all(Verdicts.takes(rule) for rule, *_ in found):
                self._verdicts[group] = Verdicts([rule for rule, *_ in found])
        self.by_name = {r.name: r for r in self.rules}
        self._troubled: set[tuple[str, str]] = set()
        """(rule, subject) that left "ok" since the last recount, and those the store
        held not ok then: only they need reading when their condition is false. A key
        goes only at a recount (``_recount_troubled``): a rolled-back transaction must
        not hide a firing alert."""
        self._troubled_at = float("-inf")
        self._troubled_agents: set[tuple[str, str, str]] = set()
        """The agents of the sample subjects in ``_troubled``: a sample of any other agent
        whose condition is false needs no key made, nothing read."""
        self._agent_rules = [r for r in self.rules if r.on == "agent"]
        self._agent_values = {
            r.name: "refused"
            if any(c.field == "samples_refused" for c in r.when)
            else "update"
            if any(c.field.startswith("update_") for c in r.when)
            else "state"
            for r in self._agent_rules
        }
        """What an agent rule's alert shows: its refusals, its update report, its state."""
        self._agent_verdicts: dict[round_reads.Facts, bool] = {}
        self._held = round_reads.HeldRound(self._notable)
        """The agents' and communes' facts between rounds (``collector.alerts.round``)."""
        self._inhibited: tuple[Any, ...] | None = None
        """The alerts' newest id and how many fire, when inhibition was last applied and
        committed. An alert only ever goes from firing to resolved: while both stay the
        same, so do the firing alerts, and inhibition has nothing to change."""

    def _note_troubled(self, rule: str, subject: str) -> None:
        self._troubled.add((rule, subject))
        # A sample subject's key starts with its agent's place: "province/commune/agent|".
        place, bar, _ = subject.partition("|")
        parts = place.split("/")
        if bar and len(parts) == 3:
            self._troubled_agents.add((parts[0], parts[1], parts[2]))

    def install(self, store: StateStore) -> None:
        """Follow the store's batches (its schema holds the alert tables)."""
        with store.reading() as db:
            for rule, subject in db.execute(
                "SELECT rule, subject FROM alert_subjects WHERE state != 'ok'"
            ):
                self._note_troubled(str(rule), str(subject))
        store.observers.append(self.observe)

    # driven by samples ----------------------------------------------------------------

    def observe(
        self, db: sqlite3.Connection, envelopes: Sequence[Envelope], received: float
    ) -> None:
        # Runs for every sample of every batch: the common case (a fine subject that
        # never was otherwise) must cost no more than the rule's test.
        sample_rules, troubled = self._sample_rules, self._troubled
        troubled_agents, verdicts = self._troubled_agents, self._verdicts
        for envelope in envelopes:
            samples = envelope.samples
            if len(samples) > 1:
                samples = sorted(samples, key=_by_time)
            agent = (envelope.province, envelope.commune, envelope.agent)
            for sample in samples:
                group = (sample.check, sample.item)
                judge = verdicts.get(group)
                if judge is not None:
                    found, holding = judge(sample)
                    if agent in troubled_agents:
                        self._step_verdicts(db, envelope, sample, found, received)
                    elif holding:  # the others are fine, and never were otherwise
                        self._step_verdicts(db, envelope, sample, holding, received)
                    continue
                rules = sample_rules.get(group)
                if not rules:
                    continue
                key = ""
                values: dict[str, Any] | None = None
                with_subject: dict[str, Any] | None = None
                for rule, reads_subject, scoped, tags, test in rules:
                    if scoped and not rule.in_scope(envelope.province, envelope.commune):
                        continue
                    if reads_subject:
                        if tags and not _has_tags(sample.tags, tags):
                            continue
                        if with_subject is None:
                            key = key or subject_key(envelope, sample)
                            with_subject = self._values(db, envelope, sample, key)
                        holds = rule.holds(with_subject)
                    else:
                        holds = test(sample)  # None too for a sample without its tags
                    if holds is None:
                        continue
                    if not holds and agent not in troubled_agents:
                        continue  # fine, and never was otherwise: nothing to read or write
                    key = key or subject_key(envelope, sample)
                    if not holds and (rule.name, key) not in troubled:
                        continue
                    if reads_subject and with_subject is not None:
                        shown = with_subject
                    else:
                        values = values or self._values(db, envelope, sample, key, subject=False)
                        shown = values
                    self._step_sample(db, rule, envelope, sample, holds, received, shown)

    def _step_verdicts(
        self,
        db: sqlite3.Connection,
        envelope: Envelope,
        sample: Sample,
        found: Sequence[Verdict],
        received: float,
    ) -> None:
        """Step the rules a sample's verdicts name, as ``observe`` steps one rule: a
        false verdict only for a subject noted not fine."""
        key = subject_key(envelope, sample)
        values: dict[str, Any] | None = None
        for rule, holds in found:
            if not holds and (rule.name, key) not in self._troubled:
                continue
            values = values or self._values(db, envelope, sample, key, subject=False)
            self._step_sample(db, rule, envelope, sample, holds, received, values)

    def _step_sample(
        self,
        db: sqlite3.Connection,
        rule: Rule,
        envelope: Envelope,
        sample: Sample,
        holds: bool,
        received: float,
        shown: dict[str, Any],
    ) -> None:
        """One rule's verdict on a sample, stepped for the sample's subject at its time."""
        subject = sample_subject(envelope, sample)
        self.step(db, rule, subject, holds, sample.ts, received, _value_text(rule, shown))

    def _values(
        self,
        db: sqlite3.Connection,
        envelope: Envelope,
        sample: Sample,
        key: str,
        subject: bool = True,
    ) -> dict[str, Any]:
        """What a condition may name: the sample's tags, its fields over them, its
        outcome, and (``subject``) what the collector knows of the subject."""
        # Tags first: a condition may name a tag (os), never shadowing a field.
        values: dict[str, Any] = {
            **sample.tags,
            **sample.fields,
            "outcome": sample.outcome,
            "success": sample.outcome == "ok",
        }
        if subject:
            values.update(self._port_facts(db, envelope, sample, key))
        return values

    def _port_facts(
        self, db: sqlite3.Connection, envelope: Envelope, sample: Sample, key: str
    ) -> dict[str, bool | None]:
        """``seen_up`` and ``uplink`` of a port: the store has applied this sample
        already (same transaction), so a port up now was seen up."""
        marked = self.uplinks.get(f"{envelope.province}/{envelope.commune}", frozenset())
        uplink = is_uplink(marked, sample.name, sample.target)
        up = sample.fields.get("oper_up")
        if up is True or key in self._seen_up:
            self._seen_up.add(key)
            return {"seen_up": True, "uplink": uplink}
        row = db.execute(
            "SELECT first_up FROM ports WHERE agent_key = ? AND device = ? AND port = ?",
            (agent_key(envelope.province, envelope.commune, envelope.agent), sample.name,
             sample.target),
        ).fetchone()  # fmt: skip
        seen = row is not None and row[0] is not None
        if seen:
            self._seen_up.add(key)
        return {"seen_up": seen, "uplink": uplink}

    def step(
        self,
        db: sqlite3.Connection,
        rule: Rule,
        subject: Subject,
        holds: bool,
        ts: float,
        now: float,
        value: str = "",
        changed_at: float | None = None,
    ) -> None:
        """Advance one subject's state machine with an observation at ``ts``.

        ``changed_at``: when the condition's truth last changed, if known better
        than ``ts`` (an agent's state since); else ``ts``.
        """
        row = db.execute(
            "SELECT state, since, last_ts, alert_id FROM alert_subjects "
            "WHERE rule = ? AND subject = ?",
            (rule.name, subject.key),
        ).fetchone()
        state, since, last_ts, alert_id = row if row else ("ok", ts, float("-inf"), None)
        if ts <= last_ts:
            return  # applied already, or older than what we know
        at = ts if changed_at is None else changed_at
        if state == "ok":
            if holds:
                state, since = "pending", at
        elif state == "pending":
            if not holds:
                state = "ok"
        elif state == "firing":
            if not holds:
                state, since = "resolving", at
        elif state == "resolving" and holds:  # it came back before resolving: a flap
            state = "firing"
            db.execute("UPDATE alerts SET flaps = flaps + 1 WHERE id = ?", (alert_id,))
        if state == "pending" and ts - since >= float(rule.for_):
            state = "firing"
            alert_id = self._fire(db, rule, subject, since, ts, now, value)
        elif state == "resolving" and ts - since >= float(rule.resolve_after):
            self._resolve(db, alert_id, since, now)
            state, alert_id = "ok", None
        elif state == "firing" and alert_id is not None:
            self._refresh(db, alert_id, ts, now, value)
        if state != "ok":
            self._note_troubled(rule.name, subject.key)
        if row is None:
            db.execute(
                "INSERT INTO alert_subjects VALUES (?, ?, ?, ?, ?, ?)",
                (rule.name, subject.key, state, since, ts, alert_id),
            )
        else:
            # In place: every round steps each subject not fine (thousands at night), and
            # replacing a row deletes and inserts it and its key.
            db.execute(
                "UPDATE alert_subjects SET state = ?, since = ?, last_ts = ?, alert_id = ? "
                "WHERE rule = ? AND subject = ?",
                (state, since, ts, alert_id, rule.name, subject.key),
            )

    def _fire(
        self,
        db: sqlite3.Connection,
        rule: Rule,
        subject: Subject,
        started: float,
        ts: float,
        now: float,
        value: str,
    ) -> int:
        late = now - ts > self.late_after
        cursor = db.execute(
            """INSERT INTO alerts (rule, subject, province, commune, agent, name, target, severity,
                                   state, started_at, fired_at, value, labels, late)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'firing', ?, ?, ?, ?, ?)""",
            (
                rule.name,
                subject.key,
                subject.province,
                subject.commune,
                subject.agent,
                subject.name,
                subject.target,
                rule.severity,
                started,
                ts,
                value,
                _encode({**rule.labels, **subject.labels}).decode(),
                int(late),
            ),
        )
        alert_id = int(cursor.lastrowid or 0)
        record_step(db, alert_id, now, "fired", "late: history, not paged" if late else "")
        if not late:
            self._queue(db, alert_id, "firing", now)
        return alert_id

    def _refresh(
        self, db: sqlite3.Connection, alert_id: int, ts: float, now: float, value: str
    ) -> None:
        """A firing alert seen again. One that fired from late data but is seen with fresh
        data still firing is current: page it (once)."""
        late, notified, suppressed, shown = db.execute(
            "SELECT late, notified, suppressed, value FROM alerts WHERE id = ?", (alert_id,)
        ).fetchone()
        if value != shown:  # most often the same, every round
            db.execute("UPDATE alerts SET value = ? WHERE id = ?", (value, alert_id))
        if late and not notified and not suppressed and now - ts <= self.late_after:
            queued = db.execute(
                "SELECT COUNT(*) FROM notifications WHERE alert_id = ?", (alert_id,)
            ).fetchone()[0]
            if not queued:
                self._queue(db, alert_id, "firing", now)

    def _resolve(self, db: sqlite3.Connection, alert_id: int | None, at: float, now: float) -> None:
        if alert_id is None:
            return
        db.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = ? WHERE id = ?", (at, alert_id)
        )
        record_step(db, alert_id, now, "resolved")
        notified = db.execute("SELECT notified FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        pending = db.execute(
            "SELECT COUNT(*) FROM notifications WHERE alert_id = ? AND event = 'firing'",
            (alert_id,),
        ).fetchone()[0]
        if pending:
            # Fired and recovered before anyone was told (within the group wait): say nothing.
            db.execute("DELETE FROM notifications WHERE alert_id = ?", (alert_id,))
        elif notified and notified[0]:
            self._queue(db, alert_id, "resolved", now)

    @staticmethod
    def _queue(db: sqlite3.Connection, alert_id: int, event: str, now: float) -> None:
        db.execute(
            "INSERT INTO notifications (alert_id, event, created) VALUES (?, ?, ?)",
            (alert_id, event, now),
        )

    # driven by the clock --------------------------------------------------------------

    def tick(self, store: StateStore, now: float | None = None) -> None:
        """Agent and commune rules, inhibition, repeats."""
        now = self.clock() if now is None else now
        agent_rules = [r for r in self.rules if r.on == "agent"]
        commune_rules = [r for r in self.rules if r.on == "commune"]
        with store.reading() as reader, round_reads.one_snapshot(reader):
            agents, tallies = self._read_round(reader, agent_rules, commune_rules, now)
        rollout = store.latest_rollout()
        views = self._system_views(now)  # None: not judged this round
        with store.transaction() as db:
            if now - self._troubled_at >= TROUBLED_RECOUNT_S:
                self._recount_troubled(db, now)
            for rule in self.rules:
                if rule.on == "commune":
                    verdicts: dict[tuple[int, int, int], bool | None] = {}
                    for tally in tallies:
                        if rule.in_scope(tally.province, tally.commune):
                            self._commune_step(db, rule, tally, now, verdicts)
                elif rule.on == "agent":
                    judged: dict[tuple[Any, ...], bool | None] = {}
                    for agent in agents:
                        if rule.in_scope(agent.agent.province, agent.agent.commune):
                            self._agent_step(db, rule, agent, now, judged)
                elif rule.on == "collector" and not (rule.provinces or rule.communes):
                    for watch in self.sessions():
                        self._session_step(db, rule, watch, now)
                    for role in self.releases():
                        self._release_step(db, rule, role, now)
                    for certificate in self.certificates():
                        self._certificate_step(db, rule, certificate, now)
                    if rollout is not None:
                        self._rollout_step(db, rule, rollout, now)
            if views is not None:
                stepped: set[tuple[str, str]] = set()
                for health in views:
                    self._system_steps(db, health, now, stepped)
                self._unwatched_systems(db, stepped, now)
            firing = db.execute(
                "SELECT MAX(id), (SELECT COUNT(*) FROM alerts WHERE state = 'firing') FROM alerts"
            ).fetchone()
            if firing != self._inhibited:
                self._inhibit(db, now)
            self._repeat(db, now)
            self._unmuted(db, now)
            self._escalate(db, now)
        self._inhibited = firing

    def _read_round(
        self,
        reader: sqlite3.Connection,
        agent_rules: Sequence[Rule],
        commune_rules: Sequence[Rule],
        now: float,
    ) -> tuple[list[round_reads.AgentFacts], list[round_reads.CommuneTally]]:
        """The agents to step and every commune's tally, from one snapshot."""
        self._held.refresh(reader)
        agents = self._agents_to_judge(reader, agent_rules, now) if agent_rules else []
        return agents, self._held.tallies() if commune_rules else []

    def _agents_to_judge(
        self, reader: sqlite3.Connection, rules: Sequence[Rule], now: float
    ) -> list[round_reads.AgentFacts]:
        """The agents a round must step: those whose facts some rule holds for, and those
        with an alert state not back to "ok" (the others' steps change nothing)."""
        self._held.refresh(reader)
        names = {rule.name for rule in rules}
        # A copy (one C call under the interpreter's lock): ingest adds to the set meanwhile.
        troubled = {key for name, key in self._troubled.copy() if name in names}
        return self._held.agents_to_judge(reader, now, troubled)

    def _notable(self, facts: round_reads.Facts) -> bool:
        """Whether some agent rule holds for these facts (most agents share a handful)."""
        verdict = self._agent_verdicts.get(facts)
        if verdict is None:
            values = dict(zip(round_reads.FACT_NAMES, facts, strict=True))
            verdict = any(rule.holds(values) for rule in self._agent_rules)
            if len(self._agent_verdicts) > 10_000:  # refusal counts are many: a bound
                self._agent_verdicts.clear()
            self._agent_verdicts[facts] = verdict
        return verdict

    def _recount_troubled(self, db: sqlite3.Connection, now: float) -> None:
        """Forget the subjects back to "ok" since they were noted: what the store holds
        not ok, read inside a transaction of the writer (so no batch is half-applied
        meanwhile; a rolled-back round leaves a superset, which is safe)."""
        self._troubled.clear()
        self._troubled_agents.clear()
        rows = db.execute("SELECT rule, subject FROM alert_subjects WHERE state != 'ok'")
        for rule, subject in rows:
            self._note_troubled(str(rule), str(subject))
        self._troubled_at = now

    def _system_views(self, now: float) -> list[SystemHealth] | None:
        """Every province's shared systems now (read before the transaction: the views
        read the store themselves); None when they are not judged this round."""
        if self.systems is None or not any(r.on in ("system", "reach") for r in self.rules):
            return None
        if now - self._systems_at < SYSTEMS_EVERY_S:
            return None
        self._systems_at = now
        return [
            health
            for province in sorted(self.systems.catalogues())
            for health in self.systems.systems(province, windows=False)
        ]

    def _unwatched_systems(
        self, db: sqlite3.Connection, stepped: set[tuple[str, str]], now: float
    ) -> None:
        """A system gone from the catalogue, or a commune that no longer uses it, is
        watched no more: what it left firing or pending resolves, rather than for ever."""
        rows = db.execute(
            "SELECT rule, subject FROM alert_subjects WHERE subject >= ? AND subject < ? "
            "AND state != 'ok'",
            (SUBJECT_PREFIX, SUBJECT_PREFIX + "\U0010ffff"),
        ).fetchall()
        for rule_name, key in rows:
            rule = self.by_name.get(rule_name)
            if rule is not None and (rule_name, key) not in stepped:
                self.step(db, rule, Subject(key, "", ""), False, now, now, "no longer watched")

    def _system_steps(
        self,
        db: sqlite3.Connection,
        health: SystemHealth,
        now: float,
        stepped: set[tuple[str, str]],
    ) -> None:
        """The system as a whole (one alert, to its owner's route), then each commune's
        reach of it (the commune's own line told apart). ``stepped`` gains every (rule,
        subject) judged. Like the samples, a subject fine now and never otherwise costs
        the condition's test alone (thousands of communes a round)."""
        troubled = self._troubled
        owner = _route(health.route)
        line_up = health.probing - len(health.line_down)
        values: dict[str, Any] = {
            "system": health.id,
            "kind": health.kind,
            "network": health.network,
            "verdict": health.verdict,
            "communes": health.communes,
            "probing": health.probing,
            "unreachable": len(health.unreachable),
            "line_down": len(health.line_down),
            "slow": len(health.slow),
            "unreachable_percent": (
                round(100.0 * len(health.unreachable) / line_up, 1) if line_up else None
            ),
            "median_ms": health.median_ms,
            "cert_days": health.cert_days,
            # Each commune's website has its own certificate: judged per reach.
            "cert_expiring": (
                None
                if health.cert_days is None or health.id == WEBSITE
                else health.cert_days < health.cert_min_days
            ),
        }
        whole = Subject(
            system_subject(health.province, health.id), health.province, "",
            name=health.id, target=health.name, labels=owner,
        )  # fmt: skip
        for rule in self.rules:
            if rule.on != "system" or not rule.in_scope(health.province, ""):
                continue
            holds = rule.holds(values)
            if holds is None:
                continue
            stepped.add((rule.name, whole.key))
            if holds or (rule.name, whole.key) in troubled:
                self.step(db, rule, whole, holds, now, now, _system_value(rule, health))
        reach_rules = [r for r in self.rules if r.on == "reach"]
        if not reach_rules:
            return
        sites = self._sites(health)
        for reach in health.reach:
            fails = reach.state in ("unreachable", "bad_response")
            facts: dict[str, Any] = {
                "system": health.id,
                "kind": health.kind,
                "network": health.network,
                "state": reach.state,
                "fails": fails,
                "line_up": reach.line_up,
                "widely": health.verdict == "down",
                "slow_widely": health.verdict == "slow",
                "total_ms": reach.total_ms,
                "cert_days": reach.cert_days,
                "cert_expiring": (
                    None if reach.cert_days is None else reach.cert_days < reach.cert_min_days
                ),
            }
            key = system_subject(health.province, health.id, reach.commune)
            subject: Subject | None = None
            for rule in reach_rules:
                if not rule.in_scope(health.province, reach.commune):
                    continue
                holds = rule.holds(facts)
                if holds is None:
                    continue
                stepped.add((rule.name, key))
                if not holds and (rule.name, key) not in troubled:
                    continue
                subject = subject or Subject(
                    key, health.province, reach.commune, agent=reach.agent, name=health.id,
                    target=sites.get(reach.commune, (health.name, ""))[0],
                    labels=_route(sites.get(reach.commune, ("", ""))[1]),
                )  # fmt: skip
                # From now, not from the answer's last change: a commune failing for an
                # hour under a system down everywhere has been "alone" only since the
                # others came back (and slowness has no history of its own).
                self.step(db, rule, subject, holds, now, now, _reach_value(rule, reach))

    def _sites(self, health: SystemHealth) -> dict[str, tuple[str, str]]:
        """Each commune's own website's name and its owner's route (a website's alert
        names the site and goes to its owner)."""
        if health.id != WEBSITE or self.systems is None:
            return {}
        catalogue = self.systems.catalogues().get(health.province)
        return {w.commune: (w.name, w.route) for w in catalogue.websites} if catalogue else {}

    def _agent_step(
        self,
        db: sqlite3.Connection,
        rule: Rule,
        judged_agent: round_reads.AgentFacts,
        now: float,
        judged: dict[tuple[Any, ...], bool | None] | None = None,
    ) -> None:
        """``judged``: the rule's verdicts this round by the values they were given (most
        agents share a handful: online, stopped...), so each is tested once."""
        agent, refused, update = judged_agent.agent, judged_agent.refused, judged_agent.update
        facts = judged_agent.facts
        if judged is not None and facts in judged:
            holds = judged[facts]
        else:
            holds = rule.holds(dict(zip(round_reads.FACT_NAMES, facts, strict=True)))
            if judged is not None:
                judged[facts] = holds
        if holds is None:
            return
        if not holds and (rule.name, agent.agent_key) not in self._troubled:
            # Fine, and never otherwise: nothing to read or write (a national collector
            # has 166,050 agents a round, and a row each would be kept for nothing).
            return
        subject = Subject(agent.agent_key, agent.province, agent.commune, agent.agent)
        shows = self._agent_values[rule.name]
        if shows == "refused":  # a count, not a state
            self.step(db, rule, subject, holds, now, now, str(refused))
            return
        if shows == "update":
            # Since the report; the value names the version and why.
            said = f"{update.version}: {update.reason or update.state}" if update else ""
            since = update.ts if update and update.ts else now
            self.step(db, rule, subject, holds, now, now, said, changed_at=since)
            return
        since = agent.state_since if agent.state_since is not None else now
        self.step(db, rule, subject, holds, now, now, agent.reason or agent.state, changed_at=since)

    def _session_step(
        self, db: sqlite3.Connection, rule: Rule, watch: SessionWatch, now: float
    ) -> None:
        takeovers = watch.recent_takeovers(now)
        values = {"session": watch.name, "state": watch.state(now), "takeovers": takeovers}
        holds = rule.holds(values)
        if holds is None:
            return
        subject = Subject(f"collector/{watch.name}", "", "", name=watch.name)
        self.step(db, rule, subject, holds, now, now, str(takeovers or values["state"]))

    def _release_step(
        self, db: sqlite3.Connection, rule: Rule, role: ReleaseRole, now: float
    ) -> None:
        days = round((role.expires - now) / 86400, 1)
        values = {"role": role.role, "expires_in_days": days, "expiring": role.expiring}
        holds = rule.holds(values)
        if holds is None:
            return
        subject = Subject(f"collector/release-{role.role}", "", "", name=role.role)
        self.step(db, rule, subject, holds, now, now, str(days))

    def _certificate_step(
        self, db: sqlite3.Connection, rule: Rule, certificate: Expiry, now: float
    ) -> None:
        days = round((certificate.expires - now) / 86400, 1)
        holds = rule.holds({"certificate": certificate.name, "certificate_days": days})
        if holds is None:
            return
        label = f"{certificate.name} ({certificate.what}{'; ' if certificate.note else ''}"
        subject = Subject(
            f"collector/certificate-{certificate.name}", "", "",
            name=f"{label}{certificate.note})",
        )  # fmt: skip
        self.step(db, rule, subject, holds, now, now, f"{days:g}")

    def _rollout_step(
        self, db: sqlite3.Connection, rule: Rule, rollout: RolloutStanding, now: float
    ) -> None:
        values = {"rollout_state": rollout.state, "rollout_breach": rollout.breach}
        holds = rule.holds(values)
        if holds is None:
            return
        subject = Subject("collector/rollout", "", "", name=rollout.id)
        self.step(db, rule, subject, holds, now, now, rollout.why or rollout.state)

    def _commune_step(
        self,
        db: sqlite3.Connection,
        rule: Rule,
        tally: round_reads.CommuneTally,
        now: float,
        verdicts: dict[tuple[int, int, int], bool | None] | None = None,
    ) -> None:
        """``verdicts``: the rule's this round by the counts (3,321 communes, few counts)."""
        counts = (tally.agents, tally.online, tally.lost)
        if verdicts is not None and counts in verdicts:
            holds = verdicts[counts]
        else:
            values = {
                "agents": tally.agents,
                "agents_online": tally.online,
                "agents_offline": tally.agents - tally.online,
                "agents_lost": tally.lost,
            }
            holds = rule.holds(values)
            if verdicts is not None:
                verdicts[counts] = holds
        if holds is None:
            return
        key = f"{tally.province}/{tally.commune}"
        if not holds and (rule.name, key) not in self._troubled:
            return
        # Unreachable since the last of its agents went silent.
        since = tally.changed if tally.changed is not None else now
        subject = Subject(key, tally.province, tally.commune)
        self.step(db, rule, subject, holds, now, now, str(tally.lost), changed_at=since)

    def _inhibit(self, db: sqlite3.Connection, now: float) -> None:
        held: set[tuple[str, str, str]] = set()
        for rule in self.rules:
            if not rule.inhibits:
                continue
            rows = db.execute(
                "SELECT province, commune FROM alerts WHERE rule = ? AND state = 'firing'",
                (rule.name,),
            ).fetchall()
            held |= {(p, c, target) for p, c in rows for target in rule.inhibits}
        rows = db.execute(
            "SELECT id, rule, province, commune, suppressed, notified, late FROM alerts "
            "WHERE state = 'firing'"
        ).fetchall()
        for alert_id, rule_name, province, commune, suppressed, notified, late in rows:
            should = (province, commune, rule_name) in held
            if should == bool(suppressed):
                continue
            db.execute("UPDATE alerts SET suppressed = ? WHERE id = ?", (int(should), alert_id))
            if should:
                db.execute(
                    "DELETE FROM notifications WHERE alert_id = ? AND event = 'firing'", (alert_id,)
                )
            elif not notified and not late:
                self._queue(db, alert_id, "firing", now)  # the cause is gone, this is not

    def _repeat(self, db: sqlite3.Connection, now: float) -> None:
        rows = db.execute(
            "SELECT id, rule, last_notified FROM alerts WHERE state = 'firing' AND notified = 1 "
            "AND acked_at IS NULL AND suppressed = 0"
        ).fetchall()
        for alert_id, rule_name, last in rows:
            rule = self.by_name.get(rule_name)
            if rule is None or not float(rule.repeat) or last is None:
                continue
            if now - float(last) >= float(rule.repeat):
                queued = db.execute(
                    "SELECT COUNT(*) FROM notifications WHERE alert_id = ?", (alert_id,)
                ).fetchone()[0]
                if not queued:
                    self._queue(db, alert_id, "repeat", now)

    def _unmuted(self, db: sqlite3.Connection, now: float) -> None:
        """An alert that fired while silenced or in maintenance and still fires when
        that ends was never told: tell it now (as Alertmanager does)."""
        rows = db.execute(
            """SELECT id FROM alerts a WHERE state = 'firing' AND notified = 0 AND late = 0
                 AND suppressed = 0 AND acked_at IS NULL
                 AND EXISTS (SELECT 1 FROM alert_steps s WHERE s.alert_id = a.id
                             AND s.step = 'muted')
                 AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.alert_id = a.id)"""
        ).fetchall()
        for (alert_id,) in rows:
            if not muted(db, alert_id, now):
                self._queue(db, alert_id, "firing", now)
                record_step(db, alert_id, now, "unmuted")

    def _escalate(self, db: sqlite3.Connection, now: float) -> None:
        """Each alert takes the steps it is due, in order, once; recorded on it. A step's
        ``after`` counts from when the alert was first sent: one that fired in a
        maintenance window and was sent when it ended gives the technician on duty the
        same time as any other before waking the next one (a store older than the
        recorded steps: from its firing)."""
        for number, step in enumerate(self.escalation, 1):
            marks = ",".join("?" * len(step.severities))
            rows = db.execute(
                f"""SELECT id FROM alerts a WHERE state = 'firing' AND acked_at IS NULL
                     AND suppressed = 0 AND late = 0 AND notified = 1
                     AND escalation_step < ? AND severity IN ({marks})
                     AND COALESCE((SELECT MIN(s.at) FROM alert_steps s
                                   WHERE s.alert_id = a.id AND s.step = 'notified firing'),
                                  fired_at) <= ?""",  # noqa: S608 - placeholders only
                (number, *step.severities, now - step.after),
            ).fetchall()
            for (alert_id,) in rows:
                if muted(db, alert_id, now):
                    continue  # planned or silenced: nobody needs waking for it
                db.execute("UPDATE alerts SET escalation_step = ? WHERE id = ?", (number, alert_id))
                self._queue(db, alert_id, escalation_event(number), now)
                record_step(db, alert_id, now, "escalated",
                            f"step {number}: {step.route} (not acknowledged)")  # fmt: skip
