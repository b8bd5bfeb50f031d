//! The Linux x86_64 system call ABI that faultline serves and its test programs call: numbers,
//! errno values, flags, and faultline's own `faultline_counters` call (docs/abi.md).
//!
//! Entry: `syscall` with the number in rax, arguments in rdi, rsi, rdx, r10, r8, r9; result in
//! rax, `-errno` (-4095..=-1) on failure; rcx and r11 are clobbered. The numbers are Linux's
//! (`arch/x86/entry/syscalls/syscall_64.tbl`), the flags those of its uapi headers.

pub const SYS_READ: u64 = 0;
pub const SYS_WRITE: u64 = 1;
pub const SYS_MMAP: u64 = 9;
pub const SYS_MPROTECT: u64 = 10;
pub const SYS_MUNMAP: u64 = 11;
pub const SYS_BRK: u64 = 12;
pub const SYS_RT_SIGPROCMASK: u64 = 14;
pub const SYS_IOCTL: u64 = 16;
pub const SYS_WRITEV: u64 = 20;
pub const SYS_SCHED_YIELD: u64 = 24;
pub const SYS_NANOSLEEP: u64 = 35;
pub const SYS_GETPID: u64 = 39;
pub const SYS_CLONE: u64 = 56;
pub const SYS_EXIT: u64 = 60;
/// Linux only: faultline answers ENOSYS (the bench programs call it on Linux).
pub const SYS_GETRUSAGE: u64 = 98;
pub const SYS_ARCH_PRCTL: u64 = 158;
pub const SYS_GETTID: u64 = 186;
pub const SYS_FUTEX: u64 = 202;
pub const SYS_SET_TID_ADDRESS: u64 = 218;
pub const SYS_CLOCK_GETTIME: u64 = 228;
pub const SYS_EXIT_GROUP: u64 = 231;

/// faultline's own call, outside Linux's numbers (`"fa"` then 1): `faultline_counters(u64 *out,
/// u64 count)` stores up to `count` of the [`counters`] at `out` and returns how many there are.
pub const SYS_FAULTLINE_COUNTERS: u64 = 0x6661_0001;

/// The counters `faultline_counters` gives, since boot, by index.
pub mod counters {
    /// Hypercalls of every kind, the irets included.
    pub const HYPERCALLS: usize = 0;
    /// `mmu_update` calls.
    pub const MMU_UPDATE_CALLS: usize = 1;
    /// `mmu_update` entries.
    pub const MMU_UPDATE_ENTRIES: usize = 2;
    /// `mmuext_op` calls.
    pub const MMUEXT_CALLS: usize = 3;
    /// `mmuext_op` operations.
    pub const MMUEXT_OPS: usize = 4;
    /// `update_va_mapping` calls.
    pub const UPDATE_VA_MAPPING_CALLS: usize = 5;
    /// Returns through `HYPERVISOR_iret` (faults, system calls and event upcalls alike).
    pub const IRETS: usize = 6;
    /// Page faults from user mode, every one the kernel handled.
    pub const USER_FAULTS: usize = 7;
    /// Page tables built for user address spaces (their roots included).
    pub const TABLES_BUILT: usize = 8;
    /// TLB shootdowns: flush operations sent to other vCPUs too (`MMUEXT_TLB_FLUSH_MULTI`,
    /// `MMUEXT_INVLPG_MULTI`).
    pub const TLB_SHOOTDOWNS: usize = 9;
    /// Event-channel IPIs the kernel sent to its vCPUs.
    pub const IPIS_SENT: usize = 10;
    /// How many there are.
    pub const COUNT: usize = 11;
}

/// The errno values faultline returns, as the raw numbers (Linux's `asm-generic/errno-base.h`,
/// `errno.h`).
pub mod errno {
    pub const EPERM: u64 = 1;
    pub const EINTR: u64 = 4;
    pub const EBADF: u64 = 9;
    pub const EAGAIN: u64 = 11;
    pub const ENOMEM: u64 = 12;
    pub const EFAULT: u64 = 14;
    pub const EEXIST: u64 = 17;
    pub const EINVAL: u64 = 22;
    pub const ENOTTY: u64 = 25;
    pub const ENOSYS: u64 = 38;
    pub const ETIMEDOUT: u64 = 110;
}

/// The errno values faultline returns, as a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Errno {
    EPERM = errno::EPERM as u16,
    EINTR = errno::EINTR as u16,
    EBADF = errno::EBADF as u16,
    EAGAIN = errno::EAGAIN as u16,
    ENOMEM = errno::ENOMEM as u16,
    EFAULT = errno::EFAULT as u16,
    EEXIST = errno::EEXIST as u16,
    EINVAL = errno::EINVAL as u16,
    ENOTTY = errno::ENOTTY as u16,
    ENOSYS = errno::ENOSYS as u16,
    ETIMEDOUT = errno::ETIMEDOUT as u16,
}

