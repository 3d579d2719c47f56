#!/usr/bin/env bash
# Runs the loom models of the aio notify protocol (aio/src/notify.rs, `mod tests`):
# waiter + temporary waiter + notifier (QEMU's promela models), a nested poll inside
# dispatch, two notifiers, and a non-blocking poll in between.
#
# The models build in aio/loom-notify, a crate that includes only notify.rs and sync.rs, so
# `--cfg loom` does not have to compile the coroutine runtime. Release with debug
# assertions, preemption bound 3 by default (LOOM_MAX_PREEMPTIONS raises it), a target dir
# of its own. Extra arguments go to the test binary, e.g. `scripts/loom-aio.sh nested`.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom-aio}"
exec cargo test --manifest-path aio/loom-notify/Cargo.toml --release -- --test-threads=1 "$@"
