"""The collector's MQTT subscription: a persistent QoS 1 session, acknowledged after commit.

MQTT v5 on purpose: a v3.1.1 client gets at most Mosquitto's
``max_inflight_messages`` (20) unacknowledged messages at a time, which with
acknowledge-after-commit would cap ingest at 20 messages per commit. A v5
client sets its own window (Receive Maximum). The session outlives restarts
(Session Expiry), so what arrives while the collector is down waits for it.

Status topics are subscribed without ``$share``: shared subscriptions never
receive retained messages. Data may be shared among collectors of a group. No agent
retains its data (the contract): data topics are subscribed so that the broker sends
no retained message on subscribing, and with each message's retain flag as its
publisher set it, so that one an agent did retain is refused (``retained``, counted,
acknowledged) rather than applied — or, with a plain subscription, replayed to every
new subscription of every collector.

The session is the collector's account's (the shipped broker configs name every
client after its account): a DISCONNECT from the broker saying "session taken over"
(0x8E), or — from a broker that says nothing, as Mosquitto 2.0.11 — the session closed
again and again while the broker's uptime (``$SYS/broker/uptime``, read here for every
session of the collector: ``common/sessions.py``) shows it never stopped, means someone
logs in with the collector's own credentials; it is counted, logged, and reported
(``watch``: /healthz, /metrics, the collector's alerts).

Memory is bounded whatever the agents send: the broker sends no packet larger
than ``MAX_PACKET`` (MQTT 5 Maximum Packet Size; envelopes are at most 256 KiB);
QoS 0 messages, which the receive window does not bound and which no agent
sends (the contract is QoS 1), are refused as they are read (``qos0``, counted,
never queued); the inbox between the two threads holds at most
``max_inbox_bytes`` of payloads: beyond, the network thread stops reading and
QoS 1 waits in the broker; batches are cut at ``max_batch_bytes``.

A QoS 0 flood can still hold good data back in the broker: once the collector's
outgoing queue in Mosquitto reaches ``max_queued_messages`` (1,000 by default),
QoS 1 messages it took from agents meanwhile stay in flight unsent while the
connection lasts (measured with Mosquitto 2.0.11; later versions drop the
packet the same way), and are sent on the next connection of the persistent
session. So once a flood has been quiet for ``FLOOD_QUIET_S``, the collector
reconnects (``resyncs``).

Two threads: the network thread alone touches the socket (an SSL connection
must not be read and written from two threads at once); it decodes whole reads
(``mqtt_codec``) and hands the messages over in bulk. The ingest thread commits
batches; their acknowledgements go back to the network thread, which sends
them together. Acknowledgements owed on a connection that has since dropped are
not sent: the broker delivers those messages again on the next connection, and
the store ignores what it already has.
"""

from __future__ import annotations

import collections
import logging
import select
import socket
import sqlite3
import ssl
import threading
import time
from dataclasses import dataclass

from agent.configtypes import BrokerSection
from collector.common.sessions import TAKEN_OVER, BrokerUptime, SessionWatch
from collector.ingest import codec
from collector.ingest.ingestor import Ingestor, Message, sender_of

log = logging.getLogger(__name__)

#: Largest packet the broker may send us; larger ones are dropped by the broker. Room
#: above the contract's 256 KiB envelopes, so a slightly larger one is still counted
#: (too_large) rather than vanishing.
MAX_PACKET = 1024 * 1024
READ_SIZE = 256 * 1024
#: QoS 0 messages in one connection that make it a flood the broker may have held QoS 1
#: messages back behind (it sends at least ``max_queued_messages`` of them before it
#: drops: far more than this), how long it must have been quiet before reconnecting, and
#: the least time between two such reconnections (a stray QoS 0 sender is not a reason
#: to reconnect every minute; what waits is sent on the next one).
FLOOD_QOS0 = 10
FLOOD_QUIET_S = 2.0
RESYNC_EVERY_S = 30.0


