"""The Windows kit's wheels: those of the Windows lock for CPython 3.11 to 3.14 on
win_amd64, gathered on a Linux build host, and installed from there into a Windows
runtime's site-packages.

The wheels come from the operator's wheelhouse (offline) or from the index through pip,
into a cache kept between builds, so a machine downloads them once. Either way every
file's SHA-256 is checked here against the lock before it goes into the kit: a download
is never trusted, and neither is a folder someone filled by hand.

pip runs as the running interpreter's (``sys.executable -m pip``) and is told the target
(``--platform win_amd64 --python-version X --abi cp3XX``), so what it picks and unpacks
is what a Windows CPython X would, whatever the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from collector.kit.errors import KitError
from collector.kit.lock import (
    PLATFORM,
    WINDOWS_PYTHONS,
    Pin,
    file_sha256,
    fits,
    missing_wheels,
    wheel_pin,
    windows_tags,
)

#: Overrides where downloaded wheels are kept between builds.
CACHE_ENV: Final = "COMMUNE_KIT_WHEEL_CACHE"
#: pip's last lines of output in an error: enough to see why, not its whole log.
PIP_ERROR_LINES: Final = 15


def default_cache() -> Path:
    """Where downloaded wheels are kept: $COMMUNE_KIT_WHEEL_CACHE, or else
    ~/.cache/commune-monitor/windows-wheels."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    return Path.home() / ".cache" / "commune-monitor" / "windows-wheels"


def target_options(python: str) -> list[str]:
    """pip's options that make it choose wheels for CPython ``python`` ("3.12") on
    win_amd64 instead of the host's."""
    windows_tags(python)  # refuses what is not "3.X"
    abi = "cp" + python.replace(".", "")
    return [
        "--only-binary=:all:",
        "--platform", PLATFORM,
        "--python-version", python,
        "--implementation", "cp",
        "--abi", abi,
    ]  # fmt: skip


