"""The collector's config signing keys: the current one signs every agent's config; during
a rotation the next one waits, announced inside the configs the current one signs.

Files: ``[enrollment] config_key_file`` (default ``config-signing.key`` beside the state
store, in the collector's StateDirectory) holds the current private key, base64 of its 32
bytes on one line, 0600, made at the first start when missing; ``<that file>.next``
holds the next one while a rotation is under way. ``commune-collector config-key
rotate`` makes the next key, ``finish`` renames it over the current one (whose private
half is then gone). A running collector notices either file change (``KeyFiles``) and
signs and sends every agent's config again.
"""

from __future__ import annotations

import base64
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.configtypes import ConfigError
from agent.wire import SCHEMA_VERSION, SignedConfig, config_key_id, signed_message
from collector.common import keyfile

log = logging.getLogger(__name__)

#: The default file's name, beside the state store.
DEFAULT_NAME = "config-signing.key"


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    public: bytes

    @property
    def id(self) -> str:
        return config_key_id(self.public)

    @property
    def public_text(self) -> str:
        """Base64, as agents keep it (config-key.pub) and as configs announce it."""
        return base64.b64encode(self.public).decode()


@dataclass(frozen=True)
class ConfigKeys:
    current: SigningKey
    next: SigningKey | None = None

    @property
    def state(self) -> str:
        """What signs and what is announced, as recorded for each agent: a config sent
        under other keys is sent again under a new version."""
        return self.current.id + (f">{self.next.id}" if self.next else "")

    @property
    def next_public_text(self) -> str:
        return self.next.public_text if self.next else ""

    def sign(self, config: bytes) -> SignedConfig:
        return SignedConfig(
            v=SCHEMA_VERSION,
            config=config,
            key=self.current.id,
            sig=self.current.private.sign(signed_message(config)),
        )

    def public(self) -> list[SigningKey]:
        """The keys agents may be given: the current one, and the next during a rotation."""
        return [self.current, *([self.next] if self.next else [])]


def key_path(config_key_file: str, store_path: str | Path) -> Path:
    """``[enrollment] config_key_file``, else a file beside the state store (in the
    collector's own StateDirectory, the one place its unit may write)."""
    return Path(config_key_file) if config_key_file else Path(store_path).with_name(DEFAULT_NAME)


def next_path(path: Path) -> Path:
    return path.with_name(path.name + ".next")


def _raw(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _signing_key(private: Ed25519PrivateKey) -> SigningKey:
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return SigningKey(private, public)


def read_key(path: Path) -> SigningKey:
    """The private key in ``path``; ConfigError naming the file and what to do."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config signing key: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a config signing key (not text)") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("#")]
    try:
        raw = keyfile.raw_key(lines)
    except ValueError as exc:
        raise ConfigError(
            f"{path}: not a config signing key ({exc}); move it away and start the "
            "collector to make a new one (agents then need `commune-agent config-key fetch`)"
        ) from None
    if keyfile.restrict(path):
        log.warning("%s was readable by others: made 0600", path)
    return _signing_key(Ed25519PrivateKey.from_private_bytes(raw))


def create_key(path: Path) -> SigningKey:
    """A new key in ``path``, 0600, owned by the owner of its folder; FileExistsError if
    there is one already (two processes making it at once: one wins, the other reads
    it)."""
    key = _signing_key(Ed25519PrivateKey.generate())
    text = (
        f"# commune-collector config signing key {key.id} (Ed25519, private). Keep it 0600;\n"
        f"# its public half: {key.public_text}\n"
        f"{base64.b64encode(_raw(key.private)).decode()}\n"
    )
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        _owned_like_its_folder(partial)
        os.link(partial, path)  # never over an existing key
    finally:
        partial.unlink(missing_ok=True)
    return key


def _owned_like_its_folder(path: Path) -> None:
    """Made by root (``sudo commune-collector config-key rotate``) in the collector's
    StateDirectory, the key is given to that folder's owner: the service, which runs as
    that user, must read it."""
    if sys.platform == "win32" or os.geteuid() != 0:
        return
    folder = path.parent.stat()
    os.chown(path, folder.st_uid, folder.st_gid)


def load(path: Path, create: bool = False) -> ConfigKeys:
    """The current key (made when missing and ``create``) and the next one if any."""
    if create and not path.exists():
        try:
            created = create_key(path)
            log.info("made the config signing key %s in %s", created.id, path)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot make the config signing key there ({exc.strerror}): set "
                "[enrollment] config_key_file to a file in a folder the collector may write"
            ) from None
    current = read_key(path)
    following = next_path(path)
    return ConfigKeys(current, read_key(following) if following.exists() else None)


def rotate(path: Path) -> SigningKey:
    """Make the next key; ConfigError while a rotation is under way already."""
    load(path)
    try:
        return create_key(next_path(path))
    except FileExistsError:
        raise ConfigError(
            f"{next_path(path)}: a rotation is under way already: finish it "
            "(commune-collector config-key finish)"
        ) from None


def finish(path: Path) -> SigningKey:
    """The next key becomes the current one; ConfigError when there is none."""
    keys = load(path)
    if keys.next is None:
        raise ConfigError(
            f"{next_path(path)}: no rotation under way (commune-collector config-key rotate)"
        )
    os.replace(next_path(path), path)
    return keys.next


class KeyFiles:
    """The keys in use, read again when either file changes on disk (a rotation done with
    the command line while the collector runs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current = load(path, create=True)
        self.error = ""
        self._stamps = self._stat()

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in (self.path, next_path(self.path)):
            try:
                info = os.stat(path)
                stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
            except OSError:
                stamps.append((0, 0, 0))
        return tuple(stamps)

    def __call__(self) -> ConfigKeys:
        return self.current

    def reload_if_changed(self) -> bool:
        """True when the keys changed (and now sign)."""
        stamps = self._stat()
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            keys = load(self.path)
        except ConfigError as exc:
            self.error = str(exc)
            log.error("config signing keys not reloaded (the previous ones still sign): %s", exc)
            return False
        self.error = ""
        if keys.state == self.current.state:
            return False
        log.info("config signing keys now: %s (were %s)", keys.state, self.current.state)
        self.current = keys
        return True
