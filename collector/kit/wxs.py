"""The MSI's WiX source, written for wixl (Debian ``msitools``) from a staged tree.

wixl builds MSIs on Linux from a WiX subset. What it lacks or gets wrong, and what is
done instead (each checked on the built tables by ``msi.verify`` and the tests):

- ``RemoveExistingProducts`` scheduled relatively (``MajorUpgrade Schedule=``) lands
  after ``InstallFinalize``: here it has an explicit ``Sequence`` right after
  ``InstallInitialize``, inside the transaction, so a failed upgrade rolls back to the
  old version with its service instead of leaving none.
- ``Hidden``/``Secure`` on properties and ``HideTarget`` on custom actions are ignored:
  ``MsiHiddenProperties`` is written as a property, and ``msi.harden`` sets
  ``SecureCustomProperties`` and the hide-target bit in the built tables, so the token
  never reaches the MSI log.
- Any character outside ASCII crashes it (0.101): the MSI's own messages are English;
  the kit's README says them in Vietnamese.
- No ``ServiceConfig`` (failure actions) and no ``PermissionEx`` (ACLs): the launcher
  sets both at every start (``launcher.set_recovery``, ``protect_home``).

The PC's own state (``versions/``, ``state/``, ``tuf/``) is never a file the MSI owns:
``launcher/msi_setup.py`` lays it out (deferred, as SYSTEM), and on a full uninstall
commit actions remove it (with ``PURGE=1`` the config, identity and outbox too).
"""

from __future__ import annotations

import hashlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from collector.kit.errors import KitError

#: One upgrade code for every province's MSI of the agent, for ever: a newer MSI
#: finds and replaces an older one by it (changing it would install side by side).
UPGRADE_CODE: Final = "6b1f3a52-3c5e-4b7a-9d3e-1f2a3b4c5d6e"
SERVICE_NAME: Final = "CommuneAgent"
#: The config, identity and outbox (not the MSI's files). A formatted string, not a
#: Directory row: wixl crashes on a Directory without components.
DATA_DIR: Final = r"[CommonAppDataFolder]commune-agent"
CONFIG: Final = DATA_DIR + r"\agent.toml"
#: Public properties an operator passes to msiexec; the secure list lets them reach the
#: deferred actions, which run in the installer's service.
PUBLIC_PROPERTIES: Final = (
    "SERVER", "ENROLL_TOKEN", "ENROLL_TOKEN_FILE", "AGENT_ID", "COMMUNE", "PURGE",
    "IGNORE_PENDING_REBOOT", "FORCE_REMOVE",
)  # fmt: skip
HIDDEN_PROPERTIES: Final = ("ENROLL_TOKEN",)
#: Explicit places in InstallExecuteSequence (the standard actions' numbers: InstallInitialize
#: 1500, StopServices 1900, DeleteServices 2000, RemoveFiles 3500, InstallFiles 4000,
#: WriteRegistryValues 5000, InstallServices 5800, StartServices 5900, InstallFinalize 6600).
SEQUENCE: Final = {
    "RepairAll": 990,
    "RepairMode": 991,
    "TransactionTag": 992,
    "ExpectedDir": 1001,
    "OutsideProgramFiles": 1002,
    "QuoteInProperty": 1003,
    "RemoveExistingProducts": 1501,
    "Quiesce": 1950,
    "QuiesceUpgrade": 1951,
    "QuiesceRepair": 1952,
    "SetupRollback": 5690,
    "Setup": 5700,
    "RemoveHome": 6590,
    "PurgeData": 6591,
}
_INSTALL: Final = 'NOT (REMOVE~="ALL")'
#: An uninstall for good: the installer waits for an update in progress, and refuses
#: after the wait (the PC keeps its agent). FORCE_REMOVE=1 skips the wait, for a
#: runtime too broken to run it.
_QUIESCE: Final = 'REMOVE~="ALL" AND NOT UPGRADINGPRODUCTCODE AND NOT FORCE_REMOVE="1"'
#: The public properties that reach the setup step's command line inside quotes: a
#: quote in one would add arguments of the caller's choosing to a SYSTEM process.
QUOTED_PROPERTIES: Final = ("SERVER", "ENROLL_TOKEN", "ENROLL_TOKEN_FILE", "AGENT_ID", "COMMUNE")
QUOTE_PROPERTY: Final = "COMMUNE_QUOTE"
_UNINSTALL_FOR_GOOD: Final = 'REMOVE~="ALL" AND NOT UPGRADINGPRODUCTCODE'
_NS: Final = "http://schemas.microsoft.com/wix/2006/wi"


