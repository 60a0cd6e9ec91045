"""The read process: the IOC's and the consoles' reads of the health model, answered
beside ingest rather than in its interpreter.

Under the country's ingest, requests answered in the collector's process waited for
its one interpreter, which ingest holds about half of the time, and ingest waited for
them: a province's list and month, the national pages and the console's overview
missed their times, and ingest fell behind the rate while they were read. Here they
run in a process of their own, on the other core, with:

- a live health model of its own (``LiveHealth.follow``), fed what the collector
  commits (``state/factsfeed.py``) and reading the rest from the state store (SQLite
  WAL: it reads while ingest commits);
- the collector's web application, built as the collector builds it but without its
  guard (the collector's server already applied it) and with the console's session
  secret the collector's server uses, so that a cookie one of them made holds in both;
- a Unix socket in a directory only the collector's user may enter, where the
  collector's server hands over the reads (``collector/web/forward.py``).

Started with ``spawn`` (the collector has threads and open databases by then). It
leaves when told to, or when the collector that started it is gone (even after a
kill -9); the collector's housekeeping starts it again if it died, and serves the
reads itself meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

from collector.common.gctuning import FreezeAsItAges, LongestPass, pace_for_ingest
from collector.common.threadswitch import share_between_ingest_and_reads
from collector.config import ApiSection, ConsoleSection
from collector.state.factsfeed import FactsFeed
from collector.state.inventory import Inventory
from collector.state.systems import SystemFiles
from collector.web.forward import ReadChannel
from collector.web.readwire import (
    ANSWER,
    ASK,
    MAX_REQUEST_BYTES,
    Answer,
    Ask,
    FrameTooLarge,
    frame,
)
from collector.web.readwire import read_frame as _read_frame

log = logging.getLogger("collector.reads")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DIR_PREFIX = "commune-reads-"
_SOCKET_NAME = "reads.sock"
#: The longest path a Unix socket may have (sun_path, with its NUL: 108 bytes on Linux,
#: 104 on the BSDs and macOS).
SOCKET_PATH_MAX = 107 if sys.platform.startswith("linux") else 103
#: Where the socket's directory goes when the temporary directory's path is too long.
SHORT_TEMP = "/tmp"  # noqa: S108 - only through mkdtemp: 0700, a random name
#: As the collector's housekeeping: the figures that depend on time, before they are asked.
REFRESH_S = 10.0
#: What survived the young garbage collections is frozen this often (``FreezeAsItAges``).
FREEZE_EVERY_S = 1.0
#: A garbage-collection pass this long is logged, once a minute at most.
LONG_PASS_S = 0.1
PASSES_TOLD_EVERY_S = 60.0
#: A running read process must answer the housekeeping's ping within this...
PING_TIMEOUT_S = 10.0
#: ...or be replaced after this many pings in a row unanswered (a wedged process).
PINGS_MISSED = 2
#: Its /healthz is a few bytes: a longer answer is not one.
_PING_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class ReadSettings:
    store_path: str
    inventories: tuple[Inventory, ...]
    api: ApiSection
    console: ConsoleSection | None
    session_secret: bytes = b""
    """The console's cookie secret the collector's server signs with ("": no console)."""
    systems: tuple[str, ...] = ()
    """The shared systems' catalogue files ([collector] systems), read again when they
    change, as the collector does."""
    routes: tuple[str, ...] | None = None
    """The alert routes a catalogue may name."""


class ReadProcess:
    """The read process as the collector holds it: start, stop, ensure_running, and the
    ``channel`` its server hands the reads over through."""

    def __init__(self, feed: FactsFeed) -> None:
        self._context = multiprocessing.get_context("spawn")
        self.feed = feed
        # Only the collector's user may reach the socket: the reads behind it trust
        # what the collector's server says of each request (its client's address).
        sweep_leftovers()
        self._dir = tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-", dir=_socket_base())
        self.socket_path = os.path.join(self._dir, _SOCKET_NAME)
        self._stop = self._context.RawValue(ctypes.c_byte, 0)
        self._warmed = self._context.RawValue(ctypes.c_byte, 0)
        self._settings: ReadSettings | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.restarts = 0
        self._missed = 0
        self.ping_timeout_s = PING_TIMEOUT_S
        self.channel = ReadChannel(self.socket_path, lambda: self.running)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def warmed(self) -> bool:
        """Whether the running read process has its overview's figures computed."""
        return self.running and bool(self._warmed.value)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, settings: ReadSettings) -> None:
        self._settings = settings
        self._spawn()

    def _spawn(self) -> None:
        assert self._settings is not None
        receiving, sending = self._context.Pipe(duplex=False)
        self._warmed.value = 0
        self._missed = 0
        # Attached first: nothing committed from here on is missed by its loading.
        self.feed.attach(sending)
        self._process = self._context.Process(
            target=_serve,
            args=(
                self._settings,
                self.socket_path,
                receiving,
                self._stop,
                self._warmed,
                os.getpid(),
                logging.getLogger().getEffectiveLevel(),
            ),
            name="commune-collector-reads",
            daemon=True,
        )
        self._process.start()
        receiving.close()

    def ensure_running(self) -> None:
        """Start it again if it died, or if it stopped answering (the housekeeping calls
        this): the collector serves the reads meanwhile."""
        if self._stop.value or self._process is None:
            return
        if self._process.is_alive():
            if self.ping():
                self._missed = 0
                return
            self._missed += 1
            if self._missed < PINGS_MISSED:
                return
            log.error("the read process has not answered %d pings in a row: replacing it",
                      self._missed)  # fmt: skip
            self._end(grace_s=0.0)  # nothing told it to leave: no use waiting
        else:
            log.error(
                "the read process ended (exit code %s); starting it again (the collector "
                "serves the reads meanwhile)",
                self._process.exitcode,
            )
        self.feed.detach()
        self._spawn()
        self.restarts += 1

    def ping(self) -> bool:
        """Whether the read process answers a request (its /healthz) in time."""
        ask = Ask("GET", "http", "1.1", "/healthz", b"/healthz", b"", [], None, None)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(self.ping_timeout_s)
                connection.connect(self.socket_path)
                connection.sendall(frame(ask))
                length = int.from_bytes(_receive(connection, 4), "big")
                if length > _PING_ANSWER_BYTES:
                    return False
                return ANSWER.decode(_receive(connection, length)).status == 200
        except (OSError, EOFError, msgspec.DecodeError):
            return False

    def _end(self, grace_s: float = 5.0) -> None:
        """The process ended, whatever it was doing (a stopped one ignores SIGTERM),
        after ``grace_s`` to leave on its own (told to by ``stop``)."""
        process = self._process
        if process is None or process.pid is None:
            return
        process.join(timeout=grace_s)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)

    def stop(self) -> None:
        self._stop.value = 1
        self._end()  # first: a feed blocked writing to it is released by its end
        self.feed.detach()
        shutil.rmtree(self._dir, ignore_errors=True)


