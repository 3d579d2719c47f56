/* Shared declarations of the C benchmark (bench.c, baselines.c). */
#ifndef CORRAL_BENCH_H
#define CORRAL_BENCH_H

#include <stdint.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ns per enter+yield round trip with glibc swapcontext both ways. */
double bench_ucontext_switch_ns(uint64_t round_trips);

/* ns per enter+yield round trip with sigsetjmp/siglongjmp (QEMU's ucontext backend). */
double bench_sigjmp_switch_ns(uint64_t round_trips);

/* ns per enter+yield round trip with corral's switch protocol and none of its
 * bookkeeping (bare_switch.S, x86-64): the floor under c_switch_ns. */
double bench_bare_switch_ns(uint64_t round_trips);

#endif
