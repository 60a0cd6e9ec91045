"""The collector's config signing keys, as this agent knows them, and checking a signature.

The keys are Ed25519 public keys, written one per line in base64 (as WireGuard writes
its keys) in ``config-key.pub`` beside agent.toml: ``commune-agent enroll`` writes it
from the collector's answer, ``commune-agent config-key fetch`` from the collector's
public ``GET /api/v1/config-keys`` over the same verified HTTPS. That file is the
anchor; the keys trusted after a rotation are kept with the last config applied
(``agent.central``). A signature is checked in a process of its own (agent/sigcheck.py):
the ``cryptography`` package it needs never stays loaded in the agent.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from agent.configtypes import ConfigError, read_text_file
from agent.sigcheck import INVALID, SIGNATURE_BYTES, answer
from agent.wire import PUBLIC_KEY, SignedConfig, WireError, config_key_id, signed_message

KEY_FILE = "config-key.pub"
#: A signature check takes a fraction of a second; a PC busy with an update or a scan
#: may take longer, and a config that waits is better than one refused.
SIGCHECK_TIMEOUT_S = 60.0


def decode_public_key(text: str) -> bytes:
    """A public key's 32 bytes from its base64; ValueError for anything else."""
    if not re.fullmatch(PUBLIC_KEY, text):
        raise ValueError("not an Ed25519 public key (44 characters of base64)")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None


def encode_public_key(public: bytes) -> str:
    return base64.b64encode(public).decode()


def parse_key_file(text: str, source: str) -> dict[str, bytes]:
    """Key id → public key, from the lines of a key file ('#' starts a comment)."""
    keys: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        try:
            public = decode_public_key(value)
        except ValueError as exc:
            raise ConfigError(f"{source}: line {number}: {exc}") from None
        keys[config_key_id(public)] = public
    return keys


def read_key_file(path: Path) -> dict[str, bytes]:
    """The keys of ``path``; none when it does not exist; ConfigError naming the file
    and the line when it cannot be read or holds something that is not a key."""
    try:
        text = read_text_file(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 or UTF-16 text") from None
    return parse_key_file(text, str(path))


def key_file_text(keys: list[bytes], origin: str) -> str:
    lines = [
        "# The collector's config signing keys (Ed25519, public halves): this agent runs",
        f"# only configs signed by one of them. From {origin}.",
    ]
    return "\n".join([*lines, *(encode_public_key(k) for k in keys), ""])


def write_key_file(path: Path, keys: list[bytes], origin: str) -> None:
    """Written whole then renamed into place; public, so readable by the service user."""
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key_file_text(keys, origin))
    if sys.platform != "win32":
        os.chmod(partial, 0o644)  # whatever the umask
    os.replace(partial, path)


def describe(keys: Mapping[str, bytes]) -> str:
    return ", ".join(sorted(keys)) or "none"


def verify(signed: SignedConfig, trusted: Mapping[str, bytes]) -> bytes:
    """The signed config's bytes once its signature is checked with the key it names;
    WireError ``untrusted_key``, ``bad_signature`` or ``unchecked_signature`` otherwise."""
    public = trusted.get(signed.key)
    if public is None:
        raise WireError(
            "untrusted_key",
            f"signed by key {signed.key}, which this agent does not trust "
            f"(it trusts {describe(trusted)})",
        )
    # Keys are read as 32 bytes (decode_public_key); an Ed25519 signature has 64.
    message = public + signed.sig + signed_message(signed.config)
    if len(signed.sig) != SIGNATURE_BYTES or _check_in_a_process(message) == INVALID:
        raise WireError(
            "bad_signature",
            f"the signature does not verify with key {signed.key}: the config was changed "
            "after it was signed, or another key signed it",
        )
    return signed.config


def _check_in_a_process(data: bytes) -> int:
    """agent/sigcheck.py's exit code for ``data``; WireError ``unchecked_signature`` when it
    gave no verdict (a config is never run on a check that did not happen)."""
    import subprocess  # here: an agent that is sent no config never loads it (0.3 MB)

    try:
        done = subprocess.run(
            # -P: the working folder is not put first on the path, so that no
            # agent/sigcheck.py planted there answers in its place.
            [sys.executable, "-P", "-m", "agent.sigcheck"],
            input=data,
            capture_output=True,
            timeout=SIGCHECK_TIMEOUT_S,
            check=False,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WireError("unchecked_signature", f"cannot check the signature: {exc}") from None
    if done.returncode == 0 and done.stdout.strip() != answer(data):
        raise WireError(
            "unchecked_signature",
            "cannot check the signature: the check answered without its verdict on this config",
        )
    if done.returncode not in (0, INVALID):
        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no reason"]
        raise WireError(
            "unchecked_signature",
            f"cannot check the signature (exit {done.returncode}): {why[0][:300]}",
        )
    return done.returncode
