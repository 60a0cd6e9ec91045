"""The MSI's setup step (``launcher/msi_setup.py``), run here as the MSI runs it on a PC:
from the launcher folder of a home laid out as the MSI's files are (``kit.stage``), with
the Python beside it, against a real collector and broker for the enrollment.

What Windows alone does (the service's registration, msiexec's rollback calling
``rollback``) is not run here; the tables that make it call these steps are asserted
in ``test_windows_msi``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.update import bundle, process
from agent.update.lock import UpdateLock
from agent.update.state import Home
from collector.kit import stage
from tests.releases import bundle_of, make_releases
from tests.servers import REPO
from tests.test_rollout import Site, new_token, site  # noqa: F401 (the fixture)

VERSION = "0.3.0"
#: Well formed, unknown to the collector: refused by it, not by the agent's own check.
UNKNOWN_TOKEN = "0badc0de." + "x" * 43


@pytest.fixture(scope="module")
def root_json(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    releases = make_releases(tmp_path_factory.mktemp("releases"))
    return (releases.repo.path / "metadata" / "root.json").read_bytes()


def msi_home(
    root: Path, server: str, root_json: bytes, ca: bytes | None, version: str = VERSION
) -> Home:
    """The MSI's files of one kit, as ``msiexec`` leaves them before the setup step."""
    home = root / "Program Files" / "commune-agent"
    stage.lay_out_launcher(home)
    facts = stage.KitFacts(version, server, "dong-nai", root_json, ca)
    stage.lay_out_kit(home, facts, REPO)
    return Home(home)


