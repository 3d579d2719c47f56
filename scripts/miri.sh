#!/usr/bin/env bash
# Runs the pool's unit tests and doctests under miri (counts are scaled down
# with `cfg!(miri)`). Installs miri on the nightly toolchain if it is missing.
#
# Tree Borrows, not the default Stacked Borrows: crossbeam-epoch (our
# reclamation scheme) is known not to satisfy Stacked Borrows' stricter
# rules for its intrusive list (crossbeam-rs/crossbeam#545, #878) and
# crossbeam runs its own miri CI under Tree Borrows for that reason (#996).
# Permissive provenance silences the warning about crossbeam's tagged
# pointers (int-to-pointer casts). Leak checking is off because the only
# leaks miri reports are crossbeam-epoch's global collector (its per-thread
# registrations and garbage bags, deliberately never freed and reachable only
# through tagged pointers miri cannot follow); the pool's own objects are
# leak-checked by the tests themselves, which count every drop. The target
# dir is separate so the normal build is not invalidated.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
    rustup component add --toolchain nightly miri rust-src
fi
export CARGO_TARGET_DIR="${MIRI_TARGET_DIR:-target/miri}"
export MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-permissive-provenance -Zmiri-ignore-leaks ${MIRIFLAGS:-}"
# Isolation stays on: the pool needs no clock, file or environment access.
exec cargo +nightly miri test -p corral-pool "$@"
