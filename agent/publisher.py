"""Publishing the outbox to MQTT (paho-mqtt 2.x): QoS 1, in order, deleted only on PUBACK.

A drain thread hands rows to paho while the connection is up, keeping at most
``inflight`` unacknowledged; PUBACKs come back on paho's network thread and are
applied by the drain thread in batches. paho resends in-flight messages itself
after a reconnect; should an acknowledgement never come, the drain rewinds and
sends again (a duplicate, which the collector ignores, never a loss).
"""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.outbox import Outbox
from agent.stats import AgentStats

log = logging.getLogger(__name__)

#: With no PUBACK for this long while connected, in-flight rows are sent again.
REWIND_AFTER_S = 60.0


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int
    client_id: str
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive: int = 60
    inflight: int = 100
    reconnect_max: int = 120


@dataclass(frozen=True)
class StatusMessages:
    topic: str
    online: Callable[[], bytes]
    offline: Callable[[], bytes]
    will: bytes


class Publisher:
    def __init__(
        self, settings: BrokerSettings, outbox: Outbox, status: StatusMessages, stats: AgentStats
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.status = status
        self.stats = stats
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._acks: collections.deque[int] = collections.deque()
        self._pending: dict[int, tuple[int, float]] = {}  # mid -> (row id, created)
        self._cursor = 0
        self._last_progress = time.monotonic()
        self._client = self._make_client()
        self._thread = threading.Thread(target=self._drain_loop, name="outbox-drain", daemon=True)

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        if s.tls:
            client.tls_set(
                ca_certs=s.ca_file or None,
                certfile=s.cert_file or None,
                keyfile=s.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(self.status.topic, self.status.will, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, s.reconnect_max))
        client.max_inflight_messages_set(s.inflight)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
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
            log.warning(
                "broker %s:%d refused the connection: %s",
                self.settings.host,
                self.settings.port,
                reason,
            )
            return
        client.publish(self.status.topic, self.status.online(), qos=1, retain=True)
        with self.stats.lock:
            self.stats.publish.connected = True
            self.stats.publish.connects += 1
        log.info("connected to %s:%d", self.settings.host, self.settings.port)
        self._last_progress = time.monotonic()
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
        self._connected.clear()
        with self.stats.lock:
            self.stats.publish.connected = False
        if not self._stopping.is_set():
            log.warning("disconnected from broker (%s); the outbox keeps everything", reason)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        _reason: ReasonCode,
        _properties: object,
    ) -> None:
        self._acks.append(mid)
        self._wake.set()

    # lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive)
        self._client.loop_start()
        self._thread.start()

    def notify(self) -> None:
        """A new envelope is in the outbox."""
        self._wake.set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Drain what can be sent in ``timeout``, announce offline, disconnect."""
        deadline = time.monotonic() + timeout
        while self._connected.is_set() and self._pending and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stopping.set()
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
        self._client.disconnect()
        self._client.loop_stop()
        self._apply_acks()

    # drain thread ------------------------------------------------------------

    def _drain_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._apply_acks()
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
        self.outbox.delete(done)
        self._last_progress = time.monotonic()
        with self.stats.lock:
            self.stats.publish.acked += len(done)
            self.stats.publish.last_lag_s = lag
        if len(self._pending) < self.settings.inflight:
            self._wake.set()

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
        room = self.settings.inflight - len(self._pending)
        if room <= 0:
            return
        rows = self.outbox.fetch_after(self._cursor, room)
        for row in rows:
            if not self._connected.is_set():
                return
            info = self._client.publish(row.topic, row.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("publish refused by the client (%s); will retry", info.rc)
                return
            self._pending[info.mid] = (row.id, row.created)
            self._cursor = row.id
            with self.stats.lock:
                self.stats.publish.published += 1
        if len(rows) == room:
            self._wake.set()
