"""``windows-kit``: one province's offline Windows kit, built on Linux.

Out of the folder it writes::

    commune-agent.msi     runtime + launcher + the agent version + root.json + the CA
    wheels/               the agent's dependencies for CPython 3.11–3.14 on win_amd64 (the
                          PowerShell path, for a PC with its own Python), from the lock
    install-agent.ps1, uninstall-agent.ps1
    README.txt            Vietnamese and English: what to run, what each property does
    SHA256SUMS            every file above
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import agent
from agent.update import versions
from collector.kit import embed as embedding
from collector.kit import msi, readme, stage, wxs
from collector.kit.errors import KitError

REPO: Final = Path(agent.__file__).resolve().parent.parent
DEFAULT_LOCK: Final = REPO / "deploy" / "windows" / "requirements-win.lock"
POWERSHELL: Final = ("install-agent.ps1", "uninstall-agent.ps1")
MSI_NAME: Final = "commune-agent.msi"
_SLUG: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
#: Windows Installer compares three fields of a version (major, minor ≤ 255).
_MSI_VERSION: Final = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,5})")


@dataclass(frozen=True)
class KitRequest:
    embed_zip: Path
    embed_sha256: str
    server: str
    province: str
    out: Path
    root_json: bytes
    collector_ca: bytes | None = None
    version: str = agent.__version__
    lock: Path = DEFAULT_LOCK
    wheelhouse: Path | None = None
    wheel_cache: Path | None = None


@dataclass(frozen=True)
class Kit:
    msi: Path
    files: list[Path]
    python: str
    version: str


Progress = Callable[[str], None]


def check_request(request: KitRequest) -> None:
    """What can be refused before any work: the address, the province, the version."""
    if not request.server.startswith("https://") or any(c in request.server for c in ' "[]'):
        raise KitError(f"--server {request.server!r}: the collector's https:// address")
    if not _SLUG.fullmatch(request.province):
        raise KitError(f"--province {request.province!r}: a slug such as dong-nai")
    match = _MSI_VERSION.fullmatch(request.version)
    if not versions.is_version(request.version) or match is None:
        raise KitError(f"version {request.version}: an MSI needs three numbers (a.b.c)")
    if int(match.group(1)) > 255 or int(match.group(2)) > 255 or int(match.group(3)) > 65535:
        raise KitError(f"version {request.version}: beyond what Windows Installer compares")


def build(request: KitRequest, progress: Progress = print) -> Kit:
    check_request(request)
    embed = embedding.check(request.embed_zip, request.embed_sha256)
    progress(f"python.org's embeddable CPython {embed.version}: SHA-256 matches")
    from collector.kit import lock, wheels  # pip and packaging: only when building

    pins = lock.parse_lock(request.lock.read_text(encoding="utf-8"))
    request.out.mkdir(parents=True, exist_ok=True)
    wheel_dir = request.out / "wheels"
    cache = request.wheel_cache or wheels.default_cache()
    fetched = wheels.fetch(
        request.lock, pins, wheel_dir, wheelhouse=request.wheelhouse, cache=cache
    )
    progress(f"{len(fetched)} wheels for CPython {', '.join(lock.WINDOWS_PYTHONS)} (win_amd64)")
    with tempfile.TemporaryDirectory(dir=request.out, prefix=".build-") as scratch:
        staged = Path(scratch) / "stage"
        stage.lay_out_runtime(
            staged, embed,
            lambda site: wheels.install_into(site, embed.version, request.lock, wheel_dir),
        )  # fmt: skip
        stage.lay_out_launcher(staged)
        facts = stage.KitFacts(
            request.version, request.server, request.province, request.root_json,
            request.collector_ca,
        )  # fmt: skip
        stage.lay_out_kit(staged, facts, REPO)
        stage.drop_bytecode(staged)
        source = Path(scratch) / "commune-agent.wxs"
        product = wxs.Product(request.version, request.province, wxs.inputs_digest(staged))
        source.write_text(wxs.source(staged, product), encoding="utf-8")
        output = request.out / MSI_NAME
        msi.build(source, output, product)
        msi.verify(output, staged)
        progress(f"{output.name}: {output.stat().st_size} bytes, tables checked")
    for script in POWERSHELL:
        shutil.copyfile(REPO / "deploy" / "windows" / script, request.out / script)
    (request.out / "README.txt").write_text(
        readme.text(request.version, request.province, request.server, embed.version),
        encoding="utf-8",
        newline="\r\n",
    )
    files = write_sums(request.out)
    return Kit(output, files, embed.version, request.version)


def write_sums(folder: Path) -> list[Path]:
    """``SHA256SUMS`` (``sha256sum -c`` format) of every file in the kit."""
    files = sorted(
        path for path in folder.rglob("*")
        if path.is_file() and path.name != "SHA256SUMS"
        and not path.relative_to(folder).as_posix().startswith(".")  # a build in progress
    )  # fmt: skip
    lines = []
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(folder).as_posix()}\n")
    (folder / "SHA256SUMS").write_text("".join(lines), encoding="utf-8")
    return files
