"""The Windows kit's lock and wheels: the lock read strictly, the shipped lock complete,
and (with the real wheels, downloaded once per machine) a resolution from the kit's
wheels alone for each supported CPython, refusals of a gap or a tampered wheel, and an
install into a Windows runtime's site-packages from this Linux host."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from collector.kit.errors import KitError
from collector.kit.lock import (
    WINDOWS_PYTHONS,
    LockError,
    Pin,
    index_wheels,
    missing_wheels,
    parse_lock,
    pythons_without_wheel,
    read_lock,
    render_lock,
)
from collector.kit.wheels import CACHE_ENV, default_cache, fetch, install_into, target_options

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "deploy" / "windows" / "requirements-win.lock"
H1 = "a" * 64
H2 = "b" * 64


# The lock, read strictly.


def test_a_lock_with_comments_blank_lines_and_continuations_parses() -> None:
    text = (
        "# header\n"
        "\n"
        f"PyWin32==312 \\\n    --hash=sha256:{H1} \\\n"
        f"    --hash=sha256:{H2.upper()}\n"
        f"paho_mqtt==2.2.0 --hash=sha256:{H1}  # trailing comment\r\n"
    )
    assert parse_lock(text) == [
        Pin("pywin32", "312", frozenset({H1, H2})),
        Pin("paho-mqtt", "2.2.0", frozenset({H1})),
    ]


HASH = f"--hash=sha256:{H1}"
# (the offending line, what the refusal says); two lines go before it, so the line
# number counted is seen to be its own.
REFUSED = {
    "marker": (f"pywin32==312 ; sys_platform == 'win32' {HASH}", "environment markers"),
    "extras": (f"cryptography[ssh]==50.0.2 {HASH}", "extras"),
    "url": (f"tuf @ https://example.org/tuf-7.0.1-py3-none-any.whl {HASH}", "URLs"),
    "range": (f"psutil>=7 {HASH}", "not pinned with =="),
    "compatible-release": (f"psutil~=7.2 {HASH}", "not pinned with =="),
    "wildcard": (f"psutil==7.* {HASH}", "not pinned with =="),
    "two-clauses": (f"psutil==7.2.2,<8 {HASH}", "not pinned with =="),
    "arbitrary-equality": (f"psutil===7.2.2 {HASH}", "not pinned with =="),
    "unpinned": (f"psutil {HASH}", "not pinned with =="),
    "bad-version": (f"psutil==seven {HASH}", "not a version"),
    "huge-version": (f"psutil==1{'1' * 5000} {HASH}", "not a version"),
    "bad-name": (f"_psutil==7.2.2 {HASH}", "not a distribution name"),
    "no-hash": ("psutil==7.2.2", "has no --hash"),
    "md5": (f"psutil==7.2.2 --hash=md5:{H1[:32]}", "not sha256"),
    "short-hash": ("psutil==7.2.2 --hash=sha256:abc", "not sha256"),
    "not-hex": (f"psutil==7.2.2 --hash=sha256:{'g' * 64}", "not sha256"),
    "hash-without-equals": (f"psutil==7.2.2 --hash sha256:{H1}", "unknown option '--hash'"),
    "option-after": (f"psutil==7.2.2 {HASH} --no-binary=:all:", "unknown option '--no-binary"),
    "editable": ("-e .", "unknown option '-e'"),
    "option-line": ("--pre", "unknown option '--pre'"),
    "include": (f"-r other.txt {HASH}", "unknown option '-r'"),
    "two-pins": (f"psutil==7.2.2 click==8.5.1 {HASH}", "unexpected 'click==8.5.1'"),
    "duplicate": (f"psutil==7.2.2 {HASH}\nPSUtil==7.2.2 {HASH}", "pinned twice (first at line 3)"),
    "duplicate-normalised": (f"paho-mqtt==2.2.0 {HASH}\npaho.MQTT==2.2.0 {HASH}", "pinned twice"),
}


@pytest.mark.parametrize(("body", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_a_lock_line_outside_the_strict_form_is_refused_by_reason(body: str, reason: str) -> None:
    with pytest.raises(LockError) as refused:
        parse_lock(f"# a lock\n\n{body}\n")
    assert reason in refused.value.reason
    assert refused.value.line == 2 + len(body.splitlines())
    assert str(refused.value).startswith(f"line {refused.value.line}: ")


def test_a_refusal_inside_a_continued_pin_names_its_first_line() -> None:
    text = f"click==8.5.1 {HASH}\npsutil==7.2.2 \\\n  {HASH} \\\n  --hash=md5:x\n"
    with pytest.raises(LockError) as refused:
        parse_lock(text)
    assert refused.value.line == 2 and "md5" in refused.value.reason


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ps==1.2 \\\n#;[@:/-=hashsha256abcdef0"), max_size=200))
def test_any_text_is_a_lock_or_a_lock_error(text: str) -> None:
    try:
        pins = parse_lock(text)
    except LockError as refused:
        assert refused.line >= 1
    else:
        assert all(pin.hashes for pin in pins)


def test_a_lock_file_refused_is_named_with_its_line(tmp_path: Path) -> None:
    lock = tmp_path / "requirements-win.lock"
    lock.write_text(f"# header\npywin32==312; sys_platform == 'win32' {HASH}\n")
    with pytest.raises(LockError, match=f"^{re.escape(str(lock))}, line 2: environment markers"):
        read_lock(lock)


def test_the_rendered_lock_reads_back_as_written() -> None:
    pins = [Pin("pywin32", "312", frozenset({H2, H1})), Pin("click", "8.5.1", frozenset({H1}))]
    text = render_lock(pins)
    assert text.startswith("#") and "make windows-lock" in text
    assert parse_lock(text) == sorted(pins, key=lambda pin: pin.name)


def test_the_shipped_lock_pins_every_base_dependency_and_pywin32() -> None:
    pins = read_lock(LOCK)
    pinned = {pin.name for pin in pins}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = {
        canonicalize_name(Requirement(dep).name) for dep in project["project"]["dependencies"]
    }
    assert "pywin32" in wanted and wanted <= pinned, wanted - pinned
    assert "make windows-lock" in LOCK.read_text(encoding="utf-8")


def test_a_version_lacking_a_wheel_for_one_python_is_seen_by_the_generator() -> None:
    per_version = [f"cffi-2.1.1-cp3{minor}-cp3{minor}-win_amd64.whl" for minor in (11, 12, 13)]
    assert pythons_without_wheel(per_version) == ["3.14"]
    assert pythons_without_wheel(["cryptography-50.0.2-cp311-abi3-win_amd64.whl"]) == []
    assert pythons_without_wheel(["click-8.5.1-py3-none-any.whl"]) == []
    win32 = [
        "pywin32-312-cp314-cp314-win32.whl",
        "pywin32-312-cp311-cp311-manylinux_2_17_x86_64.whl",
    ]
    assert pythons_without_wheel(win32) == list(WINDOWS_PYTHONS)


@pytest.mark.servers
def test_the_shipped_lock_has_every_fitting_wheel_of_its_versions_on_the_index() -> None:
    # Any Windows wheel of a pinned version for CPython 3.11 to 3.14 that the index
    # serves must be one the kit may take: the lock leaves none out.
    for pin in read_lock(LOCK):
        assert pin.hashes == set(index_wheels(pin.name, pin.version).values()), pin.name


# Which wheels serve which Python: real files, named as on the index.


def _wheel(folder: Path, name: str, content: bytes) -> tuple[Path, str]:
    path = folder / name
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def test_missing_wheels_follows_tags_versions_and_hashes(tmp_path: Path) -> None:
    own, own_hash = _wheel(tmp_path, "pywin32-312-cp312-cp312-win_amd64.whl", b"own")
    abi3, abi3_hash = _wheel(tmp_path, "psutil-7.2.2-cp37-abi3-win_amd64.whl", b"abi3")
    pure, pure_hash = _wheel(tmp_path, "paho_mqtt-2.2.0-py3-none-any.whl", b"pure")
    linux, linux_hash = _wheel(
        tmp_path, "msgspec-0.23.0-cp312-cp312-manylinux_2_17_x86_64.whl", b"l"
    )
    older, older_hash = _wheel(tmp_path, "click-8.5.0-py3-none-any.whl", b"older")
    pins = [
        Pin("pywin32", "312", frozenset({own_hash})),
        Pin("psutil", "7.2.2", frozenset({abi3_hash})),
        Pin("paho-mqtt", "2.2.0", frozenset({pure_hash})),
        Pin("msgspec", "0.23.0", frozenset({linux_hash})),
        Pin("click", "8.5.1", frozenset({older_hash})),
    ]
    wheels = [own, abi3, pure, linux, older]
    assert missing_wheels(pins, wheels, "3.12") == ["msgspec", "click"]
    assert missing_wheels(pins, wheels, "3.14") == ["pywin32", "msgspec", "click"]
    # The right name, version and tags, but bytes the lock does not know.
    tampered = [Pin("pywin32", "312", frozenset({H1})), *pins[1:3]]
    assert missing_wheels(tampered, wheels, "3.12") == ["pywin32"]
    with pytest.raises(ValueError, match=r"3\.x"):
        missing_wheels(pins, wheels, "312")


def test_the_wheel_cache_is_per_machine_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert default_cache() == Path.home() / ".cache" / "commune-monitor" / "windows-wheels"
    monkeypatch.setenv(CACHE_ENV, "/srv/kit-cache")
    assert default_cache() == Path("/srv/kit-cache")


# The real wheels: downloaded once per machine into the cache, then offline.


@pytest.fixture(scope="session")
def kit_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("kit-wheels")
    fetch(LOCK, read_lock(LOCK), dest, cache=default_cache())
    return dest


def _copy(wheels: Path, to: Path, leave_out: str = "") -> Path:
    to.mkdir()
    for path in wheels.iterdir():
        if path.name != leave_out:
            shutil.copyfile(path, to / path.name)
    return to


@pytest.mark.servers
@pytest.mark.parametrize("python", WINDOWS_PYTHONS)
def test_each_python_resolves_from_the_kit_wheels_alone(
    kit_wheels: Path, tmp_path: Path, python: str
) -> None:
    # What a PC with its own CPython does offline (the PowerShell path), with
    # dependencies resolved, not --no-deps: the lock must be closed under them.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "install",
         "--dry-run", "--quiet", "--report", "-", "--no-index", "--find-links", str(kit_wheels),
         *target_options(python), "--target", str(tmp_path / "target"), "--require-hashes",
         "-r", str(LOCK)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    resolved = {
        (canonicalize_name(item["metadata"]["name"]), item["metadata"]["version"])
        for item in report["install"]
    }
    assert resolved == {(pin.name, pin.version) for pin in read_lock(LOCK)}
    sources = {
        Path(item["download_info"]["url"].removeprefix("file://")).parent
        for item in report["install"]
    }
    assert sources == {kit_wheels}


@pytest.mark.servers
def test_a_python_without_a_wheel_of_a_pin_is_refused_naming_both(
    kit_wheels: Path, tmp_path: Path
) -> None:
    house = _copy(kit_wheels, tmp_path / "house", leave_out="pywin32-312-cp314-cp314-win_amd64.whl")
    with pytest.raises(KitError) as refused:
        fetch(LOCK, read_lock(LOCK), tmp_path / "kit", wheelhouse=house)
    message = str(refused.value)
    assert "no wheel of pywin32 312 for CPython 3.14 (win_amd64)" in message
    assert "3.13" not in message and message.count("\n") == 0


@pytest.mark.servers
def test_a_tampered_wheel_is_refused_by_name(kit_wheels: Path, tmp_path: Path) -> None:
    house = _copy(kit_wheels, tmp_path / "house")
    target = house / "tuf-7.0.1-py3-none-any.whl"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(KitError, match=r"tuf-7\.0\.1-py3-none-any\.whl .*damaged or substituted"):
        fetch(LOCK, read_lock(LOCK), tmp_path / "kit", wheelhouse=house)
    assert not (tmp_path / "kit" / target.name).exists()


@pytest.mark.servers
def test_a_wheelhouse_gives_only_the_locked_wheels(kit_wheels: Path, tmp_path: Path) -> None:
    house = _copy(kit_wheels, tmp_path / "house")
    (house / "pywin32-311-cp312-cp312-win_amd64.whl").write_bytes(b"another version")
    (house / "pywin32-312-cp312-cp312-win32.whl").write_bytes(b"another platform")
    (house / "README.txt").write_text("wheels for the kit")
    taken = fetch(LOCK, read_lock(LOCK), tmp_path / "kit", wheelhouse=house)
    assert [path.name for path in taken] == sorted(path.name for path in kit_wheels.iterdir())


@pytest.mark.servers
def test_install_into_a_windows_site_packages(kit_wheels: Path, tmp_path: Path) -> None:
    site = tmp_path / "runtime" / "Lib" / "site-packages"
    install_into(site, "3.12", LOCK, kit_wheels)
    for needed in ("pywin32.pth", "win32", "pywin32_system32/pythoncom312.dll",
                   "pywin32_system32/pywintypes312.dll", "psutil", "paho/mqtt", "tuf",
                   "cryptography", "_cffi_backend.cp312-win_amd64.pyd"):  # fmt: skip
        assert (site / needed).exists(), needed
    assert not (site / "bin").exists()
    assert not list(site.rglob("*.pyc"))  # the host's bytecode would be for its version


@pytest.mark.servers
def test_install_into_refuses_a_kit_without_that_pythons_pywin32(
    kit_wheels: Path, tmp_path: Path
) -> None:
    wheels = _copy(
        kit_wheels, tmp_path / "wheels", leave_out="pywin32-312-cp313-cp313-win_amd64.whl"
    )
    with pytest.raises(KitError, match=r"pip failed installing the wheels for CPython 3\.13"):
        install_into(tmp_path / "site", "3.13", LOCK, wheels)


@pytest.mark.servers
def test_a_damaged_file_in_the_cache_is_fetched_again(kit_wheels: Path, tmp_path: Path) -> None:
    cache = _copy(kit_wheels, tmp_path / "cache")
    damaged = cache / "paho_mqtt-2.2.0-py3-none-any.whl"
    good = damaged.read_bytes()
    damaged.write_bytes(good[:-10])  # a download cut short
    taken = fetch(LOCK, read_lock(LOCK), tmp_path / "kit", cache=cache)
    assert damaged.read_bytes() == good
    assert (tmp_path / "kit" / damaged.name).read_bytes() == good
    assert len(taken) == len(list(kit_wheels.iterdir()))
