/* load_xen_ss: loads Xen's ring-0 data selector (0xe010, __HYPERVISOR_DS64) into %ss.
 *
 * Expected: killed by #GP.
 * Why: a stack segment whose DPL is not the current privilege level must be refused (Intel SDM
 * vol. 2, MOV: "#GP(selector) if the SS register is being loaded and ... the segment's DPL is
 * not equal to the CPL"); a program must not get a stack in Xen's segment. */
#include "faultline.h"

FAULTLINE_EXPECT("killed #GP");

int main(void)
{
    __asm__ volatile("mov $0xe010, %%ax\n\tmov %%ax, %%ss" : : : "ax", "memory");
    return 1;
}
