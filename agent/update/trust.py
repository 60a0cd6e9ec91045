"""The TUF root this PC trusts for releases: ``<home>/tuf/root.json``.

It comes with the installation kit, or from ``commune-agent update-root fetch`` over the
same verified HTTPS as enrollment (a PC installed before releases were signed, or after
the root keys were lost and the root made anew). Later roots are followed by the TUF
client itself (``fetch.py``): each must be signed by the one before, so this file is
needed once, not at every rotation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from agent.update import fetch

#: A root is a few kB; far more is not one.
MAX_ROOT_BYTES: Final = 512 * 1024


class RootRefused(ValueError):
    """Not a root this PC may trust; the message says why."""


@dataclass(frozen=True)
class RootSummary:
    """A TUF root this PC may trust: its version, expiry and roles' keys."""

    version: int
    expires: datetime
    roles: dict[str, tuple[int, list[str]]]
    """Role -> (threshold, key ids)."""


def check_root(data: bytes) -> RootSummary:
    """``data`` as TUF root metadata signed by its own threshold, or RootRefused."""
    from tuf.api.exceptions import UnsignedMetadataError
    from tuf.api.metadata import Metadata, Root
    from tuf.api.serialization import DeserializationError

    if len(data) > MAX_ROOT_BYTES:
        raise RootRefused(f"{len(data)} bytes: too large for root metadata")
    try:
        metadata = Metadata[Root].from_bytes(data)
    except DeserializationError as exc:
        raise RootRefused(f"not TUF root metadata: {exc}") from None
    root = metadata.signed
    if not isinstance(root, Root):
        raise RootRefused(f"TUF {root.type} metadata, not root")
    try:
        root.verify_delegate("root", metadata.signed_bytes, metadata.signatures)
    except UnsignedMetadataError as exc:
        raise RootRefused(f"not signed by its own root keys: {exc}") from None
    roles = {name: (role.threshold, list(role.keyids)) for name, role in root.roles.items()}
    return RootSummary(root.version, root.expires, roles)


def root_path(home: Path) -> Path:
    return home / fetch.TUF_DIR / fetch.ROOT_FILE


def trusted_now(home: Path) -> RootSummary | None:
    """The newest root the TUF client has reached from the anchor (None: none yet)."""
    path = home / fetch.TUF_DIR / fetch.METADATA_DIR / "root.json"
    try:
        return check_root(path.read_bytes())
    except (OSError, RootRefused):
        return None


class RootUnreachable(Exception):
    """The collector could not be asked (try again later)."""


def download_root(collector: str, ca_file: str = "", timeout: float = 30.0) -> bytes:
    """The collector's newest root (``/releases/metadata/root.json``) over HTTPS verified
    as for enrollment: RootRefused when it answers no, RootUnreachable when it cannot
    be asked."""
    from agent.enroll import EnrollFailed, check_collector

    try:
        base = check_collector(collector, "the root decides which releases this PC installs")
    except EnrollFailed as exc:
        raise RootRefused(str(exc)) from None
    url = f"{base}/releases/metadata/root.json"
    context = ssl.create_default_context(cafile=ca_file or None)
    request = urllib.request.Request(url, method="GET")  # noqa: S310 (http(s) only, checked)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:  # noqa: S310
            data: bytes = answer.read(MAX_ROOT_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (429, 502, 503, 504):
            raise RootUnreachable(f"{url}: {exc.code} {exc.reason}; try again later") from None
        raise RootRefused(f"{url}: {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, ssl.SSLCertVerificationError):  # trying again will not help
            raise RootRefused(
                f"{url}: {reason.verify_message} (the collector's CA: --ca)"
            ) from None
        raise RootUnreachable(f"cannot reach {url}: {reason}; try again later") from None
    if len(data) > MAX_ROOT_BYTES:
        raise RootRefused(f"{url}: the answer is too large to be a root")
    return data


def install_root(home: Path, data: bytes) -> RootSummary:
    """Check ``data`` and write it as the trusted root (temporary name, then renamed).

    What the TUF client learnt under the former root is forgotten: trusting a root by
    hand is starting again (a repository made anew begins at version 1, which the
    remembered versions would refuse as a rollback)."""
    summary = check_root(data)
    learnt = home / fetch.TUF_DIR / fetch.METADATA_DIR
    if learnt.exists():
        shutil.rmtree(learnt)
    path = root_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".root.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return summary
