"""Ring membership and gates, as pure functions: property-tested (hypothesis) for
membership — stable, nested, spread across communes — and case by case for gates."""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.common.localtime import VIETNAM
from collector.rollout.gates import Gate, GateError, Standing, judge, parse_gate, soaked
from collector.rollout.rings import Member, RingError, assign, choose_pilot, parse_rings

PLAN = parse_rings("lab,pilot:3-communes,10%,50%,100%")

slugs = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
fleets = st.lists(
    st.tuples(st.sampled_from(["dong-nai", "lam-dong"]), slugs, slugs), min_size=1, max_size=300
).map(lambda rows: [Member(f"{p}/{c}/{a}", f"{p}/{c}") for p, c, a in {tuple(r) for r in rows}])


def by_commune(fleet: list[Member]) -> dict[str, list[Member]]:
    out: dict[str, list[Member]] = defaultdict(list)
    for member in fleet:
        out[member.commune].append(member)
    return out


@settings(max_examples=150, deadline=None)
@given(fleet=fleets, seed=st.integers(0, 2**32))
def test_membership_is_stable_whatever_the_order_of_the_fleet(
    fleet: list[Member], seed: int
) -> None:
    shuffled = list(fleet)
    random.Random(seed).shuffle(shuffled)
    lab = [m.key for m in fleet[:2]]
    pilot = choose_pilot([m.commune for m in fleet], 3)
    assert pilot == choose_pilot(reversed([m.commune for m in shuffled]), 3)
    assert assign(fleet, PLAN, lab, pilot) == assign(shuffled, PLAN, lab, pilot)


@settings(max_examples=150, deadline=None)
@given(fleet=fleets, small=st.integers(1, 99), step=st.integers(1, 99))
def test_a_smaller_share_is_inside_a_larger_one(fleet: list[Member], small: int, step: int) -> None:
    large = min(100, small + step)
    rings = parse_rings(f"{small}%,{large}%") if large > small else parse_rings(f"{small}%")
    found = assign(fleet, rings, [], [])
    alone = assign(fleet, parse_rings(f"{small}%"), [], [])
    # The members of the small ring alone are exactly the ring-0 members of the pair,
    # and every one of them is in the large ring's union too.
    assert {k for k, ring in found.items() if ring == 0} == set(alone)
    wide = assign(fleet, parse_rings(f"{large}%"), [], [])
    assert set(alone) <= set(wide)


@settings(max_examples=150, deadline=None)
@given(fleet=fleets, share=st.integers(1, 100))
def test_a_share_takes_its_part_of_every_commune(fleet: list[Member], share: int) -> None:
    found = assign(fleet, parse_rings(f"{share}%"), [], [])
    for members in by_commune(fleet).values():
        inside = sum(m.key in found for m in members)
        exact = share / 100 * len(members)
        assert math.floor(exact) <= inside <= math.ceil(exact), (share, len(members), inside)


@settings(max_examples=100, deadline=None)
@given(fleet=fleets)
def test_lab_and_pilot_come_first_and_100_percent_takes_the_rest(fleet: list[Member]) -> None:
    lab = [fleet[0].key]
    pilot = choose_pilot([m.commune for m in fleet], 3)
    found = assign(fleet, PLAN, lab, pilot)
    assert set(found) == {m.key for m in fleet}  # 100 %: nobody is left out
    assert found[fleet[0].key] == 0
    for member in fleet[1:]:
        assert (found[member.key] == 1) == (member.commune in pilot)


def test_a_province_sized_fleet_spreads_every_share_over_every_commune() -> None:
    fleet = [
        Member(f"dong-nai/xa-{c:02d}/pc-{a:03d}", f"dong-nai/xa-{c:02d}")
        for c in range(95)
        for a in range(20 + (c * 7) % 60)
    ]
    found = assign(fleet, parse_rings("10%,50%,100%"), [], [])
    first = Counter(m.commune for m in fleet if found[m.key] == 0)
    assert len(first) >= 90  # nearly every commune has PCs in the 10 % ring
    assert abs(sum(first.values()) - 0.10 * len(fleet)) < 95  # one per commune at most off
    # A PC's ring does not change when the plan adds a ring after it.
    again = assign(fleet, parse_rings("10%,30%,50%,100%"), [], [])
    assert {k for k, r in again.items() if r == 0} == {k for k, r in found.items() if r == 0}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "separated by commas"),
        ("lab,,10%", "separated by commas"),
        ("10%,lab", "lab first"),
        ("50%,10%", "must grow"),
        ("lab,lab", "twice"),
        ("pilot:0-communes", "1 to 50"),
        ("0%", "above 0"),
        ("120%", "above 0"),
        ("canary", "is not a ring"),
        ("1%,2%,3%,4%,5%,6%,7%,8%,9%", "at most 8"),
    ],
)
def test_a_bad_ring_list_is_refused_by_name(text: str, why: str) -> None:
    with pytest.raises(RingError, match=why):
        parse_rings(text)


