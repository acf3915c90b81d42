#!/usr/bin/env bash
# The project's test command: installs what is missing, builds, and runs the
# whole suite (unit tests, Keras fixtures, multi-rank tests under mpirun).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
swift build --build-tests
swift test --skip-build "$@"
