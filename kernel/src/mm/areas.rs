//! The areas of a user address space: which pages exist, with what protection, backed by what.
//!
//! Every user page a program may touch, except the stack, lies in exactly one [`Area`]: the
//! image's segments (backed by the program file), the brk heap and the mmap areas (zero-filled).
//! One list holds them all, sorted and non-overlapping, so `MAP_FIXED` can replace any of them
//! and `munmap`/`mprotect` split any of them, as on Linux. Adjacent areas that only differ in
//! where they start merge (Linux merges compatible anonymous VMAs the same way), so thousands of
//! page-sized mappings made one after another stay one area.
//!
//! The list's capacity is fixed when the address space is made ([`AREAS_MAX`] by default; Linux's
//! `vm.max_map_count` is 65530): the list never grows while the memory manager's lock is held,
//! because growing the kernel heap takes a page fault, and the fault handler takes that lock.

use alloc::vec::Vec;
use core::ops::Range;

use super::addr::{page_floor, PAGE_SIZE};
use super::user_space::{is_mappable, MMAP_BASE, STACK_RESERVED_START};

/// Areas one address space may have at once (after merging), unless made with another capacity.
pub const AREAS_MAX: usize = 4096;

/// What an area's pages allow (`PROT_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Prot {
    pub const NONE: Prot = Prot { read: false, write: false, exec: false };
    pub const READ_WRITE: Prot = Prot { read: true, write: true, exec: false };

    /// Whether any access is allowed (x86 cannot map a page write-only or execute-only, so any
    /// access right makes the page readable).
    pub(crate) const fn accessible(self) -> bool {
        self.read || self.write || self.exec
    }
}

/// What an area is, for fault reports (`in text`) and for deciding what may merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaKind {
    /// An executable segment of the image.
    Text,
    /// A non-executable segment of the image.
    Data,
    /// The brk heap.
    Heap,
    /// Made by mmap.
    Mmap,
    /// The stack's reservation, below its guard.
    Stack,
}

/// Where an area's pages come from on their first touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Zero-filled.
    Zero,
    /// Part of a program segment: the file's bytes `file_offset..file_offset + file_size` lie at
    /// `vaddr..`, the rest of the segment is zero. Pieces of a split segment keep these values.
    File { vaddr: u64, file_offset: u64, file_size: u64 },
}

/// The file bytes one page holds: `bytes` at `offset_in_page`, the rest zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageContents<'f> {
    pub offset_in_page: usize,
    pub bytes: &'f [u8],
}

impl PageContents<'_> {
    /// Whether the page is exactly one file page (no zero fill, no partial bytes).
    pub(crate) fn is_whole_file_page(&self) -> bool {
        self.offset_in_page == 0 && self.bytes.len() == PAGE_SIZE as usize
    }
}

impl Backing {
    /// What the page holding `addr` holds, taken from `file`.
    pub(crate) fn page_contents<'f>(&self, file: &'f [u8], addr: u64) -> PageContents<'f> {
        let Backing::File { vaddr, file_offset, file_size } = *self else {
            return PageContents { offset_in_page: 0, bytes: &[] };
        };
        let page = page_floor(addr);
        let start = vaddr.max(page);
        let end = (vaddr + file_size).min(page + PAGE_SIZE);
        if start >= end {
            return PageContents { offset_in_page: 0, bytes: &[] };
        }
        let in_file = (file_offset + (start - vaddr)) as usize;
        match file.get(in_file..in_file + (end - start) as usize) {
            Some(bytes) => PageContents { offset_in_page: (start - page) as usize, bytes },
            None => PageContents { offset_in_page: 0, bytes: &[] },
        }
    }
}

/// Page-aligned `range` with one protection, kind and backing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub kind: AreaKind,
    pub backing: Backing,
}

impl Area {
    pub(in crate::mm) const fn range(&self) -> Range<u64> {
        self.start..self.end
    }

