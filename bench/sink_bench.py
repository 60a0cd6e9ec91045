"""The sink's CPU per envelope: turning spooled envelopes into line protocol, and whole steps.

    .venv/bin/python bench/sink_bench.py [--baseline d38b2b8] [--rounds 3] [--cycles 3]

Envelopes from the fleet simulation (``fleet.scenario``: 40 communes of 49 PCs and a
poller, their realistic samples, as ``bench/collector_bench.py``'s in-process measure),
``--cycles`` 60 s cycles of every agent (``--communes``, ``--outages`` a commune a day
for points of other outcomes and backlogs). Two figures, in microseconds of CPU per
envelope:

- convert: ``Sink.convert`` of every payload (decoding it and writing its points), the
  best of a few passes after one that fills the converter's memories (a steady state);
  with the SHA-256 of all the lines, which must be the same for both trees;
- step: ``Sink.step`` until the spool is empty, the spool filled beforehand with the
  payloads in frames of 500 (as ingest commits them), posting to a real VictoriaMetrics
  (started here); the process's CPU time (the server's is its own), settings as the
  collector's defaults (``SinkSettings`` with url, token, org and bucket only), or
  ``--batch`` envelopes a write for both trees.

The baseline is the sink of ``--baseline`` (a git worktree made for the run, removed at
the end), measured in the same run: each measurement runs in a child process of its own
with one tree's packages first on its path, baseline and this tree alternating, so both
see the same machine. A ratio below 1 is the new sink costing less.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINE_REF = "d38b2b8"
FRAME_ENVELOPES = 500


def fleet_payloads(cycles: int, communes: int, outages_per_day: float) -> list[bytes]:
    sys.path.insert(0, str(REPO))
    from fleet.scenario import Fleet

    names = [f"c{i:03d}" for i in range(communes)]
    fleet = Fleet("dong-nai", names, 49, seed=9, outages_per_day=outages_per_day)
    start = time.time() - cycles * 60
    return [
        payload
        for cycle in range(cycles)
        for agent in fleet.agents
        for _topic, payload, _retained in fleet.cycle(agent, start + 60 * cycle)
    ]


def measure(
    payloads: list[bytes], vm_url: str, workdir: Path, passes: int, batch: int
) -> dict[str, object]:
    """In a child whose path starts with the tree measured: its sink, these payloads."""
    import collector
    from collector.outputs.sink import Sink, SinkSettings
    from collector.outputs.spool import Spool
    from collector.state.store import StateStore

    convert = Sink.convert
    lines = [convert(payload) for payload in payloads]  # fills the converter's memories
    digest = hashlib.sha256(b"\n".join(lines)).hexdigest()
    converts = []
    for _ in range(passes):
        started = time.process_time()
        for payload in payloads:
            convert(payload)
        converts.append(time.process_time() - started)

    store = StateStore(workdir / "sink.sqlite")
    spool = Spool(store)
    settings = SinkSettings(vm_url, "", "bench", "commune")
    if batch:
        settings = dataclasses.replace(settings, batch_rows=batch)
    sink = Sink(spool, settings)
    steps = []
    try:
        for _ in range(passes):
            for at in range(0, len(payloads), FRAME_ENVELOPES):
                with store.transaction() as db:
                    spool.enqueue(db, payloads[at : at + FRAME_ENVELOPES])
            started = time.process_time()
            while sink.step(0.0) == 0.0:
                pass
            steps.append(time.process_time() - started)
            if spool.stats().rows or sink.last_error:
                raise RuntimeError(f"the spool was not drained: {sink.last_error}")
        points = sink.stats.points_written // passes
    finally:
        sink.close()
        store.close()
    return {
        "tree": str(Path(collector.__file__).parent.parent),
        "convert_us": min(converts) / len(payloads) * 1e6,
        "step_us": min(steps) / len(payloads) * 1e6,
        "sha256": digest,
        "points": points,
        "batch": settings.batch_rows,
    }


def run_child(
    tree: Path, payload_file: Path, vm_url: str, passes: int, batch: int
) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="sink-bench-"))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(tree)]
    command += ["--payloads", str(payload_file), "--vm-url", vm_url, "--passes", str(passes)]
    command += ["--workdir", str(workdir), "--batch", str(batch)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measurement in {tree} failed:\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    if Path(str(result["tree"])).resolve() != tree.resolve():
        raise RuntimeError(f"measured {result['tree']}, not {tree}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default=BASELINE_REF, help="git ref of the sink before")
    parser.add_argument("--rounds", type=int, default=3, help="baseline/new pairs, alternating")
    parser.add_argument("--cycles", type=int, default=3, help="60 s cycles of the fleet")
    parser.add_argument("--communes", type=int, default=40, help="communes of 49 PCs")
    parser.add_argument(
        "--outages", type=float, default=0.0, help="line outages a commune a day (0: none)"
    )
    parser.add_argument("--passes", type=int, default=3, help="passes per measurement (best)")
    parser.add_argument("--batch", type=int, default=0, help="envelopes a write (0: defaults)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--payloads", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--vm-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        sys.path.insert(0, str(args.child))
        payloads = pickle.loads(args.payloads.read_bytes())
        print(json.dumps(measure(payloads, args.vm_url, args.workdir, args.passes, args.batch)))
        return

    sys.path.insert(0, str(REPO))
    from tests.servers import VictoriaMetrics

    workdir = Path(tempfile.mkdtemp(prefix="sink-bench-"))
    payloads = fleet_payloads(args.cycles, args.communes, args.outages)
    payload_file = workdir / "payloads.pickle"
    payload_file.write_bytes(pickle.dumps(payloads))
    baseline = workdir / "baseline"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(baseline),
         args.baseline],
        check=True,
    )  # fmt: skip
    vm = VictoriaMetrics(workdir / "vm").start()
    trees = {f"before ({args.baseline})": baseline, "after (this tree)": REPO}
    results: dict[str, list[dict[str, object]]] = {name: [] for name in trees}
    print(f"{len(payloads)} envelopes, {args.rounds} rounds alternating; µs of CPU per envelope")
    try:
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                result = run_child(tree, payload_file, vm.url, args.passes, args.batch)
                results[name].append(result)
                print(
                    f"  round {round_ + 1} {name:22} convert {result['convert_us']:6.2f}"
                    f"  step {result['step_us']:6.2f} ({result['batch']} a write)"
                    f"  points {result['points']}"
                    f"  sha256 {str(result['sha256'])[:16]}"
                )
    finally:
        vm.stop()
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], check=False
        )
    (before, old), (after, new) = results.items()
    for figure in ("convert_us", "step_us"):
        was = statistics.median(float(str(r[figure])) for r in old)
        now = statistics.median(float(str(r[figure])) for r in new)
        print(f"{figure[:-3]:8} median {was:6.2f} -> {now:6.2f} µs/envelope ({now / was:.2f} x)")
    same = {str(r["sha256"]) for r in old + new}
    print(f"line protocol identical (SHA-256 of all lines): {len(same) == 1} {min(same)}")
    print(f"points per pass: {before} {old[0]['points']}, {after} {new[0]['points']}")


if __name__ == "__main__":
    main()
