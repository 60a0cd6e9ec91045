"""The collector's TOML config, decoded strictly like the agent's."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from agent.configtypes import (
    BrokerSection,
    ConfigError,
    ConfigProblem,
    Duration,
    Size,
    convert_strict,
    is_loopback,
    read_toml,
    readable,
    resolve_paths,
)
from agent.wire import Ident, whole
from collector.alerts.zalo import ZaloSettings
from collector.outputs.report.issuer import ENGLISH, Issuer
from collector.release.repository import Expiries
from collector.state.inventory import load_inventory
from collector.state.systems import Catalogue, load_catalogues

# A TCP port in ASCII digits (str.isdigit() also accepts "²", which int() refuses).
_PORT = re.compile(r"[0-9]{1,5}")


class CollectorSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    provinces: list[Ident] = []
    """Provinces this collector owns (topic filter); empty: every province."""
    share_group: str = ""
    """Share data topics with the other collectors of this group ($share/<group>/...)."""
    client_id: str = "commune-collector"
    """The broker session's name on a broker without accounts (development). With an
    [mqtt] username the session is named after the account: the shipped broker configs
    make every client's id its username (use_username_as_clientid)."""
    log_level: str = "info"
    offline_after: Annotated[float, msgspec.Meta(ge=1)] = 3.0
    """An agent silent for this many of its intervals is marked offline ("silent")."""
    default_interval: Duration = Duration(60)
    """For agents whose birth message does not say their interval."""
    max_clock_ahead: Duration = Duration(300)
    """Samples timed later than arrival plus this are refused (reason clock_ahead)."""
    max_sample_age: Duration = Duration(30 * 86400)
    """Samples older than this are refused (clock_behind): longer than any outbox backlog."""
    receipt_interval: Duration = Duration(300)
    """With [enrollment]: the least time between two receipts to an agent (what the store
    committed of its envelopes; until then the agent keeps them, in case the broker loses
    them). Shorter: agents hold less and a loss is made up sooner, for more messages."""
    inventory: list[str] = []
    """Inventory files (one per province): communes, names, codes, expected PCs/Polycoms."""
    systems: list[str] = []
    """Catalogues of shared systems (one per province, beside its inventory): what the
    communes work through, probed from one agent per commune (``state/systems.py``)."""
    max_series_per_agent: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 5000
    """Latest rows (check name, item, target) one agent may make the store hold; beyond,
    its new samples are refused (series_limit) and the agent_over_limit alert fires."""
    max_subjects_per_agent: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    """Subjects with up/down history (probed targets, Polycoms) per agent (subject_limit)."""

    def validate(self) -> None:
        if self.share_group and "/" in self.share_group:
            raise ConfigProblem("share_group", "no '/' allowed")
        provinces: dict[str, str] = {}
        for path in self.inventory:
            inventory = load_inventory(path)  # its errors name the inventory file and key
            if inventory.province in provinces:
                raise ConfigProblem(
                    "inventory",
                    f"{path} and {provinces[inventory.province]} are both for "
                    f"{inventory.province!r}",
                )
            provinces[inventory.province] = path


class MqttSection(BrokerSection, frozen=True, forbid_unknown_fields=True, kw_only=True):
    receive_window: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 2000
    """Unacknowledged messages the broker may send at once (MQTT v5 Receive Maximum)."""
    session_expiry: Duration = Duration(7 * 86400)
    """How long the broker keeps the collector's messages while it is down."""
    max_inbox: Size = Size(64 * 1024**2)
    """Payloads received and not yet committed at most; beyond, the collector stops
    reading (QoS 1 waits in the broker). QoS 0 messages are refused as read."""


class StoreSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    path: str = "/var/lib/commune-collector/state.sqlite"
    retention: Duration = Duration(400 * 86400)
    """Outage history (and the operators' audit) older than this is forgotten; monthly
    reports need 13 months."""
    forget_agents_after: Duration = Duration(30 * 86400)
    """An agent stopped or silent this long is forgotten (replaced PC); its history stays."""
    max_alerts: Annotated[int, msgspec.Meta(ge=1000)] = 2_500_000
    """Resolved alerts kept at most (the newest, with their steps; ~470 bytes each): a
    province's 13 months are ~650,000; the country's (~57,000 a day) about 44 days."""
    ledger: bool = False
    """Record every envelope applied, by agent and seq (the chaos soak's checker reads
    it: fleet/soakcheck.py). A test seam: a row per envelope, kept for good."""


class SinkSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An InfluxDB v2 write API (InfluxDB 2.x/3.x/1.8+, VictoriaMetrics)."""

    url: str
    org: str = ""
    bucket: str = "commune"
    token_file: str = ""
    """A file holding the API token (never in this config)."""
    batch: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 2000
    """Envelopes per write (~3,300 points): a write's fixed costs to the sink (its HTTP
    request, its reads and delete in the spool) are shared by that many."""
    max_spool: Size = Size(1024**3)
    """Points waiting for the server are kept up to this size; beyond, the oldest go (counted)."""
    timeout: Duration = Duration(10)
    max_backoff: Duration = Duration(60)
    """Longest wait between retries while the server is down (doubling from 1 s)."""

    def validate(self) -> None:
        if not self.url.startswith(("http://", "https://")) or not urlsplit(self.url).hostname:
            raise ConfigProblem("url", "expected http(s)://host:port")
        readable("token_file", self.token_file)


Role = Literal["viewer", "technician", "admin", "read"]
"""viewer reads, technician also acts on alerts, silences and maintenance, admin also
manages enrollment and profiles; "read" is the viewer's former name, still accepted."""


class ConsoleSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The technicians' web console, served with the API (same listen address)."""

    enabled: bool = True
    secret_file: str = ""
    """Signs the session cookies; empty: a new secret at each start (everyone logs in again)."""
    session_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 30)] = 12.0

    def validate(self) -> None:
        if not self.secret_file:
            return
        try:
            read_session_secret(self.secret_file)
        except OSError as exc:
            raise ConfigProblem(
                "secret_file", f"cannot read {self.secret_file} ({exc.strerror})"
            ) from None
        except ValueError as exc:
            raise ConfigProblem("secret_file", str(exc)) from None


