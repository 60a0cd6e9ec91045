<#
.SYNOPSIS
  Installs, or updates, commune-agent as the Windows service "CommuneAgent".
.DESCRIPTION
  Run in an elevated Windows PowerShell on the commune PC. Creates (or reuses) a
  virtual environment, installs the agent wheel into it (pywin32 comes with it on
  Windows; from -Wheelhouse when the PC has no Internet), copies the config into
  the data folder, which only SYSTEM and Administrators may open, validates the
  config, and installs and starts the service (LocalSystem, automatic start,
  restarted after any failure). Run it again with a newer wheel to update: the
  service is stopped, updated in place and started; the outbox is kept.

  Every program it runs is checked: a failed step stops the script with the step's
  name (Windows PowerShell 5.1 does not stop on a native command's exit code).
.PARAMETER Python
  A python.exe (3.11 or newer) to build the venv with. Default: the newest Python 3
  the py launcher knows.
.PARAMETER Wheelhouse
  A folder of wheels (the agent's dependencies for win_amd64) for PCs without
  Internet: pip installs from it only (--no-index).
.EXAMPLE
  powershell -NoProfile -ExecutionPolicy Bypass -File .\install-agent.ps1 -Wheel .\commune_monitor-0.1.0-py3-none-any.whl -Config .\agent.toml
.EXAMPLE
  powershell -NoProfile -ExecutionPolicy Bypass -File .\install-agent.ps1 -Wheel .\commune_monitor-0.1.0-py3-none-any.whl -Config .\agent.toml -Wheelhouse .\wheels -Python "C:\Program Files\Python312\python.exe"
#>
param(
  [Parameter(Mandatory = $true)][string]$Wheel,
  [Parameter(Mandatory = $true)][string]$Config,
  [string]$InstallDir = "$env:ProgramFiles\commune-agent",
  [string]$DataDir = "$env:ProgramData\commune-agent",
  [string]$Python = "",
  [string]$Wheelhouse = ""
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 2
# What this script prints reaches logs intact, Vietnamese included.
[Console]::OutputEncoding = [System.Text.Encoding]::UTF8

# A native program's failure does not stop Windows PowerShell 5.1: every one runs here.
function Invoke-Native {
  param([string]$Step, [string]$Program, [string[]]$Arguments)
  & $Program @Arguments
  if ($LASTEXITCODE -ne 0) {
    throw "$Step failed (exit code $LASTEXITCODE): $Program $($Arguments -join ' ')"
  }
}

$ServiceName = 'CommuneAgent'
$Venv = Join-Path $InstallDir 'venv'
$VenvPython = Join-Path $Venv 'Scripts\python.exe'
$Agent = Join-Path $Venv 'Scripts\commune-agent.exe'
$Icacls = Join-Path $env:SystemRoot 'System32\icacls.exe'

New-Item -ItemType Directory -Force -Path $InstallDir, $DataDir | Out-Null
# Only SYSTEM and Administrators, by SID (the group names are translated on a
# Vietnamese Windows), on the folder and everything in it: config, passwords, outbox.
Invoke-Native 'protecting the data folder' $Icacls @(
  $DataDir, '/inheritance:r', '/grant:r', '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F'
)

if (-not (Test-Path $VenvPython)) {
  if ($Python) {
    Invoke-Native 'creating the venv' $Python @('-m', 'venv', $Venv)
  } else {
    Invoke-Native 'creating the venv (py launcher)' 'py.exe' @('-3', '-m', 'venv', $Venv)
  }
}

# An update: the running service holds the venv's files open.
$existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($existing -and $existing.Status -ne 'Stopped') {
  Stop-Service -Name $ServiceName
  $existing.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(60))
}

$pipArguments = @('-m', 'pip', 'install', '--disable-pip-version-check', '--upgrade')
if ($Wheelhouse) { $pipArguments += @('--no-index', '--find-links', $Wheelhouse) }
Invoke-Native 'installing the agent' $VenvPython ($pipArguments + @($Wheel))

Copy-Item -Force $Config (Join-Path $DataDir 'agent.toml')
$Installed = Join-Path $DataDir 'agent.toml'
Invoke-Native 'checking the config' $Agent @('check-config', '--config', $Installed)
Invoke-Native 'installing the service' $Agent @('install-service', '--config', $Installed)
Get-Service -Name $ServiceName
