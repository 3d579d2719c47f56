/*
 * The basic coroutine cases (the ones QEMU's test-coroutine groups under
 * /basic/), written for corral's C ABI, plus its error codes and pool reuse.
 */
#include "check.h"

#include <corral.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

/* ---- lifecycle: a coroutine runs to completion; pooled ones are reused ---- */

static void set_flag(void *opaque)
{
    *(int *)opaque = 1;
}

static void test_lifecycle(void)
{
    int done = 0;
    corral_co_t *co = corral_co_create(set_flag, &done);
    CHECK(co != NULL);
    CHECK(!corral_co_is_terminated(co));
    CHECK(done == 0); /* nothing runs before the first enter */
    CHECK_EQ_INT(corral_co_enter(co), 0);
    CHECK(done == 1);
    CHECK(corral_co_is_terminated(co));

    /* Once one coroutine went back to the pool, a cycle creates nothing new. */
    enum { CYCLES = 1000 };
    corral_pool_stats_t before, after;
    corral_co_pool_stats(&before);
    for (int i = 0; i < CYCLES; i++) {
        done = 0;
        co = corral_co_create(set_flag, &done);
        CHECK(co != NULL);
        CHECK_EQ_INT(corral_co_enter(co), 0);
        CHECK(done == 1);
    }
    corral_co_pool_stats(&after);
    CHECK_EQ_INT(after.created - before.created, 0);
    CHECK_EQ_INT(after.reused - before.reused, CYCLES);
}

/* ---- yield: a coroutine that yields n times is entered n + 1 times -------- */

struct yielder {
    int yields_left;
    int resumed;
};

static void yield_n(void *opaque)
{
    struct yielder *y = opaque;
    while (y->yields_left > 0) {
        y->yields_left--;
        CHECK_EQ_INT(corral_co_yield(), 0);
        y->resumed++;
    }
}

static void test_yield(void)
{
    struct yielder y = {.yields_left = 5, .resumed = 0};
    corral_co_t *co = corral_co_create(yield_n, &y);
    CHECK(co != NULL);
    int entries = 0;
    while (!corral_co_is_terminated(co)) {
        CHECK_EQ_INT(corral_co_enter(co), 0);
        entries++;
    }
    CHECK_EQ_INT(entries, 6);
    CHECK_EQ_INT(y.resumed, 5);
}

/* ---- nesting: each coroutine enters a new one, 128 deep ----------------- */

struct nest {
    int max;
    int entered;
    int returned;
};

static void nest_body(void *opaque)
{
    struct nest *n = opaque;
    n->entered++;
    if (n->entered < n->max) {
        corral_co_t *child = corral_co_create(nest_body, n);
        CHECK(child != NULL);
        CHECK_EQ_INT(corral_co_enter(child), 0);
        CHECK(corral_co_is_terminated(child));
    }
    n->returned++;
}

static void test_nesting(void)
{
    struct nest n = {.max = 128, .entered = 0, .returned = 0};
    corral_co_t *root = corral_co_create(nest_body, &n);
    CHECK(root != NULL);
    CHECK_EQ_INT(corral_co_enter(root), 0);
    CHECK_EQ_INT(n.entered, 128);
    CHECK_EQ_INT(n.returned, 128);
}

/* ---- self: corral_co_self is the pointer create returned ------------------ */

static void check_self(void *opaque)
{
    corral_co_t **expected = opaque;
    CHECK(corral_co_self() == *expected);
    CHECK_EQ_INT(corral_co_yield(), 0);
    CHECK(corral_co_self() == *expected); /* still itself after a resume */
}

static void test_self(void)
{
    corral_co_t *co = NULL;
    CHECK(corral_co_self() == NULL);
    co = corral_co_create(check_self, &co);
    CHECK(co != NULL);
    CHECK_EQ_INT(corral_co_enter(co), 0);
    CHECK(corral_co_self() == NULL);
    CHECK_EQ_INT(corral_co_enter(co), 0);
    CHECK(corral_co_is_terminated(co));
}

/* ---- entered: true while running or parked in a nested enter ------------- */

struct pair {
    corral_co_t *outer;
    corral_co_t *inner;
    int inner_ran;
};

static void entered_inner(void *opaque)
{
    struct pair *p = opaque;
    CHECK(corral_co_entered(p->inner)); /* running */
    CHECK(corral_co_entered(p->outer)); /* suspended in its enter of us */
    p->inner_ran = 1;
    CHECK_EQ_INT(corral_co_yield(), 0);
}

