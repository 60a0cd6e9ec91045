"""Assembles a running agent from its config: checks, scheduler, outbox, publisher."""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.central import CentralConfig, Effective
from agent.checks import check_type
from agent.checks.base import AsyncCheck, BlockingCheck, Check
from agent.checks.selfmetrics import SelfMetricsCheck
from agent.config import ChecksSection, Config
from agent.outbox import Outbox
from agent.publisher import BrokerSettings, Publisher, StatusMessages, Subscription
from agent.scheduler import Scheduler
from agent.signals import stop_on_signals
from agent.stats import AgentStats
from agent.update import EXIT_UPDATE, HOME_ENV, LAUNCHER_ENV
from agent.wakeup import Wakeup
from agent.wire import (
    SCHEMA_VERSION,
    Envelope,
    ReleaseOrder,
    Sample,
    Status,
    TopicKind,
    UpdateReport,
    encode,
    split_samples,
    topic,
)

if TYPE_CHECKING:
    from agent.update.follow import UpdateFollower

log = logging.getLogger(__name__)


def build_checks(config: Config, only: str | None = None) -> list[Check[Any]]:
    """The checks in effect: the collector's last config (when enrolled) with the local
    ones winning; ``only``: the one with this name or kind."""
    return checks_of(CentralConfig(config).current.checks, only)


def checks_of(section: ChecksSection, only: str | None = None) -> list[Check[Any]]:
    checks: list[Check[Any]] = []
    for kind, _position, options in section.options():
        check = check_type(kind)(options)
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

    def topic(self, kind: TopicKind) -> str:
        return topic(self.root, self.province, self.commune, self.agent, kind)

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
        self,
        state: str,
        checks: list[str],
        reason: str = "",
        ts: float | None = None,
        central: CentralConfig | None = None,
        update: UpdateReport | None = None,
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
            config_version=central.state.version if central else 0,
            config_hash=central.state.hash if central else "",
            update=update,
        )


def broker_settings(config: Config, identity: Identity) -> BrokerSettings:
    return BrokerSettings(
        config.mqtt,
        client_id=f"commune-agent/{identity.province}/{identity.commune}/{identity.agent}"[:128],
        inflight=config.mqtt.inflight,
        reconnect_max=float(config.mqtt.reconnect_max),
    )


def close_checks(checks: list[Check[Any]], engine: bool = True) -> None:
    """Close checks; ``engine``: also the shared SNMP engine and the event loop (at the
    end only)."""
    for check in checks:
        try:
            if isinstance(check, BlockingCheck):
                check.close()
            elif isinstance(check, AsyncCheck):
                from agent.eventloop import loop_thread

                loop_thread().call(check.close(), timeout=30.0)
        except Exception:
            log.exception("closing check %s", check.name)
    if engine and "agent.eventloop" in sys.modules:
        from agent.eventloop import loop_thread, stop_loop_thread

        if "pysnmp" in sys.modules:
            try:
                loop_thread().call(_close_engine(), timeout=30.0)
            except Exception:
                log.exception("closing the SNMP engine")
        stop_loop_thread()


async def _close_engine() -> None:
    from agent.snmp.client import close_engine

    close_engine()  # the running loop's engine


class ConfigFollower:
    """Applies the configs the collector sends while the agent runs: the newest offered
    payload is judged, its checks built and swapped in without a restart."""

    def __init__(
        self,
        central: CentralConfig,
        scheduler: Scheduler,
        identity: Identity,
        built_in: list[Check[Any]],
    ) -> None:
        self.central = central
        self.scheduler = scheduler
        self.identity = identity
        self.built_in = built_in
        self.announce: Callable[[], None] = lambda: None
        self.wake: Callable[[], None] = lambda: None
        """Wakes the scheduler's thread, where the newest payload is applied."""
        self._latest: collections.deque[bytes] = collections.deque(maxlen=1)

    def deliver(self, payload: bytes) -> None:
        """From paho's thread: only the newest payload matters."""
        self._latest.append(payload)
        self.wake()

    def step(self) -> None:
        """On the scheduler's thread: apply the newest payload offered, if one came."""
        try:
            payload = self._latest.popleft()
        except IndexError:
            return
        try:
            self.apply(payload)
        except Exception:  # no config, however wrong, stops the agent
            log.exception("applying the collector's config failed; keeping the current one")

    def apply(self, payload: bytes) -> bool:
        candidate = self.central.offer(payload)
        if candidate is None:
            return False
        try:
            checks = checks_of(candidate.checks)
        except Exception as exc:  # a check refusing its options: the config is refused
            self.central.refuse(payload, f"{type(exc).__name__}: {exc}")
            return False
        self.switch(candidate, checks)
        self.central.commit(candidate, payload)
        self.announce()
        return True

    def switch(self, effective: Effective, checks: list[Check[Any]]) -> None:
        retired, started = self.scheduler.replace(checks + self.built_in, effective.interval)
        self.identity.interval = effective.interval
        close_checks(retired, engine=False)
        log.info(
            "checks now: %s (started %s, stopped %s)",
            ", ".join(c.name for c in self.scheduler.checks),
            ", ".join(started) or "none",
            ", ".join(c.name for c in retired) or "none",
        )


