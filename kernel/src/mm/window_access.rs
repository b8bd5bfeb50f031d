//! The kernel's frame access: table and frame contents through linear alias windows (raw memory).
//!
//! The one place in `mm` that dereferences addresses. [`WindowAccess`] implements
//! [`FrameAccess`] by pointing into the newest [`AliasWindow`] that covers a frame: Xen's boot
//! mapping at first, the direct map once it is built. Everything above it stays safe and is
//! tested against the model instead. [`machine_to_phys_table`] wraps Xen's m2p as a slice.

use core::ptr;

use super::addr::{Pfn, PAGE_SIZE};
use super::backend::FrameAccess;
use super::kernel_space::{AliasWindow, MACH2PHYS_VIRT_START};
use super::page_table::{TooManyWindows, MAX_ALIAS_WINDOWS};
use super::pte::ENTRIES_PER_TABLE;

/// [`FrameAccess`] through linear alias windows of kernel virtual memory.
#[derive(Debug)]
pub struct WindowAccess {
    windows: [Option<AliasWindow>; MAX_ALIAS_WINDOWS],
}

impl WindowAccess {
    /// Frames are reached through `window` (e.g. Xen's boot mapping).
    ///
    /// # Safety
    /// For as long as the value is used, `window` must map each of its frames at its place,
    /// readable, and writable wherever that frame is not a page table (the page-table code only
    /// writes frames that are not, and keeps table frames read-only in every window it knows).
    pub const unsafe fn new(window: AliasWindow) -> Self {
        let mut windows = [None; MAX_ALIAS_WINDOWS];
        windows[0] = Some(window);
        WindowAccess { windows }
    }

    /// Adds a window, preferred over older ones from now on (the direct map, once mapped).
    ///
    /// # Safety
    /// As for [`WindowAccess::new`].
    pub(in crate::mm) unsafe fn add_window(
        &mut self,
        window: AliasWindow,
    ) -> Result<(), TooManyWindows> {
        let slot = self.windows.iter_mut().find(|w| w.is_none()).ok_or(TooManyWindows)?;
        *slot = Some(window);
        Ok(())
    }

    /// Replaces the newest window with `window` (e.g. the direct map, grown part by part).
    ///
    /// # Safety
    /// As for [`WindowAccess::new`].
    pub(in crate::mm) unsafe fn replace_newest(&mut self, window: AliasWindow) {
        if let Some(slot) = self.windows.iter_mut().rev().find(|w| w.is_some()) {
            *slot = Some(window);
        }
    }

    /// Where entry `index` of frame `pfn` is. Reaching a frame no window covers, or an index
    /// past the page, is a kernel bug: the page-table code only asks for tables and new frames.
    fn entry_ptr(&self, pfn: Pfn, index: usize) -> *mut u64 {
        assert!(index < ENTRIES_PER_TABLE, "entry {index} is past the page");
        let page = self
            .windows
            .iter()
            .rev()
            .flatten()
            .find_map(|w| w.virt_of(pfn))
            .unwrap_or_else(|| panic!("no alias window covers {pfn:?}"));
        (page.as_u64() + index as u64 * 8) as *mut u64
    }
}

impl FrameAccess for WindowAccess {
    fn read_entry(&self, pfn: Pfn, index: usize) -> u64 {
        let entry = self.entry_ptr(pfn, index);
        // SAFETY: `new`/`add_window` promise the window maps `pfn` readable; `entry` is an
        // aligned u64 inside that page. Volatile: Xen updates tables behind the compiler's back.
        unsafe { ptr::read_volatile(entry) }
    }

    fn write_entry(&mut self, pfn: Pfn, index: usize, value: u64) {
        let entry = self.entry_ptr(pfn, index);
        // SAFETY: the trait only writes frames that are ordinary memory, which `new`/`add_window`
        // promise are mapped writable; `entry` is an aligned u64 inside that page.
        unsafe { ptr::write_volatile(entry, value) }
    }

    fn zero_frame(&mut self, pfn: Pfn) {
        let start = self.entry_ptr(pfn, 0).cast::<u8>();
        // SAFETY: as in `write_entry`, for the whole page that starts at `start`.
        unsafe { ptr::write_bytes(start, 0, PAGE_SIZE as usize) }
    }

    fn read_bytes(&self, pfn: Pfn, offset: usize, out: &mut [u8]) {
        assert!(offset + out.len() <= PAGE_SIZE as usize, "read past the page");
        let start = self.entry_ptr(pfn, 0).cast::<u8>();
        // SAFETY: `new`/`add_window` promise the window maps `pfn` readable; the range stays
        // inside that page (asserted), and `out` is ours to write, so they cannot overlap.
        unsafe { ptr::copy_nonoverlapping(start.add(offset), out.as_mut_ptr(), out.len()) }
    }

    fn write_bytes(&mut self, pfn: Pfn, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= PAGE_SIZE as usize, "write past the page");
        let start = self.entry_ptr(pfn, 0).cast::<u8>();
        // SAFETY: the trait only writes frames that are ordinary memory, which `new`/`add_window`
        // promise are mapped writable; the range stays inside that page (asserted); `bytes` is
        // a Rust slice, which a frame the kernel writes as memory cannot alias.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), start.add(offset), bytes.len()) }
    }
}

/// Xen's read-only machine-to-phys table, `entries` long, for [`P2m::new`](super::P2m::new).
///
/// # Safety
/// Must run in a 64-bit PV guest, where Xen maps the m2p at `MACH2PHYS_VIRT_START`, and
/// `entries` must not exceed the part Xen maps: the host's highest machine frame + 1 (the
/// `max_mfn` of XENMEM_machphys_mapping, or XENMEM_maximum_ram_page + 1).
pub unsafe fn machine_to_phys_table(entries: usize) -> &'static [u64] {
    // SAFETY: the caller promises Xen maps `entries` u64s there, read-only for the guest's whole
    // life; we never write them, and Xen's own updates only change frames not ours.
    unsafe { core::slice::from_raw_parts(MACH2PHYS_VIRT_START as *const u64, entries) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::addr::VirtAddr;

    /// Host memory standing in for a window of two frames.
    #[repr(C, align(4096))]
    struct TwoPages([u64; 1024]);

    #[test]
    fn reads_and_writes_land_in_the_right_frame_of_the_newest_window() {
        let mut old = Box::new(TwoPages([0; 1024]));
        let mut new = Box::new(TwoPages([0; 1024]));
        let window = |mem: &mut TwoPages| AliasWindow {
            virt_base: VirtAddr::from_ptr(mem.0.as_mut_ptr()),
            first_pfn: Pfn(10),
            count_frames: 2,
        };
        // SAFETY: both windows are live boxes of two writable pages, used only in this test.
        let mut access = unsafe { WindowAccess::new(window(&mut old)) };
        // SAFETY: as above.
        unsafe { access.add_window(window(&mut new)).unwrap() };
        access.write_entry(Pfn(11), 3, 0xdead);
        assert_eq!(new.0[512 + 3], 0xdead);
        assert_eq!(old.0[512 + 3], 0);
        assert_eq!(access.read_entry(Pfn(11), 3), 0xdead);
        new.0[7] = 9;
        access.zero_frame(Pfn(10));
        assert_eq!(new.0[7], 0);
        assert_eq!(new.0[512 + 3], 0xdead, "only its own frame");
    }
}
