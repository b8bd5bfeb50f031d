//! fpu_dirty: leaves the x87 and SSE state as unlike the reset state as it can, and checks that
//! the state survives a sleep in the kernel.
//!
//! Expected: exit 0.
//! Why: the FPU belongs to the program. The kernel must not touch it while the program waits
//! (a sleep blocks the vCPU and takes timer events), and it must not hand it to the next
//! program: `fpu_clean`, run right after this one, checks that it starts from the reset state.
#![no_std]
#![no_main]

use rt::sys::{self, Timespec};

rt::entry!(main);

/// The FXSAVE image (Intel SDM vol. 1, 10.5.1): x87 control, status and abridged tag words,
/// MXCSR, ST0-7 and XMM0-15.
#[repr(C, align(16))]
struct Fxsave([u8; 512]);

fn fxsave() -> Fxsave {
    let mut area = Fxsave([0; 512]);
    // SAFETY: fxsave writes 512 bytes to a 16-byte aligned area we own.
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack)) };
    area
}

/// x87: single precision, round toward zero, all exceptions unmasked but precision; three
/// values pushed. MXCSR: flush-to-zero, denormals-are-zero, round up. XMM0-15: a pattern.
fn dirty() {
    let cw: u16 = 0x0c60; // RC = toward zero, PC = single, only PM masked (bit 6 reads as 1)
    let mxcsr: u32 = 0x8040 | 0x4000 | 0x1f80; // FTZ, DAZ, RC = up, all masked
    let pattern: [u64; 2] = [0xa5a5_a5a5_5a5a_5a5a, 0x0123_4567_89ab_cdef];
    // SAFETY: these instructions change only FPU and vector registers, which Rust code in this
    // soft-float program never uses; the memory operands are ours.
    unsafe {
        core::arch::asm!(
            "fldcw [{cw}]",
            "fld1",
            "fldpi",
            "fldl2t",
            "ldmxcsr [{mxcsr}]",
            "movdqu xmm0, [{p}]", "movdqu xmm1, [{p}]", "movdqu xmm2, [{p}]", "movdqu xmm3, [{p}]",
            "movdqu xmm4, [{p}]", "movdqu xmm5, [{p}]", "movdqu xmm6, [{p}]", "movdqu xmm7, [{p}]",
            "movdqu xmm8, [{p}]", "movdqu xmm9, [{p}]", "movdqu xmm10, [{p}]", "movdqu xmm11, [{p}]",
            "movdqu xmm12, [{p}]", "movdqu xmm13, [{p}]", "movdqu xmm14, [{p}]", "movdqu xmm15, [{p}]",
            cw = in(reg) &cw,
            mxcsr = in(reg) &mxcsr,
            p = in(reg) pattern.as_ptr(),
            options(nostack),
        );
    }
    if rt::cpu::avx_enabled() {
        // SAFETY: AVX state is enabled; only vector registers change.
        unsafe {
            core::arch::asm!(
                "vcmptrueps ymm0, ymm0, ymm0",
                "vcmptrueps ymm1, ymm1, ymm1",
                "vcmptrueps ymm2, ymm2, ymm2",
                "vcmptrueps ymm3, ymm3, ymm3",
                "vcmptrueps ymm8, ymm8, ymm8",
                "vcmptrueps ymm15, ymm15, ymm15",
                options(nomem, nostack),
            )
        };
    }
}

fn main(_: &rt::start::Start) -> i32 {
    dirty();
    let before = fxsave();
    rt::ensure!(u16::from_le_bytes([before.0[0], before.0[1]]) == 0x0c60, "fldcw did not take");
    for _ in 0..3 {
        rt::ensure!(sys::nanosleep(&Timespec { sec: 0, nsec: 5_000_000 }) == Ok(0), "nanosleep");
    }
    let after = fxsave();
    // Bytes 0..32 hold the control/status/tag words, MXCSR and the last-instruction pointers
    // (those stay: no x87 instruction ran in between); 32..416 the registers.
    for (i, (b, a)) in before.0[..416].iter().zip(&after.0[..416]).enumerate() {
        rt::ensure!(b == a, "FPU state byte {i} changed across a sleep: {b:#x} -> {a:#x}");
    }
    rt::println!(
        "fpu_dirty: x87 control word 0x0c60, MXCSR 0xff80, xmm0-15 patterned{}: kept across 3 sleeps",
        if rt::cpu::avx_enabled() { ", ymm uppers set" } else { "" }
    );
    0
}
