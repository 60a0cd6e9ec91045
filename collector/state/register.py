"""The official register of administrative units (``vietnam-provinces``: the units after
the rearrangement of 1 July 2025, 34 provinces and 3,321 communes, each with its
5-digit code), as the inventory speaks of them: a province by its slug
(``dong-nai``), a commune by its slug (``la-nga``: the official short code name, the
kind left out unless two units of a province would share it) and its code.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Unit:
    code: str
    """5 digits, e.g. "26227"."""
    name: str
    """Official, with its kind: "Xã La Ngà"."""
    kind: str
    """xã, phường or đặc khu."""
    slug: str


@dataclass(frozen=True)
class Province:
    code: str
    name: str
    slug: str
    units: tuple[Unit, ...]

    def unit(self, code: str) -> Unit | None:
        return next((u for u in self.units if u.code == code), None)


_KIND_PREFIX = re.compile(r"^(xa|phuong|dac_khu)_")


def _slug(codename: str) -> str:
    return codename.replace("_", "-")


@functools.cache
def provinces() -> dict[str, Province]:
    """Every province of the register by its slug."""
    from vietnam_provinces.lookup import PROVINCE_MAPPING, WARD_MAPPING

    wards: dict[int, list[Any]] = {}
    for ward in WARD_MAPPING.values():
        wards.setdefault(int(ward.province_code), []).append(ward)
    found: dict[str, Province] = {}
    for number, province in PROVINCE_MAPPING.items():
        members: list[Any] = wards.get(number, [])
        short = [_KIND_PREFIX.sub("", w.codename) for w in members]
        full = [w.codename for w in members]
        units = []
        for ward, name, codename in zip(members, short, full, strict=True):
            code = f"{int(ward.code):05d}"
            if short.count(name) == 1:
                slug = _slug(name)
            elif full.count(codename) == 1:  # "Xã X" and "Phường X": the kind tells them apart
                slug = _slug(codename)
            else:  # names that differ only by their tone marks (Lộc Thành, Lộc Thạnh)
                slug = f"{_slug(name)}-{code}"
            units.append(Unit(code, ward.name, ward.division_type.value, slug))
        slug = _slug(province.codename)
        found[slug] = Province(
            f"{number:02d}", province.name, slug, tuple(sorted(units, key=lambda u: u.code))
        )
    return found


def province(slug: str) -> Province:
    """KeyError naming the known slugs for one that is not a province."""
    known = provinces()
    if slug not in known:
        raise KeyError(f"{slug!r} is not a province of the register ({', '.join(sorted(known))})")
    return known[slug]
