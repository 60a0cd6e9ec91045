"""Alert rules and their lifecycle: each default rule fires, stays quiet, resolves, flaps, and
late data makes history instead of a page. Times are computed by hand."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.configtypes import ConfigError
from agent.wire import Envelope, Sample, Status
from collector.alerts.engine import AlertEngine
from collector.alerts.records import Alert, acknowledge, add_silence, list_alerts
from collector.alerts.rules import Condition, Rule, default_rules, parse_rules
from collector.alerts.verdicts import Verdicts
from collector.state.store import StateStore

T0 = 1_795_000_000.0
#: As the inventory gives them: La Ngà's router port to the province.
UPLINKS = {"dong-nai/la-nga": frozenset({"router:Gi0/0/0"})}


class Harness:
    """A store with the default rules, fed like the collector feeds it, on a clock we set."""

    def __init__(self, tmp_path: Path, rules: Any = None) -> None:
        self.now = T0
        self.store = StateStore(tmp_path / "state.sqlite", clock=lambda: self.now)
        self.engine = AlertEngine(rules or default_rules(), uplinks=UPLINKS, clock=lambda: self.now)
        self.engine.install(self.store)
        self.seq: dict[str, int] = {}

    def send(
        self, ts: float, sample: Sample, agent: str = "pc-01", commune: str = "la-nga"
    ) -> None:
        """A sample taken at ``ts`` arriving now (``self.now``, at least ``ts``)."""
        self.now = max(self.now, ts)
        self.seq[agent] = self.seq.get(agent, 0) + 1
        envelope = Envelope(
            v=1,
            agent=agent,
            province="dong-nai",
            commune=commune,
            seq=self.seq[agent],
            ts=ts,
            samples=[sample],
        )
        self.store.apply([envelope], received=self.now)

    def status(
        self, ts: float, state: str, reason: str = "", agent: str = "pc-01", commune: str = "la-nga"
    ) -> None:
        self.now = max(self.now, ts)
        status = Status(
            v=1,
            state=state,
            agent=agent,
            province="dong-nai",
            commune=commune,
            ts=ts,
            reason=reason,
        )  # type: ignore[arg-type]
        self.store.apply(statuses=[(status, ts)], received=ts)

    def tick(self, at: float) -> None:
        self.now = at
        self.engine.tick(self.store, at)

    def alerts(self, rule: str | None = None) -> list[Alert]:
        return sorted(list_alerts(self.store, self.now, rule=rule), key=lambda a: a.id)

    def queued(self) -> list[tuple[int, str]]:
        with self.store.reading() as db:
            rows = db.execute("SELECT alert_id, event FROM notifications ORDER BY id").fetchall()
        return [(int(a), str(e)) for a, e in rows]

    def delivered(self) -> None:
        """What the notifier does once it has sent everything queued."""
        with self.store.transaction() as db:
            db.execute(
                "UPDATE alerts SET notified = 1, last_notified = ? WHERE id IN "
                "(SELECT alert_id FROM notifications)",
                (self.now,),
            )
            db.execute("DELETE FROM notifications")


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def sample(check: str, fields: dict[str, Any], **kw: Any) -> Sample:
    return Sample(
        ts=0.0,
        check=check,
        name=kw.pop("name", check),
        outcome=kw.pop("outcome", "ok"),
        item=kw.pop("item", ""),
        target=kw.pop("target", ""),
        fields=fields,
        tags=kw.pop("tags", {}),
    )


def at(ts: float, s: Sample) -> Sample:
    return Sample(
        ts=ts,
        check=s.check,
        name=s.name,
        outcome=s.outcome,
        item=s.item,
        target=s.target,
        fields=s.fields,
        tags=s.tags,
    )


def tslcd(up: bool) -> Sample:
    return sample(
        "link",
        {"up": int(up), "loss_percent": 0.0 if up else 100.0},
        name="tslcd-province",
        target="10.75.0.1",
        tags={"network": "tslcd"},
        outcome="ok" if up else "timeout",
    )


# -- the dedicated line: the whole lifecycle ------------------------------------------


def test_line_down_fires_after_two_minutes_and_resolves_after_two_more(h: Harness) -> None:
    h.send(T0, at(T0, tslcd(True)))
    for minute in (1, 2):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(False)))
    assert h.alerts() == []  # down since T0+60: one minute only
    h.send(T0 + 180, at(T0 + 180, tslcd(False)))
    [alert] = h.alerts()
    assert (alert.rule, alert.severity, alert.state) == ("line_down_tslcd", "critical", "firing")
    assert (alert.started_at, alert.fired_at, alert.target) == (T0 + 60, T0 + 180, "10.75.0.1")
    assert h.queued() == [(alert.id, "firing")]
    h.delivered()
    h.send(T0 + 240, at(T0 + 240, tslcd(True)))
    h.send(T0 + 300, at(T0 + 300, tslcd(True)))
    assert h.alerts()[0].state == "firing"  # up for one minute: not yet
    h.send(T0 + 360, at(T0 + 360, tslcd(True)))
    [alert] = h.alerts()
    assert (alert.state, alert.resolved_at) == ("resolved", T0 + 240)  # when it came back
    assert h.queued() == [(alert.id, "resolved")]


def test_a_short_drop_does_not_fire(h: Harness) -> None:
    h.send(T0, at(T0, tslcd(False)))
    h.send(T0 + 60, at(T0 + 60, tslcd(False)))
    h.send(T0 + 120, at(T0 + 120, tslcd(True)))
    h.send(T0 + 180, at(T0 + 180, tslcd(False)))
    assert h.alerts() == [] and h.queued() == []


def test_a_bouncing_line_is_one_alert_not_ten_pages(h: Harness) -> None:
    for minute in range(4):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(False)))
    h.delivered()
    # Up one minute, down one minute, five times: never up for the 2 minutes it takes.
    for minute in range(4, 14):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(minute % 2 == 0)))
    [alert] = h.alerts()
    assert alert.state == "firing" and alert.flaps == 5
    assert h.queued() == []  # no page for any bounce


def test_the_same_envelope_twice_changes_nothing(h: Harness) -> None:
    for minute in range(4):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(False)))
    before = (h.alerts(), h.queued())
    h.seq["pc-01"] -= 1  # redelivery of the last envelope
    h.send(T0 + 180, at(T0 + 180, tslcd(False)))
    assert (h.alerts(), h.queued()) == before


def test_a_replayed_backlog_is_history_not_a_page(h: Harness) -> None:
    # The line was down 08:00-11:00 while the agents could not publish; the backlog
    # arrives at 11:05 with every sample's own time.
    h.now = T0 + 3 * 3600 + 300
    for minute in range(0, 3 * 60 + 5):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(minute >= 180)))
    [alert] = h.alerts()
    assert (alert.state, alert.started_at, alert.resolved_at) == ("resolved", T0, T0 + 10800)
    assert alert.late
    assert h.queued() == []  # the last "down" samples were 6 minutes old: no page either


def test_a_backlog_that_ends_still_down_pages_once_fresh_data_says_so(h: Harness) -> None:
    h.now = T0 + 3600
    for minute in range(0, 10):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(False)))
    assert h.alerts()[0].late and h.queued() == []
    h.send(T0 + 3600, at(T0 + 3600, tslcd(False)))  # fresh, still down
    [alert] = h.alerts()
    assert alert.late and h.queued() == [(alert.id, "firing")]
    h.send(T0 + 3660, at(T0 + 3660, tslcd(False)))
    assert h.queued() == [(alert.id, "firing")]  # paged once


# -- every default sample rule: fires, and stays quiet on normal data ----------------------

SAMPLE_RULES = [
    # rule, bad sample, good sample, minutes to fire
    (
        "pc_unprotected",
        sample("antivirus", {"verdict": "unprotected"}),
        sample("antivirus", {"verdict": "protected"}),
        10,
    ),
    (
        "no_antimalware",
        sample("antivirus", {"verdict": "none"}),
        sample("antivirus", {"verdict": "outdated"}),
        0,
    ),
    (
        "signatures_old",
        sample(
            "antivirus",
            {"state": "on", "signature_age_days": 5.0},
            item="product",
            target="Bkav Pro",
        ),
        sample(
            "antivirus",
            {"state": "on", "signature_age_days": 1.0},
            item="product",
            target="Bkav Pro",
        ),
        0,
    ),
    (
        "line_down_internet",
        sample("link", {"up": 0}, name="internet", tags={"network": "internet"}),
        sample("link", {"up": 1}, name="internet", tags={"network": "internet"}),
        2,
    ),
    (
        "line_down_lan",
        sample("link", {"up": 0}, name="router", tags={"network": "lan"}),
        sample("link", {"up": 1}, name="router", tags={"network": "lan"}),
        2,
    ),
    (
        "line_loss",
        sample("link", {"up": 1, "loss_percent": 33.3}, tags={"network": "tslcd"}),
        sample("link", {"up": 1, "loss_percent": 0.0}, tags={"network": "tslcd"}),
        5,
    ),
    (
        "interface_down",
        sample(
            "snmp",
            {"admin_status": 1, "oper_up": False},
            item="interface",
            target="Gi0/0/2",
            name="router",
        ),
        sample(
            "snmp",
            {"admin_status": 1, "oper_up": True},
            item="interface",
            target="Gi0/0/2",
            name="router",
        ),
        2,
    ),
    (
        "uplink_down",
        sample(
            "snmp",
            {"admin_status": 1, "oper_up": False},
            item="interface",
            target="Gi0/0/0",
            name="router",
        ),
        sample(
            "snmp",
            {"admin_status": 1, "oper_up": True},
            item="interface",
            target="Gi0/0/0",
            name="router",
        ),
        2,
    ),
    (
        "polycom_unreachable",
        sample("polycom", {"up": 0}, outcome="timeout"),
        sample("polycom", {"up": 1, "ready": True, "registered": True}),
        5,
    ),
    (
        "polycom_not_registered",
        sample("polycom", {"up": 1, "registered": False}),
        sample("polycom", {"up": 1, "registered": True}),
        10,
    ),
    (
        "polycom_device_failed",
        sample("polycom", {"up": 1, "camera_ok": False, "microphone_ok": True}),
        sample("polycom", {"up": 1, "camera_ok": True, "microphone_ok": True}),
        5,
    ),
    (
        "disk_full",
        sample("host", {"used_percent": 95.0}, item="disk", target="C:"),
        sample("host", {"used_percent": 60.0}, item="disk", target="C:"),
        0,
    ),
    (
        "outbox_dropped",
        sample("agent", {"dropped_envelopes": 40, "dropped_new": 40}, name="agent"),
        sample("agent", {"dropped_envelopes": 40, "dropped_new": 0}, name="agent"),
        0,
    ),
]


@pytest.mark.parametrize(
    ("rule", "bad", "good", "minutes"), SAMPLE_RULES, ids=[r[0] for r in SAMPLE_RULES]
)
def test_each_default_sample_rule(
    h: Harness, rule: str, bad: Sample, good: Sample, minutes: int
) -> None:
    h.send(T0, at(T0, good))
    for minute in range(1, minutes + 1):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, bad))
    if minutes:
        assert h.alerts(rule) == [], "fired before its time"
    h.send(T0 + 60 * (minutes + 1), at(T0 + 60 * (minutes + 1), bad))
    [alert] = h.alerts(rule)
    assert alert.state == "firing" and alert.started_at == T0 + 60
    assert [a.rule for a in h.alerts()] == [rule], "no other rule reacts to this sample"
    # Back to normal for long enough: resolved when it came back.
    back = T0 + 60 * (minutes + 2)
    for minute in range(6):
        h.send(back + 60 * minute, at(back + 60 * minute, good))
    [alert] = h.alerts(rule)
    assert (alert.state, alert.resolved_at) == ("resolved", back)


@pytest.mark.parametrize(
    ("rule", "bad", "good", "minutes"), SAMPLE_RULES, ids=[r[0] for r in SAMPLE_RULES]
)
def test_each_default_sample_rule_damps_flapping(
    h: Harness, rule: str, bad: Sample, good: Sample, minutes: int
) -> None:
    h.send(T0 - 60, at(T0 - 60, good))  # a port is news only once seen up
    for minute in range(minutes + 2):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, bad))
    h.delivered()
    # Good and bad in turn, a minute each, for ten minutes: never good long enough.
    turns = [minute % 2 == 1 for minute in range(minutes + 2, minutes + 12)]  # True: good
    for minute, is_good in zip(range(minutes + 2, minutes + 12), turns, strict=True):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, good if is_good else bad))
    comebacks = sum(1 for before, now in itertools.pairwise(turns) if before and not now)
    [alert] = h.alerts(rule)
    assert alert.state == "firing" and alert.flaps == comebacks >= 4
    assert h.queued() == []


@pytest.mark.parametrize(
    ("rule", "bad", "good", "minutes"), SAMPLE_RULES, ids=[r[0] for r in SAMPLE_RULES]
)
def test_each_default_sample_rule_replayed_late_is_history(
    h: Harness, rule: str, bad: Sample, good: Sample, minutes: int
) -> None:
    h.now = T0 + 6 * 3600  # the backlog of the morning arrives in the afternoon
    h.send(T0 - 60, at(T0 - 60, good))
    for minute in range(minutes + 30):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, bad if minute < minutes + 20 else good))
    [alert] = h.alerts(rule)
    assert (alert.state, alert.late, alert.started_at) == ("resolved", True, T0)
    assert alert.resolved_at == T0 + 60 * (minutes + 20)
    assert h.queued() == []


@pytest.mark.parametrize("rule", [r[0] for r in SAMPLE_RULES])
def test_normal_data_fires_nothing(h: Harness, rule: str) -> None:
    good = next(r[2] for r in SAMPLE_RULES if r[0] == rule)
    for minute in range(30):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, good))
    assert h.alerts() == []


def test_old_signatures_of_a_product_switched_off_are_no_alert(h: Harness) -> None:
    passive = sample(
        "antivirus", {"state": "off", "signature_age_days": 40.0}, item="product", target="Defender"
    )
    h.send(T0, at(T0, passive))
    assert h.alerts() == []


def test_a_dedicated_line_outage_is_not_an_internet_outage(h: Harness) -> None:
    for minute in range(5):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(False)))
    assert [a.rule for a in h.alerts()] == ["line_down_tslcd"]


# -- agents and communes ---------------------------------------------------------------


def test_an_agent_lost_for_five_minutes_fires_and_comes_back(h: Harness) -> None:
    h.status(T0, "online")
    h.status(T0 + 100, "online", agent="pc-02")  # the commune is still reachable
    h.status(T0 + 600, "offline", "connection lost")
    h.tick(T0 + 600 + 240)
    assert h.alerts() == []
    h.tick(T0 + 600 + 300)
    [alert] = h.alerts("agent_offline")
    assert (alert.agent, alert.started_at, alert.value) == ("pc-01", T0 + 600, "connection lost")
    h.status(T0 + 1200, "online")
    h.tick(T0 + 1210)
    [alert] = h.alerts("agent_offline")
    assert (alert.state, alert.resolved_at) == ("resolved", T0 + 1200)


def test_a_pc_switched_off_for_the_night_is_no_alert(h: Harness) -> None:
    h.status(T0, "online")
    h.status(T0 + 600, "offline", "stopped")
    h.tick(T0 + 12 * 3600)
    assert h.alerts() == []


def test_rounds_over_fine_agents_keep_no_state_of_them(h: Harness) -> None:
    """A national collector's round looks at 166,050 agents: those fine and never
    otherwise cost the condition's test, not a row each kept for ever."""
    for agent in ("pc-01", "pc-02", "poller"):
        h.status(T0, "online", agent=agent)
    h.status(T0 + 600, "offline", "stopped", agent="pc-02")
    for minute in range(1, 30):
        h.tick(T0 + 60 * minute)
    with h.store.reading() as db:
        assert db.execute("SELECT COUNT(*) FROM alert_subjects").fetchone() == (0,)
    h.status(T0 + 1900, "offline", "connection lost")  # pc-01 lost: now it is followed
    h.tick(T0 + 1910)
    with h.store.reading() as db:
        rows = db.execute("SELECT rule, subject, state FROM alert_subjects").fetchall()
    assert rows == [("agent_offline", "dong-nai/la-nga/pc-01", "pending")]


