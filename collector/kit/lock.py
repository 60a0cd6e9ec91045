"""The Windows lock: the agent's runtime dependencies for win_amd64, pinned, with the
SHA-256 of every wheel that fits CPython 3.11 to 3.14, and no environment markers.

pip evaluates markers for the host it runs on, not for the target (pip #6117): on the
Linux build host ``pywin32; sys_platform == "win32"`` would be skipped without a word.
So the lock is resolved for Windows once (uv, ``--python-platform``) and read here
strictly: one ``name==version`` a pin, hashes only, anything else refused by line.

``python -m collector.kit.lock`` (``make windows-lock``) writes it again; that needs the
network (uv's resolution, PyPI's simple index for the hashes).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click
from packaging import tags
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version

WINDOWS_PYTHONS: Final = ("3.11", "3.12", "3.13", "3.14")
PLATFORM: Final = "win_amd64"
#: uv's name for the platform the lock is resolved for.
UV_PLATFORM: Final = "x86_64-pc-windows-msvc"
DEFAULT_LOCK: Final = Path("deploy/windows/requirements-win.lock")
DEFAULT_INDEX: Final = "https://pypi.org/simple"
#: A version uv picks may lack wheels for one of the Pythons; each round excludes the
#: versions that do and resolves again. More rounds than this means no answer exists.
MAX_RESOLUTIONS: Final = 20

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_PIN = re.compile(r"^(?P<name>[^=<>!~]+)==(?P<version>[^=<>!~,*]+)$")
_SHA256 = re.compile(r"^sha256:(?P<hex>[0-9a-fA-F]{64})$")
# pip's rule: a comment starts at a # at the line's start or after whitespace.
_COMMENT = re.compile(r"(^|\s)#.*$")

HEADER: Final = """\
# The agent's runtime dependencies for Windows (win_amd64), CPython 3.11 to 3.14:
# every distribution pinned, with the SHA-256 of each of its wheels that fits one of
# these Pythons, and no environment markers (pip reads markers for the host it runs on:
# on the Linux build host pywin32 would be skipped). Read by collector/kit/lock.py.
# Regenerate (resolves with uv for Windows, hashes from PyPI; needs the network):
#   make windows-lock
# which runs: .venv/bin/python -m collector.kit.lock deploy/windows/requirements-win.lock
"""


@dataclass(frozen=True)
class Pin:
    """One distribution of the lock: its PEP 503 name, its exact version, the SHA-256
    (hex) of every wheel of that version that may be installed."""

    name: str
    version: str
    hashes: frozenset[str]


class LockError(ValueError):
    """A lock that cannot be trusted; the message names the line and the reason."""

    def __init__(self, line: int, reason: str, source: Path | None = None) -> None:
        where = f"line {line}" if source is None else f"{source}, line {line}"
        super().__init__(f"{where}: {reason}")
        self.line = line
        self.reason = reason


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first physical line number, text) for each line once backslash continuations
    are joined; comments removed."""
    start = 0
    parts: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not parts:
            start = number
        line = _COMMENT.sub("", raw)
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield start, " ".join(parts)
        parts = []
    if parts:
        yield start, " ".join(parts)


def _requirement(line: int, token: str) -> tuple[NormalizedName, str]:
    if token.startswith("-"):
        raise LockError(line, f"unknown option {token!r}: only pins with --hash are allowed")
    match = _PIN.match(token)
    if match is None:
        raise LockError(line, f"{token!r} is not pinned with ==")
    name, version = match["name"], match["version"]
    if not _NAME.match(name):
        raise LockError(line, f"{name!r} is not a distribution name")
    try:
        Version(version)
    except ValueError:  # InvalidVersion, or digits past int()'s limit
        raise LockError(line, f"{version!r} is not a version") from None
    return canonicalize_name(name), version


def _hash(line: int, option: str) -> str:
    if not option.startswith("-"):
        raise LockError(line, f"unexpected {option!r}: one pin a line, then its hashes")
    if not option.startswith("--hash="):
        raise LockError(line, f"unknown option {option!r}: only --hash=sha256:<hex> is allowed")
    match = _SHA256.match(option.removeprefix("--hash="))
    if match is None:
        raise LockError(line, f"{option!r} is not sha256:<64 hex digits>")
    return match["hex"].lower()


