//! Process entry: `_start` hands the initial stack (argc, argv, envp, auxv) to the program's main.

/// What the kernel put on the initial stack.
pub struct Start {
    pub argc: usize,
    argv: *const *const u8,
    auxv: *const [u64; 2],
    pub initial_rsp: u64,
}

impl Start {
    /// The value of auxv entry `key`, if the kernel gave it.
    pub fn aux(&self, key: u64) -> Option<u64> {
        let mut at = self.auxv;
        loop {
            // SAFETY: the kernel ends auxv with AT_NULL; `at` walks the vector up to it.
            let [k, v] = unsafe { *at };
            if k == AT_NULL {
                return None;
            }
            if k == key {
                return Some(v);
            }
            // SAFETY: not past AT_NULL yet, so the next pair is part of the vector.
            at = unsafe { at.add(1) };
        }
    }

    /// argv[i] as bytes, without its NUL.
    pub fn arg(&self, i: usize) -> Option<&'static [u8]> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: argv holds argc pointers to NUL-terminated strings on the initial stack, which
        // lives as long as the program.
        unsafe {
            let s = *self.argv.add(i);
            let mut len = 0;
            while *s.add(len) != 0 {
                len += 1;
            }
            Some(core::slice::from_raw_parts(s, len))
        }
    }
}

/// The auxv keys (faultline's own among them): the kernel's own definitions.
pub use faultline_abi::auxv::*;

/// Declares the program's main: `fn main(start: &rt::start::Start) -> i32`, its exit status.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "Rust" fn faultline_rt_main(start: &$crate::start::Start) -> i32 {
            $main(start)
        }
    };
}

unsafe extern "Rust" {
    fn faultline_rt_main(start: &Start) -> i32;
}

/// The ELF entry point. At entry rsp points at argc and is 16-byte aligned; rdx may hold an
/// exit handler (ignored, as static programs do).
#[unsafe(naked)]
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
pub extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym start,
    )
}

extern "C" fn start(sp: *const u64) -> ! {
    // SAFETY: `sp` is the initial stack the kernel built: argc, argv[argc], NULL, envp..., NULL,
    // auxv pairs up to AT_NULL.
    let start = unsafe {
        let argc = *sp as usize;
        let argv = sp.add(1) as *const *const u8;
        let mut envp = argv.add(argc + 1);
        while !(*envp).is_null() {
            envp = envp.add(1);
        }
        Start { argc, argv, auxv: envp.add(1) as *const [u64; 2], initial_rsp: sp as u64 }
    };
    // SAFETY: the program defines `faultline_rt_main` with `rt::entry!`.
    let status = unsafe { faultline_rt_main(&start) };
    crate::sys::exit(status)
}
