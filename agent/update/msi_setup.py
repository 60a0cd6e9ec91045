"""What the Windows installer (the MSI) runs on a PC, as SYSTEM, inside its transaction.

The MSI owns the runtime, the launcher and ``kit/`` (the agent version it carries as a
signed-release bundle, the release root, the province's CA and collector address). It
never owns ``versions/``, ``state/`` or ``tuf/``: a self-updated PC keeps versions the
MSI never saw, and an upgrade that removed the old MSI's files must not take away the
version the launcher runs or would roll back to. This script lays those out:

``install``  (deferred, after the files, before the service starts; install, repair and
             upgrade): wait for any update in progress (the update lock), unpack the kit's
             version beside the others (a damaged folder is replaced: repair), make it
             current only when no whole version is current or it is newer (a PC that
             updated itself further keeps its version), trust the kit's release root if
             the home has none, and enroll when the PC is not enrolled yet. What it
             changed in the state files is written first to ``state/msi-undo.json``.
``rollback`` (the transaction's rollback of ``install``): puts the state files back,
             from an undo file of the same transaction only (``--transaction``).
``quiesce``  (repair and uninstall, after the service stopped, before files change):
             waits for an update process still staging (the service's stop does not
             reach the update process on Windows); refuses after the wait, so the MSI
             rolls back whole instead of racing it.

The config folder (``C:\\ProgramData\\commune-agent``) is where any user may create a
folder before the agent is installed: before anything in it is read or written, the
setup step makes it the PC's own (``datafolder``: a folder, a link or an entry not owned
by SYSTEM or the Administrators is moved aside whole and the folder made anew, private
from its creation).

Run as ``<home>\\runtime\\python.exe <home>\\launcher\\msi_setup.py COMMAND``: the home is
this file's grandparent. Exit codes: 0 done; 1 refused (the reason on stderr and in
``state/install.log``); 3 the collector could not be reached to enroll; 4 an update held
the lock past the wait. Standard library only (it runs from the launcher's folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

if __name__ == "__main__":  # the embeddable runtime does not put a script's folder first
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent.update import HOME_ENV, VERSION_DIR_ENV, bundle, datafolder, versions
from agent.update.lock import UpdateLock
from agent.update.state import Home, read_json, remove, write_json, write_version

KIT_DIR: Final = "kit"
KIT_FILE: Final = "kit.json"
UNDO_FILE: Final = "msi-undo.json"
LOG_FILE: Final = "install.log"
#: The environment variable that hands the enrollment token to ``commune-agent enroll``
#: (off its command line).
TOKEN_ENV: Final = "COMMUNE_ENROLL_TOKEN"  # noqa: S105 (a variable's name)
LOCK_WAIT_S: Final = 300.0
TOKEN_FILE_MAX_BYTES: Final = 4096
ENROLL_TIMEOUT_S: Final = 120.0
EXIT_REFUSED: Final = 1
EXIT_UNREACHABLE: Final = 3
EXIT_LOCKED: Final = 4
STATE_FILES: Final = ("current", "previous", "pending", "floor")


class Refused(Exception):
    def __init__(self, reason: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(reason)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Kit:
    """``kit/kit.json``: what the MSI was built with."""

    version: str
    server: str
    province: str
    bundle: Path
    root: Path
    collector_ca: Path | None


def read_kit(home: Path) -> Kit:
    folder = home / KIT_DIR
    document = read_json(folder / KIT_FILE)
    if document is None:
        raise Refused(f"{folder / KIT_FILE} is missing or unreadable: repair the install")
    version, server = document.get("version"), document.get("server")
    if not isinstance(version, str) or not versions.is_version(version):
        raise Refused(f"{KIT_FILE}: no agent version")
    if not isinstance(server, str) or not server.startswith("https://"):
        raise Refused(f"{KIT_FILE}: no https collector address")
    ca = folder / "collector-ca.pem"
    return Kit(
        version=version,
        server=server,
        province=str(document.get("province", "")),
        bundle=folder / f"commune-agent-{version}.zip",
        root=folder / "root.json",
        collector_ca=ca if ca.is_file() else None,
    )


class Log:
    """``state/install.log``, appended, and stdout; never a token."""

    def __init__(self, home: Path) -> None:
        self.path = home / "state" / LOG_FILE

    def __call__(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(line, flush=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as log:
                log.write(f"{stamp} {line}\n")
        except OSError:
            pass  # the log is for the technician; the install does not depend on it


def _whole(home: Home, version: str | None) -> bool:
    return bool(version) and not bundle.verify_tree(home.version_dir(str(version)))


def lay_out(home: Home, kit: Kit, log: Log) -> str:
    """Unpack the kit's version and choose the current one; returns the current."""
    for name in ("versions", "state", "tuf"):
        (home.root / name).mkdir(parents=True, exist_ok=True)
    for leftover in home.versions.glob(".partial-*"):
        shutil.rmtree(leftover, ignore_errors=True)  # a staging cut short; never a version
    try:
        bundle.unpack(kit.bundle, home.versions, kit.version)
    except (bundle.BundleError, OSError) as exc:
        raise Refused(f"the kit's agent {kit.version} could not be laid out: {exc}") from exc
    current = home.current()
    if _whole(home, current) and not versions.newer(kit.version, str(current)):
        log(f"kept version {current} (the kit carries {kit.version})")
        return str(current)
    if _whole(home, current):
        home.set_previous(str(current))
    elif current:
        log(f"version {current} is damaged or missing: {kit.version} replaces it")
    home.set_current(kit.version)
    home.raise_floor(kit.version)
    pending = home.pending()
    if pending and not versions.newer(pending, kit.version):
        home.clear_pending()  # a staged version the kit already passes
    log(f"version {kit.version} is current")
    return kit.version


