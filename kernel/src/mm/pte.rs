//! Page-table entries and levels: an entry holds a machine frame number and x86 flags.

use super::addr::{Mfn, VirtAddr, PAGE_SHIFT};

pub use x86_64::structures::paging::PageTableFlags as PteFlags;

/// Entries in one table page.
pub const ENTRIES_PER_TABLE: usize = 512;

/// Bits 12..=51 of an entry: the machine frame's address.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The four levels of x86-64 paging; L1 entries map 4 KiB pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    L1,
    L2,
    L3,
    L4,
}

impl Level {
    /// From the root down.
    pub const TOP_DOWN: [Level; 4] = [Level::L4, Level::L3, Level::L2, Level::L1];

    /// log2 of the bytes one entry at this level spans.
    pub(in crate::mm) const fn entry_shift(self) -> u32 {
        PAGE_SHIFT + 9 * (self as u32)
    }

    /// Bytes one entry at this level spans.
    pub(in crate::mm) const fn entry_span_bytes(self) -> u64 {
        1 << self.entry_shift()
    }

    /// The index of `va`'s entry in a table of this level.
    pub(in crate::mm) const fn index_of(self, va: VirtAddr) -> usize {
        ((va.as_u64() >> self.entry_shift()) & 511) as usize
    }

    /// The level of the tables this level's entries point to (`None` for L1: they map pages).
    pub(crate) const fn child(self) -> Option<Level> {
        match self {
            Level::L4 => Some(Level::L3),
            Level::L3 => Some(Level::L2),
            Level::L2 => Some(Level::L1),
            Level::L1 => None,
        }
    }
}

/// One 8-byte page-table entry: `mfn << 12 | flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pte(pub u64);

impl Pte {
    /// The entry of a page of kernel data at `machine_addr` (page-aligned down): present,
    /// writable, accessed and dirty, so that Xen sets no bit later. xen::slots maps the frames
    /// Xen shares with us (shared_info, the rings) with it.
    pub const fn kernel_data(machine_addr: u64) -> Pte {
        let flags = PteFlags::PRESENT
            .union(PteFlags::WRITABLE)
            .union(PteFlags::ACCESSED)
            .union(PteFlags::DIRTY);
        Pte((machine_addr & ADDRESS_MASK) | flags.bits())
    }

    /// The not-present entry. Non-present entries are kept all-zero: Xen's L1TF checks may reject
    /// (or crash the domain over) non-present entries with address bits set.
    pub const EMPTY: Pte = Pte(0);

    /// An entry naming machine frame `mfn` with `flags`.
    pub(crate) const fn new(mfn: Mfn, flags: PteFlags) -> Pte {
        Pte(((mfn.0 << PAGE_SHIFT) & ADDRESS_MASK) | flags.bits())
    }

    /// The machine frame the entry names.
    pub(crate) const fn mfn(self) -> Mfn {
        Mfn((self.0 & ADDRESS_MASK) >> PAGE_SHIFT)
    }

    /// The flag bits.
    pub(crate) const fn flags(self) -> PteFlags {
        PteFlags::from_bits_truncate(self.0)
    }

    /// Whether the present bit is set.
    pub(crate) const fn is_present(self) -> bool {
        self.0 & PteFlags::PRESENT.bits() != 0
    }

    /// Whether replacing `self` by `new` takes away something a TLB may have cached: the mapping
    /// itself, its frame, write or user access, or execute permission. Only such changes need a
    /// TLB flush; not-present -> present never does.
    pub(in crate::mm) fn downgraded_by(self, new: Pte) -> bool {
        if !self.is_present() {
            return false;
        }
        if !new.is_present() || new.mfn() != self.mfn() {
            return true;
        }
        let (old, new) = (self.flags(), new.flags());
        let lost = |flag: PteFlags| old.contains(flag) && !new.contains(flag);
        let gained_nx = new.contains(PteFlags::NO_EXECUTE) && !old.contains(PteFlags::NO_EXECUTE);
        lost(PteFlags::WRITABLE) || lost(PteFlags::USER_ACCESSIBLE) || gained_nx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_mfn_and_flags() {
        let pte =
            Pte::new(Mfn(0xabcde), PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE);
        assert_eq!(pte.mfn(), Mfn(0xabcde));
        assert!(pte.is_present());
        assert_eq!(pte.flags(), PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE);
        assert!(!Pte::EMPTY.is_present());
    }

    #[test]
    fn kernel_data_entries_are_present_writable_accessed_dirty() {
        // The bits the slots wrote by hand before: P, RW, A, D (Intel SDM vol. 3, table 4-19).
        assert_eq!(Pte::kernel_data(0x1234_5678).0, 0x1234_5000 | 0x1 | 0x2 | 0x20 | 0x40);
        assert_eq!(Pte::kernel_data(0x1234_5678).mfn(), Mfn(0x12345));
    }

    #[test]
    fn levels_index_the_right_bits() {
        let va = VirtAddr::new(0xffff_8880_1234_5000);
        assert_eq!(Level::L4.index_of(va), usize::from(va.p4_index()));
        assert_eq!(Level::L3.index_of(va), usize::from(va.p3_index()));
        assert_eq!(Level::L2.index_of(va), usize::from(va.p2_index()));
        assert_eq!(Level::L1.index_of(va), usize::from(va.p1_index()));
        assert_eq!(Level::L2.entry_span_bytes(), 2 << 20);
    }

    #[test]
    fn only_taking_something_away_is_a_downgrade() {
        let rw = Pte::new(Mfn(5), PteFlags::PRESENT | PteFlags::WRITABLE);
        let ro = Pte::new(Mfn(5), PteFlags::PRESENT);
        let nx = Pte::new(Mfn(5), PteFlags::PRESENT | PteFlags::NO_EXECUTE);
        let moved = Pte::new(Mfn(6), PteFlags::PRESENT | PteFlags::WRITABLE);
        assert!(!Pte::EMPTY.downgraded_by(rw), "not-present -> present needs no flush");
        assert!(!ro.downgraded_by(rw), "RO -> RW needs no flush");
        assert!(rw.downgraded_by(ro));
        assert!(rw.downgraded_by(Pte::EMPTY));
        assert!(rw.downgraded_by(moved));
        assert!(ro.downgraded_by(nx));
        assert!(!rw.downgraded_by(rw | PteFlags::ACCESSED));
    }

    impl core::ops::BitOr<PteFlags> for Pte {
        type Output = Pte;
        fn bitor(self, flags: PteFlags) -> Pte {
            Pte(self.0 | flags.bits())
        }
    }
}
