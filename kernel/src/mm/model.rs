//! A model of Xen's PV MMU for host tests: typed, reference-counted frames that reject what Xen rejects.
//!
//! Like Xen (xen/arch/x86/mm.c), every frame of the domain has a type (none, writable, L1..L4
//! table) and a type count, and may change type only when the count is zero. A present L1 entry
//! with RW takes a writable reference on its frame; a present L2..L4 entry takes a table reference
//! of the level below; a pin or a base pointer takes an L4 (or pinned level) reference. A table is
//! validated (all its entries referenced) when its count goes 0 -> 1 and torn down when it goes
//! back to 0. From that follow the rules Xen enforces, each reported as a [`Violation`] and an
//! errno: no table may have a writable mapping anywhere, no table frame may be mapped writable,
//! a frame is a table of one level at a time (pin/link at the wrong level fails), entries must
//! name frames the domain owns, Xen's L4 slots are off limits, no superpages, non-present entries
//! must be zero (L1TF). `mmu_update` applies entries in order and stops at the first failure,
//! reporting how many were done.
//!
//! On top, the model watches for guest bugs Xen cannot see: a plain write to a live table, a pinned
//! or linked table handed back to the frame allocator, and a missing TLB flush. For the last, each
//! vCPU has a TLB (leaf translations and paging-structure caches, filled by the accesses tests
//! make) that behaves like hardware with global pages or PCID: entries survive mode switches and
//! base-pointer changes and go only with `INVLPG_LOCAL`, `TLB_FLUSH_LOCAL`, the
//! `update_va_mapping` flush flags, and Xen's own flush when a frame becomes a table. An access
//! that hits an entry granting more than the tables do now is recorded as a bug. Tests can also
//! make Xen refuse any entry of a batch ([`Machine::refuse_step`]).
//!
//! SMP: a machine may have several vCPUs ([`Machine::boot_smp`]), each with its own TLB and its
//! own kernel and user base pointers. Hypercalls act for the current vCPU
//! ([`Machine::set_current`]): the LOCAL flushes reach it alone, `MMUEXT_TLB_FLUSH_MULTI` and
//! `MMUEXT_INVLPG_MULTI` exactly the vCPUs of their mask. Other vCPUs run user code between the
//! hypercalls: a scheduler hook ([`Machine::set_hook`]) is called before each hypercall, where a
//! test makes accesses on any vCPU ([`Machine::access_on`]). A frame given back to the allocator
//! while some vCPU's TLB still holds a user translation to it is a guest bug
//! ([`Violation::FreedWhileCached`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::addr::{Mfn, Pfn, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use super::backend::{BatchFailure, FrameAccess, MmuExtOp, UvmFlush, XenMmu};
use super::frame::{FrameAllocator, FrameError, FrameSource};
use super::kernel_space::{is_guest_l4_slot, KERNEL_VIRT_BASE};
use super::pte::{Level, Pte, PteFlags, ENTRIES_PER_TABLE};
use crate::xen::abi::MmuUpdate;
use crate::xen::XenError;

/// A rule broken: either one Xen enforces (the call fails) or a guest bug the model catches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An entry or operation names a frame the domain does not own.
    ForeignFrame { mfn: Mfn },
    /// A writable mapping of a frame that is a live page table.
    TableMappedWritable { mfn: Mfn },
    /// Linking or pinning a frame as a table while it still has a writable mapping.
    WritableFrameAsTable { mfn: Mfn, level: Level },
    /// The frame is a live table of another level.
    LevelMismatch { mfn: Mfn, have: Level, want: Level },
    /// Pinning a pinned table.
    AlreadyPinned { mfn: Mfn },
    /// Unpinning a table that is not pinned.
    NotPinned { mfn: Mfn },
    /// Writing one of Xen's own L4 slots.
    XenSlot { index: usize },
    /// A superpage entry (PSE) in L2/L3.
    Superpage { mfn: Mfn },
    /// A non-present entry with other bits set (Xen's L1TF checks).
    NonPresentNotZero { value: u64 },
    /// An `mmu_update` command other than MMU_NORMAL_PT_UPDATE.
    BadCommand { ptr: u64 },
    /// `update_va_mapping` on an address without an L1 table.
    NoL1Table { va: VirtAddr },
    /// Guest bug: a cached translation that grants more than the tables (another frame, no
    /// mapping, fewer rights) was used: a flush is missing.
    StaleTlb { va: VirtAddr },
    /// Guest bug: a plain store into a live page table (would fault).
    WriteToLiveTable { pfn: Pfn },
    /// Guest bug: a pinned or linked table given back to the frame allocator.
    FreedLiveTable { pfn: Pfn },
    /// Guest bug: a frame given back to the frame allocator while `vcpu`'s TLB still holds a
    /// user translation to it (the flush that covers every holder of the address space is
    /// missing, or came after the release).
    FreedWhileCached { pfn: Pfn, vcpu: usize },
}

/// A frame's current use, as Xen tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageType {
    None,
    Writable,
    Table(Level),
}

/// How often each hypercall was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypercallCounts {
    pub mmu_update_calls: u64,
    pub mmu_update_entries: u64,
    pub mmuext_calls: u64,
    pub mmuext_ops: u64,
    pub update_va_mapping_calls: u64,
}

impl core::ops::Sub for HypercallCounts {
    type Output = HypercallCounts;
    fn sub(self, o: HypercallCounts) -> HypercallCounts {
        HypercallCounts {
            mmu_update_calls: self.mmu_update_calls - o.mmu_update_calls,
            mmu_update_entries: self.mmu_update_entries - o.mmu_update_entries,
            mmuext_calls: self.mmuext_calls - o.mmuext_calls,
            mmuext_ops: self.mmuext_ops - o.mmuext_ops,
            update_va_mapping_calls: self.update_va_mapping_calls - o.update_va_mapping_calls,
        }
    }
}

/// Why a modelled memory access did not reach a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessFault {
    NotPresent,
    ReadOnly,
}

