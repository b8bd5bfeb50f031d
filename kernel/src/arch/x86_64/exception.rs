//! Exception vectors by name, and their error codes decoded for humans.

use core::fmt;

/// Architectural exception vectors 0-19 (Intel SDM vol. 3, table 6-1).
pub const VECTORS: [(&str, &str, bool); 20] = [
    // (mnemonic, name, has error code)
    ("#DE", "divide error", false),
    ("#DB", "debug", false),
    ("NMI", "non-maskable interrupt", false),
    ("#BP", "breakpoint", false),
    ("#OF", "overflow", false),
    ("#BR", "bound range exceeded", false),
    ("#UD", "invalid opcode", false),
    ("#NM", "device not available", false),
    ("#DF", "double fault", true),
    ("#CSO", "coprocessor segment overrun", false),
    ("#TS", "invalid TSS", true),
    ("#NP", "segment not present", true),
    ("#SS", "stack-segment fault", true),
    ("#GP", "general protection", true),
    ("#PF", "page fault", true),
    ("#15", "reserved (spurious)", false),
    ("#MF", "x87 floating-point error", false),
    ("#AC", "alignment check", true),
    ("#MC", "machine check", false),
    ("#XM", "SIMD floating-point", false),
];

/// A bit per vector that comes with an error code, from [`VECTORS`]: boot/entry.S builds its
/// stubs from it (main.rs hands it to the assembler).
pub const ERROR_CODE_VECTORS: u64 = {
    let mut mask = 0;
    let mut vector = 0;
    while vector < VECTORS.len() {
        if VECTORS[vector].2 {
            mask |= 1 << vector;
        }
        vector += 1;
    }
    mask
};

pub const DIVIDE_ERROR: u64 = 0;
pub const NMI: u64 = 2;
pub const BREAKPOINT: u64 = 3;
pub const OVERFLOW: u64 = 4;
pub const INVALID_OPCODE: u64 = 6;
pub const GENERAL_PROTECTION: u64 = 13;
pub const PAGE_FAULT: u64 = 14;
/// Pseudo-vectors boot/entry.S and boot/user.S push for Xen's callbacks (beyond the
/// architectural 0-255; main.rs hands them to the assembler).
pub const EVENT_UPCALL: u64 = 256;
pub const FAILSAFE: u64 = 257;
pub const SYSCALL: u64 = 258;

/// Mnemonic and name of `vector`.
pub fn name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        EVENT_UPCALL => ("EVT", "event upcall"),
        SYSCALL => ("SYSCALL", "system call"),
        FAILSAFE => ("FAILSAFE", "Xen failsafe callback: bad segment state on return"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        28 => ("#HV", "hypervisor injection"),
        29 => ("#VC", "VMM communication"),
        30 => ("#SX", "security exception"),
        22..=31 => ("#??", "reserved vector"),
        32..=255 => ("INT n", "software interrupt"),
        _ => VECTORS.get(vector as usize).map_or(("#??", "unknown vector"), |v| (v.0, v.1)),
    }
}

/// Whether the CPU pushes an error code for `vector`.
pub fn has_error_code(vector: u64) -> bool {
    VECTORS.get(vector as usize).is_some_and(|v| v.2)
}

/// An error code decoded according to its vector.
pub struct ErrorCode {
    pub vector: u64,
    pub code: u64,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.code)?;
        match self.vector {
            PAGE_FAULT => {
                // The decoding is `PageFault`'s; the protection-key and shadow-stack bits
                // (Intel SDM vol. 3, 4.7) only matter to this report.
                let c = self.code;
                let fault = super::page_fault::PageFault::decode(c, 0);
                let present = if fault.present { "protection" } else { "not-present" };
                let mode = if fault.user_mode { "user" } else { "kernel" };
                write!(f, " ({}, {present}, {mode}-mode", fault.access.word())?;
                if fault.reserved_bit {
                    write!(f, ", reserved-bit")?;
                }
                if c & 0x20 != 0 {
                    write!(f, ", protection-key")?;
                }
                if c & 0x40 != 0 {
                    write!(f, ", shadow-stack")?;
                }
                write!(f, ")")
            }
            8 | 10..=13 | 17 => {
                // A selector error code: EXT, IDT, TI, index.
                let c = self.code;
                if c == 0 {
                    return write!(f, " (no selector)");
                }
                let table = if c & 2 != 0 {
                    "IDT"
                } else if c & 4 != 0 {
                    "LDT"
                } else {
                    "GDT"
                };
                write!(f, " ({table} index {:#x}", c >> 3)?;
                if c & 1 != 0 {
                    write!(f, ", external")?;
                }
                write!(f, ")")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(vector: u64, code: u64) -> String {
        ErrorCode { vector, code }.to_string()
    }

    #[test]
    fn page_fault_codes() {
        assert_eq!(decode(14, 0), "0x0 (read, not-present, kernel-mode)");
        assert_eq!(decode(14, 0x7), "0x7 (write, protection, user-mode)");
        assert_eq!(decode(14, 0x15), "0x15 (exec, protection, user-mode)");
        assert_eq!(decode(14, 0x9), "0x9 (read, protection, kernel-mode, reserved-bit)");
    }

    #[test]
    fn selector_codes() {
        assert_eq!(decode(13, 0), "0x0 (no selector)");
        assert_eq!(decode(13, 0x1a), "0x1a (IDT index 0x3)");
        assert_eq!(decode(11, 0x2c), "0x2c (LDT index 0x5)");
    }

    #[test]
    fn names() {
        assert_eq!(name(14), ("#PF", "page fault"));
        assert_eq!(name(6).0, "#UD");
        assert!(has_error_code(13) && !has_error_code(3));
        // #DF, #TS, #NP, #SS, #GP, #PF, #AC (Intel SDM vol. 3, table 6-1).
        assert_eq!(ERROR_CODE_VECTORS, 1 << 8 | 0b11111 << 10 | 1 << 17);
        assert_eq!(name(99).0, "INT n");
        assert_eq!(name(21).0, "#CP");
        assert_eq!(name(25).0, "#??");
        assert_eq!(name(300).0, "#??");
    }
}
