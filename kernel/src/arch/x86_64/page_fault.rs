//! The #PF error code, decoded once: what access faulted, whether the page was present, in which mode.
//!
//! Xen delivers a PV guest's page fault through the trap table with the hardware error code in the
//! frame and the faulting address in `vcpu_info.arch.cr2`. The kernel path (mm's fault handler),
//! the user path (a process's address space) and the expectation grammar all read this one type.
//! Under PV the guest kernel runs in ring 3, but Xen rewrites the user bit to say whether the
//! *guest* was in user mode (xen/arch/x86/traps.c, `pv_inject_page_fault`), so it means what it
//! means on bare metal.

/// The kind of access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

impl Access {
    /// The word reports and expectations use.
    pub const fn word(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Execute => "exec",
        }
    }
}

/// Error-code bits (Intel SDM vol. 3, 4.7).
const PRESENT: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const RESERVED_BIT: u64 = 1 << 3;
const INSTRUCTION_FETCH: u64 = 1 << 4;

/// One page fault as the CPU reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// The faulting linear address (cr2).
    pub address: u64,
    pub access: Access,
    /// The page was present: the access broke its permissions (else it was not mapped).
    pub present: bool,
    /// The guest was in user mode.
    pub user_mode: bool,
    /// A reserved bit was set in a paging-structure entry.
    pub reserved_bit: bool,
}

impl PageFault {
    /// Decodes `error_code` for a fault at `address`.
    pub const fn decode(error_code: u64, address: u64) -> PageFault {
        let access = if error_code & INSTRUCTION_FETCH != 0 {
            Access::Execute
        } else if error_code & WRITE != 0 {
            Access::Write
        } else {
            Access::Read
        };
        PageFault {
            address,
            access,
            present: error_code & PRESENT != 0,
            user_mode: error_code & USER != 0,
            reserved_bit: error_code & RESERVED_BIT != 0,
        }
    }

    /// A fault as the kernel's own copy to or from user memory would take it (user mode).
    pub const fn user(address: u64, access: Access, present: bool) -> PageFault {
        PageFault { address, access, present, user_mode: true, reserved_bit: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_bit() {
        let f = |code| PageFault::decode(code, 0x1000);
        assert_eq!((f(0b00100).access, f(0b00100).present), (Access::Read, false));
        assert_eq!((f(0b00111).access, f(0b00111).present), (Access::Write, true));
        assert_eq!((f(0b10101).access, f(0b10101).present), (Access::Execute, true));
        assert!(f(0b00100).user_mode && !f(0).user_mode);
        assert!(f(0b01000).reserved_bit && !f(0b00111).reserved_bit);
        assert_eq!(f(0).address, 0x1000);
    }
}
