"""The MSI's setup step (``launcher/msi_setup.py``), run here as the MSI runs it on a PC:
from the launcher folder of a home laid out as the MSI's files are (``kit.stage``), with
the Python beside it, against a real collector and broker for the enrollment.

What Windows alone does (the service's registration, msiexec's rollback calling
``rollback``) is not run here; the tables that make it call these steps are asserted
in ``test_windows_msi``.
"""

from __future__ import annotations

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


def test_the_config_folder_is_taken_over_before_use_and_a_planted_config_is_refused(
    tmp_path: Path,
) -> None:
    """Any user may create C:\\ProgramData\\commune-agent before the install. The owner
    check and the ACL commands are Windows' (pywin32, icacls): here their seams."""
    from agent.update import msi_setup

    lines: list[str] = []
    ran: list[list[str]] = []

    def run(command: list[str]) -> int:
        ran.append(command)
        return 0

    folder = tmp_path / "ProgramData" / "commune-agent"
    config = folder / "agent.toml"
    folder.mkdir(parents=True)
    config.write_text('collector = "https://attacker.example"\n')
    user = "S-1-5-21-1004336348-1177238915-682003330-1001"
    with pytest.raises(msi_setup.Refused, match="not written by this installer"):
        msi_setup.take_over(config, lambda _path: user, run, lines.append)
    assert ran == [] and config.exists()  # refused before anything ran
    msi_setup.take_over(config, lambda _path: "S-1-5-18", run, lines.append)  # a real install's
    assert [command[2] for command in ran] == ["/setowner", "/reset", "/inheritance:r"]
    assert all(command[1] == str(folder) for command in ran)
    config.unlink()
    (folder / "outbox.sqlite").write_bytes(b"planted")
    msi_setup.take_over(config, lambda _path: user, run, lines.append)
    assert not folder.exists() and "moved aside" in lines[-1]
    [aside] = (tmp_path / "ProgramData").iterdir()
    assert (aside / "outbox.sqlite").read_bytes() == b"planted"
    ran.clear()
    folder.mkdir()
    msi_setup.take_over(config, lambda _path: user, lambda _c: 5, lines.append) if False else None
    with pytest.raises(msi_setup.Refused, match="could not take over"):
        msi_setup.take_over(config, lambda _path: user, lambda _command: 5, lines.append)
