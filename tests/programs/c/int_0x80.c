/* int_0x80: `int $0x80`, the 32-bit Linux system call gate.
 *
 * Expected: killed by vector 0x80 (faultline serves only the 64-bit `syscall`).
 * Why: Xen forwards `int $0x80` straight to the guest kernel's vector-0x80 entry without the
 * DPL check other vectors get (its "int80 direct trap"); the kernel must still end the program
 * with a named kill, never treat it as a system call or lose it. */
#include "faultline.h"

FAULTLINE_EXPECT("killed vector 0x80");

int main(void)
{
    __asm__ volatile("int $0x80" : : "a"(1), "b"(0) : "memory");
    return 1;
}
