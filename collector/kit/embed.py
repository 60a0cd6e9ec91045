"""python.org's embeddable CPython for Windows (``python-3.X.Y-embed-amd64.zip``): checked
against the hash python.org publishes, then unpacked as the MSI's runtime.

Nothing reachable from here serves a Windows CPython, so the operator brings the file
once; the builder trusts it only if its SHA-256 is the one given, its layout is the
official one (flat: ``python.exe``, ``python3XX.dll``, ``python3XX.zip`` with the standard
library, ``python3XX._pth``, the VC runtime), and its version is one the agent supports.

The ``._pth`` file stays (deleting it breaks 3.14's embeddable runtime: azure-cli
#33419); the builder adds ``Lib\\site-packages`` and turns ``import site`` on, which the
runtime needs for pywin32's ``.pth`` and for the launcher's version folders.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from collector.kit.errors import KitError

SUPPORTED: Final = ("3.11", "3.12", "3.13", "3.14")
#: python.org's zip is about 11 MB and 40 files; far more is not one.
MAX_BYTES: Final = 64 * 1024 * 1024
MAX_MEMBERS: Final = 400
_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")
_DLL: Final = re.compile(r"python(3\d\d)\.dll")
SITE_PACKAGES: Final = "Lib\\site-packages"


@dataclass(frozen=True)
class Embed:
    path: Path
    sha256: str
    version: str
    """"3.12"."""

    @property
    def tag(self) -> str:
        """ "312": the digits in the DLL's, the zip's and the ``._pth``'s names."""
        return self.version.replace(".", "")

    @property
    def pth_name(self) -> str:
        return f"python{self.tag}._pth"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check(path: Path, expected_sha256: str) -> Embed:
    """The embeddable zip at ``path``, if it is python.org's file with that hash."""
    if not _HEX64.fullmatch(expected_sha256.strip()):
        raise KitError("--sha256: give the 64 hex digits python.org publishes for the file")
    if not path.is_file():
        raise KitError(f"{path}: no such file")
    if path.stat().st_size > MAX_BYTES:
        raise KitError(f"{path.name}: {path.stat().st_size} bytes, not an embeddable zip")
    actual = sha256_of(path)
    if actual != expected_sha256.strip().lower():
        raise KitError(
            f"{path.name}: SHA-256 {actual} is not the published {expected_sha256.lower()}: "
            "download the file again from python.org and compare"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise KitError(f"{path.name}: not a readable zip: {exc}") from None
    return Embed(path=path, sha256=actual, version=_version_of(path.name, names))


def _version_of(name: str, members: list[str]) -> str:
    if len(members) > MAX_MEMBERS:
        raise KitError(f"{name}: {len(members)} members, not an embeddable zip")
    for member in members:
        pure = PurePosixPath(member)
        if member.startswith("/") or "\\" in member or ".." in pure.parts or len(pure.parts) != 1:
            raise KitError(f"{name}: member {member[:80]!r} is not in the official flat layout")
    dlls = sorted({match.group(1) for m in members if (match := _DLL.fullmatch(m))})
    if len(dlls) != 1:
        raise KitError(f"{name}: no single python3XX.dll: not python.org's embeddable zip")
    tag = dlls[0]
    version = f"{tag[0]}.{tag[1:]}"
    if version not in SUPPORTED:
        raise KitError(f"{name}: CPython {version}; the agent runs on {', '.join(SUPPORTED)}")
    needed = {"python.exe", "pythonw.exe", f"python{tag}.zip", f"python{tag}._pth",
              "vcruntime140.dll"}  # fmt: skip
    missing = sorted(needed - set(members))
    if missing:
        raise KitError(f"{name}: missing {', '.join(missing)}: not python.org's embeddable zip")
    return version


def extract(embed: Embed, runtime: Path) -> list[str]:
    """Unpack the zip into ``runtime`` (checked by ``check``: flat, bounded); its names."""
    runtime.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(embed.path) as archive:
        names = []
        for info in archive.infolist():
            if info.is_dir():
                continue
            (runtime / info.filename).write_bytes(archive.read(info))
            names.append(info.filename)
    return sorted(names)


def enable_site(runtime: Path, embed: Embed) -> str:
    """Rewrite ``python3XX._pth``: its own entries kept, ``Lib\\site-packages`` added and
    ``import site`` on; returns the new text."""
    path = runtime / embed.pth_name
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.strip()
        if entry.lstrip("#").strip() == "import site" or entry == SITE_PACKAGES:
            continue
        if entry and not entry.startswith("#"):
            kept.append(entry)
    text = "\n".join(
        [
            *kept,
            SITE_PACKAGES,
            "# commune-monitor: site on, for pywin32's .pth files and the launcher's",
            "# path hook (the agent version the launcher starts; PYTHONPATH stays ignored).",
            "import site",
            "",
        ]
    )
    path.write_text(text, encoding="utf-8", newline="\r\n")
    return text
