/* threads_watchdog: a thread spins forever on another vCPU while the main thread waits in
 * pthread_join.
 *
 * Expected: killed watchdog; needs 2 vCPUs.
 * Why: the time budget holds for the whole program: the spinning thread must be stopped on its
 * own vCPU and the main thread woken out of its FUTEX_WAIT, not left to hang the boot. */
#include <pthread.h>
#include <stdio.h>

#include "faultline.h"

FAULTLINE_EXPECT("killed watchdog; vcpus 2");

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
    }
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    printf("threads_watchdog: main joins a thread that never ends\n");
    pthread_join(t, NULL);
    return 2;
}
