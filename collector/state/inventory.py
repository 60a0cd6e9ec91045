"""The province's communes and what is expected in each, from a TOML file.

With an inventory, a commune with nothing reporting shows as "no data" instead
of being absent, and percentages use the expected counts as denominators
("38 of 40 PCs protected", not "38 of the 38 that happen to report").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import msgspec

from agent.configtypes import ConfigError, convert_strict, read_toml
from agent.wire import Ident
from collector.state import register

Count = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
Uplink = Annotated[str, msgspec.Meta(min_length=1, max_length=300, pattern=r"^[^\s]+$")]

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
    uplinks: Annotated[list[Uplink], msgspec.Meta(max_length=200)] = []
    """Ports that matter even if never seen up, as "device:port" (the SNMP check's name
    and the port's ifName, e.g. "router:ge-0/0/0") or "port" (on any device): down is
    critical."""
    formerly: Annotated[list[Ident], msgspec.Meta(max_length=20)] = []
    """Slugs this commune had before (a rename, or a hand-made slug replaced by the
    official one): agents still configured with one report here, and the history
    recorded under it moves here when the collector starts."""


class Inventory(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    province: Ident
    name: str = ""
    communes: list[Commune] = []

    def commune(self, slug: str) -> Commune | None:
        return next((c for c in self.communes if c.slug == slug), None)

    def renames(self) -> dict[tuple[str, str], str]:
        """(province, former slug) -> the commune's slug now."""
        return {(self.province, old): c.slug for c in self.communes for old in c.formerly}

    def uplinks(self) -> dict[str, frozenset[str]]:
        """Each commune's uplinks by "province/slug", for those that name any."""
        return {
            f"{self.province}/{c.slug}": frozenset(c.uplinks) for c in self.communes if c.uplinks
        }


EMPTY = Inventory(province="")


def all_renames(inventories: Iterable[Inventory]) -> dict[tuple[str, str], str]:
    """(province, former slug) -> slug now, over every province's inventory."""
    return {key: now for inventory in inventories for key, now in inventory.renames().items()}


def is_uplink(marked: frozenset[str], device: str, port: str) -> bool:
    """Whether a commune's ``uplinks`` name this port ("device:port", or "port" alone)."""
    return f"{device}:{port}" in marked or port in marked


def parse_inventory(data: dict[str, Any], source: str) -> Inventory:
    """Decoded strictly; slugs and codes unique; every code one of the province's in the
    official register (``register.py``)."""
    inventory = convert_strict(data, Inventory, source)
    seen: dict[str, int] = {}
    codes: dict[str, int] = {}
    official = register.provinces().get(inventory.province)
    for index, commune in enumerate(inventory.communes):
        where = f"{source}: communes[{index}] ({commune.slug})"
        if commune.slug in seen:
            raise ConfigError(
                f"{where}.slug: {commune.slug!r} is listed twice "
                f"(also communes[{seen[commune.slug]}])"
            )
        seen[commune.slug] = index
        if not commune.code:
            continue
        if not _CODE.fullmatch(commune.code):
            raise ConfigError(f"{where}.code: expected 5 digits, got {commune.code!r}")
        if commune.code in codes:
            raise ConfigError(
                f"{where}.code: {commune.code} is listed twice "
                f"(also communes[{codes[commune.code]}])"
            )
        codes[commune.code] = index
        if official is None:
            raise ConfigError(
                f"{source}: province: {inventory.province!r} is not a province of the official "
                f"register, so its codes cannot be checked (commune-collector inventory lists "
                f"them: {', '.join(sorted(register.provinces()))})"
            )
        unit = official.unit(commune.code)
        if unit is None:
            raise ConfigError(f"{where}.code: {commune.code} is no unit of {official.name}")
    _check_formerly(inventory, seen, source)
    return inventory


def _check_formerly(inventory: Inventory, current: dict[str, int], source: str) -> None:
    """A former slug names one commune, and no commune has it now: otherwise an agent's
    samples could go to either."""
    former: dict[str, int] = {}
    for index, commune in enumerate(inventory.communes):
        where = f"{source}: communes[{index}] ({commune.slug}).formerly"
        for old in commune.formerly:
            if old in current:
                raise ConfigError(f"{where}: {old!r} is the slug of communes[{current[old]}] now")
            if old in former:
                raise ConfigError(
                    f"{where}: {old!r} is listed twice (also communes[{former[old]}])"
                )
            former[old] = index


def from_register(
    province: str,
    existing: Inventory | None = None,
    defaults: dict[str, int] | None = None,
    official_slugs: bool = False,
) -> str:
    """A province's inventory as TOML, every unit of the register with its official name
    and code. What ``existing`` says is kept: a commune found there (by code, else by
    name) keeps its slug, so agents and history under it go on, and its counts;
    ``defaults`` (e.g. ``{"routers": 1}``) fill the counts it does not give.

    ``official_slugs``: a commune found there under another slug takes the register's,
    and its slug of before goes to ``formerly``: its agents go on reporting under the
    old one and are counted here, its history moves here."""
    defaults = defaults or {}
    official = register.province(province)
    kept = {c.code: c for c in existing.communes if c.code} if existing else {}
    named = {c.name: c for c in existing.communes} if existing else {}
    lines = [
        f"# The communes of {official.name}, from the official register (vietnam-provinces:",
        "# the units after the rearrangement of 1 July 2025), written by",
        f"#   commune-collector inventory --province {province}",
        "# Per commune: slug (the topics' commune level, agents' [agent].commune), the",
        "# official name and code; fill in pcs (PCs expected to run an agent: the",
        '# denominator of "% protected"), routers and polycoms from the asset register;',
        '# uplinks = ["router:ge-0/0/0"]: ports whose being down is critical;',
        '# formerly = ["old-slug"]: slugs it had before (its agents still report so).',
        f'province = "{province}"',
        f"name = {_quoted(official.name)}",
    ]
    for unit in official.units:
        before = kept.get(unit.code) or named.get(unit.name)
        slug = unit.slug if official_slugs or before is None else before.slug
        formerly = list(before.formerly) if before else []
        if before and before.slug != slug and before.slug not in formerly:
            formerly.append(before.slug)
        lines += ["", "[[communes]]", f'slug = "{slug}"', f"name = {_quoted(unit.name)}",
                  f'code = "{unit.code}"']  # fmt: skip
        if formerly:
            lines.append(f"formerly = [{', '.join(_quoted(s) for s in formerly)}]")
        for key in ("pcs", "routers", "polycoms"):
            value = getattr(before, key) if before else None
            value = defaults.get(key) if value is None else value
            lines.append(f"{key} = {value}" if value is not None else f"# {key} = ")
        if before and before.uplinks:
            lines.append(f"uplinks = [{', '.join(_quoted(u) for u in before.uplinks)}]")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def load_inventory(path: str | Path) -> Inventory:
    return parse_inventory(read_toml(path), str(path))
