/* threads_basic: two threads of one program on two vCPUs, as musl's pthreads make them.
 *
 * Expected: exit 0; needs 2 vCPUs (skipped with fewer).
 * What: pthread_create (clone with musl's flags, CLONE_SETTLS, CLONE_PARENT_SETTID,
 * CLONE_CHILD_CLEARTID), gettid in each thread, a FUTEX_WAKE that wakes the other thread's
 * FUTEX_WAIT, the EAGAIN and ETIMEDOUT answers of FUTEX_WAIT, pthread_join's result (musl's
 * join waits for the kernel's clear-tid store and wake at the thread's exit), and a second
 * thread on the vCPU the first one left.
 * Why: the smallest program that only passes when threads really run at once on their own
 * vCPUs: the main thread's wake can only succeed while the worker sleeps in the kernel on
 * another vCPU, and the join only returns once the kernel has ended the worker properly. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "faultline.h"

FAULTLINE_EXPECT("exit 0; vcpus 2");

#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

static int gate;
static __thread long tls_tid;

static long futex(int *addr, int op, int val, const struct timespec *timeout)
{
    return syscall(SYS_futex, addr, op, val, timeout);
}

static void *worker(void *arg)
{
    tls_tid = syscall(SYS_gettid);
    printf("threads_basic: worker tid %ld (%s)\n", tls_tid, (const char *)arg);
    int wakes = 0;
    while (__atomic_load_n(&gate, __ATOMIC_SEQ_CST) == 0) {
        if (futex(&gate, FUTEX_WAIT_PRIVATE, 0, NULL) == 0)
            wakes++;
    }
    printf("threads_basic: worker woke %d time(s) from FUTEX_WAIT, gate %d\n", wakes, gate);
    return (void *)(tls_tid * 100 + gate);
}

static void *second(void *arg)
{
    (void)arg;
    tls_tid = syscall(SYS_gettid);
    return (void *)tls_tid;
}

int main(void)
{
    tls_tid = syscall(SYS_gettid);
    printf("threads_basic: main tid %ld pid %d\n", tls_tid, getpid());

    int value = 5;
    struct timespec ms10 = {0, 10 * 1000 * 1000};
    long r = futex(&value, FUTEX_WAIT_PRIVATE, 4, &ms10);
    int mismatch = errno;
    r += futex(&value, FUTEX_WAIT_PRIVATE, 5, &ms10);
    printf("threads_basic: FUTEX_WAIT on another value: %s, on the value with 10 ms: %s\n",
           mismatch == EAGAIN ? "EAGAIN" : "wrong", errno == ETIMEDOUT ? "ETIMEDOUT" : "wrong");
    if (r != -2 || mismatch != EAGAIN || errno != ETIMEDOUT)
        return 1;

    pthread_t t;
    int e = pthread_create(&t, NULL, worker, "first");
    if (e != 0) {
        printf("threads_basic: pthread_create: %d\n", e);
        return 2;
    }
    long woke = 0;
    struct timespec ms1 = {0, 1000 * 1000};
    for (int i = 0; i < 20000 && woke == 0; i++) {
        woke = futex(&gate, FUTEX_WAKE_PRIVATE, 1, NULL);
        if (woke == 0)
            nanosleep(&ms1, NULL);
    }
    printf("threads_basic: main's FUTEX_WAKE woke %ld waiter(s)\n", woke);
    __atomic_store_n(&gate, 7, __ATOMIC_SEQ_CST);
    futex(&gate, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
    void *result;
    e = pthread_join(t, &result);
    printf("threads_basic: pthread_join: %d, result %ld, main's tls tid still %ld\n", e, (long)result,
           tls_tid);
    if (e != 0 || woke != 1 || (long)result % 100 != 7 || (long)result / 100 == tls_tid)
        return 3;

    e = pthread_create(&t, NULL, second, NULL);
    void *second_tid = NULL;
    if (e == 0)
        e = pthread_join(t, &second_tid);
    printf("threads_basic: a second thread: %d, tid %ld\n", e, (long)second_tid);
    return e == 0 && (long)second_tid != (long)result / 100 ? 0 : 4;
}