def trust_root(home: Path, kit: Kit, log: Log) -> None:
    """The kit's release root, when the home trusts none yet: the TUF client follows
    later roots from it (each signed by the one before), so an older kit root is fine
    and a root the PC already follows is never replaced by it."""
    target = home / "tuf" / "root.json"
    if target.exists():
        return
    if not kit.root.is_file():
        log("warning: the kit carries no release root: updates wait for update-root fetch")
        return
    data = kit.root.read_bytes()
    try:
        signed = json.loads(data)["signed"]
        if signed["_type"] != "root" or not isinstance(signed["version"], int):
            raise ValueError("not a root")
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused(f"the kit's release root is not one: {exc}") from exc
    temporary = target.with_name(".root.json.partial")
    temporary.write_bytes(data)
    os.replace(temporary, target)
    log(f"trusted the kit's release root v{signed['version']}")


def enroll(home: Home, kit: Kit, config: Path, options: argparse.Namespace, log: Log) -> None:
    """``commune-agent enroll`` of the current version, unless the PC is enrolled."""
    if sys.platform == "win32":
        make_own(config.parent, datafolder.windows(), log)
    if config.exists():
        log(f"already enrolled ({config}): kept")
        return
    token = os.environ.get(TOKEN_ENV) or options.token or read_token_file(options.token_file)
    if not token:
        raise Refused(
            "this PC is not enrolled and no ENROLL_TOKEN was given: "
            "msiexec /i commune-agent.msi ENROLL_TOKEN=<the commune's token>"
        )
    server = options.server or kit.server
    command = [sys.executable, "-m", "agent.cli", "enroll", "--collector", server,
               "-c", str(config)]  # fmt: skip
    if kit.collector_ca is not None:
        command += ["--ca", str(kit.collector_ca)]
    if options.agent_id:
        command += ["--id", options.agent_id]
    if options.commune:
        command += ["--commune", options.commune]
    current = home.current() or kit.version
    environment = {**os.environ, TOKEN_ENV: token, HOME_ENV: str(home.root),
                   "PYTHONPATH": str(home.version_dir(current)),
                   VERSION_DIR_ENV: str(home.version_dir(current))}  # fmt: skip
    config.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            command, env=environment, capture_output=True, text=True,
            timeout=ENROLL_TIMEOUT_S, check=False, creationflags=datafolder.NO_WINDOW,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise Refused(f"enrolling with {server} took too long", EXIT_UNREACHABLE) from None
    said = (done.stdout + done.stderr).replace(token, "<token>").strip()[-2000:]
    if done.returncode != 0:
        code = EXIT_UNREACHABLE if done.returncode == EXIT_UNREACHABLE else EXIT_REFUSED
        raise Refused(f"enrollment with {server} failed: {said}", code)
    log(said.splitlines()[0] if said else f"enrolled with {server}")
    if sys.platform == "win32":
        _protect(config.parent, log)


def make_own(folder: Path, platform: datafolder.Platform, log: Log) -> None:
    """``datafolder.secure``, its refusal the installer's."""
    try:
        datafolder.secure(folder, platform, log)
    except datafolder.Untrusted as exc:
        raise Refused(str(exc)) from exc