@dataclass(frozen=True)
class Product:
    version: str
    """The agent's version, also the MSI's ProductVersion (numeric a.b.c)."""
    province: str
    inputs: str
    """``inputs_digest`` of the staged tree: what the MSI installs."""
    manufacturer: str = "commune-monitor"

    @property
    def product_code(self) -> str:
        """One per province, version and installed files. A kit rebuilt from the same
        inputs is the same product and package (a re-run repairs; ``msiexec /x`` with
        either file removes it). Rebuilt with other inputs (a new CA, another collector
        address) it is another product of the same version: a major upgrade (``msi.
        harden`` lets the upgrade row include the maximum), not 1638 ("another version
        of this product is already installed") as a reused product code would be."""
        name = f"{self.province}/{self.version}/{self.inputs}"
        return str(uuid.uuid5(uuid.UUID(UPGRADE_CODE), name)).upper()

    @property
    def package_code(self) -> str:
        """Fixed by the product code (wixl draws one at random): identical inputs, an
        identical package for Windows Installer's cache."""
        return str(uuid.uuid5(uuid.UUID(UPGRADE_CODE), f"package:{self.product_code}")).upper()

    @property
    def subject(self) -> str:
        return f"commune-monitor agent {self.version} ({self.province})"


def _id(prefix: str, relative: str) -> str:
    """A table key for a path: MSI identifiers are at most 72 characters."""
    return f"{prefix}{hashlib.sha256(relative.encode()).hexdigest()[:32]}"


def file_id(relative: str) -> str:
    """The File table key of a staged file (``runtime/python.exe`` → ``f…``)."""
    return _id("f", relative)


def component_guid(relative: str) -> str:
    """Stable across versions for the same path: Windows Installer's component rules."""
    return str(uuid.uuid5(uuid.UUID(UPGRADE_CODE), f"component:{relative}")).upper()


def inputs_digest(stage: Path) -> str:
    """SHA-256 over every staged file's path and content, in order."""
    digest = hashlib.sha256()
    for relative in staged_files(stage):
        digest.update(relative.encode() + b"\0")
        digest.update(hashlib.sha256((stage / relative).read_bytes()).digest())
    return digest.hexdigest()


def staged_files(stage: Path) -> Iterator[str]:
    """Every file under ``stage`` as a POSIX relative path, sorted."""
    for path in sorted(stage.rglob("*")):
        if path.is_file():
            yield path.relative_to(stage).as_posix()


def _element(parent: ET.Element, tag: str, **attributes: str) -> ET.Element:
    return ET.SubElement(parent, f"{{{_NS}}}{tag}", attributes)


def source(stage: Path, product: Product) -> str:
    """The WiX XML for the tree under ``stage`` (runtime/, launcher/, kit/). Sources are
    named relative to ``stage``'s parent (wixl wants relative paths): write the XML there."""
    ET.register_namespace("", _NS)
    wix = ET.Element(f"{{{_NS}}}Wix")
    root = _element(
        wix, "Product", Id=product.product_code, Name="commune-monitor agent",
        Language="1033", Version=product.version, Manufacturer=product.manufacturer,
        UpgradeCode=UPGRADE_CODE,
    )  # fmt: skip
    _element(
        root, "Package", InstallerVersion="500", Compressed="yes", InstallScope="perMachine",
        Description=product.subject,
    )  # fmt: skip
    _element(
        root, "MajorUpgrade",
        DowngradeErrorMessage="A newer commune-monitor agent is installed: keep it.",
    )  # fmt: skip
    _element(root, "Media", Id="1", Cabinet="agent.cab", EmbedCab="yes")
    _properties(root)
    _conditions(root)
    components = _directories(root, stage)
    sequence = _element(root, "InstallExecuteSequence")
    _element(sequence, "RemoveExistingProducts", Sequence=str(SEQUENCE["RemoveExistingProducts"]))
    feature = _element(root, "Feature", Id="Agent", Level="1", Title="commune-monitor agent")
    for component in components:
        _element(feature, "ComponentRef", Id=component)
    ET.indent(wix)
    text = '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(wix, encoding="unicode")
    if not text.isascii():
        raise KitError("the MSI's source must be ASCII (wixl crashes otherwise): "
                       + repr(next(c for c in text if not c.isascii())))  # fmt: skip
    return text


def _properties(root: ET.Element) -> None:
    _element(root, "Property", Id="MsiHiddenProperties", Value=";".join(HIDDEN_PROPERTIES))
    _element(root, "Property", Id="ARPNOMODIFY", Value="1")
    # A condition cannot write a double quote in a literal: compared through a property.
    _element(root, "Property", Id=QUOTE_PROPERTY, Value='"')
    pending = _element(root, "Property", Id="REBOOT_PENDING")
    _element(
        pending, "RegistrySearch", Id="PendingFileRenames", Root="HKLM",
        Key=r"SYSTEM\CurrentControlSet\Control\Session Manager",
        Name="PendingFileRenameOperations", Type="raw", Win64="yes",
    )  # fmt: skip