def _pip(arguments: list[str], doing: str) -> str:
    """pip's standard output; KitError with the end of its error output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-PIP_ERROR_LINES:])
        raise KitError(f"pip failed {doing} (exit {result.returncode}):\n{tail}")
    return result.stdout


def _wheel_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file())


def _served(pins: Sequence[Pin], folder: Path) -> bool:
    """Whether ``folder`` already holds a locked wheel of every pin for every Python."""
    wheels = [path for path in folder.glob("*.whl") if path.is_file()]
    return all(not missing_wheels(pins, wheels, python) for python in WINDOWS_PYTHONS)


def _download(lock_path: Path, pins: Sequence[Pin], cache: Path) -> None:
    """The lock's wheels for every Python into ``cache``, unless it already has them.
    pip checks the hashes of what it downloads and of what the cache holds (a damaged
    file is fetched again); what it leaves is checked again afterwards, by the caller."""
    cache.mkdir(parents=True, exist_ok=True)
    if _served(pins, cache):
        return
    for python in WINDOWS_PYTHONS:
        _pip(
            ["download", "--no-deps", *target_options(python), "--require-hashes",
             "-r", str(lock_path), "-d", str(cache)],
            f"downloading the wheels for CPython {python}",
        )  # fmt: skip


def _take(pins: Sequence[Pin], source: Path, dest: Path) -> None:
    """Copy into ``dest`` the wheels of ``source`` that are pinned and fit a supported
    Python; one that claims a pinned name and version but whose bytes the lock does not
    know is a damaged or substituted file, and stops the build."""
    for path in _wheel_files(source):
        pin = wheel_pin(path, pins)
        if pin is None or not any(fits(path, python) for python in WINDOWS_PYTHONS):
            continue  # another version or platform: not the kit's
        digest = file_sha256(path)
        if digest not in pin.hashes:
            raise KitError(
                f"{path.name} in {source} has SHA-256 {digest}, which the Windows lock "
                f"does not list for {pin.name} {pin.version}: a damaged or substituted "
                "wheel; delete it"
            )
        shutil.copyfile(path, dest / path.name)


def _verified(pins: Sequence[Pin], dest: Path) -> list[Path]:
    """Every file of ``dest``, each a wheel whose SHA-256 the lock lists for its pin:
    the bytes that go into the kit are checked, not those that were downloaded."""
    wheels = _wheel_files(dest)
    for path in wheels:
        pin = wheel_pin(path, pins)
        if pin is None or file_sha256(path) not in pin.hashes:
            raise KitError(f"{path.name} in {dest} is not a wheel of the Windows lock")
    return wheels


def fetch(
    lock_path: Path,
    pins: Sequence[Pin],
    dest: Path,
    *,
    wheelhouse: Path | None = None,
    cache: Path | None = None,
) -> list[Path]:
    """The wheels of ``pins`` (read from ``lock_path``) for CPython 3.11 to 3.14 on
    win_amd64, copied into ``dest``: from ``wheelhouse`` if given (offline; only files
    whose SHA-256 the lock lists are taken), else downloaded by pip into ``cache``
    (default_cache() if None). KitError if a file is not what the lock says, or if a
    Python would lack a pinned distribution."""
    if wheelhouse is not None:
        if not wheelhouse.is_dir():
            raise KitError(f"the wheelhouse {wheelhouse} is not a folder")
        source, where = wheelhouse, f"in the wheelhouse {wheelhouse}"
    else:
        source = cache if cache is not None else default_cache()
        _download(lock_path, pins, source)
        where = f"on the index (downloaded into {source})"
    dest.mkdir(parents=True, exist_ok=True)
    _take(pins, source, dest)
    wheels = _verified(pins, dest)
    versions = {pin.name: pin.version for pin in pins}
    gaps = []
    for python in WINDOWS_PYTHONS:
        if missing := missing_wheels(pins, wheels, python):
            names = ", ".join(f"{name} {versions[name]}" for name in missing)
            gaps.append(f"the Windows lock has no wheel of {names} for CPython {python} "
                        f"(win_amd64) {where}")  # fmt: skip
    if gaps:
        raise KitError("\n".join(gaps))
    return wheels


def _check_pywin32(site_packages: Path, python: str) -> None:
    """pywin32 in place as a Windows CPython ``python`` loads it: its .pth (which adds
    win32/ to the path and finds its DLLs) and the DLLs built for that Python."""
    suffix = python.replace(".", "")
    needed = [
        site_packages / "pywin32.pth",
        site_packages / "win32",
        site_packages / "pywin32_system32" / f"pythoncom{suffix}.dll",
        site_packages / "pywin32_system32" / f"pywintypes{suffix}.dll",
    ]
    if absent := [str(path.relative_to(site_packages)) for path in needed if not path.exists()]:
        raise KitError(
            f"pywin32 did not land in {site_packages} for CPython {python}: no {', '.join(absent)}"
        )


def install_into(site_packages: Path, python: str, lock_path: Path, wheels: Path) -> None:
    """Install the lock's distributions for CPython ``python`` on win_amd64 into
    ``site_packages`` from the folder ``wheels`` alone (no index), hashes required;
    then remove what pip made for the build host, and check pywin32 is there."""
    _pip(
        ["--isolated", "install", "--no-deps", "--no-index", "--find-links", str(wheels),
         *target_options(python), "--target", str(site_packages), "--require-hashes",
         # Bytecode compiled by the host's Python would be for the wrong version.
         "--no-compile", "-r", str(lock_path)],
        f"installing the wheels for CPython {python} into {site_packages}",
    )  # fmt: skip
    # pip --target puts the wheels' scripts in bin/ as POSIX launchers for the host's
    # Python: useless on Windows, where the agent is started by its service.
    shutil.rmtree(site_packages / "bin", ignore_errors=True)
    _check_pywin32(site_packages, python)
