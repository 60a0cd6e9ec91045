"""The Linux install as a new user does it: the README's steps run as written (under a
temporary root, up to the point that needs a running systemd), the wheel in a fresh venv
off PATH, and the units it prints verified by systemd-analyze, their ExecStart run.

systemd-analyze verify (Debian's systemd package) checks a unit without a running
systemd: a command that does not exist or is not executable fails it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import REPO

#: No venv of ours on PATH: a `commune-agent` found there would be the wrong one.
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def readme_steps() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- linux-install", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("   #", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    """Where /opt and /etc go: a directory others may traverse, as / is."""
    made = Path(tempfile.mkdtemp(prefix="commune-install-"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="module")
def checkout(root: Path) -> Path:
    """A copy of the repository to build in (the build writes next to the sources)."""
    copy = root / "src"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "run", "test-artifacts", "__pycache__", "*.egg-info", "build", "dist"
        ),
    )
    return copy


def run(command: str, root: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A README line, with /opt and /etc moved under ``root``, python3 being this one."""
    line = command.replace("/opt/", f"{root}/opt/").replace("/etc/", f"{root}/etc/")
    words = shlex.split(line)
    if words[0] == "python3":
        words[0] = sys.executable
    environment = {**os.environ, "PATH": CLEAN_PATH}
    environment.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        words, cwd=cwd, capture_output=True, text=True, env=environment, timeout=600, check=False
    )