class ApiToken(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    """Who holds it, for logs and the audit: "ioc", "tech-la-nga"."""
    role: Role = "viewer"
    sha256: Annotated[str, msgspec.Meta(pattern=whole("[0-9a-f]{64}"))]
    """SHA-256 of the token, hex; the token itself is never in the config.
    `commune-collector token NAME` makes one."""
    provinces: Annotated[list[Ident], msgspec.Meta(max_length=100)] = []
    """The provinces it sees and acts in; empty: every province of the collector."""
    communes: Annotated[list[Ident], msgspec.Meta(max_length=1000)] = []
    """Only these communes of its one province (``provinces`` names exactly one)."""

    def validate(self, where: str) -> None:
        for key in ("provinces", "communes"):
            slugs: list[str] = getattr(self, key)
            twice = sorted({s for s in slugs if slugs.count(s) > 1})
            if twice:
                raise ConfigProblem(f"{where}.{key}", f"{', '.join(twice)} listed twice")
        if self.communes and len(self.provinces) != 1:
            raise ConfigProblem(
                f"{where}.communes",
                "communes are a province's: name exactly one province in provinces "
                f"(token {self.name!r} names {len(self.provinces)})",
            )


class ApiSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    listen: str = "127.0.0.1:8080"
    """host:port of the HTTP API for the IOC; "" turns it off."""
    tokens: list[ApiToken] = []
    open_on_loopback: bool = False
    """Development only: no token needed. Refused unless ``listen`` is a loopback address."""
    max_auth_failures: Annotated[int, msgspec.Meta(ge=1)] = 10
    """Wrong tokens from one address within 5 minutes before it is refused..."""
    auth_lockout: Duration = Duration(300)
    """... for this long (HTTP 429)."""
    trusted_proxies: list[str] = []
    """Reverse proxies (addresses or CIDR blocks) whose X-Forwarded-For and
    X-Forwarded-Proto are believed; from anyone else those headers are ignored."""
    tls_cert_file: str = ""
    """Serve HTTPS with this certificate (chain, PEM) and tls_key_file: PCs enrolling
    from the communes, and the console, reach the collector over the network."""
    tls_key_file: str = ""
    # Slow and abusive clients: the server holds on alone (collector/web/server.py).
    header_timeout: Duration = Duration(10)
    """A request's line and headers must arrive within this of the connection (after
    its TLS handshake) or of the previous response."""
    body_timeout: Duration = Duration(30)
    """A request's body must arrive within this of its headers (bodies are 64 KiB at
    most: 30 s is 2 KiB/s)."""
    keep_alive_timeout: Duration = Duration(5)
    """A connection idle this long after a response is closed."""
    max_requests_per_connection: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    """Then the answer says Connection: close."""
    tls_handshake_timeout: Duration = Duration(10)
    """A TLS handshake not done within this is ended."""
    max_connections: Annotated[int, msgspec.Meta(ge=16, le=1_000_000)] = 1000
    """Open connections in all; past it a new one is closed at once. Kept under the
    process's open-file limit (systemd's LimitNOFILE) less 256 for the rest."""
    max_connections_per_address: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 32
    """Open connections from one client address (an IPv6 client: its /64). The
    trusted_proxies are exempt: the proxy bounds its own clients (limit_conn)."""
    read_process: bool = True
    """Answer the reads of the health model (the IOC's province, communes, availability,
    alerts, agents; the console's overview, commune, agent and alerts pages) in a
    process of their own beside ingest (``collector/web/readprocess.py``): under the
    country's ingest, in the collector's process they and ingest waited for each other.
    false: all in the collector's process (a small province; memory)."""

    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def validate(self) -> None:
        if not self.listen:
            return
        host, _, port = self.listen.rpartition(":")
        if not host or not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
            raise ConfigProblem("listen", f"expected host:port, got {self.listen!r}")
        names = [t.name for t in self.tokens]
        if len(set(names)) != len(names):
            raise ConfigProblem("tokens", "two tokens have the same name")
        for index, token in enumerate(self.tokens):
            token.validate(f"tokens[{index}]")
        try:
            networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigProblem("trusted_proxies", str(exc)) from None
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigProblem("tls_cert_file", "HTTPS needs both tls_cert_file and tls_key_file")
        readable("tls_cert_file", self.tls_cert_file)
        readable("tls_key_file", self.tls_key_file)
        if self.open_on_loopback and not is_loopback(self.address()[0]):
            raise ConfigProblem(
                "open_on_loopback",
                "only allowed when api.listen is a loopback address "
                f"(127.0.0.1, ::1, localhost), not {host!r}",
            )
        self._validate_limits()

    def _validate_limits(self) -> None:
        bounds = {
            "header_timeout": (1, 300), "body_timeout": (1, 600),
            "keep_alive_timeout": (1, 300), "tls_handshake_timeout": (1, 120),
        }  # fmt: skip
        for key, (low, high) in bounds.items():
            value = float(getattr(self, key))
            if not low <= value <= high:
                raise ConfigProblem(key, f"expected between {low} s and {high} s, got {value:g} s")
        if self.max_connections_per_address > self.max_connections:
            raise ConfigProblem(
                "max_connections_per_address",
                f"{self.max_connections_per_address} is more than max_connections "
                f"({self.max_connections}): lower it, or raise max_connections",
            )


ZaloUser = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,32}$")]


class ZaloSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A Zalo Official Account the collector sends as (alerts/zalo.py)."""

    app_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,32}$")]
    secret_key_file: str
    """The app's secret key, alone in a file readable by the collector only."""
    token_file: str
    """JSON with the OA's refresh_token (and the access token): the collector rewrites
    it at each renewal, so its folder must be writable by the collector."""
    user_ids: Annotated[list[ZaloUser], msgspec.Meta(min_length=1, max_length=200)]
    """Technicians following the OA."""
    api_url: str = "https://openapi.zalo.me"
    oauth_url: str = "https://oauth.zaloapp.com"

    def settings(self) -> ZaloSettings:
        return ZaloSettings(
            self.app_id, self.secret_key_file, self.token_file, tuple(self.user_ids),
            self.api_url, self.oauth_url,
        )  # fmt: skip

    def validate(self, where: str) -> None:
        readable(f"{where}.secret_key_file", self.secret_key_file)
        readable(f"{where}.token_file", self.token_file)
        folder = Path(self.token_file).parent
        if not os.access(folder, os.W_OK):
            raise ConfigProblem(
                f"{where}.token_file", f"{folder} is not writable: the tokens are renewed there"
            )
        for key, url in (("api_url", self.api_url), ("oauth_url", self.oauth_url)):
            if urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).hostname:
                raise ConfigProblem(f"{where}.{key}", f"expected an https:// URL, got {url!r}")


class RouteSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    urls: list[str] = []
    """apprise URLs: json://host/path, mailto://..., tgram://..., ..."""
    urls_file: str = ""
    """A file of apprise URLs, one per line: for URLs that hold passwords."""
    zalo: ZaloSection | None = None
    """Zalo Official Account messages (besides or instead of the URLs)."""
    severities: list[Literal["info", "warning", "critical"]] = []
    """Empty: every severity."""
    communes: list[Ident] = []
    """Empty: every commune."""
    language: Literal["vi", "en"] = "vi"
    escalation_only: bool = False
    """Told only by an escalation step (the head of the IT unit), not at first."""


