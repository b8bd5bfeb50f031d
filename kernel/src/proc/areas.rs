//! A process's mmap areas: where anonymous mappings are, with what protection.
#![deny(unsafe_code)]

use core::ops::Range;

use super::layout::{is_mappable, MMAP_BASE, PAGE_SIZE, STACK_RESERVED_START};
use super::syscall_abi::Prot;

/// Areas a process may have at once.
pub const AREAS_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Area {
    pub range: Range<u64>,
    pub prot: Prot,
}

/// Why an area could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaError {
    /// No room (address space or table slots).
    NoRoom,
    /// MAP_FIXED_NOREPLACE met an existing area.
    Exists,
    /// Outside the part of the address space mappings may use.
    Outside,
}

/// Up to [`AREAS_MAX`] non-overlapping page-aligned areas.
#[derive(Clone, Debug)]
pub struct Areas {
    slots: [Option<Area>; AREAS_MAX],
}

impl Default for Areas {
    fn default() -> Self {
        Areas { slots: [const { None }; AREAS_MAX] }
    }
}

impl Areas {
    pub fn find(&self, addr: u64) -> Option<&Area> {
        self.slots.iter().flatten().find(|a| a.range.contains(&addr))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Area> {
        self.slots.iter().flatten()
    }

    fn overlaps(&self, range: &Range<u64>) -> bool {
        self.iter().any(|a| a.range.start < range.end && range.start < a.range.end)
    }

    /// The lowest free `len` bytes at or above `MMAP_BASE` (or the hint, if free).
    pub fn find_free(&self, len: u64, hint: u64) -> Option<u64> {
        if hint != 0
            && hint.is_multiple_of(PAGE_SIZE)
            && is_mappable(hint, len)
            && !self.overlaps(&(hint..hint + len))
        {
            return Some(hint);
        }
        let mut start = MMAP_BASE;
        loop {
            let end = start.checked_add(len)?;
            if end > STACK_RESERVED_START {
                return None;
            }
            match self
                .iter()
                .filter(|a| a.range.start < end && start < a.range.end)
                .map(|a| a.range.end)
                .max()
            {
                None => return Some(start),
                Some(next) => start = next,
            }
        }
    }

    /// Adds an area; the range must be free (callers remove what MAP_FIXED replaces first).
    pub fn insert(&mut self, range: Range<u64>, prot: Prot) -> Result<(), AreaError> {
        if !is_mappable(range.start, range.end - range.start) {
            return Err(AreaError::Outside);
        }
        if self.overlaps(&range) {
            return Err(AreaError::Exists);
        }
        let slot = self.slots.iter_mut().find(|s| s.is_none()).ok_or(AreaError::NoRoom)?;
        *slot = Some(Area { range, prot });
        Ok(())
    }

    /// Removes `range` from every area, splitting where needed. Fails (changing nothing) only
    /// when a split needs a slot that is not there.
    pub fn remove(&mut self, range: &Range<u64>) -> Result<(), AreaError> {
        self.retag(range, None)
    }

    /// Sets the protection of every page of `range` that an area covers.
    pub fn protect(&mut self, range: &Range<u64>, prot: Prot) -> Result<(), AreaError> {
        self.retag(range, Some(prot))
    }

    /// Whether every page of `range` is covered by some area.
    pub fn covers(&self, range: &Range<u64>) -> bool {
        let mut at = range.start;
        while at < range.end {
            match self.find(at) {
                Some(a) => at = a.range.end,
                None => return false,
            }
        }
        true
    }

    fn retag(&mut self, range: &Range<u64>, prot: Option<Prot>) -> Result<(), AreaError> {
        let mut pieces: [Option<Area>; AREAS_MAX] = [const { None }; AREAS_MAX];
        let mut n = 0;
        let mut push = |area: Area, n: &mut usize| -> Result<(), AreaError> {
            if area.range.is_empty() {
                return Ok(());
            }
            *pieces.get_mut(*n).ok_or(AreaError::NoRoom)? = Some(area);
            *n += 1;
            Ok(())
        };
        for area in self.iter() {
            let cut_start = area.range.start.max(range.start);
            let cut_end = area.range.end.min(range.end);
            if cut_start >= cut_end {
                push(area.clone(), &mut n)?;
                continue;
            }
            push(Area { range: area.range.start..cut_start, prot: area.prot }, &mut n)?;
            if let Some(prot) = prot {
                push(Area { range: cut_start..cut_end, prot }, &mut n)?;
            }
            push(Area { range: cut_end..area.range.end, prot: area.prot }, &mut n)?;
        }
        self.slots = pieces;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: Prot = Prot { read: true, write: true, exec: false };
    const RO: Prot = Prot { read: true, write: false, exec: false };

    #[test]
    fn placement_skips_existing_areas_and_honours_free_hints() {
        let mut areas = Areas::default();
        let a = areas.find_free(3 * PAGE_SIZE, 0).unwrap();
        assert_eq!(a, MMAP_BASE);
        areas.insert(a..a + 3 * PAGE_SIZE, RW).unwrap();
        let b = areas.find_free(PAGE_SIZE, 0).unwrap();
        assert_eq!(b, MMAP_BASE + 3 * PAGE_SIZE);
        assert_eq!(areas.find_free(PAGE_SIZE, 0x40_0000), Some(0x40_0000));
        assert_eq!(
            areas.find_free(PAGE_SIZE, MMAP_BASE),
            Some(MMAP_BASE + 3 * PAGE_SIZE),
            "a taken hint is ignored"
        );
        assert_eq!(areas.insert(a..a + PAGE_SIZE, RW), Err(AreaError::Exists));
        assert_eq!(areas.insert(0..PAGE_SIZE, RW), Err(AreaError::Outside));
    }

    #[test]
    fn remove_and_protect_split_areas() {
        let mut areas = Areas::default();
        let base = MMAP_BASE;
        areas.insert(base..base + 4 * PAGE_SIZE, RW).unwrap();
        areas.protect(&(base + PAGE_SIZE..base + 2 * PAGE_SIZE), RO).unwrap();
        assert_eq!(areas.find(base + PAGE_SIZE).unwrap().prot, RO);
        assert_eq!(areas.find(base).unwrap().prot, RW);
        assert_eq!(areas.find(base + 3 * PAGE_SIZE).unwrap().prot, RW);
        areas.remove(&(base + 2 * PAGE_SIZE..base + 3 * PAGE_SIZE)).unwrap();
        assert!(areas.find(base + 2 * PAGE_SIZE).is_none());
        assert!(areas.covers(&(base..base + 2 * PAGE_SIZE)));
        assert!(!areas.covers(&(base..base + 4 * PAGE_SIZE)));
        assert_eq!(areas.iter().count(), 3);
    }
}
