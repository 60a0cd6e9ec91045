"""Line protocol, and the sink against a real VictoriaMetrics (InfluxDB v2 write API)."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import wire
from agent.wire import Envelope, Sample
from collector.ingest.ingestor import Ingestor, Message
from collector.outputs.lineproto import sample_line
from collector.outputs.sink import SinkSettings
from collector.outputs.sink_process import SinkProcess
from collector.outputs.spool import Spool, frame
from collector.state.store import StateStore
from tests import factories
from tests.servers import DEDUP, VictoriaMetrics, free_port

REPO = Path(__file__).resolve().parent.parent

# Recent, on the hour: the collector refuses samples more than 30 days old.
T0 = float(int(time.time()) // 3600 * 3600 - 3 * 86400)


def envelope(seq: int, up: bool = True, agent: str = "pc-01") -> Envelope:
    """A link probe and a disk, a minute apart per seq: two measurements, one tag each."""
    ts = T0 + 60 * seq
    disk = Sample(
        ts=ts,
        check="host",
        name="host",
        outcome="ok",
        item="disk",
        target="C:\\",
        fields={"used_percent": 40, "total_bytes": 256_000_000_000},
    )
    return factories.envelope(
        seq, factories.link(ts, up, method="icmp", rtt_ms=3.25), disk, agent=agent
    )


def test_line_protocol_shape() -> None:
    env = envelope(0)
    line = sample_line(env, env.samples[0])
    assert line == (
        "link,agent=pc-01,commune=la-nga,method=icmp,name=tslcd,network=tslcd,province=dong-nai,"
        'target=10.10.1.1 up=1.0,rtt_ms=3.25,loss_percent=0.0,success=1.0,outcome="ok" '
        f"{int(T0 * 1000)}"
    )
    disk = sample_line(env, env.samples[1])
    assert disk.startswith("host_disk,") and ",target=C: used_percent=" in disk
    assert "used_percent=40.0" in disk  # integers are written as floats: one type per field


def test_line_protocol_escaping() -> None:
    sample = Sample(
        ts=T0,
        check="snmp",
        name="core sw",
        outcome="ok",
        item="interface",
        target="Gi0/1, uplink=x",
        fields={"alias": 'to "HQ"\\', "oper_up": True},
    )
    env = Envelope(
        v=1, agent="pc-01", province="dong-nai", commune="la-nga", seq=0, ts=T0, samples=[sample]
    )
    line = sample_line(env, sample)
    assert "name=core\\ sw" in line
    assert "target=Gi0/1\\,\\ uplink\\=x" in line
    assert 'alias="to \\"HQ\\"\\\\"' in line
    assert "oper_up=true" in line


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    # As deploy/OPERATIONS.md runs it: a point the sink writes again is kept once.
    server = VictoriaMetrics(tmp_path / "vm", flags=DEDUP).start()
    yield server
    server.stop()


def ingest(store: StateStore, envelopes: list[Envelope]) -> None:
    from agent.wire import encode

    Spool(store).attach()
    ingestor = Ingestor(store, "commune")
    ingestor.process(
        Message(f"commune/dong-nai/la-nga/{e.agent}/data", encode(e), time.time(), lambda: None)
        for e in envelopes
    )


def wait(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError("condition not met")


def test_points_land_in_victoriametrics(tmp_path: Path, vm: VictoriaMetrics) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    ingest(store, [envelope(seq, up=seq % 3 != 0) for seq in range(30)])
    sink = SinkProcess(store.path, SinkSettings(vm.url, "", "province", "commune"))
    sink.start()
    try:
        wait(lambda: Spool(store).stats().rows == 0)
    finally:
        sink.stop()
    [series] = vm.export('{__name__="link_up"}')
    assert series["metric"] == {
        "__name__": "link_up",
        "agent": "pc-01",
        "commune": "la-nga",
        "method": "icmp",
        "name": "tslcd",
        "network": "tslcd",
        "province": "dong-nai",
        "target": "10.10.1.1",
    }
    assert series["timestamps"] == [int((T0 + 60 * s) * 1000) for s in range(30)]
    assert series["values"] == [0 if s % 3 == 0 else 1 for s in range(30)]
    [disk] = vm.export('{__name__="host_disk_used_percent"}')
    assert disk["values"] == [40] * 30
    assert sink.stats.points_written == 60


def test_the_sink_process_writes_is_restarted_and_leaves_with_the_collector(
    tmp_path: Path, vm: VictoriaMetrics
) -> None:
    path = tmp_path / "state.sqlite"
    store = StateStore(path)
    ingest(store, [envelope(seq) for seq in range(10)])
    sink = SinkProcess(path, SinkSettings(vm.url, "", "province", "commune"))
    sink.start()
    try:
        wait(lambda: _empty(store))
        assert sink.stats.points_written == 20 and sink.last_error == ""
        os.kill(sink.pid or 0, signal.SIGKILL)
        wait(lambda: not sink.running)
        assert "the sink process ended (exit code -9)" in sink.last_error
        ingest(store, [envelope(seq) for seq in range(10, 15)])
        sink.ensure_running()  # what the collector's housekeeping does
        wait(lambda: _empty(store))
        # The new process's own 10 (what the killed one wrote lately is written again
        # first, the server may have lost it, but counted once, when first accepted).
        assert sink.restarts == 1 and sink.stats.points_written == 10
    finally:
        sink.stop()
    assert not sink.running
    [series] = vm.export('{__name__="link_up"}')
    assert series["timestamps"] == [int((T0 + 60 * s) * 1000) for s in range(15)]
    # A collector killed with -9 leaves no sink behind writing on its own.
    script = (
        "import sys, time; from pathlib import Path\n"
        "from collector.outputs.sink import SinkSettings\n"
        "from collector.outputs.sink_process import SinkProcess\n"
        f"sink = SinkProcess(Path({str(path)!r}), SinkSettings({vm.url!r}, '', 'p', 'c'))\n"
        "sink.start(); print(sink.pid, flush=True); time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=REPO
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
    wait(lambda: not Path(f"/proc/{child}").exists(), timeout=10)


def test_server_down_for_a_while_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    vm = VictoriaMetrics(tmp_path / "vm", port=port)
    store = StateStore(tmp_path / "state.sqlite")
    sink = SinkProcess(store.path, SinkSettings(vm.url, "", "province", "commune", max_backoff_s=1))
    sink.start()
    try:
        ingest(store, [envelope(seq) for seq in range(20)])
        time.sleep(2)
        assert Spool(store).stats().rows == 20  # nobody to write to: all waits
        assert sink.stats.write_errors >= 1
        vm.start()
        ingest(store, [envelope(seq) for seq in range(20, 40)])
        wait(lambda: Spool(store).stats().rows == 0)
    finally:
        sink.stop()
        vm.stop()
    vm.start()
    try:
        [series] = vm.export('{__name__="link_rtt_ms"}')
    finally:
        vm.stop()
    assert series["timestamps"] == [int((T0 + 60 * s) * 1000) for s in range(40)]


def test_a_point_refused_as_bad_data_is_isolated_and_dropped(tmp_path: Path) -> None:
    """A server answering 400 to any batch holding agent pc-bad: only that row goes."""
    accepted: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            bad = b"agent=pc-bad" in body
            if not bad:
                accepted.append(body)
            self.send_response(400 if bad else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = StateStore(tmp_path / "state.sqlite")
    envelopes = [envelope(seq) for seq in range(9)] + [envelope(9, agent="pc-bad")]
    envelopes += [envelope(seq) for seq in range(10, 16)]
    ingest(store, envelopes)
    sink = SinkProcess(
        store.path, SinkSettings(f"http://127.0.0.1:{server.server_address[1]}", "", "o", "b")
    )
    sink.start()
    try:
        wait(lambda: Spool(store).stats().rows == 0)
    finally:
        sink.stop()
        server.shutdown()
        server.server_close()
    assert sink.stats.rejected_rows == 1
    written = b"\n".join(accepted)
    assert written.count(b"link,") == 15 and b"pc-bad" not in written


def test_the_spool_is_bounded_and_counts_what_it_drops(tmp_path: Path) -> None:
    # The spool holds envelopes as they arrived (the sink makes points of them).
    # A batch's envelopes are one row (a frame): its oldest envelopes go first.
    size = len(frame([wire.encode(envelope(24))] * 10))  # ten of the largest (seq 24)
    store = StateStore(tmp_path / "state.sqlite")
    Spool(store, max_bytes=size + 5).attach()
    ingest(store, [envelope(seq) for seq in range(25)])
    spooled = Spool(store).stats()
    rows, used, dropped = spooled.rows, spooled.bytes, spooled.dropped
    assert (rows, dropped) == (10, 15)
    assert used <= size + 5
    kept = Spool(store).fetch(100)
    assert [p for _, p in kept] == [wire.encode(envelope(seq)) for seq in range(15, 25)]
    # A batch of its own each: whole rows go.
    ingest(store, [envelope(25)])
    ingest(store, [envelope(26)])
    spooled = Spool(store).stats()
    assert (spooled.rows, spooled.dropped) == (10, 17)
    assert [p for _, p in Spool(store).fetch(100)][-2:] == [
        wire.encode(envelope(25)),
        wire.encode(envelope(26)),
    ]


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_row_a_healthy_server_keeps_failing_with_5xx_is_dropped_alone(tmp_path: Path) -> None:
    """A server that answers 500 to any batch holding pc-poison but is healthy (/ping 204):
    after a few tries the batch is split, the row goes alone, counted; never for ever."""
    accepted: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # /ping, the InfluxDB health check
            self.send_response(204 if self.path.startswith("/ping") else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            poison = b"agent=pc-poison" in body
            if not poison:
                accepted.append(body)
            self.send_response(500 if poison else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = serve(Handler)
    store = StateStore(tmp_path / "state.sqlite")
    envelopes = [envelope(seq) for seq in range(5)] + [envelope(5, agent="pc-poison")]
    envelopes += [envelope(seq) for seq in range(6, 12)]
    ingest(store, envelopes)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    sink = SinkProcess(store.path, SinkSettings(url, "", "o", "b", max_backoff_s=0.2))
    sink.start()
    try:
        wait(lambda: Spool(store).stats().rows == 0, timeout=30)
    finally:
        sink.stop()
        server.shutdown()
        server.server_close()
    assert sink.stats.rejected_rows == 1 and sink.stats.write_errors >= 3
    written = b"\n".join(accepted)
    assert written.count(b"link,") == 11 and b"pc-poison" not in written


def test_while_the_server_is_unwell_nothing_is_dropped(tmp_path: Path) -> None:
    """5xx to everything and /ping failing: the server is down, not the row: all waits."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = serve(Handler)
    store = StateStore(tmp_path / "state.sqlite")
    ingest(store, [envelope(seq) for seq in range(6)])
    url = f"http://127.0.0.1:{server.server_address[1]}"
    sink = SinkProcess(store.path, SinkSettings(url, "", "o", "b", max_backoff_s=0.2))
    sink.start()
    try:
        wait(lambda: sink.stats.write_errors >= 6, timeout=30)
    finally:
        sink.stop()
        server.shutdown()
        server.server_close()
    assert sink.stats.rejected_rows == 0 and Spool(store).stats().rows == 6