def test_a_silent_commune_is_one_alert_and_its_agents_are_held_back(h: Harness) -> None:
    for agent in ("pc-01", "pc-02", "poller"):
        h.status(T0, "online", agent=agent)
    for offset, agent in enumerate(("pc-01", "pc-02", "poller")):
        h.status(T0 + 600 + 20 * offset, "offline", "connection lost", agent=agent)
    h.tick(T0 + 700)
    [commune] = h.alerts("commune_unreachable")
    assert (commune.commune, commune.started_at, commune.state) == ("la-nga", T0 + 640, "firing")
    h.tick(T0 + 960)  # five minutes after the agents went: their alerts exist, held back
    agents = h.alerts("agent_offline")
    assert len(agents) == 3 and all(a.suppressed for a in agents)
    assert h.queued() == [(commune.id, "firing")]
    # The line comes back: everything resolves, nothing else was paged.
    for agent in ("pc-01", "pc-02", "poller"):
        h.status(T0 + 1200, "online", agent=agent)
    h.delivered()
    h.tick(T0 + 1210)
    assert {a.state for a in h.alerts()} == {"resolved"}
    assert h.queued() == [(commune.id, "resolved")]


# -- acknowledgement, silences, repeats ---------------------------------------------------


def test_unacknowledged_critical_alerts_repeat_until_acknowledged(h: Harness) -> None:
    for minute in range(4):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(False)))
    h.delivered()
    [alert] = h.alerts()
    h.tick(T0 + 180 + 3599)
    assert h.queued() == []
    h.tick(T0 + 180 + 3600)  # repeat = 1h for line_down_tslcd
    assert h.queued() == [(alert.id, "repeat")]
    h.delivered()
    acked = acknowledge(h.store, alert.id, "anh.nguyen", "VNPT ticket 4411", h.now)
    assert (acked.acked_by, acked.ack_comment) == ("anh.nguyen", "VNPT ticket 4411")
    h.tick(T0 + 180 + 3 * 3600)
    assert h.queued() == []


