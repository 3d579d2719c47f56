/*
 * corral.h -- the C ABI of corral: pooled stackful coroutines and coroutine I/O.
 *
 * Link with libcorral.a or libcorral.so (`pkg-config --cflags --libs corral`).
 * Written by hand; ffi/tests/header_sync.rs keeps it in step with the Rust
 * exports and `make -C ffi check` compiles it as C11 and as C++.
 *
 * Conventions
 *  - Functions that create something return a pointer, or NULL with errno set
 *    (ENOMEM when the kernel refuses a coroutine stack; corral_last_error()
 *    then holds the runtime's full message, e.g. naming vm.max_map_count).
 *  - Everything else returns 0 (or a byte count) on success and a negative
 *    errno on failure, as C storage code expects.
 *  - No Rust panic ever unwinds into C. Misuse that the Rust API reports as a
 *    panic is returned as an error code here; the *_or_abort variants print
 *    the same clear message ("corral: coroutine re-entered recursively") and
 *    abort(), like QEMU does.
 */
#ifndef CORRAL_H
#define CORRAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h> /* ssize_t */
#include <sys/uio.h>   /* struct iovec */

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Coroutines                                                                */
/* ======================================================================== */

/*
 * A coroutine. Opaque: never dereference it. The pointer stays the same for
 * the coroutine's whole life (corral_co_self() returns it too). Once the
 * coroutine terminated, the calls that take it recognise the stale pointer
 * (-EINVAL, or false) even after its slot was reused by a new coroutine
 * (unless the slot was reused 2^24 times in between).
 */
typedef struct corral_co corral_co_t;

/* The body of a coroutine; it terminates when this function returns. */
typedef void (*corral_co_entry_fn)(void *opaque);

/*
 * Takes a coroutine from the calling thread's pool (or creates one) that will
 * run entry(opaque) when first entered. Nothing runs yet.
 * Returns NULL with errno = ENOMEM if no stack could be mapped, EINVAL if
 * entry is NULL.
 */
corral_co_t *corral_co_create(corral_co_entry_fn entry, void *opaque);

/*
 * Runs co until it yields or terminates. Entering from inside a coroutine
 * nests: co's yield or termination resumes the caller.
 * Returns 0, or
 *   -EBUSY   co is running or suspended in a nested enter ("coroutine re-entered recursively"),
 *   -EINVAL  co is NULL or terminated ("coroutine entered after it terminated").
 */
int corral_co_enter(corral_co_t *co);

/* As corral_co_enter, but prints the error's message to stderr and aborts. */
void corral_co_enter_or_abort(corral_co_t *co);

/*
 * Suspends the calling coroutine and resumes whoever entered it. Returns 0
 * once the coroutine is entered again, or -EPERM outside a coroutine.
 */
int corral_co_yield(void);

/* As corral_co_yield, but aborts with "corral: yield outside a coroutine". */
void corral_co_yield_or_abort(void);

/* The running coroutine, or NULL outside coroutines. */
corral_co_t *corral_co_self(void);

/* True inside a coroutine. */
bool corral_in_coroutine(void);

/*
 * True while co runs or is suspended in a nested enter of another coroutine
 * (QEMU's qemu_coroutine_entered); false once it yielded or terminated.
 */
bool corral_co_entered(const corral_co_t *co);

/* True once co's entry function returned (also for a stale handle). */
bool corral_co_is_terminated(const corral_co_t *co);

/* Counters of the coroutine pool; exact when no thread is creating coroutines. */
typedef struct corral_pool_stats {
    uint64_t created;          /* coroutines (stacks) created fresh */
    uint64_t reused;           /* taken from the pool instead */
    uint64_t dropped;          /* freed because a cap was reached */
    uint64_t batches_stolen;   /* batches a thread took from the global list */
    uint64_t batches_released; /* batches a thread handed to the global list */
    uint64_t pooled;           /* held by the pool right now */
} corral_pool_stats_t;

/* Fills *out with the default coroutine pool's counters. */
void corral_co_pool_stats(corral_pool_stats_t *out);

/*
 * The message of the last error a corral call made on this thread (for
 * example the stack error behind ENOMEM), or "" if there was none. Valid
 * until the next failing corral call on this thread.
 */
const char *corral_last_error(void);

/* ======================================================================== */
/* Diagnostics                                                              */
/* ======================================================================== */

/*
 * ns per pooled create+enter+terminate measured in Rust inside the library
 * (the path `corral lifecycle` reports as pooled_ns), so a C benchmark can
 * compare its own figure with it in the same run.
 */
double corral_bench_rust_lifecycle_ns(uint64_t iterations);

#ifdef __cplusplus
}
#endif

#endif /* CORRAL_H */
