"""Release signing keys: one Ed25519 key per file, for one TUF role.

A private key file holds base64 of the key's 32 bytes on one line under comments naming
its role and key id (like the config signing key), 0600; ``<file>.pub`` beside it holds
the public half as JSON (role, key id, the TUF key), to hand to whoever builds a root
without the private half (a root key holder signs later with ``release sign``).

Root and targets keys are offline: files the release manager keeps on removable media
and names on the command line. Snapshot and timestamp keys are online: in the
collector's folder (``[releases] online_keys_dir``), read by the running collector.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, SSlibKey

from collector.common import keyfile

Role = Literal["root", "targets", "snapshot", "timestamp"]
ROLES: Final[tuple[Role, ...]] = ("root", "targets", "snapshot", "timestamp")
ONLINE: Final[tuple[Role, ...]] = ("snapshot", "timestamp")
#: A key file is a few hundred bytes; anything far larger is not one.
MAX_KEY_FILE_BYTES: Final = 16 * 1024


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class ReleaseKey:
    """A key as read from a file: its public half always, its signer when private."""

    path: Path
    role: Role
    public: SSlibKey
    signer: CryptoSigner | None

    @property
    def keyid(self) -> str:
        return self.public.keyid

    @property
    def short(self) -> str:
        return self.public.keyid[:12]


def public_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def _public_document(role: Role, key: SSlibKey) -> bytes:
    document = {"role": role, "keyid": key.keyid, "key": key.to_dict()}
    return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"


def generate(path: Path, role: Role) -> ReleaseKey:
    """A new key in ``path`` (0600, never over an existing file) and its ``.pub``."""
    private = Ed25519PrivateKey.generate()
    public = SSlibKey.from_crypto(private.public_key())
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    text = (
        f"# commune-collector release key, role {role} (Ed25519, private): keep it 0600"
        f"{', offline' if role not in ONLINE else ''}.\n"
        f"# key id: {public.keyid}\n"
        f"{base64.b64encode(raw).decode()}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_new(path, text.encode(), 0o600)
    with contextlib.suppress(FileNotFoundError):
        public_path(path).unlink()  # a stale half of an earlier key must not stay beside it
    _write_new(public_path(path), _public_document(role, public), 0o644)
    return ReleaseKey(path, role, public, CryptoSigner(private, public))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        _owned_like_its_folder(partial)
        os.link(partial, path)  # never over an existing key
    finally:
        partial.unlink(missing_ok=True)


def _owned_like_its_folder(path: Path) -> None:
    """An online key made by root in the collector's folder must stay readable by the
    service's user, the folder's owner."""
    if sys.platform == "win32" or os.geteuid() != 0:
        return
    folder = path.parent.stat()
    os.chown(path, folder.st_uid, folder.st_gid)


def read(path: Path, role: Role | None = None) -> ReleaseKey:
    """The key in ``path``: a private key file, or a ``.pub`` file (public half only).
    ``role``: the role it must be for. KeyFileError naming the file otherwise."""
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: too large to be a release key file")
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key file: {exc.strerror}") from None
    key = _read_public(path, data) if data.lstrip().startswith(b"{") else _read_private(path, data)
    if role is not None and key.role != role:
        raise KeyFileError(f"{path}: a {key.role} key, not a {role} key")
    return key


def _read_public(path: Path, data: bytes) -> ReleaseKey:
    try:
        document = json.loads(data)
        role = document["role"]
        public = SSlibKey.from_dict(document["keyid"], dict(document["key"]))
        if role not in ROLES or public.keytype != "ed25519":
            raise ValueError(f"role {role!r}, key type {public.keytype!r}")
        raw = bytes.fromhex(public.keyval["public"])
        computed = SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(raw))
        if computed.keyid != public.keyid or computed.to_dict() != public.to_dict():
            raise ValueError("its key id is not its key's")
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a release public key file ({exc})") from None
    return ReleaseKey(path, role, public, None)


def _read_private(path: Path, data: bytes) -> ReleaseKey:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a release key file (not text)") from None
    role: str = ""
    body: list[str] = []
    for line in (line.strip() for line in text.splitlines()):
        if line.startswith("#") and ", role " in line:
            role = line.split(", role ", 1)[1].split(" ", 1)[0]
        elif line and not line.startswith("#"):
            body.append(line)
    try:
        if role not in ROLES:
            raise ValueError("no role named in its first line")
        raw = keyfile.raw_key(body)
    except ValueError as exc:
        raise KeyFileError(
            f"{path}: not a release key file ({exc}); keys are made by "
            "`commune-collector release keygen`"
        ) from None
    keyfile.restrict(path)
    private = Ed25519PrivateKey.from_private_bytes(raw)
    public = SSlibKey.from_crypto(private.public_key())
    return ReleaseKey(path, role, public, CryptoSigner(private, public))


def online_key_path(folder: Path, role: Role) -> Path:
    return folder / f"release-{role}.key"


def next_path(path: Path) -> Path:
    """Where a rotation puts an online key until the root naming it is published."""
    return path.with_name(path.name + ".next")
