"""Assembles a running agent from its config: checks, scheduler, outbox, publisher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from functools import partial
from typing import Any

from agent import __version__
from agent.checks import REGISTRY
from agent.checks.base import Check
from agent.checks.selfmetrics import SelfMetricsCheck
from agent.config import Config
from agent.outbox import Outbox
from agent.publisher import BrokerSettings, Publisher, StatusMessages
from agent.scheduler import Scheduler
from agent.stats import AgentStats
from agent.wire import SCHEMA_VERSION, Envelope, Sample, Status, encode, split_samples, topic

log = logging.getLogger(__name__)


def build_checks(config: Config, only: str | None = None) -> list[Check[Any]]:
    checks: list[Check[Any]] = []
    for kind, _position, options in config.check_options():
        check = REGISTRY[kind](options)
        if only is None or only in (check.name, kind):
            checks.append(check)
    return checks


class Identity:
    def __init__(self, config: Config) -> None:
        self.interval = float(config.agent.interval)
        self.root = config.mqtt.topic_root
        self.province = config.agent.province
        self.commune = config.agent.commune
        self.agent = config.agent_id

    def topic(self, kind: str) -> str:
        return topic(
            self.root,
            self.province,
            self.commune,
            self.agent,
            "status" if kind == "status" else "data",
        )

    def envelope(self, seq: int, samples: list[Sample]) -> Envelope:
        return Envelope(
            v=SCHEMA_VERSION,
            agent=self.agent,
            province=self.province,
            commune=self.commune,
            seq=seq,
            ts=time.time(),
            samples=samples,
        )

    def status(
        self, state: str, checks: list[str], reason: str = "", ts: float | None = None
    ) -> Status:
        return Status(
            v=SCHEMA_VERSION,
            state="online" if state == "online" else "offline",
            agent=self.agent,
            province=self.province,
            commune=self.commune,
            ts=time.time() if ts is None else ts,
            version=__version__,
            checks=checks,
            reason=reason,
            interval=self.interval,
        )


def broker_settings(config: Config, identity: Identity) -> BrokerSettings:
    return BrokerSettings(
        config.mqtt,
        client_id=f"commune-agent/{identity.province}/{identity.commune}/{identity.agent}"[:128],
        inflight=config.mqtt.inflight,
        reconnect_max=float(config.mqtt.reconnect_max),
    )


async def close_checks(checks: list[Check[Any]]) -> None:
    for check in checks:
        try:
            await check.close()
        except Exception:
            log.exception("closing check %s", check.name)
    if "pysnmp" in sys.modules:
        from agent.snmp.client import close_engine

        close_engine()


async def run_agent(config: Config, stop: asyncio.Event | None = None, jitter: bool = True) -> None:
    """Run until ``stop`` is set or SIGTERM/SIGINT arrives."""
    stop = stop or asyncio.Event()
    identity = Identity(config)
    stats = AgentStats()
    outbox = Outbox(config.outbox_path, float(config.outbox.max_age), int(config.outbox.max_size))
    checks = build_checks(config)
    checks.append(SelfMetricsCheck(stats, outbox.stats))
    names = [c.describe() for c in checks]
    status = StatusMessages(
        topic=identity.topic("status"),
        online=lambda: encode(identity.status("online", names)),
        offline=lambda: encode(identity.status("offline", names, "stopped")),
        will=encode(identity.status("offline", names, "connection lost", ts=0.0)),
    )
    publisher = Publisher(broker_settings(config, identity), outbox, status, stats)
    data_topic = identity.topic("data")

    def store(_check: Check[Any], samples: list[Sample]) -> None:
        for part in split_samples(samples):
            outbox.put(data_topic, partial(payload, part))
        publisher.notify()

    def payload(samples: list[Sample], seq: int) -> bytes:
        return encode(identity.envelope(seq, samples))

    scheduler = Scheduler(checks, float(config.agent.interval), store, stats, jitter=jitter)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows
            loop.add_signal_handler(signum, stop.set)
    log.info(
        "agent %s (%s/%s) starting with %d checks; outbox %s",
        identity.agent,
        identity.province,
        identity.commune,
        len(checks),
        config.outbox_path,
    )
    publisher.start()
    try:
        await scheduler.run(stop)
    finally:
        await close_checks(checks)
        await asyncio.to_thread(publisher.stop)
        outbox.close()
        log.info("agent stopped")


async def run_once(config: Config, only: str | None = None) -> list[Envelope]:
    """Run every (or one) check once and return the envelopes; nothing is stored or sent."""
    identity = Identity(config)
    checks = build_checks(config, only)
    scheduler = Scheduler(checks, float(config.agent.interval), lambda _c, _s: None, AgentStats())
    try:
        results = await asyncio.gather(*(scheduler.run_once(c) for c in checks))
    finally:
        await close_checks(checks)
    return [identity.envelope(0, samples) for samples in results]
