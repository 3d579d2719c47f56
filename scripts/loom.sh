#!/usr/bin/env bash
# Runs the pool's loom models (pool/tests/loom.rs).
#
# Release build with debug assertions (loom is slow in debug), a preemption
# bound of 2 (raise LOOM_MAX_PREEMPTIONS for a deeper search), and a target
# dir of its own so `--cfg loom` does not invalidate the normal build.
# Extra arguments go to the test binary, e.g. `scripts/loom.sh thread_exit`.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}"
exec cargo test -p corral-pool --release --test loom -- --test-threads=1 "$@"
