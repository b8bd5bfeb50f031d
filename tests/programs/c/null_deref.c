/* null_deref: reads through a NULL pointer, from C.
 *
 * Expected: killed by #PF read not-present at 0x0.
 * Why: shows FAULTLINE_EXPECT in C, and that a musl program's fault is reported like a Rust
 * program's (the kernel knows nothing about the language). */
#include <stdio.h>

#include "faultline.h"

FAULTLINE_EXPECT("killed #PF read not-present at 0x0");

int main(void)
{
    volatile int *null = (volatile int *)0;
    printf("read %d through NULL\n", *null);
    return 1;
}