    pub(in crate::mm) const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Whether `next`, starting where this one ends, can become part of this area.
    fn merges_with(&self, next: &Area) -> bool {
        self.end == next.start
            && self.prot == next.prot
            && self.kind == next.kind
            && self.backing == next.backing
    }

    fn with_range(self, start: u64, end: u64) -> Area {
        Area { start, end, ..self }
    }
}

/// Why the areas could not be changed. Nothing is changed when an operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaError {
    /// The list is full (a split or a new area needs a slot).
    NoRoom,
    /// The range overlaps an existing area (MAP_FIXED_NOREPLACE, brk growing into a mapping).
    Exists,
    /// Outside the part of the address space that areas may use, or not page-aligned.
    Outside,
    /// No free range of that length.
    NoSpace,
}

/// The sorted, non-overlapping areas of one address space.
#[derive(Debug)]
pub struct Areas {
    list: Vec<Area>,
}

impl Areas {
    /// An empty list that will hold at most `capacity` areas (allocated now, never again).
    #[cfg(test)]
    pub(in crate::mm) fn with_capacity(capacity: usize) -> Areas {
        Areas { list: Vec::with_capacity(capacity.max(3)) }
    }

    /// [`Areas::with_capacity`], with every page of the list's memory touched now.
    #[cfg(test)]
    pub(in crate::mm) fn with_capacity_touched(capacity: usize) -> Areas {
        Self::try_with_capacity_touched(capacity).expect("memory for the area list")
    }

    /// [`Areas::with_capacity_touched`], or `None` when the heap cannot hold the list.
    pub(in crate::mm) fn try_with_capacity_touched(capacity: usize) -> Option<Areas> {
        let mut list = Vec::new();
        list.try_reserve_exact(capacity.max(3)).ok()?;
        let mut areas = Areas { list };
        let filler = Area {
            start: 0,
            end: 0,
            prot: Prot::NONE,
            kind: AreaKind::Mmap,
            backing: Backing::Zero,
        };
        areas.list.resize(areas.list.capacity(), filler);
        areas.list.clear();
        Some(areas)
    }

    pub(in crate::mm) fn len(&self) -> usize {
        self.list.len()
    }

    #[cfg(test)]
    pub(in crate::mm) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(in crate::mm) fn capacity(&self) -> usize {
        self.list.capacity()
    }

    #[cfg(test)]
    pub(in crate::mm) fn iter(&self) -> impl Iterator<Item = &Area> {
        self.list.iter()
    }

    /// The area that holds `addr`.
    pub(in crate::mm) fn find(&self, addr: u64) -> Option<&Area> {
        let i = self.list.partition_point(|a| a.end <= addr);
        self.list.get(i).filter(|a| a.contains(addr))
    }

    /// Index of the first area that ends after `addr`.
    fn first_ending_after(&self, addr: u64) -> usize {
        self.list.partition_point(|a| a.end <= addr)
    }

    /// The areas that overlap `range`, in address order.
    pub(in crate::mm) fn overlapping(&self, range: &Range<u64>) -> impl Iterator<Item = &Area> {
        let end = range.end;
        self.list[self.first_ending_after(range.start)..].iter().take_while(move |a| a.start < end)
    }

    /// Whether any area overlaps `range`.
    pub(in crate::mm) fn overlaps(&self, range: &Range<u64>) -> bool {
        self.list.get(self.first_ending_after(range.start)).is_some_and(|a| a.start < range.end)
    }

    /// Whether every page of `range` lies in some area.
    pub(in crate::mm) fn covers(&self, range: &Range<u64>) -> bool {
        let mut at = range.start;
        let mut i = self.first_ending_after(at);
        while at < range.end {
            match self.list.get(i) {
                Some(a) if a.start <= at => at = a.end,
                _ => return false,
            }
            i += 1;
        }
        true
    }

