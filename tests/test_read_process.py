"""The read process: the health model's reads answered beside ingest, as the collector
would answer them.

- Its facts, fed by what the writer commits, answer as a full recomputation after every
  change (the live model's property, through the feed and another connection).
- Served for real (the collector's server handing reads over a Unix socket to a spawned
  process): the same answers as the collector's own app, current after each commit, the
  console's cookie holding in both, a logout ending it in both, wrong tokens counted in
  the collector's one lockout, and the reads served by the collector while the read
  process is away, then by it again once started afresh.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.config import ApiSection, ApiToken, ConsoleSection
from collector.state.factsfeed import FactsFeed, apply, decode_frame
from collector.state.inventory import Inventory
from collector.state.livehealth import LiveHealth
from collector.state.store import StateStore
from collector.state.systems import SystemFiles
from collector.web.auth import token_digest
from collector.web.factory import create_app
from collector.web.readprocess import ReadProcess, ReadSettings
from tests.servers import AppServer
from tests.test_livehealth import (
    INVENTORY,
    PRUNED,
    T0,
    Failing,
    antivirus,
    envelope,
    line,
    same_answers,
    status,
    steps,
)
from tests.test_livehealth import apply as apply_step

TOKEN = "ioc-token-for-the-read-process-0123"
SECRET = b"s" * 32


# the feed, in one process ---------------------------------------------------------------


class Followed:
    """A writer with the feed, and a live model following it through a pipe."""

    def __init__(self, tmp_path: Path, feed: FactsFeed | None = None) -> None:
        self.now = [T0]
        path = tmp_path / "state.sqlite"
        self.store = StateStore(path, clock=lambda: self.now[0])
        self.feed = feed or FactsFeed()
        self.store.observers.append(self.feed.observe)
        self.store.watchers.append(self.feed)
        self.failing = Failing()
        self.store.observers.append(self.failing)
        self.reader = StateStore(path, clock=lambda: self.now[0])
        self.live = LiveHealth(self.reader, [INVENTORY], clock=lambda: self.now[0],
                               figures_bound_s=0.0)  # fmt: skip
        self.live.follow(self.reader)
        self.receiving, sending = multiprocessing.Pipe(duplex=False)
        self.feed.attach(sending)
        self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                  isolation_level=None)  # fmt: skip

    def deliver(self) -> int:
        """What the feed sent, applied as the read process applies it: frames applied."""
        self.feed.flush()
        frames = 0
        while self.receiving.poll(0):
            apply(self.live.facts, self.db, decode_frame(self.receiving.recv_bytes()))
            frames += 1
        return frames

    def close(self) -> None:
        self.feed.detach()
        self.db.close()
        self.live.close()
        self.reader.close()
        self.store.close()


@pytest.fixture
def followed(tmp_path: Path) -> Iterator[Followed]:
    with contextlib.closing(Followed(tmp_path)) as world:
        yield world


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(steps, min_size=1, max_size=20))
def test_the_followed_model_answers_as_a_full_recomputation(
    tmp_path_factory: pytest.TempPathFactory, sequence: list[tuple[Any, ...]]
) -> None:
    with contextlib.closing(Followed(tmp_path_factory.mktemp("followed"))) as world:
        same_answers(world.store, world.live, world.now[0])
        for step in sequence:
            apply_step(world.store, world.failing, world.now, step)
            world.deliver()
            same_answers(world.store, world.live, world.now[0])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(steps, st.booleans()), min_size=1, max_size=20))
def test_a_model_behind_the_writer_answers_as_a_full_recomputation_once_caught_up(
    tmp_path_factory: pytest.TempPathFactory, sequence: list[tuple[tuple[Any, ...], bool]]
) -> None:
    """The read process applies a frame after later commits: what it reads again from
    the store then is newer than the frame (an agent forgotten and back already, a
    subject changed twice). Once it has applied every frame, it answers as the store."""
    with contextlib.closing(Followed(tmp_path_factory.mktemp("behind"))) as world:
        same_answers(world.store, world.live, world.now[0])
        for step, deliver in sequence:
            apply_step(world.store, world.failing, world.now, step)
            if deliver:
                world.deliver()
                same_answers(world.store, world.live, world.now[0])
        world.deliver()
        same_answers(world.store, world.live, world.now[0])


def test_an_agent_forgotten_and_back_before_the_read_process_applied_it(
    followed: Followed,
) -> None:
    """Forgetting took the agent's latest samples; by the time the read process applies
    that frame the agent is back (its row read again is found): what it held of the
    agent before must go all the same."""
    place = ("dong-nai", "la-nga", "pc-1")
    store = followed.store
    store.apply([envelope(place, T0, [line(T0, "tslcd", "tslcd", True, 5.0),
                                      antivirus(T0, "protected")])])  # fmt: skip
    store.apply(statuses=[(status(place, T0 + 10, "offline"), T0 + 10)])
    followed.deliver()
    assert followed.live.commune("la-nga", "dong-nai") is not None  # the province held
    followed.now[0] = back = T0 + 8000
    assert store.forget_agents(back - 7200) == ["dong-nai/la-nga/pc-1"]
    store.apply([envelope(place, back, [line(back, "internet", "internet", True, 9.5)])])
    followed.deliver()
    same_answers(store, followed.live, back)


def test_subjects_the_prune_deleted_leave_the_read_process(followed: Followed) -> None:
    """The prune's deletions reach the read process through the feed."""
    for step in PRUNED[:-1]:
        apply_step(followed.store, followed.failing, followed.now, step)
    followed.deliver()
    same_answers(followed.store, followed.live, followed.now[0])  # held
    apply_step(followed.store, followed.failing, followed.now, PRUNED[-1])
    assert followed.deliver() == 1
    same_answers(followed.store, followed.live, followed.now[0])


