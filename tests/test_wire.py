"""The wire contract: what agents publish and what a collector accepts."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from agent import catalogue, wire
from agent.wire import Envelope, Sample, Status, TopicIdentity, WireError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "agent" / "schema"
IDENTITY = TopicIdentity("dong-nai", "la-nga", "pc-01", "data")


def envelope(**overrides: object) -> Envelope:
    values: dict[str, object] = {
        "v": 1,
        "agent": "pc-01",
        "province": "dong-nai",
        "commune": "la-nga",
        "seq": 7,
        "ts": 1_795_000_000.5,
        "samples": [
            Sample(
                ts=1_795_000_000.0,
                check="link",
                name="tslcd",
                outcome="down",
                target="10.0.0.1",
                fields={"up": 0, "loss_percent": 100.0},
                tags={"network": "tslcd"},
                error="timeout",
            )
        ],
    }
    values.update(overrides)
    return Envelope(**values)  # type: ignore[arg-type]


def test_round_trip_keeps_every_value() -> None:
    original = envelope()
    decoded = wire.decode_envelope(wire.encode(original), IDENTITY)
    assert decoded == original
    assert decoded.samples[0].fields == {"up": 0, "loss_percent": 100.0}


def test_committed_json_schemas_match_the_code() -> None:
    documents = {**wire.json_schemas(), "fields.json": catalogue.document()}
    for name, document in documents.items():
        committed = json.loads((SCHEMA_DIR / name).read_text())
        assert committed == document, (
            f"agent/schema/{name} is stale: run commune-agent schema -o agent/schema"
        )


def test_topics_round_trip() -> None:
    name = wire.topic("commune", "dong-nai", "la-nga", "pc-01", "data")
    assert name == "commune/dong-nai/la-nga/pc-01/data"
    assert wire.parse_topic("commune", name) == IDENTITY


@pytest.mark.parametrize(
    "name",
    [
        "other/dong-nai/la-nga/pc-01/data",
        "commune/dong-nai/la-nga/data",
        "commune/a/b/c/d/data",
        "commune/dong-nai/la-nga/pc-01/cmd",
    ],
)
def test_bad_topics_are_refused(name: str) -> None:
    with pytest.raises(WireError) as caught:
        wire.parse_topic("commune", name)
    assert caught.value.reason == "bad_topic"


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b"not json", "not_json", "JSON"),
        (b'{"v":1}', "invalid", "agent"),
        (wire.encode(envelope(v=2)), "schema_version", "v=2"),
        (wire.encode(envelope(agent="pc-02")), "identity_mismatch", "pc-02"),
        (wire.encode(envelope(seq=-1)), "invalid", "seq"),
        (b"x" * (wire.MAX_ENVELOPE_BYTES + 1), "too_large", "bytes"),
        (json.dumps({**msgspec.to_builtins(envelope()), "extra": 1}).encode(), "invalid", "extra"),
        (
            json.dumps({**msgspec.to_builtins(envelope()), "agent": "pc/01/+"}).encode(),
            "invalid",
            "agent",
        ),
        (
            json.dumps(
                {
                    **msgspec.to_builtins(envelope()),
                    "samples": [{"ts": 1, "check": "x", "name": "n", "outcome": "exploded"}],
                }
            ).encode(),
            "invalid",
            "outcome",
        ),
    ],
)
def test_bad_payloads_name_what_is_wrong(payload: bytes, reason: str, detail: str) -> None:
    with pytest.raises(WireError) as caught:
        wire.decode_envelope(payload, IDENTITY)
    assert caught.value.reason == reason
    assert detail in caught.value.detail


def test_too_many_samples_are_refused() -> None:
    sample = Sample(ts=1.0, check="host", name="h", outcome="ok")
    payload = wire.encode(envelope(samples=[sample] * (wire.MAX_SAMPLES + 1)))
    assert len(payload) < wire.MAX_ENVELOPE_BYTES
    with pytest.raises(WireError) as caught:
        wire.decode_envelope(payload)
    assert caught.value.reason == "invalid"
    assert "length" in caught.value.detail


def test_status_round_trip_and_identity() -> None:
    status = Status(
        v=1,
        state="online",
        agent="pc-01",
        province="dong-nai",
        commune="la-nga",
        ts=1.0,
        version="0.1.0",
        checks=["host:host"],
    )
    identity = TopicIdentity("dong-nai", "la-nga", "pc-01", "status")
    assert wire.decode_status(wire.encode(status), identity) == status
    with pytest.raises(WireError, match="identity_mismatch"):
        wire.decode_status(
            wire.encode(status), TopicIdentity("dong-nai", "la-nga", "pc-09", "status")
        )


def test_clean_fields_drops_unknown_and_non_finite_values() -> None:
    assert wire.clean_fields(
        {"a": None, "b": float("nan"), "c": float("inf"), "d": 1.5, "e": False}
    ) == {
        "d": 1.5,
        "e": False,
    }


def test_a_huge_run_is_split_into_envelopes_the_collector_accepts() -> None:
    """A switch with 3,000 interfaces: several envelopes, each within every bound."""
    samples = [
        Sample(
            ts=1.0,
            check="snmp",
            name="core",
            outcome="ok",
            item="interface",
            target=f"GigabitEthernet1/0/{i}",
            fields={
                "oper_up": True,
                "in_bps": 1e6 * i,
                "alias": "uplink to the province data centre " * 3,
            },
            tags={"ifindex": str(i)},
        )
        for i in range(3000)
    ]
    parts = wire.split_samples(samples)
    assert len(parts) > 1
    assert [s for part in parts for s in part] == samples
    for seq, part in enumerate(parts):
        payload = wire.encode(envelope(seq=seq, samples=part))
        assert len(payload) <= wire.MAX_ENVELOPE_BYTES
        assert wire.decode_envelope(payload, IDENTITY).samples == part


def test_small_and_empty_runs_stay_whole() -> None:
    sample = envelope().samples[0]
    assert wire.split_samples([sample] * 3) == [[sample] * 3]
    assert wire.split_samples([]) == [[]]


def test_long_text_is_clipped_to_the_contract() -> None:
    assert wire.clean_fields({"sys_descr": "x" * 5000}) == {"sys_descr": "x" * wire.MAX_TEXT}


@pytest.mark.parametrize("name", ["la-nga\n", "la-nga\n\n", "\nla-nga", "la nga", "la-nga/x"])
def test_an_identity_must_be_the_whole_string(name: str) -> None:
    payload = wire.encode(
        wire.Envelope(
            v=1, agent="pc-01", province="dong-nai", commune="la-nga", seq=1, ts=1e9, samples=[]
        )
    ).replace(b'"la-nga"', json.dumps(name).encode())
    with pytest.raises(wire.WireError) as caught:
        wire.decode_envelope(payload)
    assert caught.value.reason == "invalid"


def test_the_agent_never_sends_what_the_collector_refuses() -> None:
    # A 64-bit counter past 2^53 travels as a float; non-finite values are left out.
    cleaned = wire.clean_fields({"octets": 2**64 - 1, "nan": float("nan"), "ok": 3, "flag": True})
    assert cleaned == {"octets": float(2**64 - 1), "ok": 3, "flag": True}
    sample = wire.Sample(ts=1e9, check="snmp", name="r", outcome="ok", fields=cleaned)
    envelope = wire.Envelope(
        v=1, agent="a", province="p", commune="c", seq=0, ts=1e9, samples=[sample]
    )
    assert wire.decode_envelope(wire.encode(envelope)) == envelope
