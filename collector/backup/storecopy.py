"""The state store copied consistently while the collector writes it, and whether a
process has it open.

The copy uses SQLite's online backup API from a read connection of its own: in WAL
mode a reader sees one committed state and never holds up the collector's writes (a
plain copy of the file would miss what is still in the -wal, or tear a page).

A process with the store open holds a shared lock on the "dead man switch" byte of
its -shm file for as long as it has it open (SQLite's unix VFS), so ``holder`` can
name the process (a running collector) without opening the store or disturbing it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import struct
import sys
from pathlib import Path

from collector.state import migrations

#: The byte of the -shm file every connection holds a read lock on (sqlite3's os_unix.c:
#: UNIX_SHM_BASE 120 + SQLITE_SHM_NLOCK 8).
_SHM_DMS_BYTE = 128


class StoreCopyError(Exception):
    """The store could not be copied, or the copy is not sound; the message says why."""


def copy_store(source: Path, destination: Path) -> int:
    """A consistent copy of ``source`` at ``destination`` (a new file, rollback-journal
    mode: one self-contained file), checked; its schema version."""
    if not source.is_file():
        raise StoreCopyError(f"no state store at {source}")
    try:
        with (
            contextlib.closing(
                sqlite3.connect(source.absolute().as_uri() + "?mode=ro", uri=True, timeout=30)
            ) as reader,
            contextlib.closing(sqlite3.connect(destination)) as copy,
        ):
            # One step (pages=-1): one read transaction, one committed state.
            reader.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode=DELETE")
            problems = [row[0] for row in copy.execute("PRAGMA integrity_check")]
            schema = migrations.version(copy)
    except sqlite3.Error as exc:
        raise StoreCopyError(f"cannot copy the state store {source}: {exc}") from None
    if problems != ["ok"]:
        raise StoreCopyError(
            f"the copy of {source} fails its integrity check: {'; '.join(problems[:5])}"
        )
    return schema


def schema_of(path: Path) -> int:
    """The schema version (``PRAGMA user_version``) of a store file; StoreCopyError when
    it is not a SQLite database."""
    try:
        with contextlib.closing(
            sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
        ) as db:
            return migrations.version(db)
    except sqlite3.Error as exc:
        raise StoreCopyError(f"{path} is not a state store: {exc}") from None


def holder(store: Path) -> int | None:
    """The id of a process that has ``store`` open (None: none has). Linux's lock
    records; elsewhere None (the caller's other checks and --force decide)."""
    shm = Path(f"{store}-shm")
    if not sys.platform.startswith("linux"):
        return None
    try:
        fd = os.open(shm, os.O_RDONLY)
    except FileNotFoundError:
        return None  # no process has ever had it open since the last one closed it
    try:
        # struct flock on Linux (64-bit off_t): l_type, l_whence, l_start, l_len, l_pid.
        asked = struct.pack("hh4xqqi4x", fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS_BYTE, 1, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, asked)
    finally:
        os.close(fd)
    kind, _, _, _, pid = struct.unpack("hh4xqqi4x", answer)
    return None if kind == fcntl.F_UNLCK else int(pid)
