"""Hostile release bundles: whatever a zip holds, unpacking refuses it by a named reason
and writes nothing outside ``versions/.partial-*`` (removed), nor a version folder.

A bundle reaches a PC only when the signed targets list it; these are the second line,
and they must also hold on Windows, whose file system folds case and drops a name's
trailing dots and spaces.
"""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from pathlib import Path

import pytest

from agent.update import bundle

GOOD = b"print('hello')\n"


def make_zip(
    path: Path,
    members: dict[str, bytes],
    manifest: dict[str, object] | None = None,
    symlinks: tuple[str, ...] = (),
) -> Path:
    """A zip of ``members`` with a manifest listing them (or ``manifest`` as given)."""
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
    listed = {"version": "2.0.0", "files": hashes}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name in symlinks:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, data)
        archive.writestr(bundle.MANIFEST, json.dumps(manifest or listed))
    return path


def refused(tmp_path: Path, path: Path) -> str:
    """Why unpacking ``path`` is refused; nothing left in or beside ``versions/``."""
    out = tmp_path / "out"
    versions = out / "versions"
    with pytest.raises(bundle.BundleError) as caught:
        bundle.unpack(path, versions, "2.0.0")
    assert [p.name for p in out.rglob("*")] in ([], ["versions"])
    assert not Path("/abs.py").exists()
    return str(caught.value)


@pytest.mark.parametrize(
    "name",
    ["../escape.py", "/abs.py", "agent/../../escape.py", "C:/x.py", "agent\\..\\..\\x.py",
     "agent/./x.py", "agent//x.py", "agent/x\0.py"],
)  # fmt: skip
def test_names_leaving_the_version_folder_are_refused(tmp_path: Path, name: str) -> None:
    why = refused(tmp_path, make_zip(tmp_path / "b.zip", {"agent/__init__.py": GOOD, name: GOOD}))
    assert "file name" in why or "name" in why


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (["agent/Runner.py", "agent/runner.py"], "differ only by case"),
        (["agent/x.py", "AGENT/x.py"], "differ only by case"),
        (["agent/x.py.", "agent/y.py"], "ends with a dot or a space"),
        (["agent/x.py ", "agent/y.py"], "ends with a dot or a space"),
        (["agent/con.py", "agent/y.py"], "reserved on Windows"),
        (["agent/LPT1", "agent/y.py"], "reserved on Windows"),
        (["agent/a<b.py", "agent/y.py"], "not allowed on Windows"),
        (["agent/a|b.py", "agent/y.py"], "not allowed on Windows"),
        (["agent/a\x01b.py", "agent/y.py"], "not allowed on Windows"),
        (["agent", "agent/y.py"], "both a file and a folder"),
        (["agent/X", "agent/x/y.py"], "both a file and a folder"),
    ],
)
def test_names_windows_would_fold_together_or_refuse_are_refused(
    tmp_path: Path, names: list[str], why: str
) -> None:
    """On Windows these would write one file over another (then verify against the wrong
    hash or not at all), or fail half-way: refused before anything is written."""
    members = dict.fromkeys(names, GOOD)
    assert why in refused(tmp_path, make_zip(tmp_path / "b.zip", members))
    listed = {"version": "2.0.0", "files": {n: hashlib.sha256(GOOD).hexdigest() for n in names}}
    with pytest.raises(bundle.BundleError, match=why):
        bundle.decode_manifest(json.dumps(listed).encode())


def test_a_symlink_member_is_written_as_a_plain_file_never_followed(tmp_path: Path) -> None:
    target = b"/etc/passwd"
    path = make_zip(tmp_path / "b.zip", {"agent/__init__.py": GOOD, "agent/link": target},
                    symlinks=("agent/link",))  # fmt: skip
    folder = bundle.unpack(path, tmp_path / "versions", "2.0.0")
    link = folder / "agent" / "link"
    assert not link.is_symlink() and link.read_bytes() == target
    assert bundle.verify_tree(folder) == []


def test_a_member_not_in_the_manifest_or_one_missing_is_refused(tmp_path: Path) -> None:
    manifest = {
        "version": "2.0.0",
        "files": {"agent/__init__.py": hashlib.sha256(GOOD).hexdigest()},
    }
    path = make_zip(tmp_path / "b.zip", {"agent/__init__.py": GOOD, "agent/extra.py": GOOD},
                    manifest)  # fmt: skip
    assert "bundle and manifest differ" in refused(tmp_path, path)


def test_a_member_whose_bytes_are_not_its_hash_is_refused(tmp_path: Path) -> None:
    manifest = {"version": "2.0.0", "files": {"agent/__init__.py": "0" * 64}}
    path = make_zip(tmp_path / "b.zip", {"agent/__init__.py": GOOD}, manifest)
    assert "does not verify" in refused(tmp_path, path)


def test_a_bundle_declaring_more_than_its_bound_is_refused_before_writing(tmp_path: Path) -> None:
    """Sizes as the zip declares them are summed before a byte is written: a bomb
    (a few kB that inflate to gigabytes) never fills the disk."""
    big = b"\0" * (bundle.MAX_UNPACKED_BYTES // 2 + 1)
    path = tmp_path / "b.zip"
    files = {n: hashlib.sha256(big).hexdigest() for n in ("agent/a.bin", "agent/b.bin")}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            archive.writestr(name, big)
        archive.writestr(bundle.MANIFEST, json.dumps({"version": "2.0.0", "files": files}))
    assert path.stat().st_size < 2 * 1024 * 1024
    assert "beyond its bound" in refused(tmp_path, path)


def test_a_bundle_of_another_version_or_not_a_zip_is_refused(tmp_path: Path) -> None:
    other = {"version": "2.0.1", "files": {"agent/__init__.py": hashlib.sha256(GOOD).hexdigest()}}
    path = make_zip(tmp_path / "b.zip", {"agent/__init__.py": GOOD}, other)
    assert "not 2.0.0" in refused(tmp_path, path)
    garbage = tmp_path / "g.zip"
    garbage.write_bytes(b"PK\x03\x04 not really")
    assert "not a readable zip" in refused(tmp_path, garbage)
