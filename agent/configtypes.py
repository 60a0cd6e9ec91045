"""Strict TOML config decoding, shared by the agent and the collector.

Value types (durations, sizes, secrets) are decoded by ``dec_hook`` so that
every error carries the key it came from; errors read ``<file>: <key>: <what
was expected>``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import msgspec

from agent.units import format_duration, parse_duration, parse_size
from agent.wire import IDENT_PATTERN


class Duration(float):
    """Seconds, written in config as 60, "60s", "10m", "72h" or "3d"."""

    def __repr__(self) -> str:
        return format_duration(self)


class Size(int):
    """Bytes, written in config as 1048576, "64MiB" or "500KB"."""


class Secret:
    """A value that must never be printed or logged: repr and str show ``<secret>``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "<secret>" if self._value else "''"

    __str__ = __repr__


def decode_hook(type_: type, value: Any) -> Any:
    if type_ is Duration:
        return Duration(parse_duration(value))
    if type_ is Size:
        return Size(parse_size(value))
    if type_ is Secret:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        return Secret(value)
    raise NotImplementedError(type_)


def encode_hook(value: Any) -> Any:
    """For printing a config back: durations spelled out, secrets hidden."""
    if isinstance(value, Secret):
        return repr(value)
    if isinstance(value, Duration):
        return format_duration(value)
    if isinstance(value, Size):
        return int(value)
    raise NotImplementedError(type(value))


class ConfigError(Exception):
    """A config that cannot be used; the message names the file and the key."""


T = TypeVar("T")

_MSGSPEC_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_FIELD_NAME = re.compile(r"field `(?P<field>[^`]+)`")


def _explain(error: msgspec.ValidationError) -> tuple[str, str]:
    """(key, message) from msgspec's "Expected `int`, got `str` - at `$.a.b[0]`"."""
    match = _MSGSPEC_PATH.match(str(error))
    assert match is not None
    message = match.group("message")
    key = (match.group("path") or "").lstrip(".")
    field = _FIELD_NAME.search(message)
    if message.startswith("Object contains unknown field") and field:
        return _join(key, field.group("field")), "unknown key"
    if message.startswith("Object missing required field") and field:
        return _join(key, field.group("field")), "required key is missing"
    message = message.replace("Invalid enum value", "expected one of the documented values, got")
    return key or "(top level)", message[0].lower() + message[1:]


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def convert_strict(data: dict[str, Any], type_: type[T], source: str) -> T:
    """Decode plain data into ``type_``; a problem raises ConfigError naming source and key."""
    try:
        return msgspec.convert(data, type_, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        key, message = _explain(exc)
        raise ConfigError(f"{source}: {key}: {message}") from None


_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def decode_text(data: bytes) -> str:
    """A text file as Windows tools write it: UTF-8 with or without a byte-order mark
    (Notepad, ``Set-Content -Encoding UTF8``) or UTF-16 with one (PowerShell 5.1's ``>``).
    UnicodeDecodeError for anything else."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding)
    return data.decode("utf-8")


def read_text_file(path: str | Path) -> str:
    return decode_text(Path(path).read_bytes())


def read_secret(path: str | Path) -> str:
    """A secret kept alone in a file (a password, a token): its first line, without the
    byte-order mark or the line break an editor adds. ValueError when it is empty."""
    try:
        text = read_text_file(path)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 or UTF-16 text") from None
    secret = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise ValueError(f"{path}: empty")
    return secret


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """TOML text, any failure a ConfigError naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib's answer to "a = [[[[...": thousands of levels
        raise ConfigError(f"{source}: nested too deeply") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        return parse_toml(read_text_file(path), str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not UTF-8 or UTF-16 text: save it as UTF-8 (with or without BOM)"
        ) from None


#: Config keys naming files or folders, by their last part: relative values are taken
#: from the config file's folder, not from wherever the process happens to run
#: (a Windows service starts in System32).
PATH_KEYS = frozenset(
    {"password_file", "ca_file", "cert_file", "key_file", "token_file", "secret_file",
     "urls_file", "state_dir", "clamav_db_dir", "secret_key_file"}
)  # fmt: skip


def resolve_paths(data: Any, base: Path, keys: frozenset[str] = PATH_KEYS) -> Any:
    """``data`` with every relative path under ``keys`` joined to ``base`` (nested tables
    and arrays of tables included); other values untouched."""
    if isinstance(data, dict):
        return {
            key: (
                str(base / value)
                if key in keys and isinstance(value, str) and value and not _absolute(value)
                else resolve_paths(value, base, keys)
            )
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [resolve_paths(item, base, keys) for item in data]
    return data


def _absolute(value: str) -> bool:
    # Either system's absolute forms: a config written for Windows read on Linux in tests.
    return Path(value).is_absolute() or bool(re.match(r"^([A-Za-z]:[\\/]|[\\/]{2})", value))


class ConfigProblem(ValueError):
    """A value that is well-typed but unusable; ``key`` names it within its table. Every
    section's ``validate()`` raises it; the loader adds the file and the section."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def readable(key: str, path: str) -> None:
    """ConfigProblem when ``path`` is set and cannot be read by this process."""
    if path and not os.access(path, os.R_OK):
        raise ConfigProblem(key, f"cannot read {path}")


class BrokerSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``[mqtt]`` keys the agent and the collector share; each adds its own."""

    url: str = "mqtt://127.0.0.1:1883"
    """mqtt://host:port or mqtts://host:port (TLS)."""
    username: str = ""
    password_file: str = ""
    """A file holding the password on one line (never in the config)."""
    ca_file: str = ""
    """CA bundle to verify the broker (mqtts); empty uses the system's CAs."""
    cert_file: str = ""
    """Client certificate, for brokers that authenticate clients by certificate."""
    key_file: str = ""
    topic_root: Annotated[str, msgspec.Meta(pattern=IDENT_PATTERN)] = "commune"
    keepalive: Duration = Duration(60)

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    def validate(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigProblem(
                "url", f"expected mqtt://host:port or mqtts://host:port, got {self.url!r}"
            )
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigProblem(
                "cert_file", "a client certificate needs both cert_file and key_file"
            )
        if (self.cert_file or self.ca_file) and not self.tls:
            raise ConfigProblem("url", "certificates are set but the url is not mqtts://")
        for key in ("password_file", "ca_file", "cert_file", "key_file"):
            readable(key, getattr(self, key))
        if self.password_file:
            try:
                read_secret(self.password_file)
            except (OSError, ValueError) as exc:
                raise ConfigProblem("password_file", str(exc)) from None

    def password(self) -> str:
        if not self.password_file:
            return ""
        return read_secret(self.password_file)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
