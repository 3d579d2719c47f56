#!/usr/bin/env bash
# Compares corral with fio and qemu-img on 4 KiB reads at depth 64 from one file:
# O_DIRECT (device-bound) and page-cache reads (CPU-bound), rounds interleaved, medians.
# Random offsets for corral and fio, each block at most once (fio's default random map,
# corral's --random); `qemu-img bench` only reads sequentially, so corral
# also runs sequentially beside it (mode *-seq).
#
#   benches/compare.sh [FILE]        (default: target/compare-1g.img, created if missing)
#   ROUNDS=5 COUNT_DIRECT=200000 COUNT_CACHED=1000000 COUNT_NULL=2000000 benches/compare.sh
#   ONLY=direct ROUNDS=15 benches/compare.sh FILE   (only the O_DIRECT random reads vs fio)
#
# O_DIRECT reads on a virtual disk vary by +-5% from one run to the next, more than the
# engines differ, so each corral run and the fio run it is compared with go back to back,
# in alternating order (corral first in odd rounds, fio first in even ones: a drift or a
# position effect falls on both sides), and the summary gives each round's corral/fio
# ratio: median, range, and in how many rounds corral was ahead.
#
# Also measures the engines' own overhead without I/O: corral's null backends (inline and
# bottom half, pooled and heap mode) against qemu-img's null-co:// and null-aio://.
#
# Prints one table: engine, backend, mode, IOPS, CPU microseconds per request.
# CPU per request: corral reports it (getrusage); fio from its usr/sys percentages;
# qemu-img from the shell's `time`. Installs nothing: says how to get what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

FILE=${1:-target/compare-1g.img}
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-all}
COUNT_DIRECT=${COUNT_DIRECT:-200000}
COUNT_CACHED=${COUNT_CACHED:-1000000}
COUNT_NULL=${COUNT_NULL:-2000000}
DEPTH=64
SIZE=4096

missing=0
tools="fio qemu-img"
[ "$ONLY" = direct ] && tools=fio
for tool in $tools; do
    if ! command -v "$tool" >/dev/null; then
        echo "compare.sh: $tool not found; install it with: apt-get install -y ${tool/qemu-img/qemu-utils}" >&2
        missing=1
    fi
done
[ "$missing" = 0 ] || exit 1

cargo build --release --quiet
CORRAL=${CARGO_TARGET_DIR:-target}/release/corral

if [ ! -f "$FILE" ]; then
    echo "compare.sh: creating $FILE (1 GiB)" >&2
    mkdir -p "$(dirname "$FILE")"
    dd if=/dev/urandom of="$FILE" bs=1M count=1024 status=none
fi

RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT

# One measurement: appends "engine backend mode iops cpu_us_per_req round".
run_corral() { # backend mode(direct|cached|direct-seq|cached-seq) count
    local flags=(-c "$3" -d $DEPTH -s $SIZE --backend "$1" --json)
    [[ "$2" = direct* ]] && flags+=(-n)
    [[ "$2" = *-seq ]] || flags+=(--random)
    local json
    json=$("$CORRAL" bench "${flags[@]}" "$FILE" 2>/dev/null | tail -1)
    local iops cpu
    iops=$(sed -E 's/.*"iops":([0-9.]+).*/\1/' <<<"$json")
    cpu=$(sed -E 's/.*"cpu_us_per_req":([0-9.]+).*/\1/' <<<"$json")
    echo "corral $1 $2 $iops $cpu $round" >>"$RESULTS"
}

run_corral_null() { # backend mode(pooled|heap) count
    local json iops cpu
    json=$("$CORRAL" bench -c "$3" -d $DEPTH -s $SIZE --backend "$1" --mode "$2" --json 2>/dev/null | tail -1)
    iops=$(sed -E 's/.*"iops":([0-9.]+).*/\1/' <<<"$json")
    cpu=$(sed -E 's/.*"cpu_us_per_req":([0-9.]+).*/\1/' <<<"$json")
    echo "corral $1 null-$2 $iops $cpu $round" >>"$RESULTS"
}

run_fio() { # ioengine mode count
    local direct=0
    [ "$2" = direct ] && direct=1
    fio --name=compare --filename="$FILE" --rw=randread --bs=$SIZE --iodepth=$DEPTH \
        --ioengine="$1" --direct=$direct --invalidate=0 --number_ios="$3" --size=1G \
        --output-format=terse --terse-version=3 2>/dev/null |
        awk -F';' -v e="$1" -v m="$2" -v r="$round" '{ printf "fio %s %s %s %.4f %s\n", e, m, $8, ($88 + $89) / 100 / $8 * 1e6, r }' >>"$RESULTS"
}

