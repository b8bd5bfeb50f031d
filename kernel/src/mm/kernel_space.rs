//! The kernel's virtual address layout as memory management sees it: Xen's hole and the direct map.
//!
//! ```text
//! 0x0000_0000_0000_0000 .. 0x0000_7fff_ffff_ffff  user space (a process's own L4)
//! 0xffff_8000_0000_0000 .. 0xffff_87ff_ffff_ffff  Xen's reserved hole (L4 slots 256..=271),
//!                                                  incl. the read-only m2p at its start
//! 0xffff_8880_0000_0000 .. + nr_pages * 4 KiB      direct map: pfn N at DIRECT_MAP_BASE + N * 4 KiB,
//!                                                  4 KiB pages only, read-only for table frames
//! 0xffff_ffff_8000_0000 ..                         the kernel image (Xen's boot mapping, VIRT_BASE)
//! ```

use super::addr::{Pfn, VirtAddr, PAGE_SHIFT};

/// Start of Xen's read-only machine-to-phys table in every 64-bit PV guest.
pub use crate::xen::abi::MACH2PHYS_VIRT_START;

/// First L4 slot reserved to Xen in a 64-bit PV guest's L4 (0xffff_8000_0000_0000).
pub const XEN_FIRST_L4_SLOT: usize = 256;
/// Last L4 slot reserved to Xen (ends at 0xffff_87ff_ffff_ffff).
pub const XEN_LAST_L4_SLOT: usize = 271;

/// Proposed base of the direct map of all pseudo-physical memory (L4 slot 273, one slot of gap
/// after Xen's hole, as Linux does); room for 64 TiB.
pub const DIRECT_MAP_BASE: u64 = 0xffff_8880_0000_0000;

/// Where Xen's boot mapping of the image starts (the ELF note VIRT_BASE): pfn N at VIRT_BASE + N pages.
pub const KERNEL_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;

/// Whether a guest may own entry `slot` of an L4 (Xen rejects updates to its own slots).
pub const fn is_guest_l4_slot(slot: usize) -> bool {
    slot < XEN_FIRST_L4_SLOT || slot > XEN_LAST_L4_SLOT
}

/// Where the direct map puts `pfn`: pfn N at [`DIRECT_MAP_BASE`] + N pages (whether or not the
/// direct map reaches that far yet).
pub const fn direct_map_address(pfn: Pfn) -> VirtAddr {
    VirtAddr::new_truncate(DIRECT_MAP_BASE + (pfn.0 << PAGE_SHIFT))
}

/// A linear writable alias of a run of pseudo-physical frames: frame `first_pfn + i` is mapped at
/// `virt_base + i` pages. Every such alias of a frame must go read-only before Xen will accept the
/// frame as a page table, so the page-table code keeps the list of them (the direct map, and
/// during boot Xen's initial mapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AliasWindow {
    pub virt_base: VirtAddr,
    pub first_pfn: Pfn,
    pub count_frames: u64,
}

impl AliasWindow {
    /// The direct map of `nr_pages` frames at [`DIRECT_MAP_BASE`].
    pub const fn direct_map(nr_pages: u64) -> Self {
        AliasWindow {
            virt_base: VirtAddr::new_truncate(DIRECT_MAP_BASE),
            first_pfn: Pfn(0),
            count_frames: nr_pages,
        }
    }

    /// The virtual address of `pfn` in this window, if the window covers it.
    pub fn virt_of(&self, pfn: Pfn) -> Option<VirtAddr> {
        let offset = pfn.0.checked_sub(self.first_pfn.0)?;
        (offset < self.count_frames).then(|| self.virt_base + (offset << PAGE_SHIFT))
    }

    /// The frame this window maps at `va`, if `va` lies inside the window.
    pub fn pfn_at(&self, va: VirtAddr) -> Option<Pfn> {
        let offset = va.as_u64().checked_sub(self.virt_base.as_u64())? >> PAGE_SHIFT;
        (offset < self.count_frames).then_some(Pfn(self.first_pfn.0 + offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_map_sits_outside_xens_hole() {
        let slot = VirtAddr::new(DIRECT_MAP_BASE).p4_index();
        assert!(is_guest_l4_slot(usize::from(slot)));
        assert!(!is_guest_l4_slot(usize::from(VirtAddr::new(MACH2PHYS_VIRT_START).p4_index())));
        assert!(!is_guest_l4_slot(usize::from(VirtAddr::new(0xffff_87ff_ffff_ffff).p4_index())));
    }

    #[test]
    fn windows_translate_both_ways() {
        let w = AliasWindow {
            virt_base: VirtAddr::new(0x4000_0000),
            first_pfn: Pfn(16),
            count_frames: 4,
        };
        assert_eq!(w.virt_of(Pfn(17)), Some(VirtAddr::new(0x4000_1000)));
        assert_eq!(w.virt_of(Pfn(20)), None);
        assert_eq!(w.virt_of(Pfn(15)), None);
        assert_eq!(w.pfn_at(VirtAddr::new(0x4000_3fff)), Some(Pfn(19)));
        assert_eq!(w.pfn_at(VirtAddr::new(0x4000_4000)), None);
    }
}
