/* Unit tests for src/common/procstatus.c: wait statuses in words. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "procstatus.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Wait statuses as the kernel builds them (see <bits/waitstatus.h>). */
#define EXITED(code)  ((code) << 8)
#define SIGNALED(sig) (sig)
#define CORE(sig)     ((sig) | 0x80)
#define STOPPED(sig)  (((sig) << 8) | 0x7f)

static void test_signame(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(procstatus_signame(SIGSEGV, buf, sizeof buf), "SIGSEGV");
    assert_string_equal(procstatus_signame(SIGKILL, buf, sizeof buf), "SIGKILL");
    assert_ptr_equal(procstatus_signame(SIGTERM, buf, sizeof buf), buf);
    assert_string_equal(buf, "SIGTERM");
    /* Real-time signals have no abbreviation: the number. */
    assert_string_equal(procstatus_signame(SIGRTMIN + 3, buf, sizeof buf), "SIG37");
    assert_string_equal(procstatus_signame(0, buf, sizeof buf), "SIG0");
    /* Truncated, but terminated. */
    assert_string_equal(procstatus_signame(SIGSEGV, buf, 5), "SIGS");
}

static void test_describe(void **state)
{
    (void)state;
    char buf[128];
    assert_string_equal(procstatus_describe(EXITED(3), buf, sizeof buf), "exited with status 3");
    assert_string_equal(procstatus_describe(EXITED(0), buf, sizeof buf), "exited with status 0");
    assert_string_equal(procstatus_describe(EXITED(255), buf, sizeof buf),
                        "exited with status 255");
    assert_string_equal(procstatus_describe(SIGNALED(SIGKILL), buf, sizeof buf),
                        "was killed by SIGKILL (Killed)");
    assert_string_equal(procstatus_describe(SIGNALED(SIGSEGV), buf, sizeof buf),
                        "was killed by SIGSEGV (Segmentation fault)");
    /* A core dump changes nothing in the words. */
    assert_string_equal(procstatus_describe(CORE(SIGABRT), buf, sizeof buf),
                        "was killed by SIGABRT (Aborted)");
    assert_string_equal(procstatus_describe(SIGNALED(SIGRTMIN + 1), buf, sizeof buf),
                        "was killed by SIG35 (Real-time signal 1)");
    assert_string_equal(procstatus_describe(STOPPED(SIGSTOP), buf, sizeof buf),
                        "ended with wait status 0x137f");
    /* Small buffers truncate. */
    assert_string_equal(procstatus_describe(EXITED(3), buf, 7), "exited");
}

/* The same words for statuses of real processes. */
static void test_describe_real_children(void **state)
{
    (void)state;
    char buf[128];
    int status;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(7);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_string_equal(procstatus_describe(status, buf, sizeof buf), "exited with status 7");

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_string_equal(procstatus_describe(status, buf, sizeof buf),
                        "was killed by SIGTERM (Terminated)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signame),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_describe_real_children),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
