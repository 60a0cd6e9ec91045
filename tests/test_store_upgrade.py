"""A store written by an earlier release opens with this one, its history intact.

``tests/data/stores/<release>/`` holds a store made by that release's own code
(``make_store.py``, run on its checkout) and what that release read back from
it. Opened here the way the collector opens it at start, every agent, outage,
alert, silence and spooled point must read back the same, and the monthly
figures must not move.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from collector.alerts.engine import AlertEngine
from collector.alerts.rules import default_rules
from collector.state.migrations import LATEST
from collector.state.store import StateStore

STORES = Path(__file__).parent / "data" / "stores"
sys.path.insert(0, str(STORES))
import make_store  # noqa: E402

RELEASES = sorted(p.name for p in STORES.iterdir() if (p / "state.sqlite").exists())


def known(found: Any, expected: Any) -> Any:
    """``found`` with only what the earlier release knew: the keys of its dicts."""
    if isinstance(found, dict) and isinstance(expected, dict):
        return {k: known(v, expected[k]) for k, v in found.items() if k in expected}
    if isinstance(found, list) and isinstance(expected, list) and len(found) == len(expected):
        return [known(f, e) for f, e in zip(found, expected, strict=True)]
    return found


@pytest.mark.parametrize("release", RELEASES)
def test_a_store_of_an_earlier_release_opens_with_its_history_intact(
    release: str, tmp_path: Path
) -> None:
    shutil.copy(STORES / release / "state.sqlite", tmp_path / "state.sqlite")
    expected = json.loads((STORES / release / "expected.json").read_text())
    # As `commune-collector run` opens it: the store, then the alert engine's tables.
    store = StateStore(tmp_path / "state.sqlite")
    AlertEngine(default_rules()).install(store)
    store.close()
    found = json.loads(json.dumps(make_store.dump(tmp_path, expected["now"])))
    for part in ("agents", "subjects", "outages", "alerts", "silences", "spool", "latest"):
        assert known(found[part], expected[part]) == expected[part], part
    # 0.2.0 on: enrolled agents, their tokens and audit, maintenance windows.
    for part in ("managed", "tokens", "events", "maintenance"):
        if part in expected:
            assert known(found[part], expected[part]) == expected[part], part
    assert known(found["report"], expected["report"]) == expected["report"]
    assert sum(map(len, found["outages"].values())) >= 9
    assert any(a["acked_by"] == "tech-la-nga" for a in found["alerts"])
    if "maintenance" in expected:
        assert len(found["managed"]) == 2 and len(found["events"]) >= 3
        return
    # What later releases added reads as nothing happened: no maintenance, no step.
    assert not any(a["maintenance"] for a in found["alerts"])
    assert found["report"]["maintenance"] == []
    for commune in found["report"]["communes"]:
        assert commune["line_maintenance_s"] == 0.0
        assert commune["line_availability_excl_maintenance"] == commune["line_availability"]


def test_the_upgraded_store_carries_the_latest_schema_version(tmp_path: Path) -> None:
    from collector.state import migrations

    shutil.copy(STORES / RELEASES[0] / "state.sqlite", tmp_path / "state.sqlite")
    with StateStore(tmp_path / "state.sqlite") as store:
        assert [m.version for m in store.migrated] == [m.version for m in migrations.MIGRATIONS]
    with StateStore(tmp_path / "state.sqlite") as again:
        assert again.migrated == []  # nothing twice
    with StateStore(tmp_path / "fresh.sqlite") as fresh, fresh.reading() as db:
        assert migrations.version(db) == migrations.LATEST


def test_a_store_of_a_newer_collector_is_refused_by_name(tmp_path: Path) -> None:
    import sqlite3

    from click.testing import CliRunner

    from collector.cli.main import main
    from collector.state import migrations

    path = tmp_path / "state.sqlite"
    with StateStore(path):
        pass
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {migrations.LATEST + 7}")
    db.close()
    with pytest.raises(migrations.StoreTooNew, match="written by a newer collector"):
        StateStore(path)
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{path}"\n')
    for command in (["run"], ["status"], ["migrate"], ["check-config"]):
        result = CliRunner().invoke(main, [*command, "-c", str(config)])
        assert result.exit_code == 1, (command, result.output)
        assert f"schema version {migrations.LATEST + 7}" in result.output, command
        assert "Traceback" not in result.output


def test_migrate_dry_run_says_what_it_would_do_and_does_nothing(tmp_path: Path) -> None:
    import sqlite3

    from click.testing import CliRunner

    from collector.cli.main import main

    path = tmp_path / "state.sqlite"
    shutil.copy(STORES / RELEASES[0] / "state.sqlite", path)
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{path}"\n')
    before = path.read_bytes()
    result = CliRunner().invoke(main, ["migrate", "-c", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "schema 0; at start the collector applies" in result.output
    assert "1: the 0.1.0 store" in result.output and "2: console sessions" in result.output
    assert "3: enrollment" in result.output
    assert path.read_bytes() == before
    result = CliRunner().invoke(main, ["migrate", "-c", str(config)])
    assert result.exit_code == 0 and f"applied {LATEST} migrations" in result.output
    result = CliRunner().invoke(main, ["check-config", "-c", str(config)])
    assert f"store: schema {LATEST}, up to date" in result.output
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST
    db.close()


def test_a_failing_migration_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from collector.state import migrations

    path = tmp_path / "state.sqlite"
    shutil.copy(STORES / RELEASES[0] / "state.sqlite", path)
    broken = migrations.Migration(99, "broken", ("CREATE TABLE extra (x)", "NOT SQL"))
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    monkeypatch.setattr(migrations, "LATEST", 99)
    with pytest.raises(sqlite3.OperationalError):
        StateStore(path)
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()
    assert "extra" not in tables and "console_logouts" not in tables


def _birth_with_update(agent: str, state: str, version: str, ts: float) -> Any:
    from agent.wire import Status, UpdateReport

    return Status(
        v=1, state="online", agent=agent, province="dong-nai", commune="la-nga", ts=ts,
        version="0.2.0", update=UpdateReport(state=state, version=version, ts=ts),  # type: ignore[arg-type]
    )  # fmt: skip


def _update_rows(store: StateStore) -> list[tuple[Any, ...]]:
    with store.reading() as db:
        return db.execute(
            "SELECT agent_key, state, version, failures FROM agent_updates ORDER BY agent_key"
        ).fetchall()


def test_a_0_2_0_store_takes_update_reports_and_rollouts_after_the_upgrade(
    tmp_path: Path,
) -> None:
    from collector.rollout.rollouts import Rollouts, fleet

    shutil.copy(STORES / "0.2.0" / "state.sqlite", tmp_path / "state.sqlite")
    with StateStore(tmp_path / "state.sqlite") as store:
        assert 8 in [m.version for m in store.migrated]
        assert _update_rows(store) == []  # nothing reported yet: nothing made up
        book = Rollouts(store, lambda: {"0.3.0"})
        assert book.latest() is None and book.orders() == {}
        # The enrolled agent of 0.2.0 is the fleet (the revoked one is not).
        assert [a.key for a in fleet(store)] == ["dong-nai/la-nga/pc-01"]
        store.apply(statuses=[(_birth_with_update("pc-01", "committed", "0.3.0", 2e9), 2e9)])
        assert _update_rows(store) == [("dong-nai/la-nga/pc-01", "committed", "0.3.0", 0)]
        [agent] = fleet(store)
        assert agent.update_state == "committed" and agent.version == "0.2.0"


def test_a_version_7_store_gains_the_rollout_tables_with_its_agents_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from collector.rollout import registry
    from collector.state import migrations

    path = tmp_path / "state.sqlite"
    seven = tuple(m for m in migrations.MIGRATIONS if m.version <= 7)
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", seven)
        patch.setattr(migrations, "LATEST", 7)
        with StateStore(path) as store, store.transaction() as db:
            # As the collector of schema 7 wrote it (its columns, not today's).
            db.execute(
                "INSERT INTO managed_agents (agent_key, province, commune, agent, username, "
                "profile, token_id, enrolled_at, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("dong-nai/la-nga/pc-07", "dong-nai", "la-nga", "pc-07",
                 "dong-nai/la-nga/pc-07@1", "office", "t", 1.0, 1),
            )  # fmt: skip
            registry.config_sent(db, "dong-nai/la-nga/pc-07", 4, "ab" * 32, 2.0, "k")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 7
    db.close()
    with StateStore(path) as store:
        assert [m.version for m in store.migrated] == list(range(8, migrations.LATEST + 1))
        [managed] = registry.managed(store)
        assert (managed.config_version, managed.config_hash, managed.config_key) == (
            4, "ab" * 32, "k",
        )  # fmt: skip
        birth = _birth_with_update("pc-07", "refused", "0.3.0", 3.0)
        store.apply(statuses=[(birth, 3.0)])
        store.apply(statuses=[(birth, 4.0)])  # the same birth again (retained): one failure
        store.apply(statuses=[(_birth_with_update("pc-07", "refused", "0.3.0", 5.0), 5.0)])
        assert _update_rows(store) == [("dong-nai/la-nga/pc-07", "refused", "0.3.0", 2)]
        store.apply(statuses=[(_birth_with_update("pc-07", "failed", "0.3.0", 1.0), 6.0)])
        assert _update_rows(store)[0][1] == "refused"  # an older report changes nothing
        store.apply(statuses=[(_birth_with_update("pc-07", "committed", "0.3.0", 7.0), 7.0)])
        assert _update_rows(store) == [("dong-nai/la-nga/pc-07", "committed", "0.3.0", 0)]


def test_a_0_2_0_store_reckons_its_pcs_certificates_and_records_the_next(tmp_path: Path) -> None:
    """Migration 9: the client certificates 0.2.0 signed have no recorded end (0: the
    watch reckons enrolled + client_cert_days); an enrollment now records its own."""
    from collector.alerts.certificates import pc_certificates
    from collector.rollout import registry

    shutil.copy(STORES / "0.2.0" / "state.sqlite", tmp_path / "state.sqlite")
    with StateStore(tmp_path / "state.sqlite") as store:
        assert 9 in [m.version for m in store.migrated]
        with store.transaction() as db:
            before = {key: expires for key, expires, _ in registry.client_certificates(db)}
            assert set(before.values()) <= {0.0}  # nothing made up
            registry.enrolled(
                db, province="dong-nai", commune="la-nga", agent="pc-09",
                username="dong-nai/la-nga/pc-09@1", profile="office", token_id="t",
                now=2e9, generation=1, cert_serial="abc", cert_expires=2e9 + 825 * 86400,
            )  # fmt: skip
            rows = registry.client_certificates(db)
        assert ("dong-nai/la-nga/pc-09", 2e9 + 825 * 86400, 2e9) in rows
        found = pc_certificates(rows, 825, 2e9)
        assert found is not None and found.what == f"{len(rows)} PCs"


def test_a_0_2_0_store_gains_the_response_time_tables_and_counts_answers(
    tmp_path: Path,
) -> None:
    """Migration 10: the shared systems' response-time histograms start empty (nothing
    made up for the months before) and count what comes after."""
    from collector.state import systemtimes
    from tests.factories import envelope, system

    shutil.copy(STORES / "0.2.0" / "state.sqlite", tmp_path / "state.sqlite")
    with StateStore(tmp_path / "state.sqlite") as store:
        assert 10 in [m.version for m in store.migrated]
        before = len(store.subjects())
        store.apply([envelope(1, system(2e9, total_ms=420.0), agent="poller")])
        [probe] = store.subjects("system")
        assert len(store.subjects()) == before + 1
        daily = store.system_times([probe.id], 2e9 - 86400, 2e9 + 1, hourly=False)
        hourly = store.system_times([probe.id], 2e9 - 3600, 2e9 + 1, hourly=True)
    assert daily == hourly == {probe.id: {systemtimes.bucket_of(420.0): 1}}


def test_a_0_2_0_store_keeps_its_latest_samples_without_the_index_by_kind(
    tmp_path: Path,
) -> None:
    """Migration 11: the index of latest samples by check kind goes; every latest sample
    stays, read by kind under a place as before, and a sample of another kind under
    the same name still takes its row's kind."""
    from agent.wire import Sample
    from tests.factories import envelope

    def sample(ts: float, check: str, name: str) -> Sample:
        return Sample(ts=ts, check=check, name=name, outcome="ok", fields={"up": 1})

    shutil.copy(STORES / "0.2.0" / "state.sqlite", tmp_path / "state.sqlite")
    with StateStore(tmp_path / "state.sqlite") as store:
        with store.reading() as db:
            indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            rows = db.execute("SELECT COUNT(*) FROM latest").fetchone()[0]
        assert "latest_by_check" not in indexes
        assert rows > 0
        kinds = {s.check for a in store.agents() for s in store.latest(a.agent_key)}
        for kind in kinds:
            assert store.latest_of(kind), kind
        store.apply([envelope(1, sample(2e9, check="host", name="renamed"), agent="pc-x")])
        store.apply([envelope(2, sample(2e9 + 60, check="link", name="renamed"), agent="pc-x")])
        [moved] = [s for s in store.latest_of("link") if s.name == "renamed"]
        assert moved.ts == 2e9 + 60
        assert not [s for s in store.latest_of("host") if s.name == "renamed"]


