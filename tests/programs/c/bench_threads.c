/* bench_threads: the two-thread workloads of `cargo xtask bench`, each measured on its own and
 * printed as one `BENCH` line (the format of faultline_abi::bench, as tests/programs/runtime's
 * bench.rs prints it for the Rust workloads):
 *   fault_1t     one thread writes every page of a fresh mapping once, in a shuffled order: the
 *                lower half's pages, then the upper half's;
 *   fault_2t     the same with two threads on two vCPUs, released together, each writing one
 *                half in the same order (pages= is the total; tsc is from the release to the
 *                moment both are done);
 *   munmap_1t    munmap of a page only this thread has touched, 256 times (before the second
 *                thread exists: the address space is loaded on one vCPU, a local flush);
 *   munmap_2t    munmap of a page both threads have touched, 256 times, while the other thread
 *                waits in user mode on its vCPU (a TLB shootdown each: the other vCPU has the
 *                address space loaded); pages= is the number of munmap calls.
 * Each window's counts and TSC ticks come from faultline_counters before and after it (faults,
 * hypercalls but the iret, mmu_update calls and entries, mmuext_op calls, update_va_mapping calls,
 * TLB shootdowns and IPIs the kernel sent); on Linux from getrusage's minor faults (the whole
 * process, both threads). The hypercall counts (calls of each kind, irets) are the calling
 * vCPU's own (kernel/src/xen/hypercall.rs, CALLS_BY_NR), so in fault_2t the other thread reads
 * them around its part too and they are added; the others count for every vCPU. The munmap
 * windows are the calls alone, added up over the 256.
 *
 * Expected: exit 0, with one `BENCH` line per workload, with 2 vCPUs online (`vcpus 2`).
 * Size: PAGES pages for the fault workloads, from the name it runs under (`bench_threads-1024`:
 * 1024; plain `bench_threads`: 4096).
 * Why: issue 14, item 7: what a second vCPU buys a program that faults (the kernel takes one
 * address space's faults one at a time: the other vCPU's user-to-kernel round trip through Xen is
 * what overlaps), and what a shootdown costs against a local flush. Runs the same in the Linux PV
 * DomU of `cargo xtask bench`. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <x86intrin.h>

#include "faultline.h"
#include "smp.h"

FAULTLINE_EXPECT("exit 0; vcpus 2");

#define PAGE 4096UL
#define DEFAULT_PAGES 4096
#define MAX_PAGES 32768
#define MUNMAPS 256
#define COUNTERS (FAULTLINE_COUNTER_IPIS_SENT + 1)

static int faultline;
static struct spin_barrier barrier = {0, 2};
/* The main thread's barrier rounds (the other thread counts its own). */
static uint64_t round_no;
static uint32_t order[MAX_PAGES];

/* The other thread's orders: what to do after each release. */
enum job { JOB_FAULT, JOB_TOUCH, JOB_EXIT };
static volatile enum job job;
static volatile unsigned char *area;
static uint64_t area_pages;
/* The other thread's samples around its part of fault_2t (faultline only). */
static struct sample other_before, other_after;

static uint64_t tsc(void)
{
    _mm_lfence();
    return __rdtsc();
}

/* One window's start or end: faultline's counters, or Linux's minor faults. */
struct sample {
    uint64_t counters[COUNTERS];
    uint64_t minflt;
};

static void take(struct sample *s)
{
    if (faultline) {
        if (read_counters(s->counters, COUNTERS) != 0) {
            printf("bench_threads: faultline_counters gives fewer than %d counters: this kernel cannot be measured\n",
                   COUNTERS);
            exit(2);
        }
    } else {
        struct rusage usage;
        getrusage(RUSAGE_SELF, &usage);
        s->minflt = (uint64_t)usage.ru_minflt;
    }
}

/* A window's totals, summed over its parts. */
struct totals {
    uint64_t counters[COUNTERS];
    uint64_t minflt, ticks;
};

static void add(struct totals *t, const struct sample *before, const struct sample *after, uint64_t ticks)
{
    for (int i = 0; i < COUNTERS; i++)
        t->counters[i] += after->counters[i] - before->counters[i];
    t->minflt += after->minflt - before->minflt;
    t->ticks += ticks;
}

