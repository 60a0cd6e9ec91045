"""Private Ed25519 keys kept as text files: one line of base64 (the raw 32 bytes) among
comment lines, readable by their owner alone. The config signing key and the release
keys are both kept so."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import sys
from pathlib import Path


def raw_key(lines: list[str]) -> bytes:
    """The 32 raw bytes from a key file's lines that are not comments (stripped, none
    empty); ValueError saying what is wrong."""
    if len(lines) != 1:
        raise ValueError("expected one line of base64")
    try:
        raw = base64.b64decode(lines[0], validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    if len(raw) != 32:
        raise ValueError(f"{len(raw)} bytes, not 32")
    return raw


def restrict(path: Path) -> bool:
    """Make a private key readable by others (copied by hand, unpacked from a backup)
    0600; whether it had to be. Windows: its folder's ACL decides, nothing to do."""
    if sys.platform == "win32":
        return False
    with contextlib.suppress(OSError):
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
            return True
    return False
