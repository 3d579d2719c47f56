#!/usr/bin/env bash
# The coroutine figures README.md quotes, in one go (a few minutes): three
# `corral lifecycle` runs per guard kind, eight `--cross-thread` runs, two
# `make -C ffi bench` runs, and the null backends against `qemu-img bench`
# (skipped when qemu-img is missing). Output: target/figures.log
set -u
cd "$(dirname "$0")/.."
out=target/figures.log
mkdir -p target
: > "$out"
log() { echo "\$ $*" >> "$out"; "$@" >> "$out" 2>&1; echo "[rc=$?]" >> "$out"; }
cargo build --release -q
C=${CARGO_TARGET_DIR:-target}/release/corral
echo "commit: $(git log --oneline -1 2>/dev/null)" >> "$out"
echo "load: $(cat /proc/loadavg)" >> "$out"
for _ in 1 2 3; do log "$C" lifecycle --json; done
for _ in 1 2 3; do log "$C" lifecycle --guard mprotect --json; done
for _ in 1 2 3 4 5 6 7 8; do log "$C" lifecycle --cross-thread --json; done
echo "load: $(cat /proc/loadavg)" >> "$out"
for _ in 1 2; do log make -C ffi bench; done
log "$C" bench --backend null -c 2000000 -d 64 --json
log "$C" bench --backend null-bh -c 2000000 -d 64 --json
log "$C" bench --backend null -c 2000000 -d 64 --mode heap --json
if command -v qemu-img >/dev/null; then
    log qemu-img bench -c 2000000 -d 64 -t none null-co://
    log qemu-img bench -c 2000000 -d 64 -t none null-aio://
fi
echo "load: $(cat /proc/loadavg)" >> "$out"
echo "figures in $out"