def test_a_row_our_converter_fails_on_is_dropped_alone(tmp_path: Path) -> None:
    """Whatever the error turning a spooled envelope into points (a bug of ours
    included), that row alone is dropped, counted; the rest reaches the server."""
    from collector.outputs.sink import Sink

    class Buggy(Sink):
        @staticmethod
        def convert(payload: bytes) -> bytes:
            if b"pc-buggy" in payload:
                raise ZeroDivisionError("a bug of ours")
            return Sink.convert(payload)

    vm = VictoriaMetrics(tmp_path / "vm").start()
    store = StateStore(tmp_path / "state.sqlite")
    ingest(store, [envelope(0), envelope(1, agent="pc-buggy"), envelope(2)])
    # Rows no collector spools (it validated each), which the sink's decoder, trusting
    # the spool, still refuses: cut short, another schema version, a field of no type.
    stranger = wire.encode(envelope(3)).replace(b'"v":1', b'"v":2')
    nested = wire.encode(envelope(4)).replace(b'"rtt_ms":3.25', b'"rtt_ms":[3.25]')
    with store.transaction() as db:
        Spool(store).enqueue(db, [wire.encode(envelope(5))[:40], stranger, nested])
    sink = Buggy(Spool(store), SinkSettings(vm.url, "", "o", "b"))
    try:
        assert sink.step(0.0) == 0.0
        assert sink.stats.rejected_rows == 4 and Spool(store).stats().rows == 0
        [series] = vm.export('{__name__="link_rtt_ms"}')
        assert series["metric"]["agent"] == "pc-01" and len(series["timestamps"]) == 2
    finally:
        sink.close()
        vm.stop()
        store.close()