def test_a_rolled_back_batch_sends_nothing(followed: Followed) -> None:
    place = ("dong-nai", "la-nga", "pc-1")
    followed.store.apply(statuses=[(status(place, T0), T0)])
    assert followed.deliver() == 1
    followed.failing.fail = True
    with pytest.raises(RuntimeError):
        followed.store.apply([envelope(place, T0, [line(T0, "tslcd", "tslcd", False, 0.0)])])
    assert followed.deliver() == 0


def test_a_read_process_too_far_behind_reads_afresh(tmp_path: Path) -> None:
    """Frames past the bound are dropped; the next one says to forget: the facts held
    then are read again from the store, which has every commit."""
    stalled = StalledFeed(max_held=6)  # three commits of one envelope or agent each
    world = Followed(tmp_path, stalled)
    try:
        place = ("dong-nai", "la-nga", "pc-1")
        world.store.apply(statuses=[(status(place, T0), T0)])
        assert world.live.commune("la-nga", "dong-nai") is not None  # the province held
        for minute in range(5):  # 5 more commits, 2 fit: the line's last 3 words dropped
            at = T0 + 60 * (minute + 1)
            up = minute % 2 == 1
            world.store.apply([envelope(place, at, [line(at, "tslcd", "tslcd", up, 5.0)])])
        stalled.gate.set()
        assert world.feed.flush()
        assert world.feed.resets == 0  # said with the next frame, not before
        world.now[0] = at = T0 + 400
        world.store.apply(statuses=[(status(place, at), at)])
        assert world.deliver() == 4
        assert world.feed.resets == 1
        commune = world.live.commune("la-nga", "dong-nai")
        assert commune is not None and commune.line.up is False  # as the last, dropped, said
        same_answers(world.store, world.live, world.now[0])
    finally:
        stalled.gate.set()
        world.close()


class StalledFeed(FactsFeed):
    """A feed whose sender waits at a gate: a read process stuck."""

    def __init__(self, max_held: int) -> None:
        super().__init__(max_held)
        self.gate = threading.Event()

    def _send(self, connection: Any, frames: Any) -> None:
        self.gate.wait()
        super()._send(connection, frames)


# served for real ------------------------------------------------------------------------


