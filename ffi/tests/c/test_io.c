/*
 * Coroutine I/O through the C ABI: bottom halves, scheduling coroutines into a
 * context, and on every backend the kernel allows a round trip -- a pattern
 * written with the coroutine face (pwritev, flush, preadv) and read back with
 * the callback face (aio_preadv).
 */
#define _GNU_SOURCE
#include "check.h"

#include <corral.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

static const char *const BACKEND_NAMES[] = {"null", "null-bh", "threads", "linux-aio", "io-uring"};

/* ---- bottom halves ------------------------------------------------------- */

static void count_bh(void *opaque)
{
    ++*(int *)opaque;
}

static void test_bh_runs_from_poll(void)
{
    corral_aio_context_t *ctx = corral_aio_context_new();
    CHECK(ctx != NULL);
    int runs = 0;
    CHECK_EQ_INT(corral_aio_bh_schedule(ctx, count_bh, &runs), 0);
    CHECK_EQ_INT(runs, 0); /* only the poll runs it */
    CHECK(corral_aio_poll(ctx, false));
    CHECK_EQ_INT(runs, 1);
    CHECK(!corral_aio_poll(ctx, false)); /* one-shot: nothing left */
    CHECK_EQ_INT(runs, 1);
    CHECK_EQ_INT(corral_aio_bh_schedule(NULL, count_bh, &runs), -EINVAL);
    corral_aio_context_unref(ctx);
}

struct remote {
    corral_aio_context_t *ctx;
    int runs;
};

static void *schedule_from_thread(void *opaque)
{
    struct remote *r = opaque;
    CHECK_EQ_INT(corral_aio_bh_schedule(r->ctx, count_bh, &r->runs), 0);
    return NULL;
}

static void test_bh_from_another_thread_wakes_blocking_poll(void)
{
    struct remote r = {.ctx = corral_aio_context_new(), .runs = 0};
    CHECK(r.ctx != NULL);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, schedule_from_thread, &r) == 0);
    while (r.runs == 0) {
        corral_aio_poll(r.ctx, true); /* blocks until the bottom half is scheduled */
    }
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK_EQ_INT(r.runs, 1);
    corral_aio_context_unref(r.ctx);
}

/* ---- coroutines scheduled into a context -------------------------------- */

static void note_in_coroutine(void *opaque)
{
    *(int *)opaque = corral_in_coroutine() ? 1 : -1;
}

static void test_co_schedule(void)
{
    corral_aio_context_t *ctx = corral_aio_context_new();
    CHECK(ctx != NULL);
    int ran = 0;
    corral_co_t *co = corral_co_create(note_in_coroutine, &ran);
    CHECK(co != NULL);
    CHECK_EQ_INT(corral_aio_co_schedule(ctx, co), 0);
    CHECK_EQ_INT(corral_aio_co_schedule(ctx, co), -EBUSY); /* already scheduled */
    CHECK_EQ_INT(ran, 0);
    while (ran == 0) {
        corral_aio_poll(ctx, false);
    }
    CHECK_EQ_INT(ran, 1);
    CHECK(corral_co_is_terminated(co));
    CHECK_EQ_INT(corral_aio_co_schedule(ctx, co), -EINVAL); /* terminated */

    ran = 0;
    co = corral_co_create(note_in_coroutine, &ran);
    CHECK(co != NULL);
    CHECK_EQ_INT(corral_aio_co_enter(ctx, co), 0); /* on ctx's thread: runs now */
    CHECK_EQ_INT(ran, 1);
    corral_aio_context_unref(ctx);
}

/* ---- round trip per backend ---------------------------------------------- */

enum { HALF = 4096, OFFSET = 8192 };

struct trip {
    corral_blk_t *blk;
    int has_data; /* false for the null backends: they move no bytes */
    int done;
    unsigned char pattern[2 * HALF];
    unsigned char back[2 * HALF];
};

static void split(struct iovec iov[2], unsigned char *buf)
{
    iov[0].iov_base = buf;
    iov[0].iov_len = HALF - 512; /* uneven halves: the iovec boundaries matter */
    iov[1].iov_base = buf + HALF - 512;
    iov[1].iov_len = HALF + 512;
}

static void write_then_read(void *opaque)
{
    struct trip *t = opaque;
    struct iovec iov[2];
    split(iov, t->pattern);
    CHECK_EQ_INT(corral_blk_co_pwritev(t->blk, OFFSET, iov, 2), 2 * HALF);
    CHECK_EQ_INT(corral_blk_co_flush(t->blk), 0);
    memset(t->back, 0, sizeof(t->back));
    split(iov, t->back);
    CHECK_EQ_INT(corral_blk_co_preadv(t->blk, OFFSET, iov, 2), 2 * HALF);
    if (t->has_data) {
        CHECK(memcmp(t->pattern, t->back, sizeof(t->back)) == 0);
    }
    t->done = 1;
}

struct completion {
    int called;
    ssize_t ret;
};

static void on_complete(void *opaque, ssize_t ret)
{
    struct completion *c = opaque;
    c->called++;
    c->ret = ret;
}

