/* int_closed: `int $0x20`, a vector the kernel does not open to user mode.
 *
 * Expected: killed by #GP, the kill line naming `int $0x20`.
 * Why: a software interrupt through a gate whose DPL is below the caller's ring must fault, and
 * the report must say what the program did, not only which vector arrived. */
#include "faultline.h"

FAULTLINE_EXPECT("killed #GP");

int main(void)
{
    __asm__ volatile("int $0x20");
    return 1;
}
