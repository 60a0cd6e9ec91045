"""Publishing the outbox to MQTT (paho-mqtt 2.x): QoS 1, in order, deleted only on PUBACK.

Two threads. The network thread connects, reconnects with backoff and runs
paho's loop; it owns the connection so that every failure (refused login,
untrusted certificate, unreachable broker) is logged with its reason, once per
distinct reason, rather than retried in silence. The drain thread hands rows to
paho while the connection is up, keeping at most ``inflight`` unacknowledged;
PUBACKs come back on the network thread and are applied by the drain thread in
batches. paho resends in-flight messages itself after a reconnect; should an
acknowledgement never come, the drain rewinds and sends again (a duplicate,
which the collector ignores, never a loss).

With a receipt topic the agent reads the collector's receipts (retained: the last
one comes at every connection; the collector leaves an empty one at enrollment).
From the first one on, rows the broker acknowledged are kept until a receipt covers
them, and the outbox gives back what a receipt passed over, which the drain sends
again before anything newer (agent/outbox.py). A broker or collector without
receipts sends none: rows are forgotten on PUBACK.
"""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time
from collections.abc import Callable

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from agent.brokerclient import describe, paho_client
from agent.configtypes import BrokerSection
from agent.outbox import Outbox, Row
from agent.stats import AgentStats
from agent.wire import WireError, decode_receipt

log = logging.getLogger(__name__)

#: With no PUBACK for this long while connected, in-flight rows are sent again.
REWIND_AFTER_S = 60.0


class BrokerSettings(msgspec.Struct, frozen=True):
    """How the publisher reaches the broker."""

    broker: BrokerSection
    """The config's [mqtt] section as it is: address, credentials, TLS, keepalive."""
    client_id: str
    inflight: int = 100
    reconnect_max: float = 120.0


class Subscription(msgspec.Struct, frozen=True):
    """A topic the agent reads (its config), and what to do with each message; called
    on paho's network thread, so it must only hand the payload over."""

    topic: str
    deliver: Callable[[bytes], None]


class StatusMessages(msgspec.Struct, frozen=True):
    """The agent's status topic and its messages: online (on each connection),
    offline (on a clean stop) and the last will (left with the broker)."""

    topic: str
    online: Callable[[], bytes]
    offline: Callable[[], bytes]
    will: bytes


def _network_thread_writes(_client: mqtt.Client, _userdata: object, _sock: object) -> None:
    """paho asks to be told when its socket has something to write: the network thread's
    loop watches for that itself."""


