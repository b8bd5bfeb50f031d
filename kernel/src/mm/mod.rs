//! Memory management the PV way: addresses, p2m/m2p, frames, page tables through Xen.
//!
//! Everything here is host-testable logic: the hypervisor and raw memory sit behind the traits in
//! [`backend`], implemented by the kernel with hypercalls (`hypercall_mmu`) and
//! [`window_access`] (with `heap` and `kernel`, the modules here allowed unsafe code: lib.rs says
//! why), and in tests by `model`, a model of Xen that rejects what Xen rejects.
//!
//! Boot, in the kernel (layout in [`layout`]):
//! 1. `p2m = P2m::new(mfn_list[..nr_pages], machine_to_phys_table(max_mfn + 1))`.
//! 2. `frames = FrameAllocator::new(static bitmap, nr_pages, reserved)`, reserved = pfns 0 up to
//!    the end of Xen's bootstrap region (image, start_info, p2m list, boot tables, boot stack)
//!    plus console/xenstore pages and boot modules.
//! 3. `boot_window = AliasWindow { virt_base: KERNEL_VIRT_BASE, first_pfn: 0, count_frames: .. }`
//!    (or found with `PageTables::discover_window`), `mem = unsafe { WindowAccess::new(boot_window) }`.
//! 4. `pt = PageTables::new(hypercall_mmu::HypercallMmu, mem, p2m, pfn_of(pt_base), static bitmap)`,
//!    `pt.add_alias_window(boot_window)`, then `pt.map_window(AliasWindow::direct_map(nr_pages),
//!    &mut frames)` and `unsafe { pt.memory_mut().add_window(direct map) }`.
//! 5. Page faults: `fault::classify(cr2, error, regions)`, and for `MapZeroed`,
//!    `pt.map_zeroed(pt.kernel_root(), page, flags, &mut frames)`: one `mmu_update`.

pub mod addr;
pub mod address_space;
pub mod areas;
pub mod backend;
pub mod bitmap;
pub mod boot_layout;
pub mod fault;
pub mod frame;
pub mod layout;
pub mod p2m;
pub mod page_table;
pub mod pte;
pub mod queue;
pub mod stats;
pub mod user_layout;
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

pub use addr::{MachineAddr, Mfn, Pfn, PfnRange, VirtAddr, PAGE_SIZE_BYTES};
pub use backend::{BatchFailure, FrameAccess, MmuExtOp, UvmFlush, XenMmu};
pub use frame::{FrameAllocator, FrameError, FrameSource};
pub use layout::{AliasWindow, DIRECT_MAP_BASE};
pub use p2m::{P2m, P2mError};
pub use page_table::{Mapping, MmError, PageTables, Root, TlbFlush};
pub use pte::{Level, Pte, PteFlags};
pub use stats::MmStats;
pub use window_access::{machine_to_phys_table, WindowAccess};
