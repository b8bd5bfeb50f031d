/* shootdown_protect: one thread spins in user mode writing a page while the other thread makes
 * it read-only.
 *
 * The main thread maps one page at 0x500000000; a second thread (on the other vCPU) writes it in
 * a loop that never enters the kernel and counts its writes. Once it has written 100000 times
 * (its vCPU holds a writable, dirty translation in its TLB), the main thread calls mprotect
 * PROT_READ on the page and then watches the count (smp.h, shootdown_watch).
 *
 * Expected: killed #PF write protection at 0x500000000 (the writer's next write after mprotect
 * returned), with 2 vCPUs online (`vcpus 2`: skipped with 1).
 * If the count grows by more than 2 after mprotect returned, the writer went on writing a page
 * that is read-only through a stale writable translation: the program prints a `STALE` line and
 * exits 1, so the run is `not ok`. If for 1 s nothing happens, it exits 3.
 * Why: issue 14, item 4: mprotect must flush every vCPU that has the address space loaded, as
 * munmap must (tests/programs/c/shootdown.c); a downgrade that skips the remote flush lets
 * another thread write where the program said no write may happen (a copy on write that did not
 * copy, a guard page that does not guard). */
#include <stdint.h>
#include <stdio.h>

#include "faultline.h"
#include "smp.h"

FAULTLINE_EXPECT("killed #PF write protection at 0x500000000; vcpus 2");

static volatile uint64_t *page;
static volatile uint64_t writes;

static void *writer(void *unused)
{
    (void)unused;
    for (uint64_t n = 1;; n++) {
        *page = n;
        __atomic_add_fetch(&writes, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

int main(void)
{
    shootdown_start("shootdown_protect", &page, 0, writer);
    int warm = shootdown_warm("shootdown_protect", &writes);
    if (warm != 0)
        return warm;
    if (mprotect((void *)page, 4096, PROT_READ) != 0) {
        printf("shootdown_protect: mprotect failed\n");
        return 2;
    }
    return shootdown_watch("shootdown_protect", "mprotect", &writes);
}