/* The counters each vCPU keeps for itself (the hypercalls it made); the others are global. */
static const int per_vcpu[] = {
    FAULTLINE_COUNTER_HYPERCALLS, FAULTLINE_COUNTER_MMU_UPDATE_CALLS, FAULTLINE_COUNTER_MMUEXT_CALLS,
    FAULTLINE_COUNTER_UPDATE_VA_MAPPING_CALLS, FAULTLINE_COUNTER_IRETS,
};

/* Adds the other thread's own hypercall counts between its two samples. */
static void add_other_vcpu(struct totals *t, const struct sample *before, const struct sample *after)
{
    for (unsigned i = 0; i < sizeof per_vcpu / sizeof per_vcpu[0]; i++)
        t->counters[per_vcpu[i]] += after->counters[per_vcpu[i]] - before->counters[per_vcpu[i]];
}

static void print(const char *workload, uint64_t pages, const struct totals *t)
{
    if (!faultline) {
        printf("BENCH %s pages=%llu minflt=%llu tsc=%llu laps=0\n", workload, (unsigned long long)pages,
               (unsigned long long)t->minflt, (unsigned long long)t->ticks);
        return;
    }
    const uint64_t *c = t->counters;
    printf("BENCH %s pages=%llu faults=%llu hypercalls=%llu mmu_update=%llu entries=%llu mmuext=%llu uva=%llu "
           "shootdowns=%llu ipis=%llu tsc=%llu laps=0\n",
           workload, (unsigned long long)pages, (unsigned long long)c[FAULTLINE_COUNTER_USER_FAULTS],
           (unsigned long long)(c[FAULTLINE_COUNTER_HYPERCALLS] - c[FAULTLINE_COUNTER_IRETS]),
           (unsigned long long)c[FAULTLINE_COUNTER_MMU_UPDATE_CALLS],
           (unsigned long long)c[FAULTLINE_COUNTER_MMU_UPDATE_ENTRIES],
           (unsigned long long)c[FAULTLINE_COUNTER_MMUEXT_CALLS],
           (unsigned long long)c[FAULTLINE_COUNTER_UPDATE_VA_MAPPING_CALLS],
           (unsigned long long)c[FAULTLINE_COUNTER_TLB_SHOOTDOWNS],
           (unsigned long long)c[FAULTLINE_COUNTER_IPIS_SENT], (unsigned long long)t->ticks);
}

/* Writes the pages order[first], ..., order[end - 1]. */
static void write_pages(uint64_t first, uint64_t end)
{
    for (uint64_t i = first; i < end; i++)
        area[(uint64_t)order[i] * PAGE] = (unsigned char)(order[i] | 1);
}

/* order[first..end] := the pages first..end-1 shuffled (Fisher-Yates with a fixed xorshift seed:
 * the same order on every run and every kernel), then no page right after its neighbour: a
 * fault that continues the one before twice in a row would make faultline's prefault map pages
 * ahead (kernel/src/mm/address_space.rs), and with two threads whether that happens would depend
 * on how their faults interleave. The halves are apart, so the other thread cannot continue a
 * run either (but at their border, once). */
static void shuffle(uint64_t first, uint64_t end)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL ^ first;
    for (uint64_t i = first; i < end; i++)
        order[i] = (uint32_t)i;
    for (uint64_t i = end - 1; i > first; i--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t j = first + x % (i - first + 1);
        uint32_t swap = order[i];
        order[i] = order[j];
        order[j] = swap;
    }
    for (int pass = 0; pass < 8; pass++) {
        int moved = 0;
        for (uint64_t i = first + 1; i < end; i++) {
            if (order[i] == order[i - 1] + 1 || order[i] + 1 == order[i - 1]) {
                uint64_t j = first + (i - first + (end - first) / 2) % (end - first);
                uint32_t swap = order[i];
                order[i] = order[j];
                order[j] = swap;
                moved = 1;
            }
        }
        if (!moved)
            return;
    }
    printf("bench_threads: no order of pages %llu..%llu without neighbours\n", (unsigned long long)first,
           (unsigned long long)end);
    exit(1);
}

