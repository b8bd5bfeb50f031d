//! A user address space: its pinned root, its areas, and every operation on user memory.
//!
//! [`AddressSpace`] owns a process's user L4 (pinned, installed with `NEW_USER_BASEPTR`) and its
//! layout ([`Areas`]: image segments, brk heap, mmap areas, stack). Every change to user memory
//! goes through it: resolving a page fault, copy-on-write, brk, mmap (`MAP_FIXED` included),
//! munmap, mprotect, reading and writing user buffers for syscalls, and teardown. It is generic
//! over the same hypervisor seam as [`PageTables`], so host tests run all of it against the model
//! of Xen; the kernel passes its hypercall-backed tables.
//!
//! Semantics follow Linux, the reference for the user ABI:
//! - `mprotect(PROT_NONE)` keeps the pages' contents: the entries go away (a PV guest must keep
//!   non-present entries zero, see XEN-NOTES on L1TF), and the private frames are *parked* in
//!   the address space, to be mapped again by the next allowed access.
//! - `MAP_FIXED` replaces whatever it covers: image segment, heap or mapping.
//! - Reading a user buffer never allocates: a page not mapped yet is read from its backing
//!   (zeros or file bytes), as Linux reads an untouched anonymous page through the zero page.
//!
//! Frames: a whole read-only page of the program file is the boot module's own frame, shared by
//! every run; a partial one comes from the [`SharedPages`] cache, copied once per program. Neither
//! is ever made writable: a write copies it first (copy-on-write). Every other frame is private
//! and counted against the space's limit, page-table frames included.
//!
//! TLB: the user's translations may survive the switch to the kernel's tables (with global pages
//! or PCIDs, XEN-NOTES section 5), so every operation that removes or downgrades a user entry
//! owes a flush, and a frame goes back to the pool only after that flush.
//!
//! SMP: the threads of a process run on several vCPUs at once, each with the space loaded
//! ([`AddressSpace::activate`] on that vCPU; [`AddressSpace::deactivate`] when it leaves). The
//! vCPUs that hold the space are its `loaded_on` mask ([`AddressSpace::loaded_on`]), kept by the
//! page tables per vCPU because every flush is issued there: each flush an operation here owes
//! (munmap, mprotect, copy-on-write, brk, teardown, a refused batch's undo) goes to every vCPU of
//! the mask, as LOCAL ops when the caller is alone in it and as one MULTI op with the mask
//! otherwise (a shootdown); frames go back to the pool only after it. Teardown refuses while
//! another vCPU holds the space.
//!
//! Locking: one lock per address space. The kernel takes the process's (`CURRENT`) and then the
//! memory manager's (`MM`) for every operation here, faults included, so two vCPUs never change
//! one space at once. A fault that loses the race finds the page mapped with the access it needs
//! ([`Resolved::AlreadyMapped`]: no frame allocated, no hypercall) or the table the winner built
//! (it maps into it: exactly one table is built).

use alloc::vec::Vec;
use core::ops::Range;

use super::addr::{page_ceil, page_floor, PAGE_SIZE};
use super::addr::{Pfn, PfnRange, VirtAddr};
use super::areas::{Area, AreaError, AreaKind, Areas, Backing, Prot};
use super::backend::{FrameAccess, VcpuMask, XenMmu};
use super::frame::{FrameError, FrameSource};
use super::page_table::{Mapping, MmError, PageTables, Root, TableError};
use super::pte::PteFlags;
use super::user_space::{Region, STACK, STACK_GUARD, USER_END};
use crate::arch::x86_64::page_fault::{Access, PageFault};

/// Frames a fault may need beyond the page itself: L3, L2 and L1 tables.
const FAULT_RESERVE_FRAMES: u64 = 3;

/// One loadable segment of a program: `mem_size` bytes at `vaddr`, the first `file_size` from
/// `file_offset` in the file, the rest zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentSpec {
    pub vaddr: u64,
    pub mem_size: u64,
    pub file_offset: u64,
    pub file_size: u64,
    pub prot: Prot,
}

impl SegmentSpec {
    fn pages(&self) -> Range<u64> {
        page_floor(self.vaddr)..page_ceil(self.vaddr + self.mem_size).unwrap_or(u64::MAX)
    }

    /// Where the segment's pages come from.
    pub(crate) fn backing(&self) -> Backing {
        Backing::File {
            vaddr: self.vaddr,
            file_offset: self.file_offset,
            file_size: self.file_size,
        }
    }
}

/// A program's file and segments, as an address space maps them.
#[derive(Clone, Debug)]
pub struct ProgramImage<'f, 's> {
    pub file: &'f [u8],
    pub segments: &'s [SegmentSpec],
    /// The frame holding the file's first byte, when the file starts on a page boundary of the
    /// boot module: then its whole pages are mapped from there, never copied, for reading.
    pub file_first_pfn: Option<Pfn>,
    /// Where brk may move: from the page after the image up to the end of the reservation.
    pub heap: Range<u64>,
}

/// Whole read-only file pages come from the module's frames; a page that is not a whole file page
/// (the last page of a segment, a segment that starts mid-page) would be copied on every fault,
/// so up to this many are copied once per program instead.
pub const PAGE_CACHE_PAGES: usize = 32;

/// Frames every run of a program maps and none owns: the boot module's and the page cache's.
#[derive(Debug)]
pub struct SharedPages {
    module: PfnRange,
    cache: [(u64, Pfn); PAGE_CACHE_PAGES],
    cache_len: usize,
}

impl SharedPages {
    /// Nothing shared yet.
    pub(crate) const fn new() -> SharedPages {
        SharedPages {
            module: PfnRange { start: Pfn(0), count_frames: 0 },
            cache: [(0, Pfn(0)); PAGE_CACHE_PAGES],
            cache_len: 0,
        }
    }

    /// Whether `pfn` belongs to every run (never freed with one, never made writable).
    pub(in crate::mm) fn holds(&self, pfn: Pfn) -> bool {
        self.module.contains(pfn) || self.cache[..self.cache_len].iter().any(|(_, p)| *p == pfn)
    }

