"""The update process: stage one release beside the running version, in a child process.

Run by the agent as ``python -m agent.update.process --home H --config C --version V``
so that the TUF client, the download and the unpacking never load into (or stall) the
running agent. Steps, each written so a kill at any point leaves nothing half-named:

1. fetch: ``python -m agent.update.fetch --home H --url U --version V --floor F
   [--ca-file F]`` prints one JSON line ``{"ok", "kind", "reason", "path",
   "retry_after"}``: the verified bundle's local path, or a refusal or a failure.
   With ``--bundle-dir`` the bundle is taken from a local folder instead, checked
   against its manifest only, not a signature: the tests' seam, refused unless
   ``COMMUNE_AGENT_UNSIGNED_BUNDLES`` is ``"tests only"`` (a folder anyone can fill, or
   a config line, must never make a PC install what the signed targets do not list);
2. unpack into ``versions/.partial-*``, verify, rename to ``versions/<v>``;
3. the new version's self-check (``commune-agent self-check`` with the new version
   first on ``PYTHONPATH``);
4. write ``state/pending``.

Prints one JSON line: ``{"state": "staged"|"refused"|"failed", "reason": ...,
"retry_after": seconds or null}``; exit code 0 when staged, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agent.update import HOME_ENV, VERSION_DIR_ENV, bundle, versions
from agent.update.lock import UpdateLock
from agent.update.state import Home

SELF_CHECK_TIMEOUT_S: Final = 120.0
FETCH_TIMEOUT_S: Final = 1800.0
MAX_FETCH_OUTPUT: Final = 64 * 1024
#: ``--bundle-dir`` is refused unless this variable holds ``UNSIGNED_BUNDLES_ALLOWED``.
UNSIGNED_BUNDLES_ENV: Final = "COMMUNE_AGENT_UNSIGNED_BUNDLES"
UNSIGNED_BUNDLES_ALLOWED: Final = "tests only"


@dataclass(frozen=True)
class Outcome:
    """What staging a version came to, as the update process reports it."""

    state: str
    """"staged", "refused" or "failed"."""
    reason: str = ""
    retry_after: float | None = None

    def line(self) -> str:
        reason = self.reason[:300]
        return json.dumps({"state": self.state, "reason": reason, "retry_after": self.retry_after})


@dataclass(frozen=True)
class Fetched:
    """A fetched bundle, or why there is none."""

    path: Path | None
    """The verified bundle; None: ``refusal`` says why."""
    refusal: Outcome | None = None


Fetcher = Callable[[str, str], Fetched]
"""(version, floor) -> the bundle's local path, or why not."""


def fetch_command(home: Path, url: str, version: str, floor: str, ca_file: str = "") -> list[str]:
    command = [sys.executable, "-m", "agent.update.fetch", "--home", str(home), "--url", url]
    command += ["--version", version]
    if floor:
        command += ["--floor", floor]
    if ca_file:
        command += ["--ca-file", ca_file]
    return command


def decode_fetch_output(stdout: bytes, returncode: int) -> Fetched:
    """The fetch module's one JSON line (the last line of its output)."""
    lines = stdout[-MAX_FETCH_OUTPUT:].decode(errors="replace").strip().splitlines()
    try:
        document = json.loads(lines[-1]) if lines else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return Fetched(None, Outcome("failed", f"fetch gave no result (exit {returncode})"))
    retry = document.get("retry_after")
    retry_after = float(retry) if isinstance(retry, int | float) and retry >= 0 else None
    reason = str(document.get("reason") or "")[:300]
    path = document.get("path")
    if document.get("ok") is True and isinstance(path, str) and path:
        return Fetched(Path(path))
    kind = "refused" if document.get("kind") == "refused" else "failed"
    return Fetched(None, Outcome(kind, f"fetch: {reason or 'no reason given'}", retry_after))


def tuf_fetcher(home: Path, url: str, ca_file: str = "") -> Fetcher:
    def fetch(version: str, floor: str) -> Fetched:
        command = fetch_command(home, url, version, floor, ca_file)
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=FETCH_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            return Fetched(None, Outcome("failed", f"fetch took over {FETCH_TIMEOUT_S:.0f} s"))
        except OSError as exc:
            return Fetched(None, Outcome("failed", f"fetch could not start: {exc}"))
        return decode_fetch_output(done.stdout, done.returncode)

    return fetch


