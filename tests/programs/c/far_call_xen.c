/* far_call_xen: a far call through Xen's own ring-0 code selector (0xe008, __HYPERVISOR_CS in
 * Xen's public/arch-x86/xen-x86_64.h).
 *
 * Expected: killed by #GP.
 * Why: a far transfer is how ring 3 would reach more privileged code; a code segment of
 * DPL 0 must refuse it, and the kernel must kill the program, not resume it at Xen's address. */
#include <stdint.h>

#include "faultline.h"

FAULTLINE_EXPECT("killed #GP");

int main(void)
{
    struct __attribute__((packed)) {
        uint32_t offset;
        uint16_t selector;
    } target = {0x1000, 0xe008};
    __asm__ volatile("lcall *%0" : : "m"(target) : "memory");
    return 1;
}
