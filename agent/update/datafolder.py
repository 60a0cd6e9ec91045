"""The agent's config folder made the PC's own before the installer's setup step uses it.

``C:\\ProgramData\\commune-agent`` holds the agent's config, its password or key and its
``local.toml``, whose local-only keys run programs as SYSTEM. ProgramData lets every
user create a folder, so whatever stands at that name before the setup step may be a
user's: a folder they own, a junction to a folder they own, a ``local.toml`` they
planted, a handle they keep open on a file about to hold a secret. The setup step
(``msi_setup``, as SYSTEM) therefore keeps only a real folder whose every entry is owned
by SYSTEM or the Administrators and is no link; anything else is moved aside whole
(``os.replace`` renames a link itself, never its target), and the folder is made anew in
one call with its private ACL already on (``CreateDirectory`` with a security
descriptor: no moment in which it inherits ProgramData's "users may create files").
A folder it keeps is restricted first, then owned by SYSTEM down the tree without
following links (``icacls /L``). Nothing is ever reset to inherited entries.

The operating system's parts are a ``Platform`` (Windows: pywin32 in the runtime and
``icacls.exe``); the logic is the same everywhere, and tested with real links.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: SYSTEM and the Administrators: the only owners of what the setup step keeps.
TRUSTED_OWNERS: Final = frozenset({"S-1-5-18", "S-1-5-32-544"})
#: Protected (no inherited entries), full control to SYSTEM and the Administrators,
#: inherited by everything below.
PRIVATE_SDDL: Final = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
ERROR_ALREADY_EXISTS: Final = 183
#: No console window for a child of a windowless (pythonw) SYSTEM process.
NO_WINDOW: Final = getattr(subprocess, "CREATE_NO_WINDOW", 0)


class Untrusted(Exception):
    """The folder cannot be made the PC's own; the message says why and what to do."""


@dataclass(frozen=True)
class Platform:
    """The Windows calls the data folder's checks make, passed in to be tested anywhere."""

    owner_of: Callable[[Path], str]
    """The owner's SID of a path (never called on a link)."""
    is_link: Callable[[Path], bool]
    """A symbolic link, a junction or any other reparse point."""
    make_private: Callable[[Path], None]
    """Create the folder with ``PRIVATE_SDDL`` on at creation; FileExistsError if taken."""
    run: Callable[[list[str]], int]
    system_root: str = r"C:\Windows"


def secure(folder: Path, platform: Platform, log: Callable[[str], None]) -> None:
    """After it: ``folder`` is a real folder, owned by SYSTEM or the Administrators as is
    everything in it, with the private ACL. Untrusted otherwise."""
    if os.path.lexists(folder):
        why = untrusted(folder, platform)
        if not why:
            _restrict(folder, platform)
            return
        aside = _move_aside(folder)
        log(f"{folder} {why}: moved aside to {aside.name}; made anew")
    try:
        platform.make_private(folder)
    except FileExistsError:
        raise Untrusted(
            f"{folder} was made again by someone else while the installer ran: find who "
            "(a program or a user creating it), then run the installer again"
        ) from None
    except OSError as exc:
        raise Untrusted(f"{folder} could not be made: {exc}") from exc


def untrusted(folder: Path, platform: Platform) -> str:
    """Why ``folder`` may not be kept ("" when it may)."""
    try:
        if platform.is_link(folder) or not folder.is_dir():
            return "is a link or not a folder"
        owner = platform.owner_of(folder)
        if owner not in TRUSTED_OWNERS:
            return f"is owned by {owner or 'nobody known'}"
        for parent, folders, files in os.walk(folder, onerror=_raise, followlinks=False):
            for name in (*folders, *files):
                path = Path(parent) / name
                if platform.is_link(path):
                    return f"holds a link ({path.relative_to(folder)})"
                owner = platform.owner_of(path)
                if owner not in TRUSTED_OWNERS:
                    return f"holds {path.relative_to(folder)}, owned by {owner or 'nobody known'}"
    except OSError as exc:  # an ACL that denies SYSTEM its reading: not the PC's folder
        return f"cannot be read ({exc.strerror or exc})"
    return ""


def _raise(error: OSError) -> None:
    raise error


def _move_aside(folder: Path) -> Path:
    # Not guessable in advance: a folder made at the expected name cannot block it.
    stamp = time.strftime("%Y%m%d%H%M%S")
    aside = folder.with_name(f"{folder.name}.untrusted-{stamp}-{secrets.token_hex(4)}")
    try:
        os.replace(folder, aside)
    except OSError as exc:
        raise Untrusted(
            f"{folder} is not the PC's own and could not be moved aside ({exc.strerror or exc}"
            "; a program may hold a file in it open): restart the PC, then install again"
        ) from exc
    return aside


def _restrict(folder: Path, platform: Platform) -> None:
    """Private first (no moment with looser entries), then SYSTEM the owner of everything
    below, links themselves and not their targets (there are none: ``untrusted``)."""
    icacls = f"{platform.system_root.rstrip(chr(92))}\\System32\\icacls.exe"
    commands = [
        [icacls, str(folder), "/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F",
         "*S-1-5-32-544:(OI)(CI)F", "/Q"],
        [icacls, str(folder), "/setowner", "*S-1-5-18", "/T", "/C", "/L", "/Q"],
    ]  # fmt: skip
    for command in commands:
        try:
            code = platform.run(command)
        except (OSError, subprocess.SubprocessError) as exc:
            raise Untrusted(f"could not restrict {folder}: {exc}") from exc
        if code != 0:
            raise Untrusted(f"could not restrict {folder}: icacls {command[2]} exit {code}")


def run_hidden(command: list[str]) -> int:
    return subprocess.run(
        command, capture_output=True, timeout=120, check=False, creationflags=NO_WINDOW
    ).returncode


def windows() -> Platform:  # pragma: no cover (Windows: pywin32 in the runtime)
    import pywintypes  # type: ignore[import-not-found,import-untyped,unused-ignore]
    import win32file  # type: ignore[import-not-found,import-untyped,unused-ignore]
    import win32security  # type: ignore[import-not-found,import-untyped,unused-ignore]

    def owner_of(path: Path) -> str:
        descriptor = win32security.GetFileSecurity(
            str(path), win32security.OWNER_SECURITY_INFORMATION
        )
        owner = descriptor.GetSecurityDescriptorOwner()
        return str(win32security.ConvertSidToStringSid(owner))

    def is_link(path: Path) -> bool:
        attributes = getattr(os.lstat(path), "st_file_attributes", 0)
        return bool(attributes & stat.FILE_ATTRIBUTE_REPARSE_POINT)

    def make_private(path: Path) -> None:
        attributes = win32security.SECURITY_ATTRIBUTES()
        attributes.SECURITY_DESCRIPTOR = (
            win32security.ConvertStringSecurityDescriptorToSecurityDescriptor(
                PRIVATE_SDDL, win32security.SDDL_REVISION_1
            )
        )
        try:
            win32file.CreateDirectory(str(path), attributes)
        except pywintypes.error as exc:
            if exc.winerror == ERROR_ALREADY_EXISTS:
                raise FileExistsError(str(path)) from None
            raise OSError(exc.winerror, exc.strerror, str(path)) from None

    return Platform(
        owner_of, is_link, make_private, run_hidden, os.environ.get("SYSTEMROOT", r"C:\Windows")
    )
