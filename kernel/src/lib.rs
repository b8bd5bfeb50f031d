//! faultline: a Xen PV guest kernel that handles page faults the PV way and runs fault-injection tests.
#![cfg_attr(target_os = "none", no_std)]
// Unsafe code is denied in the whole crate and allowed only in the modules below, each for one
// reason; every unsafe block carries a `// SAFETY:` comment. The `#[allow(unsafe_code)]` sits on
// each module's declaration (here or in its parent), and tests/layers.rs checks that the
// allowed modules are exactly these:
// - arch::x86_64::crash: walks a backtrace through the frame pointers of a kernel stack
// - arch::x86_64::fpu: resets the FPU and SSE state with fninit and ldmxcsr
// - arch::x86_64::smp: a started vCPU's stack pages and its stack pointer
// - arch::x86_64::traps: ends a run from the trap path (exit_to_kernel)
// - arch::x86_64::user: the trip to user mode and back (boot/user.S), the trap stacks' pages
// - mm::heap: the global allocator (GlobalAlloc is an unsafe trait)
// - mm::kernel: Xen's boot structures (the p2m list, the m2p table) and the memory windows
// - mm::window_access: reads and writes frames through the initial mapping and the direct map
// - start: the start_info pointer Xen passes, the boot stack's canary, the boot module's bytes
// - testing::mm_tests: touches demand-zero pages and the boot stack's guard page on purpose
// - testing::selftest: raises exceptions on purpose (inline assembly, naked functions)
// - xen::console: frees the console lock on the crash path
// - xen::console_ring: the console ring over the page it shares with the console daemon
// - xen::hypercall: the hypercalls themselves (calls into the hypercall page)
// - xen::ring: volatile access to a byte ring shared with another domain
// - xen::shared_info: reads and writes the shared_info page Xen updates
// - xen::slots: the pages over which Xen's shared frames are mapped
// - xen::start_info: reads a union of start_info and its C strings
// - xen::time: reads the time records Xen updates, and rdtsc
// - xen::vcpu: reads the running vCPU's number through %gs
// - xen::vcpu_lock: breaks a lock whoever holds it (the crash path, for a hold of its own vCPU's)
// - xen::xenstore: the xenstore rings over the page it shares with xenstored
#![deny(unsafe_code)]

extern crate alloc;

pub mod arch;
pub mod cmdline;
pub mod fmt_buf;
pub mod mm;
pub mod proc;
pub mod testing;
pub mod trace;
pub mod xen;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod start;
