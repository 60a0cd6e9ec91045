"""Availability arithmetic, with answers computed by hand."""

from __future__ import annotations

import pytest

from collector.state.availability import Outage, availability

DAY = 86_400.0
T0 = 1_793_491_200.0  # 2026-11-01 00:00 +07:00 is not needed: any origin works


def test_no_outage_is_100_percent() -> None:
    result = availability([], T0, T0 + DAY, monitored_since=T0 - DAY, now=T0 + 2 * DAY)
    assert (result.percent, result.down_s, result.outages) == (100.0, 0.0, 0)


def test_one_closed_three_hour_outage_in_a_day() -> None:
    outage = Outage(T0 + 3600, T0 + 4 * 3600)
    result = availability([outage], T0, T0 + DAY, monitored_since=T0 - DAY, now=T0 + 2 * DAY)
    assert result.down_s == 3 * 3600
    assert result.percent == pytest.approx(100 * 21 / 24)
    assert result.outages == 1


def test_an_open_outage_counts_up_to_now_and_the_window_ends_now() -> None:
    outage = Outage(T0 + 20 * 3600, None)
    now = T0 + 22 * 3600
    result = availability([outage], T0, T0 + DAY, monitored_since=T0 - DAY, now=now)
    assert result.window_end == now
    assert result.observed_s == 22 * 3600
    assert result.down_s == 2 * 3600
    assert result.percent == pytest.approx(100 * 20 / 22)


def test_window_is_clipped_to_when_monitoring_began() -> None:
    outage = Outage(T0 + 13 * 3600, T0 + 14 * 3600)
    result = availability([outage], T0, T0 + DAY, monitored_since=T0 + 12 * 3600, now=T0 + DAY)
    assert result.observed_s == 12 * 3600
    assert result.percent == pytest.approx(100 * 11 / 12)


def test_outages_cut_by_the_window_count_only_inside_it() -> None:
    before = Outage(T0 - 3600, T0 + 1800)  # 30 min inside
    after = Outage(T0 + DAY - 600, T0 + DAY + 3600)  # 10 min inside
    result = availability([before, after], T0, T0 + DAY, monitored_since=0, now=T0 + 2 * DAY)
    assert result.down_s == 1800 + 600
    assert result.outages == 2


def test_overlapping_outages_are_not_counted_twice() -> None:
    outages = [Outage(T0 + 100, T0 + 400), Outage(T0 + 300, T0 + 500), Outage(T0 + 900, T0 + 1000)]
    result = availability(outages, T0, T0 + DAY, monitored_since=0, now=T0 + DAY)
    assert result.down_s == 400 + 100


def test_nothing_observed_is_no_figure_not_100_percent() -> None:
    result = availability([], T0, T0 + DAY, monitored_since=T0 + 2 * DAY, now=T0 + 3 * DAY)
    assert result.percent is None
    assert result.observed_s == 0


def test_outages_outside_the_window_do_not_count() -> None:
    result = availability(
        [Outage(T0 - 500, T0 - 100)], T0, T0 + DAY, monitored_since=0, now=T0 + DAY
    )
    assert (result.down_s, result.outages, result.percent) == (0.0, 0, 100.0)


def test_a_line_watched_by_two_probes_is_down_only_while_both_say_so() -> None:
    from collector.state.availability import all_down

    # Probe A from 0: down 100-200 and 300-open. Probe B from 150: down 150-250.
    a = ([Outage(100, 200), Outage(300, None)], 0.0)
    b = ([Outage(150, 250)], 150.0)
    outages, first = all_down([a, b])
    # 100-150: B not watching yet, A down -> down. 150-200 both down. 300-: B up -> up.
    assert first == 0.0
    assert outages == [Outage(100, 200)]
    result = availability(outages, 0, 1000, first, now=1000)
    assert result.down_s == 100 and result.percent == 90.0


def test_all_down_with_one_probe_is_that_probe() -> None:
    from collector.state.availability import all_down

    outages = [Outage(10, 20), Outage(30, None)]
    assert all_down([(outages, 5.0)]) == (outages, 5.0)
    assert all_down([]) == ([], float("inf"))
