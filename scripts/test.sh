#!/usr/bin/env bash
# The whole test suite, as README.md gives it to a newcomer and as CI runs it:
#   1. every crate's unit, integration, C (ffi) and doc tests;
#   2. the loom models of the pool (get/put/steal/release, thread exit);
#   3. the loom models of the aio notify protocol, and its mutants (the model must
#      catch the two protocol bugs of QEMU's 2015 threads, or this fails).
# Miri needs the nightly toolchain's miri component, which a fresh machine may not
# be able to fetch: run scripts/miri.sh by hand where it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace"
cargo test --workspace

echo "== loom: corral-pool (scripts/loom.sh)"
scripts/loom.sh

echo "== loom: aio notify protocol (scripts/loom-aio.sh)"
scripts/loom-aio.sh
scripts/loom-aio.sh --mutants