class Served:
    """A writer, the collector's app handing reads to a spawned read process, and the
    same app without it (what the collector answered before), on two servers."""

    def __init__(
        self,
        tmp_path: Path,
        inventory: Inventory = INVENTORY,
        token: str = TOKEN,
        seed: Callable[[StateStore], None] = lambda _: None,
        catalogues: tuple[str, ...] = (),
    ) -> None:
        """``seed`` writes what the store holds before anything reads it;
        ``catalogues``: the shared systems' files, read by both servers."""
        path = tmp_path / "state.sqlite"
        self.store = StateStore(path)
        seed(self.store)
        self.feed = FactsFeed()
        self.store.observers.append(self.feed.observe)
        self.store.watchers.append(self.feed)
        self.reader = StateStore(path)
        self.live = LiveHealth(self.reader, [inventory])
        self.live.install(self.store)
        api = ApiSection(
            listen="127.0.0.1:0",
            tokens=[ApiToken(name="ioc", role="technician", sha256=token_digest(token))],
            max_auth_failures=3,
        )
        console = ConsoleSection()
        systems = SystemFiles(catalogues, [inventory])
        self.reads = ReadProcess(self.feed)
        self.app = create_app(self.live, self.reader, api, console=console, systems=systems,
                              read_channel=self.reads.channel, session_secret=SECRET)  # fmt: skip
        self.reads.start(
            ReadSettings(str(path), (inventory,), api, console, SECRET, systems=catalogues)
        )
        self.server = AppServer(self.app).start()
        alone = create_app(self.live, self.reader, api, console=console, systems=systems,
                           session_secret=SECRET)  # fmt: skip
        self.alone = AppServer(alone).start()

    def close(self) -> None:
        self.server.stop()
        self.alone.stop()
        self.reads.stop()
        self.live.close()
        self.reader.close()
        self.store.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with contextlib.closing(Served(tmp_path)) as world:
        yield world


def get(port: int, path: str, headers: dict[str, str] | None = None,
        method: str = "GET", body: str = "") -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


def handed(served: Served, path: str) -> bool:
    before = served.reads.channel.handed
    status_code, _, _ = get(served.server.port, path, bearer())
    return status_code == 200 and served.reads.channel.handed > before


def timeless(answer: Any) -> Any:
    """An answer without when it was made (the two servers answer moments apart)."""
    if isinstance(answer, dict):
        return {k: timeless(v) for k, v in answer.items() if not k.startswith("generated_at")}
    if isinstance(answer, list):
        return [timeless(v) for v in answer]
    return answer


def line_of(served: Served, port: int) -> Any:
    _, _, body = get(port, "/api/v1/communes/la-nga?province=dong-nai", bearer())
    return json.loads(body)["line"]


def test_reads_are_answered_by_the_read_process_as_by_the_collector(served: Served) -> None:
    now = time.time()
    place = ("dong-nai", "la-nga", "pc-1")
    served.store.apply(statuses=[(status(place, now), now)])
    served.store.apply([envelope(place, now, [line(now, "tslcd", "tslcd", True, 7.5)])])
    wait_for(lambda: handed(served, "/api/v1/province?province=dong-nai"),
             "the read process answers")  # fmt: skip
    for path in ("/api/v1/province?province=dong-nai", "/api/v1/communes?province=dong-nai",
                 "/api/v1/communes/la-nga?province=dong-nai", "/api/v1/alerts",
                 "/api/v1/agents?province=dong-nai", "/api/v1/communes/nowhere"):  # fmt: skip
        before = served.reads.channel.handed
        there = get(served.server.port, path, bearer())
        here = get(served.alone.port, path, bearer())
        assert served.reads.channel.handed == before + 1, path
        assert there[0] == here[0], path
        assert timeless(json.loads(there[2])) == timeless(json.loads(here[2])), path
        # The collector's guard still says how the answer may be used.
        assert there[1]["x-frame-options"] == "DENY", path
        assert there[1]["content-type"] == here[1]["content-type"], path
    # A write is the collector's: not handed over.
    before = served.reads.channel.handed
    assert get(served.server.port, "/api/v1/silences", bearer())[0] == 200
    assert served.reads.channel.handed == before