@dataclass(frozen=True)
class SourceSettings:
    broker: BrokerSection
    """The config's [mqtt] section as it is: address, credentials, TLS, keepalive, root."""
    client_id: str
    provinces: tuple[str, ...] = ()
    """Provinces this collector owns; empty: all."""
    share_group: str = ""
    """Share data topics with the other collectors of this group ($share)."""
    receive_window: int = 2000
    session_expiry_s: int = 7 * 86400
    max_batch: int = 1000
    max_batch_bytes: int = 8 * 1024 * 1024
    """A batch is cut at this many payload bytes (decoded, they weigh several times more)."""
    max_inbox_bytes: int = 64 * 1024 * 1024
    """Payloads received and not yet committed; beyond, reading pauses."""
    max_delay_s: float = 0.05
    connect_timeout_s: float = 10.0

    @property
    def root(self) -> str:
        return self.broker.topic_root

    def topic_filters(self) -> list[str]:
        filters = []
        for province in self.provinces or ("+",):
            filters.append(f"{self.root}/{province}/+/+/status")
            data = f"{self.root}/{province}/+/+/data"
            filters.append(f"$share/{self.share_group}/{data}" if self.share_group else data)
        return filters


class Refused(Exception):
    """The broker answered, and said no."""

    def __init__(self, message: str, reason: int = 0x80) -> None:
        super().__init__(message)
        self.reason = reason


class ClosedByBroker(ConnectionError):
    """The broker closed a sound connection without a word (Mosquitto 2.0.11 does so
    when another client takes the session, when an account changes, when it stops)."""


class Disconnected(ConnectionError):
    """The broker ended the connection with a DISCONNECT: ``reason`` says why."""

    def __init__(self, message: str, reason: int) -> None:
        super().__init__(message)
        self.reason = reason


class _Acks:
    """Packet ids committed by the ingest thread, waiting for the network thread to send."""

    def __init__(self) -> None:
        self.generation = 0
        """Which connection: ids owed to an earlier one are not sent."""
        self._pending: list[int] = []
        self._lock = threading.Lock()

    def owe(self, generation: int, packet_id: int) -> None:
        with self._lock:
            if generation == self.generation:
                self._pending.append(packet_id)

    def owe_all(self, generation: int, packet_ids: list[int]) -> None:
        with self._lock:
            if generation == self.generation:
                self._pending.extend(packet_ids)

    def take(self) -> bytes:
        with self._lock:
            pending, self._pending = self._pending, []
        return b"".join(codec.puback(packet_id) for packet_id in pending)

    def next_connection(self) -> None:
        with self._lock:
            self.generation += 1
            self._pending = []