class Publisher:
    def __init__(
        self,
        settings: BrokerSettings,
        outbox: Outbox,
        status: StatusMessages,
        stats: AgentStats,
        subscription: Subscription | None = None,
        receipt_topic: str | None = None,
    ) -> None:
        """``receipt_topic``: where the collector sends this agent's receipts; None, rows
        are forgotten on the broker's PUBACK."""
        self.settings = settings
        self.subscription = subscription
        self.receipt_topic = receipt_topic
        self.outbox = outbox
        self.status = status
        self.stats = stats
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._draining = threading.Event()
        self._draining.set()
        self.birth_acked = threading.Event()
        self.broker_unreachable = threading.Event()
        """The last attempt to reach the broker failed below MQTT and TLS (a line down),
        until a connection is made."""
        """The broker acknowledged a birth message (the launcher's health needs it)."""
        self._birth_mid = -1
        self._last_failure = ""
        self._last_client_error = ""
        self._wake = threading.Event()
        self._acks: collections.deque[int] = collections.deque()
        self._receipts: collections.deque[bytes] = collections.deque(maxlen=4)
        self._again: collections.deque[Row] = collections.deque()
        self._pending: dict[int, tuple[int, float]] = {}  # mid -> (row id, created)
        self._cursor = 0
        self._last_progress = time.monotonic()
        self._next_lapse_check = 0.0
        self._client = self._make_client()
        self._thread = threading.Thread(target=self._drain_loop, name="outbox-drain", daemon=True)
        self._network = threading.Thread(target=self._network_loop, name="mqtt", daemon=True)

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = paho_client(s.broker, s.client_id)
        client.will_set(self.status.topic, self.status.will, qos=1, retain=True)
        client.max_inflight_messages_set(s.inflight)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_log = self._on_log
        client.on_message = self._on_message
        # paho writes a publish at once from the caller's thread (the drain's, the loop's)
        # unless something else owns the socket's writes: two threads writing one TLS
        # connection sent packets cut into each other (the broker closed the connection)
        # and, OpenSSL's connections being for one thread at a time, corrupted the heap.
        # With this paho queues the packet and wakes the network thread, which writes.
        client.on_socket_register_write = _network_thread_writes
        return client

    # paho's network thread -------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        if reason.is_failure:
            # Reported by the network loop when this session ends.
            self._last_client_error = f"broker refused the connection: {reason}"
            return
        self._last_failure = ""
        if self.subscription is not None:
            client.subscribe(self.subscription.topic, qos=1)
        if self.receipt_topic is not None:
            client.subscribe(self.receipt_topic, qos=0)
        birth = client.publish(self.status.topic, self.status.online(), qos=1, retain=True)
        self._birth_mid = birth.mid
        with self.stats.lock:
            self.stats.publish.connected = True
            self.stats.publish.connects += 1
        log.info("connected to %s:%d", self.settings.broker.host, self.settings.broker.port)
        self._last_progress = time.monotonic()
        self.broker_unreachable.clear()
        self._connected.set()
        self._wake.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        with self.stats.lock:
            self.stats.publish.connected = False
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stopping.is_set():
            log.warning("disconnected from broker (%s); the outbox keeps everything", reason)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        _reason: ReasonCode,
        _properties: object,
    ) -> None:
        if mid == self._birth_mid:
            self.birth_acked.set()
        self._acks.append(mid)
        self._wake.set()

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        if message.topic == self.receipt_topic:
            # Only the newest few matter: each receipt says all the collector has.
            self._receipts.append(bytes(message.payload))
            self._wake.set()
            return
        if self.subscription is None or message.topic != self.subscription.topic:
            return  # the broker's ACL lets nothing else in; be sure anyway
        try:
            self.subscription.deliver(bytes(message.payload))
        except Exception:  # a bad hand-over must not end paho's loop
            log.exception("could not take the message on %s", message.topic)

    def _on_log(self, _client: mqtt.Client, _userdata: object, level: int, message: str) -> None:
        # paho reports socket and TLS errors (e.g. the broker rejecting our
        # certificate after the handshake) only here; keep the last one.
        if level in (mqtt.MQTT_LOG_ERR, mqtt.MQTT_LOG_WARNING):
            self._last_client_error = message

    def _report_failure(self, reason: str) -> None:
        """Warn once per distinct reason; the same failure again is only debug."""
        where = f"{self.settings.broker.host}:{self.settings.broker.port}"
        if reason != self._last_failure:
            log.warning(
                "cannot connect to %s: %s; retrying, the outbox keeps everything", where, reason
            )
            self._last_failure = reason
        else:
            log.debug("cannot connect to %s: %s", where, reason)

    # network thread ------------------------------------------------------------

    def _network_loop(self) -> None:
        s = self.settings
        delay = 1.0
        while not self._stopping.is_set():
            self._last_client_error = ""
            connects = self.stats.publish.connects
            try:
                self._client.connect(
                    s.broker.host, s.broker.port, keepalive=int(s.broker.keepalive)
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
                    self.broker_unreachable.set()
                self._report_failure(describe(exc))
            else:
                while not self._stopping.is_set():
                    if self._client.loop(timeout=0.5) != mqtt.MQTT_ERR_SUCCESS:
                        break
                self._connected.clear()
                if self.stats.publish.connects > connects:
                    delay = 1.0  # this session got in: start the backoff over
                elif not self._stopping.is_set():
                    self._report_failure(
                        self._last_client_error or "connection closed before the broker accepted it"
                    )
            if not self._stopping.wait(delay):
                delay = min(delay * 2, float(max(1, s.reconnect_max)))

    # lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._network.start()
        self._thread.start()

    def announce(self) -> None:
        """Publish the birth message again (what it says changed: a new config)."""
        if self._connected.is_set():
            self._client.publish(self.status.topic, self.status.online(), qos=1, retain=True)

    def notify(self) -> None:
        """A new envelope is in the outbox."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Drain what can be sent in ``timeout``, announce offline, disconnect."""
        deadline = time.monotonic() + timeout
        while self._connected.is_set() and self._pending and time.monotonic() < deadline:
            time.sleep(0.05)
        self._draining.clear()
        self._wake.set()
        self._thread.join(timeout=2)
        if self._connected.is_set():
            info = self._client.publish(
                self.status.topic, self.status.offline(), qos=1, retain=True
            )
            try:
                info.wait_for_publish(max(0.5, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                log.warning("could not announce offline: %s", exc)
        self._stopping.set()
        self._client.disconnect()  # queued: the network thread writes it and closes
        self._network.join(timeout=2)
        if not self._network.is_alive():
            self._client.loop_write()  # it ended before the DISCONNECT was queued
        self._apply_acks()

    # drain thread ------------------------------------------------------------

    def _drain_loop(self) -> None:
        while self._draining.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                # Receipts first: the one the broker hands over at a connection (retained)
                # comes before the acknowledgements of what was sent after it, and says
                # whether they are to be kept.
                self._apply_receipts()
                self._apply_acks()
                if self.receipt_topic is not None and time.monotonic() > self._next_lapse_check:
                    self._next_lapse_check = time.monotonic() + 60.0
                    self.outbox.release_unconfirmed()
                if self._connected.is_set():
                    self._rewind_if_stuck()
                    self._send_window()
            except Exception:  # the drain must outlive any one bad moment
                log.exception("outbox drain failed; retrying")
                time.sleep(1)

    def _apply_acks(self) -> None:
        done: list[int] = []
        lag: float | None = None
        while self._acks:
            mid = self._acks.popleft()
            entry = self._pending.pop(mid, None)
            if entry is not None:
                done.append(entry[0])
                lag = time.time() - entry[1]
        if not done:
            return
        self.outbox.acknowledged(done)
        self._last_progress = time.monotonic()
        with self.stats.lock:
            self.stats.publish.acked += len(done)
            self.stats.publish.last_lag_s = lag
        if len(self._pending) < self.settings.inflight:
            self._wake.set()

    def _apply_receipts(self) -> None:
        while self._receipts:
            payload = self._receipts.popleft()
            try:
                receipt = decode_receipt(payload)
            except WireError as exc:
                log.warning("a receipt from the collector is not one (%s); ignored", exc)
                continue
            again = self.outbox.confirm(receipt.seqs)
            known = {row.id for row in self._again}
            self._again.extend(row for row in again if row.id not in known)
            if again:
                with self.stats.lock:
                    self.stats.publish.resent += len(again)

    def _rewind_if_stuck(self) -> None:
        if self._pending and time.monotonic() - self._last_progress > REWIND_AFTER_S:
            first = min(row_id for row_id, _ in self._pending.values())
            log.warning(
                "no acknowledgement for %.0f s; sending %d envelopes again",
                REWIND_AFTER_S,
                len(self._pending),
            )
            self._pending.clear()
            self._cursor = first - 1
            self._last_progress = time.monotonic()

    def _send_window(self) -> None:
        # What a receipt passed over goes first: the collector applies in seq order.
        while self._again and len(self._pending) < self.settings.inflight:
            if not self._publish(self._again[0]):
                return
            self._again.popleft()
        room = self.settings.inflight - len(self._pending)
        if room <= 0:
            return
        rows = self.outbox.fetch_after(self._cursor, room)
        for row in rows:
            if not self._publish(row):
                return
            self._cursor = row.id
        if len(rows) == room:
            self._wake.set()

    def _publish(self, row: Row) -> bool:
        if not self._connected.is_set():
            return False
        info = self._client.publish(row.topic, row.payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("publish refused by the client (%s); will retry", info.rc)
            return False
        self._pending[info.mid] = (row.id, row.created)
        with self.stats.lock:
            self.stats.publish.published += 1
        return True