    /// The cached frame of page `page`.
    pub(in crate::mm) fn cached(&self, page: u64) -> Option<Pfn> {
        self.cache[..self.cache_len].iter().find(|(p, _)| *p == page).map(|(_, pfn)| *pfn)
    }

    /// Frames the cache holds.
    #[cfg(test)]
    pub(in crate::mm) fn cached_frames(&self) -> usize {
        self.cache_len
    }

    /// Prepares `image`, whose file lies in the boot module's frames `module`: copies its partial
    /// read-only file pages into the cache (past the cache's capacity they are copied per fault).
    pub(crate) fn load<M: XenMmu, R: FrameAccess>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut impl FrameSource,
        module: PfnRange,
        image: &ProgramImage<'_, '_>,
    ) -> Result<(), FrameError> {
        self.module = module;
        for seg in image.segments.iter().filter(|s| !s.prot.write) {
            for page in seg.pages().step_by(PAGE_SIZE as usize) {
                if self.cache_len == PAGE_CACHE_PAGES {
                    return Ok(());
                }
                let contents = seg.backing().page_contents(image.file, page);
                let shared_whole = contents.is_whole_file_page()
                    && image.file_first_pfn.is_some()
                    && page >= seg.vaddr;
                if shared_whole || contents.bytes.is_empty() {
                    continue;
                }
                let pfn = frames.allocate_frame()?;
                let mem = pt.memory_mut();
                mem.zero_frame(pfn);
                mem.write_bytes(pfn, contents.offset_in_page, contents.bytes);
                self.cache[self.cache_len] = (page, pfn);
                self.cache_len += 1;
            }
        }
        Ok(())
    }

    /// Gives the cache's frames back (no run may map them any more).
    pub(crate) fn unload(&mut self, frames: &mut impl FrameSource) -> Result<(), FrameError> {
        let mut result = Ok(());
        for &(_, pfn) in &self.cache[..self.cache_len] {
            result = result.and(frames.free_frame(pfn));
        }
        self.cache_len = 0;
        result
    }
}

impl Default for SharedPages {
    fn default() -> Self {
        Self::new()
    }
}

/// Limits of one address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceLimits {
    /// Frames it may hold: its pages and its page tables.
    pub frames: u64,
    /// Areas it may have at once, after merging.
    pub areas: usize,
}

/// How much a fault maps beyond its own page (both 0: exactly the faulting page).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Fault-around: a read of a shared file page also maps the other shared pages of its aligned
    /// window of this many pages (a power of two, at most [`WINDOW_PAGES_MAX`]) that are not
    /// mapped yet, in the same batch.
    pub fault_around_pages: u64,
    /// Prefault: a zero-fill fault that continues a sequential run (the page after the previous
    /// zero-fill fault, [`PREFAULT_AFTER_RUN`] times in a row) maps up to this many zeroed pages
    /// after it too (same area, same L1, within the limit), in the same batch.
    pub prefault_pages: u64,
}

/// Zero-fill faults in a row, each on the page after the one before, that start prefaulting.
pub const PREFAULT_AFTER_RUN: u32 = 2;

/// The largest fault-around window or prefault run, in pages.
pub const WINDOW_PAGES_MAX: u64 = 64;

/// Why a fault was not resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The access is not allowed there; the region says where it was.
    Forbidden(Region),
    /// The space's frame limit, or the pool, ran out.
    OutOfMemory,
    /// The kernel's own call failed (Xen refused, a frame did not translate).
    Kernel(MmError),
}

/// What resolving a fault did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A fresh zeroed frame, and `ahead` more after it (prefault).
    ZeroFilled { ahead: u64 },
    /// A frame every run shares (module or page cache), mapped read-only, and `around` more of
    /// its window (fault-around).
    Shared { pfn: Pfn, around: u64 },
    /// A private frame filled from the file.
    FileCopy,
    /// A shared page copied to a private one on its first write.
    CopyOnWrite,
    /// A parked frame (kept through PROT_NONE) mapped again.
    Unparked,
    /// Nothing to do: the page was already mapped for this access (a spurious fault).
    AlreadyMapped,
}

/// Why an mmap, munmap, mprotect or brk failed, or a new address space could not be set up.
/// Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The areas' capacity or the address space is exhausted (Linux: ENOMEM).
    NoRoom,
    /// MAP_FIXED_NOREPLACE met a mapping (Linux: EEXIST).
    Exists,
    /// mprotect over pages no area covers (Linux: ENOMEM).
    NotMapped,
    /// The page tables could not be changed.
    Kernel(MmError),
}

impl From<MmError> for MapError {
    fn from(e: MmError) -> Self {
        MapError::Kernel(e)
    }
}

impl From<AreaError> for MapError {
    fn from(e: AreaError) -> Self {
        match e {
            AreaError::Exists => MapError::Exists,
            AreaError::NoRoom | AreaError::Outside | AreaError::NoSpace => MapError::NoRoom,
        }
    }
}

/// Where an mmap goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Anywhere free; the address is a hint (0: none).
    Anywhere { hint: u64 },
    /// MAP_FIXED: exactly here, replacing whatever was there.
    Replace { addr: u64 },
    /// MAP_FIXED_NOREPLACE: exactly here, or [`MapError::Exists`].
    NoReplace { addr: u64 },
}

/// An anonymous private mapping to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    pub placement: Placement,
    /// Whole pages.
    pub len: u64,
    pub prot: Prot,
    /// MAP_POPULATE: map every page now.
    pub populate: bool,
}

/// A user buffer that is not (all) accessible: the syscall's EFAULT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadAddress;

/// The heap memory an address space keeps its records in, allocated and touched before the
/// memory manager's lock is taken: growing the kernel heap, or touching a fresh heap page, takes
/// a page fault, whose handler needs that lock.
#[derive(Debug)]
pub struct Bookkeeping {
    areas: Areas,
    parked: Vec<(u64, Pfn)>,
}

