//! Memory management the PV way: addresses, p2m/m2p, frames, page tables through Xen.
//!
//! Everything here is host-testable logic: the hypervisor and raw memory sit behind the traits in
//! [`backend`], implemented by the kernel with hypercalls (`hypercall_mmu`) and
//! [`window_access`] (with `heap` and `kernel`, the modules here allowed unsafe code: lib.rs says
//! why), and in tests by `model`, a model of Xen that rejects what Xen rejects.
//!
//! Boot, in the kernel (virtual layout in [`kernel_space`]):
//! 1. `p2m = P2m::new(mfn_list[..nr_pages], machine_to_phys_table(max_mfn + 1))`.
//! 2. `frames = FrameAllocator::new(static bitmap, nr_pages, reserved)`, reserved = pfns 0 up to
//!    the end of Xen's bootstrap region (image, start_info, p2m list, boot tables, boot stack)
//!    plus console/xenstore pages and boot modules.
//! 3. `boot_window = AliasWindow { virt_base: KERNEL_VIRT_BASE, first_pfn: 0, count_frames: .. }`
//!    (or found with `PageTables::discover_window`), `mem = unsafe { WindowAccess::new(boot_window) }`.
//! 4. `pt = PageTables::new(hypercall_mmu::HypercallMmu, mem, p2m, pfn_of(pt_base), static bitmap)`,
//!    `pt.add_alias_window(boot_window)`, then `pt.add_alias_window(direct_map)`, the direct map
//!    built in parts with `pt.map_window_part(direct_map, first, count, &mut frames)`, and
//!    `unsafe { pt.memory_mut().add_window(direct map) }`.
//! 5. Page faults: first `kernel_fault::SpuriousCheck::resolve` (a stale translation of a page
//!    the tables now allow: one `MMUEXT_INVLPG_LOCAL`, no lock taken), then
//!    `kernel_fault::classify(cr2, error, regions)`, and for `MapZeroed`,
//!    `pt.map_zeroed(pt.kernel_root(), page, flags, &mut frames)`: one `mmu_update`.

//!
//! SMP (docs/architecture.md, "one address space on several vCPUs"): every operation on an
//! address space runs under one lock (proc takes `CURRENT`, then `MM`), so a fault that loses a
//! race finds the page or the table the winner made. The page tables know which vCPUs hold
//! each user root ([`PageTables::holders`], an address space's `loaded_on` mask) and send every
//! flush an operation owes to all of them: LOCAL ops when the caller is alone, else
//! `MMUEXT_*_MULTI` with the mask (a shootdown), frames released only after it.

// Visibility is cut to what each caller needs (`pub(in crate::mm)`, `pub(crate)`), so unused
// items are reported. The host build of the library (unit tests, host tools) compiles mm without
// its kernel half (`kernel`, `heap`, and their users in proc and testing): what only that half
// uses would look dead there. The kernel build (`--target x86_64-unknown-none`) checks it.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

pub mod addr;
pub mod address_space;
pub mod areas;
pub mod backend;
pub mod bitmap;
pub mod boot_reserved;
pub mod frame;
pub mod kernel_fault;
pub mod kernel_space;
pub mod p2m;
pub mod page_table;
pub mod pte;
pub mod queue;
pub mod stats;
pub mod user_space;
#[allow(unsafe_code)]
pub mod window_access;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod heap;
#[cfg(target_os = "none")]
pub mod hypercall_mmu;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod kernel;

#[cfg(test)]
pub mod model;
#[cfg(test)]
mod tests;

pub use addr::{MachineAddr, Mfn, Pfn, PfnRange, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
pub use backend::{BatchFailure, FrameAccess, MmuExtOp, UvmFlush, XenMmu};
pub use frame::{FrameAllocator, FrameError, FrameSource};
pub use kernel_space::{AliasWindow, DIRECT_MAP_BASE};
pub use p2m::{P2m, P2mError};
pub use page_table::{
    MapToError, Mapping, MmError, PageTables, Root, TableError, TlbFlush, TooManyWindows,
    UpdateError,
};
pub use pte::{Level, Pte, PteFlags};
pub use stats::MmStats;
pub use window_access::{machine_to_phys_table, WindowAccess};
