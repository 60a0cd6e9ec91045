"""Telling a session taken over from a broker restart, when the broker says nothing
(Mosquitto 2.0.11 closes a taken-over connection without a DISCONNECT): by its uptime."""

from __future__ import annotations

from collector.common.sessions import (
    FIGHT_S,
    RECENT_S,
    TAKEN_OVER,
    BrokerUptime,
    SessionWatch,
)

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def watched() -> tuple[Clock, SessionWatch, BrokerUptime]:
    clock = Clock()
    watch = SessionWatch("ingest", clock)
    uptime = BrokerUptime(clock)
    uptime.watches.append(watch)
    return clock, watch, uptime


def test_two_closes_while_the_broker_runs_are_a_takeover() -> None:
    clock, watch, uptime = watched()
    uptime.seen(b"86400 seconds")
    for _ in range(2):
        watch.up()
        clock.now += 5
        watch.down(unexplained=True)
        clock.now += 1
        uptime.seen(b"%d seconds" % (86400 + int(clock.now - T0)))  # it never stopped
    assert (watch.kicks_total, watch.takeovers_total) == (2, 1)
    assert watch.state() == "taken_over"
    clock.now += RECENT_S + 1
    watch.up()
    assert watch.state() == "ok" and watch.takeovers_total == 1


def test_a_restart_is_no_kick_and_two_restarts_no_takeover() -> None:
    clock, watch, uptime = watched()
    for _ in range(3):  # the broker restarted three times within a minute
        watch.up()
        clock.now += 5
        watch.down(unexplained=True)
        clock.now += 2
        uptime.seen(b"1 seconds")
    assert (watch.kicks_total, watch.takeovers_total) == (0, 0)
    watch.up()
    assert watch.state() == "ok"


def test_one_kick_is_an_administrator_not_an_intruder() -> None:
    clock, watch, uptime = watched()
    uptime.seen(b"3600 seconds")
    watch.up()
    watch.down(unexplained=True)  # its role changed: the plugin ends the session
    uptime.seen(b"3601 seconds")
    clock.now += FIGHT_S + 1
    watch.down(unexplained=True)  # again, much later
    uptime.seen(b"3700 seconds")
    assert (watch.kicks_total, watch.takeovers_total) == (2, 0)


def test_a_broker_that_says_why_is_believed_at_once() -> None:
    _clock, watch, _uptime = watched()
    watch.up()
    watch.down(TAKEN_OVER, "session taken over")
    assert watch.state() == "taken_over" and watch.last_problem == "session taken over"


def test_whatever_comes_on_the_uptime_topic_is_bounded_and_ignored_unless_a_number() -> None:
    clock, _watch, uptime = watched()
    for payload in (b"", b"lots of seconds", b"9" * 10_000, b"-5 seconds", "٣ seconds".encode()):
        uptime.seen(payload)
    assert uptime.started is None
    uptime.seen(b"12 seconds")
    assert uptime.started == clock.now - 12