impl Errno {
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::EINTR => "EINTR",
            Errno::EBADF => "EBADF",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EFAULT => "EFAULT",
            Errno::EEXIST => "EEXIST",
            Errno::EINVAL => "EINVAL",
            Errno::ENOTTY => "ENOTTY",
            Errno::ENOSYS => "ENOSYS",
            Errno::ETIMEDOUT => "ETIMEDOUT",
        }
    }

    /// The positive number.
    pub const fn code(self) -> u64 {
        self as u64
    }
}

pub const PROT_NONE: u64 = 0;
pub const PROT_READ: u64 = 1;
pub const PROT_WRITE: u64 = 2;
pub const PROT_EXEC: u64 = 4;

pub const MAP_SHARED: u64 = 0x01;
pub const MAP_PRIVATE: u64 = 0x02;
pub const MAP_TYPE: u64 = 0x0f;
pub const MAP_FIXED: u64 = 0x10;
pub const MAP_ANONYMOUS: u64 = 0x20;
pub const MAP_DENYWRITE: u64 = 0x0800;
pub const MAP_EXECUTABLE: u64 = 0x1000;
pub const MAP_NORESERVE: u64 = 0x4000;
pub const MAP_POPULATE: u64 = 0x8000;
pub const MAP_STACK: u64 = 0x2_0000;
pub const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

pub const ARCH_SET_GS: u64 = 0x1001;
pub const ARCH_SET_FS: u64 = 0x1002;
pub const ARCH_GET_FS: u64 = 0x1003;
pub const ARCH_GET_GS: u64 = 0x1004;

/// The clocks of `clock_gettime` (`linux/time.h`).
pub const CLOCK_REALTIME: u64 = 0;
pub const CLOCK_MONOTONIC: u64 = 1;
pub const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;
pub const CLOCK_THREAD_CPUTIME_ID: u64 = 3;
pub const CLOCK_MONOTONIC_RAW: u64 = 4;
pub const CLOCK_REALTIME_COARSE: u64 = 5;
pub const CLOCK_MONOTONIC_COARSE: u64 = 6;
pub const CLOCK_BOOTTIME: u64 = 7;

/// `clone` flags (`linux/sched.h`): the low byte is the signal sent to the parent at exit.
pub const CSIGNAL: u64 = 0xff;
pub const CLONE_VM: u64 = 0x100;
pub const CLONE_FS: u64 = 0x200;
pub const CLONE_FILES: u64 = 0x400;
pub const CLONE_SIGHAND: u64 = 0x800;
pub const CLONE_VFORK: u64 = 0x4000;
pub const CLONE_THREAD: u64 = 0x1_0000;
pub const CLONE_NEWNS: u64 = 0x2_0000;
pub const CLONE_SYSVSEM: u64 = 0x4_0000;
pub const CLONE_SETTLS: u64 = 0x8_0000;
pub const CLONE_PARENT_SETTID: u64 = 0x10_0000;
pub const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
/// Ignored by Linux since 2.6.2; musl's pthread_create still sends it.
pub const CLONE_DETACHED: u64 = 0x40_0000;
pub const CLONE_CHILD_SETTID: u64 = 0x100_0000;

/// `futex` operations (`linux/futex.h`): the command in the low bits, then the flags.
pub const FUTEX_WAIT: u64 = 0;
pub const FUTEX_WAKE: u64 = 1;
pub const FUTEX_REQUEUE: u64 = 3;
pub const FUTEX_CMP_REQUEUE: u64 = 4;
pub const FUTEX_PRIVATE_FLAG: u64 = 128;
pub const FUTEX_CLOCK_REALTIME: u64 = 256;

/// `rt_sigprocmask`'s `how` (`asm-generic/signal-defs.h`) and the size of a signal set.
pub const SIG_BLOCK: u64 = 0;
pub const SIG_UNBLOCK: u64 = 1;
pub const SIG_SETMASK: u64 = 2;
pub const SIGSET_BYTES: u64 = 8;

/// `ioctl` request for the terminal size (`asm-generic/ioctls.h`); faultline answers ENOTTY.
pub const TIOCGWINSZ: u64 = 0x5413;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_type_and_numbers_agree() {
        assert_eq!(Errno::EFAULT.code(), errno::EFAULT);
        assert_eq!(Errno::ENOSYS.code(), 38);
        assert_eq!(Errno::EINVAL.name(), "EINVAL");
    }
}