def test_a_silence_mutes_matching_alerts_for_its_time_only(h: Harness) -> None:
    silence = add_silence(
        h.store,
        starts=T0,
        ends=T0 + 3600,
        created_by="tech",
        now=T0,
        commune="la-nga",
        comment="maintenance",
    )
    for minute in range(4):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(False)))
    [alert] = h.alerts()
    assert alert.silenced and silence.id == 1
    h.now = T0 + 3601
    assert not h.alerts()[0].silenced
    with pytest.raises(ValueError, match="cannot mute everything"):
        add_silence(h.store, starts=T0, ends=T0 + 60, created_by="x", now=T0)


# -- rules as config -----------------------------------------------------------------------


def rule_error(toml_rule: dict[str, Any]) -> str:
    base = {"name": "r", "check": "link", "when": [{"field": "up", "op": "==", "value": 0}]}
    with pytest.raises(ConfigError) as info:
        parse_rules({"rules": [{**base, **toml_rule}]}, "rules.toml")
    return str(info.value)


def test_rule_mistakes_are_config_errors_naming_the_key() -> None:
    assert "rules[0].when[0].field: 'up_pct' is not a field" in rule_error(
        {"when": [{"field": "up_pct", "op": "==", "value": 0}]}
    )
    assert "rules[0].check: expected one of" in rule_error({"check": "printer"})
    assert "rules[0].item: link has items" in rule_error({"item": "disk"})
    assert "can only be compared with == or !=" in rule_error(
        {"check": "polycom", "when": [{"field": "ready", "op": ">", "value": True}]}
    )
    assert "is a number" in rule_error({"when": [{"field": "up", "op": "==", "value": "down"}]})
    assert "can never hold together" in rule_error(
        {
            "when": [
                {"field": "loss_percent", "op": ">", "value": 50},
                {"field": "loss_percent", "op": "<", "value": 20},
            ]
        }
    )
    assert "no rule named 'nothing'" in rule_error({"inhibits": ["nothing"]})
    assert "unknown placeholder" in rule_error({"summary": {"vi": "mất {line}"}})
    assert "rules[0].frequency" in rule_error({"frequency": "1m"}) or "frequency" in rule_error(
        {"frequency": "1m"}
    )
    assert "rules[0].severity" in rule_error({"severity": "urgent"})