class EscalationStep(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    after: Duration
    """Since the alert fired, unacknowledged."""
    route: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    severities: list[Literal["info", "warning", "critical"]] = msgspec.field(
        default_factory=lambda: ["critical"]
    )


class AlertsSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    defaults: bool = True
    """The built-in rules; a rule of the same name in ``rules`` replaces one."""
    rules: list[str] = []
    """Rule files (TOML)."""
    late_after: Duration = Duration(600)
    """An alert fired from samples older than this (a replayed backlog) is history: not paged."""
    group_wait: Duration = Duration(30)
    """Events wait this long so that alerts firing together go out as one message."""
    console_url: str = ""
    """The console's address, for links in messages."""
    routes: list[RouteSection] = []
    escalation: list[EscalationStep] = []
    """Steps in order: an alert not acknowledged ``after`` its firing goes to ``route``."""

    def validate(self) -> None:
        from collector.alerts.rules import load_rules

        for path in self.rules:
            load_rules(path)  # its errors name the rules file and key
        names = [r.name for r in self.routes]
        if len(set(names)) != len(names):
            raise ConfigProblem("routes", "two routes have the same name")
        for index, route in enumerate(self.routes):
            where = f"routes[{index}]"
            readable(f"{where}.urls_file", route.urls_file)
            if not route.urls and not route.urls_file and route.zalo is None:
                raise ConfigProblem(where, "a route needs urls, urls_file or zalo")
            if route.zalo is not None:
                route.zalo.validate(f"{where}.zalo")
            if route.urls:
                import apprise

                for url in route.urls:
                    if not apprise.Apprise().add(url):
                        raise ConfigProblem(f"{where}.urls", f"apprise does not understand {url!r}")
        after = 0.0
        for index, step in enumerate(self.escalation):
            where = f"escalation[{index}]"
            if step.route not in names:
                raise ConfigProblem(f"{where}.route", f"no route named {step.route!r}")
            if float(step.after) <= after:
                raise ConfigProblem(f"{where}.after", "each step comes after the one before")
            after = float(step.after)


class DynsecSection(BrokerSection, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The admin session on the broker's dynamic security plugin, where agents' accounts
    are made (``mosquitto_ctrl dynsec init`` creates the admin account)."""

    client_id: str = "commune-collector-admin"
    timeout: Duration = Duration(5)
    """How long the plugin may take to answer a command."""


class EnrollmentSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """PCs enroll themselves with a token (``commune-collector enroll-token create``) at
    ``POST /api/v1/enroll``; their accounts are made through [dynsec]."""

    broker_url: str
    """What enrolled agents connect to: mqtts://broker.example:8883."""
    broker_ca_file: str = ""
    """The CA of the broker's certificate, handed to every enrolled agent (public)."""
    profiles: list[str] = []
    """Check profiles, one file per province: what each enrolled agent runs."""
    max_per_address: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 600
    """Enrollment requests one address may make per hour (a commune office's PCs share
    one address behind its router)."""
    collector_url: str = ""
    """The address the PCs reach this collector's API at, for the commands that
    ``enroll-token create`` prints (https://collector.example:8443); defaults to
    [api].listen."""
    client_ca_cert_file: str = ""
    """With its key: PCs may enroll with a key pair (``--client-cert``); the collector
    signs their certificates with this CA, the one the broker's certificate listener
    trusts. Without: PCs enroll with a password."""
    client_ca_key_file: str = ""
    client_cert_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 825
    """How long a PC's certificate is valid."""
    cert_broker_url: str = ""
    """The broker's listener for client certificates (mqtts://broker.example:8884),
    handed to PCs enrolled with one."""
    client_crl_file: str = ""
    """With client certificates: where the collector keeps the revocation list of the
    certificates of replaced and revoked PCs (PEM, readable by all), for the broker's
    certificate listener (``crlfile``). The broker reads it at start and on reload
    (SIGHUP); until then a revoked certificate names an account that no longer exists,
    so it can do nothing."""
    client_crl_reload: Duration = Duration(10)
    """How long the broker may take to reload the list after the collector rewrote it
    (commune-crl-reload.path: about a second): a revoked certificate's session is ended a
    second time this long after its account was removed, so that it meets the list."""
    config_key_file: str = ""
    """The private key that signs every agent's config (Ed25519; 0600, made at the first
    start when missing); default config-signing.key beside the state store. Its public
    half is given to PCs at enrollment. Rotate it with ``commune-collector config-key``."""
    secrets_dir: str = ""
    """The folder profiles' ``{ secret_file = ... }`` are read from (names relative to
    it; no absolute path, no '..', no link out of it); default each profiles file's
    own folder."""

    def validate(self) -> None:
        parts = urlsplit(self.broker_url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigProblem(
                "broker_url", f"expected mqtts://host:port, got {self.broker_url!r}"
            )
        readable("broker_ca_file", self.broker_ca_file)
        if self.collector_url and urlsplit(self.collector_url).scheme not in ("https", "http"):
            raise ConfigProblem(
                "collector_url", f"expected https://host:port, got {self.collector_url!r}"
            )
        if bool(self.client_ca_cert_file) != bool(self.client_ca_key_file):
            raise ConfigProblem(
                "client_ca_key_file", "client certificates need both the CA's certificate and key"
            )
        if self.client_ca_cert_file:
            if not self.cert_broker_url.startswith("mqtts://"):
                raise ConfigProblem(
                    "cert_broker_url", "the broker's client-certificate listener, mqtts://host:port"
                )
            readable("client_ca_cert_file", self.client_ca_cert_file)
            readable("client_ca_key_file", self.client_ca_key_file)
            from collector.rollout.signer import load_signer

            try:
                load_signer(self.client_ca_cert_file, self.client_ca_key_file, 1)
            except ValueError as exc:
                raise ConfigProblem("client_ca_key_file", str(exc)) from None
        if not 0 <= float(self.client_crl_reload) <= 3600:
            raise ConfigProblem("client_crl_reload", "between 0s and 1h")
        if self.client_crl_file:
            if not self.client_ca_cert_file:
                raise ConfigProblem(
                    "client_crl_file", "a revocation list needs the client CA (client_ca_*)"
                )
            folder = Path(self.client_crl_file).parent
            if not os.access(folder, os.W_OK):
                raise ConfigProblem(
                    "client_crl_file", f"{folder} is not writable: the collector rewrites it"
                )
        if self.secrets_dir and not os.path.isdir(self.secrets_dir):
            raise ConfigProblem("secrets_dir", f"{self.secrets_dir} is not a folder")
        if self.config_key_file:
            self._check_key_file()
        # The profiles are loaded with the shared systems they send (parse_collector_config).

    def _check_key_file(self) -> None:
        """The key is read if it is there; if not, the collector must be able to make it."""
        path = Path(self.config_key_file)
        if not path.exists():
            if not os.access(path.parent, os.W_OK):
                raise ConfigProblem(
                    "config_key_file",
                    f"{path} does not exist and {path.parent} is not writable to make it",
                )
            return
        from collector.rollout.configkey import read_key

        try:
            read_key(path)
        except ConfigError as exc:
            raise ConfigProblem("config_key_file", str(exc)) from None


class ReleasesSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The agents' signed releases (TUF), served at ``/releases/`` by the API; made and
    signed with ``commune-collector release``. Served once ``release init`` has made the
    repository; until then ``/releases/`` answers 404."""

    path: str = ""
    """The repository (metadata, targets, staged changes); default ``releases`` beside
    the state store."""
    online_keys_dir: str = ""
    """Where the online snapshot and timestamp keys are (release-snapshot.key,
    release-timestamp.key, 0600): the collector re-signs with them. Default the state
    store's folder. The root and targets keys are never here: they are offline."""
    max_downloads: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 20
    """Bundles sent at once; above, ``503`` with ``Retry-After`` (agents come back later)."""
    max_downloads_per_address: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 4
    """Bundles sent at once to one address (a commune's PCs share their router's): a few
    slow readers in one place cannot hold every place. Behind a proxy, the address is
    the one it forwards ([api] trusted_proxies)."""
    retry_after: Duration = Duration(60)
    """The wait a busy answer asks for, plus up to as much again at random (jitter)."""
    root_expiry: Duration = Duration(365 * 86400)
    """How long a root version is valid: rotate or re-sign it before (alert at 30 days)."""
    targets_expiry: Duration = Duration(90 * 86400)
    """How long a targets version is valid: sign it again before (alert at 14 days)."""
    snapshot_expiry: Duration = Duration(7 * 86400)
    timestamp_expiry: Duration = Duration(86400)
    """Online roles: re-signed by the running collector when half of this is left."""

    def validate(self) -> None:
        if not 3600 <= float(self.timestamp_expiry) <= float(self.snapshot_expiry):
            raise ConfigProblem(
                "timestamp_expiry", "between 1h and snapshot_expiry (re-signed at half of it)"
            )
        if not float(self.snapshot_expiry) <= float(self.targets_expiry) <= float(self.root_expiry):
            raise ConfigProblem("targets_expiry", "between snapshot_expiry and root_expiry")
        if not 1 <= float(self.retry_after) <= 3600:
            raise ConfigProblem("retry_after", "between 1s and 1h")
        if self.online_keys_dir and not os.path.isdir(self.online_keys_dir):
            raise ConfigProblem("online_keys_dir", f"{self.online_keys_dir} is not a folder")

    def expiries(self) -> Expiries:
        from datetime import timedelta

        return Expiries(
            root=timedelta(seconds=float(self.root_expiry)),
            targets=timedelta(seconds=float(self.targets_expiry)),
            snapshot=timedelta(seconds=float(self.snapshot_expiry)),
            timestamp=timedelta(seconds=float(self.timestamp_expiry)),
        )

    def repository_path(self, store_path: str) -> Path:
        return Path(self.path) if self.path else Path(store_path).with_name("releases")

    def keys_dir(self, store_path: str) -> Path:
        return Path(self.online_keys_dir) if self.online_keys_dir else Path(store_path).parent


Line = Annotated[str, msgspec.Meta(max_length=200)]


class ReportEnglish(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[report.en]``: the same texts for ``--lang en``; empty ones keep the English
    defaults (issuer.ENGLISH)."""

    issuer_parent: Line = ""
    issuer: Line = ""
    issuer_name: Line = ""
    place: Line = ""
    addressee: Line = ""
    basis: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=1000)]], msgspec.Meta(max_length=10)
    ] = []
    signer_authority: Line | None = None
    """None keeps the default; "" when the head signs."""
    signer_title: Line = ""
    recipients: Annotated[list[Line], msgspec.Meta(max_length=30)] = []

    def issuing(self) -> Issuer:
        """The English texts, each left empty taking its default."""
        default = ENGLISH
        return Issuer(
            parent=self.issuer_parent or default.parent,
            body=self.issuer or default.body,
            body_name=self.issuer_name or default.body_name,
            place=self.place,
            addressee=self.addressee or default.addressee,
            basis=tuple(self.basis),
            signer_authority=(
                default.signer_authority if self.signer_authority is None else self.signer_authority
            ),
            signer_title=self.signer_title or default.signer_title,
            recipients=tuple(self.recipients) or default.recipients,
        )


class ReportSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Who issues the monthly report's Word document (NĐ 30/2020 layout), to whom, on
    what basis, who signs it."""

    issuer_parent: Line = ""
    """The body above the issuer, e.g. "UBND TỈNH ĐỒNG NAI"; default from the province."""
    issuer: Line = "SỞ KHOA HỌC VÀ CÔNG NGHỆ"
    issuer_name: Line = "Sở Khoa học và Công nghệ"
    """The body as running text names it."""
    issuer_short: Annotated[str, msgspec.Meta(max_length=30)] = "SKHCN"
    """In the number: "Số: …/BC-SKHCN"."""
    place: Line = ""
    """In the date line ("Đồng Nai, ngày …"); default the province's name."""
    addressee: Line = "UBND tỉnh"
    """After "Kính gửi:"; "" for none (then no "Như trên" among the recipients)."""
    basis: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=1000)]], msgspec.Meta(max_length=10)
    ] = []
    """The documents the report answers, each as "Kế hoạch số … của …" ("Căn cứ …")."""
    signer_authority: Line = "KT. GIÁM ĐỐC"
    """"KT. GIÁM ĐỐC" when a deputy signs for the director; "" when the director signs."""
    signer_title: Line = "PHÓ GIÁM ĐỐC"
    signer_name: Line = ""
    recipients: Annotated[list[Line], msgspec.Meta(max_length=30)] = msgspec.field(
        default_factory=lambda: ["Như trên;", "Ban Giám đốc Sở;", "Lưu: VT, CĐS."]
    )
    en: ReportEnglish = ReportEnglish()

    def issuing(self, number: str = "") -> Issuer:
        """Who issues the report numbered ``number`` (empty: not registered yet)."""
        return Issuer(
            parent=self.issuer_parent,
            body=self.issuer,
            body_name=self.issuer_name,
            short=self.issuer_short,
            number=number,
            place=self.place,
            addressee=self.addressee,
            basis=tuple(self.basis),
            signer_authority=self.signer_authority,
            signer_title=self.signer_title,
            signer_name=self.signer_name,
            recipients=tuple(self.recipients),
            english=self.en.issuing(),
        )


