/* int_hypercall: `int $0x82`, Xen's hypercall gate for 32-bit PV kernels.
 *
 * Expected: killed, the kill line naming `int $0x82` (run by tests/hostile.rs, which accepts the
 * #GP a CPU gives and the #OF that QEMU's TCG error code makes Xen deliver).
 * Why: a user program must not reach the hypervisor's entry points; whatever vector the kernel
 * sees, the report names the instruction. */
int main(void)
{
    __asm__ volatile("int $0x82");
    return 1;
}
