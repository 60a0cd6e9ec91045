"""The chaos soak's checker, on a real small run: agents with their creation ledgers
publishing through the outbox and publisher, Mosquitto, the collector with its applied
record, its sink and VictoriaMetrics; then the same run altered, one fault at a time,
to see the checker catch each: a loss, a duplicate point, an outage missed or invented,
and account a drop the outbox counted."""

from __future__ import annotations

import gc
import json
import os
import shutil
import sqlite3
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.configtypes import BrokerSection
from agent.ledger import ENVIRONMENT, ledger_name
from agent.outbox import Outbox
from agent.publisher import BrokerSettings, Publisher, StatusMessages
from agent.stats import AgentStats
from agent.wire import Sample, encode
from collector.outputs.spool import WAITING
from fleet import soakcheck
from fleet.soakcheck import SoakRun, check
from tests.factories import envelope, link, status
from tests.servers import CollectorProcess, Mosquitto, VictoriaMetrics, wait_for

INTERVAL = 10.0
ENVELOPES = 12
AGENTS = [
    ("dong-nai", "la-nga", "pc-01"),
    ("dong-nai", "la-nga", "pc-02"),
    ("dong-nai", "phu-hoa", "pc-01"),
]
#: pc-01 of La Ngà sees its gateway down for its 5th to 8th probes.
DOWN = range(4, 8)


def _key(place: tuple[str, str, str]) -> str:
    return "/".join(place)


def _settled(state: Path, expected: int) -> bool:
    if not state.exists():
        return False
    db = sqlite3.connect(f"{state.resolve().as_uri()}?mode=ro", uri=True)
    try:
        (applied,) = db.execute("SELECT COUNT(*) FROM applied_envelopes").fetchone()
        (waiting,) = db.execute(WAITING).fetchone()
    except sqlite3.OperationalError:  # the collector is still making the store
        return False
    finally:
        db.close()
    return bool(applied == expected and waiting == 0)


