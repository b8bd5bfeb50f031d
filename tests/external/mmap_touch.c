/* An ordinary static musl program, written without faultline in mind: it maps 4 MiB, touches
 * every page, checks what it wrote, unmaps the memory and prints a summary. No expectation note:
 * faultline expects a program without one to exit with status 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

int main(void) {
    const size_t len = 4u << 20;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (size_t off = 0; off < len; off += 4096)
        p[off] = (unsigned char)(off >> 12);
    for (size_t off = 0; off < len; off += 4096)
        if (p[off] != (unsigned char)(off >> 12)) {
            fprintf(stderr, "page %zu lost its byte\n", off >> 12);
            return 2;
        }
    if (munmap(p, len) != 0) {
        perror("munmap");
        return 3;
    }
    char *s = malloc(100);
    snprintf(s, 100, "%zu pages", len / 4096);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
    printf("mmap_touch: touched, checked and unmapped %s in %ld us\n", s, us);
    free(s);
    return 0;
}
