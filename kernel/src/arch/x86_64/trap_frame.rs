//! The registers an exception entry stub saves, in the order boot/entry.S pushes them.

/// What `trap_common` (boot/entry.S) leaves on the stack: general registers (r15 pushed last,
/// so first here), the vector and error code the stub pushed, then Xen's frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    /// Bits 0-15: the selector; bits 32-39: the event mask Xen saved (public/arch-x86/xen-x86_64.h).
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// Whether the exception interrupted the kernel. The PV kernel runs in ring 3 like user
    /// code; Xen reports a kernel-mode frame with the selector's RPL cleared (0xe030 for
    /// FLAT_KERNEL_CS 0xe033) and a user-mode frame with RPL 3.
    pub fn from_kernel(&self) -> bool {
        self.cs & 3 == 0
    }

    /// The event mask Xen saved at entry (bits 32-39 of the cs slot).
    pub fn saved_upcall_mask(&self) -> u8 {
        (self.cs >> 32) as u8
    }

    /// Named registers in a fixed order, for the crash report.
    pub fn general_registers(&self) -> [(&'static str, u64); 16] {
        [
            ("rax", self.rax),
            ("rbx", self.rbx),
            ("rcx", self.rcx),
            ("rdx", self.rdx),
            ("rsi", self.rsi),
            ("rdi", self.rdi),
            ("rbp", self.rbp),
            ("rsp", self.rsp),
            ("r8", self.r8),
            ("r9", self.r9),
            ("r10", self.r10),
            ("r11", self.r11),
            ("r12", self.r12),
            ("r13", self.r13),
            ("r14", self.r14),
            ("r15", self.r15),
        ]
    }
}

/// Size of the frame in bytes; boot/entry.S adds 16 (vector, error code) after popping 15
/// registers, so the layout below is what the assembly assumes.
pub const TRAP_FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(TrapFrame, r15) == 0);
    assert!(offset_of!(TrapFrame, rax) == 14 * 8);
    assert!(offset_of!(TrapFrame, vector) == 15 * 8);
    assert!(offset_of!(TrapFrame, error_code) == 16 * 8);
    assert!(offset_of!(TrapFrame, rip) == 17 * 8);
    assert!(offset_of!(TrapFrame, ss) == 21 * 8);
    assert!(TRAP_FRAME_SIZE == 22 * 8);
};
