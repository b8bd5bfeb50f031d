//! The FPU and vector state a program starts with: the architectural reset state, every time.
//!
//! The kernel itself never touches x87, SSE or AVX registers (its target is soft-float), so the
//! state a program leaves behind stays in the registers until the next program starts. One
//! restore from a clean image puts everything back: XRSTOR with an all-zero XSTATE_BV brings
//! every component enabled in XCR0 to its initial state (x87 as after FNINIT with zeroed
//! registers, XMM and the upper halves of YMM/ZMM zero, ...) and loads MXCSR from the image;
//! FXRSTOR from the same image does it for x87 and SSE, which is all there is without XSAVE.
//! Intel SDM vol. 1, 13.6 ("Processor tracking of XSAVE-managed state": init state) and
//! 13.8.1 (XRSTOR: "If RFBM[1] = 1 or RFBM[2] = 1, MXCSR is loaded from the legacy region").
//!
//! FXRSTOR always goes first. Xen restores a PV vCPU's FPU lazily: after the vCPU was switched
//! out, CR0.TS is set and the first FPU instruction raises #NM, on which Xen loads the saved
//! state and runs the instruction again. Measured here (faultline as a DomU, QEMU 7.2 TCG, Xen
//! 4.17): an XRSTOR issued then went through without that #NM, and the next x87 instruction
//! made Xen load the previous program's state over the reset one. FXRSTOR takes the #NM, so
//! Xen's restore happens before, not after, the reset.

/// MXCSR at reset: all exceptions masked, round to nearest, no FTZ/DAZ.
pub const MXCSR_RESET: u32 = 0x1f80;
/// The x87 control word after FNINIT: all exceptions masked, 64-bit precision, round to nearest.
pub const FCW_RESET: u16 = 0x037f;

/// The legacy region (512 bytes) and the XSAVE header (64 bytes), 64-byte aligned as XRSTOR
/// wants. All zero but FCW (byte 0) and MXCSR (byte 24): XSTATE_BV = XCOMP_BV = 0.
#[repr(C, align(64))]
struct CleanImage([u8; 576]);

static CLEAN: CleanImage = {
    let mut image = [0u8; 576];
    let fcw = FCW_RESET.to_le_bytes();
    image[0] = fcw[0];
    image[1] = fcw[1];
    let mxcsr = MXCSR_RESET.to_le_bytes();
    let mut i = 0;
    while i < 4 {
        image[24 + i] = mxcsr[i];
        i += 1;
    }
    CleanImage(image)
};

/// CPUID.1:ECX.OSXSAVE: XSAVE is on and XGETBV may be used (Intel SDM vol. 2, CPUID).
const CPUID_1_ECX_OSXSAVE: u32 = 1 << 27;

/// Puts x87, SSE and every XSAVE component enabled in XCR0 into its reset state.
pub fn reset() {
    let image = CLEAN.0.as_ptr();
    // SAFETY: `image` is 512+ bytes, 16-byte aligned, with a valid MXCSR; only x87 and SSE
    // registers change, which no kernel code uses.
    unsafe {
        core::arch::asm!("fxrstor64 [{}]", in(reg) image, options(readonly, nostack, preserves_flags));
    }
    if core::arch::x86_64::__cpuid(1).ecx & CPUID_1_ECX_OSXSAVE != 0 {
        let (xcr0_low, xcr0_high): (u32, u32);
        // SAFETY: OSXSAVE is set, so XGETBV is enabled (it is not privileged); it only reads
        // XCR0 into edx:eax.
        unsafe {
            core::arch::asm!("xgetbv", in("ecx") 0, out("eax") xcr0_low, out("edx") xcr0_high,
                options(nomem, nostack, preserves_flags));
        }
        // SAFETY: `image` is 576 bytes, 64-byte aligned, with a zero XSAVE header (XSTATE_BV =
        // XCOMP_BV = 0: nothing is read past the header) and a valid MXCSR; the requested
        // feature bitmap is XCR0 itself. Only FPU and vector registers change, which no kernel
        // code uses.
        unsafe {
            core::arch::asm!("xrstor64 [{}]", in(reg) image, in("eax") xcr0_low,
                in("edx") xcr0_high, options(readonly, nostack, preserves_flags));
        }
    }
}
