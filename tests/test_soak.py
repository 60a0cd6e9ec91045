"""The short chaos soak (bench/soak.py): five minutes of a few hundred agents, every fault
of the nemesis at least once, and the checker's verdict that nothing was lost.

It needs root (network namespaces, tmpfs mounts). The soak runs once for the module:
one test holds the harness to what it must do (every fault done, every outbox drained,
nothing left behind), the other the system to the checker's verdict. The run's folder,
``/tmp/commune-soak-test`` (the last run's only), is kept to read after a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from bench import nemesis, soak, soaknet

SEED = 26
RUN_DIR = Path("/tmp/commune-soak-test")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and mounts need root")


def leftovers(run_dir: Path = RUN_DIR) -> list[str]:
    """What a soak in ``run_dir`` leaves if it does not clean up: namespaces, addresses,
    mounts, the broker's folder."""
    found = [n for n in soaknet.ip("netns", "list", check=False).stdout.split() if
             n.startswith(soaknet.PREFIX)]  # fmt: skip
    addresses = soaknet.ip("-o", "addr", "show", "dev", "lo", check=False).stdout
    found += [line for line in addresses.splitlines() if soaknet.PREFIX in line]
    mounts = Path("/proc/mounts").read_text().splitlines()
    found += [line for line in mounts if str(run_dir) in line]
    found += [str(p) for p in Path("/tmp").glob("commune-soak-broker-*")]
    return found


@pytest.fixture(scope="module")
def short_soak() -> Iterator[soak.Outcome]:
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    outcome = soak.run(soak.Options.short_mode(SEED, RUN_DIR))
    yield outcome


@needs_root
@pytest.mark.timeout(1800)
def test_the_short_soak_does_every_fault_drains_and_leaves_nothing(
    short_soak: soak.Outcome,
) -> None:
    assert leftovers() == [], "the soak left namespaces, addresses or mounts behind"
    records = [json.loads(line) for line in (RUN_DIR / "truth.jsonl").read_text().splitlines()]
    done = {r["fault"] for r in records if r["kind"] == "fault"}
    assert done == set(nemesis.KINDS), f"faults never done: {set(nemesis.KINDS) - done}"
    assert all(r["recovered"] for r in records if r["kind"] == "fault"), "a fault never healed"
    assert sum(r["kind"] == "target_down" for r in records) >= 20
    # The update: each launched agent committed the new version, rolled the crashing one
    # back, and kept its outbox file across both switches.
    switches = [r for r in records if r["kind"] == "version_switch"]
    assert len(switches) >= 2
    assert all(r["decisions"] == ["committed", "rolled_back"] for r in switches), switches
    assert all(r["before"] and r["before"] == r["after"] for r in switches), switches
    assert short_soak.described["caught_up"], "the store never held every agent's last envelope"
    assert short_soak.described["outbox_rows_left"] == 0
    assert len(short_soak.described["outboxes"]) >= 250  # type: ignore[arg-type]


#: What the checker may still find in outages' timing (below), never in delivery.
TIMING = ("caused outages missing from the store", "outages in the store not caused")


@needs_root
@pytest.mark.timeout(1800)
def test_the_short_soak_loses_nothing(short_soak: soak.Outcome) -> None:
    """Every envelope created is in the store once and its points in VictoriaMetrics once,
    or counted as dropped by a bound; every outbox drained."""
    delivery = [p for p in short_soak.problems if not p.endswith(TIMING)]
    assert delivery == [], short_soak.table


@needs_root
@pytest.mark.timeout(1800)
def test_the_short_soak_places_every_outage(short_soak: soak.Outcome) -> None:
    """Every caused outage in the availability history within one probe interval at each
    end (as the agent ran it: a probe late on a busy machine, no probe missed), and none
    that was not caused; late samples (a killed broker's resent envelopes) placed."""
    assert short_soak.ok, short_soak.table


#: The hour-long soak's two failures (seed 7), their shortest schedule: a sink killed
#: just after a write, VictoriaMetrics killed 6 s later (the points it held in memory
#: lost, the sink that knew to write them again dead); then VictoriaMetrics away longer
#: than the sink's memory of recent batches (15 s), with a sink kill in between.
HOUR_FAILURES = "kill_sink@30,kill_vm@36+8,kill_vm@70+20,kill_sink@80,kill_vm@110+16"