static void entered_outer(void *opaque)
{
    struct pair *p = opaque;
    CHECK(corral_co_entered(p->outer));
    p->inner = corral_co_create(entered_inner, p);
    CHECK(p->inner != NULL);
    CHECK(!corral_co_entered(p->inner)); /* created, not yet entered */
    CHECK_EQ_INT(corral_co_enter(p->inner), 0);
    CHECK(p->inner_ran);
    CHECK(!corral_co_entered(p->inner)); /* it yielded */
    CHECK(corral_co_entered(p->outer));
}

static void test_entered(void)
{
    struct pair p = {0};
    p.outer = corral_co_create(entered_outer, &p);
    CHECK(p.outer != NULL);
    CHECK(!corral_co_entered(p.outer));
    CHECK_EQ_INT(corral_co_enter(p.outer), 0);
    CHECK(corral_co_is_terminated(p.outer));
    CHECK(!corral_co_entered(p.outer));
    CHECK(!corral_co_entered(p.inner)); /* yielded, not finished */
    CHECK_EQ_INT(corral_co_enter(p.inner), 0);
    CHECK(corral_co_is_terminated(p.inner));
}

/* ---- in_coroutine -------------------------------------------------------- */

static void record_in_coroutine(void *opaque)
{
    *(int *)opaque = corral_in_coroutine() ? 1 : 2;
}

static void test_in_coroutine(void)
{
    int seen = 0;
    CHECK(!corral_in_coroutine());
    corral_co_t *co = corral_co_create(record_in_coroutine, &seen);
    CHECK(co != NULL);
    CHECK_EQ_INT(corral_co_enter(co), 0);
    CHECK_EQ_INT(seen, 1);
    CHECK(!corral_in_coroutine());
}

/* ---- order: the exact interleaving of create/enter/yield/terminate ------- */

static char order_log[16];
static int order_len;

static void order_record(char event)
{
    CHECK(order_len < (int)sizeof(order_log) - 1);
    order_log[order_len++] = event;
    order_log[order_len] = '\0';
}

static void order_body(void *opaque)
{
    (void)opaque;
    order_record('e'); /* entered */
    order_record('y'); /* about to yield */
    CHECK_EQ_INT(corral_co_yield(), 0);
    order_record('x'); /* resumed, exiting */
}

static void test_order(void)
{
    order_len = 0;
    corral_co_t *co = corral_co_create(order_body, NULL);
    CHECK(co != NULL);
    order_record('c'); /* created */
    CHECK_EQ_INT(corral_co_enter(co), 0);
    order_record('r'); /* back from the first enter */
    CHECK_EQ_INT(corral_co_enter(co), 0);
    order_record('t'); /* back after it terminated */
    CHECK(strcmp(order_log, "ceyrxt") == 0);
}

/*
 * ---- no-dangling-access --------------------------------------------------
 * c1 enters c2, c2 yields, c1 terminates and its coroutine is reused by c3.
 * Entering c2 again must return to the one entering it now (main), not to the
 * long-gone c1, and must leave c3 untouched.
 */

struct dangling {
    corral_co_t *c2;
    int c1_finished;
    int c2_finished;
    int c3_ran;
};

static void dangling_c2(void *opaque)
{
    struct dangling *d = opaque;
    CHECK_EQ_INT(corral_co_yield(), 0);
    d->c2_finished = 1;
}

static void dangling_c1(void *opaque)
{
    struct dangling *d = opaque;
    d->c2 = corral_co_create(dangling_c2, d);
    CHECK(d->c2 != NULL);
    CHECK_EQ_INT(corral_co_enter(d->c2), 0);
    d->c1_finished = 1;
}

static void dangling_c3(void *opaque)
{
    ((struct dangling *)opaque)->c3_ran = 1;
}

static void test_no_dangling_access(void)
{
    struct dangling d = {0};
    corral_co_t *c1 = corral_co_create(dangling_c1, &d);
    CHECK(c1 != NULL);
    CHECK_EQ_INT(corral_co_enter(c1), 0);
    CHECK(d.c1_finished);
    CHECK(corral_co_is_terminated(c1));

    corral_pool_stats_t before, after;
    corral_co_pool_stats(&before);
    corral_co_t *c3 = corral_co_create(dangling_c3, &d); /* takes c1's coroutine */
    corral_co_pool_stats(&after);
    CHECK(c3 != NULL);
    CHECK_EQ_INT(after.reused - before.reused, 1);
    CHECK(c3 != c1); /* same cell, new generation: c1 stays stale */
    CHECK_EQ_INT(corral_co_enter(c1), -EINVAL);

    CHECK_EQ_INT(corral_co_enter(d.c2), 0);
    CHECK(d.c2_finished);
    CHECK(!d.c3_ran);
    CHECK_EQ_INT(corral_co_enter(c3), 0);
    CHECK(d.c3_ran);
}