def verify(unit_text: str, directory: Path, name: str) -> list[str]:
    """systemd-analyze verify on the unit; its ExecStart as words."""
    directory.mkdir(parents=True, exist_ok=True)
    unit = directory / f"{name}.service"
    unit.write_text(unit_text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not executable" not in result.stderr
    match = re.search(r"^ExecStart=(.+)$", unit_text, re.M)
    assert match
    return shlex.split(match.group(1))


def test_the_readmes_linux_steps_install_an_agent_whose_unit_runs(
    root: Path, checkout: Path
) -> None:
    steps = readme_steps()
    assert steps[-1].startswith("/opt/commune-agent/venv/bin/commune-agent install-service")
    for step in steps[:-1]:
        result = run(step, root, checkout)
        assert result.returncode == 0, (step, result.stdout[-2000:], result.stderr[-2000:])
    # The last step needs a running systemd to enable the unit: --print, which changes nothing.
    printed = run(steps[-1] + " --print", root, checkout)
    assert printed.returncode == 0, printed.stderr
    exec_start = verify(printed.stdout, root / "units", "commune-agent")
    venv = root / "opt" / "commune-agent" / "venv"
    # This very installation: the venv's program, not a symlink's target outside it.
    assert exec_start[0] == str(venv / "bin" / "commune-agent")
    assert exec_start[1:] == ["run", "--config", str(root / "etc/commune-agent/agent.toml")]
    assert printed.stderr == ""  # the service user can read all of it: nothing to warn about
    help_text = subprocess.run(
        [exec_start[0], "run", "--help"],
        capture_output=True,
        text=True,
        env={"PATH": CLEAN_PATH},
        check=False,
    )
    assert help_text.returncode == 0 and "Run the agent until stopped" in help_text.stdout


def test_a_venv_the_service_user_cannot_reach_is_said_before_anything_is_written(
    root: Path,
) -> None:
    """Under a 0700 folder (root's home, say) the service would fail at its first start."""
    venv = root / "opt" / "commune-agent" / "venv"
    private = root / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    config = private / "agent.toml"
    shutil.copy(root / "etc" / "commune-agent" / "agent.toml", config)
    result = subprocess.run(
        [str(venv / "bin" / "commune-agent"), "install-service", "-c", str(config), "--print"],
        capture_output=True,
        text=True,
        env={"PATH": CLEAN_PATH},
        check=False,
    )
    if os.geteuid() != 0:
        pytest.skip("permission checks as another user need root")
    assert result.returncode == 0
    assert f"commune-agent cannot enter {private}" in result.stderr


def test_the_collectors_unit_runs_its_own_installation(root: Path, checkout: Path) -> None:
    wheels = list((checkout / "dist").glob("commune_monitor-*.whl"))
    assert wheels, "the README's build step made no wheel"
    venv = root / "opt" / "commune-collector" / "venv"
    assert run("python3 -m venv /opt/commune-collector/venv", root, checkout).returncode == 0
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"{wheels[0]}[collector]"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": CLEAN_PATH},
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    etc = root / "etc" / "commune-collector"
    etc.mkdir(parents=True, exist_ok=True)
    config = etc / "collector.toml"
    config.write_text('[store]\npath = "/var/lib/commune-collector/state.sqlite"\n')
    config.chmod(0o644)
    printed = subprocess.run(
        [str(venv / "bin" / "commune-collector"), "install-service", "-c", str(config), "--print"],
        capture_output=True,
        text=True,
        env={"PATH": CLEAN_PATH},
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    exec_start = verify(printed.stdout, root / "units", "commune-collector")
    assert exec_start[0] == str(venv / "bin" / "commune-collector")
    assert exec_start[1:] == ["run", "--config", str(config)]
    help_text = subprocess.run(
        [exec_start[0], "run", "--help"], capture_output=True, text=True, check=False
    )
    assert help_text.returncode == 0 and "Run until stopped" in help_text.stdout


@pytest.mark.parametrize("name", ["commune-agent", "commune-collector"])
def test_the_shipped_units_are_what_install_service_writes(name: str) -> None:
    from agent import systemd
    from agent.service import SERVICE as AGENT
    from collector.service import SERVICE as COLLECTOR

    service = AGENT if name == "commune-agent" else COLLECTOR
    config = (
        "/etc/commune-agent/agent.toml"
        if service is AGENT
        else ("/etc/commune-collector/collector.toml")
    )
    expected = systemd.render(service, [f"/opt/{name}/venv/bin/{name}"], Path(config))
    assert (REPO / "deploy" / "systemd" / f"{name}.service").read_text() == expected


def test_a_real_install_checks_as_the_created_user_and_writes_the_unit(root: Path) -> None:
    """The install itself, but for enabling the unit (no running systemd here): the
    system user is created, the config given to its group, the unit written; a config
    the user cannot reach stops it with the reason, before anything is written."""
    if os.geteuid() != 0:
        pytest.skip("creating the service user needs root")
    import grp

    agent = root / "opt" / "commune-agent" / "venv" / "bin" / "commune-agent"
    config = root / "etc" / "commune-agent" / "agent.toml"
    units = root / "installed-units"
    units.mkdir(exist_ok=True)
    command = [str(agent), "install-service", "-c", str(config), "--no-start"]
    result = subprocess.run(
        [*command, "--unit-dir", str(units)],
        capture_output=True,
        text=True,
        env={"PATH": CLEAN_PATH},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (units / "commune-agent.service").read_text().startswith("# commune-agent")
    assert grp.getgrgid(config.stat().st_gid).gr_name == "commune-agent"
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    hidden = root / "hidden"
    hidden.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(config, hidden / "agent.toml")
    refused = subprocess.run(
        [str(agent), "install-service", "-c", str(hidden / "agent.toml"), "--no-start",
         "--unit-dir", str(hidden)],
        capture_output=True, text=True, env={"PATH": CLEAN_PATH}, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert f"commune-agent cannot enter {hidden}" in refused.stderr
    assert not (hidden / "commune-agent.service").exists()


def test_an_enrolled_pcs_secrets_are_given_to_the_service_user(root: Path) -> None:
    """`commune-agent enroll && commune-agent install-service`, as the README says: the
    password enrollment wrote (root's, 0600) beside the config becomes readable by the
    service's group, and by nobody else."""
    if os.geteuid() != 0:
        pytest.skip("creating the service user needs root")
    import grp

    agent = root / "opt" / "commune-agent" / "venv" / "bin" / "commune-agent"
    folder = root / "etc" / "enrolled"
    folder.mkdir(mode=0o755, exist_ok=True)
    secret = folder / "mqtt-password"
    secret.write_text("an-enrolled-password-0123456789\n")
    secret.chmod(0o600)
    config = folder / "agent.toml"
    config.write_text(
        '[agent]\nprovince = "dong-nai"\ncommune = "la-nga"\nid = "pc-01"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nusername = "dong-nai/la-nga/pc-01"\n'
        'password_file = "mqtt-password"\n[remote]\nenabled = true\n'
    )
    units = root / "enrolled-units"
    units.mkdir(exist_ok=True)
    preview = subprocess.run(
        [str(agent), "install-service", "-c", str(config), "--print"],
        capture_output=True, text=True, env={"PATH": CLEAN_PATH}, check=False,
    )  # fmt: skip
    assert "mqtt-password" not in preview.stderr, preview.stderr  # the install handles it
    result = subprocess.run(
        [str(agent), "install-service", "-c", str(config), "--no-start", "--unit-dir", str(units)],
        capture_output=True, text=True, env={"PATH": CLEAN_PATH}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert grp.getgrgid(secret.stat().st_gid).gr_name == "commune-agent"
    assert oct(secret.stat().st_mode & 0o777) == "0o640"
