"""Bad input, fuzzed (hypothesis): any payload or config yields a valid result or a clean,
named error — never another exception. Valid envelopes survive the round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import wire
from agent.config import parse_config
from agent.configtypes import ConfigError, read_toml
from collector.alerts.rules import parse_rules
from collector.config import parse_collector_config
from collector.ingest.ingestor import Ingestor, Message
from collector.state.inventory import parse_inventory
from collector.state.store import StateStore

IDENTITY = wire.TopicIdentity("dong-nai", "la-nga", "pc-01", "data")
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
keys = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
idents = st.from_regex(r"[a-z0-9][a-z0-9-]{0,15}", fullmatch=True)
field_values = (
    st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
samples = st.builds(
    wire.Sample,
    ts=st.floats(min_value=0, max_value=4e9),
    check=keys,
    name=st.text(max_size=30),
    outcome=st.sampled_from(wire.OUTCOMES),
    item=st.from_regex(r"[a-z0-9_]{0,10}", fullmatch=True),
    target=st.text(max_size=40),
    fields=st.dictionaries(keys, field_values, max_size=8),
    tags=st.dictionaries(keys, st.text(max_size=20), max_size=4),
    error=st.text(max_size=40),
)


def envelope_like(value: Any) -> Any:
    """Mostly-right envelopes with one part wrong: the cases that reach deep into decoding."""
    base: dict[str, Any] = {
        "v": 1,
        "agent": "pc-01",
        "province": "dong-nai",
        "commune": "la-nga",
        "seq": 1,
        "ts": 1.0,
        "samples": [],
    }
    return base, value


@FAST
@given(st.binary(max_size=2000))
def test_any_bytes_decode_or_fail_by_name(payload: bytes) -> None:
    for decode in (wire.decode_envelope, wire.decode_status):
        try:
            decode(payload, IDENTITY)
        except wire.WireError as exc:
            assert exc.reason in {
                "not_json",
                "invalid",
                "too_large",
                "schema_version",
                "identity_mismatch",
            }


@FAST
@given(st.sampled_from(["v", "agent", "seq", "ts", "samples", "extra"]), json_values)
def test_an_envelope_with_one_bad_part_fails_by_name(key: str, value: Any) -> None:
    base, _ = envelope_like(value)
    base[key] = value
    try:
        decoded = wire.decode_envelope(json.dumps(base).encode(), IDENTITY)
    except wire.WireError as exc:
        assert exc.reason in {"invalid", "schema_version", "identity_mismatch", "not_json"}
    else:
        assert decoded.agent == "pc-01"


@FAST
@given(st.lists(samples, max_size=5), st.integers(min_value=0, max_value=2**62))
def test_valid_envelopes_survive_the_round_trip(sample_list: list[wire.Sample], seq: int) -> None:
    envelope = wire.Envelope(
        v=1,
        agent="pc-01",
        province="dong-nai",
        commune="la-nga",
        seq=seq,
        ts=1.0,
        samples=sample_list,
    )
    decoded = wire.decode_envelope(wire.encode(envelope), IDENTITY)
    assert decoded == envelope


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["data", "status", "junk"]), st.binary(max_size=300)), max_size=8
    )
)
def test_the_ingestor_counts_every_bad_message_and_never_raises(
    tmp_path: Path, messages: list[tuple[str, bytes]]
) -> None:
    store = StateStore(tmp_path / f"fuzz-{len(messages)}-{hash(tuple(messages)) & 0xFFFF}.sqlite")
    acked: list[int] = []
    ingestor = Ingestor(store, "commune")
    batch = [
        Message(f"commune/dong-nai/la-nga/pc-01/{kind}", payload, 1.0, lambda i=i: acked.append(i))
        for i, (kind, payload) in enumerate(messages)
    ]
    ingestor.process(batch)
    assert sorted(acked) == list(range(len(messages)))  # everything acknowledged
    stats = ingestor.stats
    assert stats.applied_envelopes + stats.applied_statuses + sum(stats.rejected.values()) == len(
        messages
    )
    store.close()


config_like = st.dictionaries(
    st.sampled_from(
        [
            "agent",
            "mqtt",
            "outbox",
            "checks",
            "collector",
            "store",
            "sink",
            "api",
            "alerts",
            "console",
            "rules",
            "province",
            "communes",
            "junk",
        ]
    ),
    json_values,
    max_size=5,
)


def _clean(value: Any) -> Any:
    """TOML has no null and no NaN: what a TOML file can hold."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value if v is not None]
    if isinstance(value, float) and not math.isfinite(value):
        return 0.0
    return value


@FAST
@given(config_like)
def test_any_config_is_valid_or_a_named_config_error(data: dict[str, Any]) -> None:
    data = _clean(data)
    for parse in (parse_config, parse_collector_config, parse_rules, parse_inventory):
        try:
            parse(data, "fuzz.toml")  # type: ignore[operator]
        except ConfigError as exc:
            assert str(exc).startswith("fuzz.toml")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=500))
def test_any_file_reads_as_toml_or_a_named_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_bytes(content)
    try:
        read_toml(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
