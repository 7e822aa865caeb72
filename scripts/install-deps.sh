#!/usr/bin/env bash
# Installs what building, the demo and the tests need on Debian: the four C libraries offsite
# links, and the real tools the tests talk to (sqlite3, age, gzip). Safe to run again.
set -euo pipefail

packages=(libsqlite3-dev zlib1g-dev libsodium-dev libcurl4-openssl-dev sqlite3 age gzip ca-certificates python3)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