def parse_lock(text: str) -> list[Pin]:
    """The pins of a Windows lock, in its order; LockError at the first line that is not
    ``name==version`` followed by ``--hash=sha256:<hex>`` options (no markers, extras,
    URLs, ranges or other options; each distribution once, by its PEP 503 name)."""
    pins: list[Pin] = []
    seen: dict[str, int] = {}
    for line, content in _logical_lines(text):
        if not content.strip():
            continue
        if ";" in content:
            raise LockError(
                line,
                "environment markers (;) are not allowed: pip reads them "
                "for the build host, not for Windows",
            )
        if "[" in content:
            raise LockError(line, "extras are not allowed: pin the distributions themselves")
        if "@" in content or "://" in content:
            raise LockError(line, "URLs are not allowed: only name==version from the index")
        first, *options = content.split()
        name, version = _requirement(line, first)
        hashes = frozenset(_hash(line, option) for option in options)
        if not hashes:
            raise LockError(line, f"{name}=={version} has no --hash")
        if name in seen:
            raise LockError(line, f"{name} is pinned twice (first at line {seen[name]})")
        seen[name] = line
        pins.append(Pin(name, version, hashes))
    return pins


def read_lock(path: Path) -> list[Pin]:
    """The pins of the lock file at ``path``; LockError naming the file and line."""
    try:
        return parse_lock(path.read_text(encoding="utf-8"))
    except LockError as exc:
        raise LockError(exc.line, exc.reason, path) from None


def windows_tags(python: str) -> frozenset[tags.Tag]:
    """Every wheel tag CPython ``python`` ("3.12") on win_amd64 installs: its own ABI,
    abi3 and none, and the pure ``py3-none-any``."""
    match = re.fullmatch(r"3\.(\d{1,2})", python)
    if match is None:
        raise ValueError(f"{python!r} is not a CPython 3.x version like 3.12")
    version = (3, int(match[1]))
    interpreter = f"cp3{match[1]}"
    return frozenset(
        itertools.chain(
            tags.cpython_tags(version, abis=[interpreter], platforms=[PLATFORM]),
            tags.compatible_tags(version, interpreter=interpreter, platforms=[PLATFORM]),
        )
    )


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def wheel_pin(path: Path, pins: Sequence[Pin]) -> Pin | None:
    """The pin whose name and version ``path``'s wheel file name carries, if any (its
    bytes unchecked)."""
    try:
        name, version, _build, _tags = parse_wheel_filename(path.name)
    except ValueError:  # InvalidWheelFilename, InvalidVersion
        return None
    for pin in pins:
        if pin.name == name and Version(pin.version) == version:
            return pin
    return None


def fits(path: Path, python: str) -> bool:
    """Whether the wheel file ``path``'s tags let CPython ``python`` on win_amd64
    install it."""
    try:
        _name, _version, _build, wheel_tags = parse_wheel_filename(path.name)
    except ValueError:  # InvalidWheelFilename, InvalidVersion
        return False
    return not wheel_tags.isdisjoint(windows_tags(python))


def missing_wheels(pins: Sequence[Pin], wheels: Iterable[Path], python: str) -> list[str]:
    """The names of the pins (in the lock's order) that no file of ``wheels`` serves on
    CPython ``python`` ("3.12") win_amd64: a wheel of the pinned name and version whose
    tags fit that Python and whose SHA-256 is one of the pin's hashes."""
    served: set[str] = set()
    for path in wheels:
        pin = wheel_pin(path, pins)
        if pin is None or pin.name in served or not fits(path, python):
            continue
        if file_sha256(path) in pin.hashes:
            served.add(pin.name)
    return [pin.name for pin in pins if pin.name not in served]


# The generator: resolution with uv, hashes from the index. Network only from here on.


def render_lock(pins: Iterable[Pin]) -> str:
    """The lock file's text: the header, then the pins by name, hashes sorted."""
    blocks = []
    for pin in sorted(pins, key=lambda pin: pin.name):
        lines = [f"{pin.name}=={pin.version}"]
        lines += [f"    --hash=sha256:{digest}" for digest in sorted(pin.hashes)]
        blocks.append(" \\\n".join(lines))
    return HEADER + "\n".join(blocks) + "\n"


