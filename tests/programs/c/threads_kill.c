/* threads_kill: a thread on another vCPU executes ud2 while the main thread sleeps in
 * pthread_join.
 *
 * Expected: killed #UD; needs 2 vCPUs.
 * Why: a kill on any thread ends the whole program: the kernel must wake the main thread out of
 * its FUTEX_WAIT on vCPU 0, take the worker's vCPU out of user mode, and have both vCPUs drop
 * the page tables before the address space goes (the leak audit then finds every frame). */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "faultline.h"

FAULTLINE_EXPECT("killed #UD; vcpus 2");

static void *worker(void *arg)
{
    (void)arg;
    struct timespec ms20 = {0, 20 * 1000 * 1000};
    nanosleep(&ms20, NULL); /* let main reach pthread_join's FUTEX_WAIT */
    __asm__ volatile("ud2");
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    printf("threads_kill: main joins the worker, which will execute ud2\n");
    pthread_join(t, NULL);
    printf("threads_kill: pthread_join returned: the kill did not end the program\n");
    return 2;
}