/* The other thread: waits in user mode for a job, does it, and says so at the next barrier. */
static void *other(void *unused)
{
    (void)unused;
    for (uint64_t round = 1;; round += 2) {
        spin_wait(&barrier, round);
        if (job == JOB_EXIT)
            return NULL;
        if (job == JOB_FAULT) {
            if (faultline)
                take(&other_before);
            write_pages(area_pages / 2, area_pages);
            if (faultline)
                take(&other_after);
        }
        else
            area[0] = 2;
        spin_wait(&barrier, round + 1);
    }
}

/* Starts job `j` on the other thread; done() waits until it (and this thread's part) is done. */
static void release(enum job j)
{
    job = j;
    spin_wait(&barrier, ++round_no);
}

static void done(void)
{
    spin_wait(&barrier, ++round_no);
}

static void map_area(uint64_t pages)
{
    void *at = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (at == MAP_FAILED) {
        printf("bench_threads: mmap of %llu pages failed\n", (unsigned long long)pages);
        exit(1);
    }
    area = at;
    area_pages = pages;
}

static void check_and_unmap(uint64_t pages)
{
    for (uint64_t p = 0; p < pages; p++) {
        if (area[p * PAGE] != (unsigned char)(p | 1)) {
            printf("bench_threads: page %llu holds %#x\n", (unsigned long long)p, area[p * PAGE]);
            exit(1);
        }
    }
    munmap((void *)area, pages * PAGE);
}

/* munmap of a fresh page MUNMAPS times; with `both`, the other thread touched it first and
 * waits in user mode during the call. */
static void munmaps(const char *workload, int both)
{
    struct totals t = {0};
    for (int i = 0; i < MUNMAPS; i++) {
        map_area(1);
        area[0] = 1;
        if (both) {
            /* The other thread writes the page, then waits for its next job in user mode. */
            release(JOB_TOUCH);
            done();
        }
        struct sample before, after;
        take(&before);
        uint64_t start = tsc();
        int unmapped = munmap((void *)area, PAGE);
        uint64_t ticks = tsc() - start;
        take(&after);
        if (unmapped != 0) {
            printf("bench_threads: %s: munmap failed\n", workload);
            exit(1);
        }
        add(&t, &before, &after, ticks);
    }
    print(workload, MUNMAPS, &t);
}

static uint64_t size_from_name(const char *name)
{
    const char *dash = strrchr(name, '-');
    if (dash == NULL || dash[1] == 0)
        return DEFAULT_PAGES;
    uint64_t n = 0;
    for (const char *c = dash + 1; *c; c++) {
        if (*c < '0' || *c > '9')
            return DEFAULT_PAGES;
        n = n * 10 + (uint64_t)(*c - '0');
    }
    return n;
}

int main(int argc, char **argv)
{
    faultline = on_faultline();
    uint64_t pages = argc > 0 ? size_from_name(argv[0]) : DEFAULT_PAGES;
    if (pages < 16 || pages > MAX_PAGES) {
        printf("bench_threads: %llu pages: take 16 to %d\n", (unsigned long long)pages, MAX_PAGES);
        return 1;
    }
    shuffle(0, pages / 2);
    shuffle(pages / 2, pages);
    struct sample before, after;
    struct totals t;

    /* One thread: the address space is loaded on this vCPU alone. */
    munmaps("munmap_1t", 0);
    map_area(pages);
    memset(&t, 0, sizeof t);
    take(&before);
    uint64_t start = tsc();
    write_pages(0, pages);
    uint64_t ticks = tsc() - start;
    take(&after);
    add(&t, &before, &after, ticks);
    print("fault_1t", pages, &t);
    check_and_unmap(pages);

    pthread_t thread;
    int error = pthread_create(&thread, NULL, other, NULL);
    if (error != 0) {
        printf("bench_threads: pthread_create: error %d\n", error);
        return 1;
    }
    map_area(pages);
    memset(&t, 0, sizeof t);
    take(&before);
    start = tsc();
    release(JOB_FAULT);
    write_pages(0, pages / 2);
    done();
    ticks = tsc() - start;
    take(&after);
    add(&t, &before, &after, ticks);
    if (faultline)
        add_other_vcpu(&t, &other_before, &other_after);
    print("fault_2t", pages, &t);
    check_and_unmap(pages);

    munmaps("munmap_2t", 1);
    release(JOB_EXIT);
    pthread_join(thread, NULL);
    return 0;
}
