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


def sample_line(envelope: Envelope, sample: Sample) -> str:
    # Check and item are keys of the contract ([a-z0-9_]): nothing to drop, only to escape.
    measurement_text = measurement(sample.check, sample.item).translate(_MEASUREMENT)
    tags = {
        **sample.tags,
        "province": envelope.province,
        "commune": envelope.commune,
        "agent": envelope.agent,
        "name": sample.name,
        "target": sample.target,
    }
    tag_text = ""
    for key, value in sorted(tags.items()):
        escaped = _tag(value)
        if escaped:
            tag_text += f",{_tag(key)}={escaped}"
    fields = {
        **sample.fields,
        "success": 1.0 if sample.outcome == "ok" else 0.0,
        "outcome": sample.outcome,
    }
    field_text = ",".join(
        f"{_tag(key)}={text}"
        for key, value in fields.items()
        if (text := _field(value)) is not None
    )
    return f"{measurement_text}{tag_text} {field_text} {round(sample.ts * 1000)}"


def envelope_lines(envelope: Envelope) -> bytes:
    return "\n".join(sample_line(envelope, sample) for sample in envelope.samples).encode()