/* ---- errors: misuse comes back as negative errno with a message ---------- */

static void reenter_self(void *opaque)
{
    (void)opaque;
    CHECK_EQ_INT(corral_co_enter(corral_co_self()), -EBUSY);
    CHECK(strstr(corral_last_error(), "re-entered recursively") != NULL);
}

static void test_errors(void)
{
    CHECK_EQ_INT(corral_co_yield(), -EPERM);
    CHECK(strstr(corral_last_error(), "yield outside a coroutine") != NULL);
    CHECK_EQ_INT(corral_co_enter(NULL), -EINVAL);

    errno = 0;
    CHECK(corral_co_create(NULL, NULL) == NULL);
    CHECK_EQ_INT(errno, EINVAL);

    corral_co_t *co = corral_co_create(reenter_self, NULL);
    CHECK(co != NULL);
    CHECK_EQ_INT(corral_co_enter(co), 0);
    CHECK_EQ_INT(corral_co_enter(co), -EINVAL); /* terminated */
    CHECK(strstr(corral_last_error(), "entered after it terminated") != NULL);
    CHECK(corral_co_is_terminated(co));
    CHECK(!corral_co_entered(co));
}

/* ---- sized stacks: a 1 MiB coroutine can use most of it ----------------- */

static void use_deep_stack(void *opaque)
{
    volatile unsigned char big[768 * 1024]; /* would overflow the 256 KiB default */
    for (size_t i = 0; i < sizeof(big); i += 4096) {
        big[i] = (unsigned char)i;
    }
    *(int *)opaque = big[4096] == (unsigned char)4096;
}

static void test_sized_stack(void)
{
    int ok = 0;
    corral_co_t *co = corral_co_create_sized(use_deep_stack, &ok, 1 << 20);
    CHECK(co != NULL);
    CHECK_EQ_INT(corral_co_enter(co), 0);
    CHECK(ok);
    CHECK(corral_co_is_terminated(co));

    int done = 0;
    co = corral_co_create_sized(set_flag, &done, 0); /* 0: the default size */
    CHECK(co != NULL);
    CHECK_EQ_INT(corral_co_enter(co), 0);
    CHECK(done);

    errno = 0;
    CHECK(corral_co_create_sized(set_flag, &done, (size_t)1 << 40) == NULL);
    CHECK_EQ_INT(errno, EINVAL);
}

/* ---- cross-thread: a coroutine yielded on one thread resumes on another -- */

struct hop {
    corral_co_t *co;
    int steps;
    int entered_on_thread;
};

static void hop_body(void *opaque)
{
    struct hop *h = opaque;
    h->steps++;
    CHECK(corral_co_self() == h->co);
    CHECK_EQ_INT(corral_co_yield(), 0); /* resumed by the other thread */
    h->steps++;
    CHECK(corral_co_self() == h->co);
    CHECK_EQ_INT(corral_co_yield(), 0); /* resumed by main again */
    h->steps++;
}

static void *enter_from_thread(void *opaque)
{
    struct hop *h = opaque;
    h->entered_on_thread = corral_co_enter(h->co) == 0;
    CHECK(!corral_in_coroutine());
    return NULL;
}

static void test_cross_thread(void)
{
    struct hop h = {0};
    h.co = corral_co_create(hop_body, &h);
    CHECK(h.co != NULL);
    CHECK_EQ_INT(corral_co_enter(h.co), 0);
    CHECK_EQ_INT(h.steps, 1);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, enter_from_thread, &h) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(h.entered_on_thread);
    CHECK_EQ_INT(h.steps, 2);
    CHECK_EQ_INT(corral_co_enter(h.co), 0);
    CHECK_EQ_INT(h.steps, 3);
    CHECK(corral_co_is_terminated(h.co));
}

int main(void)
{
    RUN(test_lifecycle);
    RUN(test_yield);
    RUN(test_nesting);
    RUN(test_self);
    RUN(test_entered);
    RUN(test_in_coroutine);
    RUN(test_order);
    RUN(test_no_dangling_access);
    RUN(test_errors);
    RUN(test_sized_stack);
    RUN(test_cross_thread);
    printf("test_coroutine: all passed\n");
    return 0;
}