def setup(
    home: Home, command: str, *arguments: str, token: str = ""
) -> subprocess.CompletedProcess[str]:
    line = [sys.executable, str(home.root / "launcher" / "msi_setup.py"), command, *arguments]
    if token:
        line += ["--token", token]
    return subprocess.run(line, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture
def pc(site: Site, tmp_path: Path, root_json: bytes) -> Iterator[tuple[Home, Path, str]]:  # noqa: F811
    server = f"https://localhost:{site.collector.api_port}"
    home = msi_home(tmp_path / "pc", server, root_json, site.pki.ca.read_bytes())
    yield home, tmp_path / "pc" / "ProgramData" / "commune-agent" / "agent.toml", server


def install(
    home: Home, config: Path, token: str = "", *extra: str
) -> subprocess.CompletedProcess[str]:
    return setup(home, "install", "--config", str(config), "--agent-id", "pc-01",
                 "--commune", "la-nga", *extra, token=token)  # fmt: skip


def test_a_first_install_lays_out_the_home_trusts_the_root_and_enrolls(
    site: Site,  # noqa: F811
    pc: tuple[Home, Path, str],
    root_json: bytes,
) -> None:
    home, config, _server = pc
    token, _ = new_token(site)
    done = install(home, config, token)
    assert done.returncode == 0, done.stderr + site.collector.log[-1500:]
    assert home.current() == VERSION and home.floor() == VERSION
    assert bundle.verify_tree(home.version_dir(VERSION)) == []
    assert (home.root / "tuf" / "root.json").read_bytes() == root_json
    assert 'id = "pc-01"' in config.read_text() or "pc-01" in config.read_text()
    assert (config.parent / "collector-ca.pem").exists()
    log = (home.state / "install.log").read_text()
    assert "enrolled dong-nai/la-nga/pc-01" in log
    assert token not in log + done.stdout + done.stderr  # never the token


def test_a_rerun_repairs_a_damaged_version_and_keeps_the_identity(
    site: Site,  # noqa: F811
    pc: tuple[Home, Path, str],
) -> None:
    home, config, _server = pc
    token, _ = new_token(site)
    assert install(home, config, token).returncode == 0
    password = (config.parent / "mqtt-password").read_bytes()
    eaten = home.version_dir(VERSION) / "agent" / "cli.py"
    eaten.write_text("# eaten by anti-malware\n")
    done = install(home, config)  # the same command without the token: a repair
    assert done.returncode == 0, done.stderr
    assert bundle.verify_tree(home.version_dir(VERSION)) == []
    assert (config.parent / "mqtt-password").read_bytes() == password
    assert "already enrolled" in done.stdout


def test_a_pc_that_updated_itself_further_keeps_its_version_and_a_newer_kit_moves_on(
    site: Site,  # noqa: F811
    pc: tuple[Home, Path, str],
    tmp_path: Path,
    root_json: bytes,
) -> None:
    home, config, server = pc
    token, _ = new_token(site)
    assert install(home, config, token).returncode == 0
    bundle.unpack(bundle_of(tmp_path, "0.4.0"), home.versions, "0.4.0")
    home.set_previous(VERSION)
    home.set_current("0.4.0")  # as the launcher leaves a committed self-update
    home.raise_floor("0.4.0")
    done = install(home, config)
    assert done.returncode == 0, done.stderr
    assert (home.current(), home.previous()) == ("0.4.0", VERSION)
    assert "kept version 0.4.0" in done.stdout
    newer = msi_home(tmp_path / "pc", server, root_json, None, version="0.5.0")  # an upgrade
    done = install(newer, config)
    assert done.returncode == 0, done.stderr
    assert (home.current(), home.previous(), home.floor()) == ("0.5.0", "0.4.0", "0.5.0")
    assert sorted(p.name for p in home.versions.iterdir()) == [VERSION, "0.4.0", "0.5.0"]


def test_a_refused_enrollment_is_an_error_and_the_rollback_leaves_the_pc_as_it_was(
    site: Site,  # noqa: F811
    pc: tuple[Home, Path, str],
) -> None:
    home, config, _server = pc
    done = install(home, config, UNKNOWN_TOKEN)
    assert done.returncode == 1
    assert "enrollment with" in done.stderr and "token" in done.stderr.lower()
    assert home.current() == VERSION  # laid out before the refusal...
    assert setup(home, "rollback").returncode == 0  # ...which the MSI's rollback undoes
    assert home.current() is None and home.pending() is None
    assert not config.exists()
    assert "0badc0de" not in (home.state / "install.log").read_text()


def test_an_unenrolled_pc_without_a_token_and_an_unreachable_collector_are_refused_by_name(
    pc: tuple[Home, Path, str],
) -> None:
    home, config, _server = pc
    done = install(home, config)
    assert done.returncode == 1 and "ENROLL_TOKEN" in done.stderr
    done = install(home, config, UNKNOWN_TOKEN, "--server", "https://127.0.0.1:9")
    assert done.returncode == 3, done.stderr  # the MSI fails; the log says run it again


def test_an_update_in_progress_holds_off_the_installer_and_the_installer_holds_off_updates(
    pc: tuple[Home, Path, str],
) -> None:
    home, config, _server = pc
    with UpdateLock(home.state) as held:
        assert held.try_acquire()
        for command in ("install", "quiesce"):
            done = setup(home, command, "--config", str(config), "--wait", "1")
            assert done.returncode == 4, done.stderr
            assert "update is still being installed" in done.stderr
        assert home.current() is None  # nothing touched while the update ran
    assert setup(home, "quiesce", "--wait", "1").returncode == 0
    with UpdateLock(home.state) as installer:  # the installer's turn: updates wait
        assert installer.try_acquire()
        staged = process.main(["--home", str(home.root), "--config", str(config),
                               "--version", "0.4.0", "--url", "https://127.0.0.1:9"])  # fmt: skip
        assert staged == 1 and home.pending() is None


def test_the_home_is_laid_out_from_the_launchers_own_modules() -> None:
    """msi_setup runs from launcher/ with only the launcher's copy of agent.update: it
    imports nothing else of the agent (no third-party package either)."""
    source = (REPO / "agent" / "update" / "msi_setup.py").read_text()
    imports = {
        line.split()[1]
        for line in source.splitlines()
        if line.startswith(("from ", "import ")) and not line.startswith("from __future__")
    }
    from agent.update import install as installing

    allowed = {f"agent.update.{name[:-3]}" for name in installing.LAUNCHER_MODULES} | {
        "agent.update"
    }
    outside = {name for name in imports if name.startswith("agent") and name not in allowed}
    assert outside == set(), outside


def test_a_token_file_enrolls_off_the_command_line_and_an_oversized_one_is_refused(
    site: Site,  # noqa: F811
    pc: tuple[Home, Path, str],
    tmp_path: Path,
) -> None:
    """``ENROLL_TOKEN_FILE``: process-creation audit logs keep command lines; a file's
    first line keeps the token out of them (msiexec's and the setup step's)."""
    home, config, _server = pc
    token, _ = new_token(site)
    oversized = tmp_path / "big.txt"
    oversized.write_text(token + "\n" + "x" * 5000)
    done = install(home, config, "", "--token-file", str(oversized))
    assert done.returncode == 1 and "over 4096 bytes" in done.stderr
    token_file = tmp_path / "token.txt"
    token_file.write_text("\ufeff" + token + "\r\n", encoding="utf-8")  # Notepad's BOM and CRLF
    done = install(home, config, "", "--token-file", str(token_file))
    assert done.returncode == 0, done.stderr + site.collector.log[-1500:]
    assert "enrolled dong-nai/la-nga/pc-01" in done.stdout
    assert token not in (home.state / "install.log").read_text() + done.stdout + done.stderr


def test_a_rollback_applies_only_its_own_transactions_undo(
    site: Site,  # noqa: F811
    pc: tuple[Home, Path, str],
) -> None:
    """The undo file a committed install kept is not a later transaction's to apply:
    a repair that fails before its own setup step must not undo the first install."""
    home, config, _server = pc
    token, _ = new_token(site)
    first = install(home, config, token, "--transaction", "first")
    assert first.returncode == 0, first.stderr
    done = setup(home, "rollback", "--transaction", "a later repair")
    assert done.returncode == 0 and "another transaction's" in done.stdout
    assert home.current() == VERSION
    assert setup(home, "rollback", "--transaction", "first").returncode == 0
    assert home.current() is None


def test_the_config_folder_is_made_the_pcs_own_and_whatever_a_user_left_there_moved_aside(
    tmp_path: Path,
) -> None:
    """Any user may create C:\\ProgramData\\commune-agent, or a junction there, before
    the install. The owners and the ACL are Windows' (pywin32, icacls): here their seams;
    the links, the moves and the walk are real."""
    from agent.update import datafolder

    system, user = "S-1-5-18", "S-1-5-21-1004336348-1177238915-682003330-1001"
    planted: set[str] = set()
    ran: list[list[str]] = []
    made: list[Path] = []
    lines: list[str] = []

    def make_private(path: Path) -> None:
        path.mkdir(mode=0o700)  # FileExistsError when taken, as CreateDirectory's 183
        made.append(path)

    def run(command: list[str]) -> int:
        ran.append(command)
        return 0

    platform = datafolder.Platform(
        owner_of=lambda path: user if path.name in planted else system,
        is_link=os.path.islink, make_private=make_private, run=run,
    )  # fmt: skip
    data = tmp_path / "ProgramData"
    folder = data / "commune-agent"
    data.mkdir()

    def asides() -> list[Path]:
        return sorted(p for p in data.iterdir() if p.name.startswith("commune-agent.untrusted-"))

    # Nothing there: made private in one call, nothing to restrict.
    datafolder.secure(folder, platform, lines.append)
    assert made == [folder] and ran == [] and asides() == []
    # A folder a user made (owner), a junction to a user's folder, a planted local.toml:
    # each moved aside whole (the link itself, its target untouched), made anew.
    elsewhere = tmp_path / "Users" / "Public" / "agent"
    elsewhere.mkdir(parents=True)
    (elsewhere / "local.toml").write_text('[checks.antivirus]\npowershell = "evil.ps1"\n')

    def planted_config() -> None:
        folder.mkdir()
        (folder / "local.toml").write_text("x")

    def planted_link() -> None:
        folder.mkdir()
        (folder / "outbox").symlink_to(elsewhere)

    cases = [
        ("commune-agent", folder.mkdir, "is owned by"),
        ("", lambda: folder.symlink_to(elsewhere, target_is_directory=True), "is a link"),
        ("local.toml", planted_config, "holds local.toml"),
        ("", planted_link, "holds a link"),
    ]
    for count, (owned_by_user, plant, said) in enumerate(cases, start=1):
        if folder.exists() or folder.is_symlink():
            folder.rmdir()
        planted.clear()
        planted.add(owned_by_user)
        plant()
        datafolder.secure(folder, platform, lines.append)
        assert said in lines[-1], (said, lines[-1])
        assert folder.is_dir() and not folder.is_symlink() and list(folder.iterdir()) == []
        assert len(asides()) == count
    assert (elsewhere / "local.toml").exists() and ran == []  # the target was never touched
    assert any((aside / "local.toml").exists() for aside in asides())
    # The PC's own folder with its config: kept, restricted first, then owned by SYSTEM
    # down the tree without following links; never reset to inherited entries.
    planted.clear()
    (folder / "agent.toml").write_text("ours")
    datafolder.secure(folder, platform, lines.append)
    assert (folder / "agent.toml").read_text() == "ours"
    assert [command[2] for command in ran] == ["/inheritance:r", "/setowner"]
    assert "/L" in ran[1] and not any("/reset" in command for command in ran)
    # Made again by someone between the move and the creation: refused, by name.
    planted.add("commune-agent")
    taken = datafolder.Platform(
        owner_of=platform.owner_of, is_link=os.path.islink,
        make_private=lambda path: (_ for _ in ()).throw(FileExistsError(str(path))), run=run,
    )  # fmt: skip
    with pytest.raises(datafolder.Untrusted, match="made again by someone else"):
        datafolder.secure(folder, taken, lines.append)
    # icacls failing on the PC's own folder: refused, not half done silently.
    planted.clear()
    folder.mkdir()
    failing = datafolder.Platform(platform.owner_of, os.path.islink, make_private, lambda _c: 5)
    with pytest.raises(datafolder.Untrusted, match="could not restrict"):
        datafolder.secure(folder, failing, lines.append)
