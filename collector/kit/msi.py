"""Building the MSI with wixl, hardening what wixl leaves out, and reading its tables.

``msiinfo export`` gives a table as IDT text (names, types, the table's name and keys,
then one row per line); ``msibuild -q`` runs SQL on the database. The builder checks
the tables it depends on after every build (``verify``): a wixl that schedules or
types an action differently fails the build, not a PC.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Final

from collector.kit import wxs
from collector.kit.errors import KitError

TOOLS: Final = ("wixl", "msiinfo", "msibuild", "msiextract")
#: CustomAction.Type bits (Windows Installer's msidbCustomAction* values).
IN_SCRIPT: Final = 0x400
ROLLBACK: Final = 0x100
COMMIT: Final = 0x200
NO_IMPERSONATE: Final = 0x800
HIDE_TARGET: Final = 0x2000
#: ServiceControl.Event: start on install, stop on install and uninstall, delete on
#: uninstall (msidbServiceControlEvent*).
SERVICE_EVENTS: Final = 0x1 | 0x2 | 0x20 | 0x80
#: ServiceInstall.ErrorControl: normal (1) and vital (0x8000: a service that cannot be
#: registered fails the install and rolls it back, instead of leaving a PC without one).
SERVICE_ERROR_CONTROL: Final = 0x8000 | 0x1
#: Upgrade.Attributes of the row that finds older versions: migrate features (1) and
#: include the maximum (0x200), so a rebuilt kit of the same version replaces it.
UPGRADE_ATTRIBUTES: Final = 0x200 | 0x1
Row = dict[str, str]


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _run(command: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=900, check=False, cwd=cwd
        )
    except FileNotFoundError:
        raise KitError(f"{command[0]} not found: apt install wixl msitools") from None
    if done.returncode != 0:
        said = "\n".join(
            line for line in done.stderr.splitlines() if "GLib-GObject-WARNING" not in line
        )
        raise KitError(f"{command[0]} failed ({done.returncode}): {said.strip()[-1500:]}")
    return done.stdout


def build(source: Path, output: Path, product: wxs.Product) -> None:
    """``wixl`` the WiX source into ``output`` (64-bit), then ``harden`` it and give it
    its package code. The files it names are relative to the source's folder."""
    _run(["wixl", "-a", "x64", "-o", str(output.resolve()), source.name], cwd=source.parent)
    harden(output)
    _run(["msibuild", str(output), "-s", product.subject, product.manufacturer, "x64;1033",
          "{" + product.package_code + "}"])  # fmt: skip


def _sql(msi: Path, query: str) -> None:
    _run(["msibuild", str(msi), "-q", query])


def _literal(value: str | int) -> str:
    """An SQL literal of the kit's own constants (never outside input): a quote in one
    would be a bug here, so it is refused rather than escaped."""
    if isinstance(value, int):
        return str(value)
    if "'" in value:
        raise KitError(f"a quote in an MSI table value: {value!r}")
    return f"'{value}'"


def _insert(msi: Path, name: str, row: dict[str, str | int]) -> None:
    columns = ", ".join(f"`{column}`" for column in row)
    values = ", ".join(_literal(value) for value in row.values())
    _sql(msi, f"INSERT INTO `{name}` ({columns}) VALUES ({values})")  # noqa: S608


def harden(msi: Path) -> None:
    """What wixl ignores or lacks: the custom actions with their exact types (``wxs.
    TABLE_ACTIONS``), the public properties in ``SecureCustomProperties``, the service's
    vital bit (wixl drops ``Vital``) and a same-version upgrade."""
    _sql(msi, f"UPDATE `ServiceInstall` SET `ErrorControl` = {SERVICE_ERROR_CONTROL}")  # noqa: S608
    # Attributes is part of the Upgrade table's key, which SQL cannot update: the row
    # is written again with the same values and the new attributes.
    for found in table(msi, "Upgrade"):
        if found["ActionProperty"] == "WIX_UPGRADE_DETECTED":
            _sql(msi, "DELETE FROM `Upgrade` WHERE `ActionProperty` = 'WIX_UPGRADE_DETECTED'")
            kept: dict[str, str | int] = {name: value for name, value in found.items() if value}
            _insert(msi, "Upgrade", {**kept, "Attributes": UPGRADE_ATTRIBUTES})
    for action, row in wxs.TABLE_ACTIONS.items():
        _insert(
            msi,
            "CustomAction",
            {"Action": action, "Type": row.type, "Source": row.source, "Target": row.target},
        )
        _insert(
            msi,
            "InstallExecuteSequence",
            {"Action": action, "Condition": row.condition, "Sequence": wxs.SEQUENCE[action]},
        )
    properties = {row["Property"]: row["Value"] for row in table(msi, "Property")}
    secure = [name for name in properties.get("SecureCustomProperties", "").split(";") if name]
    for name in wxs.PUBLIC_PROPERTIES:
        if name not in secure:
            secure.append(name)
    value = ";".join(secure)
    if "SecureCustomProperties" in properties:
        _sql(msi, "DELETE FROM `Property` WHERE `Property` = 'SecureCustomProperties'")
    _insert(msi, "Property", {"Property": "SecureCustomProperties", "Value": value})


