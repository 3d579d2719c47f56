#!/usr/bin/env bash
# O_DIRECT random reads vs fio where the device is not the limit: a 1 GiB file on an
# ext4 file system on a loop device whose backing file lives in RAM (/dev/shm).
#
#   sudo benches/loop_device.sh            (ROUNDS=10 by default; needs root for losetup/mount)
#
# Why: this machine's virtual disk caps every engine near 85-90 K IOPS (fio alone gives
# 82 K at depth 64, 84 K at 128 and 85 K at 256: deeper queues only wait longer), so on
# it corral and fio can only tie. A loop device completes asynchronously through the
# block layer like a disk (its worker thread reads the backing file), with no cap but
# the CPUs: there the engines' own cost per request decides the IOPS.
#
# Runs `ONLY=direct benches/compare.sh` on the file and removes everything it set up.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-10}
[ "$(id -u)" = 0 ] || { echo "loop_device.sh: needs root (losetup, mount)" >&2; exit 1; }
for tool in losetup mkfs.ext4 fio; do
    command -v "$tool" >/dev/null || { echo "loop_device.sh: $tool not found" >&2; exit 1; }
done

WORK=$(mktemp -d)
BACKING=$(mktemp -p /dev/shm corral-loop.XXXXXX)
LOOP=
cleanup() {
    # The file system may stay busy for a moment after the last engine exits.
    for _ in 1 2 3 4 5; do umount "$WORK" 2>/dev/null && break; sleep 1; done
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
    rm -f "$BACKING"
    rmdir "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

truncate -s 1200M "$BACKING"
LOOP=$(losetup -f --show "$BACKING")
mkfs.ext4 -q "$LOOP"
mount "$LOOP" "$WORK"
dd if=/dev/urandom of="$WORK/1g.img" bs=1M count=1024 status=none
sync
echo "loop_device.sh: $WORK/1g.img on $LOOP (backing file in /dev/shm)" >&2
ONLY=direct ROUNDS=$ROUNDS benches/compare.sh "$WORK/1g.img"