def folder_fetcher(folder: Path) -> Fetcher:
    def fetch(version: str, _floor: str) -> Fetched:
        path = folder / f"commune-agent-{version}.zip"
        if not path.is_file():
            return Fetched(None, Outcome("failed", f"no {path.name} in {folder}"))
        return Fetched(path)

    return fetch


def self_check(home: Path, version_dir: Path, config: Path) -> str:
    """The new version's own verdict on this PC ("" when it passes)."""
    environment = {**os.environ, "PYTHONPATH": str(version_dir), VERSION_DIR_ENV: str(version_dir),
                   HOME_ENV: str(home)}  # fmt: skip
    command = [sys.executable, "-m", "agent.cli", "self-check", "-c", str(config)]
    try:
        done = subprocess.run(
            command,
            cwd=version_dir,
            env=environment,
            capture_output=True,
            timeout=SELF_CHECK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"self-check took over {SELF_CHECK_TIMEOUT_S:.0f} s"
    if done.returncode == 0:
        return ""
    output = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
    return f"self-check exit {done.returncode}: {output[-1] if output else 'no output'}"


def stage(home: Home, config: Path, version: str, fetch: Fetcher) -> Outcome:
    floor = home.floor()
    bad = home.bad()
    if version in bad:
        return Outcome("refused", f"{version} is marked bad: {bad[version]['reason']}")
    if not versions.at_least(version, floor):
        return Outcome("refused", f"{version} is below the floor {floor}")
    fetched = fetch(version, floor)
    if fetched.path is None:
        return fetched.refusal or Outcome("failed", "fetch gave no bundle")
    try:
        folder = bundle.unpack(fetched.path, home.versions, version)
    except bundle.BundleError as exc:
        return Outcome("refused", f"bundle: {exc}")
    except OSError as exc:
        return Outcome("failed", f"unpacking: {exc.strerror or exc}")
    problem = self_check(home.root, folder, config)
    if problem:
        home.mark_bad(version, problem)
        return Outcome("refused", problem)
    home.set_pending(version)
    return Outcome("staged", f"{version} staged")


def _stage_alone(home: Home, config: Path, version: str, fetch: Fetcher) -> Outcome:
    """``stage`` under the update lock: never beside another update process, nor while
    the Windows installer lays out or removes the home (it waits for this one)."""
    lock = UpdateLock(home.state)
    try:
        if not lock.try_acquire():
            return Outcome("failed", "another update or the installer holds the update lock")
        with lock:
            return stage(home, config, version, fetch)
    except OSError as exc:
        return Outcome("failed", f"{type(exc).__name__}: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.update.process",
        description="Stage an agent release beside the running one (the agent runs this).",
    )
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--url", default="", help="the collector's releases URL (TUF)")
    parser.add_argument("--ca-file", default="")
    parser.add_argument(
        "--bundle-dir", type=Path, help=f"tests only (needs {UNSIGNED_BUNDLES_ENV}): unsigned"
    )
    args = parser.parse_args(argv)
    if not versions.is_version(args.version):
        outcome = Outcome("refused", f"not a release version: {args.version[:40]!r}")
    elif (
        args.bundle_dir is not None
        and os.environ.get(UNSIGNED_BUNDLES_ENV) != UNSIGNED_BUNDLES_ALLOWED
    ):
        outcome = Outcome(
            "refused",
            "[update] bundle_dir: unsigned bundles are for the tests only; "
            "remove it and set [update] url (only signed releases are installed)",
        )
    else:
        if args.bundle_dir is not None:
            fetcher = folder_fetcher(args.bundle_dir)
        elif args.url:
            fetcher = tuf_fetcher(args.home, args.url, args.ca_file)
        else:
            fetcher = None
        if fetcher is None:
            outcome = Outcome("failed", "no releases URL: set [update] url in the agent config")
        else:
            outcome = _stage_alone(Home(args.home), args.config, args.version, fetcher)
    print(outcome.line(), flush=True)
    return 0 if outcome.state == "staged" else 1


if __name__ == "__main__":
    sys.exit(main())
