"""Line protocol as the sink writes it: the same bytes as the plain definition of each
point (``reference_line``), whatever the text an agent sends, and no name the wire
contract allows needs escaping; a spooled payload read by the sink's own decoder gives
the same points as the contract's structs."""

from __future__ import annotations

import math
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from agent import wire
from agent.catalogue import measurement
from agent.wire import IDENT_PATTERN, KEY_PATTERN, Envelope, Sample
from collector.outputs.lineproto import envelope_lines
from collector.outputs.sink import Sink

T0 = 1_795_000_000.0
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})


def escaped(text: str) -> str:
    text = text.replace("\n", " ").replace("\r", " ")
    return re.sub(r"\\+(?=[,= ]|$)", "", text).translate(_KEY)


def field_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        return repr(number) if math.isfinite(number) else None
    assert isinstance(value, str)
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
    return f'"{text}"'


def reference_line(envelope: Envelope, sample: Sample) -> str:
    """A point as lineproto.py's docstring defines it, written the plain way."""
    tags = {
        **sample.tags,
        "province": envelope.province,
        "commune": envelope.commune,
        "agent": envelope.agent,
        "name": sample.name,
        "target": sample.target,
    }
    tag_text = "".join(f",{escaped(k)}={escaped(v)}" for k, v in sorted(tags.items()) if escaped(v))
    fields = {**sample.fields, "success": 1.0 if sample.outcome == "ok" else 0.0,
              "outcome": sample.outcome}  # fmt: skip
    field_list = ",".join(
        f"{escaped(k)}={t}" for k, v in fields.items() if (t := field_text(v)) is not None
    )
    name = measurement(sample.check, sample.item).replace(",", "\\,").replace(" ", "\\ ")
    return f"{name}{tag_text} {field_list} {round(sample.ts * 1000)}"


keys = st.from_regex(KEY_PATTERN, fullmatch=True)
idents = st.from_regex(IDENT_PATTERN, fullmatch=True)
# "%": the series' memory formats the identity into a template (lineproto._head).
hostile = st.text(st.sampled_from([*'ab ,="\\\n\r\t%', "é", "Đ"]), max_size=12)
values = st.one_of(
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile,
)


def sample_strategy(values: st.SearchStrategy[object]) -> st.SearchStrategy[Sample]:
    return st.builds(
        Sample,
        ts=st.floats(T0, T0 + 86400),
        check=st.sampled_from(["host", "link", "snmp", "antivirus", "polycom"]),
        name=hostile,
        outcome=st.sampled_from(["ok", "error", "timeout"]),
        item=st.sampled_from(["", "disk", "interface"]),
        target=hostile,
        fields=st.dictionaries(
            st.one_of(keys, st.sampled_from(["success", "outcome"])), values, max_size=6
        ),
        tags=st.dictionaries(
            st.one_of(keys, st.sampled_from(["agent", "name", "province"])), hostile, max_size=4
        ),
    )


samples = sample_strategy(values)
#: What the wire contract admits (and so what the collector spools): finite numbers.
admitted_values = st.one_of(
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile,
)


@settings(max_examples=400, deadline=None)
@given(idents, idents, idents, st.lists(samples, min_size=1, max_size=4))
def test_each_point_is_its_plain_definition(
    province: str, commune: str, agent: str, taken: list[Sample]
) -> None:
    envelope = Envelope(
        v=1, agent=agent, province=province, commune=commune, seq=1, ts=T0, samples=taken
    )
    expected = "\n".join(reference_line(envelope, s) for s in taken).encode()
    assert envelope_lines(envelope) == expected


@given(st.one_of(keys, idents))
def test_no_name_the_contract_allows_needs_escaping(name: str) -> None:
    assert escaped(name) == name


@settings(max_examples=300, deadline=None)
@given(idents, idents, idents, st.lists(sample_strategy(admitted_values), min_size=1, max_size=4))
def test_the_sink_reads_a_spooled_payload_as_the_contract_does(
    province: str, commune: str, agent: str, taken: list[Sample]
) -> None:
    """The sink decodes spooled payloads without validating them again (spooled.py):
    whatever the contract admits gives the same points as its own structs do."""
    envelope = Envelope(
        v=1, agent=agent, province=province, commune=commune, seq=1, ts=T0, samples=taken
    )
    payload = wire.encode(envelope)
    assert Sink.convert(payload) == envelope_lines(wire.decode_envelope(payload))
