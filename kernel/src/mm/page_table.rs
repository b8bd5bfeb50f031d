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
//! linking it needs none. Range operations ([`PageTables::unmap_range`],
//! [`PageTables::protect_range`]) walk once per L1, send one batch per 512 entries and issue one
//! flush per batch themselves, handing unmapped frames to the caller only after it.
//!
//! SMP: a user root may be loaded on several vCPUs. The tables record, per vCPU, which user root
//! it has loaded and which one its TLB may still hold ([`PageTables::holders`]); a flush owed by
//! an operation on a user root reaches every holder: the LOCAL ops when the caller is the only
//! one (one vCPU costs what it always did), else `MMUEXT_INVLPG_MULTI` / `MMUEXT_TLB_FLUSH_MULTI`
//! with the holders' mask (a shootdown: Xen flushes them before the hypercall returns). Frames are
//! released after that flush, so no vCPU can reach a frame that went back to the pool. The
//! callers serialise all operations on the tables (the kernel's MM lock).
//!
//! Errors roll back: when Xen stops a batch at entry `done`, the applied entries are undone from
//! the values the queue recorded (links first, then alias downgrades, then a flush if anything
//! present was taken away), and the tables built for the batch go back to the frame allocator.
//! Multi-step operations (new user root, reclaim, teardown) put back their earlier steps too.

use super::addr::{MachineAddr, Mfn, Pfn, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use super::backend::{BatchFailure, FrameAccess, MmuExtOp, UvmFlush, VcpuMask, XenMmu};
use super::bitmap::{words_for_bits, Bitmap};
use super::frame::{FrameError, FrameSource};
use super::kernel_space::{is_guest_l4_slot, AliasWindow};
use super::p2m::{P2m, P2mError};
use super::pte::{Level, Pte, PteFlags, ENTRIES_PER_TABLE};
use super::queue::{UpdateQueue, QUEUE_CAPACITY};
use super::stats::MmStats;
use crate::trace::{self, Step};
use crate::xen::abi::{MmuUpdate, LEGACY_MAX_VCPUS};
use crate::xen::XenError;

/// Flags of an entry that points to a lower table. Permissions are decided at the leaf.
pub(in crate::mm) const TABLE_FLAGS: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::USER_ACCESSIBLE)
    .union(PteFlags::ACCESSED);

/// How many alias windows (direct map, Xen's boot mapping) can be tracked.
pub(in crate::mm) const MAX_ALIAS_WINDOWS: usize = 2;

/// How often an undo (or its flush) is resent after Xen stopped it.
const UNDO_RETRIES: usize = 3;

/// New tables that may still be written with plain stores (created since the last batch was sent).
const FRESH_CAPACITY: usize = 64;

/// Why a page-table operation failed in a way any of them can: the p2m, the walk, the frame
/// allocator or Xen. Each operation adds its own cases in its own type ([`MapToError`],
/// [`UpdateError`]); [`MmError`] is any of them, for callers that only report. Nothing here
/// panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The frame allocator could not help (usually `FrameError::Exhausted`).
    Frame(FrameError),
    /// A frame number did not translate (an entry naming a frame that is not ours, a bad pfn).
    Translation(P2mError),
    /// The address lies in an L4 slot Xen reserves for itself.
    XenSlot(VirtAddr),
    /// The walk met a superpage entry, which this code never creates.
    HugePage(VirtAddr),
    /// Xen refused an `mmu_update` / `mmuext_op` batch (entries before `done` were applied).
    Hypervisor(BatchFailure),
    /// The user root is still loaded on these other vCPUs: it cannot be torn down yet.
    LoadedElsewhere(VcpuMask),
}

/// Why mapping pages (or linking tables back) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapToError {
    Frame(FrameError),
    Translation(P2mError),
    XenSlot(VirtAddr),
    HugePage(VirtAddr),
    Hypervisor(BatchFailure),
    LoadedElsewhere(VcpuMask),
    /// A page is already mapped there.
    AlreadyMapped(VirtAddr),
    /// The frame is a page table: Xen forbids mapping it writable.
    TableFrameWritable(Pfn),
}

/// Why changing or removing mapped pages (protect, unmap, replace, their range and flushed
/// forms) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateError {
    Frame(FrameError),
    Translation(P2mError),
    XenSlot(VirtAddr),
    HugePage(VirtAddr),
    Hypervisor(BatchFailure),
    LoadedElsewhere(VcpuMask),
    /// Nothing is mapped there.
    NotMapped(VirtAddr),
    /// The frame is a page table: Xen forbids mapping it writable.
    TableFrameWritable(Pfn),
    /// Xen refused a single call (`update_va_mapping`).
    HypervisorCall(XenError),
}

/// All alias-window slots are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyWindows;

/// Any page-table failure, for the layers above that only report it (an address space's
/// refusals, a program's start, the kernel's fatal faults). The variants keep their names, so
/// that what the kernel prints stays the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    Frame(FrameError),
    Translation(P2mError),
    XenSlot(VirtAddr),
    HugePage(VirtAddr),
    Hypervisor(BatchFailure),
    LoadedElsewhere(VcpuMask),
    AlreadyMapped(VirtAddr),
    NotMapped(VirtAddr),
    TableFrameWritable(Pfn),
    HypervisorCall(XenError),
}

/// `From<$from> for $to`, case by case under the same names (the match is exhaustive, so a
/// case added to `$from` must be given a place in `$to`).
macro_rules! same_cases {
    ($from:ident => $to:ident: $($case:ident),*) => {
        impl From<$from> for $to {
            fn from(e: $from) -> Self {
                match e {
                    $($from::$case(x) => $to::$case(x),)*
                }
            }
        }
    };
}
same_cases!(TableError => MapToError:
    Frame, Translation, XenSlot, HugePage, Hypervisor, LoadedElsewhere);
same_cases!(TableError => UpdateError:
    Frame, Translation, XenSlot, HugePage, Hypervisor, LoadedElsewhere);
same_cases!(TableError => MmError:
    Frame, Translation, XenSlot, HugePage, Hypervisor, LoadedElsewhere);
same_cases!(MapToError => MmError:
    Frame, Translation, XenSlot, HugePage, Hypervisor, LoadedElsewhere, AlreadyMapped,
    TableFrameWritable);
same_cases!(UpdateError => MmError:
    Frame, Translation, XenSlot, HugePage, Hypervisor, LoadedElsewhere, NotMapped,
    TableFrameWritable, HypervisorCall);

impl From<FrameError> for TableError {
    fn from(e: FrameError) -> Self {
        TableError::Frame(e)
    }
}

impl From<P2mError> for TableError {
    fn from(e: P2mError) -> Self {
        TableError::Translation(e)
    }
}

impl From<FrameError> for MapToError {
    fn from(e: FrameError) -> Self {
        MapToError::Frame(e)
    }
}

impl From<P2mError> for MapToError {
    fn from(e: P2mError) -> Self {
        MapToError::Translation(e)
    }
}

impl From<P2mError> for UpdateError {
    fn from(e: P2mError) -> Self {
        UpdateError::Translation(e)
    }
}

impl From<FrameError> for MmError {
    fn from(e: FrameError) -> Self {
        MmError::Frame(e)
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

/// Up to this many pages, a flush names each page (one `INVLPG_LOCAL` op per page, all in one
/// `mmuext_op`); a flush of more pages is one `TLB_FLUSH_LOCAL`.
///
/// Why 8: an INVLPG costs Xen one op to copy and check plus the instruction (a few hundred cycles
/// each), while a full flush costs one op but then a page walk for every translation the kernel
/// and the process touch next (their hot set is a few dozen pages, and each walk after a full
/// flush misses the paging-structure caches too). Linux measured the crossover natively at 33
/// pages (`tlb_single_page_flush_ceiling`); under PV every INVLPG also pays Xen's op decoding,
/// so the crossover is lower. 8 also bounds the ops of one flush to a small fixed array, and
/// covers the common small cases (a page or two of COW, a small munmap) exactly.
pub(in crate::mm) const INVLPG_MAX_PAGES: u64 = 8;

/// A TLB flush still owed after a present entry was removed or downgraded.
#[must_use = "a downgraded mapping stays usable through the TLB until the flush is issued"]
#[derive(Debug, PartialEq, Eq)]
pub struct TlbFlush {
    scope: FlushScope,
    reach: Reach,
}

/// Whose TLBs a flush must reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// The calling vCPU's (a base-pointer switch, the kernel's own tables).
    Caller,
    /// Every vCPU that may hold translations of the user root with this L4.
    Holders(Mfn),
    /// Every vCPU that may hold translations of any user root, and the caller (the undo of a
    /// refused batch, whose root is not known there).
    AnyUser,
}

/// The vCPUs a flush goes to: the caller alone (the LOCAL ops), or a mask (the MULTI ops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Targets {
    Local,
    Multi(VcpuMask),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlushScope {
    Nothing,
    /// `count` (1..=INVLPG_MAX_PAGES) consecutive pages from the page-aligned `first`.
    Pages {
        first: u64,
        count: u64,
    },
    Everything,
}

/// The `mmuext_op` ops that carry out one [`TlbFlush`].
struct FlushOps {
    ops: [MmuExtOp; INVLPG_MAX_PAGES as usize],
    len: usize,
    /// Whether they are MULTI ops (a shootdown).
    multi: bool,
}

impl TlbFlush {
    /// Nothing owed.
    pub(in crate::mm) const fn none() -> Self {
        TlbFlush { scope: FlushScope::Nothing, reach: Reach::Caller }
    }