def _socket_base() -> str:
    """The temporary directory, or ``/tmp`` when a socket's path under it would be too
    long to bind (a deep TMPDIR): the read process would never start, the collector
    starting it again every 10 s and answering the reads itself, as it still does when
    ``/tmp`` is no place either."""
    base = tempfile.gettempdir()
    if _fits(base):
        return base
    if _fits(SHORT_TEMP) and os.access(SHORT_TEMP, os.W_OK | os.X_OK):
        log.warning("the temporary directory %s is too deep for the read process's socket:"
                    " it goes under %s", base, SHORT_TEMP)  # fmt: skip
        return SHORT_TEMP
    log.error("the temporary directory %s is too deep for the read process's socket, and %s"
              " is not writable: the collector answers the reads (set TMPDIR)",
              base, SHORT_TEMP)  # fmt: skip
    return base


def _fits(base: str) -> bool:
    # mkdtemp's name: the prefix, the pid (at most 2**22 on Linux), a dash and 8 random
    # characters.
    longest = os.path.join(base, f"{_DIR_PREFIX}{2**22}-{'x' * 8}", _SOCKET_NAME)
    return len(os.fsencode(longest)) <= SOCKET_PATH_MAX


#: A socket directory's name as ``ReadProcess`` makes it: the prefix, a pid, a dash.
_LEFTOVER = re.compile(rf"{re.escape(_DIR_PREFIX)}([0-9]{{1,7}})-[^/]+")


