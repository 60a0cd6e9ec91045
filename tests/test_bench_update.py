"""The update benchmark in its quick mode: a few PCs updated in rings through the
collector's web app and through nginx, every one of them holding the release at the
end, its figures printed and written (what it measures is not judged here: timing on a
busy machine is the benchmark's to report, not a test's to assert)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import REPO

AGENTS = 24


@pytest.mark.servers
def test_the_quick_update_benchmark_updates_every_pc_through_both_servers(
    tmp_path: Path,
) -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx missing: apt-get install nginx (.ci/run does)")
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "bench/update_bench.py", "--quick", "--agents", str(AGENTS),
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    runs = figures["runs"]
    assert [run["server"] for run in runs] == ["collector", "static"]
    for run in runs:
        where = run["server"]
        assert run["agents_updated"] == AGENTS, where
        assert run["rollout_done_s"] is not None, f"{where}: the rollout never done"
        assert run["full_rollout_s"] > 0, where
        assert [ring["name"] for ring in run["rings"]] == ["lab", "pilot:1-communes", "50%", "100%"]
        assert sum(ring["members"] for ring in run["rings"]) == AGENTS, where
        assert all(ring["promoted_s"] is not None for ring in run["rings"]), where
        # Each agent asked at least its refresh (4 metadata files) and its bundle.
        assert run["requests"] >= 5 * AGENTS, where
        assert run["bytes"] > 0 and run["server_cpu_s"] >= 0, where
    collector = runs[0]["server_counters"]
    # The collector counted what it sent, including the warm-up agent's bundle.
    assert collector["requests"]["target served"] >= AGENTS + 1, collector
    for label in ("time to full rollout (s)", "server CPU (s)", "bytes served"):
        line = next(line for line in done.stdout.splitlines() if line.startswith(label))
        assert len(line.split()) >= len(label.split()) + 2, line  # both servers' figures