def read_token_file(path: str) -> str:
    """``ENROLL_TOKEN_FILE``: the token off every command line (process-creation audit
    logs record them); a small text file, its first line."""
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            data = handle.read(TOKEN_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise Refused(f"the token file {path} could not be read: {exc}") from exc
    if len(data) > TOKEN_FILE_MAX_BYTES:
        raise Refused(f"the token file {path} is over {TOKEN_FILE_MAX_BYTES} bytes")
    lines = data.decode("utf-8-sig", errors="replace").strip().splitlines()
    return lines[0].strip() if lines else ""


def _protect(folder: Path, log: Log) -> None:
    """The config folder (password, outbox) to SYSTEM and the Administrators alone."""
    from agent.update import launcher

    system_root = os.environ.get("SYSTEMROOT", r"C:\Windows")
    for problem in launcher.protect_home(launcher._run_quietly, system_root, folder):
        log(f"warning: could not restrict {folder}: {problem}")


def save_undo(home: Home, transaction: str) -> None:
    """What ``rollback`` restores: the state files as they were before ``install``."""
    undo = home.state / UNDO_FILE
    snapshot = {}
    for name in STATE_FILES:
        path = home.state / name
        snapshot[name] = path.read_text(encoding="utf-8").strip() if path.is_file() else None
    home.state.mkdir(parents=True, exist_ok=True)
    write_json(undo, {"transaction": transaction, "files": snapshot})


def rollback(home: Home, transaction: str, log: Log) -> None:
    undo = read_json(home.state / UNDO_FILE)
    if undo is None or not isinstance(undo.get("files"), dict):
        log("rollback: nothing to undo")
        return
    if undo.get("transaction", "") != transaction:
        # An earlier transaction's (it succeeded and kept it for its own rollback): the
        # state files it describes are not what this transaction changed.
        log("rollback: the undo file is another transaction's: the state files are kept")
        return
    for name in STATE_FILES:
        value = undo["files"].get(name)
        if isinstance(value, str) and versions.is_version(value):
            write_version(home.state / name, value)
        else:
            remove(home.state / name)
    remove(home.state / UNDO_FILE)
    log("rollback: the state files are as before the install")


def _locked(home: Home, wait_s: float, log: Log) -> UpdateLock:
    lock = UpdateLock(home.state)
    if not lock.acquire(wait_s):
        raise Refused(
            f"an agent update is still being installed after {wait_s:.0f} s: "
            "run the installer again in a few minutes",
            EXIT_LOCKED,
        )
    return lock


def install(home: Home, config: Path, options: argparse.Namespace, log: Log) -> None:
    remove(home.state / UNDO_FILE)  # an earlier run's: a refusal below must restore nothing
    with _locked(home, options.wait, log):
        # Kept after success: a later step of the same transaction (the service's start)
        # may still fail, and the MSI's rollback then runs ``rollback``.
        save_undo(home, options.transaction)
        kit = read_kit(home.root)
        lay_out(home, kit, log)
        trust_root(home.root, kit, log)
        enroll(home, kit, config, options, log)
    log(f"installed ({kit.province or 'province'}; collector {options.server or kit.server})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msi_setup.py", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("install", "rollback", "quiesce"))
    parser.add_argument(
        "--config", type=Path, default=Path(r"C:\ProgramData\commune-agent\agent.toml")
    )
    parser.add_argument("--server", default="", help="the collector's https address")
    parser.add_argument("--token", default="", help=f"the enrollment token (or {TOKEN_ENV})")
    parser.add_argument("--token-file", default="", help="a file whose first line is the token")
    parser.add_argument("--transaction", default="", help="the MSI transaction's tag")
    parser.add_argument("--agent-id", default="")
    parser.add_argument("--commune", default="")
    parser.add_argument("--wait", type=float, default=LOCK_WAIT_S)
    options = parser.parse_args(argv)
    for name in ("server", "token", "token_file", "agent_id", "commune", "transaction"):
        setattr(options, name, getattr(options, name).strip())
    home = Home(Path(__file__).resolve().parent.parent)
    log = Log(home.root)
    try:
        if options.command == "install":
            install(home, options.config, options, log)
        elif options.command == "rollback":
            rollback(home, options.transaction, log)
        else:
            with _locked(home, options.wait, log):
                log("quiesced: no update in progress")
    except Refused as exc:
        log(f"refused: {exc}")
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # under pythonw the log is all a technician sees
        log(f"failed: {type(exc).__name__}: {exc}")
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
