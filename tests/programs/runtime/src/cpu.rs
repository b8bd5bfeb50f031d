//! What the CPU and the kernel enabled: for programs that look at vector state.

/// Whether the OS enabled AVX state: CPUID.1:ECX.OSXSAVE and XCR0 bits 1 and 2 (Intel SDM
/// vol. 1, 14.3, "Detection of Intel AVX instructions").
pub fn avx_enabled() -> bool {
    let ecx = core::arch::x86_64::__cpuid(1).ecx;
    if ecx & (1 << 27) == 0 {
        return false;
    }
    let xcr0_low: u32;
    // SAFETY: xgetbv(0) is allowed in ring 3 when OSXSAVE is set, as just checked.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0, out("eax") xcr0_low, out("edx") _, options(nomem, nostack))
    };
    xcr0_low & 0b110 == 0b110
}
