"""When a ring of a rollout may be promoted, and when it must stop: pure judgements.

A ring's gate holds when the ring has soaked long enough (a business day by default:
24 hours of Monday-to-Friday time, Vietnam's clock, so a ring opened on Friday
evening is not promoted on Saturday on the strength of switched-off PCs), at least
95 % of its online members committed the new version, and nothing is breached. A
breach pauses the rollout at once, whatever the soak: more than 1 % of the ring's
members rolled back, or the ring's offline rate worse than that of the PCs not yet
updated by more than 2 points (judged only in a ring of at least ``offline_min``
PCs: one lab PC switched off for the night is not a breach).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from agent.units import parse_duration
from collector.common.localtime import VIETNAM

_DAY = 86400.0


class GateError(ValueError):
    """A gate option that cannot be; the message names it and what to write."""


@dataclass(frozen=True)
class Gate:
    soak_s: float = _DAY
    """How long a ring must have run before it may be promoted."""
    soak_weekdays: bool = True
    """Count only Monday-to-Friday time (Vietnam's clock) in the soak."""
    committed: float = 95.0
    """Percent of the ring's online members that must have committed the version."""
    rollbacks: float = 1.0
    """Percent of the ring's members rolled back above which the rollout pauses."""
    offline_points: float = 2.0
    """Points by which the ring's offline rate may exceed that of the PCs not updated."""
    offline_min: int = 20
    """The offline comparison needs a ring of at least this many members."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Gate:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        return say(
            "gate_weekdays" if self.soak_weekdays else "gate",
            soak=f"{self.soak_s / 3600:g}", committed=f"{self.committed:g}",
            rollbacks=f"{self.rollbacks:g}", offline=f"{self.offline_points:g}",
        )  # fmt: skip


#: ``--gate`` keys: the name an operator writes -> the field and how it is read.
GATE_KEYS = {
    "soak": "soak_s",
    "soak-weekdays": "soak_weekdays",
    "committed": "committed",
    "rollbacks": "rollbacks",
    "offline": "offline_points",
    "offline-min": "offline_min",
}


def parse_gate(items: Iterable[str], base: Gate | None = None) -> Gate:
    """``soak=1d``, ``committed=95``, ``rollbacks=1``, ``offline=2``, ``offline-min=20``,
    ``soak-weekdays=no`` (each item may hold several, comma-separated) over ``base``."""
    gate = base or Gate()
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or key not in GATE_KEYS:
                raise GateError(f"--gate {part!r}: write key=value with a key among "
                                f"{', '.join(GATE_KEYS)} (e.g. soak=1d,committed=95)")  # fmt: skip
            changes: dict[str, Any] = {GATE_KEYS[key]: _value(key, value)}
            gate = replace(gate, **changes)
    return gate


def _value(key: str, value: str) -> float | bool | int:
    try:
        if key == "soak":
            seconds = 0.0 if re.fullmatch(r"0+[smhd]?", value) else parse_duration(value)
            if not 0 <= seconds <= 30 * _DAY:
                raise ValueError("from 0 to 30d")
            return seconds
        if key == "soak-weekdays":
            if value.lower() not in ("yes", "no", "true", "false"):
                raise ValueError("yes or no")
            return value.lower() in ("yes", "true")
        if key == "offline-min":
            count = int(value)
            if not 0 <= count <= 100_000:
                raise ValueError("a count from 0")
            return count
        number = float(value.rstrip("%"))
        if not 0 <= number <= 100:
            raise ValueError("a percentage from 0 to 100")
        return number
    except ValueError as exc:
        raise GateError(f"--gate {key}={value!r}: {exc}") from None


def soaked(start: float, end: float, weekdays: bool) -> float:
    """Seconds between ``start`` and ``end``; only Monday-to-Friday ones (Vietnam) when
    ``weekdays``."""
    if end <= start:
        return 0.0
    if not weekdays:
        return end - start
    total = 0.0
    at = dt.datetime.fromtimestamp(start, VIETNAM)
    stop = dt.datetime.fromtimestamp(end, VIETNAM)
    while at < stop:
        midnight = (at + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        upto = min(midnight, stop)
        if at.weekday() < 5:
            total += (upto - at).total_seconds()
        at = upto
    return total


#: What a gate says, in English (the command line, the API, the store) and Vietnamese
#: (the console): one template each, so the console reads a stored English sentence
#: back into its parts (``in_words``) instead of keeping a second copy of the rules.
PHRASES: dict[str, tuple[str, str]] = {
    "ring": ("ring {ring}: {why}", "vòng {ring}: {why}"),
    "rolled_back": (
        "{n} of {members} PCs of the ring rolled back ({pct} % > {limit} %)",
        "{n}/{members} máy của vòng đã quay lại bản cũ ({pct} % > {limit} %)",
    ),
    "offline": (
        "{pct} % of the ring offline against {rest} % of the PCs not yet updated "
        "(more than +{limit} points)",
        "{pct} % máy của vòng mất kết nối, so với {rest} % máy chưa cập nhật (quá +{limit} điểm)",
    ),
    "soaking": ("soaking: {left}h to go", "đang theo dõi: còn {left} giờ"),
    "none_online": ("no PC of the ring online", "không máy nào của vòng trực tuyến"),
    "committed": (
        "{n} of {online} online PCs committed ({pct} % < {limit} %)",
        "{n}/{online} máy trực tuyến đã cập nhật ({pct} % < {limit} %)",
    ),
    "holds": ("holds", "đạt"),
    "paused_by": ("paused by {name}", "tạm dừng bởi {name}"),
    "halted_by": ("halted by {name}", "dừng hẳn bởi {name}"),
    "gate": (
        "soak {soak}h, committed ≥ {committed} %, rollbacks ≤ {rollbacks} %, "
        "offline ≤ +{offline} points",
        "theo dõi {soak} giờ, cập nhật ≥ {committed} %, quay lại ≤ {rollbacks} %, "
        "mất kết nối ≤ +{offline} điểm",
    ),
    "gate_weekdays": (
        "soak {soak}h of weekdays, committed ≥ {committed} %, rollbacks ≤ {rollbacks} %, "
        "offline ≤ +{offline} points",
        "theo dõi {soak} giờ ngày làm việc, cập nhật ≥ {committed} %, quay lại ≤ "
        "{rollbacks} %, mất kết nối ≤ +{offline} điểm",
    ),
}


def say(key: str, **values: object) -> str:
    """The English sentence ``key`` with its values."""
    return PHRASES[key][0].format(**values)


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    body = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>.+?)"
        for index, part in enumerate(parts)
    )
    return re.compile(body)


_READ_BACK = {key: _pattern(english) for key, (english, _) in PHRASES.items()}


def in_words(text: str, language: str) -> str:
    """An English sentence of this module in ``language`` ("vi" or "en"); any other
    text (an operator's own words) as it is."""
    if language == "en":
        return text
    for key, pattern in _READ_BACK.items():
        found = pattern.fullmatch(text)
        if found:
            values = {
                name: in_words(value, language) if name == "why" else value
                for name, value in found.groupdict().items()
            }
            return PHRASES[key][1].format(**values)
    return text


@dataclass(frozen=True)
class Standing:
    """One PC as a gate sees it."""

    online: bool
    committed: bool
    """Runs the rollout's version, committed (or idle on it)."""
    rolled_back: bool
    """Tried the rollout's version and went back."""


@dataclass(frozen=True)
class Figures:
    members: int
    online: int
    committed: int
    rolled_back: int
    offline_pct: float
    rest_offline_pct: float | None
    """The offline rate of the PCs not yet updated (None: there are none)."""

    @property
    def committed_pct(self) -> float:
        return 100.0 * self.committed / self.online if self.online else 0.0

    @property
    def rolled_back_pct(self) -> float:
        return 100.0 * self.rolled_back / self.members if self.members else 0.0


@dataclass(frozen=True)
class Verdict:
    held: bool
    """The ring may be promoted."""
    breach: str
    """Why the rollout must pause ("" : no breach)."""
    waiting: str
    """What the gate still waits for ("" when held or breached)."""
    figures: Figures


def figures(ring: Sequence[Standing], rest: Sequence[Standing]) -> Figures:
    offline = sum(not s.online for s in ring)
    rest_offline = sum(not s.online for s in rest)
    return Figures(
        members=len(ring),
        online=len(ring) - offline,
        committed=sum(s.committed and s.online for s in ring),
        rolled_back=sum(s.rolled_back for s in ring),
        offline_pct=100.0 * offline / len(ring) if ring else 0.0,
        rest_offline_pct=100.0 * rest_offline / len(rest) if rest else None,
    )


def judge(
    gate: Gate, ring: Sequence[Standing], rest: Sequence[Standing], started: float, now: float
) -> Verdict:
    """The gate of a ring opened at ``started``; ``rest``: the PCs not yet updated."""
    got = figures(ring, rest)
    if got.members and got.rolled_back_pct > gate.rollbacks:
        why = say("rolled_back", n=got.rolled_back, members=got.members,
                  pct=f"{got.rolled_back_pct:.1f}", limit=f"{gate.rollbacks:g}")  # fmt: skip
        return Verdict(False, why, "", got)
    if (
        got.rest_offline_pct is not None
        and got.members >= max(1, gate.offline_min)
        and got.offline_pct - got.rest_offline_pct > gate.offline_points
    ):
        why = say("offline", pct=f"{got.offline_pct:.1f}", rest=f"{got.rest_offline_pct:.1f}",
                  limit=f"{gate.offline_points:g}")  # fmt: skip
        return Verdict(False, why, "", got)
    if not got.members:
        return Verdict(True, "", "", got)  # nothing to wait for
    done = soaked(started, now, gate.soak_weekdays)
    if done < gate.soak_s:
        left = (gate.soak_s - done) / 3600
        return Verdict(False, "", say("soaking", left=f"{left:.1f}"), got)
    if not got.online:
        return Verdict(False, "", say("none_online"), got)
    if got.committed_pct < gate.committed:
        waiting = say("committed", n=got.committed, online=got.online,
                      pct=f"{got.committed_pct:.1f}", limit=f"{gate.committed:g}")  # fmt: skip
        return Verdict(False, "", waiting, got)
    return Verdict(True, "", "", got)
