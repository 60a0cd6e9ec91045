"""snmp check against real device recordings (snmpsim) and a live net-snmp snmpd."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent.checks.base import Check
from agent.checks.options import InterfaceFilter, SnmpOptions
from agent.checks.snmp import SnmpCheck
from agent.configtypes import Duration, Secret
from agent.runner import close_checks
from agent.scheduler import Scheduler
from agent.snmp.client import close_engine
from agent.stats import AgentStats
from agent.wakeup import Wakeup
from agent.wire import Sample
from tests.conftest import recording
from tests.servers import Snmpd, SnmpSim, free_port


def snmprec_column(text: str, column: str) -> dict[str, str | int]:
    """Ground truth straight from a recording: index -> value of one column."""
    values: dict[str, str | int] = {}
    for line in text.splitlines():
        oid, _, rest = line.partition("|")
        kind, _, value = rest.partition("|")
        if not oid.startswith(column + "."):
            continue
        index = oid[len(column) + 1 :]
        if kind.endswith("x"):
            value = bytes.fromhex(value).decode("utf-8", "replace")
        values[index] = int(value) if kind in ("2", "65", "66", "70") else value
    return values


def poll(options: SnmpOptions, times: int = 1, pause: float = 0.0) -> list[list[Sample]]:
    async def go() -> list[list[Sample]]:
        check = SnmpCheck(options)
        runs = []
        try:
            for attempt in range(times):
                if attempt:
                    await asyncio.sleep(pause)
                runs.append(await check.collect())
        finally:
            close_engine()
        return runs

    return asyncio.run(go())


def interfaces(samples: list[Sample]) -> dict[str, Sample]:
    return {s.target: s for s in samples if s.item == "interface"}


@pytest.mark.parametrize(
    ("community", "relative", "descr_start"),
    [
        ("huawei-s5720", "network/router/huawei-s5720.snmprec.bz2", "S5720-36C-EI-AC"),
        ("cisco-c3560", "network/switch/cisco-c3560.snmprec.bz2", "Cisco IOS Software, C3560"),
    ],
)
def test_real_recordings_match_ground_truth(
    snmpsim: SnmpSim, community: str, relative: str, descr_start: str
) -> None:
    truth = recording(relative)
    names = snmprec_column(truth, "1.3.6.1.2.1.31.1.1.1.1")
    oper = snmprec_column(truth, "1.3.6.1.2.1.2.2.1.8")
    high_speed = snmprec_column(truth, "1.3.6.1.2.1.31.1.1.1.15")
    hc = snmprec_column(truth, "1.3.6.1.2.1.31.1.1.1.6")
    [samples] = poll(
        SnmpOptions(name="dev", host="127.0.0.1", port=snmpsim.port, community=Secret(community))
    )
    main = samples[0]
    assert main.outcome == "ok", main.error
    assert str(main.fields["sys_descr"]).startswith(descr_start)
    found = interfaces(samples)
    assert set(found) == set(names.values())
    assert main.fields["interfaces"] == len(names)
    assert main.fields["interfaces_up"] == sum(1 for v in oper.values() if v == 1)
    for index, name in names.items():
        sample = found[str(name)]
        assert sample.tags["ifindex"] == index
        assert sample.fields["oper_status"] == oper[index]
        assert sample.fields["oper_up"] is (oper[index] == 1)
        if high_speed.get(index):
            assert sample.fields["speed_bps"] == int(high_speed[index]) * 1_000_000
        assert sample.fields["counters"] == (64 if index in hc else 32)


def test_32_bit_counters_when_the_device_has_no_64_bit_ones(snmpsim: SnmpSim) -> None:
    truth = recording("network/router/cisco-unmarked-0.snmprec.bz2")
    hc = snmprec_column(truth, "1.3.6.1.2.1.31.1.1.1.6")
    [samples] = poll(
        SnmpOptions(
            name="old", host="127.0.0.1", port=snmpsim.port, community=Secret("cisco-unmarked")
        )
    )
    counters = {s.tags["ifindex"]: s.fields["counters"] for s in samples if s.item == "interface"}
    assert counters
    assert all(width == (64 if index in hc else 32) for index, width in counters.items())
    assert list(counters.values()).count(32) >= 20


def test_include_and_exclude_filters(snmpsim: SnmpSim) -> None:
    options = SnmpOptions(
        name="sw",
        host="127.0.0.1",
        port=snmpsim.port,
        community=Secret("huawei-s5720"),
        interfaces=InterfaceFilter(
            include=["GigabitEthernet*", "Vlanif*"], exclude=["GigabitEthernet0/0/1"]
        ),
    )
    [samples] = poll(options)
    names = set(interfaces(samples))
    assert names
    assert all(n.startswith(("GigabitEthernet", "Vlanif")) for n in names)
    assert "GigabitEthernet0/0/1" not in names


def test_v2c_rates_from_live_counters(snmpd: Snmpd) -> None:
    """Traffic sent through loopback between two polls shows up as a rate, below the speed."""
    options = SnmpOptions(
        name="host",
        host="127.0.0.1",
        port=snmpd.port,
        community=Secret("public"),
        interfaces=InterfaceFilter(include=["lo"]),
    )

    async def go() -> list[list[Sample]]:
        check = SnmpCheck(options)
        try:
            runs = [await check.collect()]
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind(("127.0.0.1", 0))
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(100):  # 100 kB: well under lo's reported 10 Mb/s
                sender.sendto(b"x" * 1000, sink.getsockname())
            sender.close()
            sink.close()
            # net-snmp caches interface counters for a few seconds (more on a busy
            # machine): poll until they move.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                runs.append(await check.collect())
                if float(interfaces(runs[-1])["lo"].fields.get("in_bps", 0)) > 0:
                    break
            return runs
        finally:
            close_engine()

    runs = asyncio.run(go())
    lo_first = interfaces(runs[0])["lo"]
    lo_last = interfaces(runs[-1])["lo"]
    assert "in_bps" not in lo_first.fields  # no rate from a single reading
    assert lo_last.fields["oper_up"] is True
    assert lo_last.fields["speed_bps"] == 10_000_000
    assert 100 * 1000 * 8 / 10 <= float(lo_last.fields["in_bps"]) <= 10_000_000
    assert float(lo_last.fields["in_errors_ps"]) == 0.0


def v3(snmpd: Snmpd, auth_key: str, **extra: object) -> SnmpOptions:
    return SnmpOptions(
        name="v3",
        host="127.0.0.1",
        port=snmpd.port,
        version="3",
        user=snmpd.USER,
        auth_protocol="SHA",
        auth_key=Secret(auth_key),
        priv_protocol="AES",
        priv_key=Secret(snmpd.PRIV),
        **extra,
    )


def test_v3_auth_priv(snmpd: Snmpd) -> None:
    [samples] = poll(v3(snmpd, snmpd.AUTH))
    assert samples[0].outcome == "ok", samples[0].error
    truth = subprocess.run(
        ["snmpget", "-v2c", "-c", "public", "-Oqv", f"127.0.0.1:{snmpd.port}", "1.3.6.1.2.1.1.5.0"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert samples[0].fields["sys_name"] == truth.stdout.strip().strip('"')
    assert "lo" in interfaces(samples)


def test_v3_wrong_key_is_reported(snmpd: Snmpd) -> None:
    [samples] = poll(v3(snmpd, "not-the-key", timeout=Duration(4)))
    assert samples[0].outcome in ("bad_response", "timeout")
    assert samples[0].fields["up"] == 0
    assert samples[0].error


def test_wrong_community_times_out(snmpd: Snmpd) -> None:
    [samples] = poll(
        SnmpOptions(
            name="x",
            host="127.0.0.1",
            port=snmpd.port,
            community=Secret("wrong"),
            timeout=Duration(2),
        )
    )
    assert samples[0].outcome == "timeout"
    assert samples[0].fields == {"up": 0}


def test_a_dead_device_does_not_delay_the_others(snmpsim: SnmpSim) -> None:
    dead = SnmpCheck(
        SnmpOptions(
            name="dead",
            host="127.0.0.1",
            port=free_port(socket.SOCK_DGRAM),
            timeout=Duration(3),
            interval=Duration(10),
        )
    )
    alive = SnmpCheck(
        SnmpOptions(
            name="alive",
            host="127.0.0.1",
            port=snmpsim.port,
            community=Secret("cisco-c3560"),
            interval=Duration(0.5),
        )
    )
    stored: list[tuple[str, float, str]] = []
    started = time.monotonic()
    stop = Wakeup()

    def store(check: Check[Any], samples: list[Sample]) -> None:
        stored.append((check.name, time.monotonic() - started, samples[0].outcome))
        # Waited on, not timed: on a busy machine a poll may outlast the interval.
        done = sum(1 for name, _, outcome in stored if name == "alive" and outcome == "ok")
        if done >= 4 and any(name == "dead" for name, _, _ in stored):
            stop.stop()

    sched = Scheduler([dead, alive], 60, store, AgentStats(), jitter=False)
    timer = threading.Timer(60.0, stop.stop)  # a bound, should the scheduler not run them
    timer.start()
    try:
        sched.run(stop)
    finally:
        timer.cancel()
        stop.close()
        close_checks([], engine=True)  # the engine, on its loop, and the loop
    alive_runs = [t for name, t, outcome in stored if name == "alive" and outcome == "ok"]
    dead_runs = [(t, outcome) for name, t, outcome in stored if name == "dead"]
    assert len(alive_runs) >= 4
    # Not held behind the dead device: its first answer came before the dead one's
    # 3 s timeout could have passed.
    assert alive_runs[0] < 3.0
    assert dead_runs and dead_runs[0][1] == "refused"


@pytest.fixture
def garbage_agent() -> Iterator[int]:
    """A UDP service on the SNMP path that answers every request with junk."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                _data, peer = server.recvfrom(4096)
            except TimeoutError:
                continue
            server.sendto(b"\x30\x82\xff\xffnot snmp at all", peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_a_device_answering_garbage_is_a_bad_response(garbage_agent: int) -> None:
    [samples] = poll(
        SnmpOptions(name="junk", host="127.0.0.1", port=garbage_agent, timeout=Duration(3))
    )
    assert samples[0].outcome == "bad_response"
    assert "undecodable" in samples[0].error
    assert samples[0].fields == {"up": 0}


def test_a_plain_v2c_poll_does_not_load_the_snmp_engine(snmpsim: SnmpSim) -> None:
    """v2c goes through the light protocol layer; only v3 needs pysnmp's engine."""
    code = (
        "import asyncio, sys\n"
        "from agent.checks.options import SnmpOptions\nfrom agent.checks.snmp import SnmpCheck\n"
        "from agent.configtypes import Secret\n"
        f"c = SnmpCheck(SnmpOptions(name='r', host='127.0.0.1', port={snmpsim.port}, "
        "community=Secret('huawei-s5720')))\n"
        "s = asyncio.run(c.collect())\n"
        "print(s[0].outcome, len(s), 'pysnmp.entity.engine' in sys.modules, 'pysmi' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["ok", "40", "False", "False"]