def _uv() -> str:
    from uv import find_uv_bin  # the dev environment's uv, not whatever is on PATH

    return find_uv_bin()


def resolve(pyproject: Path, excluded: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(name, version) of the base dependencies of ``pyproject`` and theirs, resolved by
    uv for Windows and the oldest supported CPython, markers evaluated for Windows;
    ``excluded`` holds ``name!=version`` constraints."""
    with tempfile.TemporaryDirectory(prefix="commune-windows-lock-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("".join(f"{line}\n" for line in excluded), encoding="utf-8")
        result = subprocess.run(
            [
                _uv(),
                "pip",
                "compile",
                str(pyproject),
                "--python-platform",
                UV_PLATFORM,
                "--python-version",
                WINDOWS_PYTHONS[0],
                "--no-header",
                "--no-annotate",
                "--quiet",
                "--constraint",
                str(constraints),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise click.ClickException(f"uv could not resolve for Windows:\n{result.stderr}")
    pins = []
    for line in result.stdout.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.strip().partition("==")
            pins.append((str(canonicalize_name(name)), version))
    return pins


def index_wheels(name: str, version: str, index: str = DEFAULT_INDEX) -> dict[str, str]:
    """File name → SHA-256 of the wheels of ``name`` ``version`` on the index (PEP 691
    JSON) that fit at least one of the supported Pythons on win_amd64."""
    request = urllib.request.Request(  # noqa: S310 (an https index URL the operator names)
        f"{index.rstrip('/')}/{name}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        listing = json.load(response)
    fitting = frozenset().union(*(windows_tags(python) for python in WINDOWS_PYTHONS))
    wanted = Version(version)
    found = {}
    for entry in listing["files"]:
        filename = entry["filename"]
        try:
            _name, wheel_version, _build, wheel_tags = parse_wheel_filename(filename)
        except ValueError:  # InvalidWheelFilename, InvalidVersion
            continue  # sdists and oddly named files
        if wheel_version == wanted and not wheel_tags.isdisjoint(fitting):
            found[filename] = entry["hashes"]["sha256"]
    return found


def pythons_without_wheel(filenames: Iterable[str]) -> list[str]:
    """The supported Pythons that none of the wheels named ``filenames`` fits."""
    names = [Path(filename) for filename in filenames]
    return [python for python in WINDOWS_PYTHONS if not any(fits(n, python) for n in names)]


def generate(pyproject: Path, index: str = DEFAULT_INDEX) -> list[Pin]:
    """Pins for Windows whose every version has a wheel for each supported Python,
    with the hashes of all those wheels."""
    excluded: list[str] = []
    for _round in range(MAX_RESOLUTIONS):
        pins, lacking = [], []
        for name, version in resolve(pyproject, excluded):
            files = index_wheels(name, version, index)
            if gaps := pythons_without_wheel(files):
                lacking.append(f"{name} {version} (no wheel for {', '.join(gaps)})")
                excluded.append(f"{name}!={version}")
            pins.append(Pin(name, version, frozenset(files.values())))
        if not lacking:
            return pins
        click.echo(f"excluded, resolving again: {'; '.join(lacking)}", err=True)
    raise click.ClickException(
        f"no resolution with wheels for every Python after {MAX_RESOLUTIONS} rounds; "
        f"last excluded: {', '.join(excluded[-5:])}"
    )


@click.command()
@click.argument("lock", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_LOCK)
@click.option(
    "--pyproject",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("pyproject.toml"),
    show_default=True,
    help="The project whose base dependencies the agent needs.",
)
@click.option("--index", default=DEFAULT_INDEX, show_default=True, help="A PEP 691 index.")
def main(lock: Path, pyproject: Path, index: str) -> None:
    """Write the Windows lock LOCK (default deploy/windows/requirements-win.lock)."""
    pins = generate(pyproject, index)
    text = render_lock(pins)
    parse_lock(text)  # what is written must be what the kit reads
    lock.write_text(text, encoding="utf-8")
    click.echo(f"{lock}: {len(pins)} pins, {sum(len(p.hashes) for p in pins)} wheels")


if __name__ == "__main__":
    main()
