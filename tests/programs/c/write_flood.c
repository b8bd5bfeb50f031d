/* write_flood: one write(2) of 12 MiB to the console.
 *
 * Expected: killed by watchdog (run with a short test_time, tests/hostile.rs).
 * Why: printing 12 MiB through the console takes tens of seconds. The kernel works for the
 * program all that time, with events masked; it must still look at the program's deadline and
 * end it within its budget, or one program stalls the whole run. */
#include <unistd.h>

#include "faultline.h"

FAULTLINE_EXPECT("killed watchdog");

/* bss, never touched: the kernel reads it as zeros without allocating a frame. */
static char buffer[12 << 20];

int main(void)
{
    write(1, buffer, sizeof buffer);
    return 0;
}
