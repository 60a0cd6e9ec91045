"""Installing a commune-monitor program as a systemd service: the unit, its user, checks.

Shared by the agent and the collector (standard library only). The unit runs exactly
the installation that was asked to install it: the interpreter of this process as
it was invoked (``sys.executable``, not resolved: resolving a venv's ``python3``
follows its symlink out of the venv, to an interpreter without our packages), or
the console script beside it. Before anything is written, what the service user
must read (the program, its packages, the config and every file it names) and
write (its state directory) is checked as that user would meet it, and each
problem is said in words.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


class InstallError(Exception):
    """What stands in the way, one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Service:
    """A systemd service of the project: its unit and the names it goes by."""

    name: str
    """The unit's name, the console script's name and the system user's."""
    module: str
    """``python -m`` entry point, when the console script is not beside the interpreter."""
    description: str
    unit_body: str
    """The [Unit], [Service] and [Install] sections, with {exec_start}, {user} and
    {read_write} (extra writable paths) to fill."""
    state_dir: Path
    """Where systemd's StateDirectory= puts the service's state."""


def invoked_command(service: Service) -> list[str]:
    """How to run the installation this process belongs to."""
    interpreter = Path(sys.executable).absolute()  # not resolve(): stay in the venv
    script = interpreter.parent / service.name
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(interpreter), "-m", service.module]


def render(
    service: Service, command: Sequence[str], config: Path, writable: Iterable[Path] = ()
) -> str:
    exec_start = " ".join(shlex.quote(p) for p in (*command, "run", "--config", str(config)))
    extra = sorted({str(p) for p in writable})
    read_write = f"ReadWritePaths={' '.join(extra)}\n" if extra else ""
    return service.unit_body.format(exec_start=exec_start, user=service.name, read_write=read_write)


@dataclass(frozen=True)
class Account:
    """Who the service runs as: its uid and groups, for permission checks."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def of(cls, name: str) -> Account | None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(name, entry.pw_uid, frozenset(groups))

    @classmethod
    def nobody_yet(cls, name: str) -> Account:
        """A user about to be created: in no group that exists today but its own."""
        return cls(name, -1, frozenset({-1}))


def _allows(info: os.stat_result, who: Account, want: int) -> bool:
    """POSIX permission bits (``want``: 4 read, 2 write, 1 execute) for ``who``."""
    if who.uid == 0:
        return True
    if info.st_uid == who.uid:
        bits = (info.st_mode >> 6) & 7
    elif info.st_gid in who.gids:
        bits = (info.st_mode >> 3) & 7
    else:
        bits = info.st_mode & 7
    return bits & want == want


def access_problem(path: Path, who: Account, want: int) -> str:
    """Why ``who`` cannot reach ``path`` with ``want`` (every folder above it needs x);
    "" when it can. Symbolic links are followed, as the service would."""
    target = Path(os.path.realpath(path))
    for folder in reversed(target.parents):
        try:
            info = folder.stat()
        except OSError as exc:
            return f"{folder}: {exc.strerror}"
        if not _allows(info, who, 1):
            return f"{who.name} cannot enter {folder} ({stat.filemode(info.st_mode)})"
    try:
        info = target.stat()
    except FileNotFoundError:
        return f"{target} does not exist"
    except OSError as exc:
        return f"{target}: {exc.strerror}"
    if stat.S_ISDIR(info.st_mode):
        want |= 1
    if not _allows(info, who, want):
        needs = {4: "read", 2: "write", 5: "read", 6: "write", 7: "write"}.get(want, "use")
        owner = f"{_user(info.st_uid)}:{_group(info.st_gid)}"
        return f"{who.name} cannot {needs} {target} ({stat.filemode(info.st_mode)} {owner})"
    return ""


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def problems(
    who: Account,
    command: Sequence[str],
    package: Path,
    reads: Iterable[Path],
    writes: Iterable[Path],
) -> list[str]:
    """Everything the service user could not do that the service will need."""
    found: list[str] = []
    program = Path(command[0])
    found.append(access_problem(program, who, 5))
    found.append(access_problem(Path(os.path.realpath(program)), who, 5))
    found.append(access_problem(package, who, 5))
    for path in reads:
        found.append(access_problem(path, who, 4))
    for path in writes:
        existing = next((p for p in (path, *path.parents) if p.exists()), path)
        found.append(access_problem(existing, who, 2 | 1 if existing.is_dir() else 2))
    return list(dict.fromkeys(p for p in found if p))


def preview(
    service: Service,
    config: Path,
    check: Callable[[Account], list[str]],
    secrets: Iterable[Path] = (),
) -> list[str]:
    """What would stand in the way, for ``--print``: as the service user if it exists,
    else as a user about to be created. The config itself, and its ``secrets``, are
    given to the service's group by a real install: not a problem yet."""
    who = Account.of(service.name) or Account.nobody_yet(service.name)
    given = [f"{who.name} cannot read {path.resolve()}" for path in (config, *secrets)]
    return [p for p in check(who) if not any(p.startswith(mine) for mine in given)]


def install(
    service: Service,
    config: Path,
    unit_text: str,
    check: Callable[[Account], list[str]],
    unit_dir: Path,
    start: bool,
    secrets: Iterable[Path] = (),
) -> list[str]:
    """Create the service user, give it the config and its ``secrets`` (the files
    beside it that enrollment wrote: the broker password, the key), check what it must
    read and write (InstallError naming every problem), write the unit, enable and
    start it; returns what was done."""
    done: list[str] = []
    if create_user(service.name):
        done.append(f"created system user {service.name}")
    share_with(config, service.name)
    done.append(f"{config}: group {service.name}, mode 0640 (it may name secrets)")
    for secret in secrets:
        if secret.is_file():
            share_with(secret, service.name)
            done.append(f"{secret}: group {service.name}, mode 0640")
    who = Account.of(service.name)
    if who is None:
        raise InstallError([f"the user {service.name} could not be created"])
    found = check(who)
    if found:
        raise InstallError(found)
    path = unit_dir / f"{service.name}.service"
    path.write_text(unit_text, encoding="utf-8")
    path.chmod(0o644)
    done.append(f"wrote {path}")
    if start:
        enable(service.name)
        done.append(f"enabled and started {service.name}")
    return done


def create_user(name: str) -> bool:
    """A system user without a home or a shell; False when it exists already."""
    if subprocess.run(["id", name], capture_output=True, check=False).returncode == 0:
        return False
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
    )
    return True


def share_with(path: Path, group: str) -> None:
    """The config readable by the service's group only: it may hold secrets' paths."""
    shutil.chown(path, group=group)
    path.chmod(0o640)


def enable(name: str) -> None:
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "enable", "--now", name], check=True)
