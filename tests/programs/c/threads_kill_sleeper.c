/* threads_kill_sleeper: the main thread executes ud2 while a worker sleeps for a minute in
 * nanosleep on another vCPU.
 *
 * Expected: killed #UD; needs 2 vCPUs.
 * Why: a kill ends every thread, also one asleep in the kernel: the IPI of the program's end
 * must cut the worker's sleep short, or vCPU 0 waits for its vCPU in vain (2 s, then an
 * [ERROR] line) and the address space cannot go. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "faultline.h"

FAULTLINE_EXPECT("killed #UD; vcpus 2");

static volatile int sleeping;

static void *worker(void *arg)
{
    (void)arg;
    struct timespec minute = {60, 0};
    sleeping = 1;
    nanosleep(&minute, NULL);
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    while (!sleeping) {
    }
    struct timespec ms20 = {0, 20 * 1000 * 1000};
    nanosleep(&ms20, NULL);
    printf("threads_kill_sleeper: the worker sleeps; main executes ud2\n");
    __asm__ volatile("ud2");
    return 2;
}
