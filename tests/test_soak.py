"""The short chaos soak (bench/soak.py): five minutes of a few hundred agents, every fault
of the nemesis at least once, and the checker's verdict that nothing was lost.

It needs root (network namespaces, tmpfs mounts); everything it made is gone afterwards,
whether it passed or not, which the test checks too.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench import nemesis, soak, soaknet

SEED = 26


def leftovers() -> list[str]:
    """What a soak leaves if it does not clean up: namespaces, links, mounts."""
    found = [n for n in soaknet.ip("netns", "list", check=False).stdout.split() if
             n.startswith(soaknet.PREFIX)]  # fmt: skip
    found += [
        line for line in soaknet.ip("-o", "addr", "show", "dev", "lo", check=False).stdout
        .splitlines() if soaknet.PREFIX in line
    ]  # fmt: skip
    mounts = Path("/proc/mounts").read_text().splitlines()
    found += [line for line in mounts if "/store-fs " in line or "/agent-fs " in line]
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and mounts need root")
@pytest.mark.timeout(1800)
def test_a_short_soak_loses_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "soak"
    options = soak.Options.short_mode(SEED, run_dir)
    try:
        outcome = soak.run(options)
    finally:
        assert leftovers() == [], "the soak left namespaces, addresses or mounts behind"
    faults = [json.loads(line) for line in (run_dir / "truth.jsonl").read_text().splitlines()]
    done = {f["fault"] for f in faults if f["kind"] == "fault"}
    assert done == set(nemesis.KINDS), f"faults never done: {set(nemesis.KINDS) - done}"
    assert any(f["kind"] == "target_down" for f in faults)
    assert outcome.described["caught_up"], "the store never held every agent's last envelope"
    assert outcome.ok, outcome.table


def test_the_same_seed_plays_the_same_schedule() -> None:
    """What replaying a seed relies on: the schedule comes from the seed alone."""
    assert nemesis.short_schedule(SEED, 240) == nemesis.short_schedule(SEED, 240)
    assert nemesis.short_schedule(SEED, 240) != nemesis.short_schedule(SEED + 1, 240)
    assert {f.kind for f in nemesis.short_schedule(SEED, 240)} == set(nemesis.KINDS)
    long = nemesis.long_schedule(SEED, 3600)
    assert long == nemesis.long_schedule(SEED, 3600)
    assert all(0 <= f.at < 3600 for f in long) and len(long) > len(nemesis.KINDS)
    targets = nemesis.target_schedule(SEED, 300, 3, 2, 2.0)
    assert targets == nemesis.target_schedule(SEED, 300, 3, 2, 2.0)
    assert all(t.start < t.end <= 300 for t in targets)


def test_nothing_of_an_earlier_dead_run_survives_the_next(tmp_path: Path) -> None:
    """A soak killed mid-run leaves its namespaces; the next one removes them first."""
    if os.geteuid() != 0:
        pytest.skip("namespaces need root")
    net = soaknet.CommuneNet(250)
    net.create()
    assert net.name in soaknet.ip("netns", "list").stdout
    soaknet.remove_leftovers()
    assert net.name not in soaknet.ip("netns", "list").stdout
    assert subprocess.run(["ip", "link", "show", net.host_link], capture_output=True,
                          check=False).returncode != 0  # fmt: skip
