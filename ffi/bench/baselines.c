/*
 * The two switch baselines a C coroutine library is measured against, written
 * for this benchmark (see bench.c for how they are timed):
 *
 *  - ucontext: glibc swapcontext both ways. Every swapcontext saves and
 *    restores the signal mask, i.e. makes a sigprocmask system call.
 *  - sigjmp: the scheme of QEMU's ucontext backend. makecontext/swapcontext
 *    only start the coroutine; from then on each switch is sigsetjmp with
 *    savemask=0 (no system call) followed by siglongjmp into the other side.
 *
 *  - bare: corral's own switch protocol with none of its bookkeeping
 *    (bare_switch.S): the floor under corral's C ABI figure.
 *
 * _FORTIFY_SOURCE turns longjmp into __longjmp_chk, which refuses to jump to
 * another stack; the Makefile builds this file with -U_FORTIFY_SOURCE.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#define BASELINE_STACK_SIZE (64 * 1024)

/* A context on a fresh malloc'd stack that will start in `body`. */
static void *start_context(ucontext_t *context, ucontext_t *link, void (*body)(void))
{
    void *stack = malloc(BASELINE_STACK_SIZE);
    if (!stack) {
        perror("malloc");
        exit(1);
    }
    getcontext(context);
    context->uc_stack.ss_sp = stack;
    context->uc_stack.ss_size = BASELINE_STACK_SIZE;
    context->uc_link = link;
    makecontext(context, body, 0);
    return stack;
}

/* ---- ucontext: swapcontext for every switch ---------------------------- */

static ucontext_t uc_main, uc_co;
static volatile int uc_stop;

static void uc_body(void)
{
    while (!uc_stop) {
        swapcontext(&uc_co, &uc_main); /* yield */
    }
}

double bench_ucontext_switch_ns(uint64_t round_trips)
{
    uc_stop = 0;
    void *stack = start_context(&uc_co, &uc_main, uc_body);
    swapcontext(&uc_main, &uc_co); /* start: runs to the first yield */

    uint64_t start = bench_now_ns();
    for (uint64_t i = 0; i < round_trips; i++) {
        swapcontext(&uc_main, &uc_co); /* enter; returns at the next yield */
    }
    uint64_t elapsed = bench_now_ns() - start;

    uc_stop = 1;
    swapcontext(&uc_main, &uc_co); /* let the body return through uc_link */
    free(stack);
    return (double)elapsed / (double)round_trips;
}

/* ---- sigjmp: sigsetjmp/siglongjmp with savemask=0 ---------------------- */

static sigjmp_buf sj_main, sj_co;
static ucontext_t sj_start_caller, sj_start_co;
static volatile int sj_stop;

/* Saves `from`, jumps to `to`; returns when someone jumps back to `from`. */
static void sj_switch(sigjmp_buf from, sigjmp_buf to)
{
    if (!sigsetjmp(from, 0)) {
        siglongjmp(to, 1);
    }
}

static void sj_body(void)
{
    /* First run: record our jump target and go back to the starter. */
    if (!sigsetjmp(sj_co, 0)) {
        swapcontext(&sj_start_co, &sj_start_caller);
    }
    while (!sj_stop) {
        sj_switch(sj_co, sj_main); /* yield */
    }
    siglongjmp(sj_main, 1); /* finished: never return into makecontext's frame */
}

double bench_sigjmp_switch_ns(uint64_t round_trips)
{
    sj_stop = 0;
    void *stack = start_context(&sj_start_co, NULL, sj_body);
    swapcontext(&sj_start_caller, &sj_start_co); /* the only swapcontext */

    uint64_t start = bench_now_ns();
    for (uint64_t i = 0; i < round_trips; i++) {
        sj_switch(sj_main, sj_co); /* enter; returns at the next yield */
    }
    uint64_t elapsed = bench_now_ns() - start;

    sj_stop = 1;
    sj_switch(sj_main, sj_co);
    free(stack);
    return (double)elapsed / (double)round_trips;
}

/* ---- bare: the floor under corral's switch (bare_switch.S) ---------------- */

struct bare_slots {
    uintptr_t co_sp;
    uintptr_t parent_sp;
};

int bare_enter(struct bare_slots *slots);
int bare_yield(struct bare_slots *slots);
void bare_start(void);

static struct bare_slots bare;
static volatile int bare_stop;

static void bare_body(void *opaque)
{
    (void)opaque;
    while (!bare_stop) {
        bare_yield(&bare);
    }
    bare_yield(&bare); /* finished: never resumed again */
}

double bench_bare_switch_ns(uint64_t round_trips)
{
    char *stack = malloc(BASELINE_STACK_SIZE);
    if (stack == NULL) {
        perror("bench: malloc");
        exit(1);
    }
    uintptr_t top = ((uintptr_t)stack + BASELINE_STACK_SIZE) & ~(uintptr_t)15;
    uintptr_t *frame = (uintptr_t *)(top - 3 * sizeof(uintptr_t));
    frame[0] = (uintptr_t)bare_start;
    frame[1] = (uintptr_t)bare_body;
    frame[2] = 0;
    bare.co_sp = (uintptr_t)frame;
    bare_stop = 0;
    bare_enter(&bare); /* first entry: runs to the first yield */

    uint64_t start = bench_now_ns();
    for (uint64_t i = 0; i < round_trips; i++) {
        bare_enter(&bare);
    }
    uint64_t elapsed = bench_now_ns() - start;

    bare_stop = 1;
    bare_enter(&bare);
    free(stack);
    return (double)elapsed / (double)round_trips;
}
