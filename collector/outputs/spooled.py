"""Spooled envelopes as the sink reads them: plain structs, nothing validated again.

The collector spools only envelopes that passed the wire contract
(``agent.wire.decode_envelope``: names against their patterns, bounds, types), as
received or encoded again from the validated structs. Decoding them again with the
contract's structs tested all that a second time, in the sink: a fifth of its time.
Here the same JSON becomes structs of the same names and types with no pattern, bound
or ``__post_init__``, and what line protocol does not need (seq, the envelope's time,
a sample's error) is skipped. Every envelope the contract admits reads the same
(``tests/test_lineproto.py`` compares the points).

A payload that is not even that (not JSON, a field of another type) raises, and the
sink drops that row alone, as before.
"""

from __future__ import annotations

import msgspec

from agent.wire import SCHEMA_VERSION, WireError


# gc=False: these hold only strings, numbers and dicts of them, never a cycle, and
# thousands a second need not be tracked by the collector of cycles.
class SpooledSample(msgspec.Struct, frozen=True, gc=False):
    ts: float
    check: str
    name: str
    outcome: str
    item: str = ""
    target: str = ""
    # Numbers as floats, converted by the decoder: line protocol writes every number as
    # a float, and within the contract's ±2^53 an integer converts exactly.
    fields: dict[str, bool | float | str] = {}
    tags: dict[str, str] = {}


class SpooledEnvelope(msgspec.Struct, frozen=True, gc=False):
    v: int
    agent: str
    province: str
    commune: str
    samples: list[SpooledSample]


_decoder = msgspec.json.Decoder(SpooledEnvelope)


def decode_spooled(payload: bytes) -> SpooledEnvelope:
    """A spooled envelope; raises on a payload that is not one (msgspec's errors)."""
    envelope = _decoder.decode(payload)
    if envelope.v != SCHEMA_VERSION:
        raise WireError("schema_version", f"v={envelope.v}, this side speaks {SCHEMA_VERSION}")
    return envelope