def test_the_defaults_parse_and_cover_the_scenarios_of_the_issue() -> None:
    names = {r.name for r in default_rules()}
    assert names == {
        "commune_unreachable",
        "agent_offline",
        "pc_unprotected",
        "no_antimalware",
        "signatures_old",
        "line_down_tslcd",
        "line_down_internet",
        "line_down_lan",
        "line_loss",
        "interface_down",
        "uplink_down",
        "polycom_unreachable",
        "polycom_not_registered",
        "polycom_device_failed",
        "disk_full",
        "outbox_dropped",
        "agent_over_limit",
        "collector_session_taken_over",
        "collector_session_refused",
        "release_metadata_expiring",
        "certificate_expiring",
        "certificate_expiring_soon",
        "rollout_paused_by_breach",
        "agent_update_rolled_back",
        "agent_update_failing",
        "system_down",
        "system_slow",
        "system_certificate_expiring",
        "system_unreachable_here",
        "system_slow_here",
        "website_down",
        "website_certificate_expiring",
    }


def test_a_taken_over_session_of_the_collector_pages_and_resolves_when_it_stops(
    tmp_path: Path,
) -> None:
    """Someone logs in with the collector's own account: the broker ends the collector's
    session (0x8E). A critical alert with no commune, paged, resolved a quarter of an
    hour after the last takeover; a refused login, after two minutes."""
    from collector.common.sessions import RECENT_S, TAKEN_OVER, SessionWatch

    now = [T0]
    ingest = SessionWatch("ingest", clock=lambda: now[0])
    dynsec = SessionWatch("dynsec", clock=lambda: now[0])
    store = StateStore(tmp_path / "state.sqlite")
    engine = AlertEngine(default_rules(), clock=lambda: now[0], sessions=lambda: [ingest, dynsec])
    engine.install(store)
    ingest.up()
    dynsec.up()
    engine.tick(store, now[0])
    assert list_alerts(store, now[0]) == []
    for _ in range(3):  # the thief and the collector keep kicking each other
        ingest.down(TAKEN_OVER)
        ingest.up()
    now[0] += 10
    engine.tick(store, now[0])
    [alert] = list_alerts(store, now[0])
    assert (alert.rule, alert.severity, alert.state) == (
        "collector_session_taken_over", "critical", "firing",
    )  # fmt: skip
    assert (alert.province, alert.commune, alert.name, alert.value) == ("", "", "ingest", "3")
    with store.reading() as db:
        assert db.execute("SELECT COUNT(*) FROM notifications").fetchone()[0] == 1
    assert ingest.state(now[0]) == "taken_over"
    now[0] += RECENT_S + 1
    engine.tick(store, now[0])
    assert [a.state for a in list_alerts(store, now[0])] == ["resolved"]
    assert ingest.state(now[0]) == "ok"
    dynsec.refused(0x86, "bad user name or password")
    now[0] += 10
    engine.tick(store, now[0])
    now[0] += 121
    engine.tick(store, now[0])
    firing = list_alerts(store, now[0], state="firing")
    assert [(a.rule, a.name) for a in firing] == [("collector_session_refused", "dynsec")]


