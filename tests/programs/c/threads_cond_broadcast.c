/* threads_cond_broadcast: two threads wait on one condition variable; the main thread wakes
 * both with pthread_cond_broadcast.
 *
 * Expected: exit 0; needs 3 vCPUs.
 * What: musl's broadcast wakes the first waiter, which hands the second one over to the mutex
 * with FUTEX_REQUEUE_PRIVATE (wake 0, requeue 1; seen with strace on Linux); the unlock of the
 * mutex then wakes it there. A kernel without FUTEX_REQUEUE answers ENOSYS, musl's fallback
 * (plain FUTEX_REQUEUE) gets ENOSYS too, and the second waiter sleeps on until the watchdog.
 * Why: condition variables are the commonest pthread primitive after join; a lost wake-up there
 * is a hang, never an error the program can see. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "faultline.h"

FAULTLINE_EXPECT("exit 0; vcpus 3");

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int go, waiting;

static void *waiter(void *arg)
{
    pthread_mutex_lock(&lock);
    waiting++;
    while (!go)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    return arg;
}

int main(void)
{
    pthread_t a, b;
    if (pthread_create(&a, NULL, waiter, "a") != 0 || pthread_create(&b, NULL, waiter, "b") != 0)
        return 1;
    /* Both waiters are on the condition's list once `waiting` is 2 under the mutex: each adds
     * itself inside pthread_cond_wait before it lets the mutex go. */
    for (;;) {
        pthread_mutex_lock(&lock);
        if (waiting == 2) {
            go = 1;
            pthread_cond_broadcast(&changed);
            pthread_mutex_unlock(&lock);
            break;
        }
        pthread_mutex_unlock(&lock);
        struct timespec ms1 = {0, 1000 * 1000};
        nanosleep(&ms1, NULL);
    }
    void *ra, *rb;
    int ja = pthread_join(a, &ra), jb = pthread_join(b, &rb);
    printf("threads_cond_broadcast: both waiters woke: %d %s, %d %s\n", ja, (char *)ra, jb,
           (char *)rb);
    return 0;
}
