"""The running collector's side of the release repository: snapshot and timestamp
re-signed with the online keys before they expire (and as soon as the release manager
publishes new targets or a new root), and how close each role is to its expiry.

An agent whose metadata has expired installs nothing (``failed: metadata expired``): the
online roles must never lapse, and the offline ones (root, targets) must be signed again
by the release manager in time. ``expiring()`` is what the alert rule
``release_metadata_expiring`` and ``/metrics`` read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from collector.release.keys import KeyFileError
from collector.release.repository import ReleaseError, Repository, load_online

log = logging.getLogger(__name__)

#: Warn this long before an offline role expires: time for the key holders to meet.
WARN_BEFORE_S: Final = {"root": 30 * 86400.0, "targets": 14 * 86400.0}


@dataclass(frozen=True)
class RoleExpiry:
    role: str
    version: int
    expires: float
    """Unix seconds."""
    expiring: bool
    """Within its warning time (root 30 days, targets 14 days; an online role: less than
    half its validity left, that is a re-signing that did not happen)."""


class OnlineSigner:
    """Re-signs the online roles of the repository at ``repository.path`` with the keys
    in ``keys_dir``; thread-safe figures for /metrics and the alert rule."""

    def __init__(
        self, repository: Repository, keys_dir: Path, clock: Callable[[], float] = time.time
    ) -> None:
        self.repository = repository
        self.keys_dir = keys_dir
        self.clock = clock
        self.resigned_total = 0
        self.failures_total = 0
        self.last_error = ""
        self._roles: list[RoleExpiry] = []
        self._lock = threading.Lock()

    def tick(self, _now: float | None = None) -> None:
        """One round (the collector's housekeeping): nothing before ``release init``."""
        if not self.repository.initialised():
            return
        try:
            written = self.repository.refresh_online(load_online(self.keys_dir))
        except (ReleaseError, KeyFileError, OSError) as exc:
            with self._lock:
                self.failures_total += 1
                self.last_error = str(exc)
            log.error("releases: snapshot and timestamp not re-signed: %s", exc)
        else:
            with self._lock:
                self.last_error = ""
                self.resigned_total += len(written)
            if written:
                log.info("releases: signed %s", ", ".join(written))
        self._read_expiries()

    def _read_expiries(self) -> None:
        now = self.clock()
        expiries = self.repository.expiries
        found = []
        try:
            listing = self.repository.listing()
        except ReleaseError as exc:
            log.error("releases: cannot read the repository: %s", exc)
            return
        for state in listing.roles:
            expires = state.expires.timestamp()
            if state.role in WARN_BEFORE_S:
                warn = WARN_BEFORE_S[state.role]
            else:
                warn = expiries.of(state.role).total_seconds() / 2
            found.append(RoleExpiry(state.role, state.version, expires, expires - now < warn))
        with self._lock:
            self._roles = found

    def roles(self) -> list[RoleExpiry]:
        with self._lock:
            return list(self._roles)

    def failing(self) -> bool:
        with self._lock:
            return bool(self.last_error)
