"""python.org's embeddable CPython as the kit builder takes it: the hash, the official
layout and version, the ``._pth`` turned into the agent's runtime. A stand-in zip with
the official layout (``tests/windows_embed.py``): no Windows CPython is reachable here."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.cli.main import main
from collector.kit import embed
from collector.kit.errors import KitError
from tests.releases import make_releases
from tests.windows_embed import stand_in_embed


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13", "3.14"])
def test_the_official_layout_of_each_supported_python_is_taken_and_site_turned_on(
    tmp_path: Path, version: str
) -> None:
    path, sha256 = stand_in_embed(tmp_path, version)
    taken = embed.check(path, sha256.upper())  # python.org prints either case
    assert (taken.version, taken.tag) == (version, version.replace(".", ""))
    runtime = tmp_path / "runtime"
    names = embed.extract(taken, runtime)
    assert "python.exe" in names and f"python{taken.tag}.dll" in names
    text = embed.enable_site(runtime, taken)
    lines = (runtime / taken.pth_name).read_bytes().decode().split("\r\n")
    entries = [line for line in lines if line and not line.startswith("#")]
    assert entries == [f"python{taken.tag}.zip", ".", "Lib\\site-packages", "import site"]
    assert embed.enable_site(runtime, taken) == text  # run twice: the same file


def refusal(path: Path, sha256: str) -> str:
    with pytest.raises(KitError) as refused:
        embed.check(path, sha256)
    return str(refused.value)


def test_a_file_whose_hash_is_not_the_published_one_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    path, sha256 = stand_in_embed(tmp_path)
    with path.open("ab") as tampered:
        tampered.write(b"\0")
    said = refusal(path, sha256)
    assert sha256 in said and "python.org" in said
    assert "64 hex" in refusal(path, "not-a-hash")


@pytest.mark.parametrize(
    ("extra", "drop", "reason"),
    [
        ({"../python.exe": b"x"}, (), "official flat layout"),
        ({"Lib/site.py": b"x"}, (), "official flat layout"),
        ({"python311.dll": b"x"}, (), "no single python3XX.dll"),
        ({}, ("python312._pth",), "missing python312._pth"),
        ({}, ("python312.zip",), "missing python312.zip"),
        ({}, ("python312.dll",), "no single python3XX.dll"),
    ],
)
def test_a_zip_not_in_the_official_layout_is_refused_by_reason(
    tmp_path: Path, extra: dict[str, bytes], drop: tuple[str, ...], reason: str
) -> None:
    path, sha256 = stand_in_embed(tmp_path, extra=extra, drop=drop)
    assert reason in refusal(path, sha256)


def test_an_unsupported_python_and_a_file_that_is_no_zip_are_refused(tmp_path: Path) -> None:
    path, sha256 = stand_in_embed(tmp_path, "3.10")
    assert "CPython 3.10" in refusal(path, sha256)
    bogus = tmp_path / "python-3.12.10-embed-amd64.zip"
    bogus.write_bytes(b"MZ not a zip")
    import hashlib

    assert "not a readable zip" in refusal(bogus, hashlib.sha256(bogus.read_bytes()).hexdigest())


def test_windows_kit_refuses_a_mismatched_hash_before_building_anything(tmp_path: Path) -> None:
    releases = make_releases(tmp_path / "site")
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "site" / "collector" / "state.sqlite"}"\n')
    path, sha256 = stand_in_embed(tmp_path / "download")
    wrong = sha256[::-1]
    out = tmp_path / "kit"
    result = CliRunner().invoke(main, [
        "windows-kit", "-c", str(config), "--python-embed", str(path), "--sha256", wrong,
        "--server", "https://collector.dong-nai.example:8443", "--province", "dong-nai",
        "-o", str(out),
    ])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"is not the published {wrong}" in result.output
    assert not (out / "commune-agent.msi").exists()
    assert releases.repo.initialised()
    with zipfile.ZipFile(path) as archive:  # the operator's file is left as it was
        assert "python.exe" in archive.namelist()


def test_the_runtimes_path_hook_takes_only_a_version_folder_of_its_own_install(
    tmp_path: Path,
) -> None:
    """A ._pth runtime ignores PYTHONPATH (as ``-I`` does here), and must: a machine-wide
    PYTHONPATH would put another program's code in a SYSTEM service. The launcher names
    the version it starts in its own variable; the hook in the runtime's site-packages
    (processed by the ``import site`` the builder turns on) puts that folder first only
    when it is right under the install's ``versions``: not a folder elsewhere, not a
    ``..`` escape, not PYTHONPATH."""
    import os
    import subprocess
    import sys

    from agent.update import VERSION_DIR_ENV
    from collector.kit import stage

    install = tmp_path / "Program Files" / "commune-agent"
    site_packages = install / "runtime" / "Lib" / "site-packages"
    bare = tmp_path / "bare"
    for folder in (site_packages, bare):
        folder.mkdir(parents=True)
    (site_packages / stage.PATH_HOOK_NAME).write_text(stage.PATH_HOOK)
    (site_packages / stage.PATH_HOOK_MODULE_NAME).write_text(stage.PATH_HOOK_MODULE)

    def version_at(folder: Path, where: str) -> Path:
        (folder / "probe_version").mkdir(parents=True)
        (folder / "probe_version" / "__init__.py").write_text(f"WHERE = {where!r}\n")
        return folder

    ours = version_at(install / "versions" / "0.3.0", "the version folder")
    elsewhere = version_at(tmp_path / "Users" / "Public" / "versions" / "0.3.0", "planted")
    escape = install / "versions" / ".." / ".." / ".." / "Users" / "Public" / "versions" / "0.3.0"

    def run(site_dir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, **variables}
        code = (f"import site; site.addsitedir({str(site_dir)!r}); "
                "import probe_version; print(probe_version.WHERE)")  # fmt: skip
        return subprocess.run([sys.executable, "-I", "-c", code], env=environment,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    assert run(site_packages, **{VERSION_DIR_ENV: str(ours)}).stdout.strip() == "the version folder"
    assert "ModuleNotFoundError" in run(bare, **{VERSION_DIR_ENV: str(ours)}).stderr
    for planted in ({VERSION_DIR_ENV: str(elsewhere)}, {VERSION_DIR_ENV: str(escape)},
                    {"PYTHONPATH": str(elsewhere)}):  # fmt: skip
        said = run(site_packages, **planted)
        assert "ModuleNotFoundError" in said.stderr, (planted, said.stdout)