    /// The lowest free `len` bytes at or above [`MMAP_BASE`] (or at `hint`, if that is free).
    pub(in crate::mm) fn find_free(&self, len: u64, hint: u64) -> Option<u64> {
        if hint != 0
            && hint.is_multiple_of(PAGE_SIZE)
            && is_mappable(hint, len)
            && !self.overlaps(&(hint..hint + len))
        {
            return Some(hint);
        }
        let mut start = MMAP_BASE;
        for area in &self.list[self.first_ending_after(MMAP_BASE)..] {
            if start.checked_add(len)? <= area.start {
                break;
            }
            start = start.max(area.end);
        }
        let end = start.checked_add(len)?;
        (end <= STACK_RESERVED_START).then_some(start)
    }

    /// Adds `area`, whose range must be free and mappable; merges it with its neighbours.
    pub(in crate::mm) fn insert(&mut self, area: Area) -> Result<(), AreaError> {
        if !is_mappable(area.start, area.end.saturating_sub(area.start)) {
            return Err(AreaError::Outside);
        }
        self.insert_reserved(area)
    }

    /// Adds `area` where mappings may not go (the stack's reservation); it must be free.
    pub(in crate::mm) fn insert_reserved(&mut self, area: Area) -> Result<(), AreaError> {
        if area.start >= area.end
            || !area.start.is_multiple_of(PAGE_SIZE)
            || !area.end.is_multiple_of(PAGE_SIZE)
        {
            return Err(AreaError::Outside);
        }
        if self.overlaps(&area.range()) {
            return Err(AreaError::Exists);
        }
        let i = self.first_ending_after(area.start);
        let joins_left = i > 0 && self.list[i - 1].merges_with(&area);
        let joins_right = self.list.get(i).is_some_and(|next| area.merges_with(next));
        match (joins_left, joins_right) {
            (true, true) => {
                self.list[i - 1].end = self.list[i].end;
                self.list.remove(i);
            }
            (true, false) => self.list[i - 1].end = area.end,
            (false, true) => self.list[i].start = area.start,
            (false, false) => {
                if self.list.len() == self.list.capacity() {
                    return Err(AreaError::NoRoom);
                }
                self.list.insert(i, area);
            }
        }
        Ok(())
    }

    /// Removes `range` from every area, splitting where needed.
    pub(in crate::mm) fn remove(&mut self, range: &Range<u64>) -> Result<(), AreaError> {
        self.retag(range, |_| None)
    }

    /// Sets the protection of every page of `range` that an area covers.
    pub(in crate::mm) fn protect(
        &mut self,
        range: &Range<u64>,
        prot: Prot,
    ) -> Result<(), AreaError> {
        self.retag(range, |a| Some(Area { prot, ..a }))
    }

    /// Whether the list has the slots that cutting `range` out of its areas takes (one for each
    /// end of `range` that falls inside an area): then [`Areas::remove`] and
    /// [`Areas::protect`] cannot fail.
    pub(in crate::mm) fn has_room_to_split(&self, range: &Range<u64>) -> bool {
        let inside = |addr: u64| self.find(addr).is_some_and(|a| a.start < addr);
        let more = usize::from(inside(range.start)) + usize::from(inside(range.end));
        self.list.len() + more <= self.list.capacity()
    }

    /// Replaces the part of each area inside `range` by what `change` makes of it (`None`:
    /// nothing), keeping the parts outside; then merges around the change.
    fn retag(
        &mut self,
        range: &Range<u64>,
        change: impl Fn(Area) -> Option<Area>,
    ) -> Result<(), AreaError> {
        if !self.has_room_to_split(range) {
            return Err(AreaError::NoRoom);
        }
        let first = self.first_ending_after(range.start);
        let last = first + self.list[first..].partition_point(|a| a.start < range.end);
        if first == last {
            return Ok(());
        }
        let left = self.list[first].start < range.start;
        let right = self.list[last - 1].end > range.end;
        let old_first = self.list[first];
        let old_last = self.list[last - 1];
        let mut pieces = [None; 2];
        // In place: the changed middles keep their slots (or are dropped), the end pieces are
        // added around them afterwards. `write` never passes `read`.
        let mut write = first;
        for read in first..last {
            let a = self.list[read];
            let middle = a.with_range(a.start.max(range.start), a.end.min(range.end));
            if let Some(changed) = change(middle) {
                self.list[write] = changed;
                write += 1;
            }
        }
        self.list.drain(write..last);
        if left {
            pieces[0] = Some(old_first.with_range(old_first.start, range.start));
        }
        if right {
            pieces[1] = Some(old_last.with_range(range.end, old_last.end));
        }
        let mut end_of_change = write;
        if let Some(piece) = pieces[0] {
            self.list.insert(first, piece);
            end_of_change += 1;
        }
        if let Some(piece) = pieces[1] {
            self.list.insert(end_of_change, piece);
            end_of_change += 1;
        }
        self.merge_between(first.saturating_sub(1), end_of_change + 1);
        Ok(())
    }

