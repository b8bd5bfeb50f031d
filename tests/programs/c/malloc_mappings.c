/* malloc_mappings: musl's malloc with 256 large blocks alive at once, then 20000 random
 * allocations and frees of small, medium and large blocks.
 *
 * Expected: exit 0 (every malloc succeeds; every block keeps its tags until it is freed).
 * Why: musl's malloc (mallocng) maps every block above 128 KiB with mmap of its own and unmaps it
 * on free, and maps groups of medium blocks the same way: an ordinary C program makes hundreds
 * of mappings and thousands of mmap/munmap calls without knowing it. Linux merges the adjacent
 * ones and allows 65530 (vm.max_map_count); a kernel with a small fixed table of areas makes
 * malloc return NULL (for faultline before issue 9: at the 65th area). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LARGE 256
#define SLOTS 128
#define STEPS 20000

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The tag of a block: its slot and size, in its first and last 8 bytes (two pages of a large
 * block: 256 of them alive take 2 MiB, which a small guest has). */
static uint64_t tag(size_t slot, size_t size)
{
    return 0x6d616c6c00000000ULL ^ ((uint64_t)slot << 40) ^ size;
}

static void put(unsigned char *p, size_t size, uint64_t t)
{
    memcpy(p, &t, 8);
    memcpy(p + size - 8, &t, 8);
}

static int kept(const unsigned char *p, size_t size, uint64_t t)
{
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + size - 8, 8);
    return a == t && b == t;
}

/* 60% small (24 B to 1 KiB: room for two tags that do not overlap), 30% medium (1 to 3 KiB),
 * 10% large (128 to 256 KiB: a mapping each). Medium blocks stay below 4 KiB: freeing a larger
 * one from a group that is still in use makes mallocng call madvise(MADV_FREE) on its pages,
 * which faultline does not implement (each call would print an unknown-syscall line). */
static size_t random_size(void)
{
    uint64_t r = next();
    unsigned kind = (unsigned)(r % 100);
    r >>= 8;
    if (kind < 60)
        return 24 + r % 1001;
    if (kind < 90)
        return 1024 + r % (2 * 1024);
    return (128 << 10) + r % (128 << 10);
}

int main(void)
{
    static unsigned char *large[LARGE];
    static size_t large_size[LARGE];
    for (size_t i = 0; i < LARGE; i++) {
        large_size[i] = (132 << 10) + i * 512;
        large[i] = malloc(large_size[i]);
        if (large[i] == NULL) {
            printf("malloc_mappings: large block %zu of %d (%zu bytes) failed: malloc returned NULL\n", i + 1, LARGE, large_size[i]);
            return 1;
        }
        put(large[i], large_size[i], tag(i, large_size[i]));
    }
    for (size_t i = 0; i < LARGE; i++) {
        if (!kept(large[i], large_size[i], tag(i, large_size[i]))) {
            printf("malloc_mappings: large block %zu at %p lost its tags\n", i, (void *)large[i]);
            return 1;
        }
        free(large[i]);
    }

    static unsigned char *slot[SLOTS];
    static size_t slot_size[SLOTS];
    size_t mallocs = 0, frees = 0, live = 0, peak = 0;
    for (size_t step = 0; step < STEPS; step++) {
        size_t s = next() % SLOTS;
        if (slot[s] != NULL) {
            if (!kept(slot[s], slot_size[s], tag(s, slot_size[s]))) {
                printf("malloc_mappings: step %zu: block of %zu bytes at %p lost its tags\n", step, slot_size[s], (void *)slot[s]);
                return 1;
            }
            free(slot[s]);
            slot[s] = NULL;
            frees++;
            live--;
            continue;
        }
        size_t size = random_size();
        slot[s] = malloc(size);
        if (slot[s] == NULL) {
            printf("malloc_mappings: step %zu: malloc(%zu) returned NULL with %zu blocks alive\n", step, size, live);
            return 1;
        }
        slot_size[s] = size;
        put(slot[s], size, tag(s, size));
        mallocs++;
        if (++live > peak)
            peak = live;
    }
    for (size_t s = 0; s < SLOTS; s++)
        free(slot[s]);
    printf("malloc_mappings: %d large blocks alive at once, then %zu mallocs and %zu frees (up to %zu blocks alive), all kept\n", LARGE, mallocs, frees, peak);
    return 0;
}
