"""Decoding of Security Center's undocumented ``AntiVirusProduct.productState``.

Community-established layout (Idera PowerTips 2020, neophob.com 2010), see
``domain.md``: provider bits ``(s >> 16) & 0xFF``; state ``s & 0xF000``
(0 off, 1 on, 2 snoozed, 3 expired); owner ``s & 0x0F00`` (0 third party,
1 Microsoft); signatures ``s & 0x00F0`` (0 up to date, 1 out of date). Any
value outside that table decodes to ``unknown``: a guess would be worse.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.antivirus.model import ProductStateName

_STATES: dict[int, ProductStateName] = {
    0x0000: "off",
    0x1000: "on",
    0x2000: "snoozed",
    0x3000: "expired",
}
_OWNERS = {0x000: "third_party", 0x100: "microsoft"}
_SIGNATURES = {0x00: True, 0x10: False}


@dataclass(frozen=True)
class DecodedState:
    """What Security Center's productState number says about a product."""

    state: ProductStateName
    up_to_date: bool | None
    owner: str
    providers: int


UNKNOWN = DecodedState("unknown", None, "", 0)


def decode_product_state(value: int) -> DecodedState:
    if not 0 < value <= 0xFFFFFF or value & 0x000F:
        return UNKNOWN
    providers = (value >> 16) & 0xFF
    state = _STATES.get(value & 0xF000)
    owner = _OWNERS.get(value & 0x0F00)
    signatures = _SIGNATURES.get(value & 0x00F0)
    if state is None or owner is None or signatures is None or providers == 0:
        return UNKNOWN
    return DecodedState(state, signatures, owner, providers)
