"""The province's communes and what is expected in each, from a TOML file.

With an inventory, a commune with nothing reporting shows as "no data" instead
of being absent, and percentages use the expected counts as denominators
("38 of 40 PCs protected", not "38 of the 38 that happen to report").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import msgspec

from agent.configtypes import ConfigError, convert_strict, read_toml
from agent.wire import Ident

Count = Annotated[int, msgspec.Meta(ge=0, le=100_000)]

#: Vietnam's administrative unit codes (mã đơn vị hành chính) are five digits.
_CODE = re.compile(r"^[0-9]{5}$")


class Commune(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    slug: Ident
    """The commune level of the topic tree: <root>/<province>/<slug>/<agent>/..."""
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    """Official name with diacritics and its kind, e.g. "Xã La Ngà", "Phường Biên Hòa"."""
    code: str = ""
    """Official administrative unit code (5 digits); empty until the province fills it in."""
    pcs: Count | None = None
    """PCs expected to run an agent; None: unknown, percentages use those reporting."""
    routers: Count | None = None
    polycoms: Count | None = None


class Inventory(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    province: Ident
    name: str = ""
    communes: list[Commune] = []

    def commune(self, slug: str) -> Commune | None:
        return next((c for c in self.communes if c.slug == slug), None)


EMPTY = Inventory(province="")


def parse_inventory(data: dict[str, Any], source: str) -> Inventory:
    inventory = convert_strict(data, Inventory, source)
    seen: set[str] = set()
    for index, commune in enumerate(inventory.communes):
        where = f"{source}: communes[{index}]"
        if commune.slug in seen:
            raise ConfigError(f"{where}.slug: {commune.slug!r} is listed twice")
        seen.add(commune.slug)
        if commune.code and not _CODE.match(commune.code):
            raise ConfigError(f"{where}.code: expected 5 digits, got {commune.code!r}")
    return inventory


def load_inventory(path: str | Path) -> Inventory:
    return parse_inventory(read_toml(path), str(path))
