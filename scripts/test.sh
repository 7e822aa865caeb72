#!/usr/bin/env bash
# Installs what the tests need and runs them all: unit tests, the target conformance suite and the
# end-to-end tests that drive the built `offsite` binary against the real sqlite3, age and gunzip.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

swift build --build-tests
swift test --skip-build 2>&1 | tee .build/test-output.txt