    /// Merges compatible neighbours among the areas with indexes `from..to`.
    fn merge_between(&mut self, from: usize, to: usize) {
        let mut i = from;
        let mut to = to.min(self.list.len());
        while i + 1 < to {
            if self.list[i].merges_with(&self.list[i + 1]) {
                self.list[i].end = self.list[i + 1].end;
                self.list.remove(i + 1);
                to -= 1;
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: Prot = Prot::READ_WRITE;
    const RO: Prot = Prot { read: true, write: false, exec: false };

    fn mmap(start: u64, pages: u64, prot: Prot) -> Area {
        Area {
            start,
            end: start + pages * PAGE_SIZE,
            prot,
            kind: AreaKind::Mmap,
            backing: Backing::Zero,
        }
    }

    fn ranges(areas: &Areas) -> Vec<(u64, u64)> {
        areas.iter().map(|a| (a.start, a.end)).collect()
    }

    #[test]
    fn placement_skips_existing_areas_and_honours_free_hints() {
        let mut areas = Areas::with_capacity(16);
        let a = areas.find_free(3 * PAGE_SIZE, 0).unwrap();
        assert_eq!(a, MMAP_BASE);
        areas.insert(mmap(a, 3, RW)).unwrap();
        let b = areas.find_free(PAGE_SIZE, 0).unwrap();
        assert_eq!(b, MMAP_BASE + 3 * PAGE_SIZE);
        assert_eq!(areas.find_free(PAGE_SIZE, 0x40_0000), Some(0x40_0000));
        assert_eq!(
            areas.find_free(PAGE_SIZE, MMAP_BASE),
            Some(MMAP_BASE + 3 * PAGE_SIZE),
            "a taken hint is ignored"
        );
        assert_eq!(areas.insert(mmap(a, 1, RW)), Err(AreaError::Exists));
        assert_eq!(areas.insert(mmap(0, 1, RW)), Err(AreaError::Outside));
        assert_eq!(areas.find_free(STACK_RESERVED_START, 0), None, "too long");
    }

    #[test]
    fn a_gap_between_areas_is_found() {
        let mut areas = Areas::with_capacity(16);
        areas.insert(mmap(MMAP_BASE, 1, RW)).unwrap();
        areas.insert(mmap(MMAP_BASE + 3 * PAGE_SIZE, 1, RW)).unwrap();
        assert_eq!(areas.find_free(2 * PAGE_SIZE, 0), Some(MMAP_BASE + PAGE_SIZE));
        assert_eq!(areas.find_free(3 * PAGE_SIZE, 0), Some(MMAP_BASE + 4 * PAGE_SIZE));
    }

    #[test]
    fn adjacent_compatible_areas_merge_and_thousands_fit() {
        let mut areas = Areas::with_capacity(8);
        for i in 0..5000 {
            let start = areas.find_free(PAGE_SIZE, 0).unwrap();
            assert_eq!(start, MMAP_BASE + i * PAGE_SIZE);
            areas.insert(mmap(start, 1, RW)).unwrap();
        }
        assert_eq!(ranges(&areas), [(MMAP_BASE, MMAP_BASE + 5000 * PAGE_SIZE)]);
        // Different protections do not merge; filling the hole between two areas joins all three.
        areas.insert(mmap(MMAP_BASE + 5001 * PAGE_SIZE, 1, RO)).unwrap();
        assert_eq!(areas.len(), 2);
        areas.insert(mmap(MMAP_BASE + 5002 * PAGE_SIZE, 1, RW)).unwrap();
        areas.insert(mmap(MMAP_BASE + 5004 * PAGE_SIZE, 1, RW)).unwrap();
        areas.insert(mmap(MMAP_BASE + 5003 * PAGE_SIZE, 1, RW)).unwrap();
        assert_eq!(areas.len(), 3);
    }

    #[test]
    fn remove_and_protect_split_areas_and_merge_back() {
        let mut areas = Areas::with_capacity(16);
        let base = MMAP_BASE;
        areas.insert(mmap(base, 4, RW)).unwrap();
        areas.protect(&(base + PAGE_SIZE..base + 2 * PAGE_SIZE), RO).unwrap();
        assert_eq!(areas.find(base + PAGE_SIZE).unwrap().prot, RO);
        assert_eq!(areas.find(base).unwrap().prot, RW);
        assert_eq!(areas.find(base + 3 * PAGE_SIZE).unwrap().prot, RW);
        assert_eq!(areas.len(), 3);
        areas.protect(&(base..base + 4 * PAGE_SIZE), RW).unwrap();
        assert_eq!(ranges(&areas), [(base, base + 4 * PAGE_SIZE)], "merged back");
        areas.remove(&(base + 2 * PAGE_SIZE..base + 3 * PAGE_SIZE)).unwrap();
        assert!(areas.find(base + 2 * PAGE_SIZE).is_none());
        assert!(areas.covers(&(base..base + 2 * PAGE_SIZE)));
        assert!(!areas.covers(&(base..base + 4 * PAGE_SIZE)));
        assert_eq!(
            ranges(&areas),
            [(base, base + 2 * PAGE_SIZE), (base + 3 * PAGE_SIZE, base + 4 * PAGE_SIZE)]
        );
        areas.remove(&(base..base + 8 * PAGE_SIZE)).unwrap();
        assert!(areas.is_empty());
    }

    #[test]
    fn a_full_list_refuses_a_split_and_changes_nothing() {
        let mut areas = Areas::with_capacity(3);
        areas.insert(mmap(MMAP_BASE, 8, RW)).unwrap();
        areas.protect(&(MMAP_BASE + PAGE_SIZE..MMAP_BASE + 2 * PAGE_SIZE), RO).unwrap();
        assert_eq!(areas.len(), 3);
        let before = ranges(&areas);
        assert_eq!(
            areas.remove(&(MMAP_BASE + 4 * PAGE_SIZE..MMAP_BASE + 5 * PAGE_SIZE)),
            Err(AreaError::NoRoom)
        );
        assert_eq!(ranges(&areas), before);
        assert_eq!(areas.insert(mmap(MMAP_BASE + 20 * PAGE_SIZE, 1, RO)), Err(AreaError::NoRoom));
    }

    #[test]
    fn file_backed_pages_hold_their_file_bytes() {
        let file: Vec<u8> = (0..0x3000u32).map(|i| i as u8).collect();
        let b = Backing::File { vaddr: 0x401800, file_offset: 0x800, file_size: 0x1000 };
        let first = b.page_contents(&file, 0x401000);
        assert_eq!(first.offset_in_page, 0x800);
        assert_eq!(first.bytes, &file[0x800..0x1000]);
        let second = b.page_contents(&file, 0x402000);
        assert_eq!((second.offset_in_page, second.bytes.len()), (0, 0x800));
        assert_eq!(b.page_contents(&file, 0x403000).bytes, &[] as &[u8]);
        let whole = Backing::File { vaddr: 0x400000, file_offset: 0, file_size: 0x2000 };
        assert!(whole.page_contents(&file, 0x401000).is_whole_file_page());
    }
}