AgentKeyText = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9][a-z0-9-]{0,63}/[a-z0-9][a-z0-9-]{0,63}/[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
    ),
]


class RolloutsSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Rollouts of agent releases in rings (``commune-collector rollout``)."""

    lab: Annotated[list[AgentKeyText], msgspec.Meta(max_length=64)] = []
    """The lab PCs (province/commune/agent), one per anti-malware product the province
    runs: the ``lab`` ring when ``rollout start`` names none."""


class CollectorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    collector: CollectorSection = CollectorSection()
    mqtt: MqttSection = MqttSection()
    store: StoreSection = StoreSection()
    sink: SinkSection | None = None
    """Optional: without it the collector works from its state store alone."""
    api: ApiSection = ApiSection()
    alerts: AlertsSection = AlertsSection()
    console: ConsoleSection = ConsoleSection()
    dynsec: DynsecSection | None = None
    enrollment: EnrollmentSection | None = None
    report: ReportSection = ReportSection()
    releases: ReleasesSection = ReleasesSection()
    rollouts: RolloutsSection = RolloutsSection()


#: The shortest secret that signs console sessions: an empty or short one lets anyone
#: forge them.
MIN_SECRET_BYTES = 32

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def read_session_secret(path: str) -> bytes:
    """The console's signing secret in ``path``; ValueError when too short to be one."""
    secret = Path(path).read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{path} holds {len(secret)} bytes: a session secret needs at least "
            f"{MIN_SECRET_BYTES} (head -c 48 /dev/urandom | base64 > {path})"
        )
    return secret


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR blocks (``[api] trusted_proxies``); ValueError naming a bad one."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def parse_collector_config(data: dict[str, Any], source: str = "<config>") -> CollectorConfig:
    """Decode and validate: every section checks itself (``validate``), a problem names
    the file, the section and the key."""
    config = convert_strict(data, CollectorConfig, source)
    sections: list[tuple[str, Any]] = [
        ("mqtt", config.mqtt),
        ("collector", config.collector),
        ("api", config.api),
        ("alerts", config.alerts),
        ("console", config.console),
        ("sink", config.sink),
        ("dynsec", config.dynsec),
        ("enrollment", config.enrollment),
        ("releases", config.releases),
    ]
    for name, section in sections:
        if section is None:
            continue
        try:
            section.validate()
        except ConfigProblem as exc:
            raise ConfigError(f"{source}: {name}.{exc.key}: {exc}") from None
    catalogues = _check_systems(config, source)
    if config.enrollment is not None:
        from collector.rollout.profiles import ProfileError, load_all

        try:
            load_all(
                config.enrollment.profiles,
                secrets_dir=config.enrollment.secrets_dir,
                systems=catalogues,
            )
        except ProfileError as exc:
            raise ConfigError(f"{source}: enrollment.profiles: {exc}") from None
    if config.enrollment is not None and config.dynsec is None:
        raise ConfigError(
            f"{source}: enrollment: needs a [dynsec] section: enrolled agents' accounts are "
            "made through the broker's dynamic security plugin"
        )
    if config.enrollment is not None and not config.api.listen:
        raise ConfigError(f"{source}: enrollment: PCs enroll through the API: set api.listen")
    return config