def test_the_read_process_is_current_after_each_commit(served: Served) -> None:
    now = time.time()
    place = ("dong-nai", "la-nga", "pc-1")
    served.store.apply(statuses=[(status(place, now), now)])
    served.store.apply([envelope(place, now, [line(now, "tslcd", "tslcd", True, 7.5)])])
    wait_for(lambda: handed(served, "/api/v1/province?province=dong-nai"),
             "the read process answers")  # fmt: skip
    assert line_of(served, served.server.port)["up"] is True
    later = now + 1
    served.store.apply([envelope(place, later, [line(later, "tslcd", "tslcd", False, 0.0)])])
    wait_for(lambda: line_of(served, served.server.port)["up"] is False, "the line seen down")
    assert line_of(served, served.alone.port)["up"] is False


def test_wrong_tokens_on_reads_count_in_the_collectors_one_lockout(served: Served) -> None:
    wait_for(lambda: handed(served, "/api/v1/alerts"), "the read process answers")
    for _ in range(3):
        assert get(served.server.port, "/api/v1/province", bearer("wrong"))[0] == 401
    # Locked out on the collector's own routes too, and on the reads, right token or not.
    assert get(served.server.port, "/api/v1/silences", bearer())[0] == 429
    assert get(served.server.port, "/api/v1/alerts", bearer())[0] == 429


def test_a_console_session_holds_in_both_processes_and_ends_in_both(served: Served) -> None:
    wait_for(lambda: handed(served, "/api/v1/alerts"), "the read process answers")
    code, headers, _ = get(
        served.server.port, "/login", {"Content-Type": "application/x-www-form-urlencoded"},
        "POST", urllib.parse.urlencode({"token": TOKEN}),
    )  # fmt: skip
    assert code == 303
    cookie = {"Cookie": headers["set-cookie"].split(";", 1)[0]}
    before = served.reads.channel.handed
    code, _, body = get(served.server.port, "/", cookie)
    assert code == 200 and "Xã La Ngà".encode() in body
    assert served.reads.channel.handed == before + 1
    assert get(served.server.port, "/logout", cookie, "POST")[0] == 303
    code, headers, _ = get(served.server.port, "/", cookie)
    assert code in (302, 303, 307) and headers["location"].startswith("/login")


def test_reads_are_served_by_the_collector_while_the_read_process_is_away(
    served: Served,
) -> None:
    now = time.time()
    place = ("dong-nai", "la-nga", "pc-1")
    served.store.apply(statuses=[(status(place, now), now)])
    wait_for(lambda: handed(served, "/api/v1/province?province=dong-nai"),
             "the read process answers")  # fmt: skip
    pid = served.reads.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not served.reads.running, "the read process gone")
    kept = served.reads.channel.kept
    code, _, body = get(served.server.port, "/api/v1/province?province=dong-nai", bearer())
    assert code == 200 and json.loads(body)["province"] == "dong-nai"
    # Not handed over (it is not running): answered here, at once.
    assert served.reads.channel.kept == kept
    served.reads.ensure_running()
    assert served.reads.restarts == 1
    later = now + 1
    served.store.apply([envelope(place, later, [line(later, "tslcd", "tslcd", False, 0.0)])])
    wait_for(lambda: handed(served, "/api/v1/province?province=dong-nai"),
             "the new read process answers")  # fmt: skip
    assert line_of(served, served.server.port)["up"] is False


def test_ctrl_c_leaves_the_read_process_to_the_collector(served: Served) -> None:
    """Ctrl-C at a terminal reaches the whole process group: the read process stays
    until the collector stops it."""
    wait_for(served.reads.ping, "the read process answers")
    pid = served.reads.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    time.sleep(1.0)  # a read process that took it would be gone by now (not a bound)
    assert served.reads.ping()
    assert served.reads.running and served.reads.pid == pid
    served.reads.stop()
    assert not served.reads.running


