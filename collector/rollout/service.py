"""The rollout, as the collector runs it: the admin session, the config sender, the
enroller, revocations, the profile files (read again whenever one changes on disk or is
replaced through the API, or the shared systems they send change; never applied unless
valid), and the config signing keys
(read again when a rotation changes them: every config is then signed and sent anew)."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.configtypes import BrokerSection, ConfigError, parse_toml, read_secret
from collector.common.filestamps import file_stamps
from collector.rollout import registry, tokens
from collector.rollout.configkey import KeyFiles, key_path
from collector.rollout.configs import ConfigSender
from collector.rollout.dynsec import Accounts, BrokerUnavailable, DynsecAdmin, DynsecError
from collector.rollout.enrollment import Enroller, EnrollSettings
from collector.rollout.profiles import (
    ProfileError,
    Profiles,
    load_all,
    parse_profiles,
    secrets_folder,
)
from collector.rollout.revocation import Revocations
from collector.rollout.rollouts import Rollouts, no_signed_versions
from collector.state.store import StateStore
from collector.state.systems import SystemFiles

if TYPE_CHECKING:
    from collector.rollout.signer import Signer

log = logging.getLogger(__name__)

#: As large as a request body may be (the web guard's bound): a province of 400 communes.
MAX_PROFILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class RolloutSettings:
    admin: BrokerSection
    admin_client_id: str
    admin_timeout_s: float
    collector: BrokerSection
    """The collector's own account ([mqtt]), the ingest's: made or brought to its rights."""
    publisher_username: str
    broker_url: str
    broker_ca_file: str
    profile_files: tuple[str, ...]
    collector_url: str = ""
    """Where PCs reach the API, for the commands printed with a token."""
    client_ca_cert_file: str = ""
    client_ca_key_file: str = ""
    client_cert_days: int = 825
    cert_broker_url: str = ""
    client_crl_file: str = ""
    """Where the revocation list of client certificates goes, for the broker's crlfile."""
    crl_reload_s: float = 10.0
    """How long the broker may take to reload the list once it changed."""
    renames: dict[tuple[str, str], str] = field(default_factory=dict)
    """(province, former slug) -> slug now: the profile values of an agent enrolled under a
    commune's former slug are the commune's."""
    config_key_file: str = ""
    """The config signing key (made there at the first start when missing)."""
    secrets_dir: str = ""
    """Where profiles' ``{ secret_file = ... }`` are ("" : each profiles file's folder)."""
    lab: tuple[str, ...] = ()
    """The lab PCs of a rollout that names none (``[rollouts] lab``)."""


class ProfileFiles:
    """The loaded profiles, and the files they came from (reloaded when one changes)."""

    def __init__(
        self,
        paths: tuple[str, ...],
        renames: dict[tuple[str, str], str] | None = None,
        secrets_dir: str = "",
        systems: SystemFiles | None = None,
    ) -> None:
        """``systems``: the shared systems' catalogues, whose probes the profiles send."""
        self.paths = paths
        self.renames = dict(renames or {})
        self.secrets_dir = secrets_dir
        self.systems = systems
        self._generation = systems.generation if systems else 0
        self.current = self._load()
        self.error = ""
        """Why the files on disk are not what runs ("" when they are)."""
        self._stamps = self._stat()
        self._lock = threading.Lock()

    def _load(self) -> Profiles:
        catalogues = self.systems() if self.systems is not None else None
        return load_all(list(self.paths), self.renames, self.secrets_dir, catalogues)

    def _stat(self) -> tuple[tuple[int, int], ...]:
        return file_stamps(self.paths)

    def __call__(self) -> Profiles:
        return self.current

    def reload_if_changed(self) -> bool:
        """True when the files, or the shared systems, changed and were valid (and now
        run)."""
        with self._lock:
            if self.systems is not None:
                self.systems.reload_if_changed()
            generation = self.systems.generation if self.systems is not None else 0
            stamps = self._stat()
            if stamps == self._stamps and generation == self._generation:
                return False
            self._stamps, self._generation = stamps, generation
            try:
                self.current = self._load()
            except (ConfigError, OSError) as exc:
                self.error = str(exc)
                log.error("check profiles not applied (the previous ones still run): %s", exc)
                return False
            self.error = ""
            log.info("check profiles reloaded from %s", ", ".join(self.paths))
            return True

    def path_of(self, province: str) -> Path:
        found = self.current.provinces.get(province)
        if found is None:
            raise KeyError(province)
        return Path(found.source)

    def replace(self, province: str, text: str) -> None:
        """A province's file replaced by ``text``: validated first (ProfileError, naming
        the key), then written atomically, then run."""
        path = self.path_of(province)
        if len(text.encode()) > MAX_PROFILE_BYTES:
            raise ProfileError(f"{path}: more than {MAX_PROFILE_BYTES} bytes")
        try:
            data = parse_toml(text, str(path))
        except ConfigError as exc:
            raise ProfileError(str(exc)) from None
        catalogue = self.systems().get(province) if self.systems is not None else None
        checked = parse_profiles(data, str(path), secrets_folder(path, self.secrets_dir), catalogue)
        if checked.province != province:
            raise ProfileError(f"{path}: province: this file is {province}'s")
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
        ) as temporary:
            temporary.write(text)
        os.chmod(temporary.name, path.stat().st_mode & 0o777)
        os.replace(temporary.name, path)
        self.reload_if_changed()


