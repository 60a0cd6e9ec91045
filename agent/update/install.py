"""Laying out an agent home for the launcher, and the launcher's systemd unit.

``lay_out`` copies the launcher and the standard-library modules it imports into
``<home>/launcher/`` (so it never imports from a version folder it watches), and
installs the running agent as the first version (built into a bundle and unpacked like
any release: the same manifest, the same checks). The Linux unit runs the launcher as
the service user; the launcher, the runtime and the unit stay root's, so the agent can
replace neither; ``versions/``, ``state/`` and ``tuf/`` are the service user's.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Final

import agent
from agent.service import UNIT_BODY
from agent.update import bundle
from agent.update.state import Home

#: What the launcher imports besides the standard library, copied beside it.
LAUNCHER_MODULES: Final = (
    "__init__.py", "versions.py", "bundle.py", "state.py", "lock.py", "launcher.py",
    "launcher_windows.py", "msi_setup.py", "datafolder.py",
)  # fmt: skip
#: The launcher folder's scripts (run by path: the service, the Windows installer).
LAUNCHER_SCRIPTS: Final = ("launcher.py", "launcher_windows.py", "msi_setup.py")
WRITABLE: Final = ("versions", "state", "tuf")
_PACKAGE_STUB: Final = '"""The launcher\'s copy of agent.update (standard library only)."""\n'


def install_launcher(home: Path) -> Path:
    """``<home>/launcher/launcher.py`` and its modules; returns the script's path."""
    source = Path(__file__).resolve().parent
    target = home / "launcher"
    package = target / "agent" / "update"
    package.mkdir(parents=True, exist_ok=True)
    (target / "agent" / "__init__.py").write_text(_PACKAGE_STUB, encoding="utf-8")
    for name in LAUNCHER_MODULES:
        shutil.copyfile(source / name, package / name)
    for script in LAUNCHER_SCRIPTS:
        shutil.copyfile(source / script, target / script)
    return target / "launcher.py"


def install_version(home: Path, source_root: Path, version: str) -> str:
    """Install the agent package under ``source_root`` as ``versions/<version>`` and make
    it current when nothing is (an existing ``current`` is left to the launcher)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"commune-agent-{version}.zip"
        bundle.build(source_root, version, path)
        bundle.unpack(path, home / "versions", version)
    state = Home(home)
    if state.current() is None:
        state.set_current(version)
        state.raise_floor(version)
    return version


def lay_out(home: Path) -> list[str]:
    """A home ready for the launcher, from the agent running this; what was done."""
    for name in WRITABLE:
        (home / name).mkdir(parents=True, exist_ok=True)
    script = install_launcher(home)
    source_root = Path(agent.__file__).resolve().parent.parent
    version = install_version(home, source_root, agent.__version__)
    return [f"installed the launcher as {script}", f"installed version {version}"]


def hand_over(home: Path, user: str, group: str) -> None:
    """Make ``versions/``, ``state/`` and ``tuf/`` and everything in them the service
    user's: laid out by root, the first version's folder is root's and private (0700) and
    the state files root's (0600), so the launcher run as the service user would find no
    version it can read and start no agent. Links are not followed, and the walk goes by
    folder handles (``os.fwalk``): on a home run before, the service user cannot swap a
    folder for a link to /etc while root walks it."""
    import grp
    import pwd

    uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    for name in WRITABLE:
        for _folder, folders, files, handle in os.fwalk(home / name):
            os.chown(handle, uid, gid)  # the folder itself, by its handle
            for entry in (*folders, *files):  # a link: itself, never what it names
                os.chown(entry, uid, gid, dir_fd=handle, follow_symlinks=False)


def launcher_command(home: Path, config: Path, python: str) -> list[str]:
    script = home / "launcher" / "launcher.py"
    return [python, str(script), "--home", str(home), "--config", str(config), "--python", python]


def unit(home: Path, config: Path, python: str) -> str:
    """The agent's hardened unit, running the launcher; stopping the service stops the
    launcher, which stops the agent (SIGTERM, then a kill after its grace)."""
    command = " ".join(shlex.quote(p) for p in launcher_command(home, config, python))
    writable = " ".join(str(home / name) for name in WRITABLE)
    body = UNIT_BODY.replace(
        "Installed by `commune-agent install-service`.",
        "Installed by `commune-agent install-launcher`:\n# the launcher runs the committed "
        "agent version and tries staged ones.",
    ).replace("Type=simple\n", "Type=simple\nKillMode=mixed\nTimeoutStopSec=30\n")
    return body.format(
        exec_start=command, user="commune-agent", read_write=f"ReadWritePaths={writable}\n"
    )