def _conditions(root: ET.Element) -> None:
    conditions = (
        ("Privileged",
         "Run the installer as an administrator (an elevated prompt, or msiexec from a "
         "deployment tool)."),
        ("VersionNT64",
         "This agent is for 64-bit Windows 10 or 11."),
        # wazuh #38182: an upgrade with a reboot pending reported success and the reboot's
        # pending file operations then took the agent away. A repair or an uninstall
        # (Installed) may go ahead; a new install or an upgrade waits for the restart.
        ('Installed OR NOT REBOOT_PENDING OR IGNORE_PENDING_REBOOT="1"',
         "Windows is waiting for a restart: restart the PC, then install again "
         "(or IGNORE_PENDING_REBOOT=1)."),
    )  # fmt: skip
    for condition, message in conditions:
        _element(root, "Condition", Message=message).text = condition


def _directories(root: ET.Element, stage: Path) -> list[str]:
    target = _element(root, "Directory", Id="TARGETDIR", Name="SourceDir")
    program_files = _element(target, "Directory", Id="ProgramFiles64Folder")
    home = _element(program_files, "Directory", Id="INSTALLDIR", Name="commune-agent")
    folders: dict[PurePosixPath, ET.Element] = {PurePosixPath("."): home}
    components: list[str] = []
    for relative in staged_files(stage):
        path = PurePosixPath(relative)
        parent = folders.get(path.parent)
        if parent is None:
            parent = home
            for depth in range(1, len(path.parts)):
                prefix = PurePosixPath(*path.parts[:depth])
                if prefix not in folders:
                    folders[prefix] = _element(
                        parent, "Directory", Id=_id("d", str(prefix)), Name=path.parts[depth - 1]
                    )
                parent = folders[prefix]
        component_id = _id("c", relative)
        component = _element(
            parent, "Component", Id=component_id, Guid=component_guid(relative), Win64="yes"
        )
        _element(
            component, "File", Id=file_id(relative), Name=path.name,
            Source=f"{stage.name}/{relative}", KeyPath="yes",
        )  # fmt: skip
        if relative == "runtime/python.exe":
            _service(component)
        components.append(component_id)
    return components


def _service(component: ET.Element) -> None:
    """The service is the runtime's python.exe hosting the launcher (pywin32's
    servicemanager), with the home and config as its registry parameters."""
    launcher = file_id("launcher/launcher_windows.py")
    _element(
        component, "ServiceInstall", Id="AgentService", Name=SERVICE_NAME,
        DisplayName="commune-monitor agent",
        Description="Anti-malware state, health and line probes for the province "
        "(commune-monitor).",
        Type="ownProcess", Start="auto", ErrorControl="normal", Account="LocalSystem",
        Arguments=f'"[#{launcher}]"', Vital="yes",
    )  # fmt: skip
    _element(
        component, "ServiceControl", Id="AgentServiceControl", Name=SERVICE_NAME,
        Start="install", Stop="both", Remove="uninstall", Wait="yes",
    )  # fmt: skip
    key = rf"SYSTEM\CurrentControlSet\Services\{SERVICE_NAME}\Parameters"
    for name, value in (("home", "[INSTALLDIR]"), ("config", CONFIG)):
        _element(
            component, "RegistryValue", Root="HKLM", Key=key, Name=name, Type="string",
            Value=value,
        )  # fmt: skip


def setup_command(command: str) -> str:
    """The command line of one ``msi_setup.py`` step. By folder, not by file key: a
    ``[#file]`` of a component being removed formats to nothing, so an uninstall's step
    would lose its script. ``pythonw.exe``: no console window for a SYSTEM process on
    the user's desktop. The transaction's tag ties ``install`` to its ``rollback``."""
    head = (
        r'"[INSTALLDIR]runtime\pythonw.exe" "[INSTALLDIR]launcher\msi_setup.py" '
        f'{command} --transaction "[{TRANSACTION}]"'
    )
    if command != "install":
        return head
    return (
        f'{head} --config "{CONFIG}" --server "[SERVER]" --token "[ENROLL_TOKEN]" '
        '--token-file "[ENROLL_TOKEN_FILE]" --agent-id "[AGENT_ID]" --commune "[COMMUNE]"'
    )


def _remove_home_command() -> str:
    """Commit-time removal of what the MSI does not own. By name, never the whole
    INSTALLDIR: an operator may have pointed it somewhere shared."""
    folders = ("versions", "state", "tuf", "runtime", "launcher", "kit")
    steps = [f'rmdir /s /q "[INSTALLDIR]{name}"' for name in folders]
    return '"[System64Folder]cmd.exe" /c ' + " & ".join([*steps, 'rmdir "[INSTALLDIR]"'])


