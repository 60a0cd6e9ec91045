<#
.SYNOPSIS
  Installs commune-agent as the Windows service "CommuneAgent".
.DESCRIPTION
  Run in an elevated PowerShell on the commune PC. Creates a virtual
  environment, installs the agent wheel (pywin32 comes with it on Windows),
  registers pywin32's service host, validates the config and installs and
  starts the service (LocalSystem, automatic start, restart on failure).
.EXAMPLE
  .\install-agent.ps1 -Wheel .\commune_monitor-0.1.0-py3-none-any.whl -Config .\agent.toml
#>
param(
  [Parameter(Mandatory = $true)][string]$Wheel,
  [Parameter(Mandatory = $true)][string]$Config,
  [string]$InstallDir = "$env:ProgramFiles\commune-agent",
  [string]$DataDir = "$env:ProgramData\commune-agent",
  [string]$Python = "py"
)
$ErrorActionPreference = 'Stop'

New-Item -ItemType Directory -Force -Path $InstallDir, $DataDir | Out-Null
& $Python -3 -m venv "$InstallDir\venv"
& "$InstallDir\venv\Scripts\python.exe" -m pip install --upgrade pip
& "$InstallDir\venv\Scripts\python.exe" -m pip install $Wheel
& "$InstallDir\venv\Scripts\python.exe" -m pywin32_postinstall -install

# The config may hold secrets: only SYSTEM and Administrators may read it.
Copy-Item -Force $Config "$DataDir\agent.toml"
icacls "$DataDir\agent.toml" /inheritance:r /grant:r "SYSTEM:(R)" "Administrators:(F)" | Out-Null

& "$InstallDir\venv\Scripts\commune-agent.exe" check-config --config "$DataDir\agent.toml"
if ($LASTEXITCODE -ne 0) { throw "the config is not valid; nothing was installed" }
& "$InstallDir\venv\Scripts\commune-agent.exe" install-service --config "$DataDir\agent.toml"
Get-Service CommuneAgent