    /// The same flush, owed by a change to the tables under `root`: it must reach every vCPU
    /// that may hold `root`'s translations (see [`PageTables::holders`]).
    pub(in crate::mm) const fn of(self, root: Root) -> Self {
        TlbFlush { scope: self.scope, reach: Reach::Holders(root.mfn) }
    }

    /// The same flush, owed by a change whose root is not known: it must reach every vCPU that
    /// may hold any user root's translations, and the caller.
    pub(in crate::mm) const fn of_any_user(self) -> Self {
        TlbFlush { scope: self.scope, reach: Reach::AnyUser }
    }

    /// Takes the flush out, leaving nothing owed to the same vCPUs.
    fn take(&mut self) -> TlbFlush {
        core::mem::replace(self, TlbFlush { scope: FlushScope::Nothing, reach: self.reach })
    }

    /// The page at `va` must be invalidated.
    pub(in crate::mm) const fn page(va: VirtAddr) -> Self {
        TlbFlush::range(va, 1)
    }

    /// The `count_pages` pages from `va` must be invalidated: INVLPG each for up to
    /// [`INVLPG_MAX_PAGES`], else the whole TLB.
    pub(in crate::mm) const fn range(va: VirtAddr, count_pages: u64) -> Self {
        let first = va.as_u64() & !(PAGE_SIZE - 1);
        let scope = match count_pages {
            0 => FlushScope::Nothing,
            count if count <= INVLPG_MAX_PAGES => FlushScope::Pages { first, count },
            _ => FlushScope::Everything,
        };
        TlbFlush { scope, reach: Reach::Caller }
    }

    /// The whole TLB must be flushed.
    pub(in crate::mm) const fn everything() -> Self {
        TlbFlush { scope: FlushScope::Everything, reach: Reach::Caller }
    }

    /// Whether a flush is owed at all.
    #[cfg(test)]
    pub(in crate::mm) const fn is_needed(&self) -> bool {
        !matches!(self.scope, FlushScope::Nothing)
    }

    /// One obligation covering both: the pages between them if that is few enough, else all,
    /// reaching the vCPUs of both.
    pub(in crate::mm) fn merge(self, other: TlbFlush) -> TlbFlush {
        let reach = match (self.reach, other.reach) {
            (Reach::Caller, r) | (r, Reach::Caller) => r,
            (a, b) if a == b => a,
            _ => Reach::AnyUser,
        };
        let scope = match (self.scope, other.scope) {
            (FlushScope::Nothing, s) | (s, FlushScope::Nothing) => s,
            (
                FlushScope::Pages { first: a, count: a_count },
                FlushScope::Pages { first: b, count: b_count },
            ) => {
                let start = a.min(b);
                let end = (a + a_count * PAGE_SIZE).max(b + b_count * PAGE_SIZE);
                let range =
                    TlbFlush::range(VirtAddr::new_truncate(start), (end - start) / PAGE_SIZE);
                return TlbFlush { scope: range.scope, reach };
            }
            _ => FlushScope::Everything,
        };
        TlbFlush { scope, reach }
    }

    /// The ops for `targets`: INVLPG per page or one full flush, LOCAL or MULTI with the mask.
    fn into_ops(self, targets: Targets) -> FlushOps {
        let full = match targets {
            Targets::Local => MmuExtOp::TlbFlushLocal,
            Targets::Multi(mask) => MmuExtOp::TlbFlushMulti(mask),
        };
        let multi = matches!(targets, Targets::Multi(_));
        let mut out = FlushOps { ops: [full; INVLPG_MAX_PAGES as usize], len: 0, multi };
        match self.scope {
            FlushScope::Nothing => {}
            FlushScope::Pages { first, count } => {
                for i in 0..count {
                    let va = VirtAddr::new_truncate(first + i * PAGE_SIZE);
                    out.ops[out.len] = match targets {
                        Targets::Local => MmuExtOp::InvlpgLocal(va),
                        Targets::Multi(mask) => MmuExtOp::InvlpgMulti(va, mask),
                    };
                    out.len += 1;
                }
            }
            FlushScope::Everything => out.len = 1,
        }
        out
    }

