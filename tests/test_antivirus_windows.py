"""Windows anti-malware through the same subprocess + parsing path as on a real PC.

No Windows here: a stand-in "powershell" prints outputs recorded in the format
our PowerShell script produces (tests/data/antivirus), covering every worked
productState value of domain.md, multi-product PCs, Windows Server, a hang and
garbage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.antivirus.productstate import decode_product_state
from agent.antivirus.windows import detected_products, parse_report, products_from_report
from agent.checks.antivirus import AntivirusCheck
from agent.checks.options import AntivirusOptions
from agent.configtypes import Duration
from agent.wire import Sample

DATA = Path(__file__).parent / "data" / "antivirus"


@pytest.mark.parametrize(
    ("value", "state", "up_to_date", "owner"),
    [
        (397568, "on", True, "microsoft"),  # 0x061100 Defender on, up to date
        (266240, "on", True, "third_party"),  # 0x041000 third-party on
        (393472, "off", True, "microsoft"),  # 0x060100 Defender off
        (397584, "on", False, "microsoft"),  # 0x061110 Defender on, out of date
        (266256, "on", False, "third_party"),  # 0x041010 third-party out of date
        (262144, "off", True, "third_party"),  # 0x040000 third-party off
        (270336, "snoozed", True, "third_party"),  # 0x042000
        (462848, "on", True, "third_party"),  # 0x071000
    ],
)
def test_worked_product_states_decode_as_documented(
    value: int, state: str, up_to_date: bool, owner: str
) -> None:
    decoded = decode_product_state(value)
    assert (decoded.state, decoded.up_to_date, decoded.owner) == (state, up_to_date, owner)


@pytest.mark.parametrize(
    "value", [344064, 0, -1, 0x1000000, 0x041001, 0x044000, 0x041200, 0x041020, 0x001000]
)
def test_values_outside_the_table_are_unknown_never_guessed(value: int) -> None:
    decoded = decode_product_state(value)
    assert decoded.state == "unknown"
    assert decoded.up_to_date is None


def fake_powershell(tmp_path: Path, body: str) -> str:
    script = tmp_path / "powershell"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def run_check(tmp_path: Path, recorded: str, timeout: float = 30.0) -> list[Sample]:
    options = AntivirusOptions(
        source="windows",
        powershell=fake_powershell(tmp_path, f"cat '{DATA / recorded}'"),
        timeout=Duration(timeout),
    )
    return AntivirusCheck(options).collect()


def products(samples: list[Sample]) -> dict[str, dict[str, object]]:
    return {
        s.target: dict(s.fields) | {"source": s.tags["source"]}
        for s in samples
        if s.item == "product"
    }


@pytest.mark.parametrize(
    ("recorded", "verdict"),
    [
        ("defender-on.json", "protected"),
        ("defender-on-outdated.json", "outdated"),
        ("defender-on-signatures-10-days.json", "outdated"),
        ("bkav-on-defender-off.json", "protected"),
        ("kaspersky-outdated-defender-off.json", "outdated"),
        ("eset-off-defender-off.json", "unprotected"),
        ("cmc-snoozed.json", "unprotected"),
        ("eset-on-071000.json", "protected"),
        ("undecodable-344064.json", "unknown"),
        ("single-product-not-array.json", "protected"),
        ("server-defender.json", "protected"),
    ],
)
def test_pc_verdict_from_recorded_outputs(tmp_path: Path, recorded: str, verdict: str) -> None:
    samples = run_check(tmp_path, recorded)
    main = samples[0]
    assert main.outcome == "ok", main.error
    assert main.fields["verdict"] == verdict
    assert main.fields["protected"] is (verdict == "protected")


def test_multi_product_pc_reports_each_product(tmp_path: Path) -> None:
    found = products(run_check(tmp_path, "bkav-on-defender-off.json"))
    assert set(found) == {"Bkav Pro", "Windows Defender"}
    assert found["Bkav Pro"]["state"] == "on"
    assert found["Bkav Pro"]["enabled"] is True
    assert found["Bkav Pro"]["up_to_date"] is True
    assert found["Bkav Pro"]["product_state"] == 266240
    # Defender is off (passive beside Bkav): healthy, and its details come from MpComputerStatus.
    assert found["Windows Defender"]["state"] == "off"
    assert found["Windows Defender"]["realtime"] is False
    assert found["Windows Defender"]["signature_age_days"] == 40


def test_defender_details_are_merged_into_security_center_entry(tmp_path: Path) -> None:
    found = products(run_check(tmp_path, "defender-on.json"))
    defender = found["Windows Defender"]
    assert defender["realtime"] is True
    assert defender["signature_age_days"] == 0
    assert defender["last_scan_age_days"] == 1  # quick scan 1 day ago; full scan never (4294967295)
    assert defender["version"] == "1.421.117.0"


def test_signatures_older_than_the_limit_are_out_of_date_whatever_the_flag(tmp_path: Path) -> None:
    found = products(run_check(tmp_path, "defender-on-signatures-10-days.json"))
    assert found["Windows Defender"]["up_to_date"] is False
    assert found["Windows Defender"]["signature_age_days"] == 10


def test_windows_server_falls_back_to_defender(tmp_path: Path) -> None:
    samples = run_check(tmp_path, "server-defender.json")
    assert "no Security Center on Windows Server" in samples[0].error
    found = products(samples)
    assert found["Microsoft Defender"]["source"] == "defender"
    assert found["Microsoft Defender"]["state"] == "on"


def test_server_without_defender_falls_back_to_running_processes() -> None:
    report = parse_report((DATA / "server-no-defender.json").read_text())
    assert report.is_server
    found = products_from_report(report, ["svchost.exe", "BkavService.exe", "ekrn.exe"])
    assert {p.name for p in found} == {"Bkav Pro", "ESET"}
    assert all(p.source == "process" and p.state == "unknown" for p in found)
    assert "bkavservice.exe" in found[0].detail


def test_process_detection_with_nothing_known_finds_nothing() -> None:
    assert detected_products(["svchost.exe", "explorer.exe"]) == []


def test_undecodable_state_is_reported_with_its_raw_value(tmp_path: Path) -> None:
    found = products(run_check(tmp_path, "undecodable-344064.json"))
    assert found["Unknown AV"]["state"] == "unknown"
    assert found["Unknown AV"]["product_state"] == 344064
    assert "enabled" not in found["Unknown AV"]


def test_powershell_that_hangs_is_a_timeout_not_a_crash(tmp_path: Path) -> None:
    options = AntivirusOptions(
        source="windows", powershell=fake_powershell(tmp_path, "sleep 30"), timeout=Duration(6)
    )
    samples = AntivirusCheck(options).collect()
    assert samples[0].outcome == "timeout"
    assert samples[0].fields["verdict"] == "unknown"
    assert "PowerShell" in samples[0].error


@pytest.mark.parametrize("recorded", ["garbage.txt", "not-an-object.json"])
def test_garbage_output_is_a_bad_response_naming_what_came(tmp_path: Path, recorded: str) -> None:
    samples = run_check(tmp_path, recorded)
    assert samples[0].outcome == "bad_response"
    assert samples[0].fields["verdict"] == "unknown"
    assert len(samples) == 1
    expected = "not JSON" if recorded == "garbage.txt" else "not an object"
    assert expected in samples[0].error


def test_missing_powershell_is_an_error_sample(tmp_path: Path) -> None:
    options = AntivirusOptions(source="windows", powershell=str(tmp_path / "absent"))
    samples = AntivirusCheck(options).collect()
    assert samples[0].outcome == "error"
    assert "cannot run" in samples[0].error


@pytest.mark.parametrize(
    ("mode", "state"),
    [
        ("Normal", "on"),
        ("Passive Mode", "off"),
        ("SxS Passive Mode", "off"),
        ("EDR Block Mode", "off"),
        ("Not running", "off"),
        (None, "on"),  # builds before 4.18 do not report a mode: the toggles decide
        ("Passive", "unknown"),  # not a value Defender writes: never taken for active
        ("Something new", "unknown"),
    ],
)
def test_every_running_mode_defender_reports_is_decoded(mode: str | None, state: str) -> None:
    from agent.antivirus.windows import defender_product

    # Every toggle true, as on a passive host (mondoohq/mql #10381): only the mode tells.
    mp = {"AMServiceEnabled": True, "AntivirusEnabled": True, "RealTimeProtectionEnabled": True}
    product = defender_product({**mp, "AMRunningMode": mode})
    assert product.state == state


@pytest.mark.parametrize(
    ("name", "products"),
    [
        ("ms-docs-get-mpcomputerstatus-2024.json", [("Microsoft Defender", "on", 1.0)]),
        ("pastebin-GbCihpg9-defender-2022.json", [("Microsoft Defender", "on", 0.0)]),
        ("mondoo-passive-mode-every-toggle-true.json", [("Microsoft Defender", "off", None)]),
        ("idera-securitycenter2-defender-397568.json", [("Windows Defender", "on", None)]),
        (
            "digirati-symantec-endpoint-protection-462848.json",
            [("Symantec Endpoint Protection", "on", None)],
        ),
    ],
)
def test_outputs_published_from_real_machines(
    name: str, products: list[tuple[str, str, float | None]]
) -> None:
    report = parse_report((DATA / name).read_text())
    found = products_from_report(report, running=[])
    assert [(p.name, p.state, p.signature_age_days) for p in found] == products


def test_a_passive_defender_is_not_protection(tmp_path: Path) -> None:
    """The headline figure: a PC whose only Defender is passive is not protected by it."""
    samples = run_check(tmp_path, "mondoo-passive-mode-every-toggle-true.json")
    assert samples[0].outcome == "ok", samples[0].error
    assert samples[0].fields["verdict"] == "unprotected"
    assert samples[0].fields["protected"] is False


# Windows-only paths, exercised with the data a Windows would give -----------------------

VIETNAMESE = "Phần mềm diệt virus Bkav Pro"
#: The same words as Windows' Vietnamese code page 1258 writes them: â and ê precomposed,
#: the tone marks combining (it has no precomposed ầ, ề, ệ).
CP1258_FORM = "Ph\u00e2\u0300n m\u00ea\u0300m di\u00ea\u0323t virus Bkav Pro"


def test_the_script_asks_for_ascii_and_utf8_output() -> None:
    from agent.antivirus.windows import POWERSHELL_SCRIPT

    assert "[Console]::OutputEncoding = [System.Text.Encoding]::UTF8" in POWERSHELL_SCRIPT
    assert "[^\\x00-\\x7F]" in POWERSHELL_SCRIPT and "'\\u{0:x4}'" in POWERSHELL_SCRIPT


def test_non_ascii_names_arrive_intact_in_every_form_powershell_may_print() -> None:
    from agent.antivirus.windows import decode_output

    report = {"sc": [{"displayName": VIETNAMESE, "productState": 266240}]}
    escaped = json.dumps(report, ensure_ascii=True).encode("ascii")  # what the script prints
    composed = CP1258_FORM.encode("cp1258")
    oem = (
        json.dumps({"sc": [{"displayName": "X", "productState": 266240}]})
        .replace('"X"', '"' + CP1258_FORM + '"')
        .encode("cp1258")
    )  # an older host ignoring the script's output encoding
    for data, codec in ((escaped, None), (oem, "cp1258"), (b"\xef\xbb\xbf" + escaped, None)):
        parsed = parse_report(decode_output(data, codec))
        assert parsed.security_center is not None
        [product] = products_from_report(parsed, running=[])
        assert product.name == VIETNAMESE, data[:60]
    assert decode_output(composed, "cp1258") == CP1258_FORM
    assert decode_output(b"\xff\xfe\x00", None)  # undecodable: replaced, never an exception


def test_powershell_is_named_by_its_full_path() -> None:
    from agent.antivirus.windows import windows_powershell

    environ = {"SystemRoot": r"D:\WINDOWS"}
    assert windows_powershell(environ, False) == (
        r"D:\WINDOWS\System32\WindowsPowerShell\v1.0\powershell.exe"
    )
    # A 32-bit Python on 64-bit Windows: System32 would be the 32-bit SysWOW64.
    wow = {**environ, "PROCESSOR_ARCHITEW6432": "AMD64"}
    assert windows_powershell(wow, True) == (
        r"D:\WINDOWS\Sysnative\WindowsPowerShell\v1.0\powershell.exe"
    )
    assert windows_powershell({}, False).startswith("C:\\Windows\\System32\\")


def test_processes_that_vanish_or_refuse_while_listed_are_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psutil

    from agent.checks import antivirus

    class Gone:
        @property
        def info(self) -> dict[str, str]:
            raise psutil.NoSuchProcess(4242)

    class Readable:
        info = {"name": "BKavService.exe"}

    def listing(_: object) -> object:
        yield Readable()
        raise psutil.AccessDenied(4)

    monkeypatch.setattr(psutil, "process_iter", listing)
    assert antivirus.running_names() == {"bkavservice.exe"}

    def vanishing(_: object) -> object:
        yield Gone()

    monkeypatch.setattr(psutil, "process_iter", vanishing)
    assert antivirus.running_names() == set()
