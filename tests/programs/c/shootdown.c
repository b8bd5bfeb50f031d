/* shootdown: one thread spins in user mode reading a page while the other thread unmaps it.
 *
 * The main thread maps one page at 0x500000000 and writes a tag into it; a second thread (on the
 * other vCPU) reads the page in a loop that never enters the kernel and counts its reads. Once it
 * has read the tag 100000 times (its vCPU holds the translation in its TLB), the main thread
 * calls munmap on the page and then watches the count (smp.h, shootdown_watch).
 *
 * Expected: killed #PF read not-present at 0x500000000 (the reader's next read after munmap
 * returned), with 2 vCPUs online (`vcpus 2`: skipped with 1).
 * If the reader's count grows by more than 2 after munmap returned, the reader went on reading
 * through a stale translation of a page that is no longer mapped (its frame free for reuse): the
 * program prints a `STALE` line and exits 1, so the run is `not ok`. A correct munmap returns only
 * after every vCPU that has the address space loaded dropped the translation (a TLB shootdown),
 * so at most the read in flight can still complete: the bound is counted in reads, not in time.
 * If for 1 s nothing happens (neither a fault nor a read), it exits 3.
 * Why: issue 14, item 6. On one vCPU a missing flush is invisible under QEMU's TCG (every
 * kernel/user switch flushes the vCPU's TLB); a reader that stays in user mode on another vCPU
 * keeps its TLB, so only a remote flush stops it. scripts/check-shootdown.sh removes the
 * shootdown and shows this program then ends with exit 1. */
#include <stdint.h>
#include <stdio.h>

#include "faultline.h"
#include "smp.h"

FAULTLINE_EXPECT("killed #PF read not-present at 0x500000000; vcpus 2");

#define TAG 0x73686f6f74646f77ULL /* "shootdow" */

static volatile uint64_t *page;
static volatile uint64_t reads;
static volatile uint64_t wrong;

static void *reader(void *unused)
{
    (void)unused;
    for (;;) {
        if (*page != TAG)
            wrong = 1;
        __atomic_add_fetch(&reads, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

int main(void)
{
    shootdown_start("shootdown", &page, TAG, reader);
    int warm = shootdown_warm("shootdown", &reads);
    if (warm != 0)
        return warm;
    if (wrong) {
        printf("shootdown: the reader read something else than the tag\n");
        return 2;
    }
    if (munmap((void *)page, 4096) != 0) {
        printf("shootdown: munmap failed\n");
        return 2;
    }
    return shootdown_watch("shootdown", "munmap", &reads);
}
