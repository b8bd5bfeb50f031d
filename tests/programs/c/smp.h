/* smp.h: what the threaded C test programs share (shootdown, shootdown_protect,
 * concurrent_fault, bench_threads): a spin barrier, the monotonic clock, and faultline's counters.
 *
 * Threads on faultline (docs/abi.md): one thread per vCPU, pinned; a program that starts N threads
 * says `vcpus N` in its note, and the kernel skips it when fewer vCPUs are online. Waiting here is
 * a spin in user mode on purpose: a thread that enters the kernel on a 64-bit PV vCPU switches page
 * tables, and under QEMU's TCG that flushes the vCPU's TLB (docs/XEN-NOTES section 5), which would
 * hide exactly what the shootdown programs look for. */
#ifndef SMP_H
#define SMP_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "faultline.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* Whether this is faultline (its auxv entries are there) or another kernel (Linux). */
static inline int on_faultline(void)
{
    return getauxval(AT_FAULTLINE_KERNEL_ADDRESS) != 0;
}

/* Nanoseconds of CLOCK_MONOTONIC (a system call: never inside a spin that must stay in user mode). */
static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* A spin barrier for `parties` threads, used round after round: round r (from 1) releases
 * everybody once parties * r arrivals have been counted. No system call. */
struct spin_barrier {
    volatile uint64_t arrived;
    unsigned parties;
};

static inline void spin_wait(struct spin_barrier *b, uint64_t round)
{
    __atomic_add_fetch(&b->arrived, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&b->arrived, __ATOMIC_ACQUIRE) < (uint64_t)b->parties * round)
        __builtin_ia32_pause();
}

/* faultline's counters since boot (docs/abi.md, faultline_counters): fills `out` with `count`
 * words and returns 0; -1 if the kernel has fewer (an older faultline) or refuses. */
static inline int read_counters(uint64_t *out, unsigned long count)
{
    long n = syscall(SYS_FAULTLINE_COUNTERS, out, count);
    return n >= 0 && (unsigned long)n >= count ? 0 : -1;
}

/* The shootdown programs: a thread on another vCPU touches a page in a loop in user mode and
 * counts the touches in `*count`; after an unmap or a protection change of that page, this thread
 * watches the count. */
#define SHOOTDOWN_WARM 100000
/* Touches that may still complete after the call returned: the one in flight, and its count. */
#define SHOOTDOWN_SLACK 2
#define SHOOTDOWN_QUIET_NS 1000000000ULL

/* The page the shootdown programs work on (their notes name it). */
#define SHOOTDOWN_PAGE 0x500000000UL

/* Maps SHOOTDOWN_PAGE read-write into `*page`, writes `value` there and starts `toucher` on a
 * thread of its own (another vCPU); prints and exits 2 if either fails. */
static inline void shootdown_start(const char *program, volatile uint64_t **page, uint64_t value,
                                   void *(*toucher)(void *))
{
    *page = mmap((void *)SHOOTDOWN_PAGE, 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (*page != (volatile uint64_t *)SHOOTDOWN_PAGE) {
        printf("%s: mmap at %#lx gave %p\n", program, SHOOTDOWN_PAGE, (void *)*page);
        exit(2);
    }
    **page = value;
    pthread_t thread;
    int error = pthread_create(&thread, NULL, toucher, NULL);
    if (error != 0) {
        printf("%s: pthread_create: error %d\n", program, error);
        exit(2);
    }
}

/* Waits until the other thread has touched the page SHOOTDOWN_WARM times (its vCPU now holds the
 * translation); 0, or 3 (printed) if it did not within SHOOTDOWN_QUIET_NS. */
static inline int shootdown_warm(const char *program, volatile uint64_t *count)
{
    uint64_t started = now_ns();
    while (__atomic_load_n(count, __ATOMIC_ACQUIRE) < SHOOTDOWN_WARM) {
        if (now_ns() - started > SHOOTDOWN_QUIET_NS) {
            printf("%s: the other thread made %llu accesses in 1 s (want %d first)\n", program,
                   (unsigned long long)*count, SHOOTDOWN_WARM);
            return 3;
        }
    }
    return 0;
}

/* Called right after `call` returned: the other thread's next touch must fault, which ends the
 * process. Returns 1 (printed: STALE) once the count grows by more than SHOOTDOWN_SLACK, the
 * touches going on through a stale translation; 3 if for SHOOTDOWN_QUIET_NS nothing happens. */
static inline int shootdown_watch(const char *program, const char *call, volatile uint64_t *count)
{
    uint64_t at_call = __atomic_load_n(count, __ATOMIC_ACQUIRE);
    uint64_t returned = now_ns();
    for (uint64_t turn = 0;; turn++) {
        uint64_t since = __atomic_load_n(count, __ATOMIC_ACQUIRE) - at_call;
        if (since > SHOOTDOWN_SLACK) {
            /* Let it run on for 10 ms, to show it is not one late access. */
            uint64_t until = now_ns() + 10000000ULL;
            while (now_ns() < until)
                ;
            since = __atomic_load_n(count, __ATOMIC_ACQUIRE) - at_call;
            printf("%s: STALE: the other thread touched the page %llu times in %llu us after %s "
                   "returned: its vCPU kept the old translation\n",
                   program, (unsigned long long)since,
                   (unsigned long long)((now_ns() - returned) / 1000), call);
            return 1;
        }
        if (turn % 4096 == 0 && now_ns() - returned > SHOOTDOWN_QUIET_NS) {
            printf("%s: 1 s after %s the other thread neither faulted nor went on (%llu touches since)\n",
                   program, call, (unsigned long long)since);
            return 3;
        }
    }
}

#endif
