"""Windows anti-malware: one PowerShell call returning Security Center and Defender as JSON.

The same ``parse_report`` reads what a real PowerShell prints and the recorded
outputs the tests feed it. When Security Center is absent (Windows Server:
"Invalid namespace", 0x8004100e) Defender's own status is used; when that is
absent too, running processes and services of known products are reported as
"installed, running, state unknown".
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from agent.antivirus.model import Product, ProductStateName
from agent.antivirus.productstate import decode_product_state

#: Gathers everything in one process start (PowerShell's cold start costs 0.2-2 s).
#: Its output is ASCII: PowerShell 5.1 writes redirected output in the OEM code page
#: (1258 on a Vietnamese Windows) and its ConvertTo-Json leaves non-ASCII as it is, so
#: every other character is written as a JSON \uXXXX escape: product names and
#: localised WMI errors arrive intact whatever the code page.
POWERSHELL_SCRIPT = r"""
$ErrorActionPreference = 'Stop'
[Console]::OutputEncoding = [System.Text.Encoding]::UTF8
$r = [ordered]@{}
try {
  $r.sc = @(Get-CimInstance -Namespace root/SecurityCenter2 -ClassName AntiVirusProduct |
    Select-Object displayName, instanceGuid, pathToSignedProductExe, productState, timestamp)
} catch { $r.sc_error = $_.Exception.Message }
try {
  $r.mp = Get-CimInstance -Namespace root/Microsoft/Windows/Defender `
      -ClassName MSFT_MpComputerStatus |
    Select-Object AMServiceEnabled, AntivirusEnabled, RealTimeProtectionEnabled,
      BehaviorMonitorEnabled, AntivirusSignatureVersion, AntivirusSignatureAge,
      QuickScanAge, FullScanAge, AMRunningMode, IsTamperProtected, AMProductVersion
} catch { $r.mp_error = $_.Exception.Message }
try { $r.os = Get-CimInstance Win32_OperatingSystem | Select-Object Caption, ProductType, Version }
catch { $r.os_error = $_.Exception.Message }
$json = $r | ConvertTo-Json -Compress -Depth 3
[regex]::Replace($json, '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
"""

#: Defender reports this many days for "never scanned".
NEVER = 4294967295

#: Process and service names of products common in Vietnamese offices (public
#: AV tables; whether Bkav and CMC register with Security Center is unconfirmed).
KNOWN_PRODUCTS: Mapping[str, tuple[str, ...]] = {
    "Bkav Pro": ("bkavservice.exe", "bka.exe", "bkavutil.exe", "bkavservice"),
    "CMC Antivirus": ("cmctrayicon.exe", "cmcnecore.exe", "cmcepagent.exe"),
    "Kaspersky": ("avp.exe", "klnagent.exe", "avp", "klnagent"),
    "ESET": ("ekrn.exe", "egui.exe", "ekrn"),
    "Microsoft Defender": ("msmpeng.exe", "nissrv.exe", "windefend"),
}


def windows_powershell(environ: Mapping[str, str], python_is_32bit: bool) -> str:
    """Windows PowerShell 5.1 by its full path: a service's PATH is not a user's, and a
    ``powershell.exe`` found on PATH could be anything. A 32-bit Python on 64-bit Windows
    sees a redirected System32 and must name the 64-bit one through ``Sysnative``."""
    root = environ.get("SystemRoot") or environ.get("SYSTEMROOT") or r"C:\Windows"
    folder = "System32"
    if python_is_32bit and environ.get("PROCESSOR_ARCHITEW6432"):
        folder = "Sysnative"
    return f"{root}\\{folder}\\WindowsPowerShell\\v1.0\\powershell.exe"


def oem_codec() -> str | None:
    """The console's OEM code page on Windows (cp1258 on a Vietnamese one), else None."""
    import sys

    if sys.platform != "win32":
        return None
    import ctypes

    return f"cp{ctypes.windll.kernel32.GetOEMCP()}"


def decode_output(data: bytes, oem: str | None = None) -> str:
    """What PowerShell printed: UTF-8 (the script asks for it, and writes ASCII), else the
    OEM code page an older or stricter host used; never an exception."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if oem:
        try:
            return data.decode(oem)
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("utf-8", "replace")


def _text(value: Any, limit: int = 200) -> str:
    """A name as people read it: composed (cp1258 writes Vietnamese decomposed)."""
    return unicodedata.normalize("NFC", str(value))[:limit]


class BadReport(ValueError):
    """PowerShell printed something that is not the report the script makes."""


@dataclass(frozen=True)
class WindowsReport:
    """What the PowerShell reader printed: Security Center's products, Defender's
    status and the edition of Windows."""

    security_center: list[Mapping[str, Any]] | None
    """None when the namespace is missing or the query failed."""
    security_center_error: str = ""
    defender: Mapping[str, Any] | None = None
    os_caption: str = ""
    is_server: bool = False


def parse_report(text: str) -> WindowsReport:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadReport(
            f"PowerShell output is not JSON ({exc.msg} at {exc.pos}): {text[:120]!r}"
        ) from None
    if not isinstance(raw, dict):
        raise BadReport(f"PowerShell output is JSON but not an object: {text[:120]!r}")
    sc = raw.get("sc")
    if isinstance(sc, dict):  # ConvertTo-Json flattens a one-element array in some versions
        sc = [sc]
    if sc is not None and not (isinstance(sc, list) and all(isinstance(x, dict) for x in sc)):
        raise BadReport(f"'sc' is not a list of products: {str(sc)[:120]!r}")
    mp = raw.get("mp")
    if mp is not None and not isinstance(mp, dict):
        raise BadReport(f"'mp' is not an object: {str(mp)[:120]!r}")
    os_info: dict[str, Any] = raw["os"] if isinstance(raw.get("os"), dict) else {}
    product_type = os_info.get("ProductType")
    return WindowsReport(
        security_center=sc,
        security_center_error=_text(raw.get("sc_error") or "", 400),
        defender=mp,
        os_caption=_text(os_info.get("Caption") or ""),
        # ProductType 1 = workstation, 2 = domain controller, 3 = server.
        is_server=product_type in (2, 3),
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _age(value: Any) -> float | None:
    age = _number(value)
    return None if age is None or age >= NEVER or age < 0 else age


def _is_defender(name: str) -> bool:
    lowered = name.lower()
    return "defender" in lowered or lowered == "windows security"


#: ``AMRunningMode`` as Get-MpComputerStatus spells it (Microsoft's documentation of
#: Defender's compatibility modes): only "Normal" is Defender protecting the PC. In the
#: passive modes another product is the antivirus: every toggle may still read true.
RUNNING_MODES: Mapping[str, str] = {
    "normal": "active",
    "passive mode": "passive",
    "sxs passive mode": "passive",
    "edr block mode": "passive",
    "not running": "stopped",
}


def running_mode(value: Any) -> str:
    """active, passive, stopped; "" when the build does not say (before 4.18); unknown
    for any other value, never taken for active."""
    if value is None or value == "":
        return ""
    return RUNNING_MODES.get(str(value).strip().lower(), "unknown")


def defender_product(mp: Mapping[str, Any], name: str = "Microsoft Defender") -> Product:
    """Defender's state from ``MSFT_MpComputerStatus``."""
    service = mp.get("AMServiceEnabled")
    antivirus = mp.get("AntivirusEnabled")
    raw_mode = str(mp.get("AMRunningMode") or "")
    mode = running_mode(mp.get("AMRunningMode"))
    state: ProductStateName
    if mode in ("passive", "stopped") or service is False or antivirus is False:
        # Passive or disabled Defender is normal beside a third-party product.
        state = "off"
    elif mode == "unknown":
        state = "unknown"
    elif service is True and antivirus is True:
        state = "on"  # "Normal", or an older build that does not report its mode
    else:
        state = "unknown"
    signature_age = _age(mp.get("AntivirusSignatureAge"))
    scans = [
        a for a in (_age(mp.get("QuickScanAge")), _age(mp.get("FullScanAge"))) if a is not None
    ]
    realtime = mp.get("RealTimeProtectionEnabled")
    return Product(
        name=name,
        source="defender",
        state=state,
        up_to_date=None if signature_age is None else True,
        realtime=realtime if isinstance(realtime, bool) else None,
        signature_age_days=signature_age,
        last_scan_age_days=min(scans) if scans else None,
        owner="microsoft",
        version=str(mp.get("AntivirusSignatureVersion") or ""),
        detail=f"running mode {raw_mode}" if raw_mode else "",
    )


def security_center_products(
    entries: Iterable[Mapping[str, Any]], defender: Mapping[str, Any] | None
) -> list[Product]:
    products: list[Product] = []
    for entry in entries:
        name = _text(entry.get("displayName") or "unnamed product")
        raw_state = entry.get("productState")
        decoded = decode_product_state(raw_state) if isinstance(raw_state, int) else None
        if decoded is None or decoded.state == "unknown":
            products.append(
                Product(
                    name=name,
                    source="security_center",
                    state="unknown",
                    product_state=raw_state if isinstance(raw_state, int) else None,
                    detail=f"undecodable productState {raw_state!r}",
                )
            )
            continue
        product = Product(
            name=name,
            source="security_center",
            state=decoded.state,
            up_to_date=decoded.up_to_date,
            product_state=raw_state,
            owner=decoded.owner,
        )
        if defender is not None and _is_defender(name):
            # Security Center says on/off; Defender adds ages and real-time state.
            details = defender_product(defender, name)
            product = msgspec.structs.replace(
                product,
                realtime=details.realtime,
                signature_age_days=details.signature_age_days,
                last_scan_age_days=details.last_scan_age_days,
                version=details.version,
            )
        products.append(product)
    return products


def detected_products(names: Iterable[str]) -> list[Product]:
    """Products whose processes or services run: installed and running, state unknown."""
    present = {n.lower() for n in names}
    found: list[Product] = []
    for product, markers in KNOWN_PRODUCTS.items():
        hits = sorted(m for m in markers if m in present)
        if hits:
            found.append(
                Product(
                    name=product,
                    source="process",
                    state="unknown",
                    detail="running: " + ", ".join(hits),
                )
            )
    return found


def products_from_report(report: WindowsReport, running: Iterable[str]) -> list[Product]:
    """Security Center first; Defender where it is absent; processes as the last resort."""
    if report.security_center:
        return security_center_products(report.security_center, report.defender)
    if report.defender is not None:
        defender = defender_product(report.defender)
        others = [p for p in detected_products(running) if p.name != "Microsoft Defender"]
        return [defender, *others]
    return detected_products(running)