def table(msi: Path, name: str) -> list[Row]:
    """One table's rows, by column name (an absent table: no rows)."""
    if name not in tables(msi):
        return []
    lines = _run(["msiinfo", "export", str(msi), name]).split("\r\n")
    if len(lines) < 3:
        lines = _run(["msiinfo", "export", str(msi), name]).splitlines()
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"), strict=False)) for line in lines[3:] if line]


def tables(msi: Path) -> list[str]:
    return _run(["msiinfo", "tables", str(msi)]).split()


def sequence(msi: Path) -> dict[str, int]:
    return {row["Action"]: int(row["Sequence"]) for row in table(msi, "InstallExecuteSequence")}


def verify(msi: Path, stage: Path) -> None:
    """The tables the PC depends on, as ``wxs`` meant them; a KitError says what not."""
    problems = []
    order = sequence(msi)
    if not order["InstallInitialize"] < order["RemoveExistingProducts"] < order["StopServices"]:
        problems.append(
            f"RemoveExistingProducts at {order['RemoveExistingProducts']}: not inside the "
            "transaction, before the files"
        )
    if not order["InstallFiles"] < order["Setup"] < order["InstallServices"]:
        problems.append(f"Setup at {order['Setup']}: not between the files and the service")
    for action in ("Quiesce", "QuiesceUpgrade", "QuiesceRepair"):
        if not order["StopServices"] < order[action] < order["RemoveFiles"]:
            problems.append(
                f"{action} at {order[action]}: not between the service's stop and files"
            )
    if not (
        order["CostFinalize"] < order["ExpectedDir"] < order["OutsideProgramFiles"]
        < order["InstallInitialize"]
    ):  # fmt: skip
        problems.append("OutsideProgramFiles does not run once the folders are known")
    if not order["QuoteInProperty"] < order["InstallInitialize"]:
        problems.append("QuoteInProperty does not run before the script is made")
    types = {row["Action"]: int(row["Type"]) for row in table(msi, "CustomAction")}
    if not types["Setup"] & HIDE_TARGET:
        problems.append("Setup does not hide its command line (the token) from the log")
    for action in ("Setup", "SetupRollback", "Quiesce", "QuiesceUpgrade", "QuiesceRepair",
                   "RemoveHome", "PurgeData"):  # fmt: skip
        if types[action] & (IN_SCRIPT | NO_IMPERSONATE) != IN_SCRIPT | NO_IMPERSONATE:
            problems.append(f"{action} does not run deferred as SYSTEM (type {types[action]})")
    if not types["SetupRollback"] & ROLLBACK:
        problems.append("SetupRollback would not run on rollback")
    for action in ("RemoveHome", "PurgeData"):
        if not types[action] & COMMIT:
            problems.append(f"{action} would not wait for the uninstall's commit")
    properties = {row["Property"]: row["Value"] for row in table(msi, "Property")}
    if "ENROLL_TOKEN" not in properties.get("MsiHiddenProperties", "").split(";"):
        problems.append("ENROLL_TOKEN is not in MsiHiddenProperties")
    services = table(msi, "ServiceInstall")
    if [(row["Name"], int(row["ErrorControl"])) for row in services] != [
        (wxs.SERVICE_NAME, SERVICE_ERROR_CONTROL)
    ]:
        problems.append(f"ServiceInstall (one vital service): {services}")
    upgrades = {row["ActionProperty"]: int(row["Attributes"]) for row in table(msi, "Upgrade")}
    if upgrades.get("WIX_UPGRADE_DETECTED") != UPGRADE_ATTRIBUTES:
        problems.append(f"Upgrade: the same version would not be replaced ({upgrades})")
    files = {row["File"]: int(row["FileSize"]) for row in table(msi, "File")}
    staged = {wxs.file_id(relative): (stage / relative).stat().st_size
              for relative in wxs.staged_files(stage)}  # fmt: skip
    if files != staged:
        problems.append(f"File table: {len(files)} files, {len(staged)} staged")
    if problems:
        raise KitError("the MSI is not as meant (wixl?):\n  " + "\n  ".join(problems))


def extract(msi: Path, into: Path) -> None:
    """The MSI's files under ``into`` (``msiextract``): Program Files\\commune-agent\\..."""
    into.mkdir(parents=True, exist_ok=True)
    _run(["msiextract", "-C", str(into), str(msi)])
