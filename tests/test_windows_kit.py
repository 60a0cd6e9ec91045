"""The Windows install scripts, checked on their text (no Windows here): every native
program's exit code checked (Windows PowerShell 5.1 does not stop on it), an update
in place on a re-run, offline wheels, permissions by SID, no pywin32_postinstall, and an
uninstall that waits for the service to be gone before deleting its files."""

from __future__ import annotations

import re

import pytest

from agent.commands import main
from agent.servicehost import SERVICE_NAME
from tests.servers import REPO

KIT = REPO / "deploy" / "windows"
SCRIPTS = ["install-agent.ps1", "uninstall-agent.ps1"]


def code(script: str) -> list[str]:
    """The script's lines without its comment-based help and comments."""
    text = (KIT / script).read_text()
    text = re.sub(r"<#.*?#>", "", text, flags=re.S)
    return [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_native_program_runs_through_the_exit_code_check(script: str) -> None:
    lines = code(script)
    body = "\n".join(lines)
    function = re.search(r"function Invoke-Native \{(.*?)\n\}", body, re.S)
    assert function, "no Invoke-Native"
    assert "$LASTEXITCODE -ne 0" in function.group(1) and "throw" in function.group(1)
    calls = [line for line in lines if re.match(r"\s*&\s", line)]
    assert calls == ["  & $Program @Arguments"], calls  # the only call: inside the check
    # Nothing else starts a program directly (an .exe, icacls, sc, python, pip, py).
    for line in lines:
        if "Invoke-Native" in line or "function" in line:
            continue
        assert not re.search(r"^\s*(\$\w+|[\w.-]+\.exe|icacls|sc|py|python|pip)\s+[-'\"$]", line), (
            line
        )
    assert body.count("{") == body.count("}") and body.count("(") == body.count(")")


def test_install_updates_in_place_and_works_offline() -> None:
    body = "\n".join(code("install-agent.ps1"))
    assert "Test-Path $VenvPython" in body  # a venv that exists is reused
    assert "Stop-Service -Name $ServiceName" in body and "WaitForStatus('Stopped'" in body
    assert "'--no-index', '--find-links', $Wheelhouse" in body
    # -3 is the py launcher's argument: never given to a python.exe.
    [launcher] = [line for line in body.splitlines() if "'-3'" in line]
    assert "'py.exe'" in launcher
    assert "pywin32_postinstall" not in body
    for command in ("check-config", "install-service"):
        assert f"'{command}'" in body and command in main.commands


def test_permissions_are_set_on_the_data_folder_by_sid() -> None:
    body = "\n".join(code("install-agent.ps1"))
    grant = next(line for line in body.splitlines() if "/grant:r" in line)
    assert "*S-1-5-18:(OI)(CI)F" in grant and "*S-1-5-32-544:(OI)(CI)F" in grant
    assert "SYSTEM:" not in body and "Administrators:" not in body  # localised names
    assert "'/inheritance:r'" in body and "$DataDir" in grant


def test_uninstall_waits_for_the_service_to_be_gone_before_deleting_files() -> None:
    body = "\n".join(code("uninstall-agent.ps1"))
    removed = body.index("from agent.winservice import remove")
    waited = body.index("while ((Get-Service -Name $ServiceName")
    deleted = body.index("Remove-Item -Recurse -Force $InstallDir")
    assert removed < waited < deleted


def test_the_readme_says_how_to_run_the_scripts_past_the_execution_policy() -> None:
    readme = (KIT / "README.md").read_text()
    assert "-ExecutionPolicy Bypass -File" in readme and "Unblock-File" in readme
    assert SERVICE_NAME in readme and "install-agent.ps1" in readme
    for script in SCRIPTS:
        assert "-ExecutionPolicy Bypass -File" in (KIT / script).read_text()


def test_install_enrolls_with_the_agents_own_options_and_keeps_the_token_off_the_line() -> None:
    body = "\n".join(code("install-agent.ps1"))
    enroll = main.commands["enroll"]
    options = {opt for param in enroll.params for opt in getattr(param, "opts", [])}
    used = set(re.findall(r"'(--[a-z-]+)'", body[body.index("$enroll = @('enroll'") :]))
    assert used and used <= options, used - options
    assert "'--token'" not in body  # the environment carries it instead
    token = next(p for p in enroll.params if p.name == "token")
    assert token.envvar == "COMMUNE_ENROLL_TOKEN" and "$env:COMMUNE_ENROLL_TOKEN = $Token" in body
    assert "Test-Path $Installed" in body  # a PC enrolled already is only updated
    assert "'--client-cert'" in body and '"$Wheel[certs]"' in body  # its key needs cryptography