def test_a_0_2_0_store_keeps_its_lines_history_in_a_row_a_day(tmp_path: Path) -> None:
    """Migration 13: the 5-minute RTT and loss of a 0.2.0 store (a month of one commune)
    read back as they were, to 3 significant digits, from a fraction of the pages."""
    import sqlite3

    from collector.state.packed import half

    path = tmp_path / "state.sqlite"
    shutil.copy(STORES / "0.2.0" / "state.sqlite", path)
    db = sqlite3.connect(path)
    rtt = db.execute("SELECT place, bucket, rtt FROM rtt_history ORDER BY bucket").fetchall()
    loss = db.execute("SELECT place, bucket, loss FROM loss_history ORDER BY bucket").fetchall()
    pages = "SELECT COUNT(*) FROM dbstat WHERE name LIKE ?"
    before = sum(db.execute(pages, (f"%{t}%",)).fetchone()[0] for t in ("rtt", "loss"))
    db.close()
    assert len(rtt) == len(loss) > 8000
    with StateStore(path) as store:
        assert 13 in [m.version for m in store.migrated]
        for old, read in ((rtt, store.rtt_history), (loss, store.loss_history)):
            for place in {p for p, _, _ in old}:
                kept = [(float(b), half(v)) for p, b, v in old if p == place]
                assert read(place, 0) == kept
                assert read(place, kept[-100][0]) == kept[-100:]
    db = sqlite3.connect(path)
    after = db.execute(pages, ("%line_history%",)).fetchone()[0]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert after * 5 < before, (before, after)
    assert not {"rtt_history", "loss_history"} & tables