@needs_root
@pytest.mark.timeout(1800)
def test_the_hour_soaks_shortest_failing_schedule_misses_no_point(tmp_path: Path) -> None:
    """Every applied envelope's points in VictoriaMetrics after the kills that lost
    5,950 (then 314) of them in the hour-long soak; nothing else lost."""
    options = soak.Options.short_mode(7, tmp_path / "replay")
    options.real_communes, options.agents_per_commune = 1, 3
    options.sim_communes, options.sim_per_commune = 1, 40
    options.faults = nemesis.parse_faults(HOUR_FAILURES)
    outcome = soak.run(options)
    truth = (tmp_path / "replay" / "truth.jsonl").read_text().splitlines()
    done = [r for r in map(json.loads, truth) if r["kind"] == "fault"]
    assert sorted(r["fault"] for r in done) == sorted(f.kind for f in options.faults)
    assert all(r["recovered"] for r in done), done  # each done, and healed
    assert outcome.ok, outcome.table
    assert leftovers(tmp_path) == []


def test_the_same_seed_plays_the_same_schedule() -> None:
    """What replaying a seed relies on: the schedule comes from the seed alone."""
    assert nemesis.short_schedule(SEED, 240) == nemesis.short_schedule(SEED, 240)
    assert nemesis.short_schedule(SEED, 240) != nemesis.short_schedule(SEED + 1, 240)
    assert {f.kind for f in nemesis.short_schedule(SEED, 240)} == set(nemesis.KINDS)
    # Kinds added later leave the earlier ones' times as they were: the README's replay
    # of this seed's broker kill still plays it 19.5 s in.
    [kill] = [f for f in nemesis.short_schedule(SEED, 240) if f.kind == "kill_broker"]
    assert kill.at == 19.5
    long = nemesis.long_schedule(SEED, 3600)
    assert long == nemesis.long_schedule(SEED, 3600)
    assert all(0 <= f.at < 3600 for f in long) and len(long) > len(nemesis.KINDS)
    targets = nemesis.target_schedule(SEED, 300, 3, 2, 2.0)
    assert targets == nemesis.target_schedule(SEED, 300, 3, 2, 2.0)
    assert all(t.start < t.end <= 300 for t in targets)


def test_a_schedule_written_out_is_read_or_refused_by_name() -> None:
    faults = nemesis.parse_faults(HOUR_FAILURES)
    assert [(f.kind, f.at, f.hold) for f in faults[:2]] == [
        ("kill_sink", 30.0, 10.0),
        ("kill_vm", 36.0, 8.0),
    ]
    with pytest.raises(ValueError, match="no such fault 'kill_all'"):
        nemesis.parse_faults("kill_all@3")
    for wrong in ("kill_vm@soon", "kill_vm@-5", "kill_vm@nan", "kill_vm@inf", "kill_vm@1_0",
                  "kill_vm@3+-1", "kill_vm@3+", "kill_vm", ""):  # fmt: skip
        with pytest.raises(ValueError, match=r"not kind@seconds|no such fault"):
            nemesis.parse_faults(wrong)


class _Failing(soak.Soak):
    """A soak that fails once its servers run and its communes exist."""

    made: ClassVar[list[str]] = []

    def enroll_all(self) -> None:
        _Failing.made = leftovers(self.root)
        raise RuntimeError("enrollment failed")


@needs_root
def test_a_soak_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    options = soak.Options.short_mode(SEED, tmp_path / "failing")
    options.real_communes, options.sim_communes = 1, 1
    with pytest.raises(RuntimeError, match="enrollment failed"), soak.soak(options, _Failing):
        raise AssertionError("not reached")
    # three namespaces (the collector's too), the address, two mounts, the broker's
    assert len(_Failing.made) >= 6
    assert leftovers(tmp_path) == []
    assert not [p for p in Path("/proc").glob("[0-9]*") if _runs_from(p, tmp_path)]


def _runs_from(process: Path, folder: Path) -> bool:
    """Whether a process's command line names ``folder`` (a server the soak started)."""
    try:
        return str(folder) in (process / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@needs_root
def test_nothing_of_an_earlier_dead_run_survives_the_next() -> None:
    """A soak killed mid-run leaves its namespaces; the next one removes them first."""
    net = soaknet.CommuneNet(250)
    net.create()
    assert net.name in soaknet.ip("netns", "list").stdout
    soaknet.remove_leftovers()
    assert net.name not in soaknet.ip("netns", "list").stdout
    assert subprocess.run(["ip", "link", "show", net.host_link], capture_output=True,
                          check=False).returncode != 0  # fmt: skip
