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

from agent.catalogue import measurement
from agent.wire import Envelope, FieldValue, Sample

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " "})
#: Backslashes line protocol cannot carry: before a separator (it would escape it), or last.
_UNCARRIED = re.compile(r"\\+(?=[,= ]|$)")


_TAGS: dict[str, str] = {}
_TAGS_HELD = 65536


def _tag(text: str) -> str:
    # Remembered: provinces, communes, agents, check names and keys repeat in every
    # point (a plain dict: an lru_cache's bookkeeping cost more than the escaping).
    escaped = _TAGS.get(text)
    if escaped is None:
        escaped = _UNCARRIED.sub("", text.translate(_LINE_BREAKS)).translate(_KEY)
        if len(_TAGS) >= _TAGS_HELD:
            _TAGS.clear()
        _TAGS[text] = escaped
    return escaped


def _field(value: FieldValue) -> str | None:
    kind = type(value)
    if kind is float or kind is int:  # the common case first: one test, not three
        number = float(value)
        return repr(number) if math.isfinite(number) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        return repr(number) if math.isfinite(number) else None
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
    return f'"{text}"'


_MEASUREMENTS: dict[tuple[str, str], str] = {}


def _measurement(check: str, item: str) -> str:
    # Check and item are keys of the contract ([a-z0-9_]): nothing to drop, only to escape.
    text = _MEASUREMENTS.get((check, item))
    if text is None:
        text = _MEASUREMENTS[(check, item)] = measurement(check, item).translate(_MEASUREMENT)
    return text


def sample_line(envelope: Envelope, sample: Sample) -> str:
    return _line(envelope.province, envelope.commune, envelope.agent, sample)


def _line(province: str, commune: str, agent: str, sample: Sample) -> str:
    # Every spooled sample passes here (the sink's main cost). Keys (of tags and fields)
    # and the identity are names the wire contract allows only in [A-Za-z0-9._-]: nothing
    # to escape; the name, target and tag values are free text.
    own = sample.tags
    if own:
        tags = {**own, "province": province, "commune": commune, "agent": agent,
                "name": sample.name, "target": sample.target}  # fmt: skip
        tag_text = ""
        for key in sorted(tags):
            escaped = _tag(tags[key])
            if escaped:
                tag_text += f",{key}={escaped}"
    else:  # in the sorted order: agent, commune, name, province, target
        name, target = _tag(sample.name), _tag(sample.target)
        tag_text = (
            f",agent={agent},commune={commune}{f',name={name}' if name else ''}"
            f",province={province}{f',target={target}' if target else ''}"
        )
    fields = sample.fields
    if "success" in fields or "outcome" in fields:  # refused by the collector: never here
        return _line_with_reserved_fields(tag_text, sample)
    field_text = ""
    for key, value in fields.items():
        kind = type(value)
        if kind is float or kind is int:
            number = float(value)
            if not math.isfinite(number):
                continue
            field_text += f"{key}={number!r},"
        elif (text := _field(value)) is not None:
            field_text += f"{key}={text},"
    ok = "1.0" if sample.outcome == "ok" else "0.0"
    return (
        f"{_measurement(sample.check, sample.item)}{tag_text} {field_text}success={ok},"
        f"outcome={_field(sample.outcome)} {round(sample.ts * 1000)}"
    )


def _line_with_reserved_fields(tag_text: str, sample: Sample) -> str:
    """A sample's own ``success`` or ``outcome`` keeps its place, not its value."""
    fields = {
        **sample.fields,
        "success": 1.0 if sample.outcome == "ok" else 0.0,
        "outcome": sample.outcome,
    }
    field_text = ",".join(
        f"{key}={text}" for key, value in fields.items() if (text := _field(value)) is not None
    )
    name = _measurement(sample.check, sample.item)
    return f"{name}{tag_text} {field_text} {round(sample.ts * 1000)}"


def envelope_lines(envelope: Envelope) -> bytes:
    province, commune, agent = envelope.province, envelope.commune, envelope.agent
    return "\n".join(_line(province, commune, agent, s) for s in envelope.samples).encode()