def port(ts: float, name: str, up: bool, admin: int = 1) -> Sample:
    fields: dict[str, Any] = {"admin_status": admin, "oper_up": up}
    return at(ts, sample("snmp", fields, item="interface", target=name, name="router"))


def test_a_port_never_seen_up_is_not_news_however_long_it_stays_down(h: Harness) -> None:
    for minute in range(60):
        h.send(T0 + 60 * minute, port(T0 + 60 * minute, "Gi0/0/24", False))
    assert h.alerts() == []
    # The day someone plugs a PC in, and unplugs it: now it is news, after its `for`.
    h.send(T0 + 3600, port(T0 + 3600, "Gi0/0/24", True))
    for minute in range(1, 4):
        h.send(T0 + 3600 + 60 * minute, port(T0 + 3600 + 60 * minute, "Gi0/0/24", False))
    [alert] = h.alerts("interface_down")
    assert (alert.state, alert.started_at, alert.severity) == ("firing", T0 + 3660, "warning")


def test_seen_up_survives_a_restart_of_the_collector(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    first.send(T0, port(T0, "Gi0/0/5", True))
    first.store.close()
    again = Harness(tmp_path)  # a new engine: what it knows comes from the store
    again.seq = dict(first.seq)
    for minute in range(1, 4):
        again.send(T0 + 60 * minute, port(T0 + 60 * minute, "Gi0/0/5", False))
    assert [a.rule for a in again.alerts()] == ["interface_down"]


def test_a_port_shut_on_purpose_and_a_port_of_another_commune_are_not_news(h: Harness) -> None:
    h.send(T0 - 60, port(T0 - 60, "Gi0/0/1", True))  # used, then shut by the technician
    for minute in range(5):
        h.send(T0 + 60 * minute, port(T0 + 60 * minute, "Gi0/0/0", False), commune="phu-hoa")
        h.send(T0 + 60 * minute, port(T0 + 60 * minute, "Gi0/0/1", False, admin=2))
    assert h.alerts() == []


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 200),
    st.floats(-5, 200, allow_nan=False),
    st.sampled_from(["ok", "stale", "disabled", "windows", "tslcd", ""]),
)
# Every field the built-in rules name, and names that shadow each other across tags
# and fields.
_names = st.sampled_from(
    sorted({c.field for r in default_rules() for c in r.when} | {"os", "network", "outcome"})
)


