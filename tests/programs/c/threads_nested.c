/* threads_nested: a thread starts a thread of its own; then the main thread starts threads until
 * the vCPUs run out.
 *
 * Expected: exit 0; needs 3 vCPUs.
 * What: the worker on one vCPU clones a third thread onto the last free vCPU and joins it (clone
 * and futex from a vCPU other than 0); with both other vCPUs taken by spinning threads, a third
 * pthread_create fails with EAGAIN (one thread per vCPU: faultline never multiplexes).
 * Why: threads are a program's, not vCPU 0's: any thread may start one, and running out of vCPUs
 * is an error the program sees, never a hang. On Linux (run natively by build.sh --native) a
 * third thread is no error, so there only the nested start and join are checked. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "faultline.h"

FAULTLINE_EXPECT("exit 0; vcpus 3");

static void *leaf(void *arg)
{
    (void)arg;
    return (void *)syscall(SYS_gettid);
}

static void *middle(void *arg)
{
    (void)arg;
    pthread_t t;
    void *tid = NULL;
    int e = pthread_create(&t, NULL, leaf, NULL);
    if (e == 0)
        e = pthread_join(t, &tid);
    printf("threads_nested: thread %ld started and joined thread %ld: %d\n", (long)syscall(SYS_gettid),
           (long)tid, e);
    return (void *)(long)e;
}

static volatile int hold = 1;

static void *spin(void *arg)
{
    (void)arg;
    while (hold) {
    }
    return NULL;
}

int main(void)
{
    pthread_t t, a, b, c;
    void *e_middle;
    if (pthread_create(&t, NULL, middle, NULL) != 0 || pthread_join(t, &e_middle) != 0)
        return 1;
    int ea = pthread_create(&a, NULL, spin, NULL);
    int eb = pthread_create(&b, NULL, spin, NULL);
    int ec = pthread_create(&c, NULL, spin, NULL);
    printf("threads_nested: three pthread_create with two free vCPUs: %d %d %s\n", ea, eb,
           ec == EAGAIN ? "EAGAIN" : "not EAGAIN");
    hold = 0;
    if (ea == 0)
        pthread_join(a, NULL);
    if (eb == 0)
        pthread_join(b, NULL);
    if (ec == 0)
        pthread_join(c, NULL);
    /* faultline's own auxv entry is absent on Linux, where threads are not bound to vCPUs. */
    int want_eagain = getauxval(AT_FAULTLINE_KERNEL_ADDRESS) != 0;
    return e_middle == NULL && ea == 0 && eb == 0 && (ec == EAGAIN || !want_eagain) ? 0 : 2;
}