def _empty(store: StateStore) -> bool:
    stats = Spool(store).stats()
    return (stats.rows, stats.bytes) == (0, 0)


def test_a_kill_9_of_victoriametrics_loses_none_of_what_it_had_accepted(tmp_path: Path) -> None:
    """The chaos soak's finding (``bench/soak.py --short --seed 5 --minutes 2``, its
    kill_vm): VictoriaMetrics keeps accepted points in memory up to 5 s, and a kill -9
    lost them though the sink had seen them accepted and let the spool forget them. The
    sink writes its recent batches again once a write failed; with deduplication on, as
    OPERATIONS.md says to run it, each point is kept once."""
    from collector.outputs.sink import Sink

    vm = VictoriaMetrics(tmp_path / "vm", flags=DEDUP).start()
    store = StateStore(tmp_path / "state.sqlite")
    sink = Sink(Spool(store), SinkSettings(vm.url, "", "province", "commune", max_backoff_s=1))
    try:
        ingest(store, [envelope(seq) for seq in range(20)])
        assert sink.step(0.0) == 0.0 and Spool(store).stats().rows == 0  # accepted
        assert vm.process is not None
        vm.process.kill()  # within its flush interval: what it held in memory is gone
        vm.process.wait(10)
        ingest(store, [envelope(seq) for seq in range(20, 40)])
        assert sink.step(0.0) > 0  # the server is gone: the write fails
        vm.start()
        wait(lambda: sink.step(0.0) == 0.5 and Spool(store).stats().rows == 0)
        [series] = vm.export('{__name__="link_rtt_ms"}')
    finally:
        sink.close()
        vm.stop()
    assert series["timestamps"] == [int((T0 + 60 * s) * 1000) for s in range(40)]
    assert sink.stats.replayed_batches == 1