def _agent(run_dir: Path, port: int, place: tuple[str, str, str], t0: float) -> None:
    """One agent's envelopes through its own outbox and publisher, until all are sent."""
    province, commune, agent = place
    outbox = Outbox(run_dir / "agents" / f"{commune}-{agent}" / "outbox.sqlite", 3600, 10**7)
    root = f"commune/{province}/{commune}/{agent}"
    online = encode(
        status("online", t0, interval=INTERVAL, province=province, commune=commune, agent=agent)
    )
    publisher = Publisher(
        BrokerSettings(BrokerSection(url=f"mqtt://127.0.0.1:{port}"), f"{commune}-{agent}"),
        outbox,
        StatusMessages(f"{root}/status", lambda: online, lambda: online, online),
        AgentStats(),
    )
    publisher.start()
    try:
        for i in range(ENVELOPES):
            down = (commune, agent) == ("la-nga", "pc-01") and i in DOWN
            sample = link(t0 + INTERVAL * i, up=not down, target="10.10.1.1")

            def payload(seq: int, sample: Sample = sample) -> bytes:
                return encode(
                    envelope(seq, sample, province=province, commune=commune, agent=agent)
                )

            outbox.put(f"{root}/data", payload)
            publisher.notify()
        wait_for(lambda: outbox.stats().rows == 0, 60, "the outbox drained")
    finally:
        publisher.stop(timeout=2)
        outbox.close()


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished run's directory, as the harness leaves it; VictoriaMetrics still up."""
    work = tmp_path_factory.mktemp("soak")
    run_dir = work / "run"
    before = os.environ.get(ENVIRONMENT)
    os.environ[ENVIRONMENT] = str(run_dir / "ledger")
    broker = Mosquitto(work / "broker").start()
    vm = VictoriaMetrics(work / "vm").start()
    collector = CollectorProcess(
        run_dir / "collector", broker.port, sink_url=vm.url, store="ledger = true"
    ).start()
    t0 = float(int(time.time()) - 3600)
    try:
        wait_for(lambda: "subscribed to" in collector.log, 30, "the collector subscribed")
        for place in AGENTS:
            _agent(run_dir, broker.port, place, t0)
        # paho closes a stopped client's wake-up socket pair only when it is collected.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        expected = ENVELOPES * len(AGENTS)
        wait_for(lambda: _settled(collector.state, expected), 60, "the collector applied all")
    finally:
        collector.stop()
        broker.stop()
        if before is None:
            del os.environ[ENVIRONMENT]
        else:
            os.environ[ENVIRONMENT] = before
    first_down, first_up = t0 + INTERVAL * DOWN[0], t0 + INTERVAL * (DOWN[-1] + 1)
    # The harness cut the target a little before the probe saw it, and restored it so.
    cut: dict[str, object] = {
        "kind": "target_down",
        "agent_key": "dong-nai/la-nga/pc-01",
        "check": "tslcd",
    }
    cut |= {"target": "10.10.1.1", "start": first_down - 4, "end": first_up - 3}
    faults = [
        {"kind": "fault", "fault": "kill_collector", "at": t0, "recovered": t0 + 7.5},
        {"kind": "fault", "fault": "kill_collector", "at": t0 + 60, "recovered": t0 + 62},
    ]
    (run_dir / "truth.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [cut, *faults]))
    described = {
        "ledger": "ledger",
        "store": "collector/state.sqlite",
        "victoria_url": vm.url,
        "probe_interval": INTERVAL,
        "outboxes": {_key(a): f"agents/{a[1]}-{a[2]}/outbox.sqlite" for a in AGENTS},
    }
    (run_dir / "run.json").write_text(json.dumps(described))
    try:
        yield run_dir
    finally:
        vm.stop()


def _copy(soak: Path, to: Path) -> SoakRun:
    """The run as a new directory: what a test alters is its own."""
    shutil.copytree(soak, to / "run")
    return SoakRun.from_dir(to / "run")


def _execute(path: Path, statement: str, *args: object) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute(statement, args)
    db.close()


def test_a_clean_run_loses_nothing(soak: Path) -> None:
    result = CliRunner().invoke(soakcheck.main, [str(soak)])
    assert result.exit_code == 0, result.output
    verdict = check(SoakRun.from_dir(soak))
    assert verdict.ok, verdict.table()
    assert verdict.created == ENVELOPES * len(AGENTS)
    assert sum(t.applied for t in verdict.agents.values()) == verdict.created
    assert verdict.duplicated_points == verdict.points_missing == verdict.lost == 0
    assert verdict.outage_start_errors == [4.0] and verdict.outage_end_errors == [3.0]
    assert verdict.recovery == {"kill_collector": [7.5, 2.0]}
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("VERDICT: nothing lost: 36 envelopes created")
    assert any(line.startswith("recovery after kill_collector") for line in lines)


def test_an_envelope_missing_from_the_store_is_lost_and_listed(soak: Path, tmp_path: Path) -> None:
    run = _copy(soak, tmp_path)
    [seq] = [
        int(line.split()[0])
        for line in (run.ledger / ledger_name("dong-nai", "phu-hoa", "pc-01"))
        .read_text()
        .splitlines()[5:6]
    ]
    _execute(
        run.store,
        "DELETE FROM applied_envelopes WHERE agent_key = ? AND seq = ?",
        "dong-nai/phu-hoa/pc-01",
        seq,
    )
    verdict = check(run)
    assert not verdict.ok
    assert verdict.lost == 1
    assert verdict.agents["dong-nai/phu-hoa/pc-01"].missing == [seq]
    table = verdict.table()
    [row] = [r for r in table.splitlines() if r.startswith("lost: dong-nai/phu-hoa/pc-01")]
    assert row.endswith(f"| {seq}")
    assert table.splitlines()[-1] == "VERDICT: FAILED: 1 envelopes lost"


def test_a_drop_the_outbox_counted_is_accounted_not_lost(soak: Path, tmp_path: Path) -> None:
    run = _copy(soak, tmp_path)
    key = "dong-nai/la-nga/pc-02"
    first = min(
        int(line.split()[0])
        for line in (run.ledger / ledger_name("dong-nai", "la-nga", "pc-02"))
        .read_text()
        .splitlines()
    )
    _execute(run.store, "DELETE FROM applied_envelopes WHERE agent_key = ? AND seq = ?", key, first)
    _execute(run.outboxes[key], "UPDATE meta SET value = value + 1 WHERE key = 'dropped_size'")
    verdict = check(run)
    assert verdict.ok, verdict.table()
    assert verdict.agents[key].dropped == 1 and verdict.agents[key].missing == [first]
    assert verdict.lost == 0


def test_an_envelope_refused_for_its_clock_is_accounted_one_that_failed_is_lost(
    soak: Path, tmp_path: Path
) -> None:
    run = _copy(soak, tmp_path)
    key = "dong-nai/la-nga/pc-02"
    lines = (run.ledger / ledger_name("dong-nai", "la-nga", "pc-02")).read_text().splitlines()
    clock, failed = (int(line.split()[0]) for line in lines[2:4])
    for seq, reason in ((clock, "clock_ahead"), (failed, "apply_failed")):
        _execute(
            run.store,
            "UPDATE applied_envelopes SET applied = 0, refused = ? WHERE agent_key = ? AND seq = ?",
            reason,
            key,
            seq,
        )
    verdict = check(run)
    assert verdict.agents[key].refused == 1
    assert verdict.agents[key].missing == [failed]
    assert verdict.verdict_line() == "VERDICT: FAILED: 1 envelopes lost"


def test_a_point_written_twice_to_victoriametrics_is_a_duplicate(
    soak: Path, tmp_path: Path
) -> None:
    """Another agent's point, written twice: the clean run's agents are left as they were."""
    run = _copy(soak, tmp_path)
    ts = time.time() - 1800
    tags = "agent=pc-09,commune=la-nga,name=tslcd,province=dong-nai,target=10.10.1.1"
    line = f"link,{tags} up=1 {round(ts * 1000)}"
    for _ in range(2):
        request = urllib.request.Request(
            f"{run.victoria_url}/api/v2/write?precision=ms", data=line.encode(), method="POST"
        )
        urllib.request.urlopen(request, timeout=10).read()
    (run.ledger / ledger_name("dong-nai", "la-nga", "pc-09")).write_text(
        f"5 {ts!r} {ts!r} 1 {ts!r}\n"
    )
    _execute(
        run.store,
        "INSERT INTO applied_envelopes (agent_key, seq, applied, first_at, last_at) "
        "VALUES ('dong-nai/la-nga/pc-09', 5, 1, ?, ?)",
        ts,
        ts,
    )
    verdict = check(run)
    assert verdict.duplicated_points == 1
    assert verdict.lost == 0 and verdict.points_missing == 0
    assert verdict.verdict_line() == "VERDICT: FAILED: 1 points duplicated in the time series"


def test_outages_missing_from_the_store_or_not_caused_are_caught(
    soak: Path, tmp_path: Path
) -> None:
    run = _copy(soak, tmp_path)
    caused = json.loads(run.truth.read_text().splitlines()[0])
    db = sqlite3.connect(run.store)
    with db:
        (subject,) = db.execute(
            "SELECT id FROM subjects WHERE agent_key = ?", (caused["agent_key"],)
        ).fetchone()
        # An outage the harness did not cause, long after the one it did.
        db.execute(
            "INSERT INTO outages (subject_id, start, end) VALUES (?, ?, ?)",
            (subject, caused["end"] + 50, caused["end"] + 70),
        )
    db.close()
    missed = dict(caused, start=caused["start"] - 300, end=caused["start"] - 200)
    with run.truth.open("a") as truth:
        truth.write(json.dumps(missed) + "\n")
    verdict = check(run)
    assert [o.start for o in verdict.outages_missed] == [missed["start"]]
    assert [o.start for o in verdict.outages_unexpected] == [caused["end"] + 50]
    assert verdict.outage_start_errors == [4.0]  # the real one still matches
    assert verdict.verdict_line() == (
        "VERDICT: FAILED: 1 caused outages missing from the store; "
        "1 outages in the store not caused"
    )
    # Outside a probe interval at either end is not the same outage.
    late = replace(run, probe_interval=2.0)
    assert len(check(late).outages_missed) == 2


@pytest.mark.parametrize("end", ["start", "end"])
def test_an_end_a_late_probe_saw_matches_only_inside_its_samples_window(
    soak: Path, tmp_path: Path, end: str
) -> None:
    """A probe run late on a busy machine sees the change past one interval: it still
    places it if the change lies between the samples either side, at most 1.5 intervals
    apart; a missed probe (two intervals), a change outside the window, or an end
    whose sample before it is unknown does not."""
    run = _copy(soak, tmp_path)
    caused = json.loads(run.truth.read_text().splitlines()[0])
    seen = "up_seen" if end == "start" else "down_seen"
    (stored,) = _one(run.store, f"SELECT {end} FROM outages")
    # The probe that saw the change ran 4 s late; the change came 1 s after the sample
    # before it: 11 s off, in a window of 14 s (1.4 intervals).
    _execute(run.store, f"UPDATE outages SET {end} = ?, {seen} = ?", stored + 4,
             stored - INTERVAL)  # fmt: skip
    first = dict(caused, **{end: stored - INTERVAL + 1})
    run.truth.write_text(
        "".join([json.dumps(first) + "\n", *run.truth.read_text().splitlines(True)[1:]])
    )
    verdict = check(run)
    assert verdict.ok, verdict.table()
    errors = verdict.outage_start_errors if end == "start" else verdict.outage_end_errors
    assert errors == [INTERVAL + 3]  # the true error, reported
    assert verdict.outages_by_late_probe == 1
    row = [r for r in verdict.table().splitlines() if r.startswith("outages with an end seen")]
    assert [r.split("|")[1].strip() for r in row] == ["1"]
    for window_start in (
        stored + 4 - 2 * INTERVAL + 0.01,  # a probe missed (and the next a wake-up early)
        stored - INTERVAL + 1.5,  # the change before the sample before it
        None,  # the sample before it unknown (a store from before its bounds were kept)
    ):
        _execute(run.store, f"UPDATE outages SET {seen} = ?", window_start)
        assert len(check(run).outages_missed) == 1, window_start


def _one(path: Path, query: str) -> tuple[object, ...]:
    db = sqlite3.connect(path)
    try:
        return tuple(db.execute(query).fetchone())
    finally:
        db.close()


def test_a_directory_that_is_not_a_run_is_refused_by_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(soakcheck.main, [str(tmp_path)])
    assert result.exit_code == 1
    assert "not a soak's run directory" in result.output


def test_an_applied_envelope_with_no_point_is_missing_from_the_time_series(
    soak: Path, tmp_path: Path
) -> None:
    run = _copy(soak, tmp_path)
    ts = time.time() - 1700  # no point of pc-08's was ever written
    (run.ledger / ledger_name("dong-nai", "la-nga", "pc-08")).write_text(
        f"5 {ts!r} {ts!r} 1 {ts!r}\n"
    )
    _execute(
        run.store,
        "INSERT INTO applied_envelopes (agent_key, seq, applied, first_at, last_at) "
        "VALUES ('dong-nai/la-nga/pc-08', 5, 1, ?, ?)",
        ts,
        ts,
    )
    verdict = check(run)
    assert verdict.points_missing == 1 and verdict.lost == 0
    assert verdict.verdict_line() == (
        "VERDICT: FAILED: 1 applied envelopes missing from the time series"
    )


def test_an_outbox_not_kept_across_a_version_switch_is_caught(soak: Path, tmp_path: Path) -> None:
    """The update's promise: the outbox is the same file after a switch of versions, and
    its seqs one run. Kept: counted, no problem; another file after, or a jump in the
    seqs (an outbox made anew numbers from its creation time): the verdict fails."""
    run = _copy(soak, tmp_path)
    kept, replaced = "dong-nai/la-nga/pc-01", "dong-nai/la-nga/pc-02"
    file = run.outboxes[kept].stat()
    same = [file.st_dev, file.st_ino]
    switch = {"kind": "version_switch", "decisions": ["committed", "rolled_back"]}
    with run.truth.open("a") as truth:
        truth.write(json.dumps(switch | {"agent_key": kept, "before": same, "after": same}) + "\n")
    verdict = check(run)
    assert verdict.ok, verdict.table()
    assert [s.agent_key for s in verdict.switches] == [kept]
    assert _row(verdict.table(), "version switches: agents / outbox kept") == "1 / 1"
    assert _row(verdict.table(), "version switches: launcher decided") == "committed/rolled_back"

    with run.truth.open("a") as truth:
        other = [file.st_dev, file.st_ino + 1]
        truth.write(json.dumps(switch | {"agent_key": replaced, "before": same, "after": other}))
    verdict = check(run)
    assert [b.split(":")[0] for b in verdict.switches_broken] == [replaced]
    assert _row(verdict.table(), "version switches: agents / outbox kept") == "2 / 1"
    assert verdict.verdict_line() == (
        "VERDICT: FAILED: 1 agents' outbox not kept across a version switch"
    )

    # The same file, but its seqs jump: as if the outbox had been made anew.
    lines = (run.ledger / ledger_name("dong-nai", "la-nga", "pc-01")).read_text().splitlines()
    seqs = {int(line.split()[0]): soakcheck.Created(int(line.split()[0]), 0, 0, 1, 0)
            for line in lines}  # fmt: skip
    jumped = dict(seqs) | {max(seqs) + 10**9: soakcheck.Created(max(seqs) + 10**9, 0, 0, 1, 0)}
    [kept_switch] = [s for s in verdict.switches if s.agent_key == kept]
    assert soakcheck.switch_kept(kept_switch, seqs, {}) == ""
    assert "seqs jump from" in soakcheck.switch_kept(kept_switch, jumped, {})


def _row(table: str, name: str) -> str:
    """The value of the table's row ``name``."""
    [value] = [r.split(" | ", 1)[1] for r in table.splitlines() if r.startswith(name)]
    return value