def test_socket_directories_left_by_a_killed_collector_are_swept(tmp_path: Path) -> None:
    import tempfile

    from collector.web.readprocess import sweep_leftovers

    dead_pid = subprocess.Popen(["true"])  # a pid that existed and ended
    dead_pid.wait()
    base = Path(tempfile.gettempdir())
    dead = base / f"commune-reads-{dead_pid.pid}-test"
    alive = base / f"commune-reads-{os.getpid()}-test"
    for directory in (dead, alive):
        directory.mkdir(mode=0o700)
        (directory / "reads.sock").touch()
    try:
        removed = sweep_leftovers()
        assert str(dead) in removed and not dead.exists()
        assert alive.exists()
    finally:
        for directory in (dead, alive):
            if directory.exists():
                (directory / "reads.sock").unlink()
                directory.rmdir()


def test_a_tmpdir_too_deep_for_a_socket_puts_the_read_process_s_under_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket's path is bound to 107 bytes: under a deep TMPDIR the read process could
    never bind its socket, and was started again every 10 s, the collector answering."""
    import tempfile

    from collector.web.readprocess import SOCKET_PATH_MAX

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    with contextlib.closing(Served(tmp_path)) as world:
        assert len(os.fsencode(world.reads.socket_path)) <= SOCKET_PATH_MAX
        assert world.reads.socket_path.startswith("/tmp/commune-reads-")
        wait_for(lambda: handed(world, "/api/v1/province?province=dong-nai"),
                 "the read process answers")  # fmt: skip
        assert world.reads.restarts == 0
        directory = os.path.dirname(world.reads.socket_path)
        assert os.stat(directory).st_mode & 0o777 == 0o700
    assert not os.path.exists(directory)  # removed when it stopped


def test_the_sweep_passes_over_what_anyone_may_put_in_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/tmp is swept too: a link to one of this user's directories (``/proc/self``), a
    pid too large for ``kill``, a digit ``int`` cannot read, or a file, each named as a
    leftover, are passed over, and the collector still starts."""
    from collector.web import readprocess

    monkeypatch.setattr(readprocess, "SHORT_TEMP", str(tmp_path))
    planted = [
        tmp_path / "commune-reads-99999999999-x",
        tmp_path / "commune-reads-\u00b2-x",
        tmp_path / "commune-reads-1-file",
    ]
    planted[0].symlink_to("/proc/self")
    planted[1].symlink_to("/proc/self")
    planted[2].write_text("")
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = tmp_path / f"commune-reads-{dead.pid}-left"
    leftover.mkdir(mode=0o700)
    removed = readprocess.sweep_leftovers()  # with any in the real one, of other runs
    assert str(leftover) in removed and not leftover.exists()
    assert not [
        path for path in removed if path.startswith(str(tmp_path)) and path != str(leftover)
    ]
    assert all(os.path.lexists(path) for path in planted)
    readprocess.ReadProcess(FactsFeed()).stop()


def test_a_deep_tmpdir_and_no_tmp_leave_the_reads_to_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import tempfile

    from collector.web import readprocess

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    monkeypatch.setattr(readprocess, "SHORT_TEMP", str(tmp_path / "no-such-tmp"))
    reads = readprocess.ReadProcess(FactsFeed())  # the collector starts all the same
    try:
        assert reads.socket_path.startswith(str(deep))
        assert "is not writable: the collector answers the reads" in caplog.text
    finally:
        reads.stop()


def test_a_path_no_route_serves_is_answered_as_by_the_collector(served: Served) -> None:
    """Not handed over, nor its token looked at: a 404 or the redirect to the path with
    a slash less, as the collector alone answers; wrong tokens there lock no one out."""
    wait_for(lambda: handed(served, "/api/v1/alerts"), "the read process answers")
    before = served.reads.channel.handed
    for path in ("/api/v1/alerts/", "/api/v1/province/x/y", "/communes/"):
        there = get(served.server.port, path, bearer("wrong"))
        here = get(served.alone.port, path, bearer("wrong"))
        assert there[0] == here[0] and there[0] in (307, 404), path
        where = [urllib.parse.urlsplit(a[1].get("location", "")).path for a in (there, here)]
        assert where[0] == where[1], path
    assert served.reads.channel.handed == before
    assert get(served.server.port, "/api/v1/alerts", bearer())[0] == 200  # not locked out
