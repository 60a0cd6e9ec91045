"""Revocation that lasts: retired accounts removed from the broker, strays swept, the
client certificates' revocation list kept.

The store is the truth: an account is retired there (``registry.retire``) before the
broker is asked, and stays "pending" until the broker has been seen without it. This
module brings the broker in line, now and at every round of the collector: it removes
every pending account (its live session ends at once), and, every few minutes, sweeps
the broker for agent accounts that no active enrollment holds (a broker whose
``dynamic-security.json`` was restored from an old backup would otherwise bring back
every PC ever replaced or revoked). Whatever the order of enrollments, revocations,
replacements and broker restarts, a retired account does not come back. The same sweep
makes again the account of an active enrollment with a client certificate that such a
restore lost (a certificate account has no password to know); a PC with a password
whose account was lost must enroll again (``--replace``): its password is known to it
alone.

The certificates of retired accounts go into the revocation list
(``[enrollment] client_crl_file``) that the broker's certificate listener loads at
start and on reload (``commune-crl-reload.path`` reloads it whenever the file
changes). The plugin ends an account's live session whenever it changes the account,
so a certificate account is retired in two steps: the list written, the account deleted
(its session ends; the PC, whose certificate the broker has not yet reloaded as revoked,
may log in again, as an account that no longer exists: it may do nothing); then,
``CRL_GRACE_S`` later, that session is ended once more, and the PC's next handshake meets
the reloaded list. Without the second step it would sit there, harmless but connected,
until the broker's next restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from collector.rollout import registry
from collector.rollout.dynsec import Accounts, AgentTopics, BrokerUnavailable, DynsecError
from collector.rollout.signer import Signer, write_public
from collector.state.store import StateStore

log = logging.getLogger(__name__)

#: How often the broker's agent accounts are compared with the enrollments.
SWEEP_EVERY_S = 600.0
#: Between deleting a certificate account (the revocation list written first) and ending
#: its session again: time for the broker's reload.
CRL_GRACE_S = 10.0


@dataclass
class RevocationStats:
    removed: int = 0
    """Retired accounts the broker was made to forget."""
    strays: int = 0
    """Agent accounts found at the broker without an enrollment, and removed."""
    remade: int = 0
    """Certificate accounts of active enrollments the broker had lost, made again."""


class Revocations:
    def __init__(
        self,
        store: StateStore,
        accounts: Accounts,
        signer: Signer | None = None,
        crl_file: str = "",
        provinces: Callable[[], set[str]] = set,
        clock: Callable[[], float] = time.time,
        crl_grace_s: float = CRL_GRACE_S,
        root: str = "commune",
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.signer = signer
        self.crl_file = crl_file
        self.provinces = provinces
        """Provinces whose agents this collector enrolls: the sweep touches only theirs."""
        self.clock = clock
        self.crl_grace_s = crl_grace_s
        self.root = root
        self.lock = threading.RLock()
        """Held while an account is made and recorded, and while the broker is swept: a
        sweep never takes an account being enrolled for a stray."""
        self.stats = RevocationStats()
        self._crl_serials: tuple[tuple[str, float], ...] | None = None
        self._swept_at = -SWEEP_EVERY_S
        self._deleted: dict[str, float] = {}
        """Certificate accounts deleted, and when: their sessions ended again
        ``CRL_GRACE_S`` later."""
        self.crl_error = ""

    def pending(self) -> list[registry.Retired]:
        return registry.retired(self.store, pending_only=True)

    def apply(self) -> bool:
        """Bring the broker in line with the retired accounts: the revocation list
        rewritten if it changed, every retired account deleted (its session ended), and
        a certificate's session ended again once the list had time to be reloaded. True
        when the broker holds none of them any more (some certificates' second step may
        be due later)."""
        self.write_crl()
        done = True
        now = self.clock()
        for account in self.pending():
            try:
                deleted = self._deleted.get(account.username)
                if deleted is None:
                    self.accounts.delete_agent(account.username)
                    if self._through_the_list(account):
                        self._deleted[account.username] = now
                        log.info(
                            "deleted the %s account %s; its certificate's session is ended "
                            "again in %.0f s, once the broker has reloaded the revocation "
                            "list", account.reason, account.username, self.crl_grace_s,
                        )  # fmt: skip
                        continue
                elif now - deleted < self.crl_grace_s:
                    continue
                else:
                    self.accounts.kick(account.username)
            except (BrokerUnavailable, DynsecError) as exc:
                log.warning(
                    "retired account %s not yet removed from the broker (%s): tried again at "
                    "the next round", account.username, exc,
                )  # fmt: skip
                if account.username not in self._deleted:
                    done = False
                if isinstance(exc, BrokerUnavailable):
                    done = False
                    break
                continue
            self._deleted.pop(account.username, None)
            with self.store.transaction() as db:
                registry.account_removed(db, account.username, self.clock())
            self.stats.removed += 1
            log.info("removed the %s account %s from the broker", account.reason, account.username)
        return done

    def _through_the_list(self, account: registry.Retired) -> bool:
        """Whether the account's certificate is refused through the revocation list (its
        session is then ended a second time, after the broker had time to reload it)."""
        return bool(account.cert_serial) and self.signer is not None and bool(self.crl_file)

    def sweep(self, force: bool = False) -> list[str]:
        """Agent accounts at the broker that no active enrollment of this collector's
        provinces holds: retired (reason "stray") and removed. Every ``SWEEP_EVERY_S``
        unless ``force``; [] when not due or the broker is away."""
        now = self.clock()
        if not force and now - self._swept_at < SWEEP_EVERY_S:
            return []
        provinces = self.provinces()
        with self.lock:
            try:
                found = self.accounts.agent_accounts()
            except (BrokerUnavailable, DynsecError) as exc:
                log.warning("could not list the broker's agent accounts: %s", exc)
                return []
            self._swept_at = now
            active = registry.active_usernames(self.store)
            strays = [
                name for name in found if name not in active and name.split("/", 1)[0] in provinces
            ]
            if strays:
                with self.store.transaction() as db:
                    for name in strays:
                        registry.retire(db, name, name.split("@", 1)[0], "stray", now)
            self._remake_lost(set(found), provinces)
        for name in strays:
            log.warning(
                "the broker holds the agent account %s, which no active enrollment has (a "
                "restored broker file? made by hand?): removing it", name,
            )  # fmt: skip
        self.stats.strays += len(strays)
        if strays:
            self.apply()
        return strays

    def _remake_lost(self, found: set[str], provinces: set[str]) -> None:
        for agent in registry.managed(self.store, active=True):
            if agent.username in found or not agent.cert_serial:
                continue
            if agent.province not in provinces:
                continue
            topics = AgentTopics.of(self.root, agent.province, agent.commune, agent.agent)
            try:
                self.accounts.create_agent(agent.username, None, topics)
            except (BrokerUnavailable, DynsecError) as exc:
                log.warning("could not make again the lost account %s: %s", agent.username, exc)
                continue
            self.stats.remade += 1
            log.warning(
                "the broker had lost the account %s of an active enrollment (a restored plugin "
                "file?): made again for its certificate", agent.username,
            )  # fmt: skip

    def write_crl(self) -> bool:
        """The revocation list, written when the revoked certificates changed (or the file
        is missing). False when there is nothing to write or nothing changed."""
        if self.signer is None or not self.crl_file:
            return False
        serials = tuple(registry.revoked_serials(self.store))
        path = Path(self.crl_file)
        if serials == self._crl_serials and path.exists():
            return False
        try:
            write_public(path, self.signer.revocation_list(list(serials)))
        except OSError as exc:
            self.crl_error = f"cannot write {path}: {exc.strerror or exc}"
            log.error("client certificate revocation list: %s", self.crl_error)
            return False
        self.crl_error = ""
        self._crl_serials = serials
        log.info("client certificate revocation list %s: %d certificates", path, len(serials))
        return True
