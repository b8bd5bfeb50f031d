//! Page tables the PV way: walk through the direct map, change entries only through Xen.
//!
//! [`PageTables`] is generic over the seam ([`XenMmu`] + [`FrameAccess`]) and owns the one
//! [`UpdateQueue`]. Every public operation sends at most one `mmu_update` batch for its entries
//! (more only past 512 entries), so a demand fault that needs new L3+L2+L1 tables still costs one
//! hypercall. A missing subtree is built from fresh frames with plain writes (zeroed, chained,
//! leaf filled) while the frames are still ordinary memory; then, in one batch, every writable
//! alias of each new table goes read-only (front of the batch) and the subtree is linked (back).
//! Entries are read through [`FrameAccess`], answering from the queue first (read-your-writes), so
//! nothing reads a stale value while a batch is pending.
//!
//! TLB flushes are [`TlbFlush`] obligations returned by operations that downgrade a present entry;
//! Xen itself flushes when a frame changes type, so making a new table's alias read-only before
//! linking it needs none.
#![deny(unsafe_code)]

use super::addr::{MachineAddr, Mfn, Pfn, VirtAddr, PAGE_SHIFT};
use super::backend::{BatchFailure, FrameAccess, MmuExtOp, MmuUpdate, UvmFlush, XenErrno, XenMmu};
use super::bitmap::{words_for_bits, Bitmap};
use super::frame::{FrameError, FrameSource};
use super::layout::{is_guest_l4_slot, AliasWindow};
use super::p2m::{P2m, P2mError};
use super::pte::{Level, Pte, PteFlags, ENTRIES_PER_TABLE};
use super::queue::{UpdateQueue, QUEUE_CAPACITY};
use super::stats::MmStats;
use crate::trace::{self, Step};

/// Flags of an entry that points to a lower table. Permissions are decided at the leaf.
pub const TABLE_FLAGS: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::USER_ACCESSIBLE)
    .union(PteFlags::ACCESSED);

/// How many alias windows (direct map, Xen's boot mapping) can be tracked.
pub const MAX_ALIAS_WINDOWS: usize = 2;

/// New tables that may still be written with plain stores (created since the last batch was sent).
const FRESH_CAPACITY: usize = 64;

/// Why a page-table operation failed. Nothing here panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// The frame allocator could not help (usually `FrameError::Exhausted`).
    Frame(FrameError),
    /// A frame number did not translate (an entry naming a frame that is not ours, a bad pfn).
    Translation(P2mError),
    /// The address lies in an L4 slot Xen reserves for itself.
    XenSlot(VirtAddr),
    /// A page is already mapped there.
    AlreadyMapped(VirtAddr),
    /// Nothing is mapped there.
    NotMapped(VirtAddr),
    /// The walk met a superpage entry, which this code never creates.
    HugePage(VirtAddr),
    /// The frame is a page table: Xen forbids mapping it writable.
    TableFrameWritable(Pfn),
    /// All alias-window slots are taken.
    TooManyWindows,
    /// Xen refused an `mmu_update` / `mmuext_op` batch (entries before `done` were applied).
    Hypervisor(BatchFailure),
    /// Xen refused a single call.
    HypervisorCall(XenErrno),
}

impl From<FrameError> for MmError {
    fn from(e: FrameError) -> Self {
        MmError::Frame(e)
    }
}

impl From<P2mError> for MmError {
    fn from(e: P2mError) -> Self {
        MmError::Translation(e)
    }
}

/// An address space: its L4 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    pub pfn: Pfn,
    pub mfn: Mfn,
}

/// What a virtual page maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub pfn: Pfn,
    pub flags: PteFlags,
}

/// A TLB flush still owed after a present entry was removed or downgraded.
#[must_use = "a downgraded mapping stays usable through the TLB until the flush is issued"]
#[derive(Debug, PartialEq, Eq)]
pub struct TlbFlush {
    scope: FlushScope,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlushScope {
    Nothing,
    Page(VirtAddr),
    Everything,
}

impl TlbFlush {
    /// Nothing owed.
    pub const fn none() -> Self {
        TlbFlush { scope: FlushScope::Nothing }
    }

    /// The page at `va` must be invalidated.
    pub const fn page(va: VirtAddr) -> Self {
        TlbFlush { scope: FlushScope::Page(va) }
    }

    /// The whole (local) TLB must be flushed.
    pub const fn everything() -> Self {
        TlbFlush { scope: FlushScope::Everything }
    }

    /// Whether a flush is owed at all.
    pub const fn is_needed(&self) -> bool {
        !matches!(self.scope, FlushScope::Nothing)
    }

