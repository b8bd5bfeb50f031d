//! Memory management the PV way: addresses, p2m/m2p, frames, page tables through Xen.
//!
//! Everything here is host-testable logic: the hypervisor and raw memory sit behind the traits in
//! [`backend`], implemented by the kernel with hypercalls (`xen::mmu`) and [`window_access`] (the
//! only module here with `unsafe`), and in tests by `model`, a model of Xen that rejects what Xen
//! rejects.

pub mod addr;
pub mod backend;
pub mod bitmap;
pub mod fault;
pub mod frame;
pub mod layout;
pub mod p2m;
pub mod page_table;
pub mod pte;
pub mod queue;
pub mod stats;
pub mod window_access;

#[cfg(test)]
pub mod model;
#[cfg(test)]
mod tests;

pub use addr::{MachineAddr, Mfn, Pfn, PfnRange, VirtAddr, PAGE_SIZE_BYTES};
pub use backend::{BatchFailure, FrameAccess, MmuExtOp, MmuUpdate, UvmFlush, XenErrno, XenMmu};
pub use frame::{FrameAllocator, FrameError, FrameSource};
pub use layout::{AliasWindow, DIRECT_MAP_BASE};
pub use p2m::{P2m, P2mError};
pub use page_table::{Mapping, MmError, PageTables, Root, TlbFlush};
pub use pte::{Level, Pte, PteFlags};
pub use stats::MmStats;
pub use window_access::{machine_to_phys_table, WindowAccess};
