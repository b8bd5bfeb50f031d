//! The auxiliary vector's keys (`AT_*`): Linux's (`linux/auxvec.h`, `asm/auxvec.h`) that faultline
//! gives a program, and faultline's own.

pub const AT_NULL: u64 = 0;
pub const AT_PHDR: u64 = 3;
pub const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
pub const AT_PAGESZ: u64 = 6;
pub const AT_BASE: u64 = 7;
pub const AT_FLAGS: u64 = 8;
pub const AT_ENTRY: u64 = 9;
pub const AT_UID: u64 = 11;
pub const AT_EUID: u64 = 12;
pub const AT_GID: u64 = 13;
pub const AT_EGID: u64 = 14;
pub const AT_PLATFORM: u64 = 15;
pub const AT_HWCAP: u64 = 16;
pub const AT_CLKTCK: u64 = 17;
pub const AT_SECURE: u64 = 23;
pub const AT_RANDOM: u64 = 25;
pub const AT_EXECFN: u64 = 31;

/// faultline's own entries, far above Linux's (musl ignores types it does not know): kernel
/// addresses that fault tests aim at. Each is present only if the kernel has such an address.
/// Any address in the kernel's half (the kernel image).
pub const AT_FAULTLINE_KERNEL_ADDRESS: u64 = 0x6661_0001;
/// A page-table page, as the kernel maps it (read-only under PV).
pub const AT_FAULTLINE_PAGE_TABLE: u64 = 0x6661_0002;
/// The p2m list (`start_info.mfn_list`).
pub const AT_FAULTLINE_P2M: u64 = 0x6661_0003;