class MqttSource:
    def __init__(
        self, settings: SourceSettings, ingestor: Ingestor, uptime: BrokerUptime | None = None
    ) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.uptime = uptime or BrokerUptime()
        self.connected = threading.Event()
        """Connected and subscribed."""
        self._inbox: collections.deque[Message] = collections.deque()
        self._inbox_bytes = 0
        self.refused_qos0 = 0
        self.refused_retained = 0
        """Data messages their agent retained: refused as they are read."""
        self.watch = SessionWatch("ingest")
        self.uptime.watches.append(self.watch)
        self.resyncs = 0
        """Reconnections after a QoS 0 flood, for what the broker held back behind it."""
        self._flood_qos0 = 0
        self._flood_last = 0.0
        self._resynced_at = -RESYNC_EVERY_S
        """QoS 0 messages refused as they were read (the contract is QoS 1)."""
        self._arrived = threading.Condition()
        self._acks = _Acks()
        self._stopping = threading.Event()
        self._closing = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._network = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._worker = threading.Thread(target=self._work, name="ingest", daemon=True)
        self.store_error = ""
        """Why the store last failed to commit; empty once a commit succeeds."""

    # the network thread ----------------------------------------------------------

    def _open(self) -> socket.socket:
        s = self.settings
        broker = s.broker
        sock = socket.create_connection((broker.host, broker.port), timeout=s.connect_timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not broker.tls:
            return sock
        context = ssl.create_default_context(cafile=broker.ca_file or None)
        if broker.cert_file:
            context.load_cert_chain(broker.cert_file, broker.key_file or None)
        return context.wrap_socket(sock, server_hostname=broker.host)

    def _handshake(self, sock: socket.socket, reader: codec.PacketReader) -> int:
        """CONNECT, CONNACK, SUBSCRIBE, SUBACK; the keepalive the broker wants."""
        s = self.settings
        sock.sendall(
            codec.connect(
                s.client_id,
                keepalive=int(s.broker.keepalive),
                clean_start=False,
                username=s.broker.username,
                password=s.broker.password(),
                session_expiry=s.session_expiry_s,
                receive_maximum=s.receive_window,
                maximum_packet_size=MAX_PACKET,
            )
        )
        connack = self._expect(sock, reader, codec.CONNACK)
        if connack.reasons[0] >= 0x80:
            detail = f": {connack.reason_string}" if connack.reason_string else ""
            raise Refused(f"{codec.reason_text(connack.reasons[0])}{detail}", connack.reasons[0])
        filters = s.topic_filters()
        data_options = codec.RETAIN_AS_PUBLISHED | codec.NO_RETAINED_ON_SUBSCRIBE
        options = {f: data_options for f in filters if f.endswith("/data")}
        sock.sendall(codec.subscribe(1, filters, options=options))
        suback = self._expect(sock, reader, codec.SUBACK)
        # Not needed to ingest: its SUBACK is not waited for (a broker or ACL that refuses
        # it leaves takeovers to be told by reason codes alone).
        sock.sendall(codec.subscribe(2, [BrokerUptime.TOPIC], qos=0))
        for topic_filter, reason in zip(filters, suback.reasons, strict=False):
            if reason >= 0x80:
                log.error(
                    "the broker refused the subscription %s: %s",
                    topic_filter,
                    codec.reason_text(reason),
                )
        log.info("subscribed to %s", ", ".join(filters))
        if connack.server_keep_alive is not None:
            return connack.server_keep_alive
        return int(s.broker.keepalive)

    def _expect(self, sock: socket.socket, reader: codec.PacketReader, kind: int) -> codec.Ack:
        """The next acknowledgement of ``kind``; messages before it are taken in."""
        while True:
            # A session's waiting messages may share a read with the CONNACK: all are kept.
            for answer in self._take_in(reader, sock.recv(READ_SIZE)):
                if answer.kind == kind:
                    return answer

    def _take_in(self, reader: codec.PacketReader, data: bytes) -> list[codec.Ack]:
        """Decode one read: its messages go to the ingest thread; the broker's answers
        are returned. A DISCONNECT from the broker ends the connection."""
        if not data:
            raise ClosedByBroker("the broker closed the connection")
        publishes: list[codec.Publish] = []
        answers: list[codec.Ack] = []
        for packet in reader.feed(data):
            if isinstance(packet, codec.Publish):
                publishes.append(packet)
            elif isinstance(packet, codec.Ack):
                if packet.kind == codec.DISCONNECT:
                    raise Disconnected(_disconnect_reason(packet), packet.reasons[0])
                answers.append(packet)
        if publishes:
            self._deliver(publishes)
        return answers

    def _deliver(self, publishes: list[codec.Publish]) -> None:
        received = time.time()
        generation = self._acks.generation
        owe = self._acks.owe
        messages = []
        size = 0
        for p in publishes:
            if p.topic == BrokerUptime.TOPIC:
                self.uptime.seen(p.payload)
                continue
            if not p.packet_id:
                # Outside the contract, and a flood of them would queue without bound:
                # refused here, at the cost of reading them.
                self.refused_qos0 += 1
                self._flood_qos0 += 1
                self._flood_last = time.monotonic()
                self.ingestor.rejections(
                    sender_of(p.topic, self.settings.root),
                    "qos0",
                    "a QoS 0 message: agents publish at QoS 1",
                )
                continue
            if p.retain and p.topic.endswith("/data"):
                # Only an agent that retained it can send it so (Retain As Published):
                # acknowledged, so the broker does not send it again, and never applied.
                self.refused_retained += 1
                owe(generation, p.packet_id)
                self.ingestor.rejections(
                    sender_of(p.topic, self.settings.root),
                    "retained",
                    "a retained data message: agents never retain their data",
                )
                continue
            size += len(p.payload)
            messages.append(
                Message(p.topic, p.payload, received, packet_id=p.packet_id, connection=generation)
            )
        if not messages:
            return
        with self._arrived:
            was_empty = not self._inbox
            self._inbox.extend(messages)
            self._inbox_bytes += size
            # The ingest thread waits for a first message, then a little longer to fill
            # its batch: waking it for every read in between (one TLS record each, at
            # times) cost both threads more than the batch saved.
            if (
                was_empty
                or len(self._inbox) >= self.settings.max_batch
                or self._inbox_bytes >= self.settings.max_batch_bytes
            ):
                self._arrived.notify()

    def _full(self) -> bool:
        return self._inbox_bytes >= self.settings.max_inbox_bytes

    def _flood_over(self) -> bool:
        """A QoS 0 flood came on this connection and has stopped: time to reconnect."""
        now = time.monotonic()
        return (
            self._flood_qos0 >= FLOOD_QOS0
            and now - self._flood_last >= FLOOD_QUIET_S
            and now - self._resynced_at >= RESYNC_EVERY_S
        )

    def _session(self) -> bool:
        """One connection, from connect until it drops or the collector stops; True when
        it ended to be sent again what a QoS 0 flood may have held back."""
        reader = codec.PacketReader(max_packet=MAX_PACKET)
        self._flood_qos0 = 0
        with self._open() as sock:
            keepalive = self._handshake(sock, reader)
            self.connected.set()
            self.watch.up()
            sock.setblocking(False)
            last_sent = last_heard = time.monotonic()
            pinged = False
            while not self._closing.is_set():
                acks = self._acks.take()
                if acks:
                    _send(sock, acks)
                    last_sent = time.monotonic()
                if self._stopping.is_set():
                    # Take nothing new; wait for the last batch's acknowledgements.
                    self._closing.wait(0.05)
                    continue
                if self._flood_over():
                    self._resynced_at = time.monotonic()
                    _send(sock, self._acks.take() + codec.DISCONNECT_PACKET)
                    return True
                paused = self._full()
                pending = not paused and isinstance(sock, ssl.SSLSocket) and sock.pending()
                if not pending:
                    # Paused (the inbox is full): wait for the ingest thread, not the socket.
                    watched = [self._wake_reader] if paused else [sock, self._wake_reader]
                    ready, _, _ = select.select(watched, [], [], 1.0)
                    if self._wake_reader in ready:
                        self._wake_reader.recv(4096)
                    if sock not in ready:
                        now = time.monotonic()
                        if paused:
                            last_heard = now  # not reading: the broker's silence is ours
                        elif keepalive and now - last_heard > 1.5 * keepalive:
                            raise ConnectionError(
                                f"no word from the broker for {keepalive * 1.5:.0f} s"
                            )
                        if keepalive and now - last_sent > keepalive / 2 and not pinged:
                            _send(sock, codec.PINGREQ_PACKET)
                            last_sent, pinged = now, True
                        continue
                data = _read_burst(sock)
                if data is None:
                    continue
                self._take_in(reader, data)
                last_heard, pinged = time.monotonic(), False
            _send(sock, self._acks.take() + codec.DISCONNECT_PACKET)
        return False

    def _run(self) -> None:
        delay = 1.0
        last_problem = ""
        broker = f"{self.settings.broker.host}:{self.settings.broker.port}"
        while not self._closing.is_set():
            try:
                if not self._session():
                    return
                self.resyncs += 1
                self.connected.clear()
                self._acks.next_connection()
                log.warning(
                    "connecting again to broker %s after a flood of QoS 0 messages, so that "
                    "it sends the QoS 1 messages it may have held back behind them",
                    broker,
                )
                continue
            except Refused as exc:
                self.watch.refused(exc.reason, str(exc))
                problem = f"broker {broker} refused the collector: {exc}"
            except Disconnected as exc:
                self.watch.down(exc.reason, str(exc))
                problem = f"{exc}; unacknowledged messages will come again"
                if exc.reason == TAKEN_OVER:
                    problem = self._taken(broker)
            except ClosedByBroker as exc:
                self.watch.down(unexplained=self.connected.is_set())
                problem = (
                    f"lost the broker {broker} ({exc}); unacknowledged messages will come again"
                )
                if self.watch.state() == "taken_over":
                    problem = self._taken(broker)
            except (OSError, codec.ProtocolError) as exc:
                problem = (
                    f"lost the broker {broker} ({exc or type(exc).__name__}); "
                    "unacknowledged messages will come again"
                )
            except Exception as exc:  # a bug of ours: a new connection, not a dead thread
                log.exception("the MQTT connection failed unexpectedly; connecting again")
                problem = f"unexpected {type(exc).__name__} on the broker connection"
            was_connected = self.connected.is_set()
            self.connected.clear()
            self.watch.down()
            self._acks.next_connection()
            if was_connected:
                delay = 1.0
            if problem != last_problem or was_connected:
                (log.warning if was_connected else log.error)("%s", problem)
                last_problem = problem
            if self._closing.wait(delay):
                return
            delay = min(delay * 2, 30.0)

    def _taken(self, broker: str) -> str:
        account = self.settings.broker.username or self.settings.client_id
        return (
            f"the collector's session on {broker} is being taken: another client logs in as "
            f"{account!r} (its credentials are in other hands, or a second collector runs "
            "with them); connecting again"
        )

    # the ingest thread -----------------------------------------------------------

    def _next_batch(self) -> list[Message]:
        limit, limit_bytes = self.settings.max_batch, self.settings.max_batch_bytes
        with self._arrived:
            if not self._inbox and not self._arrived.wait_for(lambda: bool(self._inbox), 0.2):
                return []
            # A little patience fills the batch: one commit for many messages.
            deadline = time.monotonic() + self.settings.max_delay_s
            while len(self._inbox) < limit and self._inbox_bytes < limit_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._arrived.wait(remaining):
                    break
            batch: list[Message] = []
            size = 0
            while self._inbox and len(batch) < limit and (not batch or size < limit_bytes):
                message = self._inbox.popleft()
                batch.append(message)
                size += len(message.payload)
            self._inbox_bytes -= size
        return batch

    def _work(self) -> None:
        try:
            while not self._stopping.is_set() or self._inbox:
                batch = self._next_batch()
                if not batch:
                    continue
                while True:
                    try:
                        self.ingestor.process(batch)
                        self.store_error = ""
                        break
                    except sqlite3.OperationalError as exc:
                        # Not acknowledged: nothing is lost; try again rather than drop.
                        if not self.store_error:
                            log.error("state store cannot commit (%s); retrying every 1 s", exc)
                        self.store_error = str(exc)[:200] or type(exc).__name__
                        if self._stopping.wait(1.0):
                            return
                self._owe(batch)
                self._wake_writer.send(b"\x00")  # the network thread sends the acknowledgements
        except BaseException:
            # The collector sees the thread gone (/healthz, then exits for a restart).
            log.critical("the ingest worker died", exc_info=True)
            raise

    def _owe(self, batch: list[Message]) -> None:
        """The whole batch is committed or refused: acknowledge it (on the connection it
        came by; one that has dropped since will bring it again)."""
        connection = batch[0].connection
        if all(m.connection == connection for m in batch):
            self._acks.owe_all(connection, [m.packet_id for m in batch])
            return
        for message in batch:
            self._acks.owe(message.connection, message.packet_id)

    def queued(self) -> int:
        """Messages received and not yet committed."""
        return len(self._inbox)

    def dead(self) -> list[str]:
        """Its threads that have ended without being told to: "mqtt", "ingest"."""
        if self._stopping.is_set():
            return []
        return [t.name for t in (self._network, self._worker) if t.ident and not t.is_alive()]

    def start(self) -> None:
        self._worker.start()
        self._network.start()

    def stop(self) -> None:
        """Commit what was received, acknowledge it, and leave the session for the next run."""
        self._stopping.set()
        self._worker.join(timeout=10)
        self._closing.set()
        self._network.join(timeout=10)
        self._wake_reader.close()
        self._wake_writer.close()


def _read_burst(sock: socket.socket) -> bytes | None:
    """What the socket holds now, up to ``READ_SIZE`` (None: nothing after all; b"": the
    broker closed). Over TLS one ``recv`` returns one record, and Mosquitto writes each
    packet as a record of its own: reading one and going round the loop (select, the
    acknowledgements' lock, decoding, handing over) per message cost the network thread
    more than the decryption; the records that arrived together are read together."""
    try:
        first = sock.recv(READ_SIZE)
    except (BlockingIOError, ssl.SSLWantReadError):
        return None
    if not first or not isinstance(sock, ssl.SSLSocket):
        return first  # a plain socket's recv already takes all the kernel holds
    chunks, size = [first], len(first)
    while size < READ_SIZE:
        try:
            more = sock.recv(READ_SIZE - size)
        except (BlockingIOError, ssl.SSLWantReadError):
            break
        if not more:
            break  # the close is read again (and reported) on the next round
        chunks.append(more)
        size += len(more)
    return b"".join(chunks)


def _send(sock: socket.socket, data: bytes) -> None:
    """Send everything on a non-blocking socket, waiting for room as needed."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except (BlockingIOError, ssl.SSLWantWriteError):
            select.select([], [sock], [], 1.0)
            continue
        view = view[sent:]


def _disconnect_reason(packet: codec.Ack) -> str:
    detail = f": {packet.reason_string}" if packet.reason_string else ""
    return f"the broker disconnected us: {codec.reason_text(packet.reasons[0])}{detail}"
