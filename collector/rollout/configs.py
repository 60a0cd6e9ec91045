"""Sending each enrolled agent its config: retained, on the topic only it may read.

The config is the agent's profile made concrete for it (``profiles.py``), signed with
the collector's config signing key (``configkey.py``): the agent runs nothing else.
Its version goes up when its content (hash) or its keys (the signing key, the next
one announced during a rotation) change, and is always above both what the store
recorded as sent and what the agent says it runs (a store restored from an older
backup would otherwise send versions the agent refuses as replayed). It is sent
again, unchanged, after the collector starts (the broker may have lost its retained
messages). A version is recorded as sent only once the broker acknowledged it, so a
config that could not be sent is tried again at the next round. A revoked agent's
retained config is withdrawn.

The connection is the config publisher's account (``dynsec.py``): it may write every
agent's config and receipt topics and nothing else; its password is made by the running collector
and lives in its memory only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from agent.brokerclient import paho_client
from agent.configtypes import BrokerSection
from agent.wire import (
    MAX_CONFIG_BYTES,
    SCHEMA_VERSION,
    AgentConfig,
    Receipt,
    ReleaseOrder,
    encode,
    topic,
)
from collector.common.sessions import SessionWatch
from collector.rollout import registry
from collector.rollout.configkey import ConfigKeys
from collector.rollout.profiles import Candidate, ProfileError, Profiles
from collector.state.store import StateStore

log = logging.getLogger(__name__)

#: The receipt left at enrollment: nothing committed yet, receipts will come.
EMPTY_RECEIPT = encode(Receipt(v=SCHEMA_VERSION, seqs=[]))


@dataclass
class SyncReport:
    sent: list[str] = field(default_factory=list)
    unchanged: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    """Agent key -> why its config could not be made or sent."""


class ConfigSender:
    signing: Callable[[], ConfigKeys] | None = None
    """The keys that sign every config (set by the rollout); without them nothing is sent."""
    orders: Callable[[], dict[str, ReleaseOrder]] | None = None
    """Agent key -> the release order its config carries (set by the rollout); an order
    is part of the config's hash, so a changed order is sent like changed checks."""

    def __init__(
        self,
        store: StateStore,
        broker: BrokerSection,
        client_id: str,
        profiles: Callable[[], Profiles],
        clock: Callable[[], float] = time.time,
        ack_timeout_s: float = 10.0,
        username: str | None = None,
    ) -> None:
        """``username``: the config publisher's account (its password comes with
        ``credentials``); None: the [mqtt] section's own."""
        self.store = store
        self.root = broker.topic_root
        self.profiles = profiles
        self.clock = clock
        self.ack_timeout_s = ack_timeout_s
        self.watch = SessionWatch("configs")
        self._started = False
        self._connected = threading.Event()
        self._client = paho_client(broker, client_id, mqtt5=True, username=username, password="")
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._broker = broker
        self._lock = threading.Lock()
        self._resend_all = True
        self.last: SyncReport = SyncReport()
        """What the last round did: for /healthz and the console."""
        self.pending = True
        """A round is due: the profiles changed, an agent enrolled, or one failed."""
        self._last_probers: set[str] = set()

    def _on_connect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            self.watch.refused(reason.value, str(reason))
            log.warning("config sender: the broker refused the connection: %s", reason)
            return
        self.watch.up()
        self._connected.set()

    def _on_disconnect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self._connected.clear()
        self.watch.down(reason.value, str(reason), unexplained=self._started and reason.is_failure)
        if self.watch.state() == "taken_over":
            log.error("config sender: its session was taken over by another client logged in "
                      "as the config publisher")  # fmt: skip

    def credentials(self, username: str, password: str) -> None:
        """The account to log in with from the next connection on (the config publisher's,
        once the collector has made it)."""
        self._client.username_pw_set(username, password)

    def start(self) -> None:
        self._started = True
        self._client.connect_async(
            self._broker.host, self._broker.port, int(self._broker.keepalive)
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()

    def config_topic(self, province: str, commune: str, agent: str) -> str:
        return topic(self.root, province, commune, agent, "config")

    def sync(self, only: str | None = None) -> SyncReport:
        """Send every active agent's config that changed (all of them after a start);
        ``only``: one agent's, changed or not (just enrolled)."""
        with self._lock:
            report = self._sync(only)
            if only is None:
                self.last = report
                self.pending = bool(report.failed)
            elif report.failed:
                self.pending = True
            return report

    def _sync(self, only: str | None) -> SyncReport:
        report = SyncReport()
        profiles = self.profiles()
        agents = [
            m for m in registry.managed(self.store, active=True) if only in (None, m.agent_key)
        ]
        outgoing: list[tuple[registry.Managed, AgentConfig, mqtt.MQTTMessageInfo]] = []
        now = self.clock()
        keys = self.signing() if self.signing is not None else None
        ahead = registry.running_versions(self.store)
        orders = self.orders() if self.orders is not None and agents else {}
        probers = self._probers(profiles, only)
        for agent in agents:
            if keys is None:
                report.failed[agent.agent_key] = "no config signing key"
                continue
            try:
                wanted = profiles.effective(
                    agent.province, agent.commune, agent.agent, agent.profile,
                    probes=agent.agent_key in probers,
                )  # fmt: skip
            except ProfileError as exc:
                report.failed[agent.agent_key] = str(exc)
                continue
            wanted = wanted.ordered(orders.get(agent.agent_key))
            runs = ahead.get(agent.agent_key, 0)
            changed = wanted.hash != agent.config_hash or agent.config_key != keys.state or runs > 0
            if not (changed or self._resend_all or only):
                report.unchanged += 1
                continue
            message = AgentConfig(
                v=SCHEMA_VERSION,
                agent=agent.agent,
                province=agent.province,
                commune=agent.commune,
                version=max(agent.config_version, runs) + 1
                if changed
                else max(1, agent.config_version),
                hash=wanted.hash,
                profile=wanted.profile,
                interval=wanted.interval,
                checks=wanted.checks,
                published=now,
                next_key=keys.next_public_text,
                release=wanted.release,
            )
            config = encode(message)
            if len(config) > MAX_CONFIG_BYTES:
                report.failed[agent.agent_key] = (
                    f"its config is {len(config)} bytes, more than an agent takes "
                    f"({MAX_CONFIG_BYTES}): split its checks"
                )
                continue
            if not self._connected.is_set():
                report.failed[agent.agent_key] = "not connected to the broker"
                continue
            info = self._client.publish(
                self.config_topic(agent.province, agent.commune, agent.agent),
                encode(keys.sign(config)),
                qos=1,
                retain=True,
            )
            outgoing.append((agent, message, info))
        deadline = time.monotonic() + self.ack_timeout_s
        sent: list[tuple[registry.Managed, AgentConfig]] = []
        for agent, message, info in outgoing:
            with contextlib.suppress(RuntimeError, ValueError):  # not sent: said below
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if info.is_published():
                sent.append((agent, message))
            else:
                report.failed[agent.agent_key] = "the broker did not acknowledge it"
        if sent:
            with self.store.transaction() as db:
                for agent, message in sent:
                    registry.config_sent(
                        db, agent.agent_key, message.version, message.hash, now,
                        keys.state if keys else "",
                    )  # fmt: skip
        report.sent = [agent.agent_key for agent, _ in sent]
        if only is None and not report.failed:
            self._resend_all = False
        for key, why in report.failed.items():
            log.warning("config for %s not sent: %s", key, why)
        return report

    def _probers(self, profiles: Profiles, only: str | None) -> set[str]:
        """The agents that probe the shared systems, one per commune, weighed among every
        active agent. When one round for a single agent (just enrolled, and named to
        probe) changes who does, a full round follows: the other one stops."""
        everyone = registry.managed(self.store, active=True)
        chosen = profiles.probers(
            Candidate(m.province, m.commune, m.agent, m.profile, m.enrolled_at) for m in everyone
        )
        if only is not None and chosen != self._last_probers:
            self.pending = True
        self._last_probers = chosen
        return chosen

    def send_receipt(self, name: str, payload: bytes) -> bool:
        """One receipt (collector/ingest/receipts.py), QoS 0 (the next one says all it
        says), retained (an agent gets its last one when it connects). False when not
        connected."""
        if not self._connected.is_set():
            return False
        return self._client.publish(name, payload, qos=0, retain=True).rc == mqtt.MQTT_ERR_SUCCESS

    def first_receipt(self, province: str, commune: str, agent: str) -> bool:
        """An empty receipt left retained for a PC just enrolled: it holds what the broker
        takes from its first envelope on (agent/outbox.py)."""
        if not self._connected.is_set():
            return False
        name = topic(self.root, province, commune, agent, "receipt")
        info = self._client.publish(name, EMPTY_RECEIPT, qos=1, retain=True)
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(self.ack_timeout_s)
        return info.is_published()

    def withdraw(self, province: str, commune: str, agent: str) -> bool:
        """Clear a revoked agent's retained config and receipt (empty retained messages)."""
        if not self._connected.is_set():
            return False
        self._client.publish(
            topic(self.root, province, commune, agent, "receipt"), b"", qos=1, retain=True
        )
        info = self._client.publish(
            self.config_topic(province, commune, agent), b"", qos=1, retain=True
        )
        try:
            info.wait_for_publish(self.ack_timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()
