"""Envelopes as InfluxDB line protocol: one measurement per check (and sub-series).

- measurement: the check kind, or ``<kind>_<item>`` for a sub-series
  (``host_disk``, ``snmp_interface``, ``antivirus_product``, ``agent_check``), as
  the wire contract's catalogue names them (``agent/catalogue.py``, which also
  gives each field's type: the ingestor drops a catalogued field of another type,
  which the server would refuse with the whole point);
- tags: province, commune, agent, name (the check instance), target, and the
  sample's own tags (network, method, ifindex, source, ...). Line protocol cannot
  carry a backslash before a separator or at the end (servers read ``\\\\`` and
  ``\\,`` differently): those backslashes are dropped (``C:\\`` -> ``C:``); a line
  break becomes a space;
- fields: the sample's fields, every number written as a float so a field never
  changes type between points (InfluxDB refuses that), booleans as booleans,
  text as strings; plus ``success`` (1 when the outcome is ok) and ``outcome``;
- identity is written last: a sample's own tags or fields named like the
  identity tags or the derived fields cannot replace them (the collector also
  refuses such samples: ``reserved_name``);
- timestamp: the sample's collection time, in milliseconds.

InfluxDB keys a point by measurement + tags + timestamp (a point written again
overwrites itself); VictoriaMetrics keeps both copies unless deduplication is on, so
the store spools an envelope once however often it is delivered (state/seqranges.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from agent.catalogue import measurement
from agent.wire import OUTCOMES, FieldValue

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " "})
#: Backslashes line protocol cannot carry: before a separator (it would escape it), or last.
_UNCARRIED = re.compile(r"\\+(?=[,= ]|$)")


class PointSample(Protocol):
    """A sample as the wire contract's decoder or the sink's (``spooled.py``) gives it."""

    @property
    def ts(self) -> float: ...
    @property
    def check(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def item(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def fields(self) -> Mapping[str, FieldValue]: ...
    @property
    def tags(self) -> Mapping[str, str]: ...


class PointEnvelope(Protocol):
    @property
    def province(self) -> str: ...
    @property
    def commune(self) -> str: ...
    @property
    def agent(self) -> str: ...
    @property
    def samples(self) -> Sequence[PointSample]: ...


_TAGS: dict[str, str] = {}
_TAGS_HELD = 65536


def _tag(text: str) -> str:
    # Remembered too: should the country's series outgrow their memory (_HEADS), a
    # series written again costs its sorting, not its escaping (a plain dict: an
    # lru_cache's bookkeeping cost more than the escaping).
    escaped = _TAGS.get(text)
    if escaped is None:
        escaped = _UNCARRIED.sub("", text.translate(_LINE_BREAKS)).translate(_KEY)
        if len(_TAGS) >= _TAGS_HELD:
            _TAGS.clear()
        _TAGS[text] = escaped
    return escaped


def _field(value: FieldValue) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        return repr(number) if math.isfinite(number) else None
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
    return f'"{text}"'


_SeriesKey = tuple[str, str, str, str, tuple[tuple[str, str], ...]]
_HEADS: dict[_SeriesKey, str] = {}
_HEADS_HELD = 65536


def _head(check: str, item: str, name: str, target: str, own: tuple[tuple[str, str], ...]) -> str:
    """A series' measurement and tags, its agent, commune and province left as ``%s``
    (in that order: line protocol's sorted tags keep it whatever the sample's own)."""
    tags = {key: _tag(value).replace("%", "%%") for key, value in own}
    tags |= {"name": _tag(name).replace("%", "%%"), "target": _tag(target).replace("%", "%%")}
    tags |= {"agent": "%s", "commune": "%s", "province": "%s"}
    text = measurement(check, item).translate(_MEASUREMENT).replace("%", "%%")
    for key in sorted(tags):
        if tags[key]:
            text += f",{key.replace('%', '%%')}={tags[key]}"
    return text


def _series(sample: PointSample) -> str:
    # Remembered by everything but the place and the agent: the same checks, targets
    # and tags recur in every commune, so the memory stays small for the whole country,
    # and a point costs its fields (escaping and sorting tags was most of the sink's time).
    own = sample.tags
    key = (sample.check, sample.item, sample.name, sample.target, tuple(own.items()))
    head = _HEADS.get(key)
    if head is None:
        head = _head(*key)
        if len(_HEADS) >= _HEADS_HELD:
            _HEADS.clear()
        _HEADS[key] = head
    return head


#: The fields every point ends with, by outcome (the contract's outcomes need no escaping).
_DERIVED = {
    outcome: f'success={"1.0" if outcome == "ok" else "0.0"},outcome="{outcome}" '
    for outcome in OUTCOMES
}


def sample_line(envelope: PointEnvelope, sample: PointSample) -> str:
    return _line((envelope.agent, envelope.commune, envelope.province), sample)


def _line(identity: tuple[str, str, str], sample: PointSample) -> str:
    # Every spooled sample passes here (the sink's main cost). The identity and the
    # keys of tags and fields are names the wire contract allows only in
    # [A-Za-z0-9._-]: nothing to escape.
    head = _series(sample) % identity
    fields = sample.fields
    if "success" in fields or "outcome" in fields:  # refused by the collector: never here
        return _line_with_reserved_fields(head, sample)
    field_text = ""
    for key, value in fields.items():
        if type(value) is float:
            if value - value == 0.0:  # finite (inf - inf and nan - nan are nan), no call
                field_text += f"{key}={value!r},"
        elif type(value) is int:
            field_text += f"{key}={float(value)!r},"
        elif type(value) is bool:
            field_text += f"{key}={'true' if value else 'false'},"
        elif (text := _field(value)) is not None:
            field_text += f"{key}={text},"
    derived = _DERIVED.get(sample.outcome)
    if derived is None:
        ok = "1.0" if sample.outcome == "ok" else "0.0"
        derived = f"success={ok},outcome={_field(sample.outcome)} "
    return f"{head} {field_text}{derived}{round(sample.ts * 1000)}"


def _line_with_reserved_fields(head: str, sample: PointSample) -> str:
    """A sample's own ``success`` or ``outcome`` keeps its place, not its value."""
    fields = {
        **sample.fields,
        "success": 1.0 if sample.outcome == "ok" else 0.0,
        "outcome": sample.outcome,
    }
    field_text = ",".join(
        f"{key}={text}" for key, value in fields.items() if (text := _field(value)) is not None
    )
    return f"{head} {field_text} {round(sample.ts * 1000)}"


def envelope_lines(envelope: PointEnvelope) -> bytes:
    identity = (envelope.agent, envelope.commune, envelope.province)
    return "\n".join([_line(identity, sample) for sample in envelope.samples]).encode()
