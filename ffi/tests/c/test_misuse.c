/*
 * Misuse of the C ABI, each case in a child process (fork) so that the aborts
 * can be observed: the child's exit status and stderr are checked here.
 */
#define _GNU_SOURCE
#include "check.h"

#include <corral.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

struct outcome {
    int status;        /* as from waitpid */
    char stderr_text[4096];
};

/* Runs case_fn in a child; collects its status and what it wrote to stderr. */
static struct outcome run_child(void (*case_fn)(void))
{
    struct outcome out;
    memset(&out, 0, sizeof(out));
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        case_fn();
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], out.stderr_text + len, sizeof(out.stderr_text) - 1 - len)) > 0) {
        len += (size_t)n;
    }
    close(fds[0]);
    CHECK(waitpid(pid, &out.status, 0) == pid);
    return out;
}

static int aborted(const struct outcome *o)
{
    return WIFSIGNALED(o->status) && WTERMSIG(o->status) == SIGABRT;
}

static int exited_ok(const struct outcome *o)
{
    return WIFEXITED(o->status) && WEXITSTATUS(o->status) == 0;
}

/* ---- re-entering a running coroutine: error code, process goes on -------- */

static void reenter_with_code_body(void *opaque)
{
    (void)opaque;
    if (corral_co_enter(corral_co_self()) != -EBUSY) {
        _exit(3);
    }
}

static void case_reenter_code(void)
{
    corral_co_t *co = corral_co_create(reenter_with_code_body, NULL);
    if (co == NULL || corral_co_enter(co) != 0 || !corral_co_is_terminated(co)) {
        _exit(2);
    }
    /* The library is still usable afterwards. */
    co = corral_co_create(reenter_with_code_body, NULL);
    if (co == NULL || corral_co_enter(co) != 0) {
        _exit(4);
    }
}

static void test_reenter_running_returns_ebusy(void)
{
    struct outcome o = run_child(case_reenter_code);
    CHECK(exited_ok(&o));
}

/* ---- the same misuse through the aborting variant: clear message -------- */

static void reenter_or_abort_body(void *opaque)
{
    (void)opaque;
    corral_co_enter_or_abort(corral_co_self());
    _exit(5); /* not reached */
}

static void case_reenter_abort(void)
{
    corral_co_t *co = corral_co_create(reenter_or_abort_body, NULL);
    if (co == NULL) {
        _exit(2);
    }
    corral_co_enter_or_abort(co);
    _exit(6); /* not reached */
}

static void test_reenter_running_aborts_with_message(void)
{
    struct outcome o = run_child(case_reenter_abort);
    CHECK(aborted(&o));
    CHECK(strstr(o.stderr_text, "corral: coroutine re-entered recursively") != NULL);
}

/* ---- entering a terminated coroutine through the aborting variant -------- */

static void nothing(void *opaque)
{
    (void)opaque;
}

static void case_enter_terminated_abort(void)
{
    corral_co_t *co = corral_co_create(nothing, NULL);
    if (co == NULL) {
        _exit(2);
    }
    corral_co_enter_or_abort(co);
    corral_co_enter_or_abort(co);
    _exit(6);
}

static void test_enter_terminated_aborts_with_message(void)
{
    struct outcome o = run_child(case_enter_terminated_abort);
    CHECK(aborted(&o));
    CHECK(strstr(o.stderr_text, "corral: coroutine entered after it terminated") != NULL);
}

/* ---- yielding outside a coroutine through the aborting variant ---------- */

static void case_yield_outside_abort(void)
{
    corral_co_yield_or_abort();
    _exit(6);
}

static void test_yield_outside_aborts_with_message(void)
{
    struct outcome o = run_child(case_yield_outside_abort);
    CHECK(aborted(&o));
    CHECK(strstr(o.stderr_text, "corral: yield outside a coroutine") != NULL);
}

/* ---- the kernel refuses a stack: NULL + ENOMEM + the runtime's message --- */

static void case_stack_refused(void)
{
    /* Leave room for what is mapped now plus a little: stacks soon fail. */
    struct rlimit limit = {.rlim_cur = 0, .rlim_max = RLIM_INFINITY};
    FILE *statm = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (statm == NULL || fscanf(statm, "%lu", &pages) != 1) {
        _exit(2);
    }
    fclose(statm);
    limit.rlim_cur = pages * (unsigned long)sysconf(_SC_PAGESIZE) + 8u * 1024 * 1024;
    if (setrlimit(RLIMIT_AS, &limit) != 0) {
        _exit(3);
    }
    for (int i = 0; i < 100000; i++) {
        errno = 0;
        if (corral_co_create(nothing, NULL) == NULL) { /* never entered: all stay live */
            if (errno != ENOMEM) {
                fprintf(stderr, "errno %d\n", errno);
                _exit(4);
            }
            fprintf(stderr, "refused after %d: %s\n", i, corral_last_error());
            _exit(corral_last_error()[0] != '\0' ? 0 : 5);
        }
    }
    _exit(7); /* the limit never bit */
}

static void test_stack_refused_is_enomem(void)
{
    struct outcome o = run_child(case_stack_refused);
    if (!exited_ok(&o)) {
        fprintf(stderr, "child status %d, stderr:\n%s\n", o.status, o.stderr_text);
    }
    CHECK(exited_ok(&o));
    CHECK(strstr(o.stderr_text, "refused after") != NULL);
}

/* ---- a C coroutine overflowing its stack: the runtime's report ----------- */

static volatile int recursion_limit = 1 << 30; /* never reached: the stack ends first */

static int recurse(int depth)
{
    volatile char frame[1024]; /* 1 KiB per call: reaches the guard page page by page */
    frame[0] = (char)depth;
    if (depth >= recursion_limit) {
        return 0;
    }
    return recurse(depth + 1) + frame[0];
}

static void overflow_body(void *opaque)
{
    *(int *)opaque = recurse(0);
}

static void case_stack_overflow(void)
{
    int sink = 0;
    corral_co_t *co = corral_co_create(overflow_body, &sink);
    if (co == NULL) {
        _exit(2);
    }
    corral_co_enter(co);
    _exit(6); /* not reached */
}

static void test_stack_overflow_is_reported(void)
{
    struct outcome o = run_child(case_stack_overflow);
    CHECK(!exited_ok(&o));
    CHECK(WIFSIGNALED(o.status));
    CHECK(strstr(o.stderr_text, "coroutine stack overflow") != NULL);
}

int main(void)
{
    RUN(test_reenter_running_returns_ebusy);
    RUN(test_reenter_running_aborts_with_message);
    RUN(test_enter_terminated_aborts_with_message);
    RUN(test_yield_outside_aborts_with_message);
    RUN(test_stack_refused_is_enomem);
    RUN(test_stack_overflow_is_reported);
    printf("test_misuse: all passed\n");
    return 0;
}
