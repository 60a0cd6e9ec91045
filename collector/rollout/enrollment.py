"""Enrolling a PC: a token, the PC's own password, and back what it needs to report.

The PC makes its password itself and sends it once, over HTTPS, with the token;
nothing secret travels from the collector. In order, so that nothing is left
half-made:

1. the token gives a use (one conditional UPDATE), the agent's profile must make
   a valid config for it, and the agent id must be new in the commune (or the
   token allow replacing it, and the PC ask to);
2. its broker account is made: a new one for every enrollment
   (``<province>/<commune>/<agent>@<n>``), never an earlier one given a new password,
   so the password or certificate of a replaced or revoked PC names an account that
   is gone for good; if that fails the use is given back;
3. the agent is recorded with the audit entry, and the account of its earlier
   enrollment (if any) retired in the same transaction; should that fail, the
   account just made is deleted again;
4. the retired account is removed from the broker (now, or at the next round:
   ``revocation.py``) and its certificate listed as revoked;
5. its config is sent (retained) before the answer, so it is there when the
   agent first connects.

The store's write lock is never held while the broker is asked: ingest goes on.
Every refusal is counted by reason and audited with the address it came from.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from agent.enrollwire import EnrollAnswer, EnrollRequest, EnrollTopics
from collector.rollout import registry, tokens
from collector.rollout.configs import ConfigSender
from collector.rollout.dynsec import (
    AccountExists,
    Accounts,
    AgentTopics,
    BrokerUnavailable,
    DynsecError,
)
from collector.rollout.profiles import ProfileError, Profiles
from collector.rollout.revocation import Revocations
from collector.rollout.signer import CsrRefused, Issued, Signer, check_csr

if TYPE_CHECKING:
    from cryptography import x509
from collector.state.store import StateStore, agent_key

log = logging.getLogger(__name__)


class EnrollRefused(Exception):
    """``status``: the HTTP status; ``reason``: the counter key; the message: for the PC."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class EnrollSettings:
    broker_url: str
    broker_ca: str
    root: str
    signer: Signer | None = None
    """Signs the certificates of PCs that send a CSR; None: passwords only."""
    cert_broker_url: str = ""


@dataclass
class EnrollStats:
    enrolled: int = 0
    replaced: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)


#: Why an enrollment is refused: the counter's reasons, all shown (at 0) in /metrics.
REFUSALS = (
    "token_malformed", "token_unknown", "token_revoked", "token_expired", "token_used_up",
    "commune", "profile", "duplicate", "broker", "store", "malformed", "csr",
)  # fmt: skip

_TOKEN_STATUS = {"malformed": 401, "unknown": 401, "revoked": 403, "expired": 403, "used_up": 403}


def _place(token: tokens.Token, request: EnrollRequest) -> dict[str, str]:
    """Where an enrollment happens, for the audit."""
    return {"province": token.province, "commune": token.commune, "agent": request.agent,
            "token_id": token.id}  # fmt: skip


