/* threads_spin_exit_group: the main thread calls exit_group(6) while a worker spins in user
 * mode on another vCPU.
 *
 * Expected: exit 6; needs 2 vCPUs.
 * Why: the worker never enters the kernel by itself: only the kernel's IPI to its vCPU takes it
 * out of user mode before its time budget runs out, so that vCPU 0 can tear the address space
 * down (without the IPI, vCPU 0 waits 2 s for the worker's vCPU and reports it). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "faultline.h"

FAULTLINE_EXPECT("exit 6; vcpus 2");

static volatile int spinning;

static void *worker(void *arg)
{
    (void)arg;
    for (;;)
        spinning = 1;
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    while (!spinning) {
    }
    printf("threads_spin_exit_group: the worker spins; main calls exit_group(6)\n");
    exit(6);
}
