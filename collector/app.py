"""The running collector: store, MQTT source, optional sink, the IOC's API, housekeeping."""

from __future__ import annotations

import gc
import logging
import threading
import time
from pathlib import Path
from typing import Any

from agent.configtypes import read_secret
from collector import __version__
from collector.alerts.certificates import CertificateWatch, Source, tls_address
from collector.alerts.engine import AlertEngine
from collector.alerts.escalation import Escalation
from collector.alerts.notify import Notifier, Route, load_urls
from collector.alerts.rules import Rule, default_rules, load_rules, merge
from collector.alerts.zalo import ZaloChannel
from collector.common.gctuning import pace_for_ingest
from collector.common.sessions import BrokerUptime, SessionWatch
from collector.common.threadswitch import share_between_ingest_and_reads
from collector.config import CollectorConfig, RouteSection
from collector.ingest.ingestor import Ingestor
from collector.ingest.receipts import ReceiptBook
from collector.ingest.source import MqttSource, SourceSettings
from collector.outputs.spool import Spool
from collector.release.online import OnlineSigner
from collector.release.repository import Repository
from collector.rollout.registry import client_certificates
from collector.rollout.service import Rollout, RolloutSettings
from collector.state import applied
from collector.state.factsfeed import FactsFeed
from collector.state.housekeeping import Housekeeping, Task, mark_silent, retention
from collector.state.inventory import Inventory, all_renames, load_inventory
from collector.state.livehealth import LiveHealth
from collector.state.renames import move_renamed
from collector.state.store import AgentLimits, StateStore
from collector.state.systemhealth import SystemsModel
from collector.state.systems import SystemFiles
from collector.web.figures import (
    certificate_figures,
    figures,
    read_figures,
    release_figures,
    rollout_figures,
    session_figures,
)
from collector.web.metrics import Family
from collector.web.readprocess import ReadProcess, ReadSettings

log = logging.getLogger("collector")

#: The broker may be away this long before /healthz says "degraded".
BROKER_GRACE_S = 30.0
#: Messages waiting this long with no commit: the ingest is stalled.
STALL_S = 60.0
#: Part states that are not a fault of the collector (/healthz stays 200).
WELL = frozenset({"ok", "reconnecting", "behind"})
#: Parts shown but never failing /healthz: ingest goes on without them (enrollment waits).
ADVISORY = frozenset(
    {"read_process", "dynsec", "profiles", "systems", "configs", "revocations", "crl", "releases"}
)


def load_all_rules(config: CollectorConfig) -> list[Rule]:
    """The built-in rules (unless turned off) with the configured files' rules on top."""
    rules = default_rules() if config.alerts.defaults else []
    for path in config.alerts.rules:
        rules = merge(rules, load_rules(path))
    return rules


def rollout_settings(
    config: CollectorConfig, renames: dict[tuple[str, str], str] | None = None
) -> RolloutSettings:
    assert config.enrollment is not None and config.dynsec is not None
    enrollment, dynsec = config.enrollment, config.dynsec
    return RolloutSettings(
        admin=dynsec,
        admin_client_id=dynsec.client_id,
        admin_timeout_s=float(dynsec.timeout),
        collector=config.mqtt,
        publisher_username=publisher_account(config),
        broker_url=enrollment.broker_url,
        broker_ca_file=enrollment.broker_ca_file,
        profile_files=tuple(enrollment.profiles),
        collector_url=enrollment.collector_url or api_url(config),
        client_ca_cert_file=enrollment.client_ca_cert_file,
        client_ca_key_file=enrollment.client_ca_key_file,
        client_cert_days=enrollment.client_cert_days,
        cert_broker_url=enrollment.cert_broker_url,
        client_crl_file=enrollment.client_crl_file,
        crl_reload_s=float(enrollment.client_crl_reload),
        renames=renames or {},
        config_key_file=enrollment.config_key_file,
        secrets_dir=enrollment.secrets_dir,
        lab=tuple(config.rollouts.lab),
    )


def release_signer(config: CollectorConfig) -> OnlineSigner:
    """The release repository's online re-signing (idle until ``release init``)."""
    section, store = config.releases, config.store.path
    repository = Repository(section.repository_path(store), section.expiries())
    return OnlineSigner(repository, section.keys_dir(store))