def _merged_holds(rule: Rule, sample: Sample) -> bool | None:
    """The rule's own reading of a sample (the oracle): ``holds`` of its values merged as
    the engine once merged them for every sample, fields over tags, outcome over both."""
    values = {**sample.tags, **sample.fields}
    return rule.holds(values | {"outcome": sample.outcome, "success": sample.outcome == "ok"})


_conditions = st.builds(
    Condition,
    field=_names,
    op=st.sampled_from(["==", "!=", ">", ">=", "<", "<="]),
    value=st.one_of(
        st.booleans(),
        st.integers(-5, 200),
        st.floats(-5, 200, allow_nan=False),
        st.sampled_from(["ok", "stale", "windows", "tslcd", ""]),
    ),
)
_rules = st.builds(
    Rule,
    name=st.just("r"),
    check=st.just("link"),
    when=st.lists(_conditions, min_size=1, max_size=4),
    match=st.sampled_from(["all", "any"]),
    tags=st.dictionaries(_names, st.sampled_from(["windows", "tslcd", "1"]), max_size=2),
)


@settings(max_examples=500, deadline=None)
@given(
    rules=st.lists(_rules, min_size=1, max_size=3),
    fields=st.dictionaries(_names, _values, max_size=5),
    tags=st.dictionaries(_names, st.sampled_from(["windows", "tslcd", "ok", "1"]), max_size=3),
    outcome=st.sampled_from(["ok", "timeout", "error"]),
)
def test_a_rules_compiled_test_judges_a_sample_as_its_merged_values(
    rules: list[Rule], fields: dict[str, Any], tags: dict[str, str], outcome: str
) -> None:
    """The engine tests each sample with ``sample_test``, made once per rule, reading the
    sample where its values are: for any rule (any conditions, ops, values, match, tags)
    and any sample it says what ``holds`` says of the merged values, and None for a
    sample without the rule's tags."""
    sample = Sample(check="link", name="x", ts=1.0, outcome=outcome, fields=fields, tags=tags)
    for rule in [*rules, *default_rules()]:
        tagged = all(tags.get(name) == value for name, value in rule.tags.items())
        expected = _merged_holds(rule, sample) if tagged else None
        assert rule.sample_test()(sample) == expected, rule


