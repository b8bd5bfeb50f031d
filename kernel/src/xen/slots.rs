//! Fixed kernel pages over which Xen-shared machine frames are mapped (shared_info, rings).
//!
//! Each slot is a page of our image; mapping a foreign or shared machine frame there with
//! update_va_mapping gives up the slot's own frame (it stays allocated to us, unmapped). The
//! entry written is mm's (page-table entries are mm::pte's alone): start.rs registers how to
//! make it, before the first slot is mapped. mm's boot code knows the slot pages by
//! [`contains`]: they are the one part of Xen's initial mapping that does not map its own pfn.

use core::cell::UnsafeCell;

use super::abi::PAGE_SIZE;
use super::{abi, hypercall, XenError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    SharedInfo = 0,
    Console = 1,
    Store = 2,
}

const SLOT_COUNT: usize = 3;

#[repr(C, align(4096))]
struct Pages(UnsafeCell<[[u8; PAGE_SIZE as usize]; SLOT_COUNT]>);
// SAFETY: the pages are never accessed as Rust data; only their addresses are used.
unsafe impl Sync for Pages {}

#[link_section = ".bss.page_aligned"]
static PAGES: Pages = Pages(UnsafeCell::new([[0; PAGE_SIZE as usize]; SLOT_COUNT]));

/// Makes the page-table entry that maps a machine address into a slot (writable kernel data).
static ENTRY_FOR: spin::Once<fn(machine_addr: u64) -> u64> = spin::Once::new();

/// Registers how a slot's entry is made (once, at boot, before any slot is mapped).
pub fn set_entry_format(entry_for: fn(machine_addr: u64) -> u64) {
    ENTRY_FOR.call_once(|| entry_for);
}

/// The slot's virtual address.
pub fn address(slot: Slot) -> u64 {
    PAGES.0.get() as u64 + PAGE_SIZE * slot as u64
}

/// Whether `va` lies in one of the slots (their original frames are not mapped there).
pub fn contains(va: u64) -> bool {
    let start = PAGES.0.get() as u64;
    (start..start + PAGE_SIZE * SLOT_COUNT as u64).contains(&va)
}

/// Maps the machine frame at `machine_addr` over `slot`; returns the slot's address.
pub fn map(slot: Slot, machine_addr: u64) -> Result<*mut u8, XenError> {
    let va = address(slot);
    let entry_for =
        ENTRY_FOR.get().expect("start.rs registers the slots' entry format before mapping one");
    hypercall::update_va_mapping(va, entry_for(machine_addr), abi::UVMF_INVLPG)?;
    Ok(va as *mut u8)
}
