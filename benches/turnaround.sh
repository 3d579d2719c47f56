#!/usr/bin/env bash
# Where an O_DIRECT run's time goes between the device and the engine: traces the block
# layer (tracefs, needs root) while corral and fio read 4 KiB blocks at random, depth 64,
# and measures each engine's *turnaround*: from the first completion of a burst to the
# next request the engine hands the block layer.
#
#   sudo benches/turnaround.sh FILE            (ROUNDS=3 COUNT=50000 by default)
#
# Why: IOPS on a virtual disk vary by +-5% from run to run, with the host, more than the
# engines differ. A virtio disk here completes a whole depth-64 queue in one interrupt,
# so a run is a chain of cycles: the device works through 64 requests, then waits while
# the guest takes the completions and resubmits. IOPS = 64 / (64 * device time per
# request + turnaround); the device's share drifts with the host, the turnaround is the
# engine's own (the kernel's completion work it asks for, the wake-up, its resubmission
# path), and its median over hundreds of bursts is steady from one run to the next.
#
# Prints per engine: IOPS, bursts, requests per burst, turnaround p50/mean/p90 (us).
# The trace adds about 1 us per block event to every engine alike.
set -euo pipefail
cd "$(dirname "$0")/.."

FILE=${1:?usage: benches/turnaround.sh FILE}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-50000}
T=/sys/kernel/tracing
[ -w "$T/trace" ] || { echo "turnaround.sh: $T is not writable (run as root with tracefs mounted)" >&2; exit 1; }
command -v fio >/dev/null || { echo "turnaround.sh: fio not found; install it with: apt-get install -y fio" >&2; exit 1; }

cargo build --release --quiet
CORRAL=${CARGO_TARGET_DIR:-target}/release/corral
EVENTS="block/block_rq_issue block/block_rq_complete"
OUT=$(mktemp -d)
restore() {
    echo 0 >"$T/tracing_on"
    for e in $EVENTS; do echo 0 >"$T/events/$e/enable"; done
    echo >"$T/trace"
    echo "$BUF_BEFORE" >"$T/buffer_size_kb"
    echo "$ON_BEFORE" >"$T/tracing_on"
    rm -rf "$OUT"
}
BUF_BEFORE=$(cat "$T/buffer_size_kb" | grep -Eo '^[0-9]+')
ON_BEFORE=$(cat "$T/tracing_on")
trap restore EXIT
echo 32768 >"$T/buffer_size_kb"

# Runs one engine under the trace; appends "label iops" to $OUT/iops and the trace to $OUT/label.N.
traced() { # label round command...
    local label=$1 round=$2
    shift 2
    echo 0 >"$T/tracing_on"
    echo >"$T/trace"
    for e in $EVENTS; do echo 1 >"$T/events/$e/enable"; done
    echo 1 >"$T/tracing_on"
    local out
    out=$("$@" 2>/dev/null)
    echo 0 >"$T/tracing_on"
    cp "$T/trace" "$OUT/$label.$round"
    case $label in
    corral*) echo "$label $(sed -nE 's/.*"iops":([0-9.]+).*/\1/p' <<<"$out")" >>"$OUT/iops" ;;
    *) echo "$label $(awk -F';' '{ print $8 }' <<<"$out")" >>"$OUT/iops" ;;
    esac
}

fio_cmd() { # engine
    echo fio --name=turnaround --filename="$FILE" --rw=randread --bs=4096 --iodepth=64 \
        --ioengine="$1" --direct=1 --invalidate=0 --number_ios="$COUNT" --size=1G \
        --output-format=terse --terse-version=3
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    echo "turnaround.sh: round $round of $ROUNDS" >&2
    for pair in linux-aio:libaio io-uring:io_uring; do
        backend=${pair%%:*} engine=${pair##*:}
        corral=("$CORRAL" bench --backend "$backend" -n --random -d 64 -s 4096 -c "$COUNT" --json "$FILE")
        # shellcheck disable=SC2046 # fio_cmd prints words meant to be split
        if ((round % 2)); then
            traced "corral-$backend" "$round" "${corral[@]}"
            traced "fio-$engine" "$round" $(fio_cmd "$engine")
        else
            traced "fio-$engine" "$round" $(fio_cmd "$engine")
            traced "corral-$backend" "$round" "${corral[@]}"
        fi
    done
done

echo
echo "O_DIRECT 4 KiB random reads, depth 64, $COUNT requests, $ROUNDS rounds ($FILE)"
echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "turnaround: first completion of a burst -> next request handed to the block layer (us)"
printf '%-16s %8s %8s %8s %8s %8s %8s\n' engine IOPS bursts req/burst p50 mean p90
for label in corral-linux-aio fio-libaio corral-io-uring fio-io_uring; do
    iops=$(awk -v l="$label" '$1 == l { print $2 }' "$OUT/iops" | sort -n | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    # A burst starts at a completion 100 us or more after the one before (inside a burst
    # they come about 1 us apart, bursts several hundred apart); its turnaround ends at the
    # next issue. Only the disk with the most events counts.
    awk -v iops="$iops" -v label="$label" '
        FNR == 1 { first[n + 1] = 1 }
        {
            for (i = 1; i < NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) break
            if (i >= NF) next
            ev = $(i + 1); dev = $(i + 2)
            if (ev != "block_rq_issue:" && ev != "block_rq_complete:") next
            n++; t[n] = substr($i, 1, length($i) - 1) + 0; e[n] = (ev == "block_rq_issue:"); d[n] = dev; count[dev]++
        }
        END {
            for (k in count) if (count[k] > best) { best = count[k]; disk = k }
            last = -1; b = 0
            for (j = 1; j <= n; j++) {
                if (j in first) { open = 0; last = -1 } # where the next run begins
                if (d[j] != disk) continue
                if (!e[j]) {
                    gap = t[j] - last; last = t[j]
                    if (gap < 0 || gap >= 100e-6) { start = t[j]; open = 1; b++ }
                    if (b > 0) inburst[b]++
                } else if (open) {
                    turn[b] = (t[j] - start) * 1e6; open = 0
                }
            }
            m = 0; sum = 0; reqs = 0
            for (j = 1; j <= b; j++) if (j in turn) { m++; v[m] = turn[j]; sum += turn[j]; reqs += inburst[j] }
            for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (v[y] < v[x]) { tmp = v[x]; v[x] = v[y]; v[y] = tmp }
            if (m == 0) { printf "%-16s %8.0f %8s\n", label, iops, "no bursts"; exit }
            p90 = int(m * 0.9); if (p90 < 1) p90 = 1
            printf "%-16s %8.0f %8d %8.1f %8.1f %8.1f %8.1f\n", label, iops, m, reqs / m, v[int((m + 1) / 2)], sum / m, v[p90]
        }' "$OUT/$label".*
done
