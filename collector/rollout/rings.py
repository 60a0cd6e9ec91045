"""Which PCs are in which ring of a rollout: a pure function of the fleet and the plan.

A plan is a list of rings, in order (``lab,pilot:3-communes,10%,50%,100%``):

- ``lab``: named lab PCs (one per anti-malware product the province runs);
- ``pilot:N-communes``: every PC of N communes, chosen by a stable hash of the
  commune at the rollout's start (and kept for its life);
- ``P%``: P percent of the remaining PCs of *every* commune, by a stable hash of the
  agent id. Within a commune the remaining PCs are ranked by their hash and placed at
  ``(rank + offset) / count``, the offset a stable hash of the commune in [0, 1): a
  P % ring then holds ⌊P·n⌋ or ⌈P·n⌉ of a commune's n PCs — every commune takes part
  from the first percentage on, none is hit as a whole — and each ring holds the
  smaller ones (nested: the 10 % ring is inside the 50 % ring).

A PC's ring is the first that holds it; a PC no ring holds (a plan that stops short
of 100 %) is never asked to update by this rollout.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: A rollout has at most this many rings.
MAX_RINGS = 8
#: A pilot of at most this many communes.
MAX_PILOT = 50
_PILOT = re.compile(r"pilot:([0-9]{1,3})(?:-communes?)?")
_PERCENT = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,2})?)%")


class RingError(ValueError):
    """A ring list that cannot be a plan; the message names the ring and what to write."""


@dataclass(frozen=True)
class Ring:
    name: str
    """As written: lab, pilot:3-communes, 10%."""
    kind: str
    """lab, pilot or percent."""
    size: float = 0.0
    """pilot: communes; percent: the share (0, 100]."""


@dataclass(frozen=True)
class Member:
    """One PC of the fleet, as membership sees it."""

    key: str
    """province/commune/agent."""
    commune: str
    """province/commune."""


def parse_rings(text: str) -> tuple[Ring, ...]:
    """``lab,pilot:3-communes,10%,50%,100%`` as rings; RingError naming the bad one."""
    names = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not name for name in names):
        raise RingError(f"--rings {text!r}: give rings separated by commas, "
                        "e.g. lab,pilot:3-communes,10%,50%,100%")  # fmt: skip
    if len(names) > MAX_RINGS:
        raise RingError(f"--rings: {len(names)} rings, at most {MAX_RINGS}")
    rings: list[Ring] = []
    for name in names:
        rings.append(_ring(name))
    kinds = [ring.kind for ring in rings]
    for kind in ("lab", "pilot"):
        if kinds.count(kind) > 1:
            raise RingError(f"--rings: {kind} appears twice")
    order = {"lab": 0, "pilot": 1, "percent": 2}
    if [order[k] for k in kinds] != sorted(order[k] for k in kinds):
        raise RingError("--rings: lab first, then the pilot, then the percentages")
    shares = [ring.size for ring in rings if ring.kind == "percent"]
    if any(b <= a for a, b in itertools.pairwise(shares)):
        raise RingError(f"--rings: percentages must grow ({', '.join(map(_pct, shares))})")
    return tuple(rings)


def _pct(share: float) -> str:
    return f"{share:g}%"


def _ring(name: str) -> Ring:
    if name == "lab":
        return Ring("lab", "lab")
    pilot = _PILOT.fullmatch(name)
    if pilot is not None:
        count = int(pilot.group(1))
        if not 1 <= count <= MAX_PILOT:
            raise RingError(f"--rings: {name}: a pilot of 1 to {MAX_PILOT} communes")
        return Ring(name, "pilot", float(count))
    percent = _PERCENT.fullmatch(name)
    if percent is not None:
        share = float(percent.group(1))
        if not 0 < share <= 100:
            raise RingError(f"--rings: {name}: a share above 0 % and at most 100 %")
        return Ring(_pct(share), "percent", share)
    raise RingError(f"--rings: {name!r} is not a ring: lab, pilot:N-communes or a share like 10%")


def unit_hash(*parts: str) -> float:
    """A stable point in [0, 1) for ``parts`` (the same on every collector, every run)."""
    digest = hashlib.sha256("\0".join(("ring", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_pilot(communes: Iterable[str], count: int) -> tuple[str, ...]:
    """``count`` communes (province/commune) chosen by a stable hash: the same fleet gives
    the same pilot, and a commune added later does not move the ones chosen before it
    unless it hashes lower."""
    return tuple(sorted(set(communes), key=lambda c: (unit_hash("pilot", c), c))[:count])


def assign(
    fleet: Sequence[Member], rings: Sequence[Ring], lab: Iterable[str], pilot: Iterable[str]
) -> dict[str, int]:
    """Agent key -> the position of the first ring that holds it (absent: none does)."""
    labs, pilots = set(lab), set(pilot)
    found: dict[str, int] = {}
    rest: dict[str, list[str]] = defaultdict(list)
    lab_at = next((i for i, r in enumerate(rings) if r.kind == "lab"), None)
    pilot_at = next((i for i, r in enumerate(rings) if r.kind == "pilot"), None)
    for member in fleet:
        if lab_at is not None and member.key in labs:
            found[member.key] = lab_at
        elif pilot_at is not None and member.commune in pilots:
            found[member.key] = pilot_at
        else:
            rest[member.commune].append(member.key)
    shares = [(i, r.size / 100) for i, r in enumerate(rings) if r.kind == "percent"]
    if not shares:
        return found
    for commune, found_there in rest.items():
        keys = sorted(set(found_there), key=lambda k: (unit_hash("agent", k), k))
        offset = unit_hash("commune", commune)
        for rank, key in enumerate(keys):
            point = (rank + offset) / len(keys)
            ring = next((i for i, share in shares if point < share), None)
            if ring is not None:
                found[key] = ring
    return found