/// Frames at the bottom of the machine that belong to another domain.
pub const FOREIGN_FRAMES: u64 = 8;
/// How many frames Xen's boot mapping covers at [`KERNEL_VIRT_BASE`].
pub const BOOT_WINDOW_FRAMES: u64 = 32;
/// The boot page tables Xen builds: L4, L3, L2, L1 at these pfns.
pub const BOOT_TABLES: [Pfn; 4] = [Pfn(4), Pfn(5), Pfn(6), Pfn(7)];
/// Frames the "image", start_info, p2m and boot tables occupy: never handed out.
pub const BOOT_RESERVED_FRAMES: u64 = 16;

#[derive(Clone, Debug)]
struct Frame {
    words: Box<[u64; ENTRIES_PER_TABLE]>,
    ours: bool,
    ty: PageType,
    type_count: u32,
    pinned: bool,
}

/// Which of a vCPU's two address spaces a cached translation belongs to. On 64-bit PV the guest
/// kernel and guest user mode run on two base pointers; Xen tags them apart with two PCIDs
/// (`PCID_PV_PRIV`, `PCID_PV_USER`) or, without PCID, maps user pages global
/// (`adjust_guest_l1e` in xen/arch/x86/pv/mm.h adds `_PAGE_GLOBAL` to every user L1 entry).
/// Either way one user translation is shared by every user L4 loaded in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    Kernel,
    User,
}

/// A cached leaf translation: what the walk found when it was filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cached {
    mfn: Mfn,
    flags: PteFlags,
    /// The L4 the walk started from.
    root: Mfn,
}

/// One virtual CPU's translation caches.
///
/// `leaves` is the TLB proper: (space, page) -> the translation. `walks` are the paging-structure
/// caches: (space, level, virtual base of the entry) -> the table that entry named, and the root.
/// Both are filled by accesses only (the model never fills speculatively, so a test that wants
/// to catch a missing flush touches the page first, as the code under test would have).
#[derive(Clone, Debug)]
struct Vcpu {
    leaves: HashMap<(Space, u64), Cached>,
    walks: HashMap<(Space, Level, u64), (Mfn, Mfn)>,
    /// The kernel's L4 on this vCPU (`NEW_BASEPTR`).
    baseptr: Mfn,
    /// The L4 used in user mode on this vCPU (`NEW_USER_BASEPTR`), if any.
    user_baseptr: Option<Mfn>,
}

impl Vcpu {
    fn new(baseptr: Mfn) -> Vcpu {
        Vcpu { leaves: HashMap::new(), walks: HashMap::new(), baseptr, user_baseptr: None }
    }

    fn flush_all(&mut self) {
        self.leaves.clear();
        self.walks.clear();
    }

    /// What a page fault on `va` drops: the page's entry and the paging-structure entries on its
    /// way, in the faulting space.
    fn fault_invalidates(&mut self, space: Space, va: VirtAddr) {
        let page = va.as_u64() & !(PAGE_SIZE - 1);
        self.leaves.remove(&(space, page));
        self.walks.retain(|&(s, level, base), _| {
            s != space || page.wrapping_sub(base) >= level.entry_span_bytes()
        });
    }

    /// `INVLPG`: the page's translation in both spaces (Xen's INVLPG_LOCAL reaches both PCIDs, or
    /// the global entry, xen/arch/x86/flushtlb.c `flush_area_local`), and the paging-structure
    /// entries on its way. (The SDM lets INVLPG drop every paging-structure entry; the model drops
    /// only those the page's walk used, so nothing relies on the wider effect.)
    fn invlpg(&mut self, va: VirtAddr) {
        let page = va.as_u64() & !(PAGE_SIZE - 1);
        self.leaves.retain(|&(_, p), _| p != page);
        self.walks
            .retain(|&(_, level, base), _| page.wrapping_sub(base) >= level.entry_span_bytes());
    }
}

/// Which hypercall the scheduler hook is called before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    MmuUpdate,
    MmuextOp,
    UpdateVaMapping,
}

/// Called before every hypercall the machine receives, with the machine and the call: where a
/// test runs the other vCPUs (see [`Machine::set_hook`]).
pub type Hook = Box<dyn FnMut(&mut Machine, Hypercall)>;

/// The modelled host: machine frames, the domain's p2m/m2p, vCPUs, TLB debts.
pub struct Machine {
    frames: Vec<Frame>,
    p2m: Vec<u64>,
    m2p: Vec<u64>,
    /// Each vCPU's TLB and base pointers.
    vcpus: Vec<Vcpu>,
    /// The vCPU the hypercalls and [`Machine::access`] act for.
    current: usize,
    hook: Option<Hook>,
    /// Injected refusals: (step, errno), see [`Machine::refuse_step`].
    refusals: Vec<(u64, XenError)>,
    /// Fallible steps so far: each `mmu_update` entry, `mmuext_op` op, `update_va_mapping` call.
    steps: u64,
    /// Whether the TLB fills itself after every page-table hypercall (see [`Machine::speculate`]).
    speculative: bool,
    rejections: Vec<Violation>,
    bugs: Vec<Violation>,
    counts: HypercallCounts,
    /// Entries the guest read as tables through [`FrameAccess::read_entry`]: what its walks
    /// cost, deterministic like the hypercall counts.
    entry_reads: Cell<u64>,
}

