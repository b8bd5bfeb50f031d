/* threads_main_exit: the main thread calls exit(3) (the system call, one thread) while a
 * worker still runs; the worker ends later with exit(5).
 *
 * Expected: exit 5 (Linux reports the status of the last thread: measured on Linux 6 with this
 * very program); needs 2 vCPUs.
 * Why: `exit` ends one thread, not the program: the kernel must keep the address space for the
 * worker, wait for it, and take the program's status from the thread that ended last. */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "faultline.h"

FAULTLINE_EXPECT("exit 5; vcpus 2");

static void *worker(void *arg)
{
    (void)arg;
    struct timespec ms50 = {0, 50 * 1000 * 1000};
    nanosleep(&ms50, NULL);
    printf("threads_main_exit: the worker outlived the main thread\n");
    syscall(SYS_exit, 5);
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    syscall(SYS_exit, 3);
    return 2;
}
