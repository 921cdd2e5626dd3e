#!/usr/bin/env bash
# infra/install-system-deps.sh — install the Debian packages shelfguard needs.
#
# Contract:
#   * Idempotent: each package is checked with `dpkg -s` first; only missing
#     ones are installed. When nothing is missing, apt is not touched at all
#     (no `apt-get update`, no network) and the script exits 0 quickly.
#   * Non-interactive (DEBIAN_FRONTEND=noninteractive), safe for CI.
#   * Needs root (or passwordless sudo) only when something has to be installed.
#   * Exit status: 0 when every package is present afterwards, non-zero otherwise.
#
# Packages:
#   kcat           Kafka CLI used by infra/kafka/kafka.sh for readiness + smoke tests
#   postgresql     server binaries (initdb, pg_ctl) used by infra/postgres/pg.sh
#   openjdk-17-jre-headless, maven
#                  run / assemble the local Kafka broker (infra/kafka/)
#   chromium, fonts-liberation
#                  headless browser (+ a stable font set) for UI tests/screenshots
#
# Usage: infra/install-system-deps.sh [extra-debian-package ...]
set -euo pipefail

PACKAGES=(kcat postgresql openjdk-17-jre-headless maven chromium fonts-liberation "$@")

is_installed() {
    # dpkg -s succeeds for half-removed packages too; require "install ok installed".
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if is_installed "$pkg"; then
        echo "install-system-deps: $pkg already installed"
    else
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: nothing to do"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        echo "install-system-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install-system-deps: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"

# Verify.
rc=0
for pkg in "${missing[@]}"; do
    if ! is_installed "$pkg"; then
        echo "install-system-deps: FAILED to install $pkg" >&2
        rc=1
    fi
done
[ "$rc" -eq 0 ] && echo "install-system-deps: done"
exit "$rc"