impl core::fmt::Debug for Machine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Machine")
            .field("frames", &self.frames.len())
            .field("vcpus", &self.vcpus.len())
            .field("current", &self.current)
            .field("rejections", &self.rejections)
            .field("bugs", &self.bugs)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// A domain of `nr_pages` frames set up the way Xen's domain builder leaves it: pfn p at
    /// mfn `total - 1 - p` (so pfn != mfn), foreign frames below, a pinned and active boot L4
    /// whose tables map the first [`BOOT_WINDOW_FRAMES`] frames at [`KERNEL_VIRT_BASE`],
    /// read-only where they are the tables themselves.
    pub fn boot(nr_pages: u64) -> Machine {
        let total = nr_pages + FOREIGN_FRAMES;
        let p2m: Vec<u64> = (0..nr_pages).map(|pfn| total - 1 - pfn).collect();
        let mut m2p = vec![0; total as usize]; // foreign frames claim pfn 0: a lie p2m exposes
        for (pfn, &mfn) in p2m.iter().enumerate() {
            m2p[mfn as usize] = pfn as u64;
        }
        let frames = (0..total)
            .map(|mfn| Frame {
                words: Box::new([0; ENTRIES_PER_TABLE]),
                ours: mfn >= FOREIGN_FRAMES,
                ty: PageType::None,
                type_count: 0,
                pinned: false,
            })
            .collect();
        let mut m = Machine {
            frames,
            p2m,
            m2p,
            vcpus: vec![Vcpu::new(Mfn(0))],
            current: 0,
            hook: None,
            refusals: Vec::new(),
            steps: 0,
            speculative: false,
            rejections: Vec::new(),
            bugs: Vec::new(),
            counts: HypercallCounts::default(),
            entry_reads: Cell::new(0),
        };
        let va = VirtAddr::new(KERNEL_VIRT_BASE);
        let [l4, l3, l2, l1] = BOOT_TABLES.map(|pfn| m.mfn_of(pfn));
        let link = |child: Mfn| {
            Pte::new(child, PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::USER_ACCESSIBLE).0
        };
        m.frames[l4.0 as usize].words[Level::L4.index_of(va)] = link(l3);
        m.frames[l3.0 as usize].words[Level::L3.index_of(va)] = link(l2);
        m.frames[l2.0 as usize].words[Level::L2.index_of(va)] = link(l1);
        for pfn in 0..BOOT_WINDOW_FRAMES {
            let mut flags = PteFlags::PRESENT;
            if !BOOT_TABLES.contains(&Pfn(pfn)) {
                flags |= PteFlags::WRITABLE;
            }
            let mfn = m.mfn_of(Pfn(pfn));
            m.frames[l1.0 as usize].words[Level::L1.index_of(va) + pfn as usize] =
                Pte::new(mfn, flags).0;
        }
        m.pin(Level::L4, l4).expect("the boot tables validate");
        m.get_type(l4, PageType::Table(Level::L4)).expect("the boot L4 can be the base pointer");
        m.vcpus[0].baseptr = l4;
        m
    }

    /// [`Machine::boot`] with `vcpus` vCPUs, each running on the boot L4 with an empty TLB and no
    /// user base pointer (vCPU 0 is current).
    pub fn boot_smp(nr_pages: u64, vcpus: usize) -> Machine {
        let mut m = Machine::boot(nr_pages);
        let l4 = m.vcpus[0].baseptr;
        for _ in 1..vcpus {
            m.get_type(l4, PageType::Table(Level::L4))
                .expect("the boot L4 is a valid base pointer");
            m.vcpus.push(Vcpu::new(l4));
        }
        m
    }

    /// How many vCPUs the machine has.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// The vCPU the hypercalls act for.
    pub const fn current(&self) -> usize {
        self.current
    }

    /// Makes `vcpu` the one the next hypercalls and accesses act for.
    pub fn set_current(&mut self, vcpu: usize) {
        assert!(vcpu < self.vcpus.len(), "no vCPU {vcpu}");
        self.current = vcpu;
    }

    /// Sets (or with `None` removes) the hook called before every hypercall. The hook may make
    /// accesses on any vCPU ([`Machine::access_on`]); whatever it does, the current vCPU is the
    /// caller's again afterwards.
    pub fn set_hook(&mut self, hook: Option<Hook>) {
        self.hook = hook;
    }

    fn before_hypercall(&mut self, call: Hypercall) {
        if let Some(mut hook) = self.hook.take() {
            let current = self.current;
            hook(self, call);
            self.current = current;
            if self.hook.is_none() {
                self.hook = Some(hook);
            }
        }
    }

    /// The p2m list the guest gets (`mfn_list`).
    pub fn p2m(&self) -> &[u64] {
        &self.p2m
    }

    /// Xen's m2p table.
    pub fn m2p(&self) -> &[u64] {
        &self.m2p
    }

    /// The machine frame behind `pfn`.
    pub fn mfn_of(&self, pfn: Pfn) -> Mfn {
        Mfn(self.p2m[pfn.index()])
    }

    /// The current vCPU's (kernel) base pointer.
    pub fn baseptr(&self) -> Mfn {
        self.vcpus[self.current].baseptr
    }

    /// The current vCPU's user base pointer, if one is loaded.
    pub fn user_baseptr(&self) -> Option<Mfn> {
        self.vcpus[self.current].user_baseptr
    }

    /// `vcpu`'s user base pointer, if one is loaded.
    pub fn user_baseptr_on(&self, vcpu: usize) -> Option<Mfn> {
        self.vcpus[vcpu].user_baseptr
    }

    /// Hypercalls made so far.
    pub const fn counts(&self) -> HypercallCounts {
        self.counts
    }

    /// Table entries the guest read so far.
    pub fn entry_reads(&self) -> u64 {
        self.entry_reads.get()
    }

    /// Everything Xen refused so far.
    pub fn rejections(&self) -> &[Violation] {
        &self.rejections
    }

    /// Every guest bug caught so far.
    pub fn bugs(&self) -> &[Violation] {
        &self.bugs
    }

    /// Whether some cached translation grants more than the tables do now (a flush is owed).
    pub fn owes_tlb_flush(&self) -> bool {
        !self.stale_translations().is_empty()
    }

    /// The pages whose cached translations (leaf or paging-structure) disagree with the tables
    /// in a way that grants more than they do, each compared with the tables of the root its
    /// space has loaded now (or, with no user root loaded, the root it was filled from).
    pub fn stale_translations(&self) -> Vec<VirtAddr> {
        self.stale_translations_on(self.current)
    }

    /// [`Machine::stale_translations`] of `vcpu`'s TLB.
    pub fn stale_translations_on(&self, vcpu_id: usize) -> Vec<VirtAddr> {
        let vcpu = &self.vcpus[vcpu_id];
        let mut stale = Vec::new();
        for (&(space, page), cached) in &vcpu.leaves {
            let root = self.root_of(vcpu_id, space).unwrap_or(cached.root);
            let va = VirtAddr::new_truncate(page);
            if grants_more(cached, self.walk_tables(root, va)) {
                stale.push(va);
            }
        }
        for (&(space, level, base), &(table, filled_root)) in &vcpu.walks {
            let root = self.root_of(vcpu_id, space).unwrap_or(filled_root);
            let va = VirtAddr::new_truncate(base);
            if self.table_entry_names(root, level, va) != Some(table) {
                stale.push(va);
            }
        }
        stale.sort_by_key(|va| va.as_u64());
        stale.dedup();
        stale
    }

    /// The flags of the kernel-space translation of `va` that `vcpu`'s TLB caches, if any (a
    /// cached translation that grants less than the tables is no bug, and only this shows it).
    pub fn cached_kernel_flags(&self, vcpu: usize, va: VirtAddr) -> Option<PteFlags> {
        let page = va.as_u64() & !(PAGE_SIZE - 1);
        self.vcpus[vcpu].leaves.get(&(Space::Kernel, page)).map(|cached| cached.flags)
    }

    /// Forgets every cached translation, as if the vCPU had been flushed (tests use it to start a
    /// scenario from a clean TLB).
    pub fn flush_every_tlb(&mut self) {
        for vcpu in &mut self.vcpus {
            vcpu.flush_all();
        }
    }

    /// From now on, after every `mmu_update` and `update_va_mapping` call (applied or refused),
    /// caches every present translation of the loaded base pointers that is not cached yet, as
    /// speculative page walks may (SDM vol. 3, 4.10.2.3: translations may be cached for accesses
    /// the code path never makes). The strictest TLB: a translation that exists for an instant,
    /// e.g. between a refused batch and its undo, is then cached and needs its flush.
    pub fn speculate(&mut self, on: bool) {
        self.speculative = on;
    }

    /// Makes the `n`-th fallible step from now (0-based; an `mmu_update` entry, an `mmuext_op`
    /// op or an `update_va_mapping` call) fail with `errno`, as Xen fails an entry it cannot
    /// apply (e.g. -ENOMEM while validating a new table). Earlier entries of its batch stay
    /// applied and the call reports how many were done.
    pub fn refuse_step(&mut self, n: u64, errno: XenError) {
        self.refusals.push((self.steps + n, errno));
    }

    /// Drops the refusals planned and not reached yet.
    pub fn cancel_refusals(&mut self) {
        self.refusals.clear();
    }

    /// Refusals planned and not reached yet.
    pub fn pending_refusals(&self) -> usize {
        self.refusals.len()
    }

    /// Fallible steps taken so far (see [`Machine::refuse_step`]): the difference over an
    /// operation is how many positions a refusal can hit.
    pub const fn steps(&self) -> u64 {
        self.steps
    }

    /// The type, type count and pin state of frame `pfn`.
    pub fn frame_state(&self, pfn: Pfn) -> (PageType, u32, bool) {
        let f = &self.frames[self.mfn_of(pfn).0 as usize];
        (f.ty, f.type_count, f.pinned)
    }

    /// Frames of ours that are live tables (type count > 0), per level (L1 at 0).
    pub fn live_tables(&self) -> [u64; 4] {
        let mut per_level = [0; 4];
        for f in &self.frames {
            if let (PageType::Table(level), true) = (f.ty, f.type_count > 0) {
                per_level[level as usize] += 1;
            }
        }
        per_level
    }

    /// What `va` maps to under the L4 `root`, as (pfn, flags), ignoring the TLB.
    pub fn translate(&self, root: Mfn, va: VirtAddr) -> Option<(Pfn, PteFlags)> {
        self.walk_tables(root, va).map(|(mfn, flags)| (Pfn(self.m2p[mfn.0 as usize]), flags))
    }

    /// A CPU access to `va` in the address space `root`, through the vCPU's TLB.
    ///
    /// The access runs in the kernel space if `root` is the kernel base pointer, else in the user
    /// space (as if `root` were the user base pointer: the user space's cached translations are
    /// shared by every user L4, see [`Space`]). A cached translation that allows the access is
    /// used even if the tables changed since it was filled; if it grants more than the tables
    /// do now (another frame, no mapping, fewer rights), that is a missing flush and is recorded
    /// as [`Violation::StaleTlb`]. Paging-structure entries cached on the way are checked the
    /// same way. An access that faults invalidates the page's TLB entry and the paging-structure
    /// entries on its way (SDM vol. 3A, 4.10.4.1: "page faults invalidate entries in the TLBs and
    /// paging-structure caches"), so a cached translation that does not allow the access is
    /// dropped and the tables are walked again: the spurious fault the guest would retry.
    pub fn access(&mut self, root: Mfn, va: VirtAddr, write: bool) -> Result<Pfn, AccessFault> {
        let space = if root == self.baseptr() { Space::Kernel } else { Space::User };
        let page = va.as_u64() & !(PAGE_SIZE - 1);
        let now = self.walk_tables(root, va);
        if let Some(cached) = self.vcpus[self.current].leaves.get(&(space, page)).copied() {
            if !write || cached.flags.contains(PteFlags::WRITABLE) {
                if grants_more(&cached, now) {
                    self.bugs.push(Violation::StaleTlb { va });
                }
                return Ok(Pfn(self.m2p[cached.mfn.0 as usize]));
            }
            self.vcpus[self.current].fault_invalidates(space, va);
        }
        self.walk_through_caches(space, root, va);
        let fault = match now {
            None => Some(AccessFault::NotPresent),
            Some((_, flags)) if write && !flags.contains(PteFlags::WRITABLE) => {
                Some(AccessFault::ReadOnly)
            }
            Some(_) => None,
        };
        if let Some(fault) = fault {
            self.vcpus[self.current].fault_invalidates(space, va);
            return Err(fault);
        }
        let (mfn, flags) = now.expect("no fault: mapped");
        self.vcpus[self.current].leaves.insert((space, page), Cached { mfn, flags, root });
        Ok(Pfn(self.m2p[mfn.0 as usize]))
    }

    /// The page walk of a TLB miss: uses (and checks) cached paging-structure entries, and caches
    /// the present ones it reads.
    fn walk_through_caches(&mut self, space: Space, root: Mfn, va: VirtAddr) {
        let mut table = root;
        for level in [Level::L4, Level::L3, Level::L2] {
            let base = va.as_u64() & !(level.entry_span_bytes() - 1);
            let pte = Pte(self.frames[table.0 as usize].words[level.index_of(va)]);
            let key = (space, level, base);
            if let Some(&(cached, _)) = self.vcpus[self.current].walks.get(&key) {
                if !pte.is_present() || pte.mfn() != cached {
                    self.bugs.push(Violation::StaleTlb { va });
                    self.vcpus[self.current].walks.remove(&key);
                }
            }
            if !pte.is_present() {
                return;
            }
            self.vcpus[self.current].walks.insert(key, (pte.mfn(), root));
            table = pte.mfn();
        }
    }

    /// The leaf translation of `va` under `root` as (mfn, flags), straight from the tables.
    fn walk_tables(&self, root: Mfn, va: VirtAddr) -> Option<(Mfn, PteFlags)> {
        let mut table = root;
        for level in Level::TOP_DOWN {
            let pte = Pte(self.frames[table.0 as usize].words[level.index_of(va)]);
            if !pte.is_present() {
                return None;
            }
            if level == Level::L1 {
                return Some((pte.mfn(), pte.flags()));
            }
            table = pte.mfn();
        }
        None
    }

    /// The table the entry of `level` on `va`'s walk from `root` names, if present.
    fn table_entry_names(&self, root: Mfn, level: Level, va: VirtAddr) -> Option<Mfn> {
        let mut table = root;
        for current in Level::TOP_DOWN {
            let pte = Pte(self.frames[table.0 as usize].words[current.index_of(va)]);
            if !pte.is_present() {
                return None;
            }
            if current == level {
                return Some(pte.mfn());
            }
            table = pte.mfn();
        }
        None
    }

    /// A user-mode access by `vcpu` to `va` through its own TLB and its user base pointer, as a
    /// thread running there makes while another vCPU is inside the kernel. `Ok(None)` with no
    /// user base pointer loaded. Unlike [`Machine::access`], using a cached translation that the
    /// tables no longer grant is not a bug here: the other vCPU may be between its update and its
    /// flush (the frame must still be ours, which [`Machine::guest_freed`] checks); the operation
    /// that owes the flush is checked once it returns ([`Machine::stale_translations_on`]).
    pub fn access_on(
        &mut self,
        vcpu: usize,
        va: VirtAddr,
        write: bool,
    ) -> Result<Option<Pfn>, AccessFault> {
        let Some(root) = self.vcpus[vcpu].user_baseptr else { return Ok(None) };
        let page = va.as_u64() & !(PAGE_SIZE - 1);
        let key = (Space::User, page);
        if let Some(cached) = self.vcpus[vcpu].leaves.get(&key).copied() {
            if !write || cached.flags.contains(PteFlags::WRITABLE) {
                return Ok(Some(Pfn(self.m2p[cached.mfn.0 as usize])));
            }
        }
        let current = self.current;
        self.current = vcpu;
        let bugs_before = self.bugs.len();
        let result = self.access(root, va, write);
        // A stale paging-structure entry met on the walk is the window of an operation in
        // progress too, not a bug by itself.
        let found: Vec<Violation> = self.bugs.drain(bugs_before..).collect();
        self.bugs.extend(found.into_iter().filter(|v| !matches!(v, Violation::StaleTlb { .. })));
        self.current = current;
        result.map(Some)
    }

    /// The root `vcpu` has loaded for `space`.
    fn root_of(&self, vcpu: usize, space: Space) -> Option<Mfn> {
        match space {
            Space::Kernel => Some(self.vcpus[vcpu].baseptr),
            Space::User => self.vcpus[vcpu].user_baseptr,
        }
    }

    /// Caches, on every vCPU, every present translation under its loaded roots that is not
    /// cached already.
    fn speculate_now(&mut self) {
        let current = self.current;
        for vcpu in 0..self.vcpus.len() {
            self.current = vcpu;
            let roots = [
                (Space::Kernel, Some(self.vcpus[vcpu].baseptr)),
                (Space::User, self.vcpus[vcpu].user_baseptr),
            ];
            for (space, root) in roots {
                if let Some(root) = root {
                    self.fill_below(space, root, root, Level::L4, 0);
                }
            }
        }
        self.current = current;
    }

    fn fill_below(&mut self, space: Space, root: Mfn, table: Mfn, level: Level, base: u64) {
        for index in 0..ENTRIES_PER_TABLE {
            if level == Level::L4 && !is_guest_l4_slot(index) {
                continue;
            }
            let pte = Pte(self.frames[table.0 as usize].words[index]);
            if !pte.is_present() {
                continue;
            }
            let va = sign_extend(base + ((index as u64) << level.entry_shift()));
            let vcpu = &mut self.vcpus[self.current];
            match level.child() {
                None => {
                    let cached = Cached { mfn: pte.mfn(), flags: pte.flags(), root };
                    vcpu.leaves.entry((space, va)).or_insert(cached);
                }
                Some(child) => {
                    vcpu.walks.entry((space, level, va)).or_insert((pte.mfn(), root));
                    self.fill_below(space, root, pte.mfn(), child, va);
                }
            }
        }
    }

    /// Consumes one fallible step; `Some(errno)` if a refusal was planned for it.
    fn next_step_refused(&mut self) -> Option<XenError> {
        let step = self.steps;
        self.steps += 1;
        let at = self.refusals.iter().position(|&(n, _)| n == step)?;
        Some(self.refusals.remove(at).1)
    }

    /// Called when the guest gives `pfn` back to its allocator: a live table must not be, nor a
    /// frame some vCPU's TLB still reaches from user mode.
    pub fn guest_freed(&mut self, pfn: Pfn) {
        let mfn = self.mfn_of(pfn);
        let f = &self.frames[mfn.0 as usize];
        if f.pinned || (matches!(f.ty, PageType::Table(_)) && f.type_count > 0) {
            self.bugs.push(Violation::FreedLiveTable { pfn });
        }
        for (vcpu, tlb) in self.vcpus.iter().enumerate() {
            let cached =
                tlb.leaves.iter().any(|(&(space, _), c)| space == Space::User && c.mfn == mfn);
            if cached {
                self.bugs.push(Violation::FreedWhileCached { pfn, vcpu });
            }
        }
    }

    // ---- The hypercalls --------------------------------------------------------------------

    fn mmu_update(&mut self, updates: &[MmuUpdate]) -> Result<(), BatchFailure> {
        self.before_hypercall(Hypercall::MmuUpdate);
        let result = self.apply_batch(updates);
        if self.speculative {
            self.speculate_now();
        }
        result
    }

    fn apply_batch(&mut self, updates: &[MmuUpdate]) -> Result<(), BatchFailure> {
        self.counts.mmu_update_calls += 1;
        self.counts.mmu_update_entries += updates.len() as u64;
        for (done, update) in updates.iter().enumerate() {
            if let Some(errno) = self.next_step_refused() {
                return Err(BatchFailure { done, errno });
            }
            if let Err(v) = self.apply_update(update) {
                self.rejections.push(v);
                return Err(BatchFailure { done, errno: XenError::EINVAL });
            }
        }
        Ok(())
    }

    fn mmuext_op(&mut self, ops: &[MmuExtOp]) -> Result<(), BatchFailure> {
        self.before_hypercall(Hypercall::MmuextOp);
        self.counts.mmuext_calls += 1;
        self.counts.mmuext_ops += ops.len() as u64;
        for (done, op) in ops.iter().enumerate() {
            if let Some(errno) = self.next_step_refused() {
                return Err(BatchFailure { done, errno });
            }
            if let Err(v) = self.apply_ext(*op) {
                self.rejections.push(v);
                return Err(BatchFailure { done, errno: XenError::EINVAL });
            }
        }
        Ok(())
    }

    fn update_va_mapping(
        &mut self,
        va: VirtAddr,
        pte: Pte,
        flush: UvmFlush,
    ) -> Result<(), XenError> {
        self.before_hypercall(Hypercall::UpdateVaMapping);
        let result = self.apply_update_va_mapping(va, pte, flush);
        if self.speculative {
            self.speculate_now();
        }
        result
    }

    fn apply_update_va_mapping(
        &mut self,
        va: VirtAddr,
        pte: Pte,
        flush: UvmFlush,
    ) -> Result<(), XenError> {
        self.counts.update_va_mapping_calls += 1;
        if let Some(errno) = self.next_step_refused() {
            return Err(errno);
        }
        let result =
            self.l1_of(self.baseptr(), va).ok_or(Violation::NoL1Table { va }).and_then(|l1| {
                self.apply_update(&MmuUpdate::normal(l1.entry_addr(Level::L1.index_of(va)), pte))
            });
        if let Err(v) = result {
            self.rejections.push(v);
            return Err(XenError::EINVAL);
        }
        match flush {
            UvmFlush::None => {}
            UvmFlush::InvlpgLocal => self.vcpus[self.current].invlpg(va),
            UvmFlush::TlbFlushLocal => self.vcpus[self.current].flush_all(),
        }
        Ok(())
    }

    fn apply_update(&mut self, update: &MmuUpdate) -> Result<(), Violation> {
        if update.command() != u64::from(crate::xen::abi::MMU_NORMAL_PT_UPDATE) {
            return Err(Violation::BadCommand { ptr: update.ptr });
        }
        let mfn = update.entry_addr().mfn();
        let index = (update.entry_addr().frame_offset_bytes() / 8) as usize;
        self.check_ours(mfn)?;
        let frame = &self.frames[mfn.0 as usize];
        let (PageType::Table(level), true) = (frame.ty, frame.type_count > 0) else {
            // Not a live table: Xen makes it a plain write to ordinary memory.
            self.frames[mfn.0 as usize].words[index] = update.val;
            return Ok(());
        };
        if level == Level::L4 && !is_guest_l4_slot(index) {
            return Err(Violation::XenSlot { index });
        }
        let old = frame.words[index];
        self.take_entry_ref(level, update.val)?;
        self.frames[mfn.0 as usize].words[index] = update.val;
        self.drop_entry_ref(level, old);
        Ok(())
    }

    fn apply_ext(&mut self, op: MmuExtOp) -> Result<(), Violation> {
        match op {
            MmuExtOp::Pin { level, mfn } => self.pin(level, mfn),
            MmuExtOp::Unpin(mfn) => {
                self.check_ours(mfn)?;
                if !self.frames[mfn.0 as usize].pinned {
                    return Err(Violation::NotPinned { mfn });
                }
                self.frames[mfn.0 as usize].pinned = false;
                self.put_type(mfn);
                Ok(())
            }
            MmuExtOp::NewBaseptr(mfn) => {
                self.get_type(mfn, PageType::Table(Level::L4))?;
                self.put_type(self.baseptr());
                // Real Xen reloads CR3 here (new_guest_cr3 -> write_ptbase -> switch_cr3_cr4,
                // xen/arch/x86/mm.c), which flushes; faultline never moves the kernel's base
                // pointer, so the model does not credit it with a flush.
                self.vcpus[self.current].baseptr = mfn;
                Ok(())
            }
            MmuExtOp::NewUserBaseptr(mfn) => {
                if mfn.0 != 0 {
                    self.get_type(mfn, PageType::Table(Level::L4))?;
                }
                if let Some(old) = self.vcpus[self.current].user_baseptr.take() {
                    self.put_type(old);
                }
                // Xen only records the L4 (xen/arch/x86/mm.c, MMUEXT_NEW_USER_BASEPTR), and the
                // switch to user mode keeps user global mappings (_toggle_guest_pt in
                // xen/arch/x86/pv/domain.c: "Don't flush user global mappings"): nothing flushed.
                self.vcpus[self.current].user_baseptr = (mfn.0 != 0).then_some(mfn);
                Ok(())
            }
            // flush_tlb_local() flushes global entries too (do_tlb_flush toggles CR4.PGE or
            // uses INVPCID all-contexts, xen/arch/x86/flushtlb.c).
            MmuExtOp::TlbFlushLocal => {
                self.vcpus[self.current].flush_all();
                Ok(())
            }
            MmuExtOp::InvlpgLocal(va) => {
                self.vcpus[self.current].invlpg(va);
                Ok(())
            }
            // The mask's vCPUs and no other; ids past the domain's vCPUs are ignored, as Xen
            // ignores them (vcpumask_to_pcpumask, xen/arch/x86/mm.c).
            MmuExtOp::TlbFlushMulti(mask) => {
                let count = self.vcpus.len();
                for vcpu in mask.iter().filter(|&v| v < count) {
                    self.vcpus[vcpu].flush_all();
                }
                Ok(())
            }
            MmuExtOp::InvlpgMulti(va, mask) => {
                let count = self.vcpus.len();
                for vcpu in mask.iter().filter(|&v| v < count) {
                    self.vcpus[vcpu].invlpg(va);
                }
                Ok(())
            }
        }
    }

    fn pin(&mut self, level: Level, mfn: Mfn) -> Result<(), Violation> {
        self.check_ours(mfn)?;
        if self.frames[mfn.0 as usize].pinned {
            return Err(Violation::AlreadyPinned { mfn });
        }
        self.get_type(mfn, PageType::Table(level))?;
        self.frames[mfn.0 as usize].pinned = true;
        Ok(())
    }

    // ---- Types and references (Xen's get_page_type / put_page_type) -------------------------

    fn check_ours(&self, mfn: Mfn) -> Result<(), Violation> {
        match self.frames.get(mfn.0 as usize) {
            Some(f) if f.ours => Ok(()),
            _ => Err(Violation::ForeignFrame { mfn }),
        }
    }

    fn get_type(&mut self, mfn: Mfn, want: PageType) -> Result<(), Violation> {
        self.check_ours(mfn)?;
        let frame = &mut self.frames[mfn.0 as usize];
        if frame.type_count > 0 {
            return match (frame.ty, want) {
                (have, want) if have == want => {
                    frame.type_count += 1;
                    Ok(())
                }
                (PageType::Table(_), PageType::Writable) => {
                    Err(Violation::TableMappedWritable { mfn })
                }
                (PageType::Table(have), PageType::Table(want)) => {
                    Err(Violation::LevelMismatch { mfn, have, want })
                }
                (_, PageType::Table(level)) => Err(Violation::WritableFrameAsTable { mfn, level }),
                (_, _) => unreachable!("only writable and table references are taken"),
            };
        }
        let becomes_table = frame.ty != want && matches!(want, PageType::Table(_));
        frame.ty = want;
        frame.type_count = 1;
        if becomes_table {
            // Xen's own flush on a type change (_get_page_type, xen/arch/x86/mm.c: "On type
            // change we check to flush stale TLB entries. It is vital that no other CPUs are left
            // with writeable mappings to a frame which is intending to become pgtable"). faultline
            // relies on it for exactly that: a new table's alias goes read-only in the batch that
            // links it, with no flush of its own. Xen flushes the whole TLB of every dirty CPU
            // (unless the frame's timestamp is old enough); the model drops only the cached
            // translations of this frame, so nothing else can lean on it unnoticed. The flush
            // on the way back (table -> writable) is not modelled: the code flushes itself there.
            for vcpu in &mut self.vcpus {
                vcpu.leaves.retain(|_, cached| cached.mfn != mfn);
            }
        }
        if let PageType::Table(level) = want {
            if let Err(v) = self.validate(mfn, level) {
                self.frames[mfn.0 as usize].type_count = 0;
                return Err(v);
            }
        }
        Ok(())
    }

    fn put_type(&mut self, mfn: Mfn) {
        let frame = &mut self.frames[mfn.0 as usize];
        frame.type_count -= 1;
        if let (PageType::Table(level), 0) = (frame.ty, frame.type_count) {
            let words = *frame.words;
            for (index, &entry) in words.iter().enumerate() {
                if level != Level::L4 || is_guest_l4_slot(index) {
                    self.drop_entry_ref(level, entry);
                }
            }
        }
    }

    /// References everything the table's entries name; all or nothing.
    fn validate(&mut self, mfn: Mfn, level: Level) -> Result<(), Violation> {
        let words = *self.frames[mfn.0 as usize].words;
        let guest_slot = |index: usize| level != Level::L4 || is_guest_l4_slot(index);
        for (index, &entry) in words.iter().enumerate().filter(|(i, _)| guest_slot(*i)) {
            if let Err(v) = self.take_entry_ref(level, entry) {
                for &taken in words[..index]
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| guest_slot(*i))
                    .map(|(_, e)| e)
                {
                    self.drop_entry_ref(level, taken);
                }
                return Err(v);
            }
        }
        Ok(())
    }

    fn take_entry_ref(&mut self, level: Level, entry: u64) -> Result<(), Violation> {
        let pte = Pte(entry);
        if !pte.is_present() {
            return if entry == 0 {
                Ok(())
            } else {
                Err(Violation::NonPresentNotZero { value: entry })
            };
        }
        let target = pte.mfn();
        self.check_ours(target)?;
        match level.child() {
            None if pte.flags().contains(PteFlags::WRITABLE) => {
                self.get_type(target, PageType::Writable)
            }
            None => Ok(()),
            Some(_) if pte.flags().contains(PteFlags::HUGE_PAGE) => {
                Err(Violation::Superpage { mfn: target })
            }
            Some(child) => self.get_type(target, PageType::Table(child)),
        }
    }

    fn drop_entry_ref(&mut self, level: Level, entry: u64) {
        let pte = Pte(entry);
        if pte.is_present() && (level != Level::L1 || pte.flags().contains(PteFlags::WRITABLE)) {
            self.put_type(pte.mfn());
        }
    }

    fn l1_of(&self, root: Mfn, va: VirtAddr) -> Option<Mfn> {
        let mut table = root;
        for level in [Level::L4, Level::L3, Level::L2] {
            let pte = Pte(self.frames[table.0 as usize].words[level.index_of(va)]);
            if !pte.is_present() {
                return None;
            }
            table = pte.mfn();
        }
        Some(table)
    }

    // ---- Plain memory ------------------------------------------------------------------------

    fn plain_write_bytes(&mut self, pfn: Pfn, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= PAGE_SIZE as usize, "write past the page");
        let mfn = self.mfn_of(pfn);
        let frame = &mut self.frames[mfn.0 as usize];
        if matches!(frame.ty, PageType::Table(_)) && frame.type_count > 0 {
            self.bugs.push(Violation::WriteToLiveTable { pfn });
            return;
        }
        for (i, &byte) in bytes.iter().enumerate() {
            let at = offset + i;
            let mut word = frame.words[at / 8].to_le_bytes();
            word[at % 8] = byte;
            frame.words[at / 8] = u64::from_le_bytes(word);
        }
    }

    fn plain_write(&mut self, pfn: Pfn, index: Option<usize>, value: u64) {
        let mfn = self.mfn_of(pfn);
        let frame = &mut self.frames[mfn.0 as usize];
        if matches!(frame.ty, PageType::Table(_)) && frame.type_count > 0 {
            self.bugs.push(Violation::WriteToLiveTable { pfn });
            return;
        }
        match index {
            Some(i) => frame.words[i] = value,
            None => frame.words.fill(value),
        }
    }
}

