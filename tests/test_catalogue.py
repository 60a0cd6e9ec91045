"""The field catalogue is the one vocabulary: the agent's checks, the fleet simulator,
the alert rules, the store's histories, the health model and the README agree with it.

Every sample an agent's check makes in any test is also checked against it
(conftest: ``_every_sample_a_check_makes_matches_the_catalogue``); here the
recorded inputs are walked on purpose, so that a new recording is covered too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent import catalogue
from agent.catalogue import CATALOGUE, DERIVED, LINK, POLYCOM, histories, problems
from agent.checks.host import HostCheck
from agent.checks.options import HostOptions
from agent.checks.selfmetrics import SelfMetricsCheck
from agent.commands import README_BEGIN, README_END
from agent.configtypes import ConfigError
from agent.stats import AgentStats
from agent.wire import (
    KEY_PATTERN,
    RESERVED_FIELDS,
    RESERVED_TAGS,
    Sample,
    decode_envelope,
    parse_topic,
)
from collector.alerts.rules import parse_rules
from fleet.scenario import Fleet
from tests import conftest
from tests.test_alerts import Harness, at, sample
from tests.test_antivirus_windows import run_check

REPO = Path(__file__).resolve().parent.parent
RECORDED_REPORTS = sorted((REPO / "tests" / "data" / "antivirus").glob("*.json"))
RECORDED_REPORTS += [REPO / "tests" / "data" / "antivirus" / "garbage.txt"]


def test_every_name_is_a_key_neither_reserved_nor_both_a_field_and_a_tag() -> None:
    for item in CATALOGUE.values():
        for name in [*item.fields, *item.tags]:
            assert re.fullmatch(KEY_PATTERN.removeprefix("^").split("$")[0], name), name
        assert not set(item.tags) & RESERVED_TAGS, item.label
        assert not set(item.fields) & RESERVED_FIELDS, item.label
        assert not set(item.fields) & set(item.tags), item.label
    assert set(DERIVED) == RESERVED_FIELDS
    # A history is moved by main records only: a disk or an interface moves none.
    assert all(not item.histories for item in CATALOGUE.values() if item.item)


@pytest.mark.parametrize("report", RECORDED_REPORTS, ids=lambda p: p.name)
def test_every_recorded_windows_report_makes_catalogued_samples(
    tmp_path: Path, report: Path
) -> None:
    samples = run_check(tmp_path, report.name)
    assert samples and samples[0].check == "antivirus"
    assert [problem for s in samples for problem in problems(s)] == []


def test_this_machines_host_and_the_agents_own_samples_are_catalogued() -> None:
    host = HostCheck(HostOptions()).collect()
    own = SelfMetricsCheck(AgentStats(), None).collect()
    assert {(s.check, s.item) for s in host} >= {("host", ""), ("host", "disk")}
    assert host[0].tags["os"] == "linux"  # a tag, as the catalogue says, not a field
    assert [problem for s in host + own for problem in problems(s)] == []


def test_every_fleet_sample_is_catalogued() -> None:
    fleet = Fleet("dong-nai", ["la-nga", "phu-ly"], 4, seed=3)
    seen: set[tuple[str, str]] = set()
    found: list[str] = []
    for minute in range(0, 24 * 60, 30):  # a day: outages, meetings, backlogs
        for agent in fleet.agents:
            for topic, payload, _ in fleet.cycle(agent, 1.76e9 + 60 * minute):
                envelope = decode_envelope(payload, parse_topic("commune", topic))
                seen |= {(s.check, s.item) for s in envelope.samples}
                found += [problem for s in envelope.samples for problem in problems(s)]
    assert found == []
    assert seen >= {("host", ""), ("antivirus", "product"), ("snmp", "interface"), ("polycom", "")}


def test_the_catalogue_finds_what_departs_from_it() -> None:
    wrong = Sample(
        ts=1.0,
        check="polycom",
        name="p",
        outcome="ok",
        fields={"ready": 1, "colour": "red"},
        tags={"family": "group"},
    )
    assert problems(wrong) == [
        "polycom.ready: 1 is not bool",
        "polycom: unknown field colour",
        "polycom tag family: 'group' not in ['group_series', 'hdx', 'videoos', 'unknown']",
    ]
    assert problems(msgspec.structs.replace(wrong, check="printer")) == [
        "printer/: not in the catalogue"
    ]
    assert catalogue.mistyped(wrong) == ("ready",)


def test_the_conftest_watch_sees_what_checks_make() -> None:
    """The watch over every test is real: it holds this test's samples."""
    made = conftest._Made.samples
    assert made is not None
    HostCheck(HostOptions()).collect()
    assert any(s.check == "host" for s in made)


UNPROTECTED, SIGNATURES_UP = ("protection", "down"), ("signatures", "up")