run_qemu() { # aio|null-co|null-aio mode count
    local cache=writeback target=$FILE args=(-f raw -i "$1")
    [[ "$2" = direct* || "$2" = null* ]] && cache=none
    [[ "$1" = null* ]] && target="$1://" args=()
    local out times
    TIMEFORMAT='%U %S'
    { time qemu-img bench "${args[@]}" -t $cache -c "$3" -d $DEPTH -s $SIZE "$target" >"$RESULTS.q" 2>&1; } 2>"$RESULTS.t"
    out=$(grep -Eo 'completed in [0-9.]+' "$RESULTS.q" | awk '{print $3}')
    times=$(tail -1 "$RESULTS.t")
    awk -v a="$1" -v m="$2" -v c="$3" -v s="$out" -v t="$times" -v r="$round" \
        'BEGIN { split(t, u, " "); printf "qemu-img %s %s %.1f %.4f %s\n", a, m, c / s, (u[1] + u[2]) * 1e6 / c, r }' >>"$RESULTS"
    rm -f "$RESULTS.q" "$RESULTS.t"
}

# corral's backend and fio's engine on O_DIRECT random reads, back to back, the first of
# the two alternating with the round.
run_direct_pair() { # corral-backend fio-engine
    if ((round % 2)); then
        run_corral "$1" direct "$COUNT_DIRECT"
        run_fio "$2" direct "$COUNT_DIRECT"
    else
        run_fio "$2" direct "$COUNT_DIRECT"
        run_corral "$1" direct "$COUNT_DIRECT"
    fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    echo "compare.sh: round $round of $ROUNDS" >&2
    run_direct_pair linux-aio libaio
    run_direct_pair io-uring io_uring
    [ "$ONLY" = direct ] && continue
    run_corral_null null pooled "$COUNT_NULL"
    run_qemu null-co null-pooled "$COUNT_NULL"
    run_corral_null null-bh pooled "$COUNT_NULL"
    run_qemu null-aio null-pooled "$COUNT_NULL"
    run_corral_null null heap $((COUNT_NULL / 10))
    run_corral io-uring direct-seq "$COUNT_DIRECT"
    for aio in native io_uring; do run_qemu $aio direct-seq "$COUNT_DIRECT"; done
    cat "$FILE" >/dev/null # warm the page cache
    for backend in linux-aio io-uring threads; do run_corral $backend cached "$COUNT_CACHED"; done
    for engine in libaio io_uring; do run_fio $engine cached "$COUNT_CACHED"; done
    run_corral io-uring cached-seq "$COUNT_CACHED"
    for aio in threads io_uring; do run_qemu $aio cached-seq "$COUNT_CACHED"; done
done

echo
echo "4 KiB reads (random unless *-seq; null-*: no I/O), depth $DEPTH, $ROUNDS interleaved rounds, medians ($FILE)"
echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %-10s %-10s %10s %14s\n' engine backend mode IOPS "CPU us/req"
sort -k3,3 -k1,1 -k2,2 "$RESULTS" | awk '
    function median(s,   n, a, i, j, t) {
        n = split(s, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { key = $1 " " $2 " " $3; if (!(key in iops)) order[++k] = key; iops[key] = iops[key] " " $4; cpu[key] = cpu[key] " " $5 }
    END { for (i = 1; i <= k; i++) { split(order[i], f, " "); printf "%-9s %-10s %-10s %10.0f %14.3f\n", f[1], f[2], f[3], median(iops[order[i]]), median(cpu[order[i]]) } }'

echo
echo "O_DIRECT random reads, corral/fio IOPS per round (each pair back to back, order alternating):"
awk '$3 == "direct" { iops[$1 " " $2 " " $6] = $4; cpu[$1 " " $2 " " $6] = $5; if ($6 > n) n = $6 }
    function sort(a, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t } }
    function median(a, k) { return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
    END {
        split("linux-aio:libaio io-uring:io_uring", pairs, " ")
        for (p = 1; p <= 2; p++) {
            split(pairs[p], be, ":"); k = 0; wins = 0; delete r; delete c
            for (i = 1; i <= n; i++) {
                a = "corral " be[1] " " i; f = "fio " be[2] " " i
                if (!(a in iops) || !(f in iops) || iops[f] == 0 || cpu[f] == 0) continue
                r[++k] = iops[a] / iops[f]; c[k] = cpu[a] / cpu[f]; wins += iops[a] > iops[f]
            }
            if (k == 0) continue
            sort(r, k); sort(c, k)
            printf "  %-9s vs %-8s IOPS ratio median %.3f (range %.3f-%.3f), corral ahead in %d of %d rounds; CPU/req ratio median %.3f\n", be[1], be[2], median(r, k), r[1], r[k], wins, k, median(c, k)
        }
    }' "$RESULTS"
