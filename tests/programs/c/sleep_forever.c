/* sleep_forever: sleeps for a day in one nanosleep.
 *
 * Expected: killed by watchdog, and the kill line names the rip of the syscall instruction.
 * Why: a program killed while the kernel sleeps for it was stopped at a known place: the
 * instruction after its `syscall`. Reporting rip 0 hides where the program was. */
#include <time.h>

#include "faultline.h"

FAULTLINE_EXPECT("killed watchdog");

int main(void)
{
    struct timespec day = {86400, 0};
    nanosleep(&day, NULL);
    return 0;
}
