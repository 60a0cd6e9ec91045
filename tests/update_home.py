"""Agent homes for the launcher's tests: versions built from this checkout with
``bundle.build``, the launcher copied as an install copies it, run as real processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.update import bundle, install
from agent.update.process import UNSIGNED_BUNDLES_ALLOWED, UNSIGNED_BUNDLES_ENV
from agent.update.state import Home

REPO = Path(__file__).resolve().parent.parent

#: What each test version does differently from the checkout (file, old, new).
CRASH_AT_START = (
    "agent/runner.py",
    "    stop = stop or Wakeup()  # then stopped by the signals only (or an update)\n",
    "    stop = stop or Wakeup()  # then stopped by the signals only (or an update)\n"
    '    raise RuntimeError("a release that crashes at start")\n',
)
NEVER_ACKNOWLEDGED = (
    "agent/update/health.py",
    "birth_acked=self.birth_acked(),",
    "birth_acked=False,",
)


def build_bundles(
    folder: Path, plain: list[str], variants: dict[str, tuple[str, str, str]]
) -> Path:
    """``commune-agent-<v>.zip`` in ``folder``: ``plain`` versions are the checkout as it
    is; ``variants`` the checkout with one change each (a crash, a missing health)."""
    folder.mkdir(parents=True, exist_ok=True)
    for version in plain:
        bundle.build(REPO, version, folder / f"commune-agent-{version}.zip")
    for version, (name, old, new) in variants.items():
        source = folder / f"src-{version}"
        shutil.copytree(
            REPO / "agent", source / "agent", ignore=shutil.ignore_patterns("__pycache__")
        )
        path = source / name
        text = path.read_text()
        assert old in text, f"{name} no longer holds {old!r}"
        path.write_text(text.replace(old, new))
        bundle.build(source, version, folder / f"commune-agent-{version}.zip")
    return folder


def new_home(root: Path, bundles: Path, committed: str = "1.0.0") -> Home:
    """A home as ``install-launcher`` leaves it: the launcher, one committed version."""
    home = Home(root)
    for name in install.WRITABLE:
        (root / name).mkdir(parents=True, exist_ok=True)
    install.install_launcher(root)
    unpack(home, bundles, committed)
    home.set_current(committed)
    home.raise_floor(committed)
    return home


def unpack(home: Home, bundles: Path, version: str) -> Path:
    return bundle.unpack(bundles / f"commune-agent-{version}.zip", home.versions, version)


def stage(home: Home, bundles: Path, version: str) -> None:
    unpack(home, bundles, version)
    home.set_pending(version)


class LauncherProcess:
    """``python <home>/launcher/launcher.py`` as the service runs it, in its own process
    group (``kill9`` kills the launcher and the agent together: a power cut)."""

    def __init__(
        self, home: Home, config: Path, env: dict[str, str] | None = None, **timings: float
    ) -> None:
        """``env``: variables added to this one's environment (STATE_DIRECTORY...)."""
        self.home = home
        self.config = config
        self.env = env or {}
        options = {
            "max-exits": 3,
            "trial-timeout": 30,
            "healthy-after": 1,
            "restart-delay": 0.2,
            "grace": 10,
            "poll": 0.1,
            "verify-every": 0.5,
        }
        options.update({k.replace("_", "-"): v for k, v in timings.items()})
        self.arguments = [f"--{k}={v}" for k, v in options.items()]
        self.log_path = home.root.parent / "launcher.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wrapper: Sequence[str] = ()) -> LauncherProcess:
        """``wrapper``: a script (and its arguments) the interpreter runs instead, given
        the launcher's script and arguments after its own."""
        script = self.home.root / "launcher" / "launcher.py"
        command = [sys.executable, *wrapper, str(script), "--home", str(self.home.root)]
        command += ["--config", str(self.config), "--python", sys.executable, *self.arguments]
        environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        # The agents' [update] bundle_dir (unsigned bundles) works only in tests.
        environment[UNSIGNED_BUNDLES_ENV] = UNSIGNED_BUNDLES_ALLOWED
        environment.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                cwd=self.home.root.parent, start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        finally:
            self.kill9()

    def kill9(self) -> None:
        """The launcher and everything it started, at once."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