class Enroller:
    def __init__(
        self,
        store: StateStore,
        accounts: Accounts,
        sender: ConfigSender,
        profiles: Callable[[], Profiles],
        settings: EnrollSettings,
        clock: Callable[[], float] = time.time,
        revocations: Revocations | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.sender = sender
        self.profiles = profiles
        self.settings = settings
        self.clock = clock
        self.stats = EnrollStats()
        self.revocations = revocations or Revocations(store, accounts, clock=clock)

    def _refuse(
        self, status: int, reason: str, message: str, address: str, **where: str
    ) -> EnrollRefused:
        self.stats.refused[reason] += 1
        with self.store.transaction() as db:
            registry.record(
                db, "refused", self.clock(), address=address, detail=f"{reason}: {message}", **where
            )
        return EnrollRefused(status, reason, message)

    def _credential(
        self, request: EnrollRequest, address: str
    ) -> x509.CertificateSigningRequest | None:
        """A password or a CSR, not both; a CSR this collector can sign. Checked before
        the token so a wrong request spends none of its uses."""
        if bool(request.password) == bool(request.csr):
            raise self._refuse(400, "malformed", "send a password or a CSR (one of them)",
                               address, agent=request.agent)  # fmt: skip
        if not request.csr:
            return None
        if self.settings.signer is None:
            raise self._refuse(
                400, "csr", "this collector does not issue client certificates: enroll with "
                "a password (without --client-cert)", address, agent=request.agent,
            )  # fmt: skip
        try:
            return check_csr(request.csr)
        except CsrRefused as exc:
            raise self._refuse(400, "csr", f"CSR refused: {exc}", address,
                               agent=request.agent) from None  # fmt: skip

    def enroll(self, request: EnrollRequest, address: str) -> EnrollAnswer:
        now = self.clock()
        csr = self._credential(request, address)
        token, existing = self._admit(request, address, now)
        place = _place(token, request)
        key = agent_key(token.province, token.commune, request.agent)
        generation = (existing.generation if existing is not None else 0) + 1
        username = registry.account_name(key, generation)
        topics = AgentTopics.of(self.settings.root, token.province, token.commune, request.agent)
        issued: Issued | None = None
        if csr is not None:
            assert self.settings.signer is not None
            issued = self.settings.signer.sign(csr, username)
        event = "replaced" if existing is not None else "enrolled"
        with self.revocations.lock:
            self._account(request, token, username, topics, address, place)
            try:
                with self.store.transaction() as db:
                    registry.enrolled(
                        db,
                        province=token.province,
                        commune=token.commune,
                        agent=request.agent,
                        username=username,
                        profile=token.profile,
                        token_id=token.id,
                        now=now,
                        generation=generation,
                        cert_serial=issued.serial if issued else "",
                        cert_expires=issued.expires if issued else 0.0,
                    )
                    if existing is not None and existing.username != username:
                        registry.retire(
                            db, existing.username, key,
                            "revoked" if existing.revoked_at is not None else "replaced", now,
                            existing.cert_serial,
                        )  # fmt: skip
                    registry.record(db, event, now, address=address, detail=token.profile, **place)
            except Exception:
                self._undo(username)
                self._give_back(token.id)
                log.exception("enrollment of %s could not be recorded; its account was undone", key)
                raise EnrollRefused(
                    503, "store", "the collector could not record it: try again"
                ) from None
        if existing is not None:
            self.stats.replaced += 1
            self.revocations.apply()  # the earlier account goes now (or at the next round)
        else:
            self.stats.enrolled += 1
        log.info("%s %s (account %s) from %s with token %s", event, key, username, address,
                 token.id)  # fmt: skip
        self.sender.sync(only=key)  # retained before the agent first connects
        self.sender.first_receipt(token.province, token.commune, request.agent)
        return EnrollAnswer(
            province=token.province,
            commune=token.commune,
            agent=request.agent,
            username=username,
            broker_url=self.settings.cert_broker_url if issued else self.settings.broker_url,
            broker_ca=self.settings.broker_ca,
            profile=token.profile,
            topics=EnrollTopics(topics.status, topics.data, topics.config),
            replaced=existing is not None,
            certificate=issued.pem if issued else "",
            # What its configs are signed with: the agent runs no other.
            config_keys=[k.public_text for k in self.sender.signing().public()]
            if self.sender.signing is not None
            else [],
        )

    def _undo(self, username: str) -> None:
        try:
            self.accounts.delete_agent(username)
        except (BrokerUnavailable, DynsecError):  # the sweep finds it: no enrollment has it
            log.warning("could not delete the account %s just made; the next sweep will",
                        username)  # fmt: skip

    def _admit(
        self, request: EnrollRequest, address: str, now: float
    ) -> tuple[tokens.Token, registry.Managed | None]:
        """The token (one use taken), and the agent enrolled under that id before if any;
        refused when the profile makes no config for it or the id is taken."""
        try:
            with self.store.transaction() as db:
                token = tokens.take_use(db, request.token, now)
        except tokens.TokenRefused as exc:
            known = exc.token
            where = (
                {"province": known.province, "commune": known.commune, "token_id": known.id}
                if known else {}
            )  # fmt: skip
            raise self._refuse(
                _TOKEN_STATUS[exc.reason], f"token_{exc.reason}", str(exc), address,
                agent=request.agent, **where,
            ) from None  # fmt: skip
        made_for = token.commune
        renamed = self.profiles().renames.get((token.province, made_for))
        if renamed is not None:
            # A token made before the commune took its slug now: its PCs join the
            # commune under that slug (topics, account, identity), not the former one.
            token = replace(token, commune=renamed)
        place = _place(token, request)
        key = agent_key(token.province, token.commune, request.agent)
        if request.commune and request.commune not in (token.commune, made_for):
            self._give_back(token.id)
            raise self._refuse(
                403, "commune",
                f"this token is for {token.commune}, not {request.commune}: use the right one",
                address, **place,
            )  # fmt: skip
        try:
            self.profiles().effective(token.province, token.commune, request.agent, token.profile)
        except ProfileError as exc:
            self._give_back(token.id)
            log.error("enrollment of %s refused: its profile makes no valid config: %s", key, exc)
            raise self._refuse(
                409, "profile", f"the collector has no valid config for this PC: {exc}", address,
                **place,
            ) from None  # fmt: skip
        with self.store.reading() as db:
            existing = registry.find(db, key)
            twin = self._under_another_slug(db, token, request.agent)
        if twin is not None:  # both would report as one agent of the commune
            self._give_back(token.id)
            raise self._refuse(
                409, "duplicate",
                f"{request.agent} is enrolled in this commune already, under its slug "
                f"{twin.commune}: revoke that one first, or choose another --id",
                address, **place,
            )  # fmt: skip
        taken = existing is not None and existing.revoked_at is None
        if taken and not (request.replace and token.allow_replace):
            self._give_back(token.id)
            hint = " (this token allows it: enroll with --replace)" if token.allow_replace else ""
            raise self._refuse(
                409, "duplicate",
                f"{request.agent} is enrolled in {token.commune} already: choose another "
                f"--id{hint}",
                address, **place,
            )  # fmt: skip
        return token, existing

    def _under_another_slug(
        self, db: sqlite3.Connection, token: tokens.Token, agent: str
    ) -> registry.Managed | None:
        """The agent of this id enrolled (not revoked) under a former slug of the token's
        commune (``_admit`` gave the token the commune's slug now): the ingest counts
        both as one."""
        province = token.province
        formerly = {
            old
            for (p, old), now in self.profiles().renames.items()
            if (p, now) == (province, token.commune)
        }
        for slug in sorted(formerly):
            found = registry.find(db, agent_key(province, slug, agent))
            if found is not None and found.revoked_at is None:
                return found
        return None

    def _account(
        self,
        request: EnrollRequest,
        token: tokens.Token,
        username: str,
        topics: AgentTopics,
        address: str,
        place: dict[str, str],
    ) -> None:
        """The enrollment's own broker account, made (with the PC's password, or none for
        a certificate: none that could be guessed)."""
        password = request.password or None
        try:
            try:
                self.accounts.create_agent(username, password, topics)
            except AccountExists:
                # Made by an enrollment of this generation that was never recorded (the
                # collector stopped in between): nobody holds it; make it afresh.
                self.accounts.delete_agent(username)
                self.accounts.create_agent(username, password, topics)
        except (BrokerUnavailable, DynsecError) as exc:
            self._give_back(token.id)
            log.error("enrollment of %s failed at the broker: %s", username, exc)
            raise self._refuse(
                503, "broker",
                "the collector cannot reach the broker to make this PC's account: try again "
                "in a few minutes",
                address, **place,
            ) from None  # fmt: skip

    def _give_back(self, token_id: str) -> None:
        with self.store.transaction() as db:
            tokens.give_back(db, token_id)

    def revoke(
        self, key: str, actor: str, address: str = "", *, apply: bool = True
    ) -> tuple[registry.Managed, bool]:
        """Revoke an enrolled agent: recorded first (its account retired), then, with
        ``apply``, its account removed from the broker (its live session ends at once) and
        its config withdrawn. Returns the agent and whether the broker has done its part
        (if not, the next round does). KeyError for an agent that was never enrolled."""
        with self.store.reading() as db:
            agent = registry.find(db, key)
        if agent is None:
            raise KeyError(key)
        now = self.clock()
        with self.store.transaction() as db:
            registry.revoked(db, key, now)
            registry.retire(db, agent.username, key, "revoked", now, agent.cert_serial)
            registry.record(
                db,
                "revoked",
                now,
                province=agent.province,
                commune=agent.commune,
                agent=agent.agent,
                address=address,
                actor=actor,
            )
        applied = False
        self.sender.pending = True  # another agent of the commune may probe its systems now
        if apply:
            applied = self.revocations.apply()
            self.withdraw_configs()
        pending = "" if applied or not apply else "; the broker's part is pending"
        log.info("revoked %s (by %s)%s", key, actor, pending)
        with self.store.reading() as db:
            found = registry.find(db, key)
        assert found is not None
        return found, applied

    def withdraw_configs(self) -> None:
        """The retained configs of revoked agents cleared from the broker (they hold the
        agents' secrets): now if the config publisher is connected, else next round."""
        for agent in registry.unwithdrawn(self.store):
            if self.sender.withdraw(agent.province, agent.commune, agent.agent):
                with self.store.transaction() as db:
                    registry.config_withdrawn(db, agent.agent_key)
