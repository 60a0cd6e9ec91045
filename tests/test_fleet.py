"""The fleet simulator: valid envelopes, a realistic mix, outages delivered late and in order."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

from agent import wire
from agent.catalogue import problems
from fleet.scenario import SYSTEM_OUTAGE_S, VERDICTS, Fleet, Plan, PlannedCheck
from tests.servers import REPO, CollectorProcess, Mosquitto

T0 = 1_795_000_000.0


def decode(topic: str, payload: bytes) -> wire.Envelope | wire.Status:
    identity = wire.parse_topic("commune", topic)
    if identity.kind == "status":
        return wire.decode_status(payload, identity)
    return wire.decode_envelope(payload, identity)


def test_every_message_passes_the_collectors_validation_and_a_seed_replays_exactly() -> None:
    def run() -> list[tuple[str, bytes, bool]]:
        fleet = Fleet("dong-nai", ["la-nga", "phu-hoa"], 3, seed=7)
        messages = fleet.births(T0)
        for step in range(30):
            for agent in fleet.agents:
                messages += fleet.cycle(agent, T0 + 60 * step)
        return messages + fleet.goodbyes(T0 + 1800)

    first = run()
    assert first == run()
    decoded = [decode(topic, payload) for topic, payload, _ in first]
    assert sum(isinstance(d, wire.Status) for d in decoded) == 2 * 2 * 4
    checks = {s.check for d in decoded if isinstance(d, wire.Envelope) for s in d.samples}
    assert checks == {"host", "antivirus", "link", "snmp", "polycom"}


def test_the_anti_malware_mix_follows_the_configured_shares() -> None:
    fleet = Fleet("dong-nai", [f"c{i}" for i in range(40)], 50, seed=3)
    pcs = [a for a in fleet.agents if not a.poller]
    for verdict, share in VERDICTS.items():
        observed = sum(a.verdict == verdict for a in pcs) / len(pcs)
        assert abs(observed - share) < 0.02, (verdict, observed)


def test_simulated_disks_fill_slowly_and_few_are_near_full() -> None:
    """The demo's 40 PCs once jumped between 30 and 95 % at every sample, and most paged
    disk_full within minutes: a disk drifts, and about one PC in twenty is near full."""
    fleet = Fleet("dong-nai", [f"c{i}" for i in range(5)], 8, seed=5)
    seen: dict[str, list[float]] = {}
    for step in range(60):  # an hour of minutes
        for agent in fleet.agents:
            for _topic, payload, _ in fleet.cycle(agent, T0 + 60 * step):
                envelope = decode(_topic, payload)
                assert isinstance(envelope, wire.Envelope)
                for sample in envelope.samples:
                    if sample.item == "disk":
                        used = sample.fields["used_percent"]
                        assert isinstance(used, float)
                        seen.setdefault(f"{envelope.commune}/{envelope.agent}", []).append(used)
    assert len(seen) == 40
    for series in seen.values():
        assert max(abs(b - a) for a, b in itertools.pairwise(series)) <= 0.2
    near_full = [pc for pc, series in seen.items() if max(series) >= 90]
    assert len(near_full) <= 6, near_full


def test_at_two_outages_a_day_a_line_is_up_most_of_the_time() -> None:
    fleet = Fleet("dong-nai", [f"c{i}" for i in range(20)], 0, seed=11, outages_per_day=2)
    cycles = delivered = 0
    down_at_start = 0
    for step in range(24 * 60):  # a day of minutes
        if step == 3:
            down_at_start = sum(not c.line_up(T0 + 180) for c in fleet.communes)
        for poller in fleet.agents:
            cycles += 1
            delivered += bool(fleet.cycle(poller, T0 + 60 * step))
    # 2 outages of ~15 min a day: ~2 % of cycles held back; never most of them.
    assert 0 < cycles - delivered < 0.1 * cycles
    assert down_at_start <= 2  # outages are spread over the day, not all at the start


SYSTEMS = (
    PlannedCheck("system", "mot-cua", "https://motcua.dongnai.gov.vn/", "tslcd",
                 system="Hệ thống một cửa điện tử", system_kind="one-stop"),
    PlannedCheck("system", "lis", "https://lis.dongnai.gov.vn/", "internet", system_kind="land"),
    PlannedCheck("system", "lgsp", "lgsp.dongnai.gov.vn:8443", "tslcd", system_kind="lgsp"),
)  # fmt: skip


def test_shared_systems_fail_for_every_commune_at_once_and_with_a_commune_line() -> None:
    fleet = Fleet("dong-nai", [f"c{i}" for i in range(6)], 0, seed=2, outages_per_day=4)
    for poller in fleet.agents:
        poller.plan = Plan(1, "0" * 64, 60.0, SYSTEMS)
    # (system, minute) -> commune -> up, for the communes whose line was up then.
    looks: dict[tuple[str, float], dict[str, bool]] = {}
    samples: list[wire.Sample] = []
    for step in range(24 * 60):
        now = T0 + 60 * step
        for poller in fleet.agents:
            line_up = poller.commune.line_up(now)
            for topic, payload, _ in fleet.cycle(poller, now):
                envelope = decode(topic, payload)
                assert isinstance(envelope, wire.Envelope)
                samples += envelope.samples
                for sample in envelope.samples:
                    if sample.tags["network"] == "tslcd" and sample.ts == now and line_up:
                        seen = looks.setdefault((sample.name, now), {})
                        seen[poller.commune.slug] = bool(sample.fields["up"])
    assert [p for s in samples for p in problems(s)] == []
    assert {s.check for s in samples} == {"system"}
    # A system's own outage is everyone's at the same minutes; otherwise all reach it.
    for name in ("mot-cua", "lgsp"):
        minutes = [seen for (n, _ts), seen in looks.items() if n == name]
        assert all(all(seen.values()) or not any(seen.values()) for seen in minutes)
        assert sum(not any(seen.values()) for seen in minutes) == 2 * SYSTEM_OUTAGE_S // 60
    # A commune whose line is down cannot reach what is behind it: down, delivered late.
    assert any(s.outcome == "down" and s.error.endswith("(no connection)") for s in samples)

    def mean_ttfb(name: str) -> float:
        found = [
            float(s.fields["ttfb_ms"]) for s in samples if s.name == name and s.outcome == "ok"
        ]
        return sum(found) / len(found)

    assert mean_ttfb("lis") > 4 * mean_ttfb("mot-cua")  # the land system is the slow one
    assert {s.tags.get("system") for s in samples if s.name == "mot-cua"} == {
        "Hệ thống một cửa điện tử"
    }


def test_an_enrolled_simulated_agent_plays_the_system_checks_the_collector_sends() -> None:
    from fleet.enrolled import plan_of
    from tests.factories import central_config, signing_key

    key = signing_key()
    payload = central_config(
        {
            "system": [
                {"name": "mot-cua", "url": "https://motcua.dongnai.gov.vn/", "network": "tslcd",
                 "system": "Hệ thống một cửa điện tử", "kind": "one-stop"},
                {"name": "lgsp", "host": "lgsp.dongnai.gov.vn", "port": 8443, "network": "tslcd"},
            ]
        },
        key=key,
    )  # fmt: skip
    identity = wire.TopicIdentity("dong-nai", "la-nga", "pc-01", "config")
    plan = plan_of(payload, identity, {key.id: key.public})
    assert [(c.kind, c.name, c.target, c.system, c.system_kind) for c in plan.checks] == [
        ("system", "mot-cua", "https://motcua.dongnai.gov.vn/", "Hệ thống một cửa điện tử",
         "one-stop"),
        ("system", "lgsp", "lgsp.dongnai.gov.vn:8443", "", ""),
    ]  # fmt: skip


def test_envelopes_written_during_an_outage_arrive_after_it_in_order() -> None:
    fleet = Fleet("dong-nai", ["la-nga"], 1, seed=5, outages_per_day=200)
    pc = fleet.agents[1]
    delivered: list[wire.Envelope] = []
    silent_cycles = 0
    for step in range(600):
        messages = fleet.cycle(pc, T0 + 60 * step)
        silent_cycles += not messages
        delivered += [d for t, p, _ in messages if isinstance(d := decode(t, p), wire.Envelope)]
    assert silent_cycles > 0, "the seed must produce an outage"
    seqs = [e.seq for e in delivered]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    line = [s for e in delivered for s in e.samples if s.check == "link"]
    down = [s for s in line if s.fields["up"] == 0]
    assert down, "the outage's probes say down and are delivered late"
    assert [s.ts for s in line] == sorted(s.ts for s in line)  # their own times, in order


def test_the_fleet_command_feeds_a_running_collector(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", extra="allow_anonymous true").start()
    inventory = REPO / "deploy" / "inventory" / "dong-nai.toml"
    collector = CollectorProcess(
        tmp_path / "collector", broker.port, extra=f'inventory = ["{inventory}"]'
    ).start()
    try:
        time.sleep(1.0)
        command = [sys.executable, "-m", "fleet.cli", "--broker", f"mqtt://127.0.0.1:{broker.port}"]
        command += ["--inventory", str(inventory), "--communes", "3", "--pcs", "4"]
        command += ["--interval", "1", "--duration", "4", "--outages-per-day", "0"]
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _, agents = collector.get("/api/v1/agents")
            assert isinstance(agents, list)
            if len(agents) == 15 and all(a["state"] == "offline" for a in agents):
                break
            time.sleep(0.3)
        # 3 communes x (4 PCs + a poller), all said goodbye when the fleet stopped.
        assert len(agents) == 15 and {a["reason"] for a in agents} == {"stopped"}
        _, province = collector.get("/api/v1/province")
        assert isinstance(province, dict)
        assert province["communes"] == 95
        assert province["communes_by_status"]["no_data"] == 92
        assert province["polycoms_reporting"] == 3
        assert province["pcs_reporting"] == 0  # every agent has stopped: their state is unknown
    finally:
        collector.stop()
        broker.stop()
