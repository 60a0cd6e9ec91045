"""A stand-in for python.org's embeddable CPython zip (``python-3.X.Y-embed-amd64.zip``).

No Windows CPython is reachable from here, so the tests build a zip with the official
layout: the file names of python.org's 3.11–3.14 embeddable packages (flat: the
interpreter, its DLL, the standard library as ``python3XX.zip``, the ``._pth`` file with
python.org's own text, the VC runtime, the extension modules), each holding stand-in
bytes. The builder sees what it would in the real file; nothing here runs on Windows.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

EXTENSIONS = (
    "_asyncio", "_bz2", "_ctypes", "_decimal", "_elementtree", "_hashlib", "_lzma",
    "_multiprocessing", "_overlapped", "_queue", "_socket", "_sqlite3", "_ssl", "_uuid",
    "_wmi", "_zoneinfo", "pyexpat", "select", "unicodedata", "winsound",
)  # fmt: skip
DLLS = ("libcrypto-3.dll", "libffi-8.dll", "libssl-3.dll", "sqlite3.dll", "python3.dll",
        "vcruntime140.dll", "vcruntime140_1.dll")  # fmt: skip


def official_pth(tag: str) -> str:
    """python.org's ``python3XX._pth`` as shipped (CPython's PC/layout)."""
    lines = [f"python{tag}.zip", ".", "", "# Uncomment to run site.main() automatically"]
    return "\r\n".join([*lines, "#import site", ""])


def members(version: str) -> dict[str, bytes]:
    tag = version.replace(".", "")
    names = {
        "python.exe": b"MZ stand-in python.exe",
        "pythonw.exe": b"MZ stand-in pythonw.exe",
        f"python{tag}.dll": b"MZ stand-in interpreter DLL",
        f"python{tag}._pth": official_pth(tag).encode(),
        "LICENSE.txt": b"PSF license (stand-in)",
        "python.cat": b"stand-in catalog",
    }
    names.update({name: f"MZ stand-in {name}".encode() for name in DLLS})
    names.update({f"{name}.pyd": f"MZ stand-in {name}".encode() for name in EXTENSIONS})
    return names


def stand_in_embed(
    folder: Path,
    version: str = "3.12",
    patch: str = "10",
    extra: dict[str, bytes] | None = None,
    drop: tuple[str, ...] = (),
) -> tuple[Path, str]:
    """The zip and its SHA-256 (as python.org would publish it)."""
    tag = version.replace(".", "")
    path = folder / f"python-{version}.{patch}-embed-amd64.zip"
    folder.mkdir(parents=True, exist_ok=True)
    contents = {**members(version), **(extra or {})}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        stdlib = folder / f"python{tag}.zip"
        with zipfile.ZipFile(stdlib, "w") as library:
            library.writestr("os.pyc", b"stand-in standard library")
        if f"python{tag}.zip" not in drop:
            archive.write(stdlib, f"python{tag}.zip")
        stdlib.unlink()
        for name, data in contents.items():
            if name not in drop:
                archive.writestr(name, data)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()