fn sign_extend(va: u64) -> u64 {
    VirtAddr::new_truncate(va).as_u64()
}

/// Whether a cached translation grants more than the tables' current one (`None`: unmapped).
fn grants_more(cached: &Cached, now: Option<(Mfn, PteFlags)>) -> bool {
    let Some((mfn, flags)) = now else { return true };
    let lost = |flag: PteFlags| cached.flags.contains(flag) && !flags.contains(flag);
    mfn != cached.mfn
        || lost(PteFlags::WRITABLE)
        || lost(PteFlags::USER_ACCESSIBLE)
        || (flags.contains(PteFlags::NO_EXECUTE) && !cached.flags.contains(PteFlags::NO_EXECUTE))
}

/// A shared handle on a [`Machine`]: it is both the `XenMmu` and the `FrameAccess` of the
/// page-table code under test, and what tests inspect afterwards.
#[derive(Clone, Debug)]
pub struct Xen(pub Rc<RefCell<Machine>>);

impl Xen {
    /// A booted machine of `nr_pages` frames; see [`Machine::boot`].
    pub fn boot(nr_pages: u64) -> Xen {
        Xen(Rc::new(RefCell::new(Machine::boot(nr_pages))))
    }

    /// Borrows the machine.
    pub fn machine(&self) -> std::cell::RefMut<'_, Machine> {
        self.0.borrow_mut()
    }
}

