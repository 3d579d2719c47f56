/*
 * `make -C ffi bench`: what corral's C ABI costs, against the switch
 * mechanisms C coroutine libraries use today, in one run.
 *
 *   c_lifecycle_ns     pooled create + enter + terminate through the C ABI
 *   rust_lifecycle_ns  the same from Rust inside the library (corral lifecycle's pooled_ns path)
 *   c_switch_ns        enter + yield round trip through the C ABI
 *   rust_switch_ns     the same from Rust inside the library (yield inlined in the loop)
 *   rust_outlined_switch_ns  the same with the yield in a function of its own,
 *                      the shape every C caller has (see README: return prediction)
 *   ucontext_switch_ns the same with glibc swapcontext both ways
 *   sigjmp_switch_ns   the same with sigsetjmp/siglongjmp (QEMU's ucontext backend)
 *   bare_switch_ns     the same with corral's switch protocol and none of its
 *                      bookkeeping (bare_switch.S): the floor under c_switch_ns
 *
 * Each figure is the best of ROUNDS short timed loops: on a shared machine the
 * least disturbed loop is the closest to the real cost, and short loops make
 * it likely that one of them ran undisturbed. All variants alternate within
 * each round, so they see the same machine. The last line is one JSON object.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <corral.h>
#include <stdio.h>
#include <stdlib.h>

enum { ROUNDS = 40 };

static void empty_body(void *opaque)
{
    (void)opaque;
}

static double c_lifecycle_ns(uint64_t iterations)
{
    uint64_t start = bench_now_ns();
    for (uint64_t i = 0; i < iterations; i++) {
        corral_co_t *co = corral_co_create(empty_body, NULL);
        if (co == NULL || corral_co_enter(co) != 0) {
            fprintf(stderr, "bench: coroutine failed: %s\n", corral_last_error());
            exit(1);
        }
    }
    return (double)(bench_now_ns() - start) / (double)iterations;
}

static volatile int switch_stop;

static void yield_loop(void *opaque)
{
    (void)opaque;
    while (!switch_stop) {
        corral_co_yield();
    }
}

static double c_switch_ns(uint64_t round_trips)
{
    switch_stop = 0;
    corral_co_t *co = corral_co_create(yield_loop, NULL);
    if (co == NULL || corral_co_enter(co) != 0) {
        fprintf(stderr, "bench: coroutine failed: %s\n", corral_last_error());
        exit(1);
    }
    uint64_t start = bench_now_ns();
    for (uint64_t i = 0; i < round_trips; i++) {
        corral_co_enter(co);
    }
    uint64_t elapsed = bench_now_ns() - start;
    switch_stop = 1;
    corral_co_enter(co);
    return (double)elapsed / (double)round_trips;
}

static double min2(double a, double b)
{
    return a < b ? a : b;
}

int main(void)
{
    const uint64_t lifecycles = 200000, switches = 500000, uc_switches = 20000;
    double c_life = 1e30, rust_life = 1e30, c_switch = 1e30, rust_switch = 1e30,
           rust_outlined = 1e30, uc = 1e30, sj = 1e30, bare = 1e30;

    c_lifecycle_ns(lifecycles); /* warm the pools and caches */
    corral_bench_rust_lifecycle_ns(lifecycles);
    for (int round = 0; round < ROUNDS; round++) {
        c_life = min2(c_life, c_lifecycle_ns(lifecycles));
        rust_life = min2(rust_life, corral_bench_rust_lifecycle_ns(lifecycles));
        c_switch = min2(c_switch, c_switch_ns(switches));
        rust_switch = min2(rust_switch, corral_bench_rust_switch_ns(switches, false));
        rust_outlined = min2(rust_outlined, corral_bench_rust_switch_ns(switches, true));
        sj = min2(sj, bench_sigjmp_switch_ns(switches));
        uc = min2(uc, bench_ucontext_switch_ns(uc_switches));
        bare = min2(bare, bench_bare_switch_ns(switches));
    }

    printf("pooled create+enter+terminate, C ABI:   %8.2f ns\n", c_life);
    printf("pooled create+enter+terminate, Rust:    %8.2f ns  (C/Rust %.2fx)\n", rust_life,
           c_life / rust_life);
    printf("enter+yield round trip, C ABI:          %8.2f ns\n", c_switch);
    printf("enter+yield round trip, Rust:           %8.2f ns\n", rust_switch);
    printf("  the same, yield in its own function:  %8.2f ns\n", rust_outlined);
    printf("  the same, no bookkeeping (the floor): %8.2f ns\n", bare);
    printf("enter+yield round trip, sigsetjmp:      %8.2f ns  (%.1fx the C ABI)\n", sj,
           sj / c_switch);
    printf("enter+yield round trip, swapcontext:    %8.2f ns  (%.1fx the C ABI)\n", uc,
           uc / c_switch);
    printf("{\"c_lifecycle_ns\":%.2f,\"rust_lifecycle_ns\":%.2f,\"c_switch_ns\":%.2f,\"rust_switch_ns\":%.2f,\"rust_outlined_switch_ns\":%.2f,"
           "\"ucontext_switch_ns\":%.2f,\"sigjmp_switch_ns\":%.2f,"
           "\"c_over_rust_lifecycle\":%.3f,\"sigjmp_over_c_switch\":%.2f,"
           "\"ucontext_over_c_switch\":%.2f,\"bare_switch_ns\":%.2f}\n",
           c_life, rust_life, c_switch, rust_switch, rust_outlined, uc, sj, c_life / rust_life, sj / c_switch,
           uc / c_switch, bare);
    return 0;
}