    /// One obligation covering both.
    pub fn merge(self, other: TlbFlush) -> TlbFlush {
        let scope = match (self.scope, other.scope) {
            (FlushScope::Nothing, s) | (s, FlushScope::Nothing) => s,
            (FlushScope::Page(a), FlushScope::Page(b)) if a == b => FlushScope::Page(a),
            _ => FlushScope::Everything,
        };
        TlbFlush { scope }
    }

    fn into_op(self) -> Option<MmuExtOp> {
        match self.scope {
            FlushScope::Nothing => None,
            FlushScope::Page(va) => Some(MmuExtOp::InvlpgLocal(va)),
            FlushScope::Everything => Some(MmuExtOp::TlbFlushLocal),
        }
    }
}

/// Where a walk for one virtual page ended.
#[derive(Clone, Copy, Debug)]
enum Walk {
    /// All tables exist; `pte` is entry `index` of L1 table `l1` (maybe not present).
    Leaf { l1: Pfn, index: usize, pte: Pte },
    /// Entry `index` of `table` (a table of `level`) is not present.
    Missing { table: Pfn, level: Level, index: usize },
}

/// The tables on the way to one page: `tables[i]` is the table of level `Level::TOP_DOWN[i]`.
#[derive(Clone, Copy, Debug)]
struct Path {
    tables: [Pfn; 4],
}

/// The guest's page tables, driven through Xen.
pub struct PageTables<'a, M: XenMmu, R: FrameAccess> {
    mmu: M,
    mem: R,
    p2m: P2m<'a>,
    kernel_root: Root,
    table_frames: Bitmap<'a>,
    windows: [Option<AliasWindow>; MAX_ALIAS_WINDOWS],
    queue: UpdateQueue,
    fresh: [Pfn; FRESH_CAPACITY],
    fresh_len: usize,
    stats: MmStats,
}

impl<'a, M: XenMmu, R: FrameAccess> PageTables<'a, M, R> {
    /// Bitmap words [`PageTables::new`] needs for a domain of `nr_pages` frames.
    pub const fn bitmap_words(nr_pages: u64) -> usize {
        words_for_bits(nr_pages)
    }

    /// Takes over the live tables under `kernel_l4` (Xen's boot L4, already pinned and active).
    /// Walks them once to learn which frames are tables; `table_bitmap` needs
    /// [`PageTables::bitmap_words`] words.
    pub fn new(
        mmu: M,
        mem: R,
        p2m: P2m<'a>,
        kernel_l4: Pfn,
        table_bitmap: &'a mut [u64],
    ) -> Result<Self, MmError> {
        let nr_pages = p2m.nr_pages();
        let needed_words = words_for_bits(nr_pages);
        let table_frames = Bitmap::new_cleared(table_bitmap, nr_pages)
            .ok_or(MmError::Frame(FrameError::BufferTooSmall { needed_words }))?;
        let kernel_root = Root { pfn: kernel_l4, mfn: p2m.pfn_to_mfn(kernel_l4)? };
        let mut tables = PageTables {
            mmu,
            mem,
            p2m,
            kernel_root,
            table_frames,
            windows: [None; MAX_ALIAS_WINDOWS],
            queue: UpdateQueue::new(),
            fresh: [Pfn(0); FRESH_CAPACITY],
            fresh_len: 0,
            stats: MmStats::default(),
        };
        tables.mark_tables(kernel_l4, Level::L4)?;
        Ok(tables)
    }

    /// The kernel's address space.
    pub const fn kernel_root(&self) -> Root {
        self.kernel_root
    }

    /// The counters for the `stats:` line.
    pub const fn stats(&self) -> &MmStats {
        &self.stats
    }

    /// Whether `pfn` is (as far as this code knows) a page-table frame.
    pub fn is_table(&self, pfn: Pfn) -> bool {
        self.table_frames.get(pfn.0)
    }

    /// The hypervisor backend (tests inspect their model through it).
    pub const fn mmu(&self) -> &M {
        &self.mmu
    }

    /// The frame-access backend.
    pub const fn memory(&self) -> &R {
        &self.mem
    }

    /// The frame-access backend, e.g. to give the kernel's `WindowAccess` the direct map once
    /// [`PageTables::map_window`] built it.
    pub fn memory_mut(&mut self) -> &mut R {
        &mut self.mem
    }

    // ---- Queries ---------------------------------------------------------------------------

    /// What `va` maps to in `root`, if anything.
    pub fn translate(&self, root: Root, va: VirtAddr) -> Result<Option<Mapping>, MmError> {
        match self.walk(root, va)? {
            (Walk::Leaf { pte, .. }, _) if pte.is_present() => {
                Ok(Some(Mapping { pfn: self.p2m.mfn_to_pfn(pte.mfn())?, flags: pte.flags() }))
            }
            _ => Ok(None),
        }
    }

