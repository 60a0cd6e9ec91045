"""The fleet as enrolled PCs: tokens from the collector's API, one enrollment per agent
through the same request ``commune-agent enroll`` makes, one broker session per agent
with its own account, and the checks each one plays taken from the config the
collector sends it (decoded and judged as the agent does)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import enroll as enrolling
from agent.checks.system import SystemCheck
from agent.config import parse_checks
from agent.configkeys import decode_public_key, verify
from agent.configtypes import ConfigError
from agent.enrollwire import EnrollAnswer
from agent.wire import TopicIdentity, WireError, config_key_id, decode_config, decode_signed_config
from fleet.scenario import Fleet, Message, Plan, PlannedCheck, SimAgent

log = logging.getLogger("fleet")


class FleetError(Exception):
    pass


def _api(
    collector: str, path: str, body: dict[str, object], api_token: str, ca_file: str
) -> dict[str, object]:
    """A POST on the collector's API (the same request path as enrollment's)."""
    raw = enrolling.post_json(collector.rstrip("/") + path, body, ca_file=ca_file, bearer=api_token)
    try:
        data = json.loads(raw)
    except ValueError:
        raise FleetError(f"{path}: not JSON") from None
    if not isinstance(data, dict):
        raise FleetError(f"{path}: not an object")
    return data


def plan_of(payload: bytes, identity: TopicIdentity, keys: dict[str, bytes]) -> Plan:
    """The collector's config for one agent, as the agent would judge it: signed by one of
    ``keys``, for this agent, data only."""
    message = decode_config(verify(decode_signed_config(payload), keys), identity)
    checks = parse_checks(message.checks, f"config v{message.version}", remote=True)
    planned = []
    for kind, _position, options in checks.options():
        target = str(getattr(options, "target", "") or getattr(options, "host", "") or "")
        if kind == "system":  # as the agent names it: the URL, or host:port
            target = SystemCheck(options).target
        planned.append(
            PlannedCheck(
                kind=kind,
                name=options.name or kind,
                target=target,
                network=str(getattr(options, "network", "tslcd")),
                method=str(getattr(options, "method", "icmp")),
                system=str(getattr(options, "system", "")),
                system_kind=str(getattr(options, "kind", "")),
            )
        )
    return Plan(message.version, message.hash, message.interval, tuple(planned))


@dataclass
class Session:
    """One simulated agent's own broker session."""

    agent: SimAgent
    client: mqtt.Client
    config_topic: str
    identity: TopicIdentity
    keys: dict[str, bytes]
    """The config signing keys the collector gave it at enrollment."""


class EnrolledFleet:
    def __init__(
        self,
        fleet: Fleet,
        collector: str,
        broker_host: str,
        broker_port: int,
        *,
        api_token: str = "",
        ca_file: str = "",
        on_plan: Callable[[SimAgent], None] = lambda _a: None,
    ) -> None:
        parts = urlsplit(collector)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FleetError(f"--collector {collector!r}: expected http(s)://host:port")
        self.fleet = fleet
        self.collector = collector
        self.broker = (broker_host, broker_port)
        self.api_token = api_token
        self.ca_file = ca_file
        self.on_plan = on_plan
        self.sessions: dict[int, Session] = {}
        self._lock = threading.Lock()

    def enroll(self) -> None:
        """Tokens per commune (the PCs', the poller's), then every agent enrolled."""
        fleet = self.fleet
        for commune in fleet.communes:
            members = [a for a in fleet.agents if a.commune is commune]
            pcs = [a for a in members if not a.poller]
            tokens = {
                False: self._token(commune.slug, "office", max(1, len(pcs))),
                True: self._token(commune.slug, "poller", 1),
            }
            for agent in members:
                answer = enrolling.request(
                    self.collector.rstrip("/") + "/api/v1/enroll",
                    tokens[agent.poller],
                    agent.agent,
                    password := enrolling.new_password(),
                    replace=True,
                    commune=commune.slug,
                    ca_file=self.ca_file,
                )
                self._connect(agent, answer, password)
        log.info("enrolled %d agents through %s", len(self.sessions), self.collector)

    def _token(self, commune: str, profile: str, uses: int) -> str:
        created = _api(
            self.collector, "/api/v1/enrollment/tokens",
            {"province": self.fleet.province, "commune": commune, "profile": profile,
             "uses": uses, "ttl_s": 3600.0, "allow_replace": True},
            self.api_token, self.ca_file,
        )  # fmt: skip
        return str(created["token"])

    def _connect(self, agent: SimAgent, answer: EnrollAnswer, password: str) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"commune-fleet/{answer.province}/{answer.commune}/{answer.agent}",
        )
        client.username_pw_set(answer.username, password)
        session = Session(
            agent,
            client,
            answer.topics.config,
            TopicIdentity(answer.province, answer.commune, answer.agent, "config"),
            {config_key_id(k): k for k in map(decode_public_key, answer.config_keys)},
        )
        will_topic, will, _retain = self.fleet.will(agent)
        client.will_set(will_topic, will, qos=1, retain=True)
        client.on_connect = lambda c, *_: c.subscribe(session.config_topic, qos=1)
        client.on_message = lambda _c, _u, m: self._config(session, bytes(m.payload))
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(1, 5)  # a simulation: back soon after a broker restart
        client.connect(*self.broker)
        client.loop_start()
        self.sessions[id(agent)] = session

    def _config(self, session: Session, payload: bytes) -> None:
        if not payload:
            return
        try:
            plan = plan_of(payload, session.identity, session.keys)
        except (WireError, ConfigError) as exc:
            log.warning("%s refused its config: %s", session.agent.agent, exc)
            return
        with self._lock:
            session.agent.plan = plan
        self.on_plan(session.agent)

    def send(self, agent: SimAgent, messages: list[Message]) -> None:
        session = self.sessions[id(agent)]
        for topic, payload, retain in messages:
            session.client.publish(topic, payload, qos=1, retain=retain)

    def close(self) -> None:
        """Every session told to end first, then each waited for: with the broker gone
        too (Ctrl-C stops both), each client may sit in its reconnect wait, and waiting
        for them one after the other would add those waits up."""
        for session in self.sessions.values():
            session.client.disconnect()
        for session in self.sessions.values():
            session.client.loop_stop()
