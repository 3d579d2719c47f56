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
 * As corral_co_create with stack_size usable bytes of stack (rounded up to
 * pages; 0: the default, 256 KiB). Coroutines of each size are pooled apart.
 * QEMU code written for its 1 MiB coroutine stacks wants 1 << 20 here.
 * EINVAL above 1 GiB.
 */
corral_co_t *corral_co_create_sized(corral_co_entry_fn entry, void *opaque, size_t stack_size);

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
/* Coroutine I/O                                                            */
/* ======================================================================== */

/*
 * An event loop (QEMU's AioContext): bottom halves, fd handlers, timers,
 * and the completions of the block devices bound to it. One thread polls it.
 */
typedef struct corral_aio_context corral_aio_context_t;

/* A new context, or NULL with errno. */
corral_aio_context_t *corral_aio_context_new(void);

/* Drops the caller's reference (devices and pending work keep it alive). */
void corral_aio_context_unref(corral_aio_context_t *ctx);

/*
 * Runs one iteration: bottom halves, ready fd handlers, expired timers,
 * scheduled coroutines. With blocking, waits for something to do first.
 * Returns true if it made progress. Call from the thread running ctx.
 */
bool corral_aio_poll(corral_aio_context_t *ctx, bool blocking);

/* Wakes a blocking corral_aio_poll of ctx (any thread). */
void corral_aio_notify(corral_aio_context_t *ctx);

typedef void (*corral_bh_fn)(void *opaque);

/* Runs cb(opaque) once from ctx's next poll (any thread). 0 or -EINVAL. */
int corral_aio_bh_schedule(corral_aio_context_t *ctx, corral_bh_fn cb, void *opaque);

/*
 * Has ctx enter co from its next poll, making ctx its home (QEMU's
 * aio_co_schedule); any thread. 0, -EINVAL (NULL/terminated), -EBUSY
 * (already scheduled).
 */
int corral_aio_co_schedule(corral_aio_context_t *ctx, corral_co_t *co);

/*
 * Makes ctx the home of co and enters it now if called on ctx's thread
 * outside coroutines, else schedules it (QEMU's aio_co_enter). 0 or as above.
 */
int corral_aio_co_enter(corral_aio_context_t *ctx, corral_co_t *co);

/* The block backends (a device's requests all go through one). */
typedef enum corral_backend {
    CORRAL_BACKEND_NULL = 0,      /* completes at once, no I/O (QEMU null-co) */
    CORRAL_BACKEND_NULL_BH = 1,   /* completes from a bottom half, no I/O (null-aio) */
    CORRAL_BACKEND_THREADS = 2,   /* preadv/pwritev/fdatasync on a thread pool */
    CORRAL_BACKEND_LINUX_AIO = 3, /* io_submit, completions from the user ring */
    CORRAL_BACKEND_IO_URING = 4   /* io_uring */
} corral_backend_t;

/* A file bound to one context. */
typedef struct corral_blk corral_blk_t;

#define CORRAL_BLK_WRITE 1u  /* open for writing too */
#define CORRAL_BLK_CREATE 2u /* create the file if missing (with WRITE) */
#define CORRAL_BLK_DIRECT 4u /* O_DIRECT: aligned buffers, offsets, lengths */

/*
 * Opens path on ctx through backend (a corral_backend_t); stores the device
 * in *out. Call on ctx's thread. 0, or -errno (e.g. the kernel's when it
 * refuses io_uring or Linux AIO; corral_last_error() says more).
 */
int corral_blk_open(corral_aio_context_t *ctx, const char *path, int backend, unsigned flags,
                    corral_blk_t **out);

/* As corral_blk_open on an fd the caller keeps open while the device lives. */
int corral_blk_open_fd(corral_aio_context_t *ctx, int fd, int backend, corral_blk_t **out);

/* Closes the device (pending callback-face requests finish first). */
void corral_blk_close(corral_blk_t *blk);

/* Polls ctx until no request of blk is in flight. On ctx's thread, outside coroutines. */
int corral_blk_drain(corral_blk_t *blk);

/*
 * The coroutine face: call from a coroutine running on the context's
 * thread; the coroutine yields until the request completed. Return the
 * bytes transferred (reads are short at end of file) or -errno (-EPERM
 * outside a coroutine or off the context's thread).
 */
ssize_t corral_blk_co_preadv(corral_blk_t *blk, uint64_t offset, const struct iovec *iov,
                             int iovcnt);
ssize_t corral_blk_co_pwritev(corral_blk_t *blk, uint64_t offset, const struct iovec *iov,
                              int iovcnt);
int corral_blk_co_flush(corral_blk_t *blk);

/*
 * The callback face (any thread): the request runs in a pooled coroutine of
 * the device's context and cb(opaque, ret) runs in that context when it
 * completed, never before the submitting call returned; ret is bytes or
 * -errno. The iovec array may be reused at once; the buffers must stay valid
 * until cb ran. Returns 0, or -errno if nothing was submitted.
 */
typedef void (*corral_blk_cb)(void *opaque, ssize_t ret);

int corral_blk_aio_preadv(corral_blk_t *blk, uint64_t offset, const struct iovec *iov, int iovcnt,
                          corral_blk_cb cb, void *opaque);
int corral_blk_aio_pwritev(corral_blk_t *blk, uint64_t offset, const struct iovec *iov,
                           int iovcnt, corral_blk_cb cb, void *opaque);
int corral_blk_aio_flush(corral_blk_t *blk, corral_blk_cb cb, void *opaque);

/* ======================================================================== */
/* Diagnostics                                                              */
/* ======================================================================== */

/*
 * ns per pooled create+enter+terminate measured in Rust inside the library
 * (the path `corral lifecycle` reports as pooled_ns), so a C benchmark can
 * compare its own figure with it in the same run.
 */
double corral_bench_rust_lifecycle_ns(uint64_t iterations);

/*
 * ns per enter+yield round trip of a Rust coroutine inside the library; with
 * outlined_yield its loop yields through a function of its own (not
 * inlined), as C code calling corral_co_yield always does.
 */
double corral_bench_rust_switch_ns(uint64_t round_trips, bool outlined_yield);

#ifdef __cplusplus
}
#endif

#endif /* CORRAL_H */
