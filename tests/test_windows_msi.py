"""The province's Windows kit, built here as an operator builds it (``commune-collector
windows-kit``, real wixl, real win_amd64 wheels from the Windows lock, a real release
root), and its MSI read back with ``msiinfo``/``msiextract``: the sequence, the custom
actions, the service, the properties, every file against the kit's inputs, the upgrade
codes of two versions, and the wheels resolving alone for CPython 3.11–3.14.

The embeddable CPython is a stand-in with python.org's layout (``tests/windows_embed.py``):
no Windows CPython is reachable here, and nothing in the MSI is run on Windows.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.update import install as installing
from collector.cli.main import main
from collector.kit import lock, msi, stage, wxs
from collector.kit.build import DEFAULT_LOCK
from tests.releases import Releases, make_releases
from tests.servers import REPO
from tests.windows_embed import stand_in_embed

pytestmark = pytest.mark.skipif(bool(msi.missing_tools()), reason="needs wixl and msitools")

SERVER = "https://collector.dong-nai.example:8443"
HOME = Path("commune-agent")  # msiextract drops ProgramFiles64Folder


@dataclass
class Built:
    out: Path
    msi: Path
    files: Path
    """The MSI's files, extracted (``files / HOME``: the PC's home)."""
    embed: Path
    releases: Releases
    output: str

    def rows(self, name: str) -> list[dict[str, str]]:
        return msi.table(self.msi, name)

    @property
    def home(self) -> Path:
        return self.files / HOME


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("kit")
    releases = make_releases(root / "site")
    config = root / "collector.toml"
    config.write_text(f'[store]\npath = "{root / "site" / "collector" / "state.sqlite"}"\n')
    embed, sha256 = stand_in_embed(root / "download", "3.12")
    (root / "ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nstand-in\n")
    out = root / "out"
    result = CliRunner().invoke(main, [
        "windows-kit", "-c", str(config), "--python-embed", str(embed), "--sha256", sha256,
        "--server", SERVER, "--province", "dong-nai", "--collector-ca", str(root / "ca.pem"),
        "-o", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    files = root / "extracted"
    msi.extract(out / "commune-agent.msi", files)
    return Built(out, out / "commune-agent.msi", files, embed, releases, result.output)


def test_the_kit_holds_the_msi_the_wheels_the_scripts_a_readme_and_their_sums(
    built: Built,
) -> None:
    names = sorted(p.name for p in built.out.iterdir())
    assert names == ["README.txt", "SHA256SUMS", "commune-agent.msi", "install-agent.ps1",
                     "uninstall-agent.ps1", "wheels"]  # fmt: skip
    checked = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=built.out,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = checked.stdout.count(": OK")
    assert listed == sum(1 for p in built.out.rglob("*") if p.is_file()) - 1
    readme = (built.out / "README.txt").read_text(encoding="utf-8")
    assert "TIẾNG VIỆT" in readme and "ENGLISH" in readme and SERVER in readme
    assert "msiexec /i commune-agent.msi /qn ENROLL_TOKEN=" in readme


def test_remove_existing_products_and_the_setup_steps_sit_where_the_pc_needs_them(
    built: Built,
) -> None:
    order = msi.sequence(built.msi)
    # Inside the transaction and before any file: a failed upgrade rolls back to the
    # old version and its service (wixl alone would put it after InstallFinalize).
    assert order["InstallInitialize"] < order["RemoveExistingProducts"] < order["StopServices"]
    assert order["RemoveExistingProducts"] < order["RemoveFiles"] < order["InstallFiles"]
    # The setup step: after the files and registry, before the service is made and run;
    # its rollback registered just before it.
    assert order["InstallFiles"] < order["WriteRegistryValues"] < order["Setup"]
    assert order["Setup"] < order["InstallServices"] < order["StartServices"]
    between = [a for a, n in order.items() if order["SetupRollback"] < n < order["Setup"]]
    assert between == []
    # A repair or an uninstall waits for an update after the service stopped, before
    # any file changes; so does the old product's removal inside an upgrade.
    for wait in ("Quiesce", "QuiesceUpgrade", "QuiesceRepair"):
        assert order["StopServices"] < order[wait] < order["RemoveFiles"]
    # The tag ties the setup step to its rollback; the folder check sees the folders;
    # the values are checked before the script holding them is made.
    assert order["TransactionTag"] < order["CostFinalize"] < order["ExpectedDir"]
    assert order["ExpectedDir"] < order["OutsideProgramFiles"] < order["InstallInitialize"]
    assert order["QuoteInProperty"] < order["InstallInitialize"]
    # Removal of the PC's own state only at commit; a re-run repairs (set before costing).
    assert order["RemoveHome"] < order["InstallFinalize"]
    assert (
        order["RepairAll"] < order["CostFinalize"] and order["RepairMode"] < order["CostFinalize"]
    )


def test_each_custom_action_runs_as_meant_and_the_token_is_never_logged(built: Built) -> None:
    actions = {row["Action"]: row for row in built.rows("CustomAction")}
    kinds = {name: int(row["Type"]) for name, row in actions.items()}
    script = r'"[INSTALLDIR]runtime\pythonw.exe" "[INSTALLDIR]launcher\msi_setup.py"'
    for name in ("Setup", "SetupRollback", "Quiesce", "QuiesceUpgrade", "QuiesceRepair"):
        # By folder, not by file key ([#file] of a component being removed is empty);
        # pythonw: no console window of a SYSTEM process on the user's desktop.
        assert kinds[name] & 0x3F == 34 and actions[name]["Source"] == "INSTALLDIR"
        assert actions[name]["Target"].startswith(script)
        assert kinds[name] & (msi.IN_SCRIPT | msi.NO_IMPERSONATE) == 0xC00  # deferred, SYSTEM
        assert '--transaction "[COMMUNE_TRANSACTION]"' in actions[name]["Target"]
    assert kinds["Setup"] & msi.HIDE_TARGET and not kinds["Setup"] & 0x40  # checked, hidden
    # The uninstall's wait is checked; the upgrade's and the repair's are not (an old or
    # broken runtime must not block what mends it: the setup step takes the lock).
    assert not kinds["Quiesce"] & 0x40
    assert kinds["QuiesceUpgrade"] & 0x40 and kinds["QuiesceRepair"] & 0x40
    assert kinds["SetupRollback"] & msi.ROLLBACK and not kinds["Setup"] & msi.ROLLBACK
    for name in ("RemoveHome", "PurgeData"):
        assert kinds[name] & 0x3F == 34 and kinds[name] & msi.COMMIT
        assert actions[name]["Source"] == "TARGETDIR"  # not a working folder it removes
    assert (kinds["RepairAll"], actions["RepairAll"]["Source"]) == (51, "REINSTALL")
    assert actions["RepairMode"]["Target"] == "amus"
    assert (kinds["TransactionTag"], actions["TransactionTag"]["Source"]) == (
        51, "COMMUNE_TRANSACTION"
    )  # fmt: skip
    assert kinds["OutsideProgramFiles"] == kinds["QuoteInProperty"] == 19
    assert actions["ExpectedDir"]["Target"] == "[ProgramFiles64Folder]commune-agent\\"
    target = actions["Setup"]["Target"]
    assert '--token "[ENROLL_TOKEN]"' in target and '--server "[SERVER]"' in target
    assert '--token-file "[ENROLL_TOKEN_FILE]"' in target and f"{script} install" in target
    conditions = {row["Action"]: row["Condition"] for row in built.rows("InstallExecuteSequence")}
    assert conditions["Setup"] == conditions["SetupRollback"] == 'NOT (REMOVE~="ALL")'
    # An uninstall for good, not the old product inside an upgrade; FORCE_REMOVE skips.
    assert conditions["Quiesce"] == (
        'REMOVE~="ALL" AND NOT UPGRADINGPRODUCTCODE AND NOT FORCE_REMOVE="1"'
    )
    assert conditions["QuiesceUpgrade"] == 'REMOVE~="ALL" AND UPGRADINGPRODUCTCODE'
    assert conditions["QuiesceRepair"] == "Installed AND NOT REMOVE"
    assert conditions["OutsideProgramFiles"] == (
        "NOT Installed AND NOT (INSTALLDIR ~= COMMUNE_EXPECTED_DIR)"
    )
    quoted = conditions["QuoteInProperty"].split(" OR ")
    assert sorted(quoted) == sorted(f"{name} >< COMMUNE_QUOTE" for name in wxs.QUOTED_PROPERTIES)
    for name in wxs.QUOTED_PROPERTIES:  # every value set inside quotes on the command line
        assert f'"[{name}]"' in target
    assert conditions["RemoveHome"] == 'REMOVE~="ALL" AND NOT UPGRADINGPRODUCTCODE'
    assert conditions["PurgeData"].endswith('AND PURGE="1"')
    remove_home = actions["RemoveHome"]["Target"]
    assert 'rmdir /s /q "[INSTALLDIR]"' not in remove_home  # never the whole folder
    assert 'rmdir /s /q "[INSTALLDIR]versions"' in remove_home


def test_the_properties_hide_the_token_and_pass_the_operators_values(built: Built) -> None:
    properties = {row["Property"]: row["Value"] for row in built.rows("Property")}
    assert properties["MsiHiddenProperties"] == "ENROLL_TOKEN"
    assert properties["COMMUNE_QUOTE"] == '"'  # compared with, in QuoteInProperty
    secure = properties["SecureCustomProperties"].split(";")
    assert set(wxs.PUBLIC_PROPERTIES) <= set(secure)
    assert "ENROLL_TOKEN" not in properties and "SERVER" not in properties  # nothing baked
    assert properties["ProductVersion"] == installing.agent.__version__
    assert properties["UpgradeCode"].strip("{}").lower() == wxs.UPGRADE_CODE
    conditions = [row["Condition"] for row in built.rows("LaunchCondition")]
    assert "Privileged" in conditions and "VersionNT64" in conditions
    assert 'Installed OR NOT REBOOT_PENDING OR IGNORE_PENDING_REBOOT="1"' in conditions
    [search] = built.rows("RegLocator")
    assert search["Name"] == "PendingFileRenameOperations"
    assert [row["Property"] for row in built.rows("AppSearch")] == ["REBOOT_PENDING"]
    summary = subprocess.run(["msiinfo", "suminfo", str(built.msi)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert "Template: x64;1033" in summary


def test_the_service_is_the_runtimes_python_hosting_the_launcher(built: Built) -> None:
    [service] = built.rows("ServiceInstall")
    python_component = wxs._id("c", "runtime/python.exe")
    assert service["Name"] == "CommuneAgent" and service["StartName"] == "LocalSystem"
    # own process, automatic, normal and vital (0x8000: a service that cannot be made
    # fails the install, which rolls back, instead of a PC left without one)
    assert (service["ServiceType"], service["StartType"], service["ErrorControl"]) == (
        "16", "2", str(0x8000 | 1)
    )  # fmt: skip
    assert service["Component_"] == python_component
    assert service["Arguments"] == f'"[#{wxs.file_id("launcher/launcher_windows.py")}]"'
    [control] = built.rows("ServiceControl")
    assert int(control["Event"]) == msi.SERVICE_EVENTS and control["Wait"] == "1"
    registry = {row["Name"]: row for row in built.rows("Registry")}
    assert registry["home"]["Value"] == "[INSTALLDIR]"
    assert registry["config"]["Value"] == r"[CommonAppDataFolder]commune-agent\agent.toml"
    assert {row["Key"] for row in registry.values()} == {
        r"SYSTEM\CurrentControlSet\Services\CommuneAgent\Parameters"
    }


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_file_in_the_msi_is_one_of_the_kits_inputs(built: Built) -> None:
    home = built.home
    extracted = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    table = {row["FileName"].split("|")[-1]: int(row["FileSize"]) for row in built.rows("File")}
    assert len(extracted) == len(built.rows("File"))
    assert {Path(name).name for name in extracted} == set(table)
    # runtime/: python.org's files as they are, but for the ._pth (site on)
    with zipfile.ZipFile(built.embed) as archive:
        for info in archive.infolist():
            data = (home / "runtime" / info.filename).read_bytes()
            if info.filename == "python312._pth":
                assert b"import site" in data and b"#import site" not in data
            else:
                assert data == archive.read(info), info.filename
    # ...and the agent's dependencies, from the Windows wheels for cp312 alone
    site = home / "runtime" / "Lib" / "site-packages"
    wheels = sorted((built.out / "wheels").glob("*.whl"))
    pins = lock.read_lock(DEFAULT_LOCK)
    for_312 = [w for w in wheels if lock.fits(w, "3.12")]
    assert sorted(lock.wheel_pin(w, pins).name for w in for_312) == sorted(p.name for p in pins)  # type: ignore[union-attr]
    for wheel in for_312:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                top = info.filename.split("/")[0]
                if info.is_dir() or top.endswith((".dist-info", ".data")):
                    continue
                assert (site / info.filename).read_bytes() == archive.read(info), info.filename
    for dll in (site / "pywin32_system32").glob("*.dll"):  # beside the service's host
        assert (home / "runtime" / dll.name).read_bytes() == dll.read_bytes()
    assert (site / stage.PATH_HOOK_NAME).read_text() == stage.PATH_HOOK
    assert (site / stage.PATH_HOOK_MODULE_NAME).read_text() == stage.PATH_HOOK_MODULE
    assert not list(home.rglob("__pycache__")) and not (site / "bin").exists()
    # launcher/: this checkout's launcher modules
    for name in installing.LAUNCHER_MODULES:
        assert sha(home / "launcher" / "agent" / "update" / name) == sha(
            REPO / "agent" / "update" / name
        )
    for name in installing.LAUNCHER_SCRIPTS:
        assert sha(home / "launcher" / name) == sha(REPO / "agent" / "update" / name)
    # kit/: the agent as a release bundle (reproducible: byte for byte), the root, the CA
    version = installing.agent.__version__
    rebuilt = built.out.parent / "rebuilt.zip"
    installing.bundle.build(REPO, version, rebuilt)
    assert sha(home / "kit" / f"commune-agent-{version}.zip") == sha(rebuilt)
    root = built.releases.repo.path / "metadata" / "root.json"
    assert (home / "kit" / "root.json").read_bytes() == root.read_bytes()
    assert json.loads((home / "kit" / "kit.json").read_text()) == {
        "version": version, "server": SERVER, "province": "dong-nai"
    }  # fmt: skip
    assert (home / "kit" / "collector-ca.pem").read_bytes().startswith(b"-----BEGIN")


def test_two_versions_share_the_upgrade_code_and_differ_in_product_code(
    built: Built, tmp_path: Path
) -> None:
    """The next version's MSI, from the same files (as the kit builds it): it finds the
    first by its upgrade code and replaces it; the first refuses to replace it."""
    staged = tmp_path / "stage"
    shutil.copytree(built.home, staged)
    source = tmp_path / "next.wxs"
    product = wxs.Product("99.0.1", "dong-nai", wxs.inputs_digest(staged))
    source.write_text(wxs.source(staged, product))
    newer = tmp_path / "next.msi"
    msi.build(source, newer, product)
    msi.verify(newer, staged)

    def codes(path: Path) -> tuple[str, str]:
        properties = {row["Property"]: row["Value"] for row in msi.table(path, "Property")}
        return properties["UpgradeCode"].lower(), properties["ProductCode"]

    (first_upgrade, first_product), (next_upgrade, next_product) = codes(built.msi), codes(newer)
    assert first_upgrade == next_upgrade and first_product != next_product
    # The same inputs: the same product and package (a re-run repairs, either file
    # uninstalls); other inputs (a new CA): another product of the version, an upgrade.
    same = wxs.Product("99.0.1", "dong-nai", wxs.inputs_digest(staged))
    assert (same.product_code, same.package_code) == (product.product_code, product.package_code)
    summary = subprocess.run(["msiinfo", "suminfo", str(newer)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert f"Revision number (UUID): {{{product.package_code}}}" in summary
    (staged / "kit" / "collector-ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnew CA\n")
    other = wxs.Product("99.0.1", "dong-nai", wxs.inputs_digest(staged))
    assert other.product_code != product.product_code
    rows = msi.table(newer, "Upgrade")
    detect = {row["ActionProperty"]: row for row in rows}
    assert detect["WIX_UPGRADE_DETECTED"]["VersionMax"] == "99.0.1"
    # including the maximum: a rebuilt kit of the same version (its own product code)
    # replaces the installed one instead of failing with 1638
    assert int(detect["WIX_UPGRADE_DETECTED"]["Attributes"]) & 0x200
    assert detect["WIX_DOWNGRADE_DETECTED"]["VersionMin"] == "99.0.1"
    assert all(row["UpgradeCode"].strip("{}").lower() == wxs.UPGRADE_CODE for row in rows)
    assert (
        msi.sequence(newer)["RemoveExistingProducts"]
        == msi.sequence(built.msi)["RemoveExistingProducts"]
    )


@pytest.mark.parametrize("python", lock.WINDOWS_PYTHONS)
def test_the_kits_wheels_alone_resolve_the_lock_for_each_windows_python(
    built: Built, python: str, tmp_path: Path
) -> None:
    """pip told the target (win_amd64, this CPython), no index, only the kit's wheels."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-",
         "--no-index", "--find-links", str(built.out / "wheels"), "--only-binary=:all:",
         "--platform", "win_amd64", "--python-version", python, "--implementation", "cp",
         "--abi", f"cp{python.replace('.', '')}", "--target", str(tmp_path / "t"),
         "--require-hashes", "-r", str(DEFAULT_LOCK)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    resolved = {item["metadata"]["name"].lower().replace("_", "-") for item in report["install"]}
    assert resolved == {pin.name for pin in lock.read_lock(DEFAULT_LOCK)}
    assert "pywin32" in resolved  # the marker trap: present for Windows, from Linux


def test_a_wheelhouse_missing_one_pythons_wheel_is_refused_naming_both_and_builds_nothing(
    built: Built, tmp_path: Path
) -> None:
    """Offline (``--wheelhouse``), pywin32's wheel for CPython 3.14 left out: a PC with
    3.14 could not install from this kit, so there is no kit."""
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    for wheel in (built.out / "wheels").glob("*.whl"):
        if not (wheel.name.startswith("pywin32-") and "cp314" in wheel.name):
            shutil.copyfile(wheel, wheelhouse / wheel.name)
    config = built.out.parent / "collector.toml"
    embed, sha256 = stand_in_embed(tmp_path / "download", "3.13")
    out = tmp_path / "kit"
    result = CliRunner().invoke(main, [
        "windows-kit", "-c", str(config), "--python-embed", str(embed), "--sha256", sha256,
        "--server", SERVER, "--province", "dong-nai", "--wheelhouse", str(wheelhouse),
        "-o", str(out),
    ])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "no wheel of pywin32 312 for CPython 3.14" in result.output
    assert not (out / "commune-agent.msi").exists() and not (out / "SHA256SUMS").exists()