def certificate_sources(config: CollectorConfig) -> list[Source]:
    """The certificates ``CertificateWatch`` reads, each place once."""
    sources: list[Source] = []
    if config.api.tls_cert_file:
        sources.append(Source("api", "file", config.api.tls_cert_file))
    enrollment = config.enrollment
    brokers = [("broker", config.mqtt.url)]
    cas = [("broker-ca", config.mqtt.ca_file)]
    if enrollment is not None:
        brokers += [("broker", enrollment.broker_url),
                    ("broker-certificates", enrollment.cert_broker_url)]  # fmt: skip
        cas.append(("agents-ca", enrollment.broker_ca_file))
        if enrollment.client_ca_cert_file:
            sources.append(Source("client-ca", "file", enrollment.client_ca_cert_file))
    seen: set[str] = set()
    for name, url in brokers:
        address = tls_address(url) if url else ""
        if address and address not in seen:
            seen.add(address)
            sources.append(Source(name, "tls", address))
    for name, path in cas:
        if path and path not in seen:
            seen.add(path)
            sources.append(Source(name, "bundle", path))
    return sources


def session_name(config: CollectorConfig) -> str:
    """The ingest's client id: its account's name where it has one. The shipped broker
    configs name every session after its account (use_username_as_clientid), so that
    no other account can take it over; ``[collector] client_id`` serves brokers without
    accounts (development)."""
    return config.mqtt.username or config.collector.client_id


def publisher_account(config: CollectorConfig) -> str:
    """The config publisher's account, made by the collector: one per collector."""
    return f"{session_name(config)}-configs"


def api_url(config: CollectorConfig) -> str:
    """The API's address as [api].listen says it (a wildcard address: this host's name)."""
    import socket

    host, _, port = config.api.listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    scheme = "https" if config.api.tls_cert_file else "http"
    return f"{scheme}://{host}:{port}" if ":" not in host else f"{scheme}://[{host}]:{port}"


def route(section: RouteSection) -> Route:
    channel = None if section.zalo is None else ZaloChannel(section.zalo.settings())
    return Route(
        section.name,
        load_urls(section.urls, section.urls_file),
        tuple(section.severities),
        tuple(section.communes),
        section.language,
        zalo=channel,
        escalation_only=section.escalation_only,
    )


def escalation_steps(config: CollectorConfig) -> list[Escalation]:
    return [
        Escalation(float(s.after), s.route, tuple(s.severities)) for s in config.alerts.escalation
    ]


class ApiError(RuntimeError):
    """The API could not start."""