def sweep_leftovers() -> list[str]:
    """The socket directories of collectors gone without stopping (a kill -9): those of
    this user whose process is not running. What was removed."""
    removed = []
    # /tmp too, where a deep TMPDIR puts them. Anyone may write there: only a directory
    # itself (not a link to one) of this user, named as made, is looked at.
    bases = sorted({tempfile.gettempdir(), SHORT_TEMP})
    entries = [entry for base in bases for entry in Path(base).glob(f"{_DIR_PREFIX}*-*")]
    for entry in entries:
        named = _LEFTOVER.fullmatch(entry.name)
        try:
            found = entry.lstat()
            if named is None or not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
                continue
            os.kill(int(named.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
        except OSError:  # gone meanwhile, or another user's process: not ours to judge
            continue
    return removed


def _receive(connection: socket.socket, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = connection.recv(size - len(received))
        if not chunk:
            raise EOFError("the read process closed the connection")
        received += chunk
    return bytes(received)


# the read process itself ---------------------------------------------------------------


def _serve(
    settings: ReadSettings,
    socket_path: str,
    feed: Connection,
    stop: Any,
    warmed: Any,
    parent: int,
    level: int,
) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)
    # Ctrl-C at a terminal reaches the whole process group: the read process leaves
    # when the collector says (or is gone), not before it, which the collector's
    # housekeeping would take for a death and start it again while stopping.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # It decodes what the collector commits as ingest does: the same young collections.
    pace_for_ingest()
    # Its requests share the interpreter with the feed's and the refresh's threads, as
    # the collector's share it with ingest: handed between them as often.
    share_between_ingest_and_reads()
    from collector.state.factsfeed import follow
    from collector.state.livehealth import LiveHealth
    from collector.state.store import StateStore
    from collector.web.factory import create_app

    store = StateStore(Path(settings.store_path))
    model = LiveHealth(store, settings.inventories)
    model.follow(store)
    leaving = threading.Event()

    def following() -> None:
        follow(model.facts, store.path, feed)
        # The collector closed the feed (stopping, or its feed failed): facts no longer
        # followed must not be served. The process ends; a new one starts afresh.
        leaving.set()

    threading.Thread(target=following, name="facts-feed", daemon=True).start()
    systems = SystemFiles(settings.systems, settings.inventories, settings.routes)
    app = create_app(
        model,
        store,
        settings.api,
        console=settings.console,
        systems=systems,
        guard=False,
        session_secret=settings.session_secret or None,
    )
    refresher = threading.Thread(
        target=_keep_current,
        args=(model, systems, leaving, warmed),
        name="refresh",
        daemon=True,
    )
    refresher.start()
    try:
        asyncio.run(_listen(app, socket_path, stop, parent, leaving))
    finally:
        leaving.set()
        # A warming under way (a minute for the country) is not waited for: the
        # process ends, and the system closes what it held.
        refresher.join(timeout=2)
        if not refresher.is_alive():
            model.close()
            store.close()


def _keep_current(model: Any, systems: SystemFiles, leaving: threading.Event, warmed: Any) -> None:
    """Warm the overview's figures, then keep what depends on time, and the shared
    systems' catalogue, current, and what ages frozen out of the garbage collector's
    passes (``FreezeAsItAges``)."""
    started = time.monotonic()
    try:
        model.warm()
    except Exception:  # a failure here costs the first requests their speed, no more
        if not leaving.is_set():
            log.exception("could not warm the console's overview")
    else:
        log.info("console overview warmed in %.1f s (the read process)",
                 time.monotonic() - started)  # fmt: skip
    # What warming built (millions of objects for the country) is left out of the
    # garbage collections, each of which would stop the requests; and so is, as it
    # ages, what replaces it (a rare full collection aside).
    gc.freeze()
    freezer = FreezeAsItAges()
    passes = LongestPass()
    passes.take()
    warmed.value = 1
    refreshed = told = time.monotonic()
    while not leaving.wait(FREEZE_EVERY_S):
        if time.monotonic() - told >= PASSES_TOLD_EVERY_S:
            told = time.monotonic()
            longest, generation = passes.take()
            if longest >= LONG_PASS_S:
                log.info("the longest garbage-collection pass of the last minute: %.0f ms "
                         "(generation %d): the reads waited for it", 1000 * longest,
                         generation)  # fmt: skip
        refreshing = time.monotonic() - refreshed >= REFRESH_S
        if refreshing:
            refreshed = time.monotonic()
            try:
                systems.reload_if_changed()
                model.refresh()
            except Exception:
                if not leaving.is_set():
                    log.exception("the health figures could not be refreshed")
        took = freezer.step(collect=not refreshing)
        if took is not None:
            log.info("a full garbage collection took %.0f ms (%d objects kept)",
                     1000 * took, gc.get_freeze_count())  # fmt: skip


async def _listen(
    app: Any, socket_path: str, stop: Any, parent: int, leaving: threading.Event
) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    open_writers: dict[asyncio.StreamWriter, asyncio.Task[None] | None] = {}
    server = await asyncio.start_unix_server(
        functools.partial(_connection, app, open_writers), socket_path
    )
    os.chmod(socket_path, 0o600)
    async with server:
        # Polled: a collector killed -9 tells no one, and a flag set by another process
        # wakes no event of this loop.
        while not (stop.value or leaving.is_set()) and os.getppid() == parent:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        # Each connection's handler then ends on its own (not cancelled mid-read).
        handlers = [task for task in open_writers.values() if task is not None]
        for writer in list(open_writers):
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)


async def _connection(
    app: Any,
    open_writers: dict[asyncio.StreamWriter, asyncio.Task[None] | None],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    open_writers[writer] = asyncio.current_task()
    try:
        while True:
            try:
                ask = ASK.decode(await _read_frame(reader, MAX_REQUEST_BYTES))
            except (asyncio.IncompleteReadError, ConnectionError, FrameTooLarge):
                return
            except msgspec.DecodeError:
                log.error("a request from the collector's server could not be read")
                return
            writer.write(frame(await answer(app, ask)))
            await writer.drain()
    finally:
        open_writers.pop(writer, None)
        writer.close()


async def answer(app: Any, ask: Ask) -> Answer:
    """What ``app`` answers to ``ask``, whole."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": ask.http_version,
        "method": ask.method,
        "scheme": ask.scheme,
        "path": ask.path,
        "raw_path": ask.raw_path,
        "query_string": ask.query_string,
        "root_path": "",
        "headers": ask.headers,
        "client": ask.client,
        "server": ask.server,
        "state": {},
    }
    started: dict[str, Any] = {}
    body: list[bytes] = []
    asked = False
    never = asyncio.get_running_loop().create_future()

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never  # the client stays: a streaming answer is not cut short
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            body.append(bytes(message.get("body", b"")))

    try:
        await app(scope, receive, send)
    except Exception:
        log.exception("a read failed")
        if not started:
            return Answer(500, [(b"content-type", b"text/plain; charset=utf-8")],
                          b"Internal Server Error")  # fmt: skip
    finally:
        never.cancel()
    headers = [(bytes(k), bytes(v)) for k, v in started.get("headers", [])]
    return Answer(int(started.get("status", 500)), headers, b"".join(body))