@dataclass(frozen=True)
class TableAction:
    """A custom action, written straight into the built tables by ``msi.harden``: wixl
    drops ``Execute="rollback"`` (the action would run at once, not on rollback) and
    ``HideTarget``, and has no property-setting (51) or from-a-folder (34) actions, so
    every type here is spelled out."""

    type: int
    source: str
    target: str
    condition: str


#: msidbCustomActionType: 34 runs a command line from a folder, 51 sets a property, 19
#: ends the install with an error; 0x40 ignores the exit code; 0x100 rollback, 0x200
#: commit, 0x400 in the script (deferred), 0x800 as SYSTEM, 0x2000 never logged.
_AS_SYSTEM: Final = 0x400 | 0x800
#: Set once per transaction (immediate, before the script is made): ``install`` writes
#: its undo file under it and ``rollback`` applies only an undo file of its own.
TRANSACTION: Final = "COMMUNE_TRANSACTION"
TABLE_ACTIONS: Final = {
    # A plain re-run of the same MSI repairs: every file put back ("amus": all, not
    # only missing ones), and the setup step runs again.
    "RepairAll": TableAction(
        51, "REINSTALL", "ALL",
        "Installed AND NOT REMOVE AND NOT REINSTALL AND NOT UPGRADINGPRODUCTCODE",
    ),
    "RepairMode": TableAction(
        51, "REINSTALLMODE", "amus", "Installed AND NOT REMOVE AND NOT UPGRADINGPRODUCTCODE"
    ),
    "TransactionTag": TableAction(51, TRANSACTION, "[Date] [Time] [ProductCode]", ""),
    # The setup step's safety rests on a home only administrators can write (the
    # runtime's path hook trusts <home>\versions): exactly Program Files\commune-agent,
    # not a folder of the operator's choice (nor another program's under Program Files).
    "ExpectedDir": TableAction(
        51, "COMMUNE_EXPECTED_DIR", "[ProgramFiles64Folder]commune-agent\\", ""
    ),
    "OutsideProgramFiles": TableAction(
        19, "", "The agent installs in Program Files\\commune-agent: INSTALLDIR cannot be changed.",
        "NOT Installed AND NOT (INSTALLDIR ~= COMMUNE_EXPECTED_DIR)",
    ),
    "QuoteInProperty": TableAction(
        19, "", "A value given to the installer holds a double quote: remove it.",
        " OR ".join(f"{name} >< {QUOTE_PROPERTY}" for name in QUOTED_PROPERTIES),
    ),
    # An uninstall waits for an update in progress before any file goes; refused after
    # the wait, the PC keeps its agent.
    "Quiesce": TableAction(34 | _AS_SYSTEM, "INSTALLDIR", setup_command("quiesce"), _QUIESCE),
    # A repair waits too before rewriting the runtime an update may be using, but its
    # failure is ignored: a runtime too broken to wait is what the repair mends, and
    # the setup step takes the update lock itself before touching any state.
    "QuiesceRepair": TableAction(
        34 | 0x40 | _AS_SYSTEM, "INSTALLDIR", setup_command("quiesce"),
        "Installed AND NOT REMOVE",
    ),
    # The old product's removal inside an upgrade waits too, but its failure (an old
    # runtime too broken to run) must not block the upgrade that repairs it: the new
    # version's setup step takes the update lock itself before touching any state.
    "QuiesceUpgrade": TableAction(
        34 | 0x40 | _AS_SYSTEM, "INSTALLDIR", setup_command("quiesce"),
        'REMOVE~="ALL" AND UPGRADINGPRODUCTCODE',
    ),
    "SetupRollback": TableAction(
        34 | 0x40 | 0x100 | _AS_SYSTEM, "INSTALLDIR", setup_command("rollback"), _INSTALL
    ),
    "Setup": TableAction(
        34 | _AS_SYSTEM | 0x2000, "INSTALLDIR", setup_command("install"), _INSTALL
    ),
    # After a full uninstall committed (never in an upgrade, never before the point of
    # no return: a failed uninstall rolls back to a working agent). From TARGETDIR: a
    # process whose working folder is INSTALLDIR could not remove it. A machine with
    # the DisableRollback policy runs no commit actions: OPERATIONS says what is left.
    "RemoveHome": TableAction(
        34 | 0x40 | 0x200 | _AS_SYSTEM, "TARGETDIR", _remove_home_command(),
        _UNINSTALL_FOR_GOOD,
    ),
    "PurgeData": TableAction(
        34 | 0x40 | 0x200 | _AS_SYSTEM, "TARGETDIR",
        f'"[System64Folder]cmd.exe" /c rmdir /s /q "{DATA_DIR}"',
        f'{_UNINSTALL_FOR_GOOD} AND PURGE="1"',
    ),
}  # fmt: skip
