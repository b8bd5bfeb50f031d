/* threads_exit_group: a thread calls exit_group(5) while the main thread spins in user mode.
 *
 * Expected: exit 5; needs 2 vCPUs.
 * Why: exit_group ends every thread: the main thread never enters the kernel by itself, so
 * only the kernel's IPI to vCPU 0 can take it out of user mode. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "faultline.h"

FAULTLINE_EXPECT("exit 5; vcpus 2");

static volatile int spinning;

static void *worker(void *arg)
{
    (void)arg;
    while (!spinning) {
    }
    _exit(5); /* musl: exit_group */
}

int main(void)
{
    pthread_t t;
    printf("threads_exit_group: main spins until the worker's exit_group(5) ends it\n");
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    for (;;)
        spinning = 1;
}