@pytest.mark.parametrize(
    ("check", "fields", "outcome", "moved"),
    [
        ("link", {"up": 1}, "ok", [("link", "up")]),
        ("link", {"up": 0}, "timeout", [("link", "down")]),
        ("link", {"up": "yes"}, "ok", []),  # the wrong type says nothing
        ("link", {}, "unsupported", []),
        ("link", {"up": 0}, "error", []),  # the agent could not run it: no state change
        ("polycom", {"ready": True}, "ok", [("polycom", "up")]),
        ("polycom", {"ready": 1}, "ok", []),
        ("polycom", {"up": 0}, "timeout", []),  # readiness unknown
        ("antivirus", {"verdict": "protected"}, "ok", [("protection", "up"), SIGNATURES_UP]),
        ("antivirus", {"verdict": "outdated"}, "ok", [UNPROTECTED, ("signatures", "down")]),
        ("antivirus", {"verdict": "none"}, "ok", [UNPROTECTED, SIGNATURES_UP]),
        ("antivirus", {"verdict": "unprotected"}, "ok", [UNPROTECTED, SIGNATURES_UP]),
        ("antivirus", {"verdict": "unknown"}, "ok", []),
        ("host", {"cpu_percent": 5.0}, "ok", []),
    ],
)  # fmt: skip
def test_which_fields_move_an_up_down_history(
    check: str, fields: dict[str, Any], outcome: str, moved: list[tuple[str, str]]
) -> None:
    assert histories(sample(check, fields, outcome=outcome)) == moved


def test_typed_reads_refuse_names_the_catalogue_does_not_give() -> None:
    fields: dict[str, Any] = {"up": "yes", "rtt_ms": 4, "ready": True, "family": "hdx"}
    assert LINK.number(fields, "up") is None  # text where a number is due: unknown
    assert LINK.number(fields, "rtt_ms") == 4.0
    assert POLYCOM.flag(fields, "ready") is True
    with pytest.raises(KeyError, match="number, not bool"):
        POLYCOM.flag(fields, "up")
    with pytest.raises(KeyError):
        LINK.number(fields, "latency")
    assert catalogue.ANTIVIRUS.text({"verdict": "safe-ish"}, "verdict") is None  # not a verdict


class Count(int):
    """An int of another type than decoding gives: read by the full rule."""


class Word(str):
    """A str of another type than decoding gives."""


VALUES = [4, 4.5, -0.0, 2**60, float("nan"), float("inf"), True, False, Count(3), "4", "",
          "protected", "safe-ish", Word("protected"), None, [1]]  # fmt: skip


@pytest.mark.parametrize("value", VALUES)
def test_numbers_and_texts_read_as_the_full_rule_reads_them(value: Any) -> None:
    """The quick paths of ``number`` (an int or float of a number field) and ``text`` (a
    text of a text field) read every field of every item as the typed read does: another
    type is unknown, a text outside a closed set too, and a name that is no field of
    that type is a programming error."""
    for item in CATALOGUE.values():
        for name in [*item.fields, "not-a-field"]:
            fields = {name: value}
            for kind, read in (("number", item.number), ("text", item.text)):
                try:
                    typed = item._typed(fields, name, kind)  # type: ignore[arg-type]
                except KeyError:
                    with pytest.raises(KeyError):
                        read(fields, name)
                    continue
                if kind == "number":
                    expected = float(typed) if isinstance(typed, int | float) else None
                else:
                    expected = typed if isinstance(typed, str) and typed else None
                got = read(fields, name)
                assert type(got) is type(expected), (item.label, name, kind)
                assert got == expected or (got != got and expected != expected)  # NaN


def os_rule(**rule: Any) -> list[Any]:
    base = {"name": "old_windows", "check": "host"}
    return parse_rules({"rules": [base | rule]}, "rules.toml")


def test_a_rule_on_the_os_tag_compares_the_tag(tmp_path: Path) -> None:
    """os is a tag of host samples: a condition on it compares the tag's value."""
    rules = os_rule(when=[{"field": "os_version", "op": "==", "value": "7"}])
    h = Harness(tmp_path, rules)
    windows_7 = sample("host", {"cpu_percent": 3.0}, tags={"os": "windows", "os_version": "7"})
    windows_10 = sample("host", {"cpu_percent": 3.0}, tags={"os": "windows", "os_version": "10"})
    h.send(1000.0, at(1000.0, windows_10), agent="pc-10")
    h.send(1000.0, at(1000.0, windows_7), agent="pc-07")
    [alert] = h.alerts("old_windows")
    assert alert.agent == "pc-07" and alert.state == "firing"
    h.send(2000.0, at(2000.0, windows_10), agent="pc-07")  # upgraded
    assert [a.state for a in h.alerts("old_windows")] == ["resolved"]


def test_rule_names_and_values_are_checked_against_the_catalogue() -> None:
    def error(**rule: Any) -> str:
        with pytest.raises(ConfigError) as info:
            os_rule(**rule)
        return str(info.value)

    assert os_rule(when=[{"field": "os", "op": "!=", "value": "windows"}])
    assert os_rule(tags={"os": "windows"}, when=[{"field": "cpu_percent", "op": ">", "value": 90}])
    assert "can only be compared with == or !=" in error(
        when=[{"field": "os", "op": ">", "value": "windows"}]
    )
    assert "host samples have no tag 'system'" in error(
        tags={"system": "windows"}, when=[{"field": "cpu_percent", "op": ">", "value": 90}]
    )
    assert "uptime_s is a field: use when" in error(
        tags={"uptime_s": "1"}, when=[{"field": "cpu_percent", "op": ">", "value": 90}]
    )
    assert "verdict is one of ['protected'" in error(
        check="antivirus", when=[{"field": "verdict", "op": "==", "value": "protectd"}]
    )
    assert "tags.method: one of ['icmp', 'tcp', 'http'], not 'ping'" in error(
        check="link", tags={"method": "ping"}, when=[{"field": "up", "op": "==", "value": 0}]
    )


def test_the_readme_tables_are_the_catalogue() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    assert block.strip() == catalogue.markdown().strip(), (
        "README.md is stale: run commune-agent fields --readme README.md"
    )