impl Bookkeeping {
    /// Room for `limits.areas` areas and a parked frame per frame of the limit, every page of it
    /// touched now.
    #[cfg(test)]
    pub(in crate::mm) fn new(limits: SpaceLimits) -> Bookkeeping {
        Self::try_new(limits).expect("memory for an address space's records")
    }

    /// [`Bookkeeping::new`], or `None` when the kernel heap cannot hold the records.
    pub(crate) fn try_new(limits: SpaceLimits) -> Option<Bookkeeping> {
        let mut parked = Vec::new();
        parked.try_reserve_exact(limits.frames as usize).ok()?;
        parked.resize(limits.frames as usize, (0, Pfn(0)));
        parked.clear();
        Some(Bookkeeping { areas: Areas::try_with_capacity_touched(limits.areas)?, parked })
    }
}

/// A frame source that counts what passes through it.
struct Counted<'a, F: FrameSource> {
    inner: &'a mut F,
    allocated: u64,
    freed: u64,
}

impl<F: FrameSource> FrameSource for Counted<'_, F> {
    fn allocate_frame(&mut self) -> Result<Pfn, FrameError> {
        let pfn = self.inner.allocate_frame()?;
        self.allocated += 1;
        Ok(pfn)
    }

    fn free_frame(&mut self, pfn: Pfn) -> Result<(), FrameError> {
        self.inner.free_frame(pfn)?;
        self.freed += 1;
        Ok(())
    }

    fn allocate_table(&mut self) -> Result<Pfn, FrameError> {
        let pfn = self.inner.allocate_table()?;
        self.allocated += 1;
        Ok(pfn)
    }
}

/// A process's user address space.
#[derive(Debug)]
pub struct AddressSpace<'f> {
    root: Root,
    file: &'f [u8],
    file_first_pfn: Option<Pfn>,
    areas: Areas,
    heap: Range<u64>,
    brk: u64,
    /// Private frames of PROT_NONE pages, by page, sorted: mapped again on the next allowed
    /// access, freed with the page.
    parked: Vec<(u64, Pfn)>,
    held_frames: u64,
    limits: SpaceLimits,
    tuning: Tuning,
    /// The page of the last zero-fill fault (or the last page it prefaulted).
    last_zero_fill: Option<u64>,
    /// How many zero-fill faults in a row each continued the one before.
    sequential_run: u32,
}

