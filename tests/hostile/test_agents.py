"""One enrolled PC, tried as an attacker would: each message below once stopped, poisoned
or impersonated the province. Each must now be refused alone (by reason, counted), and
the good agent's data behind it committed within seconds, every view answering 200.

The collector, Mosquitto and VictoriaMetrics are real processes (``province.py``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from agent.wire import Sample, Status, encode
from tests.hostile.province import (
    BAD,
    COMMUNE,
    GOOD,
    PROVINCE,
    Province,
    as_json,
    envelope,
    link,
    topic,
    wait_for,
)


def now() -> float:
    return time.time()


def with_field(**fields: object) -> bytes:
    """A link envelope whose fields are set as raw JSON (numbers no encoder would write)."""
    message = as_json(envelope(BAD, 1, [link(now())]))
    message["samples"][0]["fields"].update(fields)
    return json.dumps(message).encode()


def infinite(payload: bytes) -> bytes:
    """The value 1.5 written 1e999: JSON that parses to infinity."""
    return payload.replace(b": 1.5", b": 1e999")


def envelope_with(**changes: Any) -> bytes:
    message = as_json(envelope(BAD, 1, [link(now())]))
    message.update(changes)
    return json.dumps(message).encode()


def sample_with(**changes: Any) -> bytes:
    message = as_json(envelope(BAD, 1, [link(now())]))
    message["samples"][0].update(changes)
    return json.dumps(message).encode()


@dataclass(frozen=True)
class Case:
    name: str
    payload: Callable[[], bytes]
    reason: str
    topic: str = topic(BAD)


HUGE = int("9" * 400)
CASES = [
    # Once: SQLite OverflowError, the ingest thread dead for good, redelivered at every start.
    Case("seq 2^63", lambda: envelope_with(seq=2**63), "invalid"),
    Case("negative seq", lambda: envelope_with(seq=-1), "invalid"),
    # Once: the same in the store, and /api/v1/province, the console... answering 500.
    Case("rtt of 400 digits", lambda: with_field(rtt_ms=HUGE), "invalid"),
    Case("loss of 400 digits", lambda: with_field(loss_percent=HUGE), "invalid"),
    Case("an integer past 2^53", lambda: with_field(uptime_s=2**53 + 1), "invalid"),
    Case("a float past the largest", lambda: infinite(with_field(rtt_ms=1.5)), "invalid"),
    Case("an envelope time of infinity", lambda: infinite(envelope_with(ts=1.5)), "invalid"),
    Case("an envelope time far in the future", lambda: envelope_with(ts=2**40), "invalid"),
    # Once: "$" in the identity pattern let a trailing newline through. (Mosquitto refuses
    # control characters in topics; a broker that does not would deliver it on its topic.)
    Case("a newline after the commune", lambda: envelope_with(commune=COMMUNE + "\n"), "invalid"),
    Case("a sample time of 0", lambda: sample_with(ts=0), "clock_behind"),
    Case("a text field of 5,000 characters", lambda: with_field(note="x" * 5000), "invalid"),
    Case("a field name with a newline", lambda: with_field(**{"up\n": 1}), "invalid"),
    Case("100 tags", lambda: sample_with(tags={f"t{n}": "x" for n in range(100)}), "invalid"),
    Case("not JSON", lambda: b"\xff\xfe{", "not_json"),
    Case("nested 250,000 deep", lambda: b"{\"v\":1,\"samples\":" + b"[" * 250_000, "invalid"),
    Case("a payload over the contract", lambda: envelope_with(pad="x" * 300_000), "too_large"),
    Case("an unknown schema version", lambda: envelope_with(v=2**31), "schema_version"),
    Case(
        "a status with 10,000 checks",
        lambda: encode(
            Status(
                v=1, state="online", agent=BAD, province=PROVINCE, commune=COMMUNE, ts=now()
            )
        ).replace(b"}", b',"checks":[' + b",".join([b'"c"'] * 10_000) + b"]}"),
        "invalid",
        topic(BAD, "status"),
    ),
    Case(
        "a status interval of 1e308",
        lambda: json.dumps(
            {"v": 1, "state": "online", "agent": BAD, "province": PROVINCE, "commune": COMMUNE,
             "ts": now(), "interval": 1e308}
        ).encode(),
        "invalid",
        topic(BAD, "status"),
    ),
    Case(
        "another agent's identity",
        lambda: encode(envelope(GOOD, 10**9, [link(now(), up=False)])),
        "identity_mismatch",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_bad_message_is_refused_alone_and_stops_nothing(province: Province, case: Case) -> None:
    before = province.metric("commune_collector_messages_rejected_total", reason=case.reason)
    province.publish(case.topic, case.payload())
    province.good_lands()
    wait_for(
        lambda: (
            province.metric("commune_collector_messages_rejected_total", reason=case.reason)
            > before
        ),
        10,
        f"no rejection counted as {case.reason}",
    )
    province.views_answer()


def test_a_message_over_the_brokers_bound_never_reaches_the_collector(
    province: Province,
) -> None:
    """Above 1 MiB the broker does not send it (MQTT 5 Maximum Packet Size): the collector
    never buffers it, and the messages behind it come through."""
    received = province.metric("commune_collector_messages_received_total")
    province.publish(topic(BAD), b"{" + b" " * (2 * 1024 * 1024) + b"}")
    province.good_lands()
    assert province.metric("commune_collector_messages_received_total") - received <= 2
    province.views_answer()


RESERVED = [
    ("tags", {"province": "ha-noi", "commune": "hoan-kiem", "network": "tslcd"}),
    ("tags", {"agent": "someone-else"}),
    ("tags", {"target": "10.0.0.99"}),
    ("fields", {"up": 1, "success": 1}),
    ("fields", {"up": 0, "outcome": "ok"}),
]


@pytest.mark.parametrize(("part", "values"), RESERVED, ids=[str(v) for _, v in RESERVED])
def test_no_sample_can_speak_for_another_place(
    province: Province, part: str, values: dict[str, object]
) -> None:
    metric = "commune_collector_samples_refused_total"
    before = province.metric(metric, reason="reserved_name")
    message = as_json(envelope(BAD, int(now() * 1000), [link(now()), link(now())]))
    message["samples"][1]["name"] = "impostor"
    message["samples"][1][part] = values
    province.publish(topic(BAD), json.dumps(message).encode())
    province.good_lands()
    wait_for(lambda: province.metric(metric, reason="reserved_name") > before, 10, "not refused")
    status, agent = province.http.get(
        f"/api/v1/agents/{PROVINCE}/{COMMUNE}/{BAD}", token="technician-token-hostile-0123"
    )
    assert status == 200
    names = {s["name"] for s in agent["samples"]}
    assert "tslcd" in names and "impostor" not in names  # the rest of the envelope applied
    # Nothing in the time series speaks for Hà Nội.
    wait_for(lambda: bool(province.vm.export('{__name__=~"link_.*",agent="bad-pc"}')), 20, "sink")
    everything = province.vm.export('{__name__=~"link_.*"}')
    assert all(s["metric"].get("province") == PROVINCE for s in everything)  # type: ignore[union-attr]
    assert not [s for s in everything if s["metric"].get("name") == "impostor"]  # type: ignore[union-attr]
    province.views_answer()


def test_a_field_of_the_wrong_type_is_dropped_alone(province: Province) -> None:
    """``up`` as text would read as up in the history (any non-empty text is true) and
    clash with the number in the time series, losing the whole point: only it goes."""
    metric = "commune_collector_fields_dropped_total"
    before = province.metric(metric, reason="field_type")
    message = as_json(envelope(BAD, int(now() * 1000) + 7, [link(now(), up=False)]))
    message["samples"][0]["name"] = "mistyped"
    message["samples"][0]["fields"] |= {"up": "yes", "rtt_ms": 7.25}
    province.publish(topic(BAD), json.dumps(message).encode())
    province.good_lands()
    wait_for(lambda: province.metric(metric, reason="field_type") > before, 10, "not dropped")
    _, agent = province.http.get(
        f"/api/v1/agents/{PROVINCE}/{COMMUNE}/{BAD}", token="technician-token-hostile-0123"
    )
    [sample] = [s for s in agent["samples"] if s["name"] == "mistyped"]
    assert "up" not in sample["fields"] and sample["fields"]["rtt_ms"] == 7.25
    wait_for(
        lambda: bool(province.vm.export('{__name__="link_rtt_ms",name="mistyped"}')), 20, "sink"
    )
    assert not province.vm.export('{__name__="link_up",name="mistyped"}')
    province.views_answer()


def interfaces(first: int, count: int) -> list[Sample]:
    return [
        Sample(
            ts=now(),
            check="snmp",
            name="switch",
            outcome="ok",
            item="interface",
            target=f"Gi0/{n}",
            fields={"oper_up": True, "admin_status": 1},
        )
        for n in range(first, first + count)
    ]


def test_one_agent_cannot_make_the_collector_hold_without_bound(province: Province) -> None:
    """60 envelopes of 700 new interfaces each once made 42,000 subjects and slowed every
    province view; now the agent is held at its bound (300 here) and an alert names it."""
    metric = "commune_collector_samples_refused_total"
    before = province.metric(metric, reason="series_limit")
    for seq in range(60):
        province.publish(topic(BAD), encode(envelope(BAD, 10**6 + seq, interfaces(seq * 700, 700))))
    province.good_lands(30)
    wait_for(lambda: province.metric(metric, reason="series_limit") > before, 30, "not refused")
    held = sqlite3.connect(f"file:{province.collector.state}?mode=ro", uri=True)
    try:
        (series,) = held.execute(
            "SELECT COUNT(*) FROM latest WHERE agent_key = ?", (f"{PROVINCE}/{COMMUNE}/{BAD}",)
        ).fetchone()
    finally:
        held.close()
    assert series <= 300
    # Subjects with history (another agent: this one is at its bound of series already):
    # link probes of 40 targets, 20 allowed.
    probes = [
        Sample(
            ts=now(), check="link", name=f"probe-{n}", outcome="ok", target=f"10.9.0.{n}",
            fields={"up": 1}, tags={"network": "lan"},
        )
        for n in range(40)
    ]  # fmt: skip
    before = province.metric(metric, reason="subject_limit")
    province.publish(topic(f"{BAD}-2"), encode(envelope(f"{BAD}-2", 1, probes)))
    province.good_lands()
    wait_for(lambda: province.metric(metric, reason="subject_limit") > before, 10, "subjects")

    def alert_names_the_agent() -> bool:
        _, alerts = province.http.get(
            "/api/v1/alerts?state=firing&rule=agent_over_limit",
            token="technician-token-hostile-0123",
        )
        return any(a["agent"] == BAD for a in alerts)

    wait_for(alert_names_the_agent, 30, "no agent_over_limit alert for the agent")
    province.views_answer()


def test_a_spooled_row_the_sink_cannot_convert_is_dropped_alone(province: Province) -> None:
    """A row an older release spooled (a number no longer accepted) cannot be converted:
    the sink drops it alone, counted, and keeps writing the rest. (A row of broken line
    protocol is VictoriaMetrics' to judge: it skips such lines and answers 204.)"""
    rejected = province.metric("commune_collector_sink_rejected_rows_total")
    old = as_json(envelope(GOOD, 1, [link(now())]))
    spooled = json.dumps(old).replace("4.5", "9" * 400).encode()
    db = sqlite3.connect(province.collector.state, timeout=10)
    try:
        with db:
            db.execute("INSERT INTO spool (lines) VALUES (?)", (spooled,))
            db.execute("INSERT INTO spool (lines) VALUES (?)", (b"link,bad tag only",))
    finally:
        db.close()
    seq = province.good_lands()
    wait_for(
        lambda: province.metric("commune_collector_sink_rejected_rows_total") > rejected,
        30,
        "the sink did not drop the row",
    )
    # And the good agent's latest point reached the time-series server after them.
    wait_for(
        lambda: any(
            s["timestamps"] for s in province.vm.export('{__name__="link_up",agent="good-pc"}')
        ),
        20,
        "the good agent's points did not reach VictoriaMetrics",
    )
    assert seq in province.good_sent
    province.views_answer()


def test_nothing_the_good_agent_sent_was_lost(province: Province) -> None:
    """After every attack above: each of the good agent's envelopes is in the store and
    each of its points in VictoriaMetrics (one point per envelope, by its own time)."""
    province.good_lands()
    status, agent = province.http.get(
        f"/api/v1/agents/{PROVINCE}/{COMMUNE}/{GOOD}", token="technician-token-hostile-0123"
    )
    assert status == 200 and agent["last_seq"] == max(province.good_sent)

    def all_points() -> bool:
        series = province.vm.export('{__name__="link_up",agent="good-pc"}')
        return sum(len(s["timestamps"]) for s in series) >= len(province.good_sent)  # type: ignore[arg-type]

    wait_for(all_points, 30, "some of the good agent's points never reached the sink")