def _signer(settings: RolloutSettings) -> Signer | None:
    if not settings.client_ca_cert_file:
        return None
    from collector.rollout.signer import load_signer

    return load_signer(
        settings.client_ca_cert_file, settings.client_ca_key_file, settings.client_cert_days
    )


#: The store's ``meta`` row where a running collector's rollout says it is alive: the
#: command line leaves the broker to it rather than taking its admin session over.
HEARTBEAT = "rollout_seen"
RECEIPT_ACLS = "receipt_acls"
"""In the store's meta once the agents' roles made before receipts were given them."""


def running_collector(store: StateStore, now: float, within_s: float = 60.0) -> bool:
    """Whether a collector's rollout went round within ``within_s``."""
    with store.reading() as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (HEARTBEAT,)).fetchone()
    return row is not None and now - float(row[0]) < within_s


class Rollout:
    def __init__(
        self,
        store: StateStore,
        settings: RolloutSettings,
        clock: Callable[[], float] = time.time,
        signed_versions: Callable[[], set[str]] = no_signed_versions,
        systems: SystemFiles | None = None,
    ) -> None:
        """``signed_versions``: the agent versions the release repository's signed
        targets list now (a rollout of another version is refused); ``systems``: the
        shared systems' catalogues ([collector] systems)."""
        self.store = store
        self.settings = settings
        self.clock = clock
        self.profiles = ProfileFiles(
            settings.profile_files, settings.renames, settings.secrets_dir, systems
        )
        self.keys = KeyFiles(key_path(settings.config_key_file, store.path))
        self.admin = DynsecAdmin(settings.admin, settings.admin_client_id, settings.admin_timeout_s)
        self.accounts = Accounts(self.admin)
        self._publisher_password = secrets.token_urlsafe(32)
        self.sender = ConfigSender(
            store, settings.collector, settings.publisher_username, self.profiles, clock,
            username=settings.publisher_username,
        )  # fmt: skip
        self.sender.signing = self.keys
        self.rollouts = Rollouts(store, signed_versions, clock, lab=settings.lab)
        self.sender.orders = self.rollouts.orders
        signer = _signer(settings)
        self.revocations = Revocations(
            store, self.accounts, signer, settings.client_crl_file,
            lambda: set(self.profiles().provinces), clock, settings.crl_reload_s,
            settings.collector.topic_root,
        )  # fmt: skip
        ca = Path(settings.broker_ca_file).read_text() if settings.broker_ca_file else ""
        self.enroller = Enroller(
            store,
            self.accounts,
            self.sender,
            self.profiles,
            EnrollSettings(
                settings.broker_url,
                ca,
                settings.collector.topic_root,
                signer=signer,
                cert_broker_url=settings.cert_broker_url,
            ),
            clock,
            self.revocations,
        )
        self._heartbeat = False
        self._preparing = threading.Lock()
        self._stopping = threading.Event()
        self._prepared_session = 0
        """The admin session the broker was last brought in line on (0: none yet)."""
        self._sender_started = False

    def start(self, timeout: float = 10.0, *, heartbeat: bool = True) -> None:
        """The admin session, then the accounts (the ingest's, the config publisher's),
        then the config sender that logs in with its own (a broker without the account
        yet would refuse it, and paho's backoff would keep the configs waiting)."""
        self._heartbeat = heartbeat
        if heartbeat:
            self.beat(self.clock())
        self.admin.start()
        self.prepare_broker(timeout)
        if heartbeat:
            threading.Thread(target=self._follow_revocations, name="revocations",
                             daemon=True).start()  # fmt: skip

    def _follow_revocations(self) -> None:
        """Within a second, not at the next round: a revocation recorded by the command
        line (which leaves the broker to the running collector) is carried out, and a
        broker come back (maybe from an older plugin file) is brought in line."""
        while not self._stopping.wait(1.0):
            try:
                self.line_up(round_=False)
            except Exception:  # the next round tries again; this thread must not die
                log.exception("bringing the broker in line failed")

    def line_up(self, round_: bool = True) -> None:
        """The broker brought in line with the store: on a new admin session (the broker
        back, maybe from an older plugin file) or a refused publisher's password (that file
        held another one), everything ``prepare_broker`` does; else the accounts retired
        since removed. ``round_`` (the housekeeping round): also the sweep when due, the
        revocation list, and revoked agents' configs withdrawn. One caller at a time."""
        with self._preparing:
            if self.admin.ready:
                refused = self._sender_started and self.sender.watch.state() == "refused"
                if self.admin.sessions != self._prepared_session or refused:
                    self._prepare_broker(timeout=0)
                elif self.revocations.pending():
                    self.revocations.apply()
                    self.enroller.withdraw_configs()
                if round_:
                    self.revocations.sweep()
            if round_:
                self.revocations.write_crl()
                self.enroller.withdraw_configs()

    def beat(self, now: float) -> None:
        """Tell the store a collector runs the rollout (the command line then leaves the
        broker to it)."""
        with self.store.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (HEARTBEAT, int(now)))

    def stop(self) -> None:
        self._stopping.set()
        self.sender.stop()
        self.admin.stop()
        if self._heartbeat:  # stopped: the command line may do the broker's part itself
            with self.store.transaction() as db:
                db.execute("DELETE FROM meta WHERE key = ?", (HEARTBEAT,))

    def prepare_broker(self, timeout: float = 10.0) -> bool:
        """Before the collector subscribes: access no role grants refused; its own
        accounts exist with exactly the rights they need (the ingest reads agents'
        status and data, the publisher writes their configs); then the publisher logs
        in; strays swept, retired accounts removed. Idempotent; False while the admin
        session is away (``line_up`` tries again)."""
        with self._preparing:
            return self._prepare_broker(timeout)

    def _prepare_broker(self, timeout: float) -> bool:
        if not self.admin.wait_ready(timeout):
            log.warning("dynamic security: no admin session yet; the collector's accounts are "
                        "checked again at the next round")  # fmt: skip
            return False
        session = self.admin.sessions
        try:
            self.accounts.deny_by_default()
            collector = self.settings.collector
            if collector.username:
                self.accounts.ensure_collector(
                    collector.username, read_secret(collector.password_file)
                    if collector.password_file else "", collector.topic_root,
                )  # fmt: skip
            self.accounts.ensure_publisher(
                self.settings.publisher_username, self._publisher_password, collector.topic_root,
                set_password=self._sender_started is False
                or self.sender.watch.state() == "refused",
            )  # fmt: skip
            self._grant_receipts(collector.topic_root)
        except (BrokerUnavailable, DynsecError) as exc:
            log.warning("dynamic security: the collector's accounts not set up yet: %s", exc)
            return False
        self.sender.credentials(self.settings.publisher_username, self._publisher_password)
        if not self._sender_started:
            self.sender.start()
            self._sender_started = True
        self._prepared_session = session
        self.revocations.sweep(force=True)
        self.revocations.apply()
        return True

    def _grant_receipts(self, root: str) -> None:
        """Once per store: agents enrolled by a release before receipts may read theirs."""
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM meta WHERE key = ?", (RECEIPT_ACLS,)).fetchone():
                return
        changed = self.accounts.grant_receipts(root)
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (RECEIPT_ACLS, int(self.clock()))
            )
        if changed:
            log.warning("dynamic security: %d agents' roles given their receipt topic", changed)

    def tick(self, now: float) -> None:
        """Housekeeping: the broker brought in line (accounts, retired accounts removed,
        strays swept, the revocation list); profiles read again if changed; configs sent
        if anything is due. The store hears that a collector runs the rollout."""
        if self._heartbeat:
            self.beat(now)
        self.line_up()
        if self.profiles.reload_if_changed():
            self.sender.pending = True
        if self.keys.reload_if_changed():  # a rotation: every config signed and sent anew
            self.sender.pending = True
        if registry.running_versions(self.store):  # a store restored from a backup
            self.sender.pending = True
        if self.follow_releases():
            self.sender.pending = True
        if self.sender.pending:
            self.sender.sync()

    def follow_releases(self) -> bool:
        """The running rollout's gate judged (a ring promoted, or the rollout paused on a
        breach); True when the release orders changed since the last round (by the gate,
        or by an operator at the command line or the API)."""
        happened, changed = self.rollouts.follow()
        if happened:
            log.log(logging.WARNING if "paused" in happened else logging.INFO, "%s", happened)
        return changed

    def replace_profiles(self, province: str, text: str, actor: str, address: str) -> None:
        self.profiles.replace(province, text)
        with self.store.transaction() as db:
            registry.record(
                db, "profiles_changed", self.clock(), province=province, actor=actor,
                address=address,
            )  # fmt: skip
        self.sender.pending = True
        self.sender.sync()

    def parts(self) -> dict[str, str]:
        """For /healthz: the admin session, the profile files, configs not sent (or
        signing keys that could not be read again), accounts retired and not yet removed
        from the broker, the revocation list."""
        admin = self.admin.watch.state()
        sender = self.sender.watch.state()
        parts = {
            "dynsec": admin if admin != "ok" else "ok" if self.admin.ready else "away",
            "profiles": "invalid" if self.profiles.error else "ok",
            # Keys that cannot be read after a rotation: the previous ones still sign.
            "configs": sender if sender == "taken_over" else
            "behind" if self.sender.last.failed or self.keys.error else "ok",
            "revocations": "pending" if self.revocations.pending() else "ok",
        }  # fmt: skip
        if self.revocations.signer is not None and self.settings.client_crl_file:
            parts["crl"] = "failing" if self.revocations.crl_error else "ok"
        return parts

    def create_token(
        self,
        *,
        province: str,
        commune: str,
        profile: str,
        uses: int,
        ttl_s: float,
        created_by: str,
        allow_replace: bool = False,
    ) -> tuple[tokens.Token, str]:
        """A token for a commune whose PCs the profile can make configs for."""
        if not self.profiles().has(province, profile):
            known = self.profiles().provinces.get(province)
            names = sorted(known.profiles) if known else []
            raise ProfileError(
                f"no profile {profile!r} for {province} (profiles: {names or 'none'})"
            )
        self.profiles().effective(province, commune, "(a new agent)", profile)
        now = self.clock()
        token, text = tokens.create(
            self.store,
            province=province,
            commune=commune,
            profile=profile,
            uses=uses,
            ttl_s=ttl_s,
            created_by=created_by,
            now=now,
            allow_replace=allow_replace,
        )
        with self.store.transaction() as db:
            registry.record(
                db, "token_created", now, province=province, commune=commune,
                token_id=token.id, actor=created_by, detail=f"{uses} uses, profile {profile}",
            )  # fmt: skip
        return token, text

    def revoke_token(self, token_id: str, actor: str) -> tokens.Token:
        token = tokens.revoke(self.store, token_id, self.clock())
        with self.store.transaction() as db:
            registry.record(
                db, "token_revoked", self.clock(), province=token.province,
                commune=token.commune, token_id=token_id, actor=actor,
            )  # fmt: skip
        return token