# ---- gates ---------------------------------------------------------------------------

MONDAY = dt.datetime(2026, 11, 30, 8, 0, tzinfo=VIETNAM).timestamp()
FAST = Gate(soak_s=60, soak_weekdays=False)


def pcs(
    n: int, *, online: int | None = None, committed: int = 0, rolled_back: int = 0
) -> list[Standing]:
    on = n if online is None else online
    return [Standing(i < on, i < committed, i >= n - rolled_back) for i in range(n)]


def test_a_ring_is_promoted_after_its_soak_with_95_percent_committed() -> None:
    ring, rest = pcs(40, committed=38), pcs(200, online=196)
    early = judge(FAST, ring, rest, MONDAY, MONDAY + 30)
    assert not early.held and "soaking" in early.waiting
    later = judge(FAST, ring, rest, MONDAY, MONDAY + 61)
    assert later.held and later.figures.committed_pct == 95.0
    short = judge(FAST, pcs(40, committed=37), rest, MONDAY, MONDAY + 61)
    assert not short.held and short.breach == "" and "37 of 40" in short.waiting
    # Offline PCs are not counted against the share committed.
    like_the_rest = pcs(200, online=190)
    assert judge(FAST, pcs(40, online=38, committed=37), like_the_rest, MONDAY, MONDAY + 61).held


def test_more_than_one_percent_rolled_back_is_a_breach_at_once() -> None:
    verdict = judge(FAST, pcs(150, committed=148, rolled_back=2), [], MONDAY, MONDAY + 1)
    assert not verdict.held and "2 of 150 PCs of the ring rolled back" in verdict.breach
    assert judge(FAST, pcs(100, committed=99, rolled_back=1), [], MONDAY, MONDAY + 61).held


def test_a_ring_more_offline_than_the_pcs_not_updated_is_a_breach() -> None:
    rest = pcs(500, online=490)  # 2 % offline
    verdict = judge(FAST, pcs(100, online=95, committed=95), rest, MONDAY, MONDAY + 61)
    assert "5.0 % of the ring offline against 2.0 %" in verdict.breach
    assert judge(FAST, pcs(100, online=97, committed=97), rest, MONDAY, MONDAY + 61).held
    # A lab of three with one PC switched off is not judged on it.
    assert judge(FAST, pcs(3, online=2, committed=2), rest, MONDAY, MONDAY + 61).held


def test_a_business_day_of_soak_skips_the_weekend() -> None:
    friday_evening = dt.datetime(2026, 12, 4, 17, 0, tzinfo=VIETNAM).timestamp()
    monday_evening = dt.datetime(2026, 12, 7, 17, 0, tzinfo=VIETNAM).timestamp()
    assert soaked(friday_evening, monday_evening, weekdays=True) == 24 * 3600
    assert soaked(friday_evening, monday_evening, weekdays=False) == 72 * 3600
    gate = Gate()  # the default: a business day
    ring = pcs(10, committed=10)
    assert not judge(gate, ring, [], friday_evening, monday_evening - 60).held
    assert judge(gate, ring, [], friday_evening, monday_evening).held


def test_gate_options_are_read_and_bad_ones_named() -> None:
    gate = parse_gate(["soak=2h,committed=90", "rollbacks=0.5", "offline=3", "soak-weekdays=no"])
    assert (gate.soak_s, gate.committed, gate.rollbacks, gate.offline_points) == (
        7200.0, 90.0, 0.5, 3.0,
    )  # fmt: skip
    assert gate.soak_weekdays is False and Gate.from_json(gate.as_json()) == gate
    refusals = [
        ("soak", "key=value"),
        ("speed=3", "key=value"),
        ("committed=120", "0 to 100"),
        ("soak=forever", "duration"),
        ("soak-weekdays=maybe", "yes or no"),
    ]
    for bad, why in refusals:
        with pytest.raises(GateError, match=why):
            parse_gate([bad])


def test_every_gate_sentence_reads_back_into_the_consoles_vietnamese() -> None:
    """The store keeps a breach in English; the console shows it in Vietnamese, read back
    from the same template, nested "ring ...: why" included. An operator's own words
    pass as they are."""
    from collector.rollout.gates import PHRASES, in_words, say

    for key, (english, vietnamese) in PHRASES.items():
        names = re.findall(r"\{(\w+)\}", english)
        values = {name: f"7{index}" for index, name in enumerate(names)}
        if key == "ring":
            values["why"] = say("none_online")
        said = in_words(say(key, **values), "vi")
        expected = vietnamese.format(
            **{**values, **({"why": PHRASES["none_online"][1]} if key == "ring" else {})}
        )
        assert said == expected, (key, said)
        assert in_words(say(key, **values), "en") == say(key, **values)
    assert in_words("mất điện ở La Ngà", "vi") == "mất điện ở La Ngà"
