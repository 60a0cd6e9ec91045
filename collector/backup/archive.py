"""The backup archive: a gzip'd tar of ``manifest.json`` and one member per file.

Members are named ``files/NNNN``; the manifest says each one's role, the path it came
from, its size, SHA-256, mode and owner. Nothing in an archive is trusted until it
matches its manifest: a restore maps members by role (``places.target``), never by a
stored path, and refuses the whole archive, by name, for a member that is a link, a
folder, an absolute or '..' name, unknown to the manifest, missing, or whose bytes
differ from it.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import socket
import tarfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from collector.backup import safewrite

FORMAT = 1
MANIFEST = "manifest.json"
_MEMBER = re.compile(r"files/[0-9]{4,6}")
_CHUNK = 1024 * 1024
#: A file that keeps changing while read is given up on after this many reads.
_READS = 3
#: The manifest of even a large province is far below this.
_MAX_MANIFEST = 64 * 1024**2
#: Members of one archive, at most (a province's files are a few thousand).
_MAX_MEMBERS = 200_000
#: A pax header (only a member over 8 GiB gets one from ``backup``), at most.
_MAX_PAX = 1024
#: Room kept free where an archive is unpacked.
_SPARE = 64 * 1024**2


class _PlainTarInfo(tarfile.TarInfo):
    """Only what ``backup`` writes: plain files and small pax headers. A GNU long name
    or sparse header, read whole by tarfile before any check of ours, could take
    gigabytes of memory from a small archive; refused as the header is read."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.XHDTYPE and self.size <= _MAX_PAX:
            return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]
        if self.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise tarfile.HeaderError(f"member type {self.type!r} is not a plain file")
        return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]


class ArchiveError(Exception):
    """A backup or an archive that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class Entry:
    role: str
    member: str
    source: str
    size: int
    sha256: str
    mode: int
    owner: str = ""
    group: str = ""


@dataclass
class Manifest:
    collector_version: str
    store_schema: int
    created: str
    host: str = ""
    format: int = FORMAT
    entries: list[Entry] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)
    """Files the config names that were not there: {"role", "path"}."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False).encode() + b"\n"

    @staticmethod
    def from_json(raw: bytes, archive: Path) -> Manifest:
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, this collector reads {FORMAT}")
            entries = [_entry(entry) for entry in data.pop("entries")]
            manifest = Manifest(**data, entries=entries)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ArchiveError(f"{archive}: {MANIFEST} is not a backup manifest ({exc})") from None
        for entry in manifest.entries:
            if not _MEMBER.fullmatch(entry.member) or not isinstance(entry.size, int):
                raise ArchiveError(f"{archive}: {MANIFEST} names member {entry.member!r}: refused")
        return manifest


def _entry(raw: dict[str, object]) -> Entry:
    """One manifest entry, each field of its type: a restore verifies everything before
    it writes anything, so a wrong type is a refusal here, not a crash halfway."""
    entry = Entry(**raw)  # type: ignore[arg-type]
    texts = (entry.role, entry.member, entry.source, entry.sha256, entry.owner, entry.group)
    numbers = (entry.size, entry.mode)
    if not all(isinstance(text, str) for text in texts):
        raise TypeError(f"{entry.member!r}: a text field is not text")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise TypeError(f"{entry.member!r}: size and mode must be whole numbers")
    if entry.mode > 0o7777 or not re.fullmatch(r"[0-9a-f]{64}", entry.sha256):
        raise TypeError(f"{entry.member!r}: mode or sha256 out of range")
    return entry


def _names(st: os.stat_result) -> tuple[str, str]:
    owner = group = ""
    with contextlib.suppress(KeyError):
        owner = pwd.getpwuid(st.st_uid).pw_name
    with contextlib.suppress(KeyError):
        group = grp.getgrgid(st.st_gid).gr_name
    return owner, group


