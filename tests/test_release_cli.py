"""commune-collector release ...: the key ceremony and a release's life through the
command line, as deploy/OPERATIONS.md tells the release manager to run it."""

from __future__ import annotations

import hashlib
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.update import bundle
from collector.cli.main import main
from collector.cli.release import release_group
from collector.release.repository import Repository
from tests.releases import bundle_of


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "var" / "state.sqlite"}"\n')
    (tmp_path / "var").mkdir()
    return path


def release(config: Path, *arguments: str) -> Result:
    return CliRunner().invoke(main, ["release", arguments[0], "-c", str(config), *arguments[1:]])


def keygen(folder: Path, role: str, name: str) -> Path:
    path = folder / f"{name}.key"
    result = CliRunner().invoke(main, ["release", "keygen", role, str(path)])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def ceremony(tmp_path: Path, config: Path) -> dict[str, Path]:
    """Three root keys (2 of 3), a targets key; root-c's holder brings only its .pub."""
    usb = tmp_path / "usb"
    keys = {name: keygen(usb, "root", name) for name in ("root-a", "root-b", "root-c")}
    keys["targets"] = keygen(usb, "targets", "targets")
    result = release(
        config, "init",
        "--root-key", str(keys["root-a"]), "--root-key", str(keys["root-b"]),
        "--root-key", f"{keys['root-c']}.pub", "--root-threshold", "2",
        "--targets-key", str(keys["targets"]),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "published: 1.targets.json, 1.root.json, 1.snapshot.json, timestamp.json" in (
        result.output
    )
    return keys


@pytest.mark.parametrize("command", sorted(release_group.commands))
def test_every_release_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(main, ["release", command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"commune-collector release {command}" in result.output


def test_keygen_writes_a_private_key_and_never_over_one(tmp_path: Path) -> None:
    path = keygen(tmp_path, "root", "root-a")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Path(f"{path}.pub").exists()
    again = CliRunner().invoke(main, ["release", "keygen", "root", str(path)])
    assert again.exit_code == 1 and "never overwritten" in again.output
    assert "Traceback" not in again.output


def test_a_release_from_build_to_revocation(
    tmp_path: Path, config: Path, ceremony: dict[str, Path]
) -> None:
    out = tmp_path / "commune-agent-0.9.1.zip"
    built = CliRunner().invoke(main, ["release", "build", "--version", "0.9.1", "-o", str(out)])
    assert built.exit_code == 0, built.output
    assert bundle.read_manifest(out).version == "0.9.1"
    with zipfile.ZipFile(out) as archive:
        assert '__version__ = "0.9.1"' in archive.read("agent/__init__.py").decode()
    staged = release(config, "add", str(out))
    assert staged.exit_code == 0, staged.output
    assert "1 more signature(s) of targets's keys" in staged.output
    listed = release(config, "list")
    assert "no release signed yet" in listed.output
    assert "staged targets v2: waiting for signatures" in listed.output
    signed = release(config, "sign", "--key", str(ceremony["targets"]))
    assert signed.exit_code == 0, signed.output
    assert "published: 2.targets.json, 2.snapshot.json, timestamp.json" in signed.output
    # The key holder sees what they sign, whoever staged it: each release and its hash.
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"to sign: commune-agent-0.9.1.zip sha256 {digest} ({out.stat().st_size} B)" in (
        signed.output
    )
    listed = release(config, "list")
    assert listed.exit_code == 0
    assert listed.output.startswith("0.9.1 ")
    assert f"{out.stat().st_size} B" in listed.output
    assert "root      v1     expires" in listed.output and "2 of [" in listed.output
    revoked = release(
        config, "revoke", "0.9.1", "--why", "breaks on Windows 7", "--key", str(ceremony["targets"])
    )
    assert revoked.exit_code == 0, revoked.output
    assert "to sign: commune-agent-0.9.1.zip removed" in revoked.output
    listed = release(config, "list")
    assert "no release signed yet" in listed.output
    assert "0.9.1        revoked" in listed.output and "breaks on Windows 7" in listed.output


def test_user_errors_are_one_line_without_a_traceback(
    tmp_path: Path, config: Path, ceremony: dict[str, Path]
) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_text("no")
    for arguments, message in (
        (("add", str(junk)), "not an agent bundle"),
        (("sign", "--key", str(ceremony["targets"])), "nothing is staged"),
        (("revoke", "5.0"), "not in the targets"),
        (("sign", "--key", str(tmp_path / "missing.key")), "cannot read the key file"),
        (
            (
                "init",
                "--root-key",
                str(ceremony["root-a"]),
                "--targets-key",
                str(ceremony["targets"]),
            ),
            "a release repository is here already",
        ),
    ):
        result = release(config, *arguments)
        assert result.exit_code == 1, (arguments, result.output)
        assert message in result.output and "Traceback" not in result.output
    bad_version = CliRunner().invoke(main, ["release", "build", "--version", "v1"])
    assert bad_version.exit_code == 2 and "dot-separated numbers" in bad_version.output


def test_list_before_init_says_what_to_do(config: Path) -> None:
    result = release(config, "list")
    assert result.exit_code == 1 and "release init" in result.output


def test_rotating_root_and_targets_with_the_command_line(
    tmp_path: Path, config: Path, ceremony: dict[str, Path]
) -> None:
    usb = tmp_path / "usb2"
    new = {name: keygen(usb, "root", name) for name in ("root-d", "root-e", "root-f")}
    arguments = [a for name in new for a in ("--new-key", str(new[name]))]
    rotated = release(config, "rotate", "--role", "root", *arguments, "--threshold", "2",
                      "--key", str(ceremony["root-a"]))  # fmt: skip
    assert rotated.exit_code == 0, rotated.output
    # The new keys sign as they are given: only one more old signature is missing.
    assert "1 more signature(s) of root v1's keys" in rotated.output
    done = release(config, "sign", "--key", str(ceremony["root-b"]))
    assert "published: 2.root.json" in done.output, done.output
    targets_2 = keygen(usb, "targets", "targets-2")
    rotated = release(config, "rotate", "--role", "targets", "--new-key", str(targets_2),
                      "--key", str(new["root-d"]), "--key", str(new["root-e"]))  # fmt: skip
    assert "published: 2.targets.json, 3.root.json" in rotated.output, rotated.output
    online = release(config, "rotate", "--role", "snapshot",
                     "--key", str(new["root-d"]), "--key", str(new["root-f"]))  # fmt: skip
    assert "new snapshot key" in online.output and "published: 4.root.json" in online.output
    repo = Repository(tmp_path / "var" / "releases")
    root = repo.root().signed
    assert root.version == 4 and root.roles["root"].threshold == 2
    assert not (tmp_path / "var" / "release-snapshot.key.next").exists()
    added = release(config, "add", str(bundle_of(tmp_path, "1.2")), "--key", str(targets_2))
    assert "published: 3.targets.json" in added.output, added.output
    assert repo.signed_versions() == {"1.2"}


def test_a_first_root_waiting_for_a_holder_is_listed_then_published(
    tmp_path: Path, config: Path
) -> None:
    usb = tmp_path / "usb"
    a, b = keygen(usb, "root", "root-a"), keygen(usb, "root", "root-b")
    targets = keygen(usb, "targets", "targets")
    made = release(config, "init", "--root-key", str(a), "--root-key", f"{b}.pub",
                   "--root-threshold", "2", "--targets-key", str(targets))  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "staged root v1: 1 more signature(s) of new root's keys" in made.output
    listed = release(config, "list")
    assert listed.exit_code == 0, listed.output
    assert "staged root v1: waiting for signatures" in listed.output
    assert "staged targets v1: complete" in listed.output
    signed = release(config, "sign", "--key", str(b))
    assert "published: 1.targets.json, 1.root.json" in signed.output, signed.output


def test_a_repository_it_cannot_write_to_is_named_not_a_traceback(
    tmp_path: Path, config: Path, ceremony: dict[str, Path]
) -> None:
    staged = tmp_path / "var" / "releases" / "staged"
    shutil.rmtree(staged, ignore_errors=True)
    staged.write_text("not a folder")  # a hand-made mess, a full or read-only disk alike
    result = release(config, "add", str(bundle_of(tmp_path, "1.3")))
    assert result.exit_code == 1 and f"{staged}: File exists" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ('timestamp_expiry = "8d"', "releases.timestamp_expiry"),
        ('timestamp_expiry = "10m"', "releases.timestamp_expiry"),
        ('targets_expiry = "400d"', "releases.targets_expiry"),
        ('retry_after = "0s"', "releases.retry_after"),
        ("max_downloads = 0", "releases.max_downloads"),
        ('online_keys_dir = "no-such-folder"', "releases.online_keys_dir"),
        ("wrong_key = 1", "wrong_key"),
    ],
)
def test_a_wrong_releases_section_is_refused_by_name(
    tmp_path: Path, section: str, key: str
) -> None:
    from agent.configtypes import ConfigError
    from collector.config import load_collector_config

    path = tmp_path / "collector.toml"
    path.write_text(f"[releases]\n{section}\n")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as caught:
        load_collector_config(path)
    assert str(path) in str(caught.value)


def test_the_releases_section_defaults_beside_the_store(tmp_path: Path) -> None:
    from collector.config import load_collector_config

    path = tmp_path / "collector.toml"
    path.write_text('[store]\npath = "var/state.sqlite"\n[releases]\ntimestamp_expiry = "12h"\n')
    config = load_collector_config(path)
    assert config.releases.repository_path(config.store.path) == tmp_path / "var" / "releases"
    assert config.releases.keys_dir(config.store.path) == tmp_path / "var"
    assert config.releases.expiries().timestamp.total_seconds() == 12 * 3600


def test_targets_and_root_signed_again_with_the_same_keys_before_expiry(
    tmp_path: Path, config: Path, ceremony: dict[str, Path]
) -> None:
    """As OPERATIONS.md says: a new targets version and a new root version, the keys
    unchanged, each with a fresh expiry."""
    repo = Repository(tmp_path / "var" / "releases")
    before_targets, before_root = repo.targets().signed, repo.root().signed
    roots = ["--key", str(ceremony["root-a"]), "--key", str(ceremony["root-b"])]
    targets = release(config, "rotate", "--role", "targets",
                      "--new-key", str(ceremony["targets"]), *roots)  # fmt: skip
    assert "published: 2.targets.json, 2.root.json" in targets.output, targets.output
    same = [a for name in ("root-a", "root-b", "root-c")
            for a in ("--new-key", f"{ceremony[name]}.pub")]  # fmt: skip
    root = release(config, "rotate", "--role", "root", *same, "--threshold", "2", *roots)
    assert "published: 3.root.json" in root.output, root.output
    after_targets, after_root = repo.targets().signed, repo.root().signed
    assert after_targets.targets == before_targets.targets
    assert after_targets.expires >= before_targets.expires
    assert after_root.roles == before_root.roles and after_root.version == 3


def test_a_release_signed_on_a_machine_away_from_the_collector(
    tmp_path: Path, config: Path, ceremony: dict[str, Path]
) -> None:
    """The offline keys never touch the collector host: the release manager copies the
    repository's metadata to an offline machine, adds and signs there (no online keys:
    nothing but targets), carries the new files back, and the collector's online signer
    publishes them. An agent sees the release signed by the offline key."""
    from collector.release.online import OnlineSigner

    served = tmp_path / "var" / "releases"
    laptop = tmp_path / "laptop"
    shutil.copytree(served / "metadata", laptop / "releases" / "metadata")
    laptop_config = laptop / "collector.toml"
    laptop_config.write_text(
        f'[store]\npath = "{laptop / "state.sqlite"}"\n[releases]\npath = "{laptop / "releases"}"\n'
    )
    made = bundle_of(tmp_path, "1.4.0")
    signed = release(laptop_config, "add", str(made), "--key", str(ceremony["targets"]))
    assert signed.exit_code == 0, signed.output
    assert "snapshot and timestamp not signed here" in signed.output
    # Back on the collector: only the new files, the metadata it did not have and the bundle.
    new = sorted(
        p.name for p in (laptop / "releases" / "metadata").iterdir()
        if not (served / "metadata" / p.name).exists()
    )  # fmt: skip
    assert new == ["2.targets.json"], new
    shutil.copy2(laptop / "releases" / "metadata" / new[0], served / "metadata" / new[0])
    for target in (laptop / "releases" / "targets").iterdir():
        shutil.copy2(target, served / "targets" / target.name)
    repo = Repository(served)
    assert repo.snapshot().signed.meta["targets.json"].version == 1  # type: ignore[union-attr]
    OnlineSigner(repo, tmp_path / "var").tick()  # the running collector, within a minute
    assert repo.snapshot().signed.meta["targets.json"].version == 2  # type: ignore[union-attr]
    assert "1.4.0" in repo.signed_versions()
    listed = release(config, "list")
    assert "1.4.0" in listed.output, listed.output
