//! fpu_clean: checks that it starts from the architectural reset state of the FPU.
//!
//! Expected: exit 0.
//! Why: FPU state left by the program before (`fpu_dirty` runs just before this one) must not
//! reach the next: a register file carried over leaks data, and a control word carried over
//! changes results (single precision computes 1/3 wrongly). Reset state: x87 as after FNINIT
//! with zeroed registers, MXCSR 0x1f80, XMM0-15 zero (Intel SDM vol. 1, 10.5.1 and 13.6), and
//! the upper halves of YMM0-15 zero where the OS enabled AVX.
#![no_std]
#![no_main]

rt::entry!(main);

#[repr(C, align(16))]
struct Fxsave([u8; 512]);

fn main(_: &rt::start::Start) -> i32 {
    // First thing: the runtime is soft-float and never touches these registers.
    let mut area = Fxsave([0; 512]);
    // SAFETY: fxsave writes 512 bytes to a 16-byte aligned area we own.
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack)) };
    let a = &area.0;
    let word = |at: usize| u16::from_le_bytes([a[at], a[at + 1]]);
    let mxcsr = u32::from_le_bytes([a[24], a[25], a[26], a[27]]);
    rt::ensure!(word(0) == 0x037f, "x87 control word {:#06x}, not 0x037f", word(0));
    rt::ensure!(word(2) == 0, "x87 status word {:#06x}, not 0", word(2));
    rt::ensure!(a[4] == 0, "x87 tag byte {:#04x}: registers in use", a[4]);
    rt::ensure!(mxcsr == 0x1f80, "MXCSR {mxcsr:#x}, not 0x1f80");
    for st in 0..8 {
        let reg = &a[32 + 16 * st..32 + 16 * st + 10];
        rt::ensure!(reg.iter().all(|b| *b == 0), "ST{st} (R{st}) holds {reg:02x?}");
    }
    for x in 0..16 {
        let reg = &a[160 + 16 * x..160 + 16 * x + 16];
        rt::ensure!(reg.iter().all(|b| *b == 0), "xmm{x} holds {reg:02x?}");
    }
    let uppers = avx_uppers_zero();
    rt::println!("fpu_clean: x87 and SSE in reset state; AVX upper halves: {uppers}");
    0
}

/// Checks the upper halves of YMM0-15 when the OS has enabled AVX state (CPUID.1:ECX.OSXSAVE and
/// XCR0 bit 2); says what it checked.
fn avx_uppers_zero() -> &'static str {
    if !rt::cpu::avx_enabled() {
        return "AVX not enabled by the OS";
    }
    let mut upper = [[0u8; 16]; 16];
    // SAFETY: AVX state is enabled (above); vextractf128 only reads the registers and writes
    // 16 bytes into each row of `upper`.
    unsafe {
        core::arch::asm!(
            "vextractf128 [{u} + 0x00], ymm0, 1", "vextractf128 [{u} + 0x10], ymm1, 1",
            "vextractf128 [{u} + 0x20], ymm2, 1", "vextractf128 [{u} + 0x30], ymm3, 1",
            "vextractf128 [{u} + 0x40], ymm4, 1", "vextractf128 [{u} + 0x50], ymm5, 1",
            "vextractf128 [{u} + 0x60], ymm6, 1", "vextractf128 [{u} + 0x70], ymm7, 1",
            "vextractf128 [{u} + 0x80], ymm8, 1", "vextractf128 [{u} + 0x90], ymm9, 1",
            "vextractf128 [{u} + 0xa0], ymm10, 1", "vextractf128 [{u} + 0xb0], ymm11, 1",
            "vextractf128 [{u} + 0xc0], ymm12, 1", "vextractf128 [{u} + 0xd0], ymm13, 1",
            "vextractf128 [{u} + 0xe0], ymm14, 1", "vextractf128 [{u} + 0xf0], ymm15, 1",
            u = in(reg) upper.as_mut_ptr(),
            options(nostack),
        )
    };
    for (y, half) in upper.iter().enumerate() {
        if half.iter().any(|b| *b != 0) {
            rt::println!("ymm{y} upper half holds {half:02x?}");
            rt::sys::exit(1);
        }
    }
    "zero"
}
