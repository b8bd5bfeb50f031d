/* int_overflow: `int $4`, the #OF vector, which is open to user mode (for `into`).
 *
 * Expected: killed by vector 4, the kill line naming #OF and `int $0x4`.
 * Why: a trap-type vector a program can raise at will must end the program with its name,
 * never be taken for something the kernel announced or resumed. */
#include "faultline.h"

FAULTLINE_EXPECT("killed vector 4");

int main(void)
{
    __asm__ volatile("int $4");
    return 1;
}
