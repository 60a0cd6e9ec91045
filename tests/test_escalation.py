"""Alert groups and their bulk actions, and escalation: a critical alert no one
acknowledges goes to the next route, each step recorded, and acknowledging stops it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest

from collector.alerts.escalation import Escalation
from collector.alerts.groups import acknowledge_group, groups, silence_group
from collector.alerts.notify import Notifier, Route
from collector.alerts.records import acknowledge, list_alerts, steps
from collector.alerts.rules import default_rules
from tests.test_alerts import T0, Harness, at, tslcd

STEPS = [Escalation(1800, "head"), Escalation(7200, "director")]


class Escalating(Harness):
    """The alert harness with routes whose messages are kept, by route."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.engine.escalation = list(STEPS)
        self.sent: dict[str, list[str]] = defaultdict(list)
        self.notifier = Notifier(
            self.store,
            [
                Route("duty", ("json://duty",)),
                Route("head", ("json://head",), escalation_only=True),
                Route("director", ("json://director",), escalation_only=True),
            ],
            default_rules(),
            escalation=STEPS,
            group_wait=0,
            send=self.keep,
            clock=lambda: self.now,
        )

    def keep(self, urls: Sequence[str], title: str, body: str) -> bool:
        self.sent[urls[0].removeprefix("json://")].append(title)
        return True

    def line_down(self, agents: int = 1, commune: str = "la-nga") -> None:
        for minute in range(4):
            for n in range(1, agents + 1):
                ts = T0 + 60 * minute
                self.send(ts, at(ts, tslcd(False)), agent=f"pc-{n:02d}", commune=commune)

    def at_minute(self, minutes: float) -> None:
        # Minutes since it fired (T0 + 120 s); the clock never goes back.
        self.tick(max(self.now, T0 + 120 + minutes * 60))
        self.notifier.run_once()


@pytest.fixture
def e(tmp_path: Path) -> Escalating:
    return Escalating(tmp_path)


def test_an_unacknowledged_critical_alert_climbs_each_step_once(e: Escalating) -> None:
    e.line_down()
    e.at_minute(0)
    assert [len(e.sent[r]) for r in ("duty", "head", "director")] == [1, 0, 0]
    e.at_minute(29)
    assert e.sent["head"] == []
    e.at_minute(31)  # 30 min after it fired: the head of the IT unit
    assert len(e.sent["head"]) == 1 and e.sent["head"][0].startswith(
        "[CHUYỂN CẤP (chưa ai xác nhận sau 30 min)] [NGHIÊM TRỌNG]"
    )
    e.at_minute(60)
    assert len(e.sent["head"]) == 1, "a step is taken once"
    e.at_minute(122)
    assert len(e.sent["director"]) == 1 and "2h00" in e.sent["director"][0]
    assert len(e.sent["duty"]) == 2, "the duty route: firing and its hourly repeat, no step"
    [alert] = e.alerts("line_down_tslcd")
    recorded = [(s.step, s.detail) for s in steps(e.store, alert.id)]
    assert recorded[:2] == [("fired", ""), ("notified firing", "duty")]
    assert ("escalated", "step 1: head (not acknowledged)") in recorded
    assert ("notified escalation:1", "head") in recorded
    assert ("notified escalation:2", "director") in recorded


def test_acknowledging_stops_what_is_left(e: Escalating) -> None:
    e.line_down()
    e.at_minute(0)
    e.at_minute(31)
    [alert] = e.alerts("line_down_tslcd")
    acknowledge(e.store, alert.id, "tech-la-nga", "on my way", e.now)
    e.at_minute(200)
    assert len(e.sent["head"]) == 1 and e.sent["director"] == []
    assert steps(e.store, alert.id)[-1].step == "acked"


