"""The sink in a process of its own.

Turning envelopes into line protocol and writing them over HTTP took a fifth of
the collector's interpreter time at 15,000 messages/s, time the ingest thread
waited for (one interpreter lock). In its own process the sink runs on the
other core. It shares nothing with the collector but the state store's file
(SQLite WAL: it reads the spool while ingest commits, and deletes what the
server accepted in short transactions of its own) and a few counters for
``/metrics`` and ``/healthz``.

Started with ``spawn``, not ``fork``: the collector has threads and an open
database by then. It leaves when told to, or when the collector that started it
is gone (even after a kill -9), so no orphan writes behind a new collector.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

from collector.outputs.sink import SinkSettings, SinkStats

log = logging.getLogger(__name__)

_ERROR_BYTES = 512
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class _Shared:
    """Shared memory without locks: a process killed while holding a lock (or waiting on a
    multiprocessing Event) would leave the other side blocked for ever."""

    stop: ctypes.c_byte
    counters: ctypes.Array[ctypes.c_longlong]
    """points_written, batches_written, write_errors, rejected_rows."""
    last_error: ctypes.Array[ctypes.c_char]
    alive: ctypes.c_byte


def _serve(path: str, settings: SinkSettings, shared: _Shared, parent: int, level: int) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)
    from collector.outputs.sink import Sink
    from collector.outputs.spool import Spool
    from collector.state.store import StateStore

    store = StateStore(Path(path))
    sink = Sink(Spool(store), settings)
    shared.alive.value = 1
    delay = 0.0
    try:
        while not shared.stop.value and os.getppid() == parent:
            delay = sink.step(delay)
            stats = sink.stats
            shared.counters[:] = [
                stats.points_written,
                stats.batches_written,
                stats.write_errors,
                stats.rejected_rows,
            ]
            shared.last_error.value = sink.last_error.encode()[: _ERROR_BYTES - 1]
            # Waiting out a backoff, still look for the collector every second.
            deadline = time.monotonic() + delay
            while (left := deadline - time.monotonic()) > 0 and os.getppid() == parent:
                if shared.stop.value:
                    break
                time.sleep(min(0.2, left))
    finally:
        sink.close()
        store.close()


class SinkProcess:
    """The sink as the collector holds it: start, stop, stats, last_error, ensure_running."""

    def __init__(self, store_path: Path, settings: SinkSettings) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._args = (store_path, settings)
        self._shared = _Shared(
            stop=self._context.RawValue(ctypes.c_byte, 0),
            counters=self._context.RawArray(ctypes.c_longlong, 4),
            last_error=self._context.RawArray(ctypes.c_char, _ERROR_BYTES),
            alive=self._context.RawValue(ctypes.c_byte, 0),
        )
        self._process = self._new_process()
        self.restarts = 0

    def _new_process(self) -> multiprocessing.process.BaseProcess:
        store_path, settings = self._args
        return self._context.Process(
            target=_serve,
            args=(
                str(store_path),
                settings,
                self._shared,
                os.getpid(),
                logging.getLogger().getEffectiveLevel(),
            ),
            name="commune-collector-sink",
            daemon=True,
        )

    def ensure_running(self) -> None:
        """Start the sink again if it died (housekeeping calls this): points keep flowing."""
        if self._shared.stop.value or self._process.is_alive():
            return
        log.error(
            "the sink process ended (exit code %s); starting it again", self._process.exitcode
        )
        self._process = self._new_process()
        self._process.start()
        self.restarts += 1

    @property
    def stats(self) -> SinkStats:
        return SinkStats(*self._shared.counters[:])

    @property
    def last_error(self) -> str:
        if self._process.pid is not None and not self._process.is_alive():
            return f"the sink process ended (exit code {self._process.exitcode})"
        return bytes(self._shared.last_error.value).decode(errors="replace")

    @property
    def running(self) -> bool:
        return self._process.is_alive() and bool(self._shared.alive.value)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        self._shared.stop.value = 1
        self._process.join(timeout=20)
        if self._process.is_alive():
            log.warning("the sink process did not stop within 20 s; terminating it")
            self._process.terminate()
            self._process.join(timeout=5)
