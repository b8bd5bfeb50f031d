//! The user half of an address space: where the image, the heap, mappings and the stack go.
//!
//! ```text
//! 0x0000_0000_0000_0000 .. 0x0000_0000_0000_0fff  page 0: never mapped, so NULL faults
//! 0x0000_0000_0000_1000 ..                         the ELF image (static programs link at 0x400000)
//!   image end (page-aligned) .. + BRK_SIZE_MAX     brk heap
//! 0x0000_1000_0000_0000 ..                         mmap without MAP_FIXED, growing up
//! STACK_RESERVED_START .. STACK_TOP - STACK_SIZE_MAX   stack guard: never mapped
//! STACK_TOP - STACK_SIZE_MAX .. STACK_TOP          stack, mapped on demand, growing down
//! 0x0000_7fff_ffff_f000 .. 0x0000_7fff_ffff_ffff   last user page: never mapped
//! ```

use core::fmt;
use core::ops::Range;

use super::addr::PAGE_SIZE;

/// Lowest address an image or a mapping may use.
pub const USER_START: u64 = PAGE_SIZE;
/// One past the highest user address: the end of the lower canonical half.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// Where mmap without MAP_FIXED starts looking.
pub const MMAP_BASE: u64 = 0x0000_1000_0000_0000;
/// One past the initial stack's highest byte; the stack image is built below it.
pub const STACK_TOP: u64 = 0x0000_7fff_ffff_f000;
/// How far the stack may grow down from [`STACK_TOP`].
pub const STACK_SIZE_MAX: u64 = 1 << 20;
/// The never-mapped gap below the stack: a fault there is a stack overflow.
pub const STACK_GUARD_SIZE: u64 = 64 << 10;
/// Lowest address of the stack's reservation (guard included); images and mappings stay below.
pub const STACK_RESERVED_START: u64 = STACK_TOP - STACK_SIZE_MAX - STACK_GUARD_SIZE;
/// How far brk may move past the image.
pub const BRK_SIZE_MAX: u64 = 64 << 20;

const _: () = assert!(MMAP_BASE < STACK_RESERVED_START && STACK_TOP < USER_END);
const _: () =
    assert!(STACK_TOP.is_multiple_of(PAGE_SIZE) && STACK_RESERVED_START.is_multiple_of(PAGE_SIZE));

/// The stack's pages (may be mapped on demand).
pub const STACK: Range<u64> = STACK_TOP - STACK_SIZE_MAX..STACK_TOP;
/// The stack guard (never mapped).
pub const STACK_GUARD: Range<u64> = STACK_RESERVED_START..STACK_TOP - STACK_SIZE_MAX;

/// Whether `[start, start + len)` lies where user memory (image, heap, mappings) may go: above
/// page 0 and below the stack's reservation.
pub fn is_mappable(start: u64, len: u64) -> bool {
    start >= USER_START && start.checked_add(len).is_some_and(|end| end <= STACK_RESERVED_START)
}

/// Where an address lies, as the kernel reports faults and as expectations name them
/// (`in text`, `in guard`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Page 0.
    Null,
    /// An executable segment of the image.
    Text,
    /// A non-executable segment of the image.
    Data,
    /// The brk heap.
    Heap,
    /// An area made by mmap.
    Mmap,
    Stack,
    Guard,
    /// A user address nothing maps.
    Unmapped,
    /// The upper canonical half: the kernel's and Xen's.
    Kernel,
    /// Between the halves.
    NonCanonical,
}

impl Region {
    pub const ALL: [Region; 10] = [
        Region::Null,
        Region::Text,
        Region::Data,
        Region::Heap,
        Region::Mmap,
        Region::Stack,
        Region::Guard,
        Region::Unmapped,
        Region::Kernel,
        Region::NonCanonical,
    ];

    /// The word used in expectations and reports.
    pub const fn word(self) -> &'static str {
        match self {
            Region::Null => "null",
            Region::Text => "text",
            Region::Data => "data",
            Region::Heap => "heap",
            Region::Mmap => "mmap",
            Region::Stack => "stack",
            Region::Guard => "guard",
            Region::Unmapped => "unmapped",
            Region::Kernel => "kernel",
            Region::NonCanonical => "non-canonical",
        }
    }

    pub fn from_word(word: &str) -> Option<Region> {
        Region::ALL.into_iter().find(|r| r.word() == word)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappable_ranges() {
        assert!(is_mappable(0x40_0000, 0x1000));
        assert!(!is_mappable(0, 0x1000));
        assert!(!is_mappable(STACK_RESERVED_START - 0x1000, 0x2000));
        assert!(!is_mappable(u64::MAX - 10, 100));
    }

    #[test]
    fn region_words_round_trip() {
        for r in Region::ALL {
            assert_eq!(Region::from_word(r.word()), Some(r));
        }
        assert_eq!(Region::from_word("everywhere"), None);
    }
}