# Few names and values, so that readings repeat and collide: True against 1 and 1.0, a
# field against a tag of the same name, text against numbers.
_few_names = st.sampled_from(["up", "network", "outcome"])
_few_values = st.sampled_from([None, True, False, 0, 1, 2, 0.0, 1.0, "1", "tslcd"])
_few_rules = st.builds(
    Rule,
    name=st.just("r"),
    check=st.just("link"),
    when=st.lists(
        st.builds(
            Condition,
            field=_few_names,
            op=st.sampled_from(["==", "!=", ">", ">=", "<", "<="]),
            value=st.sampled_from([True, False, 0, 1, 2, "1", "tslcd", "ok"]),
        ),
        min_size=1,
        max_size=3,
    ),
    match=st.sampled_from(["all", "any"]),
    tags=st.dictionaries(_few_names, st.sampled_from(["tslcd", "1"]), max_size=1),
)
_ABSENT_VALUE = object()
# Every reading of "up" (as a field, or a tag), the network tag and the outcome: a
# sequence drawn from them repeats readings and collides True with 1 and 1.0.
_pool = [
    Sample(
        check="link",
        name="x",
        ts=1.0,
        outcome=outcome,
        fields={} if up is _ABSENT_VALUE else {"up": up},
        tags={
            **({} if network is None else {"network": network}),
            **({} if up_tag is None else {"up": up_tag}),
        },
    )
    for up in (_ABSENT_VALUE, None, True, False, 0, 1, 2, 0.0, 1.0, "1")
    for network in (None, "tslcd", "1")
    for up_tag in (None, "1")
    for outcome in ("ok", "timeout")
]


@settings(max_examples=300, deadline=None)
@given(
    rules=st.lists(_few_rules, min_size=1, max_size=4),
    first=st.permutations(_pool),
    then=st.permutations(_pool),
    limit=st.sampled_from([1, 7, 1000]),
)
def test_verdicts_remembered_by_a_samples_reading_are_each_rules_own(
    rules: list[Rule], first: list[Sample], then: list[Sample], limit: int
) -> None:
    """The engine judges a check's rules once per distinct reading of a sample: over
    every reading twice, in any order (readings repeated, True against 1, a field against
    a tag of the same name, the memory full and forgotten), each verdict is the rule's
    own test's."""
    verdicts = Verdicts(rules, limit=limit)
    for sample in [*first, *then]:
        expected = []
        for rule in rules:
            tagged = all(sample.tags.get(name) == value for name, value in rule.tags.items())
            holds = _merged_holds(rule, sample) if tagged else None
            if holds is not None:
                expected.append((rule, holds))
        found, holding = verdicts(sample)
        assert list(found) == expected
        assert list(holding) == [verdict for verdict in expected if verdict[1]]
