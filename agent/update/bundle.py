"""A release bundle: the zip that holds one agent version, and its manifest.

The zip holds the version's packages at its top (``agent/`` and any package the version
brings) and ``MANIFEST.json``: the version and the SHA-256 of every other file. Built
reproducibly (sorted names, fixed times, no compiled files), so the same checkout gives
the same bytes and the same TUF target hash. Unpacked into ``versions/.partial-<v>-*``,
checked against the manifest, then renamed to ``versions/<v>``: a half-unpacked version
never has a version's name.

Standard library only: the launcher checks installed versions with ``verify_tree``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Final, NamedTuple

from agent.update import versions
from agent.update.state import fsync_dir

# zipfile, shutil and tempfile are imported where a bundle is built or unpacked (the
# update process, the launcher): the agent the launcher runs only verifies its own files
# (``verify_tree``), and keeps none of them (1 MB).

MANIFEST: Final = "MANIFEST.json"
#: A bundle's bounds: an agent version is a few MB; anything far above is not one.
MAX_FILES: Final = 5000
MAX_UNPACKED_BYTES: Final = 200 * 1024 * 1024
MAX_MANIFEST_BYTES: Final = 2 * 1024 * 1024
_FIXED_TIME: Final = (2020, 1, 1, 0, 0, 0)
_SKIPPED_SUFFIXES: Final = (".pyc", ".pyo")


class BundleError(ValueError):
    """A bundle or an installed version that is not what its manifest says."""


class Manifest(NamedTuple):
    """A version and the SHA-256 of each of its files."""

    version: str
    files: dict[str, str]
    """Relative POSIX path -> SHA-256 (hex)."""

    def encode(self) -> bytes:
        document = {"version": self.version, "files": dict(sorted(self.files.items()))}
        return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"


def decode_manifest(data: bytes) -> Manifest:
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError("manifest too large")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"manifest is not JSON: {exc}") from None
    if not isinstance(document, dict) or set(document) != {"version", "files"}:
        raise BundleError("manifest must hold exactly 'version' and 'files'")
    version, files = document["version"], document["files"]
    if not isinstance(version, str) or not versions.is_version(version):
        raise BundleError(f"manifest version is not a release version: {version!r}")
    if not isinstance(files, dict) or len(files) > MAX_FILES:
        raise BundleError(f"manifest files must be a table of at most {MAX_FILES} entries")
    checked: dict[str, str] = {}
    for name, digest in files.items():
        _safe_name(name)
        if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
            raise BundleError(f"manifest hash of {name!r} is not a SHA-256")
        checked[name] = digest
    _distinct_on_windows(checked)
    return Manifest(version, checked)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


#: Names Windows gives to devices, whatever their extension (``con.py`` is the console).
_WINDOWS_DEVICES: Final = frozenset(
    {"con", "prn", "aux", "nul"} | {f"{port}{n}" for port in ("com", "lpt") for n in range(10)}
)
#: Characters Windows refuses in a file name (besides ``\\``, ``/`` and ``:``).
_WINDOWS_FORBIDDEN: Final = frozenset('<>"|?*') | frozenset(map(chr, range(32)))


def _safe_name(name: object) -> PurePosixPath:
    """A member name that stays inside the folder it is unpacked into, and names the same
    one file on Windows as on Linux."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise BundleError(f"bad file name in bundle: {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name != path.as_posix() or ":" in name:
        raise BundleError(f"file name leaves the version folder: {name!r}")
    if name == MANIFEST:
        raise BundleError("the manifest cannot list itself")
    for part in path.parts:
        if part.endswith((".", " ")):  # Windows drops them: another file's name
            raise BundleError(f"file name ends with a dot or a space: {name!r}")
        if part.split(".")[0].casefold() in _WINDOWS_DEVICES:
            raise BundleError(f"file name reserved on Windows: {name!r}")
        if _WINDOWS_FORBIDDEN.intersection(part):
            raise BundleError(f"file name not allowed on Windows: {name!r}")
    return path


def _distinct_on_windows(names: Iterable[str]) -> None:
    """No two names the same once case is folded (Windows would write one over the
    other), and no name both a file and a folder (the unpacking would fail half-way)."""
    files: dict[str, str] = {}
    for name in names:
        folded = name.casefold()
        if folded in files:
            raise BundleError(f"file names differ only by case: {files[folded]!r}, {name!r}")
        files[folded] = name
    for name in files.values():
        for parent in PurePosixPath(name).parents:
            folded = parent.as_posix().casefold()
            if folded in files:
                raise BundleError(f"{files[folded]!r} is both a file and a folder")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_files(root: Path, packages: Iterable[str]) -> Iterator[tuple[str, Path]]:
    for package in packages:
        base = root / package
        if not base.is_dir():
            raise BundleError(f"no package {package!r} in {root}")
        for path in sorted(base.rglob("*")):
            compiled = "__pycache__" in path.parts or path.name.endswith(_SKIPPED_SUFFIXES)
            if path.is_file() and not compiled:
                yield path.relative_to(root).as_posix(), path


def _with_version(source: bytes, version: str) -> bytes:
    """``agent/__init__.py`` with its ``__version__`` line set to ``version``."""
    lines = source.decode().splitlines(keepends=True)
    found = False
    for index, line in enumerate(lines):
        if line.startswith("__version__ = "):
            lines[index] = f'__version__ = "{version}"\n'
            found = True
    if not found:
        raise BundleError("agent/__init__.py has no __version__ line to set")
    return "".join(lines).encode()


def build(
    source_root: Path, version: str, out: Path, packages: Iterable[str] = ("agent",)
) -> Manifest:
    """Zip ``packages`` (folders under ``source_root``: a checkout or site-packages) as
    release ``version`` into ``out`` (written to a temporary name, then renamed)."""
    import tempfile
    import zipfile

    versions.parse(version)
    contents: dict[str, bytes] = {}
    for name, path in _source_files(source_root, packages):
        data = path.read_bytes()
        contents[name] = _with_version(data, version) if name == "agent/__init__.py" else data
    if "agent/__init__.py" not in contents:
        raise BundleError("a bundle must hold the agent package")
    manifest = Manifest(version, {n: hashlib.sha256(d).hexdigest() for n, d in contents.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in [*sorted(contents), MANIFEST]:
                info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, manifest.encode() if name == MANIFEST else contents[name])
        os.replace(temporary, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return manifest


def read_manifest(bundle: Path) -> Manifest:
    """The manifest of a bundle file, checked for shape (not yet against the files)."""
    import zipfile

    try:
        with zipfile.ZipFile(bundle) as archive:
            info = archive.getinfo(MANIFEST)
            if info.file_size > MAX_MANIFEST_BYTES:
                raise BundleError("manifest too large")
            return decode_manifest(archive.read(info))
    except KeyError:
        raise BundleError(f"{bundle.name}: no {MANIFEST}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BundleError(f"{bundle.name}: not a readable zip: {exc}") from None


def unpack(bundle: Path, versions_dir: Path, expected_version: str) -> Path:
    """Unpack ``bundle`` as ``versions_dir/<version>`` and return that folder.

    Everything is checked before the final rename: the manifest's version is the one
    expected, every member is named in it with its hash, nothing more, nothing less,
    within the bounds. A version folder that already exists is kept as is only when its
    manifest is this bundle's and it verifies (whole by its own manifest is not enough:
    that manifest may not be the signed one); otherwise it is replaced (anti-malware may
    have eaten part of it)."""
    import shutil
    import tempfile

    manifest = read_manifest(bundle)
    if manifest.version != expected_version:
        raise BundleError(f"bundle holds version {manifest.version}, not {expected_version}")
    final = versions_dir / expected_version
    if final.is_dir() and _installed_manifest(final) == manifest and not verify_tree(final):
        return final
    versions_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=versions_dir, prefix=f".partial-{expected_version}-"))
    try:
        _extract(bundle, manifest, partial)
        problems = verify_tree(partial)
        if problems:
            raise BundleError(f"unpacked version does not verify: {problems[0]}")
        _fsync_tree(partial)
        if final.exists():
            retired = Path(
                tempfile.mkdtemp(dir=versions_dir, prefix=f".broken-{expected_version}-")
            )
            os.replace(final, retired / "tree")
            shutil.rmtree(retired, ignore_errors=True)
        os.replace(partial, final)
        fsync_dir(versions_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def _installed_manifest(folder: Path) -> Manifest | None:
    try:
        return decode_manifest((folder / MANIFEST).read_bytes())
    except (OSError, BundleError):
        return None


def _extract(bundle: Path, manifest: Manifest, into: Path) -> None:
    import shutil
    import zipfile

    total = 0
    try:
        with zipfile.ZipFile(bundle) as archive:
            members = [i for i in archive.infolist() if not i.is_dir()]
            names = {i.filename for i in members}
            if len(members) != len(names):
                raise BundleError("bundle names a file twice")
            if names != {*manifest.files, MANIFEST}:
                extra = sorted(names - {*manifest.files, MANIFEST})
                missing = sorted(set(manifest.files) - names)
                raise BundleError(
                    f"bundle and manifest differ: extra {extra[:3]}, missing {missing[:3]}"
                )
            for info in members:
                total += info.file_size
                if total > MAX_UNPACKED_BYTES:
                    raise BundleError("bundle unpacks beyond its bound")
                target = (
                    into / _safe_name(info.filename)
                    if info.filename != MANIFEST
                    else into / MANIFEST
                )
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 16)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{bundle.name}: not a readable zip: {exc}") from None


def verify_tree(folder: Path) -> list[str]:
    """What is wrong with an installed version folder against its manifest (empty: it is
    whole). Missing, changed or unreadable files count; extra ``__pycache__`` does not."""
    try:
        manifest = decode_manifest((folder / MANIFEST).read_bytes())
    except OSError as exc:
        return [f"{MANIFEST} unreadable: {exc.strerror or exc}"]
    except BundleError as exc:
        return [str(exc)]
    if manifest.version != folder.name and not folder.name.startswith(".partial-"):
        return [f"folder {folder.name} holds version {manifest.version}"]
    problems = []
    for name, digest in sorted(manifest.files.items()):
        try:
            actual = _sha256_file(folder / name)
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror or 'unreadable'}")
            continue
        if actual != digest:
            problems.append(f"{name}: changed")
    return problems


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(folder)