def _check_systems(config: CollectorConfig, source: str) -> dict[str, Catalogue]:
    """The catalogues of shared systems, against the provinces' inventories (the communes
    they name) and the alert routes (the owners' routes); their errors name their file."""
    if not config.collector.systems:
        return {}
    inventories = [load_inventory(path) for path in config.collector.inventory]
    try:
        return load_catalogues(
            config.collector.systems, inventories, [r.name for r in config.alerts.routes]
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: collector.systems: {exc}") from None


def load_collector_config(
    path: str | Path | None, *, check: bool = True, base: Path | None = None
) -> CollectorConfig:
    """The file's config, or the embedded defaults when ``path`` is None. ``check=False``
    decodes it (types, keys, relative paths resolved) without the checks that read the
    files it names: ``restore`` reads the config of a host whose files are not there yet.
    ``base``: the folder relative paths are in (default the file's own)."""
    if path is None:
        return CollectorConfig()
    # Relative paths are the config file's neighbours, not the working directory's.
    base = base or Path(path).absolute().parent
    data = resolve_paths(read_toml(path), base)
    for section, key in (
        ("collector", "inventory"),
        ("collector", "systems"),
        ("alerts", "rules"),
        ("enrollment", "profiles"),
    ):
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), list):
            table[key] = [
                resolve_paths({"file": item}, base, frozenset({"file"}))["file"]
                for item in table[key]
            ]
    enrollment = data.get("enrollment")
    if isinstance(enrollment, dict):
        enrollment.update(resolve_paths(
            enrollment, base,
            frozenset({"broker_ca_file", "client_ca_cert_file", "client_ca_key_file",
                       "client_crl_file", "config_key_file", "secrets_dir"}),
        ))  # fmt: skip
    releases = data.get("releases")
    if isinstance(releases, dict):
        releases.update(resolve_paths(releases, base, frozenset({"path", "online_keys_dir"})))
    api = data.get("api")
    if isinstance(api, dict):
        api.update(resolve_paths(api, base, frozenset({"tls_cert_file", "tls_key_file"})))
    store = data.get("store")
    if isinstance(store, dict) and isinstance(store.get("path"), str) and store["path"]:
        store["path"] = resolve_paths(store, base, frozenset({"path"}))["path"]
    if not check:
        return convert_strict(data, CollectorConfig, str(path))
    return parse_collector_config(data, str(path))