    /// The largest run of pages from `virt_base` that map consecutive frames: Xen's boot mapping
    /// of the image, start_info, p2m list, boot tables and stack is one such window.
    pub fn discover_window(&self, virt_base: VirtAddr) -> Result<Option<AliasWindow>, MmError> {
        let Some(first) = self.translate(self.kernel_root, virt_base)? else { return Ok(None) };
        let mut count_frames = 1;
        while count_frames < self.p2m.nr_pages() {
            let Ok(Some(next)) =
                self.translate(self.kernel_root, virt_base + (count_frames << PAGE_SHIFT))
            else {
                break;
            };
            if next.pfn.0 != first.pfn.0 + count_frames {
                break;
            }
            count_frames += 1;
        }
        Ok(Some(AliasWindow { virt_base, first_pfn: first.pfn, count_frames }))
    }

    // ---- Mapping ---------------------------------------------------------------------------

    /// Maps `va` to `pfn` in `root` with `flags` (PRESENT implied), creating missing tables.
    /// One `mmu_update` batch.
    pub fn map(
        &mut self,
        root: Root,
        va: VirtAddr,
        pfn: Pfn,
        flags: PteFlags,
        frames: &mut impl FrameSource,
    ) -> Result<(), MmError> {
        let queued = self.map_queued(root, va, pfn, flags, frames);
        self.finish(queued)
    }