def snapshot(source: Path, copy: Path) -> tuple[int, str, os.stat_result]:
    """``source`` copied to ``copy`` (size, SHA-256, its stat); ArchiveError when it
    keeps changing while read (its size, time or inode differ before and after)."""
    for _ in range(_READS):
        try:
            fd = safewrite.open_file(source)
        except safewrite.UnsafePath as exc:
            raise ArchiveError(str(exc)) from None
        with os.fdopen(fd, "rb") as reading, copy.open("wb") as writing:
            before = os.fstat(reading.fileno())
            digest, size = hashlib.sha256(), 0
            while chunk := reading.read(_CHUNK):
                digest.update(chunk)
                writing.write(chunk)
                size += len(chunk)
            after = os.fstat(reading.fileno())
        same = (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (
            after.st_size, after.st_mtime_ns, after.st_ctime_ns,
        )  # fmt: skip
        if same and size == after.st_size:
            return size, digest.hexdigest(), before
    raise ArchiveError(f"{source} changed while it was read ({_READS} tries): back up again")


def entry_for(
    role: str, index: int, source: Path, copied: tuple[int, str, os.stat_result]
) -> Entry:
    """The manifest's entry for a file ``snapshot`` copied from ``source``."""
    size, sha256, st = copied
    owner, group = _names(st)
    return Entry(role, f"files/{index:04d}", str(source), size, sha256, st.st_mode & 0o777,
                 owner, group)  # fmt: skip


def write(archive: Path, manifest: Manifest, copies: dict[str, Path]) -> None:
    """The archive at ``archive``, 0600, whole or not at all: written under a temporary
    name in the same folder, renamed at the end. ``copies``: member name -> file."""
    partial = archive.with_name(f".{archive.name}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add(tar, MANIFEST, io.BytesIO(manifest.to_json()), len(manifest.to_json()))
            for entry in manifest.entries:
                with copies[entry.member].open("rb") as data:
                    _add(tar, entry.member, data, entry.size)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, archive)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        if exc.errno == errno.ENOSPC:
            raise ArchiveError(f"no space left in {archive.parent}: nothing written") from None
        raise ArchiveError(f"cannot write {archive}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def _add(tar: tarfile.TarFile, name: str, data: BinaryIO, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(time.time())
    tar.addfile(info, data)


def new_manifest(version: str, schema: int) -> Manifest:
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return Manifest(version, schema, created, host=socket.gethostname())


@dataclass
class Verified:
    """An archive whose every member matched its manifest, unpacked in ``folder``."""

    archive: Path
    manifest: Manifest
    folder: Path

    def file(self, entry: Entry) -> Path:
        return self.folder / entry.member


def verify(archive: Path, folder: Path) -> Verified:
    """Every member checked against the manifest and unpacked into ``folder`` (a private,
    empty folder); ArchiveError naming the archive and the member otherwise."""
    unpacked: dict[str, tuple[int, str]] = {}
    manifest_raw: bytes | None = None
    sizes: dict[str, int] | None = None
    try:
        with tarfile.open(archive, mode="r:gz", tarinfo=_PlainTarInfo) as tar:
            for member in _members(tar, archive):
                if sizes is None and member.name != MANIFEST:
                    # The manifest comes first (``write`` puts it there): every member is
                    # then refused or admitted by it before a byte of it is unpacked.
                    raise ArchiveError(f"{archive}: {MANIFEST} is not the first member: refused")
                if member.name == MANIFEST:
                    if member.size > _MAX_MANIFEST:
                        raise ArchiveError(f"{archive}: {MANIFEST} is too large: refused")
                    manifest_raw = _read(tar, member, archive).read()
                    sizes = {
                        e.member: e.size for e in Manifest.from_json(manifest_raw, archive).entries
                    }
                    continue
                if sizes is not None and member.name not in sizes:
                    raise ArchiveError(
                        f"{archive}: member {member.name} is not in the manifest: refused"
                    )
                if len(unpacked) >= _MAX_MEMBERS:
                    raise ArchiveError(f"{archive}: over {_MAX_MEMBERS} members: refused")
                if shutil.disk_usage(folder).free < member.size + _SPARE:
                    raise ArchiveError(
                        f"{archive}: no room to check {member.name} ({member.size} bytes) in "
                        f"{folder}: free some space (or set TMPDIR) and run again"
                    )
                if sizes is not None and sizes.get(member.name) not in (None, member.size):
                    # Refused before its bytes are unpacked: no member larger than announced.
                    raise ArchiveError(
                        f"{archive}: {member.name} is {member.size} bytes, the manifest says "
                        f"{sizes[member.name]}: changed or damaged"
                    )
                unpacked[member.name] = _unpack(_read(tar, member, archive), folder / member.name)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveError(
            f"{archive}: not a whole backup archive ({exc}): truncated or damaged"
        ) from None
    if manifest_raw is None:
        raise ArchiveError(f"{archive}: no {MANIFEST}: not a backup archive")
    manifest = Manifest.from_json(manifest_raw, archive)
    named = {entry.member: entry for entry in manifest.entries}
    if len(named) != len(manifest.entries):
        raise ArchiveError(f"{archive}: {MANIFEST} names a member twice: refused")
    for name in unpacked:
        if name not in named:
            raise ArchiveError(f"{archive}: member {name} is not in the manifest: refused")
    for entry in manifest.entries:
        got = unpacked.get(entry.member)
        if got is None:
            raise ArchiveError(
                f"{archive}: {entry.member} ({entry.role}) is missing: truncated archive"
            )
        if got != (entry.size, entry.sha256):
            raise ArchiveError(
                f"{archive}: {entry.member} ({entry.role}) does not match the manifest "
                f"(size {got[0]}, expected {entry.size}; or its SHA-256): changed or damaged"
            )
    return Verified(archive, manifest, folder)


def _members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    seen: set[str] = set()
    for member in tar:
        name = member.name
        if name.startswith("/") or ".." in name.split("/") or "\\" in name:
            raise ArchiveError(f"{archive}: member {name!r} has an unsafe path: refused")
        if not member.isreg():
            raise ArchiveError(f"{archive}: member {name!r} is not a regular file: refused")
        if name != MANIFEST and not _MEMBER.fullmatch(name):
            raise ArchiveError(f"{archive}: member {name!r} is not a backup member: refused")
        if name in seen:
            raise ArchiveError(f"{archive}: member {name!r} appears twice: refused")
        seen.add(name)
        yield member


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> IO[bytes]:
    data = tar.extractfile(member)
    if data is None:
        raise ArchiveError(f"{archive}: member {member.name!r} cannot be read")
    return data


def _unpack(data: IO[bytes], path: Path) -> tuple[int, str]:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := data.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def owner_ids(entry: Entry) -> tuple[int, int] | None:
    """The uid and gid of the entry's owner and group on this host (None: unknown here)."""
    try:
        return pwd.getpwnam(entry.owner).pw_uid, grp.getgrnam(entry.group).gr_gid
    except KeyError:
        return None
