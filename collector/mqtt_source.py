"""The collector's MQTT subscription: a persistent QoS 1 session with manual acknowledgement.

MQTT v5 on purpose: a v3.1.1 client gets at most Mosquitto's
``max_inflight_messages`` (20) unacknowledged messages at a time, which with
acknowledge-after-commit would cap ingest at 20 messages per commit. A v5
client sets its own window (Receive Maximum). The session outlives restarts
(Session Expiry), so what arrives while the collector is down waits for it.

Status topics are subscribed without ``$share``: shared subscriptions never
receive retained messages. Data may be shared among collectors of a group.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector.ingest import Ingestor, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSettings:
    host: str
    port: int
    client_id: str
    root: str = "commune"
    provinces: tuple[str, ...] = ()
    """Provinces this collector owns; empty: all."""
    share_group: str = ""
    """Share data topics with the other collectors of this group ($share)."""
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive: int = 60
    receive_window: int = 2000
    session_expiry_s: int = 7 * 86400
    max_batch: int = 1000
    max_delay_s: float = 0.05

    def topic_filters(self) -> list[str]:
        filters = []
        for province in self.provinces or ("+",):
            filters.append(f"{self.root}/{province}/+/+/status")
            data = f"{self.root}/{province}/+/+/data"
            filters.append(f"$share/{self.share_group}/{data}" if self.share_group else data)
        return filters


class MqttSource:
    def __init__(self, settings: SourceSettings, ingestor: Ingestor) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.connected = threading.Event()
        self._queue: queue.Queue[Message] = queue.Queue()
        self._stopping = threading.Event()
        self._client = self._make_client()
        self._worker = threading.Thread(target=self._work, name="ingest", daemon=True)

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        if s.tls:
            client.tls_set(
                ca_certs=s.ca_file or None, certfile=s.cert_file or None, keyfile=s.key_file or None
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        return client

    def _on_connect(
        self, client: mqtt.Client, _u: object, flags: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            log.error(
                "broker %s:%d refused the collector: %s",
                self.settings.host,
                self.settings.port,
                reason,
            )
            return
        options = SubscribeOptions(qos=1)
        client.subscribe([(f, options) for f in self.settings.topic_filters()])
        log.info("subscribed to %s", ", ".join(self.settings.topic_filters()))
        self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning(
                "disconnected from the broker (%s); unacknowledged messages will come again", reason
            )

    def _on_message(self, client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        mid, qos = message.mid, message.qos

        def ack() -> None:
            if qos:
                client.ack(mid, qos)

        self._queue.put(Message(message.topic, bytes(message.payload), time.time(), ack))

    def _next_batch(self) -> list[Message]:
        try:
            batch = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.settings.max_delay_s
        while len(batch) < self.settings.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self._queue.get(timeout=max(0.0, remaining))
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        while not self._stopping.is_set() or not self._queue.empty():
            batch = self._next_batch()
            if not batch:
                continue
            while True:
                try:
                    self.ingestor.process(batch)
                    break
                except sqlite3.Error as exc:
                    # Not acknowledged: nothing is lost; try again rather than drop.
                    log.error("state store cannot commit (%s); retrying in 1 s", exc)
                    if self._stopping.wait(1.0):
                        return

    def queued(self) -> int:
        """Messages received and not yet committed."""
        return self._queue.qsize()

    def start(self) -> None:
        s = self.settings
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = s.session_expiry_s
        properties.ReceiveMaximum = s.receive_window
        self._client.connect_async(
            s.host, s.port, keepalive=s.keepalive, clean_start=False, properties=properties
        )
        self._worker.start()
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping.set()
        self._worker.join(timeout=10)
        self._client.disconnect()
        self._client.loop_stop()
