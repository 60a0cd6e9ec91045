<#
.SYNOPSIS
  Stops and removes the "CommuneAgent" Windows service; keeps the outbox and
  config in ProgramData unless -Purge is given.
.EXAMPLE
  .\uninstall-agent.ps1
  .\uninstall-agent.ps1 -Purge
#>
param(
  [string]$InstallDir = "$env:ProgramFiles\commune-agent",
  [string]$DataDir = "$env:ProgramData\commune-agent",
  [switch]$Purge
)
$ErrorActionPreference = 'Stop'

& "$InstallDir\venv\Scripts\python.exe" -c "from agent.winservice import remove; remove()"
Remove-Item -Recurse -Force $InstallDir
if ($Purge) { Remove-Item -Recurse -Force $DataDir }