def test_a_warning_does_not_escalate_and_a_silenced_critical_waits(e: Escalating) -> None:
    from tests.test_alerts import sample

    internet = sample("link", {"up": 0}, name="internet", tags={"network": "internet"})
    for minute in range(4):
        e.send(T0 + 60 * minute, at(T0 + 60 * minute, internet), agent="pc-09")
    e.line_down(commune="phu-hoa")
    e.at_minute(0)
    silence_group(
        e.store, province="dong-nai", commune="phu-hoa", rule="line_down_tslcd",
        seconds=3 * 3600, by="tech", comment="VNPT", now=e.now,
    )  # fmt: skip
    e.at_minute(170)
    assert e.sent["head"] == [] and e.sent["director"] == []
    e.at_minute(185)  # the silence is over, nobody acknowledged: now it climbs
    assert len(e.sent["head"]) == 1 and "phu-hoa" in e.sent["head"][0]
    warning = e.alerts("line_down_internet")[0]
    assert warning.severity == "warning" and warning.acked_at is None
    assert all("Internet" not in title for title in e.sent["head"] + e.sent["director"])


def test_an_alert_sent_when_its_mute_ends_gives_the_duty_route_its_time_first(
    e: Escalating,
) -> None:
    """The line went down in a silence (VNPT's works) that outlasted both steps: when
    the silence ends, the technician on duty is told, and the head of the IT unit only
    30 minutes after that, not at the same moment."""
    from collector.alerts.records import add_silence

    add_silence(e.store, starts=T0 - 60, ends=T0 + 120 + 150 * 60, created_by="tech",
                now=T0, commune="la-nga", comment="VNPT works")  # fmt: skip
    e.line_down()
    e.at_minute(0)
    e.at_minute(140)
    assert e.sent["duty"] == [] and e.sent["head"] == []
    e.at_minute(151)  # the silence is over: the duty route hears of it now
    assert len(e.sent["duty"]) == 1 and e.sent["head"] == [] and e.sent["director"] == []
    e.at_minute(152)
    assert e.sent["head"] == [] and e.sent["director"] == []
    e.at_minute(180)
    assert e.sent["head"] == []
    e.at_minute(182)  # 30 minutes after the duty route was told
    assert len(e.sent["head"]) == 1 and e.sent["director"] == []
    e.at_minute(272)  # two hours after it was told
    assert len(e.sent["director"]) == 1


def test_twenty_pcs_losing_the_line_are_one_group_acted_on_once(e: Escalating) -> None:
    e.line_down(agents=20)
    e.line_down(agents=2, commune="phu-hoa")
    e.at_minute(0)
    found = groups(e.store, e.now)
    assert [(g.commune, g.rule, g.count, g.severity) for g in found] == [
        ("la-nga", "line_down_tslcd", 20, "critical"),
        ("phu-hoa", "line_down_tslcd", 2, "critical"),
    ] or [(g.commune, g.count) for g in found] == [("phu-hoa", 2), ("la-nga", 20)]
    la_nga = next(g for g in found if g.commune == "la-nga")
    assert la_nga.unacked == 20 and la_nga.first_started == la_nga.last_started == T0
    assert len(e.sent["duty"]) == 2, "one message per group"
    acked = acknowledge_group(
        e.store, province="dong-nai", commune="la-nga", rule="line_down_tslcd",
        by="tech", comment="VNPT informed", now=e.now,
    )  # fmt: skip
    assert len(acked) == 20
    assert {a.acked_by for a in list_alerts(e.store, e.now, commune="la-nga")} == {"tech"}
    assert all(a.acked_at is None for a in list_alerts(e.store, e.now, commune="phu-hoa"))
    assert acknowledge_group(
        e.store, province="dong-nai", commune="la-nga", rule="line_down_tslcd",
        by="tech", comment="", now=e.now,
    ) == []  # fmt: skip
    after = groups(e.store, e.now)
    assert [(g.commune, g.handled) for g in after] == [("phu-hoa", False), ("la-nga", True)]
    e.at_minute(60)
    assert len(e.sent["head"]) == 1, "only Phú Hòa's group is still unacknowledged"