impl XenMmu for Xen {
    fn vcpu(&self) -> usize {
        self.0.borrow().current
    }

    fn mmu_update(&mut self, updates: &[MmuUpdate]) -> Result<(), BatchFailure> {
        self.machine().mmu_update(updates)
    }

    fn mmuext_op(&mut self, ops: &[MmuExtOp]) -> Result<(), BatchFailure> {
        self.machine().mmuext_op(ops)
    }

    fn update_va_mapping(
        &mut self,
        va: VirtAddr,
        pte: Pte,
        flush: UvmFlush,
    ) -> Result<(), XenError> {
        self.machine().update_va_mapping(va, pte, flush)
    }
}

impl FrameAccess for Xen {
    fn read_entry(&self, pfn: Pfn, index: usize) -> u64 {
        let m = self.0.borrow();
        m.entry_reads.set(m.entry_reads.get() + 1);
        m.frames[m.mfn_of(pfn).0 as usize].words[index]
    }

    fn write_entry(&mut self, pfn: Pfn, index: usize, value: u64) {
        self.machine().plain_write(pfn, Some(index), value);
    }

    fn zero_frame(&mut self, pfn: Pfn) {
        self.machine().plain_write(pfn, None, 0);
    }

    fn read_bytes(&self, pfn: Pfn, offset: usize, out: &mut [u8]) {
        let m = self.0.borrow();
        let words = &m.frames[m.mfn_of(pfn).0 as usize].words;
        for (i, byte) in out.iter_mut().enumerate() {
            let at = offset + i;
            *byte = words[at / 8].to_le_bytes()[at % 8];
        }
    }

