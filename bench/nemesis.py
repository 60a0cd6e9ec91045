"""The soak's nemesis: what goes wrong, when, drawn from a seed (the same seed, the same
schedule), and ground truth of it written as it happens (truth.jsonl).

A schedule is a list of ``Fault``s, each done at ``at`` seconds into the soak, held for
``hold`` seconds and then undone. ``short_schedule`` puts every kind in once, spread over
the window; ``long_schedule`` draws them at random for as long as asked. Target outages
(the probed services going down and up) come from ``target_schedule``, kept clear of the
agent kills of the same commune: an agent that is dead when its target goes down sees the
outage late, which would be the kill's doing, not the availability history's.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

#: Every kind of fault; each is done by ``bench.soak.Soak.do_<kind>``.
KINDS = (
    "kill_agent",
    "kill_fleet",
    "kill_collector",
    "kill_sink",
    "kill_broker",
    "kill_vm",
    "partition",
    "fill_store",
    "fill_agent_disk",
    "clock_jump",
    "broker_config",
    "update_agents",
    "partition_collector",
)
#: The kinds added after the first soaks were recorded. They are drawn from a generator
#: of their own, so that a seed's schedule of the earlier kinds stays what it was: a
#: failure the README replays (``--seed 26 --only kill_broker``) still plays at its time.
LATER_KINDS = ("update_agents", "partition_collector")
_FIRST_KINDS = tuple(k for k in KINDS if k not in LATER_KINDS)
#: When in the window (as fractions of it) a later kind may come in the short schedule:
#: an update early, so that both its releases and the rollback are done within it.
_LATER_SPAN = {"update_agents": (0.05, 0.35), "partition_collector": (0.3, 0.9)}


@dataclass(frozen=True)
class Fault:
    kind: str
    at: float
    """Seconds into the soak."""
    hold: float
    """Seconds the fault lasts before it is undone (a killed process stays dead so long)."""
    subject: int = 0
    """Which one: an agent's, a commune's index (taken modulo how many there are)."""


_SECONDS = re.compile(r"\d+(\.\d+)?")


def parse_faults(text: str) -> tuple[Fault, ...]:
    """``kind@at[+hold]`` separated by commas (seconds, plain decimals; hold 10 unless
    said): a schedule written out, such as a failure's shortest one. At least one.
    ``kill_vm@30+20,kill_sink@40``."""
    faults = []
    for part in (p.strip() for p in text.split(",")):
        kind, _, timing = part.partition("@")
        at, plus, hold = timing.partition("+")
        if kind not in KINDS:
            raise ValueError(f"no such fault {kind!r}; one of {', '.join(KINDS)}")
        if not _SECONDS.fullmatch(at) or (plus and not _SECONDS.fullmatch(hold)):
            raise ValueError(f"{part!r}: not kind@seconds[+seconds]")
        faults.append(Fault(kind, float(at), float(hold) if plus else 10.0))
    return tuple(faults)


@dataclass(frozen=True)
class TargetOutage:
    commune: int
    target: int
    start: float
    end: float


def short_schedule(seed: int, window: float) -> list[Fault]:
    """Every kind once, in an order and at times drawn from ``seed``, within ``window``
    seconds; holds short enough that the agents' outboxes never reach their bounds."""
    rng = random.Random(seed)
    kinds = list(_FIRST_KINDS)
    rng.shuffle(kinds)
    step = window / (len(kinds) + 1)
    holds = {"partition": 30.0, "fill_store": 20.0, "fill_agent_disk": 20.0,
             "clock_jump": 30.0, "broker_config": 0.0}  # fmt: skip
    first = [
        Fault(kind, round(step * (i + 0.5) + rng.uniform(0, step / 2), 1),
              holds.get(kind, round(rng.uniform(3, 10), 1)), rng.randrange(1000))
        for i, kind in enumerate(kinds)
    ]  # fmt: skip
    later = random.Random(f"{seed}:later")
    for kind in LATER_KINDS:
        low, high = _LATER_SPAN[kind]
        at = round(window * later.uniform(low, high), 1)
        first.append(Fault(kind, at, _later_hold(kind, later, 20.0), later.randrange(1000)))
    return first


def _later_hold(kind: str, rng: random.Random, partition: float) -> float:
    """An update holds nothing (it lasts as long as its releases take); the collector
    is cut for ``partition`` seconds."""
    return 0.0 if kind == "update_agents" else partition


def long_schedule(seed: int, window: float) -> list[Fault]:
    """Faults at random (a mean gap of a minute) for ``window`` seconds, every kind at
    least once; partitions of up to ten minutes."""
    rng = random.Random(seed)
    faults = short_schedule(seed, min(window, 600.0))
    at = min(window, 600.0)
    while True:
        at += rng.expovariate(1 / 60)
        if at >= window:
            break
        kind = rng.choice(_FIRST_KINDS)
        hold = {
            "partition": rng.uniform(30, 600),
            "fill_store": rng.uniform(10, 120),
            "fill_agent_disk": rng.uniform(10, 120),
            "clock_jump": rng.uniform(20, 120),
            "broker_config": 0.0,
        }.get(kind, rng.uniform(2, 30))
        faults.append(Fault(kind, round(at, 1), round(hold, 1), rng.randrange(1000)))
    # The later kinds: each about every ten minutes after the first ten, the collector
    # cut for up to five.
    later = random.Random(f"{seed}:later-long")
    for kind in LATER_KINDS:
        at = min(window, 600.0)
        while True:
            at += later.expovariate(1 / 600)
            if at >= window:
                break
            hold = _later_hold(kind, later, later.uniform(20, 300))
            faults.append(Fault(kind, round(at, 1), round(hold, 1), later.randrange(1000)))
    return sorted(faults, key=lambda f: f.at)


def target_schedule(
    seed: int, window: float, communes: int, targets: int, interval: float
) -> list[TargetOutage]:
    """Each target down now and then: down for 4 to 10 probe intervals, up for 8 to 20."""
    rng = random.Random(seed * 7919 + 1)
    outages = []
    for commune in range(communes):
        for target in range(targets):
            at = rng.uniform(2, 10) * interval
            while True:
                length = rng.uniform(4, 10) * interval
                if at + length >= window:
                    break
                outages.append(TargetOutage(commune, target, round(at, 1), round(at + length, 1)))
                at += length + rng.uniform(8, 20) * interval
    return outages


def clear_of(outages: list[TargetOutage], commune: int, start: float, end: float) -> bool:
    """No target of ``commune`` changes state between ``start`` and ``end``."""
    return not any(
        o.commune == commune and (start <= o.start <= end or start <= o.end <= end) for o in outages
    )


class Truth:
    """truth.jsonl: one JSON object a line, appended as things happen (a run that dies
    keeps what it wrote)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, record: dict[str, object]) -> None:
        with self._lock, self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")

    def fault(self, fault: Fault, at: float, lifted: float, recovered: float | None,
              detail: str) -> None:  # fmt: skip
        self.write({"kind": "fault", "fault": fault.kind, "at": at, "lifted": lifted,
                    "recovered": recovered, "detail": detail,
                    "schedule": asdict(fault)})  # fmt: skip

    def target_down(self, agent_key: str, check: str, target: str, start: float,
                    end: float | None) -> None:  # fmt: skip
        self.write({"kind": "target_down", "agent_key": agent_key, "check": check,
                    "target": target, "start": start, "end": end})  # fmt: skip


def now() -> float:
    return time.time()