impl<'f> AddressSpace<'f> {
    /// A new address space for `image`: a pinned empty root, the segments and the stack as
    /// areas, an empty heap. Its records live in `bookkeeping` and never grow.
    pub(crate) fn new<M: XenMmu, R: FrameAccess>(
        pt: &mut PageTables<'_, M, R>,
        frames: &mut impl FrameSource,
        image: &ProgramImage<'f, '_>,
        bookkeeping: Bookkeeping,
        limits: SpaceLimits,
    ) -> Result<AddressSpace<'f>, MapError> {
        let Bookkeeping { mut areas, parked } = bookkeeping;
        for seg in image.segments {
            let pages = seg.pages();
            let kind = if seg.prot.exec { AreaKind::Text } else { AreaKind::Data };
            let area = Area {
                start: pages.start,
                end: pages.end,
                prot: seg.prot,
                kind,
                backing: seg.backing(),
            };
            areas.insert(area)?;
        }
        let stack = Area {
            start: STACK.start,
            end: STACK.end,
            prot: Prot::READ_WRITE,
            kind: AreaKind::Stack,
            backing: Backing::Zero,
        };
        areas.insert_reserved(stack)?;
        let mut counted = Counted { inner: frames, allocated: 0, freed: 0 };
        let root = pt.new_user_root(&mut counted).map_err(|e| MapError::Kernel(e.into()))?;
        Ok(AddressSpace {
            root,
            file: image.file,
            file_first_pfn: image.file_first_pfn,
            areas,
            heap: image.heap.clone(),
            brk: image.heap.start,
            parked,
            held_frames: counted.allocated - counted.freed,
            limits,
            tuning: Tuning::default(),
            last_zero_fill: None,
            sequential_run: 0,
        })
    }

    /// Sets how much a fault maps beyond its page; windows are clipped to
    /// [`WINDOW_PAGES_MAX`] and the fault-around window to a power of two.
    pub(crate) fn set_tuning(&mut self, tuning: Tuning) {
        let around = tuning.fault_around_pages.min(WINDOW_PAGES_MAX);
        let around = if around == 0 { 0 } else { 1 << (63 - around.leading_zeros()) };
        self.tuning = Tuning {
            fault_around_pages: around,
            prefault_pages: tuning.prefault_pages.min(WINDOW_PAGES_MAX),
        };
    }

    #[cfg(test)]
    pub(in crate::mm) const fn root(&self) -> Root {
        self.root
    }

    /// Frames this space holds now: private pages, parked pages and page tables.
    pub(crate) const fn held_frames(&self) -> u64 {
        self.held_frames
    }

    /// The areas, for inspection.
    #[cfg(test)]
    pub(in crate::mm) const fn areas(&self) -> &Areas {
        &self.areas
    }

    /// The program break.
    pub(crate) const fn brk(&self) -> u64 {
        self.brk
    }

    /// Makes this the address space Xen uses in user mode on the calling vCPU, which joins the
    /// space's `loaded_on` mask.
    pub(crate) fn activate<M: XenMmu, R: FrameAccess>(
        &self,
        pt: &mut PageTables<'_, M, R>,
    ) -> Result<(), MmError> {
        Ok(pt.set_user_root(Some(self.root))?)
    }

    /// The calling vCPU leaves the space: user base pointer 0 and a local flush of its TLB (one
    /// `mmuext_op`), after which it holds none of the space's translations and leaves the
    /// `loaded_on` mask.
    pub(crate) fn deactivate<M: XenMmu, R: FrameAccess>(
        &self,
        pt: &mut PageTables<'_, M, R>,
    ) -> Result<(), MmError> {
        Ok(pt.unload_user_root()?)
    }

    /// The vCPUs that have the space loaded or may still cache its translations: every flush
    /// the space owes reaches them.
    pub(crate) fn loaded_on<M: XenMmu, R: FrameAccess>(
        &self,
        pt: &PageTables<'_, M, R>,
    ) -> VcpuMask {
        pt.holders(self.root)
    }

    /// Where `addr` lies, as fault reports and expectations name it.
    pub(crate) fn region(&self, addr: u64) -> Region {
        if addr >= 0xffff_8000_0000_0000 {
            return Region::Kernel;
        }
        if addr >= USER_END {
            return Region::NonCanonical;
        }
        if addr < PAGE_SIZE {
            return Region::Null;
        }
        match self.areas.find(addr).map(|a| a.kind) {
            Some(AreaKind::Text) => Region::Text,
            Some(AreaKind::Data) => Region::Data,
            Some(AreaKind::Heap) => Region::Heap,
            Some(AreaKind::Mmap) => Region::Mmap,
            Some(AreaKind::Stack) => Region::Stack,
            None if STACK_GUARD.contains(&addr) => Region::Guard,
            None => Region::Unmapped,
        }
    }

    /// The area `addr` lies in, if the access is allowed there.
    fn allowed(&self, addr: u64, access: Access) -> Option<&Area> {
        let area = self.areas.find(addr)?;
        let ok = match access {
            Access::Read => area.prot.accessible(),
            Access::Write => area.prot.write,
            Access::Execute => area.prot.exec,
        };
        ok.then_some(area)
    }

    // ---- Faults ------------------------------------------------------------------------------

    /// Makes the page of `fault.address` accessible for `fault.access`, as the areas allow:
    /// maps a page from its backing, maps a parked frame again, or copies a shared page before
    /// its first write.
    pub(crate) fn fault<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut F,
        shared: &SharedPages,
        fault: &PageFault,
    ) -> Result<Resolved, Refusal> {
        let addr = fault.address;
        let Some(area) = self.allowed(addr, fault.access).copied() else {
            return Err(Refusal::Forbidden(self.region(addr)));
        };
        let page = page_floor(addr);
        let va = VirtAddr::new(page);
        let mapping = pt.translate(self.root, va).map_err(|e| Refusal::Kernel(e.into()))?;
        let mut counted = Counted { inner: frames, allocated: 0, freed: 0 };
        let result = match mapping {
            Some(m) => self.fault_present(pt, &mut counted, shared, area, va, m, fault.access),
            None => self.fault_missing(pt, &mut counted, shared, area, page, fault.access),
        };
        self.held_frames = self.held_frames + counted.allocated - counted.freed;
        result
    }

    /// A fault on a mapped page: only a write to a shared page the area lets the program write
    /// is legitimate (copy-on-write).
    #[allow(clippy::too_many_arguments)]
    fn fault_present<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut Counted<'_, F>,
        shared: &SharedPages,
        area: Area,
        va: VirtAddr,
        mapping: Mapping,
        access: Access,
    ) -> Result<Resolved, Refusal> {
        let private = !shared.holds(mapping.pfn);
        let lacks = match access {
            Access::Read => false,
            Access::Write => !mapping.flags.contains(PteFlags::WRITABLE),
            Access::Execute => mapping.flags.contains(PteFlags::NO_EXECUTE),
        };
        if !lacks {
            return Ok(Resolved::AlreadyMapped);
        }
        if private || access != Access::Write {
            // The entry grants less than its area (an mprotect that Xen stopped halfway leaves
            // entries narrower than their areas): give it what the area allows. An upgrade owes
            // no flush.
            pt.protect_range(self.root, va, 1, user_flags(area.prot, private))
                .map_err(|e| Refusal::Kernel(e.into()))?;
            return Ok(Resolved::AlreadyMapped);
        }
        self.check_limit(frames, 1)?;
        let copy = frames.allocate_frame().map_err(|_| Refusal::OutOfMemory)?;
        pt.memory_mut().copy_frame(mapping.pfn, copy);
        match pt.replace(self.root, va, copy, user_flags(area.prot, true)) {
            Ok((_shared, flush)) => {
                // The old translation names a frame other runs share. A CPU write fault drops it
                // from the faulting vCPU's TLB (Intel SDM vol. 3A, 4.10.4.1), but the kernel's
                // own write into a user buffer (`write`) copies without any fault, and the
                // program's earlier reads may have cached it: INVLPG.
                pt.flush_tlb(flush).map_err(|e| Refusal::Kernel(e.into()))?;
                Ok(Resolved::CopyOnWrite)
            }
            Err(e) => {
                let _ = frames.free_frame(copy);
                Err(Refusal::Kernel(e.into()))
            }
        }
    }

    fn fault_missing<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut Counted<'_, F>,
        shared: &SharedPages,
        area: Area,
        page: u64,
        access: Access,
    ) -> Result<Resolved, Refusal> {
        let va = VirtAddr::new(page);
        let root = self.root;
        if let Ok(i) = self.parked.binary_search_by_key(&page, |&(p, _)| p) {
            let (_, pfn) = self.parked[i];
            self.check_limit(frames, 0)?;
            pt.map(root, va, pfn, user_flags(area.prot, true), frames).map_err(map_refusal)?;
            self.parked.remove(i);
            return Ok(Resolved::Unparked);
        }
        self.check_limit(frames, 1)?;
        let contents = area.backing.page_contents(self.file, page);
        if access != Access::Write {
            if let Some(pfn) = self.shared_frame(shared, &area, page) {
                return self.map_shared(pt, frames, shared, &area, page, pfn);
            }
        }
        if contents.bytes.is_empty() {
            return self.map_zero_fill(pt, frames, &area, page);
        }
        let pfn = frames.allocate_frame().map_err(|_| Refusal::OutOfMemory)?;
        let mem = pt.memory_mut();
        mem.zero_frame(pfn);
        mem.write_bytes(pfn, contents.offset_in_page, contents.bytes);
        if let Err(e) = pt.map(root, va, pfn, user_flags(area.prot, true), frames) {
            let _ = frames.free_frame(pfn);
            return Err(map_refusal(e));
        }
        Ok(Resolved::FileCopy)
    }

    /// The frame every run shares for `page` of `area`, if it has one: the module's own frame
    /// for a whole file page, else the page cache's.
    fn shared_frame(&self, shared: &SharedPages, area: &Area, page: u64) -> Option<Pfn> {
        let Backing::File { vaddr, file_offset, .. } = area.backing else { return None };
        let contents = area.backing.page_contents(self.file, page);
        match self.file_first_pfn {
            Some(first) if contents.is_whole_file_page() && page >= vaddr => {
                Some(Pfn(first.0 + (file_offset + (page - vaddr)) / PAGE_SIZE))
            }
            _ => shared.cached(page),
        }
    }

    /// Which of the `free.len()` pages from `first` a fault-around or prefault may map:
    /// `free[i]` for the page `i` pages on if it lies in `area` and in `first`'s L1 and is neither
    /// mapped nor parked. One walk to the L1 answers for all of them.
    fn free_pages<M: XenMmu, R: FrameAccess>(
        &self,
        pt: &PageTables<'_, M, R>,
        area: &Area,
        first: u64,
        free: &mut [bool],
    ) {
        if pt.vacant_pages(self.root, VirtAddr::new(first), free).is_err() {
            free.fill(false);
        }
        for (page, slot) in (first..).step_by(PAGE_SIZE as usize).zip(free.iter_mut()) {
            *slot = *slot && area.contains(page) && self.parked_frame(page).is_none();
        }
    }

    /// Maps the shared frame `pfn` at `page`, and with fault-around every other shared page of
    /// its window that is not mapped yet, all in one batch.
    fn map_shared<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut Counted<'_, F>,
        shared: &SharedPages,
        area: &Area,
        page: u64,
        pfn: Pfn,
    ) -> Result<Resolved, Refusal> {
        let flags = user_flags(area.prot, false);
        let mut batch = [(VirtAddr::zero(), Pfn(0), flags); WINDOW_PAGES_MAX as usize];
        batch[0] = (VirtAddr::new(page), pfn, flags);
        let mut count = 1;
        let window_pages = self.tuning.fault_around_pages as usize;
        if window_pages > 1 {
            // The window is aligned to its size, at most 64 pages: inside the faulting page's L1.
            let start = page - page % (window_pages as u64 * PAGE_SIZE);
            let mut free = [false; WINDOW_PAGES_MAX as usize];
            self.free_pages(pt, area, start, &mut free[..window_pages]);
            let pages = (start..).step_by(PAGE_SIZE as usize).zip(&free[..window_pages]);
            for (other, _) in pages.filter(|&(other, &free)| free && other != page) {
                if let Some(other_pfn) = self.shared_frame(shared, area, other) {
                    batch[count] = (VirtAddr::new(other), other_pfn, flags);
                    count += 1;
                }
            }
        }
        match pt.map_batch(self.root, batch[..count].iter().copied(), frames) {
            Ok(()) => Ok(Resolved::Shared { pfn, around: count as u64 - 1 }),
            // Shared frames are nobody's to free: whatever did not get mapped is simply not.
            Err((_, e)) => match pt.translate(self.root, VirtAddr::new(page)) {
                Ok(Some(_)) => Ok(Resolved::Shared { pfn, around: 0 }),
                _ => Err(map_refusal(e)),
            },
        }
    }

    /// Maps a zeroed frame at `page`, and when the fault continues a sequential run, up to the
    /// prefault count of zeroed pages after it, all in one batch.
    fn map_zero_fill<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut Counted<'_, F>,
        area: &Area,
        page: u64,
    ) -> Result<Resolved, Refusal> {
        let flags = user_flags(area.prot, true);
        let continues = self.last_zero_fill.is_some_and(|last| last + PAGE_SIZE == page);
        self.sequential_run = if continues { self.sequential_run + 1 } else { 0 };
        let mut wanted = 1;
        // Two faults in a row that each continue the one before make a sequential pattern; one
        // is not enough: malloc touching the end of one block and the start of the next (musl
        // places large blocks in adjacent mappings) would prefault pages nobody uses.
        if self.sequential_run >= PREFAULT_AFTER_RUN && area.backing == Backing::Zero {
            let room = self.limits.frames.saturating_sub(
                self.held_frames + frames.allocated - frames.freed + FAULT_RESERVE_FRAMES,
            );
            let most = (1 + self.tuning.prefault_pages).min(room).max(1) as usize;
            let mut free = [false; WINDOW_PAGES_MAX as usize + 1];
            self.free_pages(pt, area, page, &mut free[..most]);
            // The faulting page is free; the run ends at the first page that is not.
            wanted = 1 + free[1..most].iter().take_while(|&&free| free).count() as u64;
        }
        let mut batch = [(VirtAddr::zero(), Pfn(0), flags); WINDOW_PAGES_MAX as usize + 1];
        let mut count = 0;
        while count < wanted as usize {
            match frames.allocate_frame() {
                Ok(pfn) => {
                    pt.memory_mut().zero_frame(pfn);
                    batch[count] = (VirtAddr::new(page + count as u64 * PAGE_SIZE), pfn, flags);
                    count += 1;
                }
                Err(_) if count > 0 => break,
                Err(_) => return Err(Refusal::OutOfMemory),
            }
        }
        let mapped = pt.map_batch(self.root, batch[..count].iter().copied(), frames);
        let mut done = count;
        if let Err((_, e)) = mapped {
            // Keep what Xen mapped; give back the frames of the rest.
            done = 0;
            for &(va, pfn, _) in &batch[..count] {
                match pt.translate(self.root, va) {
                    Ok(Some(m)) if m.pfn == pfn => done += 1,
                    _ => {
                        let _ = frames.free_frame(pfn);
                    }
                }
            }
            if done == 0 || !matches!(pt.translate(self.root, batch[0].0), Ok(Some(_))) {
                return Err(map_refusal(e));
            }
        }
        self.last_zero_fill = Some(page + (done as u64 - 1) * PAGE_SIZE);
        Ok(Resolved::ZeroFilled { ahead: done as u64 - 1 })
    }

    /// Room for `pages` more pages and the tables a fault may need, within the space's limit.
    fn check_limit<F: FrameSource>(
        &self,
        frames: &Counted<'_, F>,
        pages: u64,
    ) -> Result<(), Refusal> {
        let held = self.held_frames + frames.allocated - frames.freed;
        if held + pages + FAULT_RESERVE_FRAMES > self.limits.frames {
            return Err(Refusal::OutOfMemory);
        }
        Ok(())
    }

    // ---- User buffers ------------------------------------------------------------------------

    /// Whether every page of `[addr, addr + len)` allows `access`. No side effects: a syscall
    /// checks its buffers with this before it does anything.
    pub(crate) fn check(&self, addr: u64, len: u64, access: Access) -> Result<(), BadAddress> {
        let end = addr.checked_add(len).filter(|&e| e <= USER_END).ok_or(BadAddress)?;
        let mut at = addr;
        while at < end {
            let area = self.allowed(at, access).ok_or(BadAddress)?;
            at = area.end;
        }
        Ok(())
    }

    /// Copies user memory at `addr` into `out`. Never allocates: a page not mapped yet is read
    /// from where it would come from (a parked frame, the file, zeros).
    pub(crate) fn read<M: XenMmu, R: FrameAccess>(
        &self,
        pt: &PageTables<'_, M, R>,
        shared: &SharedPages,
        addr: u64,
        out: &mut [u8],
    ) -> Result<(), BadAddress> {
        self.check(addr, out.len() as u64, Access::Read)?;
        for_each_page(addr, out.len(), |page, offset, range| {
            let chunk = &mut out[range];
            let mapping = pt.translate(self.root, VirtAddr::new(page)).map_err(|_| BadAddress)?;
            let parked = self.parked_frame(page);
            if let Some(pfn) = mapping.map(|m| m.pfn).or(parked) {
                pt.memory().read_bytes(pfn, offset, chunk);
                return Ok(());
            }
            let area = self.areas.find(page).ok_or(BadAddress)?;
            if let Some(pfn) = shared.cached(page).filter(|_| area.backing != Backing::Zero) {
                pt.memory().read_bytes(pfn, offset, chunk);
                return Ok(());
            }
            let contents = area.backing.page_contents(self.file, page);
            for (i, byte) in chunk.iter_mut().enumerate() {
                let at = (offset + i).wrapping_sub(contents.offset_in_page);
                *byte = contents.bytes.get(at).copied().unwrap_or(0);
            }
            Ok(())
        })
    }

    /// Copies `bytes` into user memory at `addr`, faulting pages in (and copying shared ones)
    /// as a write would. The whole buffer is checked first: a bad one changes nothing.
    pub(crate) fn write<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut F,
        shared: &SharedPages,
        addr: u64,
        bytes: &[u8],
    ) -> Result<(), Refusal> {
        if self.check(addr, bytes.len() as u64, Access::Write).is_err() {
            return Err(Refusal::Forbidden(self.region(addr)));
        }
        for_each_page(addr, bytes.len(), |page, offset, range| {
            let va = VirtAddr::new(page);
            for _ in 0..2 {
                match pt.translate(self.root, va).map_err(|e| Refusal::Kernel(e.into()))? {
                    Some(m) if m.flags.contains(PteFlags::WRITABLE) => {
                        pt.memory_mut().write_bytes(m.pfn, offset, &bytes[range]);
                        return Ok(());
                    }
                    Some(_) => {
                        self.fault(pt, frames, shared, &PageFault::user(page, Access::Write, true))?
                    }
                    None => self.fault(
                        pt,
                        frames,
                        shared,
                        &PageFault::user(page, Access::Write, false),
                    )?,
                };
            }
            Err(Refusal::Forbidden(self.region(page)))
        })
    }

    fn parked_frame(&self, page: u64) -> Option<Pfn> {
        self.parked.binary_search_by_key(&page, |&(p, _)| p).ok().map(|i| self.parked[i].1)
    }

    // ---- Changing the layout -----------------------------------------------------------------

    /// brk: moves the break within the heap's reservation and returns the break in force. Growing
    /// into another mapping (a MAP_FIXED one) fails and keeps the old break, as on Linux.
    pub(crate) fn set_brk<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut F,
        shared: &SharedPages,
        requested: u64,
    ) -> Result<u64, MapError> {
        if !(self.heap.start..=self.heap.end).contains(&requested) {
            return Ok(self.brk);
        }
        let old_end = page_ceil(self.brk).unwrap_or(self.brk);
        let new_end = page_ceil(requested).unwrap_or(requested);
        if new_end > old_end {
            let grown = Area {
                start: old_end,
                end: new_end,
                prot: Prot::READ_WRITE,
                kind: AreaKind::Heap,
                backing: Backing::Zero,
            };
            if self.areas.insert(grown).is_err() {
                return Ok(self.brk);
            }
        } else if new_end < old_end {
            if !self.areas.has_room_to_split(&(new_end..old_end)) {
                return Ok(self.brk);
            }
            self.unmap_pages(pt, frames, shared, new_end..old_end)?;
            self.areas.remove(&(new_end..old_end))?;
        }
        self.brk = requested;
        Ok(self.brk)
    }

    /// mmap of anonymous private memory: returns where it went. With `populate` (MAP_POPULATE)
    /// its pages are mapped at once, zeroed, in batches of up to 512 entries, as far as the
    /// space's limit allows (the rest stays demand-paged, as on Linux).
    pub(crate) fn mmap<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut F,
        shared: &SharedPages,
        request: MapRequest,
    ) -> Result<u64, MapError> {
        let MapRequest { placement, len, prot, populate } = request;
        let start = match placement {
            Placement::Anywhere { hint } => {
                self.areas.find_free(len, hint).ok_or(MapError::NoRoom)?
            }
            Placement::Replace { addr } | Placement::NoReplace { addr } => addr,
        };
        let end = start.checked_add(len).ok_or(MapError::NoRoom)?;
        let area = Area { start, end, prot, kind: AreaKind::Mmap, backing: Backing::Zero };
        if let Placement::Replace { .. } = placement {
            // The removal may split two areas and the new one needs a slot: make sure of all
            // of them before anything changes.
            if !self.areas.has_room_to_split(&(start..end))
                || self.areas.len() + 3 > self.areas.capacity()
            {
                return Err(MapError::NoRoom);
            }
            self.unmap_pages(pt, frames, shared, start..end).map_err(MapError::Kernel)?;
            self.areas.remove(&(start..end))?;
        }
        self.areas.insert(area)?;
        if populate && prot.accessible() {
            self.populate(pt, frames, &area).map_err(MapError::Kernel)?;
        }
        Ok(start)
    }

    /// Maps every page of `area` that is not mapped yet to a zeroed frame, one batch per L1.
    fn populate<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut F,
        area: &Area,
    ) -> Result<(), MmError> {
        const L1_SPAN: u64 = 512 * PAGE_SIZE;
        let flags = user_flags(area.prot, true);
        let mut counted = Counted { inner: frames, allocated: 0, freed: 0 };
        let mut chunk = [Pfn(0); 512];
        let mut result = Ok(());
        let mut start = area.start;
        'chunks: while start < area.end {
            let end = (start - start % L1_SPAN + L1_SPAN).min(area.end);
            let mut count = 0;
            let mut vacant = [false; 512];
            let vacant = &mut vacant[..((end - start) / PAGE_SIZE) as usize];
            if pt.vacant_pages(self.root, VirtAddr::new(start), vacant).is_err() {
                vacant.fill(false);
            }
            for &vacant in vacant.iter() {
                let held = self.held_frames + counted.allocated - counted.freed;
                if held + FAULT_RESERVE_FRAMES + 1 > self.limits.frames {
                    break;
                }
                if !vacant {
                    chunk[count] = Pfn(0);
                    count += 1;
                    continue;
                }
                let Ok(pfn) = counted.allocate_frame() else { break };
                pt.memory_mut().zero_frame(pfn);
                chunk[count] = pfn;
                count += 1;
            }
            let pages = (start..).step_by(PAGE_SIZE as usize).zip(&chunk[..count]);
            let batch = pages
                .filter(|(_, pfn)| pfn.0 != 0)
                .map(|(page, &pfn)| (VirtAddr::new(page), pfn, flags));
            if let Err((_, e)) = pt.map_batch(self.root, batch, &mut counted) {
                for (page, &pfn) in (start..).step_by(PAGE_SIZE as usize).zip(&chunk[..count]) {
                    let mapped = pt.translate(self.root, VirtAddr::new(page));
                    if pfn.0 != 0 && !matches!(mapped, Ok(Some(m)) if m.pfn == pfn) {
                        let _ = counted.free_frame(pfn);
                    }
                }
                result = Err(e.into());
                break 'chunks;
            }
            if count as u64 * PAGE_SIZE < end - start {
                break;
            }
            start = end;
        }
        self.held_frames = self.held_frames + counted.allocated - counted.freed;
        result
    }

    /// munmap: removes `range` from the areas and unmaps its pages. Unmapping nothing is fine.
    pub(crate) fn munmap<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut F,
        shared: &SharedPages,
        range: Range<u64>,
    ) -> Result<(), MapError> {
        if !self.areas.has_room_to_split(&range) {
            return Err(MapError::NoRoom);
        }
        self.unmap_pages(pt, frames, shared, range.clone()).map_err(MapError::Kernel)?;
        self.areas.remove(&range)?;
        Ok(())
    }

    /// mprotect: every page of `range` must lie in an area. Mapped pages get the new access
    /// (shared ones stay read-only until copied); PROT_NONE parks private frames.
    pub(crate) fn mprotect<M: XenMmu, R: FrameAccess>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        shared: &SharedPages,
        range: Range<u64>,
        prot: Prot,
    ) -> Result<(), MapError> {
        if !self.areas.covers(&range) {
            return Err(MapError::NotMapped);
        }
        if !self.areas.has_room_to_split(&range) {
            return Err(MapError::NoRoom);
        }
        // Entries never grant more than their area, even when Xen stops an update halfway: what
        // is taken away goes from the tables before the areas, what is granted goes to the areas
        // first. An entry left narrower than its area is widened by its next fault.
        if !prot.accessible() {
            self.park(pt, shared, range.clone()).map_err(MapError::Kernel)?;
            self.areas.protect(&range, prot)?;
            return Ok(());
        }
        let common = self.areas.overlapping(&range).fold(prot, |p, a| Prot {
            read: p.read && a.prot.read,
            write: p.write && a.prot.write,
            exec: p.exec && a.prot.exec,
        });
        let widens = common != prot;
        let (start, pages) = (VirtAddr::new(range.start), (range.end - range.start) / PAGE_SIZE);
        let root = self.root;
        // Shared frames stay read-only whatever the area allows: a write copies them first.
        let set = |pt: &mut PageTables<'_, M, R>, prot: Prot| {
            let flags_of = |pfn| user_flags(prot, !shared.holds(pfn));
            pt.protect_range_by(root, start, pages, &flags_of)
                .map(drop)
                .map_err(|e| MapError::Kernel(e.into()))
        };
        set(pt, common)?;
        self.areas.protect(&range, prot)?;
        if widens {
            set(pt, prot)?;
        }
        Ok(())
    }

    /// PROT_NONE: the entries of `range` go (after their flush), and the private frames they
    /// named are parked, to be mapped again when access comes back.
    fn park<M: XenMmu, R: FrameAccess>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        shared: &SharedPages,
        range: Range<u64>,
    ) -> Result<u64, MmError> {
        let root = self.root;
        for page in range.clone().step_by(PAGE_SIZE as usize) {
            if let Some(m) = pt.translate(root, VirtAddr::new(page))? {
                if !shared.holds(m.pfn) {
                    let at = self.parked.partition_point(|&(p, _)| p < page);
                    self.parked.insert(at, (page, m.pfn));
                }
            }
        }
        let unmapped = unmap_range_at(pt, root, range.clone(), &mut |_| {});
        if unmapped.is_err() {
            // Xen refused a batch, which was undone: what is still mapped is not parked.
            self.parked.retain(|&(page, pfn)| {
                let still = pt.translate(root, VirtAddr::new(page));
                !(range.contains(&page) && matches!(still, Ok(Some(m)) if m.pfn == pfn))
            });
        }
        unmapped
    }

    /// Unmaps every mapped page of `range` and drops its parked frames; private frames go back
    /// to the pool once the flush they owe is issued. Call it before the areas lose `range`:
    /// pages are only ever mapped inside areas, so only their part of `range` is walked.
    fn unmap_pages<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut F,
        shared: &SharedPages,
        range: Range<u64>,
    ) -> Result<(), MmError> {
        let mut counted = Counted { inner: frames, allocated: 0, freed: 0 };
        let mut result = Ok(());
        let spans =
            self.areas.overlapping(&range).map(|a| a.start.max(range.start)..a.end.min(range.end));
        let mut release = |pfn: Pfn| {
            // Shared frames (the module's, the page cache's) belong to every run.
            if !shared.holds(pfn) && counted.free_frame(pfn).is_err() {
                result = Err(MmError::Frame(FrameError::DoubleFree(pfn)));
            }
        };
        let mut unmapped = Ok(());
        for span in spans {
            unmapped = unmap_range_at(pt, self.root, span, &mut release).map(drop);
            if unmapped.is_err() {
                break;
            }
        }
        result = unmapped.and(result);
        let first = self.parked.partition_point(|&(p, _)| p < range.start);
        let last = self.parked.partition_point(|&(p, _)| p < range.end);
        for (_, pfn) in self.parked.drain(first..last) {
            result = result.and(counted.free_frame(pfn).map_err(MmError::Frame));
        }
        self.held_frames -= counted.freed;
        result
    }

    /// Removes the address space: clears the user base pointer, unpins and frees every table
    /// and every private and parked frame. Returns how many frames it held that did not come
    /// back (0 unless accounting is broken). Afterwards the space holds nothing and is dropped.
    ///
    /// Refused with [`MmError::LoadedElsewhere`], changing nothing, while a vCPU other than the
    /// caller has the space loaded (it must [`AddressSpace::deactivate`] first).
    pub(crate) fn teardown<M: XenMmu, R: FrameAccess, F: FrameSource>(
        &mut self,
        pt: &mut PageTables<'_, M, R>,
        frames: &mut F,
        shared: &SharedPages,
    ) -> Result<i64, MmError> {
        let others = self.loaded_on(pt).without(pt.vcpu());
        if !others.is_empty() {
            return Err(MmError::LoadedElsewhere(others));
        }
        let mut counted = Counted { inner: frames, allocated: 0, freed: 0 };
        let mut destroy = |counted: &mut Counted<'_, F>| {
            pt.set_user_root(None)?;
            pt.destroy_user_root(self.root, counted, &|pfn| shared.holds(pfn))
        };
        // A refusal by Xen leaves the root as it was (pinned, its aliases read-only), so the
        // teardown asks again rather than lose the whole space; other errors are final.
        let mut destroyed = destroy(&mut counted);
        for _ in 1..TEARDOWN_ATTEMPTS {
            match destroyed {
                Err(TableError::Hypervisor(_)) => {
                    destroyed = destroy(&mut counted);
                }
                _ => break,
            }
        }
        let mut result = destroyed;
        for (_, pfn) in self.parked.drain(..) {
            result = result.and(counted.free_frame(pfn).map_err(TableError::Frame));
        }
        Ok(result.map(|()| self.held_frames as i64 - counted.freed as i64)?)
    }
}

