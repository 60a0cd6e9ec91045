"""Writing a restored file as root where another account may have planted links.

The collector's account can write its own folders (the store's, the releases', the
revocation list's): if a restore followed a link it planted there — at the temporary
file's name, at the target, at a folder on the way — root would write a secret where
that account chose, or give it a file it does not own. So a restore reaches the target
folder one component at a time without following links (``O_NOFOLLOW``), a link on the
way being followed only when root made it in a folder only root may write; missing
folders are made as it goes, with their parent's owner and mode; the file is made
under a fresh name with ``O_EXCL | O_NOFOLLOW``, given its owner and mode on its own
descriptor, synced, and renamed over the target inside the folder already opened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from pathlib import Path

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Links followed on one path, at most (a loop is refused).
_MAX_HOPS = 16
_CHUNK = 1024 * 1024


class UnsafePath(Exception):
    """The target cannot be reached without trusting a link someone else could make."""


def _trusted_link(name: str, folder_fd: int) -> bool:
    link = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    folder = os.fstat(folder_fd)
    # root's link, in a folder only root may change: not an account's plant.
    return link.st_uid == 0 and folder.st_uid == 0 and not folder.st_mode & 0o022


def open_folder(path: Path, create: bool = False) -> int:
    """A descriptor of the folder ``path`` (absolute), reached without an untrusted link;
    with ``create``, missing folders made on the way."""
    parts = list(Path(path).absolute().parts[1:])
    fd = os.open("/", _DIRECTORY)
    hops = 0
    try:
        while parts:
            name = parts.pop(0)
            try:
                following = os.open(name, _DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                following = _make(name, fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    raise UnsafePath(f"{path}: {name} is not a folder") from None
                if not _trusted_link(name, fd) or hops >= _MAX_HOPS:
                    raise UnsafePath(
                        f"{path}: {name} is a link another account could have made (owner "
                        f"uid {info.st_uid}): refused; replace it with the folder itself"
                    ) from None
                hops += 1
                target = Path(os.readlink(name, dir_fd=fd))
                if target.is_absolute():
                    os.close(fd)
                    fd = os.open("/", _DIRECTORY)
                    parts = list(target.parts[1:]) + parts
                else:
                    parts = list(target.parts) + parts
                continue
            os.close(fd)
            fd = following
        return fd
    except BaseException:
        os.close(fd)
        raise


def check_reachable(folder: Path) -> None:
    """UnsafePath when the existing part of ``folder``'s path holds an untrusted link (a
    missing part is fine: ``write`` makes it). A restore asks this of every target
    before it writes the first file."""
    path = Path(folder).absolute()
    while True:
        try:
            os.close(open_folder(path))
            return
        except (FileNotFoundError, NotADirectoryError):
            if path.parent == path:
                return
            path = path.parent


def open_file(path: Path) -> int:
    """A descriptor of the regular file ``path`` for reading, reached as ``open_folder``
    reaches folders: a link (certbot's ``live/``, say) followed only when root made it in
    a folder only root may change; never a FIFO or a device (``O_NONBLOCK``, then
    checked)."""
    current = Path(path).absolute()
    for _ in range(_MAX_HOPS):
        folder = open_folder(current.parent)
        try:
            try:
                fd = os.open(
                    current.name,
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                    dir_fd=folder,
                )
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                if not _trusted_link(current.name, folder):
                    raise UnsafePath(
                        f"{path} is a link another account could have made: refused"
                    ) from None
                current = Path(
                    os.path.normpath(current.parent / os.readlink(current.name, dir_fd=folder))
                )
                continue
        finally:
            os.close(folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafePath(f"{path} is not a regular file: refused")
        return fd
    raise UnsafePath(f"{path}: too many links")


def _make(name: str, parent_fd: int) -> int:
    """A folder made in ``parent_fd`` with its parent's owner, group and mode."""
    parent = os.fstat(parent_fd)
    os.mkdir(name, 0o700, dir_fd=parent_fd)
    fd = os.open(name, _DIRECTORY, dir_fd=parent_fd)
    if os.geteuid() == 0:
        os.fchown(fd, parent.st_uid, parent.st_gid)
    os.fchmod(fd, parent.st_mode & 0o777 & ~stat.S_ISGID)
    return fd


def existing(folder_fd: int, name: str) -> os.stat_result | None:
    """The regular file at ``name`` in the folder (not a link's target); None otherwise."""
    try:
        info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def write(
    source: Path,
    target: Path,
    mode: int,
    owner: tuple[int, int] | None,
    stale: tuple[str, ...] = (),
) -> None:
    """``source``'s bytes at ``target`` (in a folder made if missing), ``mode`` and, as
    root, ``owner``, atomically. ``stale``: names in the target's folder removed just
    before the rename (the store's old -wal and -shm, never replayed into the new one)."""
    folder = open_folder(target.parent, create=True)
    temporary = f".{target.name}.restoring-{secrets.token_hex(6)}"
    try:
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=folder,
        )
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as data:
                shutil.copyfileobj(data, out, _CHUNK)
                out.flush()
                if owner is not None:
                    os.fchown(out.fileno(), *owner)
                os.fchmod(out.fileno(), mode)
                os.fsync(out.fileno())
            for name in stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=folder)
            os.replace(temporary, target.name, src_dir_fd=folder, dst_dir_fd=folder)
            os.fsync(folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=folder)
            raise
    finally:
        os.close(folder)