    fn write_bytes(&mut self, pfn: Pfn, offset: usize, bytes: &[u8]) {
        self.machine().plain_write_bytes(pfn, offset, bytes);
    }
}

/// The guest's frame allocator, telling the model about every frame given back.
pub struct CheckedFrames {
    pub inner: FrameAllocator<'static>,
    pub xen: Xen,
    /// The allocation (0-based, from when it was set) that fails as from an empty pool: the
    /// host side of the kernel's `frame` injection point.
    pub fail_allocation: Option<u64>,
}

impl CheckedFrames {
    /// An allocator over the machine's frames with the boot frames reserved.
    pub fn new(xen: &Xen) -> CheckedFrames {
        let nr_pages = xen.machine().p2m().len() as u64;
        let buffer = Box::leak(vec![0u64; nr_pages.div_ceil(64) as usize].into_boxed_slice());
        let reserved =
            [super::addr::PfnRange { start: Pfn(0), count_frames: BOOT_RESERVED_FRAMES }];
        let inner =
            FrameAllocator::new(buffer, nr_pages, &reserved).expect("buffer sized for nr_pages");
        CheckedFrames { inner, xen: xen.clone(), fail_allocation: None }
    }
}

impl FrameSource for CheckedFrames {
    fn allocate_frame(&mut self) -> Result<Pfn, FrameError> {
        match self.fail_allocation {
            Some(0) => {
                self.fail_allocation = None;
                return Err(FrameError::Exhausted);
            }
            Some(n) => self.fail_allocation = Some(n - 1),
            None => {}
        }
        self.inner.allocate_frame()
    }

    fn free_frame(&mut self, pfn: Pfn) -> Result<(), FrameError> {
        self.xen.machine().guest_freed(pfn);
        self.inner.free_frame(pfn)
    }
}

/// The virtual address of the boot mapping's page `index`.
pub fn boot_va(index: u64) -> VirtAddr {
    VirtAddr::new(KERNEL_VIRT_BASE + (index << PAGE_SHIFT))
}