def test_a_version_10_store_keeps_its_histograms_and_outages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 13: response-time counts one row per bucket become one row per probe and
    hour (day), the outages a table keyed by subject and start; nothing read changes."""
    import sqlite3

    from collector.state import migrations, systemtimes
    from collector.state.availability import Outage
    from tests.factories import envelope, system

    path = tmp_path / "state.sqlite"
    hour, day = systemtimes.hour_of(2e9), systemtimes.day_of(2e9)
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:10])
        patch.setattr(migrations, "LATEST", 10)
        with StateStore(path) as store, store.transaction() as db:
            # As the collector of schema 10 wrote them.
            db.execute(
                "INSERT INTO subjects VALUES (7, 'dong-nai/la-nga/poller', 'system', "
                "'mot-cua', 'https://motcua.dongnai.gov.vn/', 'tslcd', 1.9e9, 'up', 1.9e9, 2e9)"
            )
            db.executemany(
                "INSERT INTO outages VALUES (7, ?, ?)",
                [(1.95e9, 1.95e9 + 600.5), (1.99e9 + 0.25, None)],
            )
            db.executemany(
                "INSERT INTO system_times_hourly VALUES (7, ?, ?, ?)",
                [(hour, 30, 12), (hour, 31, 40), (hour - 1, 33, 2)],
            )
            db.executemany(
                "INSERT INTO system_times_daily VALUES (7, ?, ?, ?)",
                [(day, 30, 300), (day, 31, 1000), (day, 40, 70000)],
            )
    with StateStore(path) as store:
        assert [m.version for m in store.migrated] == list(range(11, migrations.LATEST + 1))
        assert store.outages(7) == [Outage(1.95e9, 1.95e9 + 600.5), Outage(1.99e9 + 0.25, None)]
        hourly = store.system_times([7], (hour - 1) * 3600, (hour + 1) * 3600, hourly=True)
        assert hourly == {7: {30: 12, 31: 40, 33: 2}}
        daily = store.system_times([7], 2e9 - 86400, 2e9 + 86400, hourly=False)
        assert daily == {7: {30: 300, 31: 1000, 40: 65535}}  # a count stops at 65,535
        answer = system(2e9 + 10, total_ms=systemtimes.value_of(31))
        store.apply([envelope(1, answer, agent="poller")])
        later = store.system_times([7], hour * 3600, (hour + 1) * 3600, hourly=True)
        assert later == {7: {30: 12, 31: 41}}
    db = sqlite3.connect(path)
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'outages'").fetchone()
    db.close()
    assert "WITHOUT ROWID" in sql


def test_a_0_2_0_store_spools_each_envelope_once_and_records_what_it_applied(
    tmp_path: Path,
) -> None:
    """Migration 14: the agents of a 0.2.0 store start their record of seqs applied with
    their next envelope (spooled once, however often delivered), and the applied record
    (``[store] ledger = true``) counts every application from then on."""
    import sqlite3

    from collector.outputs.spool import Spool
    from collector.state import applied
    from tests.factories import envelope, link

    path = tmp_path / "state.sqlite"
    shutil.copy(STORES / "0.2.0" / "state.sqlite", path)
    db = sqlite3.connect(path)
    old_agents = db.execute("SELECT agent_key, last_seq FROM agents ORDER BY agent_key").fetchall()
    db.close()
    with StateStore(path) as store:
        assert 14 in [m.version for m in store.migrated]
        spool = Spool(store).attach()
        applied.install(store)
        with store.reading() as read:
            assert read.execute("SELECT COUNT(*) FROM applied_envelopes").fetchone() == (0,)
            kept = read.execute("SELECT agent_key, last_seq FROM agents ORDER BY agent_key")
            assert kept.fetchall() == old_agents
            seqs = read.execute("SELECT agent_key, seqs FROM agents ORDER BY agent_key")
            assert seqs.fetchall() == [
                (key, "" if last is None else f"{last}-{last}") for key, last in old_agents
            ]
        waiting = spool.stats().rows
        key, last = next((key, last) for key, last in old_agents if last is not None)
        province, commune, agent = key.split("/")
        place = {"province": province, "commune": commune, "agent": agent}
        store.apply([envelope(last, link(2e9), **place)], spool=[None])  # delivered again
        assert spool.stats().rows == waiting
        following = envelope(last + 1, link(2e9 + 60), **place)
        store.apply([following], spool=[None])
        store.apply([following, envelope(last + 2, link(2e9 + 120), **place)], spool=[None, None])
        assert spool.stats().rows == waiting + 2
        with store.reading() as read:
            counts = applied.applied_counts(read)
        assert counts == {key: {last: 1, last + 1: 2, last + 2: 1}}


def test_a_0_2_0_store_lists_the_communes_whose_agents_change(tmp_path: Path) -> None:
    """Migration 15: a store of 0.2.0 lists no commune as changed; from then on each
    change of an agent lists its commune (a round reads it again, not every agent)."""
    from tests.factories import status

    path = tmp_path / "state.sqlite"
    shutil.copy(STORES / "0.2.0" / "state.sqlite", path)
    with StateStore(path) as store:
        assert 15 in [m.version for m in store.migrated]
        engine = AlertEngine(default_rules())
        engine.install(store)
        with store.reading() as read:
            assert read.execute("SELECT COUNT(*) FROM agent_changes").fetchone() == (0,)
            key, lost, now = read.execute(
                "SELECT agent_key, (SELECT COUNT(*) FROM agents WHERE state = 'offline' "
                "AND reason != 'stopped'), (SELECT MAX(status_ts) FROM agents) + 60 "
                "FROM agents WHERE state = 'online' ORDER BY agent_key LIMIT 1"
            ).fetchone()
        engine.tick(store, now)
        province, commune, agent = str(key).split("/")
        gone = status("offline", now, reason="connection lost", agent=agent, commune=commune,
                      province=province)  # fmt: skip
        store.apply(statuses=[(gone, now)], received=now)
        with store.reading() as read:
            changed = read.execute("SELECT province, commune FROM agent_changes").fetchall()
        assert changed == [(province, commune)]
        engine.tick(store, now + 10)
        assert engine._held.reads_all == 1
        total = sum(t.lost for t in engine._held.tallies())
        assert total == lost + 1


def test_a_0_2_0_store_keeps_its_outages_and_bounds_the_new_ones(tmp_path: Path) -> None:
    """Migration 16: the outages of a 0.2.0 store read back the same, their bounds
    unknown, so a late sample moves only their subject's current change, as before; a
    change applied after the upgrade records what bounds it."""
    import sqlite3

    from collector.state.availability import Outage
    from tests.factories import envelope, link

    path = tmp_path / "state.sqlite"
    shutil.copy(STORES / "0.2.0" / "state.sqlite", path)
    db = sqlite3.connect(path)
    before = db.execute("SELECT * FROM outages ORDER BY subject_id, start").fetchall()
    db.close()
    # pc-01's line: down [1790989200, 1791001800), up since; its last sample 1793465400.
    start, end, last = 1790989200.0, 1791001800.0, 1793465400.0
    place = {"province": "dong-nai", "commune": "la-nga", "agent": "pc-01"}

    def line(ts: float, up: bool) -> Any:
        return link(ts, up, target="10.75.0.1")

    with StateStore(path) as store:
        assert 16 in [m.version for m in store.migrated]
        with store.reading() as read:
            rows = read.execute(
                "SELECT subject_id, start, end, up_seen, down_seen, late_gap FROM outages "
                "ORDER BY subject_id, start"
            ).fetchall()
        assert rows == [(*row, None, None, None) for row in before]
        assert {s.revised for s in store.subjects()} == {0}
        # Late "down" samples before the start say nothing without its bounds (a closed
        # outage, not the current change); a late "up" inside it moves the current
        # change, its end, back, as it always did.
        store.apply([envelope(4400, line(start - 600, False), **place)])
        store.apply([envelope(4401, line(end - 600, True), **place)])
        assert store.outages(1) == [Outage(start, end - 600)]
        [line_subject] = store.subjects(place="dong-nai/la-nga/pc-01", kind="link")
        assert (line_subject.since, line_subject.revised) == (end - 600, 1)
        # After the upgrade, each change records the last sample of the state before it.
        store.apply([envelope(4465, line(last + 60, False), **place)])
        store.apply([envelope(4466, line(last + 120, True), **place)])
        with store.reading() as read:
            bounds = read.execute(
                "SELECT start, end, up_seen, down_seen FROM outages WHERE subject_id = 1 "
                "ORDER BY start"
            ).fetchall()
        assert bounds[-1] == (last + 60, last + 120, last, last + 60)
        assert store.subjects(place="dong-nai/la-nga/pc-01", kind="link")[0].since == last + 120
