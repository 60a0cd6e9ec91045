"""Sending queued notifications through apprise, routed by severity and commune.

The engine queues an event (firing, resolved, repeat) in the state store in the
same transaction as the alert's change; this sends them. An event waits
``group_wait`` first, so that alerts of one rule in one commune that fire
together (every PC of an office losing the line) go out as one message, and so
that an alert held back under another (the commune is unreachable) or
silenced meanwhile is not sent at all. A failed delivery is retried with
backoff, per route: nothing queued is lost, a route that succeeded is not sent
the same event twice; an event no route took after ``MAX_ATTEMPTS`` (about a
day) is given up, logged and counted, so one refused message cannot be retried
for ever.

Messages carry text an agent controls (targets, names, values). They are
handed to apprise as plain text (``NotifyFormat.TEXT``): a target whose format
is HTML (Telegram's ``parse_mode=HTML``, an e-mail's HTML part) gets every
value escaped, and e-mails go as plain text; no agent can put a link or markup
into a technician's channel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.alerts.escalation import Escalation, escalation_step
from collector.alerts.records import Alert, read_alert, record_step
from collector.alerts.rules import Rule
from collector.alerts.zalo import ZaloChannel
from collector.common.localtime import local
from collector.common.words import NOTIFICATIONS as WORDS
from collector.state.store import StateStore

log = logging.getLogger(__name__)

#: Deliveries of one event before it is given up (backoff 10 s doubling to 1 h: ~20 h).
MAX_ATTEMPTS = 24


@dataclass(frozen=True)
class Route:
    name: str
    urls: tuple[str, ...]
    severities: tuple[str, ...] = ()
    """Empty: every severity."""
    communes: tuple[str, ...] = ()
    """Empty: every commune."""
    language: str = "vi"
    zalo: ZaloChannel | None = None
    escalation_only: bool = False
    """Told by escalation steps only."""

    def wants(self, alert: Alert) -> bool:
        return (not self.severities or alert.severity in self.severities) and (
            not self.communes or alert.commune in self.communes
        )


def shown(ts: float) -> str:
    return local(ts).strftime("%d/%m/%Y %H:%M")


def summary(rule: Rule | None, alert: Alert, language: str, names: dict[str, str]) -> str:
    commune = names.get(f"{alert.province}/{alert.commune}", alert.commune)
    template = (rule.summary.get(language) or rule.summary.get("en")) if rule else None  # type: ignore[call-overload]
    if not template:
        template = f"{alert.rule}: {{commune}} {{agent}} {{target}} {{value}}"
    return str(template).format(
        commune=commune, agent=alert.agent, target=alert.target, name=alert.name, value=alert.value
    )


def after_text(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min"


def compose(
    event: str,
    alerts: Sequence[Alert],
    rule: Rule | None,
    language: str,
    names: dict[str, str],
    console_url: str = "",
    escalated_after: dict[int, float] | None = None,
) -> tuple[str, str]:
    """(title, body) of one message for alerts of one rule, commune and event."""
    escalated_after = escalated_after or {}
    words = WORDS.get(language, WORDS["en"])
    first = alerts[0]
    step = escalation_step(event)
    if step is not None:
        heading = words["escalation"].format(after=after_text(escalated_after.get(step, 0)))
    else:
        heading = words[event]
    title = f"[{heading}] [{words[first.severity]}] {summary(rule, first, language, names)}"
    if len(alerts) > 1:
        title += " — " + words["more"].format(n=len(alerts) - 1)
    lines = []
    for alert in alerts:
        when = f"{words['since']} {shown(alert.started_at)}"
        if event == "resolved" and alert.resolved_at is not None:
            when += f" {words['until']} {shown(alert.resolved_at)}"
        lines.append(f"- {summary(rule, alert, language, names)} ({when}) #{alert.id}")
    lines.append("")
    lines.append(words["ack"].format(id=first.id))
    if console_url:
        lines.append(f"{console_url.rstrip('/')}/alerts/{first.id}")
    return title, "\n".join(lines)


def send_apprise(urls: Sequence[str], title: str, body: str) -> bool:
    import apprise

    sender = apprise.Apprise()
    for url in urls:
        sender.add(url)
    return bool(sender.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))


class Notifier:
    def __init__(
        self,
        store: StateStore,
        routes: Sequence[Route],
        rules: Sequence[Rule],
        *,
        names: dict[str, str] | None = None,
        escalation: Sequence[Escalation] = (),
        group_wait: float = 30.0,
        console_url: str = "",
        send: Callable[[Sequence[str], str, str], bool] = send_apprise,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.routes = list(routes)
        self.rules = {r.name: r for r in rules}
        self.names = names or {}
        self.escalation = list(escalation)
        self.group_wait = group_wait
        self.console_url = console_url
        self.send = send
        self.clock = clock
        self.sent = 0
        self.failures = 0
        self.abandoned = 0
        """Events given up after MAX_ATTEMPTS."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def dead(self) -> bool:
        """Started, ended, and not told to."""
        return bool(self._thread.ident) and not self._thread.is_alive() and not self._stop.is_set()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.run_once()
            except Exception:
                log.exception("notifier pass failed; retrying")

    def _due(self, now: float) -> list[tuple[int, int, str, int, str]]:
        with self.store.reading() as db:
            rows = db.execute(
                """SELECT id, alert_id, event, attempts, done FROM notifications
                   WHERE created <= ? AND next_try <= ? ORDER BY id""",
                (now - self.group_wait, now),
            ).fetchall()
        return [(int(a), int(b), str(c), int(d), str(e)) for a, b, c, d, e in rows]

    def run_once(self) -> int:
        """Send what is due; returns the messages sent."""
        now = self.clock()
        due = self._due(now)
        if not due:
            return 0
        dropped: list[int] = []
        muted_firing: list[int] = []
        events: list[tuple[int, str, Alert, int, set[str]]] = []
        with self.store.reading() as db:
            for note_id, alert_id, event, attempts, done_text in due:
                alert = read_alert(db, alert_id, now)
                # read_alert says already whether a silence or a window covers it now.
                quiet = (
                    event != "resolved"
                    and alert is not None
                    and (alert.silenced or alert.maintenance)
                )
                if alert is None or (
                    event != "resolved"
                    and (
                        alert.suppressed
                        or quiet
                        or alert.state != "firing"
                        or (event != "firing" and alert.acked_at is not None)
                    )
                ):
                    dropped.append(note_id)
                    if quiet and event == "firing" and alert is not None:
                        muted_firing.append(alert.id)  # to be told when the mute ends
                    continue
                done = set(filter(None, done_text.split(",")))
                events.append((note_id, event, alert, attempts, done))
        groups: dict[tuple[str, str, str, str], list[tuple[int, Alert]]] = defaultdict(list)
        for note_id, event, alert, _, routes_done in events:
            for route in self._routes_for(event, alert):
                if route.name not in routes_done:
                    groups[(route.name, event, alert.rule, alert.commune)].append((note_id, alert))
        succeeded: dict[int, set[str]] = defaultdict(set)
        failed: set[int] = set()
        sent = 0
        routes = {r.name: r for r in self.routes}
        for (route_name, event, rule_name, _), members in groups.items():
            route = routes[route_name]
            title, body = compose(
                event,
                [a for _, a in members],
                self.rules.get(rule_name),
                route.language,
                self.names,
                self.console_url,
                {n: step.after for n, step in enumerate(self.escalation, 1)},
            )
            try:
                ok = self._deliver(route, title, body)
            except Exception as exc:  # a broken URL or plugin must not stop the others
                log.warning("route %s: %s", route_name, exc)
                ok = False
            if ok:
                sent += 1
                for note_id, _ in members:
                    succeeded[note_id].add(route_name)
            else:
                self.failures += 1
                log.warning("route %s could not deliver %s; will retry", route_name, title[:120])
                failed.update(note_id for note_id, _ in members)
        self._record(now, dropped, events, succeeded, failed, muted_firing)
        self.sent += sent
        return sent

    def _routes_for(self, event: str, alert: Alert) -> list[Route]:
        """An escalation step's route alone; otherwise the routes that want the alert,
        those kept for escalation left out."""
        step = escalation_step(event)
        if step is not None:
            if not 1 <= step <= len(self.escalation):
                return []
            name = self.escalation[step - 1].route
            return [r for r in self.routes if r.name == name]
        wanted = [r for r in self.routes if r.wants(alert) and not r.escalation_only]
        # A shared system's owner is told on its own route (the catalogue's ``route``),
        # beside the routes that take every commune.
        owner = alert.labels.get("route")
        wanted += [
            r for r in self.routes
            if r.name == owner and r not in wanted
            and (not r.severities or alert.severity in r.severities)
        ]  # fmt: skip
        return wanted

    def _deliver(self, route: Route, title: str, body: str) -> bool:
        ok = True
        if route.urls:
            ok = self.send(route.urls, title, body)
        if ok and route.zalo is not None:
            ok = route.zalo.send(title, body)
        return ok

    def _record(
        self,
        now: float,
        dropped: list[int],
        events: list[tuple[int, str, Alert, int, set[str]]],
        succeeded: dict[int, set[str]],
        failed: set[int],
        muted_firing: Sequence[int] = (),
    ) -> None:
        with self.store.transaction() as db:
            for note_id in dropped:
                db.execute("DELETE FROM notifications WHERE id = ?", (note_id,))
            for alert_id in muted_firing:
                record_step(db, alert_id, now, "muted", "silence or maintenance")
            for note_id, event, alert, attempts, done_before in events:
                done = done_before | succeeded.get(note_id, set())
                if note_id in failed and attempts + 1 >= MAX_ATTEMPTS:
                    self.abandoned += 1
                    log.error(
                        "gave up alert %d's %s notification after %d attempts (routes not "
                        "reached: see the warnings above); the alert itself stays",
                        alert.id,
                        event,
                        attempts + 1,
                    )
                    db.execute("DELETE FROM notifications WHERE id = ?", (note_id,))
                    continue
                if note_id in failed:
                    delay = min(3600.0, 10.0 * 2**attempts)
                    db.execute(
                        "UPDATE notifications SET attempts = ?, next_try = ?, done = ? "
                        "WHERE id = ?",
                        (attempts + 1, now + delay, ",".join(sorted(done)), note_id),
                    )
                    continue
                db.execute("DELETE FROM notifications WHERE id = ?", (note_id,))
                reached = sorted(succeeded.get(note_id, set()))
                if reached:  # the alert's steps: who was told what, when
                    db.execute(
                        "INSERT INTO alert_steps (alert_id, at, step, detail) VALUES (?, ?, ?, ?)",
                        (alert.id, now, f"notified {event}", ", ".join(reached)),
                    )
                if event in ("firing", "repeat") and done:
                    db.execute(
                        "UPDATE alerts SET notified = 1, last_notified = ? WHERE id = ?",
                        (now, alert.id),
                    )


def load_urls(urls: Sequence[str], urls_file: str) -> tuple[str, ...]:
    """Inline URLs and those of a file (one per line, # comments): URLs with passwords
    belong in a file readable by the collector only."""
    found = list(urls)
    if urls_file:
        for raw in Path(urls_file).read_text(encoding="utf-8").splitlines():
            url = raw.strip()
            if url and not url.startswith("#"):
                found.append(url)
    return tuple(found)
