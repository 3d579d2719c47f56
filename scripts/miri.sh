#!/usr/bin/env bash
# Runs the pool's unit tests and doctests under miri (counts are scaled down
# with `cfg!(miri)`). Installs miri on the nightly toolchain if it is missing.
#
# Miri's default Stacked Borrows model plus its leak check run; the target
# dir is separate so the normal build is not invalidated.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
    rustup component add --toolchain nightly miri rust-src
fi
export CARGO_TARGET_DIR="${MIRI_TARGET_DIR:-target/miri}"
# Isolation stays on: the pool needs no clock, file or environment access.
exec cargo +nightly miri test -p corral-pool "$@"