def update_follower(
    config: Config, central: CentralConfig, announce: Callable[[], None], finish: Callable[[], None]
) -> UpdateFollower | None:
    """Under the launcher only: follows ``AgentConfig.release``."""
    home = os.environ.get(HOME_ENV, "")
    if not home:
        return None
    # Loaded here: an agent not run by the launcher never updates itself.
    from agent.update.follow import UpdateFollower, process_stager
    from agent.update.state import Home

    section = config.update

    def order() -> ReleaseOrder | None:
        message = central.current.central
        return message.release if message is not None else None

    stager = process_stager(
        Path(home), Path(config.source).absolute(), section.url, section.ca_file,
        section.bundle_dir,
    )  # fmt: skip
    return UpdateFollower(
        Home(Path(home)),
        config.agent_id,
        __version__,
        order,
        stager,
        announce,
        finish,
        launcher=os.environ.get(LAUNCHER_ENV, ""),
        retry_min_s=float(section.retry_min),
        retry_max_s=float(section.retry_max),
    )


class UpdateThreads:
    """Under the launcher: the health file it judges a trial by, and the order follower,
    each on a thread of its own (the update process is a child the follower waits for)."""

    def __init__(
        self,
        updates: UpdateFollower,
        stats: AgentStats,
        scheduler: Scheduler,
        publisher: Publisher,
        identity: Identity,
    ) -> None:
        from agent.update.health import HealthReporter

        self.updates = updates
        health = HealthReporter(
            updates.home,
            stats,
            lambda: [c.name for c in scheduler.checks],
            publisher.birth_acked.is_set,
            broker_unreachable=publisher.broker_unreachable.is_set,
        )

        def health_every() -> float:
            on_trial = updates.home.pending() == __version__
            return min(identity.interval, 5.0) if on_trial else 60.0

        self._health_stopping = threading.Event()
        self._threads = [
            threading.Thread(
                target=health.keep_writing, args=(health_every, self._health_stopping),
                name="health", daemon=True,
            ),
            threading.Thread(target=updates.follow, name="update", daemon=True),
        ]  # fmt: skip
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Both end at once (a staging under way too): no health is written after the
        agent stopped."""
        self._health_stopping.set()
        self.updates.stop()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(30.0)


def run_agent(config: Config, stop: Wakeup | None = None, jitter: bool = True) -> int:
    """Run until ``stop`` is stopped or SIGTERM/SIGINT arrives; the exit code
    (``EXIT_UPDATE``: a new version is staged for the launcher to start)."""
    own_wakeup = stop is None
    stop = stop or Wakeup()  # then stopped by the signals only (or an update)
    exit_code = 0
    identity = Identity(config)
    central = CentralConfig(config)
    identity.interval = central.current.interval
    stats = AgentStats()
    outbox = Outbox(config.outbox_path, float(config.outbox.max_age), int(config.outbox.max_size))
    built_in: list[Check[Any]] = [
        SelfMetricsCheck(stats, outbox.stats, extra=central.fields if central.enabled else None)
    ]
    checks = checks_of(central.current.checks) + built_in
    data_topic = identity.topic("data")

    def store(_check: Check[Any], samples: list[Sample]) -> None:
        for part in split_samples(samples):
            outbox.put(data_topic, partial(payload, part))
        publisher.notify()

    def payload(samples: list[Sample], seq: int) -> bytes:
        return encode(identity.envelope(seq, samples))

    scheduler = Scheduler(checks, identity.interval, store, stats, jitter=jitter)
    follower = ConfigFollower(central, scheduler, identity, built_in)
    follower.wake = stop.wake

    def names() -> list[str]:
        return [c.describe() for c in scheduler.checks]

    def publisher_announce() -> None:
        publisher.announce()  # the publisher is made below, with the birth that reports

    def finish_for_update() -> None:
        nonlocal exit_code
        exit_code = EXIT_UPDATE
        stop.stop()

    updates = update_follower(config, central, publisher_announce, finish_for_update)

    def update_report() -> UpdateReport | None:
        return updates.report() if updates is not None else None

    def offline() -> bytes:
        reason = "updating" if exit_code == EXIT_UPDATE else "stopped"
        return encode(identity.status("offline", names(), reason, central=central))

    status = StatusMessages(
        topic=identity.topic("status"),
        online=lambda: encode(
            identity.status("online", names(), central=central, update=update_report())
        ),
        offline=offline,
        will=encode(identity.status("offline", names(), "connection lost", ts=0.0)),
    )
    subscription = (
        Subscription(identity.topic("config"), follower.deliver) if central.enabled else None
    )
    # The collector confirms what it committed, where the broker grants the topic.
    publisher = Publisher(
        broker_settings(config, identity), outbox, status, stats, subscription,
        identity.topic("receipt"),
    )  # fmt: skip
    follower.announce = publisher.announce
    restore_signals = stop_on_signals(stop)
    log.info(
        "agent %s (%s/%s) starting with %d checks%s; outbox %s",
        identity.agent,
        identity.province,
        identity.commune,
        len(checks),
        f", collector config v{central.state.version}" if central.state.version else "",
        config.outbox_path,
    )
    publisher.start()
    stop_updates = (
        UpdateThreads(updates, stats, scheduler, publisher, identity).stop
        if updates
        else lambda: None
    )
    try:
        scheduler.run(stop, between=follower.step)
    finally:
        stop_updates()
        close_checks(scheduler.checks)
        publisher.stop()
        outbox.close()
        restore_signals()
        if own_wakeup:
            stop.close()
        log.info("agent stopped%s", " to start a staged version" if exit_code else "")
    return exit_code


def run_once(config: Config, only: str | None = None) -> list[Envelope]:
    """Run every (or one) check once and return the envelopes; nothing is stored or sent."""
    identity = Identity(config)
    checks = build_checks(config, only)
    scheduler = Scheduler(checks, float(config.agent.interval), lambda _c, _s: None, AgentStats())
    try:
        results = scheduler.run_all_once(checks)
    finally:
        close_checks(checks)
    return [identity.envelope(0, samples) for samples in results]
