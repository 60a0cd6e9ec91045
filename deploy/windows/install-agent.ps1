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

  With -Collector and -Token (the rollout way) the PC enrolls itself instead of
  being given a config: `commune-agent enroll` makes its broker password here and
  writes agent.toml (identity and broker) into the data folder; its checks come
  from the collector. A PC enrolled already is only updated (-Reenroll to enroll
  it again, e.g. with a token that allows replacing it).

  Every program it runs is checked: a failed step stops the script with the step's
  name (Windows PowerShell 5.1 does not stop on a native command's exit code).
.PARAMETER Wheel
  The agent's wheel. Default: the one commune_monitor-*.whl beside this script (the kit).
.PARAMETER Config
  A ready agent.toml to install (without enrollment).
.PARAMETER Collector
  The collector's address (https://collector.example:8443), with -Token: enroll.
.PARAMETER Token
  The commune's enrollment token (commune-collector enroll-token create).
.PARAMETER AgentId
  This agent's id; default the computer name in slug form.
.PARAMETER Commune
  The commune this PC is in: a token of another commune is refused.
.PARAMETER CollectorCa
  The CA of the collector's HTTPS certificate, if not one Windows trusts.
.PARAMETER ClientCert
  Enroll with a key pair made on this PC and a client certificate instead of a
  password (installs the agent with its 'certs' extra).
.PARAMETER Python
  A python.exe (3.11 or newer) to build the venv with. Default: the newest Python 3
  the py launcher knows.
.PARAMETER Wheelhouse
  A folder of wheels (the agent's dependencies for win_amd64) for PCs without
  Internet: pip installs from it only (--no-index).
.EXAMPLE
  powershell -NoProfile -ExecutionPolicy Bypass -File .\install-agent.ps1 -Collector https://collector.dong-nai.example:8080 -Token 1a2b3c4d.xxxx
.EXAMPLE
  powershell -NoProfile -ExecutionPolicy Bypass -File .\install-agent.ps1 -Wheel .\commune_monitor-0.1.0-py3-none-any.whl -Config .\agent.toml
.EXAMPLE
  powershell -NoProfile -ExecutionPolicy Bypass -File .\install-agent.ps1 -Wheel .\commune_monitor-0.1.0-py3-none-any.whl -Config .\agent.toml -Wheelhouse .\wheels -Python "C:\Program Files\Python312\python.exe"
#>
param(
  [string]$Wheel = "",
  [string]$Config = "",
  [string]$Collector = "",
  [string]$Token = "",
  [string]$AgentId = "",
  [string]$Commune = "",
  [string]$CollectorCa = "",
  [switch]$Reenroll,
  [switch]$ClientCert,
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

if (-not $Wheel) {
  $found = @(Get-ChildItem -Path $PSScriptRoot -Filter 'commune_monitor-*.whl')
  if ($found.Count -ne 1) { throw "give -Wheel: $($found.Count) agent wheels beside this script" }
  $Wheel = $found[0].FullName
}
if ([bool]$Config -eq [bool]$Collector) { throw 'give either -Config FILE or -Collector URL -Token T' }
if ($Collector -and -not $Token) { throw '-Collector needs -Token (commune-collector enroll-token create)' }

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
$package = if ($ClientCert) { "$Wheel[certs]" } else { $Wheel }
Invoke-Native 'installing the agent' $VenvPython ($pipArguments + @($package))

$Installed = Join-Path $DataDir 'agent.toml'
if ($Config) {
  Copy-Item -Force $Config $Installed
} elseif ($Reenroll -or -not (Test-Path $Installed)) {
  # The token through the environment: not on a command line other users can see.
  $env:COMMUNE_ENROLL_TOKEN = $Token
  $enroll = @('enroll', '--collector', $Collector, '--config', $Installed)
  if ($AgentId) { $enroll += @('--id', $AgentId) }
  if ($Commune) { $enroll += @('--commune', $Commune) }
  if ($CollectorCa) { $enroll += @('--ca', $CollectorCa) }
  if ($Reenroll) { $enroll += @('--replace', '--force') }
  if ($ClientCert) { $enroll += @('--client-cert') }
  Invoke-Native 'enrolling with the collector (exit code 3: unreachable, run again)' $Agent $enroll
  Remove-Item Env:\COMMUNE_ENROLL_TOKEN
} else {
  Write-Output "$Installed exists: this PC is enrolled already; updating only (-Reenroll to enroll again)"
}
Invoke-Native 'checking the config' $Agent @('check-config', '--config', $Installed)
Invoke-Native 'installing the service' $Agent @('install-service', '--config', $Installed)
Get-Service -Name $ServiceName