def test_a_sink_killed_after_a_write_lets_the_next_one_write_it_again(tmp_path: Path) -> None:
    """The hour-long soak's finding (seed 7: its kill_sink 1 s after a write, its kill_vm
    6 s after that): VictoriaMetrics lost what it had accepted, and the sink that had
    seen it accepted was dead, its memory of what to write again with it. The spool keeps
    the rows accepted lately; the next sink writes them again before anything new."""
    from collector.outputs.sink import Sink

    vm = VictoriaMetrics(tmp_path / "vm", flags=DEDUP).start()
    store = StateStore(tmp_path / "state.sqlite")
    settings = SinkSettings(vm.url, "", "province", "commune", max_backoff_s=1)
    killed = Sink(Spool(store), settings)
    try:
        ingest(store, [envelope(seq) for seq in range(20)])
        assert killed.step(0.0) == 0.0 and Spool(store).stats().rows == 0  # accepted
        killed.close()  # killed: what it remembered is gone with it
        assert vm.process is not None
        vm.process.kill()  # within its flush interval: what it held in memory is gone
        vm.process.wait(10)
        vm.start()
        ingest(store, [envelope(seq) for seq in range(20, 40)])
        sink = Sink(Spool(store), settings)
        try:
            wait(lambda: sink.step(0.0) == 0.5 and Spool(store).stats().rows == 0)
            [series] = vm.export('{__name__="link_rtt_ms"}')
        finally:
            sink.close()
    finally:
        vm.stop()
    assert series["timestamps"] == [int((T0 + 60 * s) * 1000) for s in range(40)]
    assert sink.stats.replayed_batches == 1


def test_a_server_killed_and_back_between_two_writes_is_written_again(tmp_path: Path) -> None:
    """No write failed (the server was killed and started again while the sink had
    nothing to send), yet what it held in memory is gone: the connection it kept alive
    was closed, and that is enough for the sink to write its recent points again."""
    from collector.outputs.sink import Sink

    vm = VictoriaMetrics(tmp_path / "vm", flags=DEDUP).start()
    store = StateStore(tmp_path / "state.sqlite")
    sink = Sink(Spool(store), SinkSettings(vm.url, "", "province", "commune", max_backoff_s=1))
    try:
        ingest(store, [envelope(seq) for seq in range(20)])
        assert sink.step(0.0) == 0.0
        assert vm.process is not None
        vm.process.kill()
        vm.process.wait(10)
        vm.start()
        ingest(store, [envelope(seq) for seq in range(20, 40)])
        wait(lambda: sink.step(0.0) == 0.5 and Spool(store).stats().rows == 0)
        [series] = vm.export('{__name__="link_rtt_ms"}')
    finally:
        sink.close()
        vm.stop()
    assert series["timestamps"] == [int((T0 + 60 * s) * 1000) for s in range(40)]
    # The batch before the kill, and the one that found the hang-up (the server might
    # have gone again during the replay).
    assert sink.stats.write_errors == 0 and sink.stats.replayed_batches == 2


def test_rows_kept_for_a_replay_are_neither_waiting_nor_dropped_by_the_bound(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    spool = Spool(store, max_bytes=10_000).attach()
    ingest(store, [envelope(seq) for seq in range(10)])
    rows = spool.fetch(100)
    spool.done(rows[-1][0], forget_up_to=0)  # accepted, kept for a replay
    assert spool.stats().rows == 0 and spool.stats().bytes == 0
    assert spool.fetch(100) == []
    assert [p for _, p in spool.accepted(1000)] == [p for _, p in rows]
    ingest(store, [envelope(seq) for seq in range(10, 400)])  # far over the bound
    assert spool.stats().dropped > 0
    assert [p for _, p in spool.accepted(1000)] == [p for _, p in rows]  # none dropped
    waiting = spool.fetch(1000)
    spool.done(waiting[-1][0])  # forget everything accepted
    assert spool.accepted(1000) == [] and spool.stats().rows == spool.stats().bytes == 0
    store.close()