    /// Issues the flush on the calling vCPU alone, straight through the seam (one `mmuext_op`,
    /// nothing sent if nothing is owed). For the kernel's #PF handler, which may run while
    /// another operation holds the tables (it must not take their lock) and owes an
    /// invalidation to its own TLB only; the tables' counters do not see it.
    pub(in crate::mm) fn issue_on_caller(self, mmu: &mut impl XenMmu) -> Result<(), BatchFailure> {
        let ops = self.into_ops(Targets::Local);
        if ops.len == 0 {
            return Ok(());
        }
        mmu.mmuext_op(&ops.ops[..ops.len])
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

/// A present leaf entry: entry `index` of L1 table `l1` is `pte`, which maps frame `pfn`.
struct PresentLeaf {
    l1: Pfn,
    index: usize,
    pte: Pte,
    pfn: Pfn,
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
    /// Tables built since the last batch Xen applied: plain-writable, freed if the batch fails.
    fresh: [(Pfn, Level); FRESH_CAPACITY],
    fresh_len: usize,
    /// The fresh tables' batch was refused (and undone) or dropped: they are unreachable and
    /// wait for the operation to free them ([`PageTables::finish_building`]).
    fresh_orphaned: bool,
    /// Per vCPU: the user base pointer, and the user root whose translations its TLB may still
    /// hold (user pages are global under Xen, so they outlive `NEW_USER_BASEPTR`).
    user_root: [Option<Mfn>; LEGACY_MAX_VCPUS],
    user_tlb_root: [Option<Mfn>; LEGACY_MAX_VCPUS],
    stats: MmStats,
}

impl<'a, M: XenMmu, R: FrameAccess> PageTables<'a, M, R> {
    /// Bitmap words [`PageTables::new`] needs for a domain of `nr_pages` frames.
    #[cfg(test)]
    pub(in crate::mm) const fn bitmap_words(nr_pages: u64) -> usize {
        words_for_bits(nr_pages)
    }

    /// Takes over the live tables under `kernel_l4` (Xen's boot L4, already pinned and active).
    /// Walks them once to learn which frames are tables; `table_bitmap` needs
    /// [`PageTables::bitmap_words`] words.
    pub(in crate::mm) fn new(
        mmu: M,
        mem: R,
        p2m: P2m<'a>,
        kernel_l4: Pfn,
        table_bitmap: &'a mut [u64],
    ) -> Result<Self, TableError> {
        let nr_pages = p2m.nr_pages();
        let needed_words = words_for_bits(nr_pages);
        let table_frames = Bitmap::new_cleared(table_bitmap, nr_pages)
            .ok_or(TableError::Frame(FrameError::BufferTooSmall { needed_words }))?;
        let kernel_root = Root { pfn: kernel_l4, mfn: p2m.pfn_to_mfn(kernel_l4)? };
        let mut tables = PageTables {
            mmu,
            mem,
            p2m,
            kernel_root,
            table_frames,
            windows: [None; MAX_ALIAS_WINDOWS],
            queue: UpdateQueue::new(),
            fresh: [(Pfn(0), Level::L1); FRESH_CAPACITY],
            fresh_len: 0,
            fresh_orphaned: false,
            user_root: [None; LEGACY_MAX_VCPUS],
            user_tlb_root: [None; LEGACY_MAX_VCPUS],
            stats: MmStats::default(),
        };
        tables.mark_tables(kernel_l4, Level::L4)?;
        Ok(tables)
    }

    /// The kernel's address space.
    pub(crate) const fn kernel_root(&self) -> Root {
        self.kernel_root
    }

    /// The counters for the `stats:` line.
    pub(crate) const fn stats(&self) -> &MmStats {
        &self.stats
    }

    /// The vCPUs that have the user root `root` loaded or may still hold its translations in
    /// their TLBs (loaded since their last full flush): those a flush owed under `root` must
    /// reach.
    pub(crate) fn holders(&self, root: Root) -> VcpuMask {
        self.holders_of(root.mfn)
    }

    fn holders_of(&self, root: Mfn) -> VcpuMask {
        let mut mask = VcpuMask::EMPTY;
        for (vcpu, held) in self.user_tlb_root.iter().enumerate() {
            if *held == Some(root) || self.user_root[vcpu] == Some(root) {
                mask = mask.with(vcpu);
            }
        }
        mask
    }

    /// The vCPU making the calls.
    pub(crate) fn vcpu(&self) -> usize {
        self.mmu.vcpu()
    }

    /// Whether `pfn` is (as far as this code knows) a page-table frame.
    pub(crate) fn is_table(&self, pfn: Pfn) -> bool {
        self.table_frames.get(pfn.0)
    }

    /// The frame-access backend.
    pub(crate) const fn memory(&self) -> &R {
        &self.mem
    }

    /// The p2m and m2p the tables are read with (the kernel's audit walks them).
    pub(crate) const fn p2m(&self) -> &P2m<'a> {
        &self.p2m
    }

    /// The frame-access backend, e.g. to give the kernel's `WindowAccess` the direct map once
    /// [`PageTables::map_window_part`] built it.
    pub(in crate::mm) fn memory_mut(&mut self) -> &mut R {
        &mut self.mem
    }

    // ---- Queries ---------------------------------------------------------------------------

    /// What `va` maps to in `root`, if anything.
    pub(in crate::mm) fn translate(
        &self,
        root: Root,
        va: VirtAddr,
    ) -> Result<Option<Mapping>, TableError> {
        match self.walk(root, va)? {
            (Walk::Leaf { pte, .. }, _) if pte.is_present() => {
                Ok(Some(Mapping { pfn: self.p2m.mfn_to_pfn(pte.mfn())?, flags: pte.flags() }))
            }
            _ => Ok(None),
        }
    }

    /// Which pages from `first` are not mapped in `root`: `vacant[i]` for the page `i` pages on.
    /// One walk to `first`'s L1 serves them all (a fault-around window or a populate chunk);
    /// pages past the end of that L1 count as taken, and a missing table on the way leaves the
    /// whole L1 vacant.
    pub(in crate::mm) fn vacant_pages(
        &self,
        root: Root,
        first: VirtAddr,
        vacant: &mut [bool],
    ) -> Result<(), TableError> {
        let in_l1 = ENTRIES_PER_TABLE - Level::L1.index_of(first);
        let (walk, _) = self.walk(root, first)?;
        for (i, slot) in vacant.iter_mut().enumerate() {
            *slot = i < in_l1
                && match walk {
                    Walk::Leaf { l1, index, .. } => !self.entry(l1, index + i)?.is_present(),
                    Walk::Missing { .. } => true,
                };
        }
        Ok(())
    }

    /// The largest run of pages from `virt_base` that map consecutive frames: Xen's boot mapping
    /// of the image, start_info, p2m list, boot tables and stack is one such window.
    #[cfg(test)]
    pub(in crate::mm) fn discover_window(
        &self,
        virt_base: VirtAddr,
    ) -> Result<Option<AliasWindow>, TableError> {
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
    pub(in crate::mm) fn map(
        &mut self,
        root: Root,
        va: VirtAddr,
        pfn: Pfn,
        flags: PteFlags,
        frames: &mut impl FrameSource,
    ) -> Result<(), MapToError> {
        let queued = self.map_queued(root, va, pfn, flags, frames, &mut None);
        self.finish_building(queued, frames)
    }

    /// Maps each `(va, pfn, flags)` of `pages` (none mapped yet), building missing tables, in as
    /// few batches as the queue allows: one for up to 512 entries in one L1, aliases and links of
    /// new tables included. Stops at the first failure; the pages before it stay mapped, and the
    /// error says which page failed through `pages`' position (`Err((index, error))`).
    pub(in crate::mm) fn map_batch(
        &mut self,
        root: Root,
        pages: impl IntoIterator<Item = (VirtAddr, Pfn, PteFlags)>,
        frames: &mut impl FrameSource,
    ) -> Result<(), (usize, MapToError)> {
        let mut queued = Ok(());
        let mut near = None;
        for (i, (va, pfn, flags)) in pages.into_iter().enumerate() {
            if let Err(e) = self.map_queued(root, va, pfn, flags, frames, &mut near) {
                queued = Err((i, e));
                break;
            }
        }
        let committed = self.commit();
        if self.fresh_orphaned {
            self.release_fresh_from(0, frames);
        }
        match (queued, committed) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err((0, e.into())),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    /// Maps `count_pages` pages from `va` to consecutive frames from `first_pfn`, in as few
    /// batches as the queue allows.
    #[cfg(test)]
    pub(in crate::mm) fn map_range(
        &mut self,
        root: Root,
        va: VirtAddr,
        first_pfn: Pfn,
        count_pages: u64,
        flags: PteFlags,
        frames: &mut impl FrameSource,
    ) -> Result<(), MapToError> {
        let mut queued = Ok(());
        let mut near = None;
        for i in 0..count_pages {
            let (page, pfn) = (va + (i << PAGE_SHIFT), Pfn(first_pfn.0 + i));
            queued = self.map_queued(root, page, pfn, flags, frames, &mut near);
            if queued.is_err() {
                break;
            }
        }
        self.finish_building(queued, frames)
    }

    /// Demand paging: takes a frame, zeroes it and maps it at `va`. One `mmu_update` batch.
    pub(in crate::mm) fn map_zeroed(
        &mut self,
        root: Root,
        va: VirtAddr,
        flags: PteFlags,
        frames: &mut impl FrameSource,
    ) -> Result<Pfn, MapToError> {
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

    /// Maps frames `first..first + count` of a window already recorded with
    /// [`PageTables::add_alias_window`] at their place (read-only for table frames, never
    /// executable); from then on that alias stays read-only for every new table. Building a large direct map in ascending parts lets the
    /// tables of each part be written through the parts mapped before it.
    pub(in crate::mm) fn map_window_part(
        &mut self,
        window: AliasWindow,
        first: u64,
        count: u64,
        frames: &mut impl FrameSource,
    ) -> Result<(), MapToError> {
        let root = self.kernel_root;
        let mut queued = Ok(());
        for i in first..(first + count).min(window.count_frames) {
            let pfn = Pfn(window.first_pfn.0 + i);
            let mut flags = PteFlags::PRESENT | PteFlags::NO_EXECUTE;
            if !self.is_table(pfn) {
                flags |= PteFlags::WRITABLE;
            }
            let va = window.virt_base + (i << PAGE_SHIFT);
            queued = self.map_queued(root, va, pfn, flags, frames, &mut None);
            if queued.is_err() {
                break;
            }
        }
        self.finish_building(queued, frames)
    }

    /// Records an existing writable alias window (e.g. Xen's boot mapping, found with
    /// [`PageTables::discover_window`]) whose entries must go read-only for new tables.
    pub(in crate::mm) fn add_alias_window(
        &mut self,
        window: AliasWindow,
    ) -> Result<(), TooManyWindows> {
        let slot = self.windows.iter_mut().find(|w| w.is_none()).ok_or(TooManyWindows)?;
        *slot = Some(window);
        Ok(())
    }

    /// Changes the flags of a mapped page. One batch; a flush is owed if access was taken away.
    pub(crate) fn protect(
        &mut self,
        root: Root,
        va: VirtAddr,
        flags: PteFlags,
    ) -> Result<TlbFlush, UpdateError> {
        let PresentLeaf { l1, index, pte, pfn } = self.present_leaf(root, va)?;
        if flags.contains(PteFlags::WRITABLE) && self.is_table(pfn) {
            return Err(UpdateError::TableFrameWritable(pfn));
        }
        let new = Pte::new(pte.mfn(), flags | PteFlags::PRESENT);
        let queued = self.set_entry(l1, index, new);
        self.finish(queued)?;
        Ok(if pte.downgraded_by(new) { TlbFlush::page(va).of(root) } else { TlbFlush::none() })
    }

    /// Removes the mapping of `va`, returning the frame it mapped. One batch; a flush is owed.
    #[cfg(test)]
    pub(in crate::mm) fn unmap(
        &mut self,
        root: Root,
        va: VirtAddr,
    ) -> Result<(Pfn, TlbFlush), UpdateError> {
        let PresentLeaf { l1, index, pfn, .. } = self.present_leaf(root, va)?;
        let queued = self.set_entry(l1, index, Pte::EMPTY);
        self.finish(queued)?;
        Ok((pfn, TlbFlush::page(va).of(root)))
    }

    /// Points the mapped page `va` at another frame `pfn` with `flags` (copy-on-write): one
    /// `mmu_update` entry instead of an unmap and a map. Returns the old frame; the flush is
    /// owed because a present entry changed its frame.
    pub(in crate::mm) fn replace(
        &mut self,
        root: Root,
        va: VirtAddr,
        pfn: Pfn,
        flags: PteFlags,
    ) -> Result<(Pfn, TlbFlush), UpdateError> {
        let PresentLeaf { l1, index, pfn: old, .. } = self.present_leaf(root, va)?;
        if flags.contains(PteFlags::WRITABLE) && self.is_table(pfn) {
            return Err(UpdateError::TableFrameWritable(pfn));
        }
        let new = Pte::new(self.p2m.pfn_to_mfn(pfn)?, flags | PteFlags::PRESENT);
        let queued = self.set_entry(l1, index, new);
        self.finish(queued)?;
        Ok((old, TlbFlush::page(va).of(root)))
    }

    /// Unmaps every mapped page of the `count_pages` pages from `start` (holes are skipped),
    /// walking once per L1 table and sending one `mmu_update` per up to 512 entries. After each
    /// batch it issues that batch's flush (INVLPG per page up to [`INVLPG_MAX_PAGES`] pages,
    /// else one full flush) and only then hands the batch's frames to `release`, so a frame is
    /// never reused while a TLB may still reach it. Returns how many pages were unmapped.
    ///
    /// Empty tables are left in place (see [`PageTables::reclaim_empty_tables`]). On an error,
    /// the batches before it are done; if Xen refused a batch it was undone (its pages stay
    /// mapped). If Xen refuses a flush, that batch is undone too.
    pub(in crate::mm) fn unmap_range(
        &mut self,
        root: Root,
        start: VirtAddr,
        count_pages: u64,
        release: &mut impl FnMut(Pfn),
    ) -> Result<u64, UpdateError> {
        self.update_range(root, start, count_pages, &mut |_| Some(Pte::EMPTY), Some(release))
    }

    /// Gives every mapped page of the `count_pages` pages from `start` the flags `flags`
    /// (PRESENT implied), batched and flushed as [`PageTables::unmap_range`]; pages whose entry
    /// would not change cost nothing. Returns how many entries changed. Refused before anything
    /// is queued for a page if `flags` are writable and the page's frame is a table.
    pub(in crate::mm) fn protect_range(
        &mut self,
        root: Root,
        start: VirtAddr,
        count_pages: u64,
        flags: PteFlags,
    ) -> Result<u64, UpdateError> {
        let leaf_flags = flags | PteFlags::PRESENT;
        let mut change = |old: Pte| Some(Pte::new(old.mfn(), leaf_flags)).filter(|&new| new != old);
        self.update_range(root, start, count_pages, &mut change, None::<&mut fn(Pfn)>)
    }

    /// [`PageTables::protect_range`] with flags chosen per page from the frame it maps (e.g.
    /// writable only where the frame is private to one address space).
    pub(in crate::mm) fn protect_range_by(
        &mut self,
        root: Root,
        start: VirtAddr,
        count_pages: u64,
        flags_of: &dyn Fn(Pfn) -> PteFlags,
    ) -> Result<u64, UpdateError> {
        let p2m = self.p2m;
        let mut change = |old: Pte| {
            let pfn = p2m.mfn_to_pfn(old.mfn()).ok()?;
            Some(Pte::new(old.mfn(), flags_of(pfn) | PteFlags::PRESENT)).filter(|&new| new != old)
        };
        self.update_range(root, start, count_pages, &mut change, None::<&mut fn(Pfn)>)
    }

    /// The engine of the range operations: `change` maps a present leaf to its new value (or
    /// `None`: leave it); with `release`, the pages' frames are handed over after the flush.
    fn update_range(
        &mut self,
        root: Root,
        start: VirtAddr,
        count_pages: u64,
        change: &mut dyn FnMut(Pte) -> Option<Pte>,
        mut release: Option<&mut impl FnMut(Pfn)>,
    ) -> Result<u64, UpdateError> {
        self.commit()?;
        let mut owed = TlbFlush::none().of(root);
        let mut changed = 0;
        let mut page = 0;
        let queued = loop {
            if page >= count_pages {
                break Ok(());
            }
            let va = VirtAddr::new_truncate(start.as_u64() + (page << PAGE_SHIFT));
            let (l1, first_index) = match self.walk(root, va) {
                Ok((Walk::Leaf { l1, index, .. }, _)) => (l1, index),
                Ok((Walk::Missing { level, .. }, _)) => {
                    // Nothing mapped under the missing entry: skip what it would cover.
                    let span = level.entry_span_bytes() >> PAGE_SHIFT;
                    page += span - ((va.as_u64() >> PAGE_SHIFT) % span);
                    continue;
                }
                Err(e) => break Err(e.into()),
            };
            let in_this_l1 = (ENTRIES_PER_TABLE - first_index) as u64;
            let mut failed = None;
            for i in 0..in_this_l1.min(count_pages - page) {
                let index = first_index + i as usize;
                let page_va = VirtAddr::new_truncate(va.as_u64() + (i << PAGE_SHIFT));
                match self.change_leaf(l1, index, page_va, change, &mut owed, &mut release) {
                    Ok(true) => changed += 1,
                    Ok(false) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
            page += in_this_l1;
        };
        // The last batch (or the part queued before an error) is sent, flushed and released.
        let ended = self.end_range_batch(&mut owed, &mut release);
        queued.and(ended.map_err(UpdateError::from)).map(|()| changed)
    }

    /// Queues one leaf change of a range operation, ending the batch first if it is full.
    /// Returns whether the entry changed.
    fn change_leaf(
        &mut self,
        l1: Pfn,
        index: usize,
        va: VirtAddr,
        change: &mut dyn FnMut(Pte) -> Option<Pte>,
        owed: &mut TlbFlush,
        release: &mut Option<&mut impl FnMut(Pfn)>,
    ) -> Result<bool, UpdateError> {
        let old = self.entry(l1, index)?;
        if !old.is_present() {
            return Ok(false);
        }
        let Some(new) = change(old) else { return Ok(false) };
        let pfn = self.p2m.mfn_to_pfn(old.mfn())?;
        if new.flags().contains(PteFlags::WRITABLE) && self.is_table(pfn) {
            return Err(UpdateError::TableFrameWritable(pfn));
        }
        if self.queue.is_full() {
            self.end_range_batch(owed, release)?;
        }
        self.set_entry(l1, index, new)?;
        if old.downgraded_by(new) {
            let flush = owed.take();
            *owed = flush.merge(TlbFlush::page(va));
        }
        Ok(true)
    }

    /// Sends a range operation's batch, issues its one flush, then releases its frames: the
    /// frames the batch's entries named before it (every entry of the batch is this operation's).
    fn end_range_batch(
        &mut self,
        owed: &mut TlbFlush,
        release: &mut Option<&mut impl FnMut(Pfn)>,
    ) -> Result<(), TableError> {
        let flush = owed.take();
        // Undone if refused: the pages stay mapped, nothing to flush or release.
        self.send_batch()?;
        let flushed = self.mmuext_then_flush(&[], flush);
        match (&flushed, release) {
            (Ok(()), Some(release)) => {
                for replaced in self.queue.replaced_values() {
                    if let Ok(pfn) = self.p2m.mfn_to_pfn(Pte(replaced).mfn()) {
                        release(pfn);
                    }
                }
            }
            (Ok(()), None) => {}
            // No flush: the old translations may be cached, so the batch is put back (the pages
            // mapped as before, nothing released).
            (Err(_), _) => {
                let applied = self.queue.as_slice().len();
                let _ = self.undo_applied(applied);
            }
        }
        self.queue.clear();
        flushed
    }

    /// [`PageTables::unmap`] and its INVLPG in one hypercall: `update_va_mapping` with
    /// UVMF_INVLPG, which Xen applies to the current (kernel) address space. Other roots take
    /// the two-call path.
    pub(crate) fn unmap_flushed(&mut self, root: Root, va: VirtAddr) -> Result<Pfn, UpdateError> {
        self.update_current_leaf(root, va, |_| Pte::EMPTY).map(|(pfn, _)| pfn)
    }

    /// [`PageTables::protect`] and, if owed, its INVLPG in one hypercall (see
    /// [`PageTables::unmap_flushed`]).
    #[cfg(test)]
    pub(in crate::mm) fn protect_flushed(
        &mut self,
        root: Root,
        va: VirtAddr,
        flags: PteFlags,
    ) -> Result<(), UpdateError> {
        self.update_current_leaf(root, va, |old| Pte::new(old.mfn(), flags | PteFlags::PRESENT))
            .map(|_| ())
    }

    fn update_current_leaf(
        &mut self,
        root: Root,
        va: VirtAddr,
        new: impl Fn(Pte) -> Pte,
    ) -> Result<(Pfn, Pte), UpdateError> {
        self.commit()?;
        let PresentLeaf { l1, index, pte, pfn } = self.present_leaf(root, va)?;
        let new = new(pte);
        if new.flags().contains(PteFlags::WRITABLE) && self.is_table(pfn) {
            return Err(UpdateError::TableFrameWritable(pfn));
        }
        let owed = pte.downgraded_by(new);
        if root != self.kernel_root {
            let queued = self.set_entry(l1, index, new);
            self.finish(queued)?;
            self.flush_tlb(if owed { TlbFlush::page(va).of(root) } else { TlbFlush::none() })?;
            return Ok((pfn, new));
        }
        // update_va_mapping walks the current tables, which are the kernel's.
        let uvm_flush = if owed { UvmFlush::InvlpgLocal } else { UvmFlush::None };
        self.stats.update_va_mapping_calls += 1;
        self.stats.tlb_flushes += u64::from(owed);
        self.mmu.update_va_mapping(va, new, uvm_flush).map_err(UpdateError::HypervisorCall)?;
        Ok((pfn, new))
    }

    /// Issues an owed flush (sending any pending batch first). `mmuext_op` INVLPG or TLB flush.
    pub(in crate::mm) fn flush_tlb(&mut self, flush: TlbFlush) -> Result<(), TableError> {
        self.commit()?;
        self.mmuext_then_flush(&[], flush)
    }

    // ---- Freeing tables ----------------------------------------------------------------------

    /// Frees the tables on the way to `va` that have become empty (L1, then L2, then L3; never
    /// the root): unlink them, flush the TLB, then make their aliases writable again and give the
    /// frames back. Returns how many tables were freed. If Xen refuses any step, the tables are
    /// linked again with read-only aliases, as they were, and nothing is freed.
    pub(crate) fn reclaim_empty_tables(
        &mut self,
        root: Root,
        va: VirtAddr,
        frames: &mut impl FrameSource,
    ) -> Result<u64, MapToError> {
        self.commit()?;
        let (Walk::Leaf { .. }, path) = self.walk(root, va)? else { return Ok(0) };
        let mut freed = [(Pfn(0), Level::L1); 3];
        let mut count = 0;
        // tables[3] is the L1, tables[0] the root; emptiness is read through the pending unlinks.
        let mut queued: Result<(), TableError> = Ok(());
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
        if let Err(e) = queued {
            self.queue.clear(); // nothing sent: the tables stay as they were
            return Err(e.into());
        }
        self.commit()?;
        if count == 0 {
            return Ok(0);
        }
        // Unlinking dropped entries that paging-structure caches may still hold.
        if let Err(e) = self.flush_tlb(TlbFlush::everything().of(root)) {
            self.relink(root, va, &freed[..count])?;
            return Err(e.into());
        }
        // Xen may finish tearing down an unlinked table's type only at the end of the hypercall
        // that unlinked it, so the aliases go writable in a batch of their own.
        let mut queued: Result<(), TableError> = Ok(());
        for &(table, _) in &freed[..count] {
            queued = queued.and_then(|()| self.restore_aliases(table));
        }
        if let Err(e) = self.finish(queued) {
            // The batch was undone (or never sent): the aliases are read-only, relink.
            for &(table, _) in &freed[..count] {
                self.table_frames.set(table.0, true);
            }
            self.queue.clear();
            self.relink(root, va, &freed[..count])?;
            return Err(e.into());
        }
        for &(table, level) in &freed[..count] {
            self.release_table_frame(table, level, frames)?;
        }
        Ok(count as u64)
    }

    /// Links `tables` (found empty on `va`'s walk, L1 first, and unlinked) back, top first.
    fn relink(
        &mut self,
        root: Root,
        va: VirtAddr,
        tables: &[(Pfn, Level)],
    ) -> Result<(), MapToError> {
        let mut queued: Result<(), TableError> = Ok(());
        for &(table, level) in tables.iter().rev() {
            let (parent, index) = match self.walk(root, va)? {
                (Walk::Missing { table: parent, level: parent_level, index }, _)
                    if parent_level.child() == Some(level) =>
                {
                    (parent, index)
                }
                _ => return Err(MapToError::AlreadyMapped(va)),
            };
            let mfn = self.p2m.pfn_to_mfn(table)?;
            queued = self.set_entry(parent, index, Pte::new(mfn, TABLE_FLAGS));
            if queued.is_err() {
                break;
            }
        }
        Ok(self.finish(queued)?)
    }

    // ---- Other address spaces ------------------------------------------------------------------

    /// A new empty L4 for a process, pinned so that Xen keeps it validated while no CPU uses it.
    /// One `mmu_update` batch (alias downgrades) and one `mmuext_op` (pin). If Xen refuses
    /// either, the aliases are writable again and the frame is back in `frames`.
    pub(in crate::mm) fn new_user_root(
        &mut self,
        frames: &mut impl FrameSource,
    ) -> Result<Root, TableError> {
        self.commit()?;
        let pfn = frames.allocate_table()?;
        let mfn = match self.p2m.pfn_to_mfn(pfn) {
            Ok(mfn) => mfn,
            Err(e) => {
                let _ = frames.free_frame(pfn);
                return Err(e.into());
            }
        };
        self.mem.zero_frame(pfn);
        self.table_frames.set(pfn.0, true);
        self.stats.table_allocated(Level::L4);
        self.stats.user_tables_built += 1;
        self.fresh[0] = (pfn, Level::L4);
        self.fresh_len = 1;
        let queued = self.downgrade_aliases(pfn);
        if queued.is_err() {
            self.queue.clear();
            self.fresh_orphaned = true;
        }
        self.finish_building(queued, frames)?;
        if let Err(e) = self.mmuext(&[MmuExtOp::Pin { level: Level::L4, mfn }]) {
            // Never pinned nor linked: the frame is ordinary memory once its aliases are back.
            let queued = self.restore_aliases(pfn);
            self.finish(queued)?;
            self.table_frames.set(pfn.0, true);
            self.release_table_frame(pfn, Level::L4, frames)?;
            return Err(e);
        }
        Ok(Root { pfn, mfn })
    }

    /// Makes `root` the L4 Xen uses in user mode (`None`: no user address space). Switching to
    /// another root also flushes the TLB, in the same hypercall: Xen maps user pages global and
    /// `NEW_USER_BASEPTR` flushes nothing, so the previous root's translations would otherwise
    /// stay usable under the new one.
    pub(in crate::mm) fn set_user_root(&mut self, root: Option<Root>) -> Result<(), TableError> {
        let vcpu = self.mmu.vcpu();
        let mfn = root.map(|r| r.mfn);
        let switch =
            matches!((self.user_tlb_root[vcpu], mfn), (Some(old), Some(new)) if old != new);
        let flush = if switch { TlbFlush::everything() } else { TlbFlush::none() };
        self.load_user_root(mfn, flush)
    }

    /// Loads user base pointer 0 on the calling vCPU and flushes its TLB, in one `mmuext_op`:
    /// afterwards it holds no user root's translations (see [`PageTables::holders`]).
    pub(in crate::mm) fn unload_user_root(&mut self) -> Result<(), TableError> {
        self.load_user_root(None, TlbFlush::everything())
    }

    /// `NEW_USER_BASEPTR` on the calling vCPU, then `flush` (local), in one hypercall.
    fn load_user_root(&mut self, mfn: Option<Mfn>, flush: TlbFlush) -> Result<(), TableError> {
        self.commit()?;
        let vcpu = self.mmu.vcpu();
        let new = MmuExtOp::NewUserBaseptr(mfn.unwrap_or(Mfn(0)));
        // The base pointer counts as loaded before the flush runs, which then credits it.
        let before = self.user_root[vcpu];
        self.user_root[vcpu] = mfn;
        if let Err(e) = self.mmuext_then_flush(&[new], flush) {
            self.user_root[vcpu] = before;
            if matches!(e, TableError::Hypervisor(BatchFailure { done: 1.., .. })) {
                // Switched but not flushed: the old root's pages would be reachable. Back.
                let old = MmuExtOp::NewUserBaseptr(before.unwrap_or(Mfn(0)));
                self.mmuext(&[old])?;
            }
            return Err(e);
        }
        if mfn.is_some() {
            self.user_tlb_root[vcpu] = mfn;
        }
        Ok(())
    }

    /// Tears down a process's address space that is no longer in use (not the user base pointer):
    /// unpins it, makes the aliases of all its tables writable again, flushes the TLB (the user
    /// space may still cache the root's pages: they are global under Xen) and only then gives
    /// every frame it maps, and its tables, back to `frames` — except the frames `shared` names
    /// (e.g. program file pages mapped from the boot module, which other runs map too).
    ///
    /// No entry is cleared: once unpinned and unreachable the tables are ordinary memory, so the
    /// whole teardown is one unpin, one batch of alias upgrades (one entry per table, not per
    /// page) and one flush. If Xen refuses the batch or the flush, the root is pinned again with
    /// its aliases read-only, as it was.
    pub(in crate::mm) fn destroy_user_root(
        &mut self,
        root: Root,
        frames: &mut impl FrameSource,
        shared: &dyn Fn(Pfn) -> bool,
    ) -> Result<(), TableError> {
        let others = self.holders(root).without(self.mmu.vcpu());
        if !others.is_empty() {
            return Err(TableError::LoadedElsewhere(others));
        }
        self.commit()?;
        self.mmuext(&[MmuExtOp::Unpin(root.mfn)])?;
        let queued = self.restore_subtree_aliases(root.pfn, Level::L4);
        let restored = self.finish(queued);
        let flushed = restored.and_then(|()| self.flush_tlb(TlbFlush::everything().of(root)));
        if let Err(e) = flushed {
            // The failed batch was undone, but restore_aliases already forgot the tables.
            self.mark_tables(root.pfn, Level::L4)?;
            if restored.is_ok() {
                let queued = self.downgrade_subtree_aliases(root.pfn, Level::L4);
                self.finish(queued)?;
            }
            self.mmuext(&[MmuExtOp::Pin { level: Level::L4, mfn: root.mfn }])?;
            return Err(e);
        }
        for held in &mut self.user_tlb_root {
            if *held == Some(root.mfn) {
                *held = None;
            }
        }
        self.free_subtree(root.pfn, Level::L4, frames, shared)
    }

    // ---- The walk --------------------------------------------------------------------------

    /// Walks from `root` to the L1 entry of `va`, reading through pending updates.
    /// The present leaf that maps `va` in `root`, and the frame it maps: `NotMapped` if a table
    /// on the way or the entry itself is missing. The prologue of every single-page update.
    fn present_leaf(&self, root: Root, va: VirtAddr) -> Result<PresentLeaf, UpdateError> {
        let (Walk::Leaf { l1, index, pte }, _) = self.walk(root, va)? else {
            return Err(UpdateError::NotMapped(va));
        };
        if !pte.is_present() {
            return Err(UpdateError::NotMapped(va));
        }
        let pfn = self.p2m.mfn_to_pfn(pte.mfn())?;
        Ok(PresentLeaf { l1, index, pte, pfn })
    }

    fn walk(&self, root: Root, va: VirtAddr) -> Result<(Walk, Path), TableError> {
        walk_with(&self.p2m, root, va, |level, table, index| {
            let pte = self.entry(table, index)?;
            trace::step(|| Step::Walk { va, level, table, index, entry: pte });
            Ok(pte)
        })
    }

    /// Entry `index` of `table` as it will be once the pending batch is applied.
    fn entry(&self, table: Pfn, index: usize) -> Result<Pte, TableError> {
        if !self.queue.is_empty() {
            let addr = self.p2m.pfn_to_mfn(table)?.entry_addr(index);
            if let Some(value) = self.queue.pending(addr) {
                return Ok(Pte(value));
            }
        }
        Ok(Pte(self.mem.read_entry(table, index)))
    }

    /// Marks `table` and every table below it (guest L4 slots only) in the table bitmap.
    fn mark_tables(&mut self, table: Pfn, level: Level) -> Result<(), TableError> {
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

    fn table_is_empty(&self, table: Pfn) -> Result<bool, TableError> {
        for index in 0..ENTRIES_PER_TABLE {
            if self.entry(table, index)?.is_present() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    // ---- Building subtrees ---------------------------------------------------------------------

    /// Queues the mapping of one page, building any missing tables (see the module doc). In a
    /// run of pages, `near` remembers the L1 the previous page went into (the L2 entry's span and
    /// the L1), so that the pages of one L1 cost one walk from the root between them, not one
    /// each; nothing in a batch unlinks a table. A lone page passes `&mut None`.
    fn map_queued(
        &mut self,
        root: Root,
        va: VirtAddr,
        pfn: Pfn,
        flags: PteFlags,
        frames: &mut impl FrameSource,
        near: &mut Option<(u64, Pfn)>,
    ) -> Result<(), MapToError> {
        let mfn = self.p2m.pfn_to_mfn(pfn)?;
        if flags.contains(PteFlags::WRITABLE) && self.is_table(pfn) {
            return Err(MapToError::TableFrameWritable(pfn));
        }
        let leaf = Pte::new(mfn, flags | PteFlags::PRESENT);
        trace::step(|| Step::Leaf { va, pfn, pte: leaf });
        let span = va.as_u64() / Level::L2.entry_span_bytes();
        if let Some((near_span, l1)) = *near {
            if near_span == span {
                return self.set_leaf(l1, Level::L1.index_of(va), va, leaf);
            }
        }
        match self.walk(root, va)?.0 {
            Walk::Leaf { l1, index, .. } => {
                self.set_leaf(l1, index, va, leaf)?;
                *near = Some((span, l1));
                Ok(())
            }
            Walk::Missing { table, level, index } => {
                let top_level = level.child().expect("only L4..L2 entries can be missing");
                // The downgrades and the link must land in the same batch.
                self.reserve(1 + 3 * MAX_ALIAS_WINDOWS)?;
                if self.fresh_len + 3 > FRESH_CAPACITY {
                    self.commit()?;
                }
                let built_before = self.fresh_len;
                let (new_tables, count) = match self.build_subtree(top_level, va, leaf, frames) {
                    Ok(built) => built,
                    Err(e) => {
                        // Nothing queued refers to this page's tables yet: free just them.
                        self.release_fresh_from(built_before, frames);
                        return Err(e.into());
                    }
                };
                if root != self.kernel_root {
                    self.stats.user_tables_built += count as u64;
                }
                let linked = self.link_subtree(table, level, index, &new_tables[..count]);
                if linked.is_err() {
                    // The batch may hold a link without its downgrades: drop it whole, unsent.
                    self.queue.clear();
                    self.fresh_orphaned = true;
                }
                *near = linked.is_ok().then_some((span, new_tables[count - 1].0));
                Ok(linked?)
            }
        }
    }

    /// Queues `leaf` into entry `index` of `l1`, the entry of `va`, which must not be present.
    fn set_leaf(
        &mut self,
        l1: Pfn,
        index: usize,
        va: VirtAddr,
        leaf: Pte,
    ) -> Result<(), MapToError> {
        let old = self.entry(l1, index)?;
        if old.is_present() {
            return Err(MapToError::AlreadyMapped(va));
        }
        if self.is_fresh(l1) {
            // A table built in this batch is still ordinary memory: a plain store.
            trace::step(|| Step::Store { level: Level::L1, table: l1, index, value: leaf });
        }
        Ok(self.set_entry_over(l1, index, leaf, old)?)
    }

    /// Queues the link of a new subtree (top table first in `new_tables`) into entry `index` of
    /// `table` (a table of `level`), and the downgrades of the new tables' aliases.
    fn link_subtree(
        &mut self,
        table: Pfn,
        level: Level,
        index: usize,
        new_tables: &[(Pfn, Level)],
    ) -> Result<(), TableError> {
        let top_mfn = self.p2m.pfn_to_mfn(new_tables[0].0)?;
        let link = Pte::new(top_mfn, TABLE_FLAGS);
        self.set_entry(table, index, link)?;
        trace::step(|| {
            let ptr = self.p2m.pfn_to_mfn(table).map_or(MachineAddr(0), |m| m.entry_addr(index));
            Step::Link { level, table, index, ptr, value: link }
        });
        for &(table, _) in new_tables {
            self.downgrade_aliases(table)?;
        }
        Ok(())
    }

    /// Allocates, zeroes and chains fresh tables from `top_level` down to L1 for `va`, with `leaf`
    /// written into the L1. Returns them top first. Nothing is queued yet.
    fn build_subtree(
        &mut self,
        top_level: Level,
        va: VirtAddr,
        leaf: Pte,
        frames: &mut impl FrameSource,
    ) -> Result<([(Pfn, Level); 3], usize), TableError> {
        let mut new_tables = [(Pfn(0), Level::L1); 3];
        let mut count = 0;
        let mut level = Some(top_level);
        while let Some(current) = level {
            // On failure the tables taken so far are fresh: the failed operation frees them.
            let pfn = frames.allocate_table()?;
            self.mem.zero_frame(pfn);
            trace::step(|| Step::Alloc {
                level: Some(current),
                pfn,
                mfn: self.p2m.pfn_to_mfn(pfn).map_or(0, |m| m.0),
            });
            self.table_frames.set(pfn.0, true);
            self.stats.table_allocated(current);
            self.fresh[self.fresh_len] = (pfn, current);
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
        Ok((new_tables, count))
    }

    /// Makes every alias of (new table) `table` read-only, ahead of any link in the batch.
    fn downgrade_aliases(&mut self, table: Pfn) -> Result<(), TableError> {
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
                self.queue.push_front(MmuUpdate::normal(addr, read_only), pte.0);
            }
        }
        Ok(())
    }

    /// Makes every alias of (no longer a table) `table` writable again, after what is queued.
    fn restore_aliases(&mut self, table: Pfn) -> Result<(), TableError> {
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

    fn restore_subtree_aliases(&mut self, table: Pfn, level: Level) -> Result<(), TableError> {
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

    /// Makes the aliases of `table` and every table below it read-only again.
    fn downgrade_subtree_aliases(&mut self, table: Pfn, level: Level) -> Result<(), TableError> {
        if let Some(child_level) = level.child() {
            for index in 0..ENTRIES_PER_TABLE {
                let pte = Pte(self.mem.read_entry(table, index));
                if pte.is_present() && (level != Level::L4 || is_guest_l4_slot(index)) {
                    let child = self.p2m.mfn_to_pfn(pte.mfn())?;
                    self.downgrade_subtree_aliases(child, child_level)?;
                }
            }
        }
        self.downgrade_aliases(table)
    }

    fn free_subtree(
        &mut self,
        table: Pfn,
        level: Level,
        frames: &mut impl FrameSource,
        shared: &dyn Fn(Pfn) -> bool,
    ) -> Result<(), TableError> {
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
    ) -> Result<(), TableError> {
        self.table_frames.set(table.0, false);
        frames.free_frame(table)?;
        self.stats.table_freed(level);
        Ok(())
    }

    // ---- The queue ---------------------------------------------------------------------------

    /// Writes entry `index` of `table`: a plain store if the table is fresh, else a queued update.
    fn set_entry(&mut self, table: Pfn, index: usize, pte: Pte) -> Result<(), TableError> {
        let replaced = if self.is_fresh(table) { Pte::EMPTY } else { self.entry(table, index)? };
        self.set_entry_over(table, index, pte, replaced)
    }

    /// [`PageTables::set_entry`] where the caller has just read the entry (`replaced`). Sending
    /// a full batch first does not change it: the batch makes true what the read answered.
    fn set_entry_over(
        &mut self,
        table: Pfn,
        index: usize,
        pte: Pte,
        replaced: Pte,
    ) -> Result<(), TableError> {
        if self.is_fresh(table) {
            self.mem.write_entry(table, index, pte.0);
            return Ok(());
        }
        let addr = self.p2m.pfn_to_mfn(table)?.entry_addr(index);
        if self.queue.is_full() {
            self.commit()?;
        }
        self.queue.push_back(MmuUpdate::normal(addr, pte), replaced.0);
        Ok(())
    }

    /// Makes room for `entries` more entries in the current batch.
    fn reserve(&mut self, entries: usize) -> Result<(), TableError> {
        if QUEUE_CAPACITY - self.queue.as_slice().len() < entries {
            self.commit()?;
        }
        Ok(())
    }

    fn is_fresh(&self, table: Pfn) -> bool {
        self.fresh[..self.fresh_len].iter().any(|&(pfn, _)| pfn == table)
    }

    /// Sends the pending batch (if any). Once Xen applied it, its new tables stop being fresh:
    /// from now on Xen owns them. If Xen stops part-way, the applied entries are undone
    /// ([`PageTables::undo_applied`]) and the new tables stay fresh, for the operation to free.
    fn commit(&mut self) -> Result<(), TableError> {
        self.send_batch()?;
        self.queue.clear();
        Ok(())
    }

    /// [`PageTables::commit`], but an applied batch stays in the queue (for the caller to read
    /// what it replaced, then clear).
    fn send_batch(&mut self) -> Result<(), TableError> {
        if self.queue.is_empty() {
            if !self.fresh_orphaned {
                self.fresh_len = 0;
            }
            return Ok(());
        }
        self.stats.mmu_update_calls += 1;
        self.stats.mmu_update_entries += self.queue.as_slice().len() as u64;
        trace::batch(self.queue.as_slice());
        let result = self.mmu.mmu_update(self.queue.as_slice());
        trace::batch_done(&result, self.queue.as_slice().len());
        match result {
            Ok(()) => {
                self.fresh_len = 0;
                Ok(())
            }
            Err(failure) => {
                // If the undo itself fails the tables are in an unknown state: report the first
                // error anyway; nothing is freed then (leaked, never reused while reachable).
                let undone = self.undo_applied(failure.done);
                self.queue.clear();
                if undone.is_ok() {
                    self.fresh_orphaned = true;
                } else {
                    self.fresh_len = 0;
                }
                Err(TableError::Hypervisor(failure))
            }
        }
    }

    /// Puts back what entries `0..done` of the pending batch changed, so that a batch Xen stopped
    /// at entry `done` leaves the tables as they were. Two steps, as when tables are freed: the
    /// non-downgrade entries first (links undone: new tables unreachable again), then, in a
    /// hypercall of its own, the alias downgrades (aliases writable again, once Xen has torn down
    /// the unlinked tables' types at the end of the previous call). Then, if an undo removed or
    /// narrowed a present entry, one full flush, so that no frame the batch mapped stays cached.
    fn undo_applied(&mut self, done: usize) -> Result<(), TableError> {
        const CHUNK: usize = 32;
        let front = self.queue.front_len();
        let mut owed = false;
        for (from, to) in [(front, done), (0, done.min(front))] {
            if from >= to {
                continue;
            }
            let mut chunk = [MmuUpdate::default(); CHUNK];
            let mut len = 0;
            for (undo, applied) in self.queue.undo(from, to) {
                owed |= Pte(applied).downgraded_by(Pte(undo.val));
                chunk[len] = undo;
                len += 1;
                if len == CHUNK {
                    Self::send_undo(&mut self.mmu, &mut self.stats, &chunk[..len])?;
                    len = 0;
                }
            }
            Self::send_undo(&mut self.mmu, &mut self.stats, &chunk[..len])?;
        }
        if owed {
            // The batch's root is not known here: every vCPU that may hold a user root's
            // translations (one vCPU: the caller, locally).
            let mut flushed = self.mmuext_then_flush(&[], TlbFlush::everything().of_any_user());
            for _ in 0..UNDO_RETRIES {
                if flushed.is_ok() {
                    break;
                }
                flushed = self.mmuext_then_flush(&[], TlbFlush::everything().of_any_user());
            }
            flushed?;
        }
        Ok(())
    }

    /// Sends undo entries, resending from where Xen stopped a few times: each entry puts back a
    /// value Xen accepted before, so only a transient failure (e.g. -ENOMEM while revalidating a
    /// table) can stop one, and giving up would leave the tables half undone.
    fn send_undo(
        mmu: &mut M,
        stats: &mut MmStats,
        updates: &[MmuUpdate],
    ) -> Result<(), TableError> {
        let mut from = 0;
        let mut retries = 0;
        while from < updates.len() {
            stats.mmu_update_calls += 1;
            stats.mmu_update_entries += (updates.len() - from) as u64;
            match mmu.mmu_update(&updates[from..]) {
                Ok(()) => return Ok(()),
                Err(failure) if retries < UNDO_RETRIES => {
                    from += failure.done;
                    retries += 1;
                }
                Err(failure) => return Err(TableError::Hypervisor(failure)),
            }
        }
        Ok(())
    }

    /// Ends a public operation: sends what was queued even if queuing stopped on an error (so the
    /// state stays what the caller saw succeed), and reports the first error.
    fn finish<E: From<TableError>>(&mut self, queued: Result<(), E>) -> Result<(), E> {
        let committed = self.commit().map_err(E::from);
        queued.and(committed)
    }

    /// Ends an operation that may have built tables: sends what was queued (even if queuing
    /// stopped on an error: the pages before it stay mapped), then frees the tables whose batch
    /// Xen refused (undone by [`PageTables::commit`]) or that were dropped unsent: they are
    /// unreachable and their aliases writable again.
    fn finish_building<E: From<TableError>>(
        &mut self,
        queued: Result<(), E>,
        frames: &mut impl FrameSource,
    ) -> Result<(), E> {
        let committed = self.commit().map_err(E::from);
        if self.fresh_orphaned {
            self.release_fresh_from(0, frames);
        }
        queued.and(committed)
    }

    /// Frees the fresh tables from position `from` on (never applied, or undone).
    fn release_fresh_from(&mut self, from: usize, frames: &mut impl FrameSource) {
        for i in from..self.fresh_len {
            let (table, level) = self.fresh[i];
            // A frame the allocator refuses back was not ours to begin with: nothing to leak.
            let _ = self.release_table_frame(table, level, frames);
        }
        self.fresh_len = from;
        if from == 0 {
            self.fresh_orphaned = false;
        }
    }

    /// One `mmuext_op` with `ops` and then the ops of `flush` (nothing sent if both are empty).
    fn mmuext_then_flush(&mut self, ops: &[MmuExtOp], flush: TlbFlush) -> Result<(), TableError> {
        const MAX_OPS: usize = 2;
        debug_assert!(ops.len() <= MAX_OPS);
        let full = flush.scope == FlushScope::Everything;
        let caller = self.mmu.vcpu();
        let targets = self.targets(flush.reach, caller);
        let flush_ops = flush.into_ops(targets);
        let mut all = [flush_ops.ops[0]; MAX_OPS + INVLPG_MAX_PAGES as usize];
        all[..ops.len()].copy_from_slice(ops);
        let len = ops.len() + flush_ops.len;
        all[ops.len()..len].copy_from_slice(&flush_ops.ops[..flush_ops.len]);
        if len == 0 {
            return Ok(());
        }
        self.mmuext(&all[..len])?;
        if flush_ops.len > 0 {
            self.stats.tlb_flushes += 1;
        }
        if flush_ops.multi {
            self.stats.tlb_shootdowns += flush_ops.len as u64;
        }
        if full {
            let flushed = match targets {
                Targets::Local => VcpuMask::single(caller),
                Targets::Multi(mask) => mask,
            };
            for vcpu in flushed.iter().filter(|&v| v < LEGACY_MAX_VCPUS) {
                self.user_tlb_root[vcpu] = self.user_root[vcpu];
            }
        }
        Ok(())
    }

    /// Where a flush that must reach `reach` goes: LOCAL when no vCPU but the caller needs it
    /// (exactly the ops of a one-vCPU kernel), else MULTI to every vCPU that does.
    fn targets(&self, reach: Reach, caller: usize) -> Targets {
        let mask = match reach {
            Reach::Caller => return Targets::Local,
            Reach::Holders(mfn) => self.holders_of(mfn),
            Reach::AnyUser => {
                let mut mask = VcpuMask::single(caller);
                for (vcpu, held) in self.user_tlb_root.iter().enumerate() {
                    if held.is_some() || self.user_root[vcpu].is_some() {
                        mask = mask.with(vcpu);
                    }
                }
                mask
            }
        };
        if mask.without(caller).is_empty() {
            Targets::Local
        } else {
            Targets::Multi(mask)
        }
    }

    fn mmuext(&mut self, ops: &[MmuExtOp]) -> Result<(), TableError> {
        self.stats.mmuext_calls += 1;
        self.stats.mmuext_ops += ops.len() as u64;
        self.mmu.mmuext_op(ops).map_err(TableError::Hypervisor)
    }
}

/// The walk from `root` to the L1 entry of `va`, reading each entry on the way with `read`
/// (level, table, index): through the pending batch for [`PageTables`], straight from memory
/// for [`live_rights`].
fn walk_with(
    p2m: &P2m<'_>,
    root: Root,
    va: VirtAddr,
    mut read: impl FnMut(Level, Pfn, usize) -> Result<Pte, TableError>,
) -> Result<(Walk, Path), TableError> {
    if !is_guest_l4_slot(Level::L4.index_of(va)) {
        return Err(TableError::XenSlot(va));
    }
    let mut path = Path { tables: [root.pfn; 4] };
    let mut table = root.pfn;
    for (depth, level) in Level::TOP_DOWN.into_iter().enumerate() {
        path.tables[depth] = table;
        let index = level.index_of(va);
        let pte = read(level, table, index)?;
        if level == Level::L1 {
            return Ok((Walk::Leaf { l1: table, index, pte }, path));
        }
        if !pte.is_present() {
            return Ok((Walk::Missing { table, level, index }, path));
        }
        if pte.flags().contains(PteFlags::HUGE_PAGE) {
            return Err(TableError::HugePage(va));
        }
        table = p2m.mfn_to_pfn(pte.mfn())?;
    }
    unreachable!("the loop returns at L1")
}

/// What the tables under `root` grant at `va` as they are in memory now (what a page walk by
/// the CPU finds; no pending batch, no lock): the leaf's flags, with `WRITABLE` and
/// `USER_ACCESSIBLE` only if every entry on the way has them and `NO_EXECUTE` if any has it
/// (SDM vol. 3A, 4.6.1). `None` if `va` is not mapped. For the #PF handler, which may run inside
/// an operation on the tables. A walk that races with another vCPU's update may read a mix of
/// before and after (or a freed table's frame, if the p2m still says it is ours): its answer is
/// as good as the moment it was read, and the handler's use of it tolerates that (a wrong
/// "allowed" costs an INVLPG and a retry that faults again, a wrong "not allowed" is the report
/// the fault got before).
pub(in crate::mm) fn live_rights(
    p2m: &P2m<'_>,
    mem: &impl FrameAccess,
    root: Root,
    va: VirtAddr,
) -> Result<Option<PteFlags>, TableError> {
    let mut and_of = PteFlags::WRITABLE | PteFlags::USER_ACCESSIBLE;
    let mut or_of = PteFlags::empty();
    let (walk, _) = walk_with(p2m, root, va, |_, table, index| {
        let pte = Pte(mem.read_entry(table, index));
        and_of &= pte.flags();
        or_of |= pte.flags() & PteFlags::NO_EXECUTE;
        Ok(pte)
    })?;
    match walk {
        Walk::Leaf { pte, .. } if pte.is_present() => {
            let restricted = PteFlags::WRITABLE | PteFlags::USER_ACCESSIBLE;
            Ok(Some((pte.flags() - restricted) | (pte.flags() & and_of) | or_of))
        }
        _ => Ok(None),
    }
}
