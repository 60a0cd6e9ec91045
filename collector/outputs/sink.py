"""The time-series sink: drains the store's spool into an InfluxDB v2 write API.

Works with InfluxDB 2.x/3.x/1.8+ and VictoriaMetrics. The spool holds accepted
envelopes as they arrived; the sink turns them into line protocol (rows written
by earlier versions already hold line protocol, which never starts with ``{``,
and are sent as they are). Points leave the spool only when the server has
accepted them; while it is down they wait (bounded by the store's spool size,
drops counted) and are sent in order when it returns. A batch the server
refuses as bad data (400, 413, 422) is split to find the culprit, which alone is
dropped and counted, so one bad point cannot block the rest. A row that cannot
be turned into line protocol (whatever the error, ours included) is dropped
alone, counted, before anything is sent. And should the server fail the same
batch again and again with a server error (5xx) while it answers its health
check, the batch is split the same way: a row the healthy server keeps failing
is dropped alone, counted; the spool never waits for ever behind one row.

A server's acceptance is not its durability: VictoriaMetrics keeps what it accepted in
memory for up to ``-inmemoryDataFlushInterval`` (5 s) and a kill -9 or a power cut loses
it (the chaos soak found those points missing). So the batches written lately are kept
(collector/outputs/recent.py: 15 s, in the spool, the newest in memory too) and written
again before anything new once the server may have lost them: a write failed (the server
gone, perhaps restarted), the server hung up the kept-alive connection (a server killed
and started again between two writes, or during a replay: it starts over), or this sink
is starting (the one before was killed: the hour-long soak lost 312 envelopes to a sink
killed 1 s after a write and VictoriaMetrics 6 s after). A drain faster than what may be
kept waits for the server's flush. Rows the server refused as bad data are left out when
written again, and counted once. Written twice, a point overwrites itself in InfluxDB;
VictoriaMetrics needs ``-dedup.minScrapeInterval=1ms`` to keep it once
(deploy/OPERATIONS.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from collector.outputs.influx import InfluxWriter, WriteRefused
from collector.outputs.lineproto import envelope_lines
from collector.outputs.recent import Lines, Recent, Written
from collector.outputs.spool import Spool
from collector.outputs.spooled import decode_spooled

log = logging.getLogger(__name__)

#: Replays started over when the server hangs up during one, before trying later.
REPLAY_ATTEMPTS = 3

BAD_DATA = (400, 413, 422)
#: Failures of the same batch before server errors (5xx) are taken for a bad row.
SUSPECT_AFTER = 3


@dataclass
class SinkStats:
    points_written: int = 0
    batches_written: int = 0
    write_errors: int = 0
    rejected_rows: int = 0
    replayed_batches: int = 0
    """Recent batches written again after a failed write (the server may have lost them)."""


@dataclass(frozen=True)
class SinkSettings:
    url: str
    token: str
    org: str
    bucket: str
    batch_rows: int = 2000
    timeout_s: float = 10.0
    max_backoff_s: float = 60.0


class Sink:
    """One batch at a time (``step``); ``sink_process`` runs it in a process of its own."""

    def __init__(self, spool: Spool, settings: SinkSettings) -> None:
        self.spool = spool
        self.batch_rows = settings.batch_rows
        self.max_backoff_s = settings.max_backoff_s
        self.stats = SinkStats()
        self._writer = InfluxWriter(
            settings.url, settings.token, settings.org, settings.bucket, settings.timeout_s
        )
        self._last_error = ""
        self._head = (-1, 0)
        """(first row id of the batch that last failed, failures in a row)."""
        self._recent = Recent()
        """What the server accepted lately (collector/outputs/recent.py)."""
        self._forget = 0
        """The spool's rows up to this one are past the server's flush: ``done`` lets them go."""
        self._replay = False
        """The server may have lost what it accepted: the recent batches are written again
        before the next one."""
        self._started = False
        self._hang_ups = 0
        self._replay_head = (-1, 0)
        """(first row of the batch whose replay last failed with a server error, failures)."""
        self._ping_answered = True

    @property
    def last_error(self) -> str:
        """Why the last write failed; empty once a write succeeds."""
        return self._last_error

    def close(self) -> None:
        self._writer.close()

    def _as_lines(self, rows: list[tuple[int, bytes]], first: bool = True) -> Lines:
        """``first``: the rows' first conversion (a row dropped is counted and said then,
        not again when its batch is read back to be written again)."""
        converted = []
        for row_id, payload in rows:
            if not payload.startswith(b"{"):
                converted.append((row_id, payload))  # already line protocol
                continue
            try:
                converted.append((row_id, self.convert(payload)))
            except Exception as exc:  # one row, whatever went wrong: drop it, count it
                if not first:
                    continue
                self.stats.rejected_rows += 1
                log.error(
                    "a spooled envelope cannot be turned into points (%s: %s); dropped",
                    type(exc).__name__,
                    str(exc)[:200],
                )
        return converted

    @staticmethod
    def convert(payload: bytes) -> bytes:
        """A spooled envelope as line protocol."""
        return envelope_lines(decode_spooled(payload))

    def _healthy(self) -> bool:
        """Whether the server says it is well (``/ping``), whatever it did to a write."""
        return self._writer.ping()

    def _send(self, rows: Lines, suspect: bool = False, again: bool = False) -> list[bytes]:
        """Write rows; bad data is bisected and the bad row dropped. Other errors raise.
        The lines dropped.

        ``suspect``: this batch failed with server errors several times: treat them as
        bad data too, and drop a single row only while the server says it is healthy.
        """
        if not rows:
            return []
        body = b"\n".join([lines for _, lines in rows])
        try:
            self._writer.write(body)
        except WriteRefused as exc:
            server_error = exc.status >= 500
            if exc.status not in BAD_DATA and not (suspect and server_error):
                raise
            if len(rows) == 1:
                if server_error and not self._healthy():
                    raise
                self.stats.rejected_rows += 1
                log.error(
                    "the time-series server refused a point (%s); dropped: %s",
                    exc.status,
                    exc.body[:300],
                )
                return [rows[0][1]]
            half = len(rows) // 2
            return self._send(rows[:half], suspect, again) + self._send(rows[half:], suspect, again)
        if again:  # counted when first accepted: "points written" are distinct points
            return []
        self.stats.points_written += body.count(b"\n") + 1  # a line per point
        self.stats.batches_written += 1
        return []

    def _report(self, error: Any) -> None:
        reason = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        self.stats.write_errors += 1
        if reason != self._last_error:
            log.warning("time-series server unavailable (%s); points wait in the spool", reason)
            self._last_error = reason

    def _start(self) -> None:
        """What the sink before accepted and had not let go: all written again first (it
        may be lost), read from the spool batch by batch when written."""
        self._started = True
        now = time.monotonic()
        # In batches of the usual size: one write of everything kept may outlast the
        # time-out, or pass the server's request size, again and again.
        for first, last, envelopes, size in self.spool.accepted_batches(self.batch_rows):
            self._recent.keep(Written(now, (first, last), envelopes, size, None))
            self._replay = True

    def _lines_of(self, written: Written) -> Lines:
        if written.lines is not None:
            return written.lines
        rows = self.spool.accepted_between(written.first_row, written.last_row)
        return [line for line in self._as_lines(rows, first=False)
                if line[1] not in written.rejected]  # fmt: skip

    def _send_again(self, also: Written | None = None) -> None:
        """The recent batches and ``also`` (the batch just written) written again (raises
        as ``_send`` does): all of them, however long ago, since the server may have lost
        them whenever it went; accepted again now, each is kept ``REPLAY_S`` from now.
        Should the server hang up meanwhile (killed and back during the replay), the
        replay starts over: what the server had taken is lost with it. A row the
        server keeps failing is dropped alone (``suspect``), as when first written."""
        batches = [*self._recent, *([also] if also is not None else [])]
        for _attempt in range(REPLAY_ATTEMPTS):
            before = self._writer.hang_ups  # any hang-up found from here: it went again
            for written in batches:
                self._send_once_more(written)
            if self._writer.hang_ups == before:
                break
        else:
            raise ConnectionError("the server hung up during each replay")
        self._recent.touch(time.monotonic())
        self._replay = False
        self._hang_ups = self._writer.hang_ups

    def _send_once_more(self, written: Written) -> None:
        head, failures = self._replay_head
        suspect = head == written.first_row and failures >= SUSPECT_AFTER
        try:
            dropped = self._send(self._lines_of(written), suspect, again=True)
        except WriteRefused as exc:
            if exc.status >= 500:
                self._replay_head = (
                    written.first_row,
                    failures + 1 if head == written.first_row else 1,
                )
            raise
        if dropped:  # left out of its next replays too
            written.rejected |= frozenset(dropped)
            if written.lines is not None:
                written.lines = [line for line in written.lines if line[1] not in written.rejected]
        self.stats.replayed_batches += 1

    def _confirm(self) -> None:
        """Nothing to send but batches not yet past the server's flush: ask it whether it
        is still there. The request keeps the connection alive (an idle time-out would
        look like a restart), a server still there lets them go, and one that hung up or
        stopped answering has them written again (once: a server whose ``/ping`` a proxy
        does not pass is not written to again and again)."""
        well = self._writer.ping()
        if self._writer.hang_ups != self._hang_ups:
            self._replay = True
            return
        if not well:
            if self._ping_answered:  # gone, perhaps: back later without a hang-up
                self._replay = True
                log.warning("the time-series server does not answer /ping; its restarts "
                            "between writes are found by its connection alone")  # fmt: skip
            self._ping_answered = False
            return
        self._ping_answered = True
        if forgotten := self._recent.prune(time.monotonic()):
            self._forget = max(self._forget, forgotten)
            self.spool.forget(self._forget)

    def step(self, delay: float) -> float:
        """Send one batch from the spool; how long to wait before the next (backoff)."""
        if not self._started:
            self._start()
        if self._recent.full() and not self._replay:
            self._confirm()  # forgets what is past the server's flush, if it is still there
            if self._recent.full() and not self._replay and self._ping_answered:
                return 0.5  # a drain faster than the bounds: wait for the server's flush
        rows = self.spool.take(self.batch_rows)  # the spool's bound leaves them be
        if not rows and not self._replay:
            if self._recent:
                self._confirm()
            return 0.5
        head, failures = self._head
        suspect = bool(rows) and head == rows[0][0] and failures >= SUSPECT_AFTER
        lines = self._as_lines(rows)
        written = None
        try:
            if self._replay:
                self._send_again()
            if rows:
                rejected = frozenset(self._send(lines, suspect))
                kept = [line for line in lines if line[1] not in rejected] if rejected else lines
                size = sum(len(payload) for _, payload in rows)
                written = Written(time.monotonic(), (rows[0][0], rows[-1][0]), len(rows), size,
                                  kept, rejected)  # fmt: skip
            if self._writer.hang_ups != self._hang_ups:
                # The server closed the connection kept alive between two writes: it may
                # have been killed and started again, without what it held in memory.
                self._hang_ups = self._writer.hang_ups
                self._send_again(also=written)
        except Exception as exc:  # connection refused, timeouts, 5xx, auth: retry later
            if rows:
                self._head = (rows[0][0], failures + 1 if head == rows[0][0] else 1)
            self._replay = bool(self._recent)
            self._report(exc)
            return min(max(delay * 2, 1.0), self.max_backoff_s)
        if written is None:
            return 0.5
        self._recent.keep(written)
        if forgotten := self._recent.prune(time.monotonic()):  # the server as it was
            self._forget = max(self._forget, forgotten)
        self._head = (-1, 0)
        if self._last_error:
            log.info("time-series server reachable again; sending the spool")
            self._last_error = ""
        self.spool.done(rows[-1][0], forget_up_to=self._forget)
        return 0.0
