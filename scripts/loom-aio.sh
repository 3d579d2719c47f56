#!/usr/bin/env bash
# Runs the loom models of the aio notify protocol (aio/src/notify.rs, `mod tests`):
# waiter + temporary waiter + notifier (QEMU's promela models), a nested poll inside
# dispatch, two notifiers, and a non-blocking poll in between.
#
# The models build in aio/loom-notify, a crate that includes only notify.rs and sync.rs, so
# `--cfg loom` does not have to compile the coroutine runtime. Release with debug
# assertions, preemption bound 3 by default (LOOM_MAX_PREEMPTIONS raises it), a target dir
# of its own. Extra arguments go to the test binary, e.g. `scripts/loom-aio.sh nested`.
#
# `scripts/loom-aio.sh --mutants` instead runs the three-process model on two deliberately
# broken protocols (QEMU's plain-store accept; the eventfd read after processing, the second
# 2015 QEMU bug) and fails unless loom finds a lost wake-up in each.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom-aio}"
run() { cargo test --manifest-path aio/loom-notify/Cargo.toml --release -- --test-threads=1 "$@"; }
if [[ "${1:-}" == "--mutants" ]]; then
    # Build first, so that a compile error is not mistaken for a caught mutant.
    cargo test --manifest-path aio/loom-notify/Cargo.toml --release --no-run
    for m in plain-store-accept late-eventfd-read; do
        if out=$(LOOM_AIO_VARIANT=$m run waiter_temporary_waiter_notifier 2>&1); then
            echo "mutant $m: NOT caught by the loom model" >&2
            exit 1
        fi
        if ! grep -q deadlock <<<"$out"; then
            echo "mutant $m: the model failed, but not with a lost wake-up:" >&2
            echo "$out" | tail -20 >&2
            exit 1
        fi
        echo "mutant $m: caught (loom found a lost wake-up)"
    done
    exit 0
fi
run "$@"
