//! The frame allocator: one bit per pseudo-physical frame below `nr_pages`, minus boot reservations.
//!
//! It hands out [`Pfn`]s; turning one into a machine frame is `p2m`'s job. The bitmap lives in a
//! buffer the caller owns (a static in the kernel: [`BITMAP_WORDS_4GIB`] words cover 4 GiB), so
//! allocating frames never needs a heap. Errors are values: an empty pool or a double free is
//! reported, never a panic.

use super::addr::{Pfn, PfnRange};
use super::bitmap::{words_for_bits, Bitmap};
use crate::testing::inject::{self, Point};

/// Frames in 4 GiB of 4 KiB pages.
pub const MAX_FRAMES_4GIB: u64 = 1 << 20;
/// Bitmap words needed to track [`MAX_FRAMES_4GIB`] frames (128 KiB).
pub const BITMAP_WORDS_4GIB: usize = words_for_bits(MAX_FRAMES_4GIB);

/// What can go wrong when allocating or freeing a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Every frame is in use.
    Exhausted,
    /// The frame was already free.
    DoubleFree(Pfn),
    /// The frame is not below `nr_pages`.
    OutOfRange(Pfn),
    /// The bitmap buffer is too small for `nr_pages`.
    BufferTooSmall { needed_words: usize },
}

/// Anything frames can be taken from and given back to; the page-table code only needs this.
pub trait FrameSource {
    /// Takes one free frame.
    fn allocate_frame(&mut self) -> Result<Pfn, FrameError>;
    /// Gives a frame back.
    fn free_frame(&mut self, pfn: Pfn) -> Result<(), FrameError>;
    /// Takes one free frame for a page-table page (the fault-injection point `table`).
    fn allocate_table(&mut self) -> Result<Pfn, FrameError> {
        self.allocate_frame()
    }
}

/// A first-fit allocator over a bitmap (set bit = in use or reserved).
#[derive(Debug)]
pub struct FrameAllocator<'a> {
    in_use: Bitmap<'a>,
    free_frames: u64,
    next_search: u64,
}

impl<'a> FrameAllocator<'a> {
    /// Tracks frames `0..nr_pages` in `buffer`; frames in `reserved` start in use.
    pub(in crate::mm) fn new(
        buffer: &'a mut [u64],
        nr_pages: u64,
        reserved: &[PfnRange],
    ) -> Result<Self, FrameError> {
        let needed_words = words_for_bits(nr_pages);
        let mut in_use = Bitmap::new_cleared(buffer, nr_pages)
            .ok_or(FrameError::BufferTooSmall { needed_words })?;
        for range in reserved {
            for pfn in range.start.0..range.end().0.min(nr_pages) {
                in_use.set(pfn, true);
            }
        }
        let reserved_frames = (0..nr_pages).filter(|&pfn| in_use.get(pfn)).count() as u64;
        Ok(FrameAllocator { in_use, free_frames: nr_pages - reserved_frames, next_search: 0 })
    }

    /// Frames currently free.
    pub(crate) const fn free_frames(&self) -> u64 {
        self.free_frames
    }

    /// Frames in use (allocated or reserved at boot).
    pub(crate) const fn used_frames(&self) -> u64 {
        self.in_use.len_bits() - self.free_frames
    }

    /// Whether `pfn` is currently free.
    #[cfg(test)]
    pub(in crate::mm) fn is_free(&self, pfn: Pfn) -> bool {
        !self.in_use.get(pfn.0)
    }
}

impl FrameSource for FrameAllocator<'_> {
    fn allocate_frame(&mut self) -> Result<Pfn, FrameError> {
        if inject::fail(Point::Frame) {
            return Err(FrameError::Exhausted);
        }
        let pfn = self.in_use.find_clear_from(self.next_search).ok_or(FrameError::Exhausted)?;
        self.in_use.set(pfn, true);
        self.free_frames -= 1;
        self.next_search = pfn + 1;
        Ok(Pfn(pfn))
    }

    fn allocate_table(&mut self) -> Result<Pfn, FrameError> {
        if inject::fail(Point::Table) {
            return Err(FrameError::Exhausted);
        }
        self.allocate_frame()
    }

    fn free_frame(&mut self, pfn: Pfn) -> Result<(), FrameError> {
        if pfn.0 >= self.in_use.len_bits() {
            return Err(FrameError::OutOfRange(pfn));
        }
        if !self.in_use.get(pfn.0) {
            return Err(FrameError::DoubleFree(pfn));
        }
        self.in_use.set(pfn.0, false);
        self.free_frames += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_every_unreserved_frame_once_then_reports_exhaustion() {
        let mut buf = [0u64; 2];
        let reserved = [
            PfnRange { start: Pfn(0), count_frames: 3 },
            PfnRange { start: Pfn(10), count_frames: 2 },
        ];
        let mut frames = FrameAllocator::new(&mut buf, 70, &reserved).unwrap();
        assert_eq!((frames.free_frames(), frames.used_frames()), (65, 5));
        let mut got: Vec<u64> = (0..65).map(|_| frames.allocate_frame().unwrap().0).collect();
        got.sort_unstable();
        let expected: Vec<u64> = (3..10).chain(12..70).collect();
        assert_eq!(got, expected);
        assert_eq!(frames.allocate_frame(), Err(FrameError::Exhausted));
        assert_eq!((frames.free_frames(), frames.used_frames()), (0, 70));
    }

    #[test]
    fn detects_double_free_and_frames_past_the_end() {
        let mut buf = [0u64; 1];
        let mut frames = FrameAllocator::new(&mut buf, 8, &[]).unwrap();
        let pfn = frames.allocate_frame().unwrap();
        assert_eq!(frames.free_frame(pfn), Ok(()));
        assert_eq!(frames.free_frame(pfn), Err(FrameError::DoubleFree(pfn)));
        assert_eq!(frames.free_frame(Pfn(8)), Err(FrameError::OutOfRange(Pfn(8))));
        assert_eq!(frames.free_frames(), 8);
    }

    #[test]
    fn reuses_freed_frames_after_wrapping() {
        let mut buf = [0u64; 1];
        let mut frames = FrameAllocator::new(&mut buf, 2, &[]).unwrap();
        let a = frames.allocate_frame().unwrap();
        let _b = frames.allocate_frame().unwrap();
        frames.free_frame(a).unwrap();
        assert_eq!(frames.allocate_frame(), Ok(a));
    }

    #[test]
    fn rejects_a_buffer_too_small_for_nr_pages() {
        let mut buf = [0u64; 1];
        assert_eq!(
            FrameAllocator::new(&mut buf, 65, &[]).unwrap_err(),
            FrameError::BufferTooSmall { needed_words: 2 }
        );
    }

    #[test]
    fn a_4gib_bitmap_is_128_kib() {
        assert_eq!(BITMAP_WORDS_4GIB * 8, 128 * 1024);
    }
}
