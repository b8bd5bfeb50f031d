//! Address newtypes: pseudo-physical frames, machine frames, machine and virtual addresses.
//!
//! A PV guest sees two kinds of "physical" memory: its own contiguous pseudo-physical frames
//! (`Pfn`, what the guest allocates) and the host's machine frames (`Mfn`, what page-table
//! entries hold). Mixing them up is the classic PV bug, so each is its own type and the only
//! conversions between them live in `p2m`.

pub use x86_64::VirtAddr;

/// The page size and its log2 (4 KiB), defined once with Xen's ABI.
pub use crate::xen::abi::{PAGE_SHIFT, PAGE_SIZE};

/// `addr` rounded down to a page.
pub const fn page_floor(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

/// `addr` rounded up to a page; `None` on overflow.
pub const fn page_ceil(addr: u64) -> Option<u64> {
    match addr.checked_add(PAGE_SIZE - 1) {
        Some(a) => Some(page_floor(a)),
        None => None,
    }
}

/// A pseudo-physical frame number: an index into this domain's own memory, `0..nr_pages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pfn(pub u64);

/// A machine frame number: a frame of the host, as page-table entries and Xen see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mfn(pub u64);

/// A machine (host-physical) byte address, e.g. the address of a page-table entry for `mmu_update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MachineAddr(pub u64);

impl Pfn {
    /// The frame number as an array index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl Mfn {
    /// The machine address of the first byte of this frame.
    pub const fn start_addr(self) -> MachineAddr {
        MachineAddr(self.0 << PAGE_SHIFT)
    }

    /// The machine address of the 8-byte entry number `index` of this frame seen as a table.
    pub const fn entry_addr(self, index: usize) -> MachineAddr {
        MachineAddr((self.0 << PAGE_SHIFT) + (index as u64) * 8)
    }
}

impl MachineAddr {
    /// The machine frame holding this address.
    pub const fn mfn(self) -> Mfn {
        Mfn(self.0 >> PAGE_SHIFT)
    }

    /// The byte offset inside that frame.
    pub const fn frame_offset_bytes(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
}

/// A range of pseudo-physical frames `[start, start + count_frames)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PfnRange {
    pub start: Pfn,
    pub count_frames: u64,
}

impl PfnRange {
    /// The frames covering `[start_bytes, start_bytes + len_bytes)` of pseudo-physical memory.
    pub const fn covering_bytes(start_bytes: u64, len_bytes: u64) -> PfnRange {
        let first = start_bytes >> PAGE_SHIFT;
        let end = (start_bytes + len_bytes + PAGE_SIZE - 1) >> PAGE_SHIFT;
        PfnRange { start: Pfn(first), count_frames: end - first }
    }

    /// Whether `pfn` lies inside the range.
    pub const fn contains(&self, pfn: Pfn) -> bool {
        pfn.0 >= self.start.0 && pfn.0 - self.start.0 < self.count_frames
    }

    /// One past the last frame.
    pub const fn end(&self) -> Pfn {
        Pfn(self.start.0 + self.count_frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_addresses_are_eight_bytes_apart_inside_the_frame() {
        let mfn = Mfn(0x1234);
        assert_eq!(mfn.entry_addr(0), MachineAddr(0x123_4000));
        assert_eq!(mfn.entry_addr(511), MachineAddr(0x123_4ff8));
        assert_eq!(mfn.entry_addr(511).mfn(), mfn);
        assert_eq!(mfn.entry_addr(3).frame_offset_bytes(), 24);
    }

    #[test]
    fn byte_ranges_round_out_to_whole_frames() {
        let r = PfnRange::covering_bytes(0x1800, 0x1000);
        assert_eq!(r, PfnRange { start: Pfn(1), count_frames: 2 });
        assert!(r.contains(Pfn(2)) && !r.contains(Pfn(3)) && !r.contains(Pfn(0)));
        assert_eq!(PfnRange::covering_bytes(0x2000, 0).count_frames, 0);
    }

    #[test]
    fn page_rounding() {
        assert_eq!(page_floor(0x1fff), 0x1000);
        assert_eq!(page_ceil(0x1001), Some(0x2000));
        assert_eq!(page_ceil(0x2000), Some(0x2000));
        assert_eq!(page_ceil(u64::MAX), None);
    }
}