/// How many times a teardown asks Xen before it reports a refusal (each refused attempt is
/// rolled back completely by `PageTables::destroy_user_root`).
const TEARDOWN_ATTEMPTS: usize = 3;

/// Unmaps the pages of `range` in batches ([`PageTables::unmap_range`]: one walk per L1, one
/// `mmu_update` per 512 entries, each batch's flush before its frames are released) and hands
/// each frame to `release` once its translation is gone from every TLB.
fn unmap_range_at<M: XenMmu, R: FrameAccess>(
    pt: &mut PageTables<'_, M, R>,
    root: Root,
    range: Range<u64>,
    release: &mut impl FnMut(Pfn),
) -> Result<u64, MmError> {
    let pages = (range.end - range.start) / PAGE_SIZE;
    Ok(pt.unmap_range(root, VirtAddr::new(range.start), pages, release)?)
}

/// Calls `each(page, offset_in_page, range_in_buffer)` for every page of `[addr, addr + len)`.
fn for_each_page<E>(
    addr: u64,
    len: usize,
    mut each: impl FnMut(u64, usize, Range<usize>) -> Result<(), E>,
) -> Result<(), E> {
    let end = addr + len as u64;
    let mut at = addr;
    while at < end {
        let page = page_floor(at);
        let chunk_end = end.min(page + PAGE_SIZE);
        each(page, (at - page) as usize, (at - addr) as usize..(chunk_end - addr) as usize)?;
        at = chunk_end;
    }
    Ok(())
}

/// The entry flags of a user page with `prot`; writable only if the frame is the space's own.
fn user_flags(prot: Prot, private: bool) -> PteFlags {
    let mut flags = PteFlags::PRESENT | PteFlags::USER_ACCESSIBLE;
    if prot.write && private {
        flags |= PteFlags::WRITABLE;
    }
    if !prot.exec {
        flags |= PteFlags::NO_EXECUTE;
    }
    flags
}

fn map_refusal(e: impl Into<MmError>) -> Refusal {
    match e.into() {
        MmError::Frame(_) => Refusal::OutOfMemory,
        e => Refusal::Kernel(e),
    }
}