static void wait_for(corral_aio_context_t *ctx, const int *flag)
{
    while (!*flag) {
        corral_aio_poll(ctx, true);
    }
}

/* Returns 0 if the round trip ran, 1 if the kernel refused the backend. */
static int round_trip(int backend, const char *path)
{
    corral_aio_context_t *ctx = corral_aio_context_new();
    CHECK(ctx != NULL);
    static struct trip t;
    memset(&t, 0, sizeof(t));
    int rc = corral_blk_open(ctx, path, backend, CORRAL_BLK_WRITE, &t.blk);
    if (rc < 0 && backend >= CORRAL_BACKEND_LINUX_AIO) {
        printf("SKIPPED round trip on %s: the kernel refused it: %s (%s)\n",
               BACKEND_NAMES[backend], strerror(-rc), corral_last_error());
        corral_aio_context_unref(ctx);
        return 1;
    }
    CHECK_EQ_INT(rc, 0);
    t.has_data = backend >= CORRAL_BACKEND_THREADS;
    for (size_t i = 0; i < sizeof(t.pattern); i++) {
        t.pattern[i] = (unsigned char)(i * 7 + (size_t)backend);
    }

    /* Coroutine face, in a coroutine the context runs. */
    corral_co_t *co = corral_co_create(write_then_read, &t);
    CHECK(co != NULL);
    CHECK_EQ_INT(corral_aio_co_enter(ctx, co), 0);
    wait_for(ctx, &t.done);

    /* Callback face: read it back; the callback never runs inside the call. */
    struct completion read = {0}, flush = {0};
    memset(t.back, 0, sizeof(t.back));
    struct iovec iov[2];
    split(iov, t.back);
    CHECK_EQ_INT(corral_blk_aio_preadv(t.blk, OFFSET, iov, 2, on_complete, &read), 0);
    CHECK_EQ_INT(read.called, 0);
    CHECK_EQ_INT(corral_blk_aio_flush(t.blk, on_complete, &flush), 0);
    wait_for(ctx, &read.called);
    wait_for(ctx, &flush.called);
    CHECK_EQ_INT(read.called, 1);
    CHECK_EQ_INT(read.ret, 2 * HALF);
    CHECK_EQ_INT(flush.ret, 0);
    if (t.has_data) {
        CHECK(memcmp(t.pattern, t.back, sizeof(t.back)) == 0);
    }
    CHECK_EQ_INT(corral_blk_drain(t.blk), 0);
    corral_blk_close(t.blk);
    corral_aio_context_unref(ctx);
    return 0;
}

static void test_round_trip_every_backend(void)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    int ran = 0;
    for (int backend = CORRAL_BACKEND_NULL; backend <= CORRAL_BACKEND_IO_URING; backend++) {
        snprintf(path, sizeof(path), "%s/corral-c-io-XXXXXX", dir);
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        close(fd);
        if (round_trip(backend, path) == 0) {
            printf("ok   round trip on %s\n", BACKEND_NAMES[backend]);
            ran++;
        }
        unlink(path);
    }
    CHECK(ran >= 3); /* null, null-bh and threads need nothing from the kernel */
}

/* ---- errors --------------------------------------------------------------- */

struct misuse {
    corral_blk_t *blk;
    ssize_t write_ret;
};

static void write_read_only(void *opaque)
{
    struct misuse *m = opaque;
    char byte = 1;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    m->write_ret = corral_blk_co_pwritev(m->blk, 0, &iov, 1);
}

static void test_errors_are_negative_errno(void)
{
    corral_aio_context_t *ctx = corral_aio_context_new();
    CHECK(ctx != NULL);
    corral_blk_t *blk = NULL;
    CHECK_EQ_INT(corral_blk_open(ctx, "/nonexistent/corral", CORRAL_BACKEND_THREADS, 0, &blk),
                 -ENOENT);
    CHECK(strlen(corral_last_error()) > 0);
    CHECK_EQ_INT(corral_blk_open(ctx, "/dev/null", 99, 0, &blk), -EINVAL);
    CHECK_EQ_INT(corral_blk_open(ctx, "/dev/null", CORRAL_BACKEND_THREADS, 0, &blk), 0);

    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    CHECK_EQ_INT(corral_blk_co_preadv(blk, 0, &iov, 1), -EPERM); /* not in a coroutine */
    CHECK_EQ_INT(corral_blk_co_preadv(blk, 0, &iov, -1), -EINVAL);

    struct misuse m = {.blk = blk, .write_ret = 0};
    corral_co_t *co = corral_co_create(write_read_only, &m);
    CHECK(co != NULL);
    CHECK_EQ_INT(corral_aio_co_enter(ctx, co), 0);
    CHECK_EQ_INT(m.write_ret, -EBADF); /* opened read-only */
    corral_blk_close(blk);
    corral_aio_context_unref(ctx);
}

int main(void)
{
    RUN(test_bh_runs_from_poll);
    RUN(test_bh_from_another_thread_wakes_blocking_poll);
    RUN(test_co_schedule);
    RUN(test_round_trip_every_backend);
    RUN(test_errors_are_negative_errno);
    printf("test_io: all passed\n");
    return 0;
}