    /// Maps each `(va, pfn, flags)` of `pages` (none mapped yet), building missing tables, in as
    /// few batches as the queue allows: one for up to 512 entries in one L1, aliases and links of
    /// new tables included. Stops at the first failure; the pages before it stay mapped, and the
    /// error says which page failed through `pages`' position (`Err((index, error))`).
    pub fn map_batch(
        &mut self,
        root: Root,
        pages: impl IntoIterator<Item = (VirtAddr, Pfn, PteFlags)>,
        frames: &mut impl FrameSource,
    ) -> Result<(), (usize, MmError)> {
        let mut queued = Ok(());
        for (i, (va, pfn, flags)) in pages.into_iter().enumerate() {
            if let Err(e) = self.map_queued(root, va, pfn, flags, frames) {
                queued = Err((i, e));
                break;
            }
        }
        let committed = self.commit();
        match (queued, committed) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err((0, e)),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    /// Maps `count_pages` pages from `va` to consecutive frames from `first_pfn`, in as few
    /// batches as the queue allows.
    pub fn map_range(
        &mut self,
        root: Root,
        va: VirtAddr,
        first_pfn: Pfn,
        count_pages: u64,
        flags: PteFlags,
        frames: &mut impl FrameSource,
    ) -> Result<(), MmError> {
        let mut queued = Ok(());
        for i in 0..count_pages {
            queued =
                self.map_queued(root, va + (i << PAGE_SHIFT), Pfn(first_pfn.0 + i), flags, frames);
            if queued.is_err() {
                break;
            }
        }
        self.finish(queued)
    }

    /// Demand paging: takes a frame, zeroes it and maps it at `va`. One `mmu_update` batch.
    pub fn map_zeroed(
        &mut self,
        root: Root,
        va: VirtAddr,
        flags: PteFlags,
        frames: &mut impl FrameSource,
    ) -> Result<Pfn, MmError> {
        let pfn = frames.allocate_frame()?;
        self.mem.zero_frame(pfn);
        trace::step(|| Step::Alloc {
            level: None,
            pfn,
            mfn: self.p2m.pfn_to_mfn(pfn).map_or(0, |m| m.0),
        });
        match self.map(root, va, pfn, flags, frames) {
            Ok(()) => Ok(pfn),
            Err(e) => {
                // The frame was never linked if the walk or the allocator failed; if Xen refused
                // the batch it is not mapped either. Either way it is ours to give back.
                let _ = frames.free_frame(pfn);
                Err(e)
            }
        }
    }

    /// Maps every frame of `window` at its place (read-only for table frames, never executable)
    /// and from then on keeps that alias read-only for every new table. Building the direct map
    /// is `map_window(AliasWindow::direct_map(nr_pages), ..)`.
    pub fn map_window(
        &mut self,
        window: AliasWindow,
        frames: &mut impl FrameSource,
    ) -> Result<(), MmError> {
        self.add_alias_window(window)?;
        self.map_window_part(window, 0, window.count_frames, frames)
    }

    /// Maps frames `first..first + count` of a window already recorded with
    /// [`PageTables::add_alias_window`]. Building a large direct map in ascending parts lets the
    /// tables of each part be written through the parts mapped before it.
    pub fn map_window_part(
        &mut self,
        window: AliasWindow,
        first: u64,
        count: u64,
        frames: &mut impl FrameSource,
    ) -> Result<(), MmError> {
        let root = self.kernel_root;
        let mut queued = Ok(());
        for i in first..(first + count).min(window.count_frames) {
            let pfn = Pfn(window.first_pfn.0 + i);
            let mut flags = PteFlags::PRESENT | PteFlags::NO_EXECUTE;
            if !self.is_table(pfn) {
                flags |= PteFlags::WRITABLE;
            }
            queued =
                self.map_queued(root, window.virt_base + (i << PAGE_SHIFT), pfn, flags, frames);
            if queued.is_err() {
                break;
            }
        }
        self.finish(queued)
    }

    /// Records an existing writable alias window (e.g. Xen's boot mapping, found with
    /// [`PageTables::discover_window`]) whose entries must go read-only for new tables.
    pub fn add_alias_window(&mut self, window: AliasWindow) -> Result<(), MmError> {
        let slot = self.windows.iter_mut().find(|w| w.is_none()).ok_or(MmError::TooManyWindows)?;
        *slot = Some(window);
        Ok(())
    }

    /// Changes the flags of a mapped page. One batch; a flush is owed if access was taken away.
    pub fn protect(
        &mut self,
        root: Root,
        va: VirtAddr,
        flags: PteFlags,
    ) -> Result<TlbFlush, MmError> {
        let (Walk::Leaf { l1, index, pte }, _) = self.walk(root, va)? else {
            return Err(MmError::NotMapped(va));
        };
        if !pte.is_present() {
            return Err(MmError::NotMapped(va));
        }
        let pfn = self.p2m.mfn_to_pfn(pte.mfn())?;
        if flags.contains(PteFlags::WRITABLE) && self.is_table(pfn) {
            return Err(MmError::TableFrameWritable(pfn));
        }
        let new = Pte::new(pte.mfn(), flags | PteFlags::PRESENT);
        let queued = self.set_entry(l1, index, new);
        self.finish(queued)?;
        Ok(if pte.downgraded_by(new) { TlbFlush::page(va) } else { TlbFlush::none() })
    }

    /// Removes the mapping of `va`, returning the frame it mapped. One batch; a flush is owed.
    pub fn unmap(&mut self, root: Root, va: VirtAddr) -> Result<(Pfn, TlbFlush), MmError> {
        let (Walk::Leaf { l1, index, pte }, _) = self.walk(root, va)? else {
            return Err(MmError::NotMapped(va));
        };
        if !pte.is_present() {
            return Err(MmError::NotMapped(va));
        }
        let pfn = self.p2m.mfn_to_pfn(pte.mfn())?;
        let queued = self.set_entry(l1, index, Pte::EMPTY);
        self.finish(queued)?;
        Ok((pfn, TlbFlush::page(va)))
    }

    /// Points the mapped page `va` at another frame `pfn` with `flags` (copy-on-write): one
    /// `mmu_update` entry instead of an unmap and a map. Returns the old frame; the flush is
    /// owed because a present entry changed its frame.
    pub fn replace(
        &mut self,
        root: Root,
        va: VirtAddr,
        pfn: Pfn,
        flags: PteFlags,
    ) -> Result<(Pfn, TlbFlush), MmError> {
        let (Walk::Leaf { l1, index, pte }, _) = self.walk(root, va)? else {
            return Err(MmError::NotMapped(va));
        };
        if !pte.is_present() {
            return Err(MmError::NotMapped(va));
        }
        if flags.contains(PteFlags::WRITABLE) && self.is_table(pfn) {
            return Err(MmError::TableFrameWritable(pfn));
        }
        let old = self.p2m.mfn_to_pfn(pte.mfn())?;
        let new = Pte::new(self.p2m.pfn_to_mfn(pfn)?, flags | PteFlags::PRESENT);
        let queued = self.set_entry(l1, index, new);
        self.finish(queued)?;
        Ok((old, TlbFlush::page(va)))
    }

    /// [`PageTables::unmap`] and its INVLPG in one hypercall: `update_va_mapping` with
    /// UVMF_INVLPG, which Xen applies to the current (kernel) address space. Other roots take
    /// the two-call path.
    pub fn unmap_flushed(&mut self, root: Root, va: VirtAddr) -> Result<Pfn, MmError> {
        self.update_current_leaf(root, va, |_| Some(Pte::EMPTY)).map(|(pfn, _)| pfn)
    }

    /// [`PageTables::protect`] and, if owed, its INVLPG in one hypercall (see
    /// [`PageTables::unmap_flushed`]).
    pub fn protect_flushed(
        &mut self,
        root: Root,
        va: VirtAddr,
        flags: PteFlags,
    ) -> Result<(), MmError> {
        self.update_current_leaf(root, va, |old| {
            Some(Pte::new(old.mfn(), flags | PteFlags::PRESENT))
        })
        .map(|_| ())
    }

    fn update_current_leaf(
        &mut self,
        root: Root,
        va: VirtAddr,
        new: impl Fn(Pte) -> Option<Pte>,
    ) -> Result<(Pfn, Pte), MmError> {
        self.commit()?;
        let (Walk::Leaf { l1, index, pte }, _) = self.walk(root, va)? else {
            return Err(MmError::NotMapped(va));
        };
        let Some(new) = new(pte).filter(|_| pte.is_present()) else {
            return Err(MmError::NotMapped(va));
        };
        let pfn = self.p2m.mfn_to_pfn(pte.mfn())?;
        if new.flags().contains(PteFlags::WRITABLE) && self.is_table(pfn) {
            return Err(MmError::TableFrameWritable(pfn));
        }
        let owed = pte.downgraded_by(new);
        if root != self.kernel_root {
            let queued = self.set_entry(l1, index, new);
            self.finish(queued)?;
            self.flush_tlb(if owed { TlbFlush::page(va) } else { TlbFlush::none() })?;
            return Ok((pfn, new));
        }
        // update_va_mapping walks the current tables, which are the kernel's.
        let uvm_flush = if owed { UvmFlush::InvlpgLocal } else { UvmFlush::None };
        self.stats.update_va_mapping_calls += 1;
        self.stats.tlb_flushes += u64::from(owed);
        self.mmu.update_va_mapping(va, new, uvm_flush).map_err(MmError::HypervisorCall)?;
        Ok((pfn, new))
    }

    /// Issues an owed flush (sending any pending batch first). `mmuext_op` INVLPG or TLB flush.
    pub fn flush_tlb(&mut self, flush: TlbFlush) -> Result<(), MmError> {
        self.commit()?;
        match flush.into_op() {
            Some(op) => {
                self.stats.tlb_flushes += 1;
                self.mmuext(&[op])
            }
            None => Ok(()),
        }
    }

    // ---- Freeing tables ----------------------------------------------------------------------

    /// Frees the tables on the way to `va` that have become empty (L1, then L2, then L3; never
    /// the root): unlink them, flush the TLB, then make their aliases writable again and give the
    /// frames back. Returns how many tables were freed.
    pub fn reclaim_empty_tables(
        &mut self,
        root: Root,
        va: VirtAddr,
        frames: &mut impl FrameSource,
    ) -> Result<u64, MmError> {
        let (Walk::Leaf { .. }, path) = self.walk(root, va)? else { return Ok(0) };
        let mut freed = [(Pfn(0), Level::L1); 3];
        let mut count = 0;
        // tables[3] is the L1, tables[0] the root; emptiness is read through the pending unlinks.
        let mut queued = Ok(());
        for depth in (1..4).rev() {
            let table = path.tables[depth];
            match self.table_is_empty(table) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    queued = Err(e);
                    break;
                }
            }
            let parent_level = Level::TOP_DOWN[depth - 1];
            queued = self.set_entry(path.tables[depth - 1], parent_level.index_of(va), Pte::EMPTY);
            if queued.is_err() {
                break;
            }
            freed[count] = (table, Level::TOP_DOWN[depth]);
            count += 1;
        }
        self.finish(queued)?;
        if count == 0 {
            return Ok(0);
        }
        // Unlinking dropped entries that paging-structure caches may still hold.
        self.flush_tlb(TlbFlush::everything())?;
        // Xen may finish tearing down an unlinked table's type only at the end of the hypercall
        // that unlinked it, so the aliases go writable in a batch of their own.
        let mut queued = Ok(());
        for &(table, _) in &freed[..count] {
            queued = queued.and_then(|()| self.restore_aliases(table));
        }
        self.finish(queued)?;
        for &(table, level) in &freed[..count] {
            self.release_table_frame(table, level, frames)?;
        }
        Ok(count as u64)
    }

    // ---- Other address spaces ------------------------------------------------------------------

    /// A new empty L4 for a process, pinned so that Xen keeps it validated while no CPU uses it.
    /// One `mmu_update` batch (alias downgrades) and one `mmuext_op` (pin).
    pub fn new_user_root(&mut self, frames: &mut impl FrameSource) -> Result<Root, MmError> {
        let pfn = frames.allocate_frame()?;
        let mfn = match self.p2m.pfn_to_mfn(pfn) {
            Ok(mfn) => mfn,
            Err(e) => {
                let _ = frames.free_frame(pfn);
                return Err(e.into());
            }
        };
        self.mem.zero_frame(pfn);
        self.table_frames.set(pfn.0, true);
        let queued = self.downgrade_aliases(pfn);
        self.finish(queued)?;
        self.mmuext(&[MmuExtOp::Pin { level: Level::L4, mfn }])?;
        self.stats.table_allocated(Level::L4);
        Ok(Root { pfn, mfn })
    }

    /// Makes `root` the L4 Xen uses in user mode (`None`: no user address space).
    pub fn set_user_root(&mut self, root: Option<Root>) -> Result<(), MmError> {
        self.commit()?;
        self.mmuext(&[MmuExtOp::NewUserBaseptr(root.map_or(Mfn(0), |r| r.mfn))])
    }

    /// Tears down a process's address space that is no longer in use (not the user base pointer):
    /// unpins it, makes the aliases of all its tables writable again and gives every frame it
    /// maps, and its tables, back to `frames` — except the frames `shared` names (e.g. program
    /// file pages mapped from the boot module, which other runs map too).
    pub fn destroy_user_root(
        &mut self,
        root: Root,
        frames: &mut impl FrameSource,
        shared: &dyn Fn(Pfn) -> bool,
    ) -> Result<(), MmError> {
        self.commit()?;
        self.mmuext(&[MmuExtOp::Unpin(root.mfn)])?;
        let queued = self.restore_subtree_aliases(root.pfn, Level::L4);
        self.finish(queued)?;
        self.free_subtree(root.pfn, Level::L4, frames, shared)
    }

    // ---- The walk --------------------------------------------------------------------------

    /// Walks from `root` to the L1 entry of `va`, reading through pending updates.
    fn walk(&self, root: Root, va: VirtAddr) -> Result<(Walk, Path), MmError> {
        if !is_guest_l4_slot(Level::L4.index_of(va)) {
            return Err(MmError::XenSlot(va));
        }
        let mut path = Path { tables: [root.pfn; 4] };
        let mut table = root.pfn;
        for (depth, level) in Level::TOP_DOWN.into_iter().enumerate() {
            path.tables[depth] = table;
            let index = level.index_of(va);
            let pte = self.entry(table, index)?;
            trace::step(|| Step::Walk { va, level, table, index, entry: pte });
            if level == Level::L1 {
                return Ok((Walk::Leaf { l1: table, index, pte }, path));
            }
            if !pte.is_present() {
                return Ok((Walk::Missing { table, level, index }, path));
            }
            if pte.flags().contains(PteFlags::HUGE_PAGE) {
                return Err(MmError::HugePage(va));
            }
            table = self.p2m.mfn_to_pfn(pte.mfn())?;
        }
        unreachable!("the loop returns at L1")
    }

    /// Entry `index` of `table` as it will be once the pending batch is applied.
    fn entry(&self, table: Pfn, index: usize) -> Result<Pte, MmError> {
        if !self.queue.is_empty() {
            let addr = self.p2m.pfn_to_mfn(table)?.entry_addr(index);
            if let Some(value) = self.queue.pending(addr) {
                return Ok(Pte(value));
            }
        }
        Ok(Pte(self.mem.read_entry(table, index)))
    }

    /// Marks `table` and every table below it (guest L4 slots only) in the table bitmap.
    fn mark_tables(&mut self, table: Pfn, level: Level) -> Result<(), MmError> {
        self.table_frames.set(table.0, true);
        let Some(child_level) = level.child() else { return Ok(()) };
        for index in 0..ENTRIES_PER_TABLE {
            if level == Level::L4 && !is_guest_l4_slot(index) {
                continue;
            }
            let pte = Pte(self.mem.read_entry(table, index));
            if pte.is_present() && !pte.flags().contains(PteFlags::HUGE_PAGE) {
                let child = self.p2m.mfn_to_pfn(pte.mfn())?;
                self.mark_tables(child, child_level)?;
            }
        }
        Ok(())
    }

    fn table_is_empty(&self, table: Pfn) -> Result<bool, MmError> {
        for index in 0..ENTRIES_PER_TABLE {
            if self.entry(table, index)?.is_present() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    // ---- Building subtrees ---------------------------------------------------------------------

    /// Queues the mapping of one page, building any missing tables (see the module doc).
    fn map_queued(
        &mut self,
        root: Root,
        va: VirtAddr,
        pfn: Pfn,
        flags: PteFlags,
        frames: &mut impl FrameSource,
    ) -> Result<(), MmError> {
        let mfn = self.p2m.pfn_to_mfn(pfn)?;
        if flags.contains(PteFlags::WRITABLE) && self.is_table(pfn) {
            return Err(MmError::TableFrameWritable(pfn));
        }
        let leaf = Pte::new(mfn, flags | PteFlags::PRESENT);
        trace::step(|| Step::Leaf { va, pfn, pte: leaf });
        match self.walk(root, va)?.0 {
            Walk::Leaf { pte, .. } if pte.is_present() => Err(MmError::AlreadyMapped(va)),
            Walk::Leaf { l1, index, .. } => {
                if self.is_fresh(l1) {
                    // A table built in this batch is still ordinary memory: a plain store.
                    trace::step(|| Step::Store { level: Level::L1, table: l1, index, value: leaf });
                }
                self.set_entry(l1, index, leaf)
            }
            Walk::Missing { table, level, index } => {
                let top_level = level.child().expect("only L4..L2 entries can be missing");
                // The downgrades and the link must land in the same batch.
                self.reserve(1 + 3 * MAX_ALIAS_WINDOWS)?;
                if self.fresh_len + 3 > FRESH_CAPACITY {
                    self.commit()?;
                }
                let (new_tables, count) = self.build_subtree(top_level, va, leaf, frames)?;
                let top_mfn = self.p2m.pfn_to_mfn(new_tables[0].0)?;
                let link = Pte::new(top_mfn, TABLE_FLAGS);
                self.set_entry(table, index, link)?;
                trace::step(|| {
                    let ptr =
                        self.p2m.pfn_to_mfn(table).map_or(MachineAddr(0), |m| m.entry_addr(index));
                    Step::Link { level, table, index, ptr, value: link }
                });
                for &(table, _) in &new_tables[..count] {
                    self.downgrade_aliases(table)?;
                }
                Ok(())
            }
        }
    }

    /// Allocates, zeroes and chains fresh tables from `top_level` down to L1 for `va`, with `leaf`
    /// written into the L1. Returns them top first. Nothing is queued yet.
    fn build_subtree(
        &mut self,
        top_level: Level,
        va: VirtAddr,
        leaf: Pte,
        frames: &mut impl FrameSource,
    ) -> Result<([(Pfn, Level); 3], usize), MmError> {
        let mut new_tables = [(Pfn(0), Level::L1); 3];
        let mut count = 0;
        let mut level = Some(top_level);
        while let Some(current) = level {
            let pfn = match frames.allocate_frame() {
                Ok(pfn) => pfn,
                Err(e) => {
                    for &(pfn, _) in &new_tables[..count] {
                        self.table_frames.set(pfn.0, false);
                        self.fresh_len -= 1;
                        let _ = frames.free_frame(pfn);
                    }
                    return Err(e.into());
                }
            };
            self.mem.zero_frame(pfn);
            trace::step(|| Step::Alloc {
                level: Some(current),
                pfn,
                mfn: self.p2m.pfn_to_mfn(pfn).map_or(0, |m| m.0),
            });
            self.table_frames.set(pfn.0, true);
            self.fresh[self.fresh_len] = pfn;
            self.fresh_len += 1;
            new_tables[count] = (pfn, current);
            count += 1;
            level = current.child();
        }
        for pair in new_tables[..count].windows(2) {
            let ((parent, parent_level), (child, _)) = (pair[0], pair[1]);
            let child_mfn = self.p2m.pfn_to_mfn(child)?;
            let (index, value) = (parent_level.index_of(va), Pte::new(child_mfn, TABLE_FLAGS));
            self.mem.write_entry(parent, index, value.0);
            trace::step(|| Step::Store { level: parent_level, table: parent, index, value });
        }
        let (l1, index) = (new_tables[count - 1].0, Level::L1.index_of(va));
        self.mem.write_entry(l1, index, leaf.0);
        trace::step(|| Step::Store { level: Level::L1, table: l1, index, value: leaf });
        for &(_, level) in &new_tables[..count] {
            self.stats.table_allocated(level);
        }
        Ok((new_tables, count))
    }

    /// Makes every alias of (new table) `table` read-only, ahead of any link in the batch.
    fn downgrade_aliases(&mut self, table: Pfn) -> Result<(), MmError> {
        for window in self.windows {
            let Some(alias) = window.and_then(|w| w.virt_of(table)) else { continue };
            let Walk::Leaf { l1, index, pte } = self.walk(self.kernel_root, alias)?.0 else {
                continue;
            };
            if !pte.is_present() || !pte.flags().contains(PteFlags::WRITABLE) {
                continue;
            }
            let read_only = Pte(pte.0 & !PteFlags::WRITABLE.bits());
            if self.is_fresh(l1) {
                self.mem.write_entry(l1, index, read_only.0);
                trace::step(|| {
                    let ptr =
                        self.p2m.pfn_to_mfn(l1).map_or(MachineAddr(0), |m| m.entry_addr(index));
                    Step::ReadOnly {
                        table,
                        alias,
                        l1,
                        index,
                        ptr,
                        old: pte,
                        new: read_only,
                        queued: false,
                    }
                });
                continue;
            }
            let addr = self.p2m.pfn_to_mfn(l1)?.entry_addr(index);
            trace::step(|| Step::ReadOnly {
                table,
                alias,
                l1,
                index,
                ptr: addr,
                old: pte,
                new: read_only,
                queued: true,
            });
            if !self.queue.rewrite_pending(addr, read_only.0) {
                if self.queue.is_full() {
                    self.commit()?;
                }
                self.queue.push_front(MmuUpdate::normal(addr, read_only));
            }
        }
        Ok(())
    }

    /// Makes every alias of (no longer a table) `table` writable again, after what is queued.
    fn restore_aliases(&mut self, table: Pfn) -> Result<(), MmError> {
        self.table_frames.set(table.0, false);
        for window in self.windows {
            let Some(alias) = window.and_then(|w| w.virt_of(table)) else { continue };
            let Walk::Leaf { l1, index, pte } = self.walk(self.kernel_root, alias)?.0 else {
                continue;
            };
            if pte.is_present() && !pte.flags().contains(PteFlags::WRITABLE) {
                self.set_entry(l1, index, Pte(pte.0 | PteFlags::WRITABLE.bits()))?;
            }
        }
        Ok(())
    }

    fn restore_subtree_aliases(&mut self, table: Pfn, level: Level) -> Result<(), MmError> {
        if let Some(child_level) = level.child() {
            for index in 0..ENTRIES_PER_TABLE {
                let pte = Pte(self.mem.read_entry(table, index));
                if pte.is_present() && (level != Level::L4 || is_guest_l4_slot(index)) {
                    let child = self.p2m.mfn_to_pfn(pte.mfn())?;
                    self.restore_subtree_aliases(child, child_level)?;
                }
            }
        }
        self.restore_aliases(table)
    }

    fn free_subtree(
        &mut self,
        table: Pfn,
        level: Level,
        frames: &mut impl FrameSource,
        shared: &dyn Fn(Pfn) -> bool,
    ) -> Result<(), MmError> {
        for index in 0..ENTRIES_PER_TABLE {
            let pte = Pte(self.mem.read_entry(table, index));
            if !pte.is_present() || (level == Level::L4 && !is_guest_l4_slot(index)) {
                continue;
            }
            let child = self.p2m.mfn_to_pfn(pte.mfn())?;
            match level.child() {
                Some(child_level) => self.free_subtree(child, child_level, frames, shared)?,
                None if shared(child) => {}
                None => frames.free_frame(child)?,
            }
        }
        self.release_table_frame(table, level, frames)
    }

    fn release_table_frame(
        &mut self,
        table: Pfn,
        level: Level,
        frames: &mut impl FrameSource,
    ) -> Result<(), MmError> {
        self.table_frames.set(table.0, false);
        frames.free_frame(table)?;
        self.stats.table_freed(level);
        Ok(())
    }

    // ---- The queue ---------------------------------------------------------------------------

    /// Writes entry `index` of `table`: a plain store if the table is fresh, else a queued update.
    fn set_entry(&mut self, table: Pfn, index: usize, pte: Pte) -> Result<(), MmError> {
        if self.is_fresh(table) {
            self.mem.write_entry(table, index, pte.0);
            return Ok(());
        }
        let addr = self.p2m.pfn_to_mfn(table)?.entry_addr(index);
        if self.queue.is_full() {
            self.commit()?;
        }
        self.queue.push_back(MmuUpdate::normal(addr, pte));
        Ok(())
    }

    /// Makes room for `entries` more entries in the current batch.
    fn reserve(&mut self, entries: usize) -> Result<(), MmError> {
        if QUEUE_CAPACITY - self.queue.as_slice().len() < entries {
            self.commit()?;
        }
        Ok(())
    }

    fn is_fresh(&self, table: Pfn) -> bool {
        self.fresh[..self.fresh_len].contains(&table)
    }

    /// Sends the pending batch (if any). Tables stop being fresh: from now on Xen may own them.
    fn commit(&mut self) -> Result<(), MmError> {
        self.fresh_len = 0;
        if self.queue.is_empty() {
            return Ok(());
        }
        self.stats.mmu_update_calls += 1;
        self.stats.mmu_update_entries += self.queue.as_slice().len() as u64;
        trace::batch(self.queue.as_slice());
        let result = self.mmu.mmu_update(self.queue.as_slice());
        trace::batch_done(&result, self.queue.as_slice().len());
        self.queue.clear();
        result.map_err(MmError::Hypervisor)
    }

    /// Ends a public operation: sends what was queued even if queuing stopped on an error (so the
    /// state stays what the caller saw succeed), and reports the first error.
    fn finish(&mut self, queued: Result<(), MmError>) -> Result<(), MmError> {
        let committed = self.commit();
        queued.and(committed)
    }

    fn mmuext(&mut self, ops: &[MmuExtOp]) -> Result<(), MmError> {
        self.stats.mmuext_calls += 1;
        self.stats.mmuext_ops += ops.len() as u64;
        self.mmu.mmuext_op(ops).map_err(MmError::Hypervisor)
    }
}
