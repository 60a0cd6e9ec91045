<#
.SYNOPSIS
  Stops and removes the "CommuneAgent" Windows service; keeps the outbox and
  config in ProgramData unless -Purge is given.
.EXAMPLE
  powershell -NoProfile -ExecutionPolicy Bypass -File .\uninstall-agent.ps1
.EXAMPLE
  powershell -NoProfile -ExecutionPolicy Bypass -File .\uninstall-agent.ps1 -Purge
#>
param(
  [string]$InstallDir = "$env:ProgramFiles\commune-agent",
  [string]$DataDir = "$env:ProgramData\commune-agent",
  [switch]$Purge
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 2

function Invoke-Native {
  param([string]$Step, [string]$Program, [string[]]$Arguments)
  & $Program @Arguments
  if ($LASTEXITCODE -ne 0) {
    throw "$Step failed (exit code $LASTEXITCODE): $Program $($Arguments -join ' ')"
  }
}

$ServiceName = 'CommuneAgent'
$VenvPython = Join-Path $InstallDir 'venv\Scripts\python.exe'
if (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue) {
  # Stops the service, waiting for it, then deletes it.
  Invoke-Native 'removing the service' $VenvPython @('-c', 'from agent.winservice import remove; remove()')
  # Deleted only once nothing holds it: the files below are free when it is gone.
  $deadline = (Get-Date).AddSeconds(60)
  while ((Get-Service -Name $ServiceName -ErrorAction SilentlyContinue) -and (Get-Date) -lt $deadline) {
    Start-Sleep -Milliseconds 500
  }
  if (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue) {
    throw "the service $ServiceName is still there after 60 s: close services.msc and run again"
  }
}
Remove-Item -Recurse -Force $InstallDir -ErrorAction SilentlyContinue
if ($Purge) { Remove-Item -Recurse -Force $DataDir }
