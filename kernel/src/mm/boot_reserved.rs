//! What Xen's domain builder left in our memory at boot, as frame ranges the allocator must skip.
//!
//! Both builders (Xen's for dom0, libxc's for a DomU) place everything they create inside the
//! initial mapping at VIRT_BASE, one page per pfn: the image, any boot module, the p2m list,
//! start_info, the console and store pages (DomU), the boot page tables and the boot stack, in
//! that region's first pages. The boot stack is the page right after the last page-table frame
//! (Xen public/xen.h, "start_info" comment). Large domains may get the p2m list outside that
//! region (`first_p2m_pfn`/`nr_p2m_frames`). Anything past the bootstrap region is free padding.

use super::addr::{Pfn, PfnRange, PAGE_SIZE};

/// The start_info fields that say where things are (virtual addresses inside the initial mapping).
#[derive(Clone, Copy, Debug, Default)]
pub struct BootLayout {
    pub virt_base: u64,
    pub nr_pages: u64,
    pub start_info_va: u64,
    pub pt_base: u64,
    pub nr_pt_frames: u64,
    pub mfn_list: u64,
    pub mod_start: u64,
    pub mod_len: u64,
    /// True when `mod_start` is a pfn (SIF_MOD_START_PFN) rather than a virtual address.
    pub mod_start_is_pfn: bool,
    pub first_p2m_pfn: u64,
    pub nr_p2m_frames: u64,
    /// The console and store pages of a DomU, already translated to pfns.
    pub console_pfn: Option<Pfn>,
    pub store_pfn: Option<Pfn>,
}

/// At most this many reserved ranges.
pub const MAX_RESERVED: usize = 5;

impl BootLayout {
    /// The pfn one past the bootstrap region: past the boot stack that follows the page tables,
    /// and past start_info, the p2m list and a module if the builder put them higher.
    pub(in crate::mm) fn bootstrap_end(&self) -> Pfn {
        let pt_end = self.pt_base + self.nr_pt_frames * PAGE_SIZE + PAGE_SIZE;
        let mut end = pt_end.max(self.start_info_va + PAGE_SIZE);
        if self.mfn_list >= self.virt_base {
            end = end.max(self.mfn_list + self.nr_pages * 8);
        }
        if !self.mod_start_is_pfn && self.mod_len != 0 && self.mod_start >= self.virt_base {
            end = end.max(self.mod_start + self.mod_len);
        }
        let bytes = end.saturating_sub(self.virt_base);
        Pfn(bytes.div_ceil(PAGE_SIZE).min(self.nr_pages))
    }

    /// The frames the allocator must never hand out.
    pub(in crate::mm) fn reserved(&self) -> ([PfnRange; MAX_RESERVED], usize) {
        let mut out = [PfnRange { start: Pfn(0), count_frames: 0 }; MAX_RESERVED];
        let mut n = 0;
        let mut push = |range: PfnRange| {
            if range.count_frames != 0 {
                out[n] = range;
                n += 1;
            }
        };
        push(PfnRange { start: Pfn(0), count_frames: self.bootstrap_end().0 });
        if self.nr_p2m_frames != 0 {
            push(PfnRange { start: Pfn(self.first_p2m_pfn), count_frames: self.nr_p2m_frames });
        }
        if self.mod_start_is_pfn && self.mod_len != 0 {
            push(PfnRange {
                start: Pfn(self.mod_start),
                count_frames: self.mod_len.div_ceil(PAGE_SIZE),
            });
        }
        for pfn in [self.console_pfn, self.store_pfn].into_iter().flatten() {
            push(PfnRange { start: pfn, count_frames: 1 });
        }
        (out, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0xffff_ffff_8000_0000;

    /// What Xen 4.17 printed for an 8 MiB dom0 (VIRTUAL MEMORY ARRANGEMENT).
    fn dom0_8m() -> BootLayout {
        BootLayout {
            virt_base: BASE,
            nr_pages: 2048,
            start_info_va: BASE + 0x23000,
            pt_base: BASE + 0x24000,
            nr_pt_frames: 5,
            mfn_list: BASE + 0x1f000,
            ..Default::default()
        }
    }

    #[test]
    fn dom0_bootstrap_ends_after_the_boot_stack() {
        // Page tables 0x24000..0x29000, boot stack 0x29000..0x2a000.
        assert_eq!(dom0_8m().bootstrap_end(), Pfn(0x2a));
        let (ranges, n) = dom0_8m().reserved();
        assert_eq!(&ranges[..n], &[PfnRange { start: Pfn(0), count_frames: 0x2a }]);
    }

    #[test]
    fn separate_p2m_modules_and_rings_are_reserved_too() {
        let layout = BootLayout {
            nr_p2m_frames: 16,
            first_p2m_pfn: 0x800,
            mod_start: 0x400,
            mod_len: 3 * 4096 + 1,
            mod_start_is_pfn: true,
            console_pfn: Some(Pfn(0x20)),
            store_pfn: Some(Pfn(0x21)),
            ..dom0_8m()
        };
        let (ranges, n) = layout.reserved();
        assert_eq!(n, 5);
        assert!(ranges[..n].contains(&PfnRange { start: Pfn(0x800), count_frames: 16 }));
        assert!(ranges[..n].contains(&PfnRange { start: Pfn(0x400), count_frames: 4 }));
        assert!(ranges[..n].contains(&PfnRange { start: Pfn(0x21), count_frames: 1 }));
    }

    #[test]
    fn a_module_above_the_tables_extends_the_region_and_nothing_passes_nr_pages() {
        let layout = BootLayout { mod_start: BASE + 0x100000, mod_len: 0x5000, ..dom0_8m() };
        assert_eq!(layout.bootstrap_end(), Pfn(0x105));
        let tiny = BootLayout { nr_pages: 0x10, ..dom0_8m() };
        assert_eq!(tiny.bootstrap_end(), Pfn(0x10));
    }
}
