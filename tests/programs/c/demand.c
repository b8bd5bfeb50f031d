/* demand: malloc'ed memory and a fixed mapping across the 4 GiB boundary, touched page by page.
 *
 * Expected: exit 0.
 * Why: demand paging as an ordinary C program sees it: musl's malloc gets large blocks with
 * mmap and grows small ones with brk; every page must read as zero and keep what is written,
 * including pages whose page tables are made by the fault itself (the 4 GiB boundary is a
 * 1 GiB and a 2 MiB boundary: new L1 and L2 tables on both sides). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PAGE 4096UL

static int touch(const char *what, unsigned char *base, size_t len)
{
    for (size_t off = 0; off < len; off += PAGE) {
        if (base[off] != 0) {
            printf("demand: %s page at %p is not zero\n", what, (void *)(base + off));
            return 1;
        }
        base[off] = (unsigned char)(off / PAGE) | 1;
    }
    for (size_t off = 0; off < len; off += PAGE) {
        if (base[off] != ((unsigned char)(off / PAGE) | 1)) {
            printf("demand: %s page at %p lost its byte\n", what, (void *)(base + off));
            return 1;
        }
    }
    return 0;
}

int main(void)
{
    size_t big = 4UL << 20;
    unsigned char *heap = calloc(1, big);
    if (heap == NULL) {
        printf("demand: calloc of %zu bytes failed\n", big);
        return 1;
    }
    if (touch("malloc", heap, big))
        return 1;
    free(heap);

    uintptr_t at = (4UL << 30) - (1UL << 20);
    size_t len = 2UL << 20;
    unsigned char *fixed = mmap((void *)at, len, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (fixed != (unsigned char *)at) {
        printf("demand: mmap at %#lx gave %p\n", (unsigned long)at, (void *)fixed);
        return 1;
    }
    if (touch("fixed", fixed, len))
        return 1;
    if (munmap(fixed, len) != 0) {
        printf("demand: munmap failed\n");
        return 1;
    }
    printf("demand: %zu KiB from malloc and %zu KiB across 4 GiB, all zero-filled and kept\n", big >> 10, len >> 10);
    return 0;
}
