#!/usr/bin/env bash
# File set figures: a first backup of 10,000 files / 2 GiB against `tar c | pigz -6 | age`, a second
# backup of the unchanged tree, one new 5 MiB file, a restore, and the peak RSS with 100,000 small
# files. Builds offsite in release mode as the container ships it, then runs bench/filesets.py,
# which generates the trees in bench/work/filesets/ (git-ignored) and prints the figures.
#
#   bash bench/filesets.sh
#
# Overrides: BENCH_RUNS (2), BENCH_FILES (10000), BENCH_TOTAL_MIB (2048), BENCH_SMALL_FILES (100000),
# BENCH_KEEP_WORK=1 keeps the generated trees for the next run, BENCH_FIRST_ONLY=1 stops after the
# first-backup comparison.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in pigz age tar; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
[ -x /usr/bin/time ] || missing+=(time)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "building offsite (release, static Swift runtime)" >&2
build=(swift build -c release --static-swift-stdlib)
"${build[@]}" --product offsite >/dev/null
BENCH_BIN="$("${build[@]}" --show-bin-path)"
export BENCH_BIN

exec python3 bench/filesets.py