class Collector:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.inventories: list[Inventory] = [load_inventory(p) for p in config.collector.inventory]
        # Read again when a file changes: the probing agents' configs follow.
        self.systems = SystemFiles(
            config.collector.systems, self.inventories, [r.name for r in config.alerts.routes]
        )
        sink_config = config.sink
        path = Path(config.store.path)
        self.store = StateStore(
            path,
            limits=AgentLimits(
                max_series=config.collector.max_series_per_agent,
                max_subjects=config.collector.max_subjects_per_agent,
            ),
        )
        if config.store.ledger:
            applied.install(self.store)  # the chaos soak's record, in each apply's transaction
        renames = all_renames(self.inventories)
        for table, rows in move_renamed(self.store, renames).items():
            log.info("moved %d rows of %s from communes' former slugs (formerly)", rows, table)
        # With a sink, what each batch admitted is spooled for it in the same transaction.
        self.spool = Spool(self.store, int(sink_config.max_spool) if sink_config else 1024**3)
        if sink_config is not None:
            self.spool.attach()
        # The API reads through its own connection: WAL lets it read while ingest commits.
        self.reader = StateStore(path)
        self.ingestor = Ingestor(
            self.store,
            config.mqtt.topic_root,
            max_ahead_s=float(config.collector.max_clock_ahead),
            max_age_s=float(config.collector.max_sample_age),
            renames=renames,
        )
        if config.store.ledger:
            self.ingestor.refusals = applied.record_refused
        self.uptime = BrokerUptime()
        self.source = MqttSource(self._source_settings(), self.ingestor, self.uptime)
        self.sink: Any = None
        if sink_config is not None:
            from collector.outputs.sink import SinkSettings
            from collector.outputs.sink_process import SinkProcess

            token_file = sink_config.token_file
            token = read_secret(token_file) if token_file else ""
            self.sink = SinkProcess(
                path,
                SinkSettings(
                    sink_config.url,
                    token,
                    sink_config.org,
                    sink_config.bucket,
                    batch_rows=sink_config.batch,
                    timeout_s=float(sink_config.timeout),
                    max_backoff_s=float(sink_config.max_backoff),
                ),
            )
        # Read through the reader, kept current by what the store commits (installed below).
        self.health = LiveHealth(self.reader, self.inventories)
        self.rules = load_all_rules(config)
        self.releases = release_signer(config)
        self.certificates = CertificateWatch(
            certificate_sources(config),
            pcs=self._pc_certificates if config.enrollment is not None else None,
            cert_days=config.enrollment.client_cert_days if config.enrollment else 825,
        )
        self.engine = AlertEngine(
            self.rules,
            late_after=float(config.alerts.late_after),
            uplinks={k: v for i in self.inventories for k, v in i.uplinks().items()},
            escalation=escalation_steps(config),
            sessions=self.sessions,
            releases=self.releases.roles,
            certificates=self.certificates.expiries,
            systems=SystemsModel(self.store, self.inventories, self.systems),
        )
        self.engine.install(self.store)
        # The read process's facts follow what commits (started with the API).
        self.feed = self._facts_feed()
        self.reads: ReadProcess | None = None
        # Its last observer: a batch another observer fails is never seen by it.
        self.health.install(self.store)
        alerts = config.alerts
        self.notifier = Notifier(
            self.store,
            [route(r) for r in alerts.routes],
            self.rules,
            names={f"{i.province}/{c.slug}": c.name for i in self.inventories for c in i.communes},
            escalation=escalation_steps(config),
            group_wait=float(alerts.group_wait),
            console_url=alerts.console_url,
        )
        self.rollout: Rollout | None = None
        self.receipts: ReceiptBook | None = None
        if config.enrollment is not None and config.dynsec is not None:
            self.rollout = Rollout(
                self.store,
                rollout_settings(config, renames),
                signed_versions=self.releases.repository.signed_versions,
                systems=self.systems,
            )
            self.uptime.watches += [self.rollout.sender.watch, self.rollout.admin.watch]
            # Enrolled agents keep what the broker took until a receipt says it is committed.
            self.receipts = ReceiptBook(
                config.mqtt.topic_root, float(config.collector.receipt_interval)
            )
            self.ingestor.receipts = self.receipts.note
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._disconnected_since: float | None = time.monotonic()
        self.housekeeping = self._housekeeping()
        self.started = time.time()

    def _facts_feed(self) -> FactsFeed | None:
        if not (self.config.api.listen and self.config.api.read_process):
            return None
        feed = FactsFeed()
        self.store.observers.append(feed.observe)
        self.store.watchers.append(feed)
        return feed

    def _source_settings(self) -> SourceSettings:
        mqtt, collector = self.config.mqtt, self.config.collector
        return SourceSettings(
            mqtt,
            client_id=session_name(self.config),
            provinces=tuple(collector.provinces),
            share_group=collector.share_group,
            receive_window=mqtt.receive_window,
            session_expiry_s=int(mqtt.session_expiry),
            max_inbox_bytes=int(mqtt.max_inbox),
        )

    # lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "collector %s: store %s, broker %s, %d communes in the inventory",
            __version__,
            self.config.store.path,
            self.config.mqtt.url,
            sum(len(i.communes) for i in self.inventories),
        )
        if self.sink is not None:
            self.sink.start()
        self.notifier.start()
        if self.rollout is not None:
            # The collector's own account is made or completed first: the config sender
            # and the source log in with it.
            self.rollout.start()
        self.source.start()
        try:
            # Back after days down: sign what expired before the first PC asks.
            self.releases.tick()
        except Exception:  # the housekeeping tries again and says so
            log.exception("releases: could not re-sign at start")
        if self.config.api.listen:
            self._start_api()
            # The read process warms its own model: this one only serves while it is away.
            if self.config.console.enabled and self.reads is None:
                # The overview's line cache, filled before the first technician looks.
                threading.Thread(target=self._warm, name="warm-console", daemon=True).start()

    def _warm(self) -> None:
        started = time.monotonic()
        try:
            self.health.warm()
        except Exception:  # a failure here costs the first request its speed, no more
            log.exception("could not warm the console's overview")
            return
        # What start built (the health model's facts and figures: millions of objects for
        # the country) is left out of the garbage collector's passes, each of which would
        # otherwise stop every thread, requests and ingest, for a large share of a second.
        gc.freeze()
        log.info("console overview warmed in %.1f s", time.monotonic() - started)

    def _start_api(self) -> None:
        from collector.web.factory import create_app
        from collector.web.releases import ReleaseFiles
        from collector.web.server import ApiServer, ServerLimits

        api = self.config.api
        if not api.tokens and not api.open_on_loopback:
            log.warning("api: no tokens configured: every request but /healthz will be refused")
        host, port = api.address()
        try:
            # Bound here, not by uvicorn: the connection caps live in the socket's accept().
            server = ApiServer(
                ServerLimits.from_settings(api), host, port, api.tls_cert_file, api.tls_key_file
            )
        except OSError as exc:
            self.stop()
            raise ApiError(
                f"api.listen: cannot serve on {api.listen}: {exc.strerror or exc}"
            ) from None
        enrollment = self.config.enrollment
        section = self.config.releases
        releases = ReleaseFiles(
            self.releases.repository.path,
            section.max_downloads,
            float(section.retry_after),
            section.max_downloads_per_address,
        )
        reads = ReadProcess(self.feed) if self.feed is not None else None
        app = create_app(
            self.health,
            self.reader,
            api,
            lambda: [*self.metrics(), *server.figures(), *releases.figures()],
            self.healthz,
            self.config.console,
            self.rollout,
            enrollment.max_per_address if enrollment else 600,
            self.config.report.issuing(),
            releases,
            self.systems,
            read_channel=reads.channel if reads is not None else None,
        )
        if reads is not None:
            sessions = getattr(app.state, "sessions", None)
            reads.start(
                ReadSettings(
                    str(self.config.store.path),
                    tuple(self.inventories),
                    api,
                    self.config.console if self.config.console.enabled else None,
                    sessions.secret if sessions is not None else b"",
                    tuple(self.config.collector.systems),
                    tuple(r.name for r in self.config.alerts.routes),
                )
            )
            self.reads = reads
        try:
            server.start(app)
        except RuntimeError as exc:
            self.stop()
            raise ApiError(f"api.listen: cannot serve on {api.listen}: {exc}") from None
        # stop() and dead_workers() look at uvicorn's server and its thread.
        self._server, self._server_thread = server.uvicorn_server, server.thread
        scheme = "https" if api.tls_cert_file else "http"
        log.info("API for the IOC on %s://%s/docs", scheme, api.listen)

    def _keep_reads(self, _now: float) -> None:
        if self.reads is None:
            return
        self.reads.ensure_running()
        if self.reads.warmed:
            # What this process loaded to answer reads while the read process was away
            # would otherwise be kept current by ingest, and held, for good.
            self.health.forget()

    def _send_receipts(self, _now: float) -> None:
        if self.receipts is not None and self.rollout is not None:
            self.receipts.send(self.rollout.sender.send_receipt)

    def _housekeeping(self) -> Housekeeping:
        collector, store = self.config.collector, self.config.store
        tasks = [
            Task(
                "silence",
                mark_silent(self.store, collector.offline_after, float(collector.default_interval)),
            ),
            # Before the alerts: their first round sees the certificates.
            Task("certificates", self.certificates.tick, every_s=600.0),
            Task("alerts", lambda now: self.engine.tick(self.store, now)),
            # The consoles' and the IOC's figures that depend on time, before they are asked.
            Task("health figures", lambda _: self.health.refresh()),
        ]
        if self.sink is not None:
            tasks.append(Task("sink", lambda _: self.sink.ensure_running()))
        if self.feed is not None:
            tasks.append(Task("reads", self._keep_reads))
        if self.rollout is not None:
            tasks.append(Task("rollout", self.rollout.tick))  # the shared systems' files too
        if self.receipts is not None and self.rollout is not None:
            tasks.append(Task("receipts", self._send_receipts))
        elif self.config.collector.systems:
            tasks.append(Task("systems", lambda _: self.systems.reload_if_changed()))
        tasks.append(Task("releases", self.releases.tick, every_s=60.0))
        tasks.append(
            Task(
                "retention",
                retention(
                    self.store,
                    float(store.retention),
                    float(store.forget_agents_after),
                    store.max_alerts,
                ),
                every_s=3600.0,
            )
        )
        return Housekeeping(tasks)

    def dead_workers(self) -> list[str]:
        """Threads that ended without being told to. The collector cannot mend them: it
        stops, exit status 1, for the service manager to start it afresh."""
        dead = self.source.dead()
        if self.notifier.dead():
            dead.append("notifier")
        if self._server_thread is not None and not self._server_thread.is_alive():
            dead.append("api")
        return dead

    def run(self, stop: threading.Event, every_s: float = 10.0) -> int:
        """Until ``stop`` is set: 0. When a worker died: 1, after stopping the rest."""
        pace_for_ingest()
        share_between_ingest_and_reads()
        self.start()
        try:
            return self.supervise(stop, every_s)
        finally:
            self.stop()

    def supervise(self, stop: threading.Event, every_s: float = 10.0) -> int:
        """Housekeeping every ``every_s``, a look at the workers every second: 0 when told
        to stop, 1 as soon as a worker is dead."""
        next_round = time.monotonic() + every_s
        while not stop.wait(min(1.0, every_s)):
            dead = self.dead_workers()
            if dead:
                log.critical(
                    "%s died: stopping with exit status 1 for the service manager to restart "
                    "the collector (unacknowledged messages come again)",
                    ", ".join(dead),
                )
                return 1
            if time.monotonic() >= next_round:
                self.housekeeping.run()
                next_round = time.monotonic() + every_s
        return 0

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._server_thread is not None:
                self._server_thread.join(timeout=10)
        if self.reads is not None:
            self.reads.stop()
        self.source.stop()
        self.notifier.stop()
        if self.rollout is not None:
            self.rollout.stop()
        if self.sink is not None:
            self.sink.stop()
        self.health.close()
        self.reader.close()
        self.store.close()

    # what the API shows about the collector itself ------------------------------------

    def parts(self) -> dict[str, str]:
        """Each part of the collector and how it is: "ok", or a word for what is wrong.

        No internal error texts (``/healthz`` answers anyone): those are in the log.
        """
        connected = self.source.connected.is_set()
        now = time.monotonic()
        if connected:
            self._disconnected_since = None
        elif self._disconnected_since is None:
            self._disconnected_since = now
        away = 0.0 if connected else now - (self._disconnected_since or now)
        parts = {
            "broker": "ok" if connected else "reconnecting" if away < BROKER_GRACE_S else "away"
        }
        session = self.source.watch.state()
        if session in ("taken_over", "refused"):
            parts["broker"] = session  # someone else logged in as the collector; or a wrong login
        dead = set(self.dead_workers())
        stats = self.ingestor.stats
        stalled = (
            self.source.queued() > 0
            and time.time() - max(stats.last_commit_at, self.started) > STALL_S
        )
        parts["mqtt"] = "dead" if "mqtt" in dead else "ok"
        parts["ingest"] = (
            "dead"
            if "ingest" in dead
            else "store_failing"
            if self.source.store_error
            else "stalled"
            if stalled
            else "ok"
        )
        parts["notifier"] = "dead" if "notifier" in dead else "ok"
        if self.sink is not None:
            parts["sink"] = (
                "behind" if self.sink.running and self.sink.last_error
                else "ok" if self.sink.running
                else "dead"
            )  # fmt: skip
        if self.rollout is not None:
            parts.update(self.rollout.parts())
        if self.reads is not None:
            # Shown, not failing /healthz: the collector answers the reads meanwhile.
            parts["read_process"] = (
                "ok" if self.reads.warmed else "warming" if self.reads.running else "restarting"
            )
        if self.config.collector.systems:
            # The file on disk is not what runs (the previous catalogue goes on): see the log.
            parts["systems"] = "invalid" if self.systems.error else "ok"
        if self.releases.repository.initialised():
            # Shown, not failing /healthz: ingest goes on; the expiry alert pages in time.
            parts["releases"] = "resign_failing" if self.releases.failing() else "ok"
        for task in sorted(self.housekeeping.failing):
            parts[f"housekeeping_{task}"] = "failing"
        return parts

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        parts = self.parts()
        detail: dict[str, Any] = {
            "parts": parts,
            "ingest_queue": self.source.queued(),
            "last_commit_at": self.ingestor.stats.last_commit_at or None,
            "spool_rows": self.spool.stats().rows,
        }
        well = all(state in WELL for name, state in parts.items() if name not in ADVISORY)
        return well, detail

    def metrics(self) -> list[Family]:
        sink = self.sink.stats if self.sink is not None else None
        families = figures(
            self.ingestor.stats, self.source, self.store, self.reader, self.notifier, sink
        )
        if self.rollout is not None:
            families += rollout_figures(self.rollout)
        if self.reads is not None:
            families += read_figures(self.reads)
        return [
            *families,
            *session_figures(self.sessions()),
            *release_figures(self.releases),
            *certificate_figures(self.certificates.expiries()),
        ]

    def _pc_certificates(self) -> list[tuple[str, float, float]]:
        with self.reader.reading() as db:
            return client_certificates(db)

    def sessions(self) -> list[SessionWatch]:
        """The collector's own broker sessions: the ingest's, and with enrollment the
        config publisher's and the dynamic-security admin's."""
        watches = [self.source.watch]
        if self.rollout is not None:
            watches += [self.rollout.sender.watch, self.rollout.admin.watch]
        return watches
