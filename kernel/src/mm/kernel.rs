//! The kernel's memory manager: built from start_info at boot, then used by the #PF handler.
//!
//! Boot order (each step's cost is in the `stats:` line):
//! 1. p2m from `mfn_list`, m2p from Xen's table (its size from XENMEM_machphys_mapping);
//! 2. the frame allocator over everything past the bootstrap region (`boot_reserved`);
//! 3. the boot tables taken over, Xen's initial mapping recorded as an alias window;
//! 4. the direct map of all pseudo-physical memory, built in ascending parts so that the
//!    tables of each part are written through the parts already mapped;
//! 5. the guard page below the boot stack unmapped.
//!
//! The page-fault handler then resumes after a spurious fault (a stale read-only translation of
//! a page the tables now allow, see [`SpuriousCheck`]), serves demand-zero regions (the kernel
//! heap) and names a guard page hit a stack overflow.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::addr::{Pfn, VirtAddr, PAGE_SIZE};
use super::backend::BatchFailure;
use super::boot_reserved::BootLayout;
use super::frame::{FrameAllocator, FrameError, FrameSource, BITMAP_WORDS_4GIB, MAX_FRAMES_4GIB};
use super::hypercall_mmu::HypercallMmu;
use super::kernel_fault::{
    classify, region_of, FaultAction, KernelRegion, KernelRegionKind, KernelRegions, SpuriousCheck,
    UnexpectedFault,
};
use super::kernel_space::{AliasWindow, DIRECT_MAP_BASE, KERNEL_VIRT_BASE};
use super::p2m::P2m;
use super::page_table::{MapToError, MmError, PageTables, UpdateError};
use super::pte::PteFlags;
use super::window_access::{machine_to_phys_table, WindowAccess};
use crate::arch::x86_64::page_fault::PageFault;
use crate::arch::x86_64::smp::{GuardRefused, StackGuards};
use crate::xen::start_info::StartInfo;
use crate::xen::vcpu_lock::{VcpuLock, VcpuLockGuard};
use crate::xen::{abi, hypercall, slots, time, vcpu, XenError};

pub type KernelTables = PageTables<'static, HypercallMmu, WindowAccess>;

/// The kernel heap: demand-zero, grows through the page-fault handler.
pub const HEAP_BASE: u64 = 0xffff_c000_0000_0000;
pub const HEAP_SIZE_BYTES: u64 = 1 << 30;
/// A demand-zero region for the in-guest memory tests: two whole L4 slots, so that touching it
/// needs new L3, L2 and L1 tables.
pub const DEMAND_TEST_BASE: u64 = 0xffff_d000_0000_0000;
pub const DEMAND_TEST_SIZE_BYTES: u64 = 2 << 39;

/// Frames mapped per part of the direct map (128 MiB): its 64 L1 tables fit in the padding
/// Xen leaves after the bootstrap region (at least 512 KiB).
const DIRECT_MAP_PART_FRAMES: u64 = 32 * 1024;

const DATA_FLAGS: PteFlags =
    PteFlags::PRESENT.union(PteFlags::WRITABLE).union(PteFlags::NO_EXECUTE);

/// Page faults by outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultCounts {
    pub demand_zero: u64,
    pub stack_overflow: u64,
    pub unexpected: u64,
}

pub struct KernelMm {
    pub tables: KernelTables,
    pub frames: FrameAllocator<'static>,
    pub faults: FaultCounts,
    pub boot_reserved_frames: u64,
    /// Table pages the direct map took (counted right after it was built: later faults, e.g.
    /// the heap's first, add their own).
    pub direct_map_tables: u64,
    pub boot_window: AliasWindow,
    regions: KernelRegions,
}

/// Why a stack guard could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackGuardError {
    /// All region slots are taken ([`super::kernel_fault::MAX_REGIONS`]).
    TooManyRegions,
    /// Unmapping the guard page failed.
    Unmap(UpdateError),
    /// Its frame could not go back to the pool.
    Frame(FrameError),
    /// No guard starts at the address given back.
    NoSuchGuard(VirtAddr),
    /// The page given back is not in the heap.
    OutsideHeap(VirtAddr),
    /// Mapping a page again where the guard was failed (the page is plain demand-zero heap
    /// again all the same: its record is gone).
    Map(MapToError),
}

impl KernelMm {
    pub(in crate::mm) fn regions(&self) -> &[KernelRegion] {
        self.regions.as_slice()
    }

    /// Unmaps the page at `va` and registers it as the guard page `name` below a kernel stack:
    /// a fault there is then reported as a stack overflow. The frame goes back to the pool.
    pub(crate) fn add_stack_guard(
        &mut self,
        name: &'static str,
        va: VirtAddr,
    ) -> Result<(), StackGuardError> {
        if self.regions.is_full() {
            return Err(StackGuardError::TooManyRegions);
        }
        let root = self.tables.kernel_root();
        let pfn = self.tables.unmap_flushed(root, va).map_err(StackGuardError::Unmap)?;
        self.frames.free_frame(pfn).map_err(StackGuardError::Frame)?;
        let guard = KernelRegion {
            name,
            start: va,
            size_bytes: PAGE_SIZE,
            kind: KernelRegionKind::StackGuard,
            user: false,
        };
        self.regions.push(guard).map_err(|_| StackGuardError::TooManyRegions)
    }

    /// Gives the guard page at `va`, a page of the heap, back to the heap: its record goes
    /// first (so that the heap can never fault on a stale guard), then a zeroed frame is mapped
    /// there as the heap maps its pages. Called before the stack above it is freed.
    pub(crate) fn remove_stack_guard(&mut self, va: VirtAddr) -> Result<(), StackGuardError> {
        let heap = VirtAddr::new(HEAP_BASE)..VirtAddr::new(HEAP_BASE + HEAP_SIZE_BYTES);
        if !heap.contains(&va) {
            return Err(StackGuardError::OutsideHeap(va));
        }
        self.regions.remove_guard(va).ok_or(StackGuardError::NoSuchGuard(va))?;
        let root = self.tables.kernel_root();
        self.tables
            .map_zeroed(root, va, DATA_FLAGS, &mut self.frames)
            .map_err(StackGuardError::Map)?;
        Ok(())
    }
}

/// The memory manager's side of [`StackGuards`]: guard pages below the stacks vCPU 0 takes
/// from the heap for the other vCPUs. Each call takes [`MM`] (vCPU 0 at bring-up, nothing held).
pub struct HeapStackGuards;

impl StackGuards for HeapStackGuards {
    fn add(&mut self, name: &'static str, page: u64) -> Result<(), GuardRefused> {
        with_mm(page, |mm, va| mm.add_stack_guard(name, va))
    }

    fn remove(&mut self, page: u64) -> Result<(), GuardRefused> {
        with_mm(page, KernelMm::remove_stack_guard)
    }
}

/// Runs `op` on the memory manager for the guard page at `page`.
fn with_mm(
    page: u64,
    op: impl FnOnce(&mut KernelMm, VirtAddr) -> Result<(), StackGuardError>,
) -> Result<(), GuardRefused> {
    let va = VirtAddr::try_new(page).map_err(|_| refused("a non-canonical address", None))?;
    let mut mm = MM.lock();
    let mm = mm.as_mut().ok_or(refused("no memory manager", None))?;
    op(mm, va).map_err(StackGuardError::refused)
}

fn refused(what: &'static str, xen: Option<XenError>) -> GuardRefused {
    GuardRefused { what, xen }
}

impl StackGuardError {
    /// In words, for a vCPU's report (arch knows no memory-manager type).
    fn refused(self) -> GuardRefused {
        match self {
            Self::TooManyRegions => refused("every kernel region slot is taken", None),
            Self::Unmap(UpdateError::HypervisorCall(e)) => {
                refused("update_va_mapping (unmapping the page)", Some(e))
            }
            Self::Unmap(_) => refused("unmapping the page failed", None),
            Self::Frame(_) => refused("its frame could not go back to the pool", None),
            Self::NoSuchGuard(_) => refused("no guard page starts there", None),
            Self::OutsideHeap(_) => refused("the page is not in the heap", None),
            Self::Map(MapToError::Frame(FrameError::Exhausted)) => {
                refused("mapping a heap page there again: out of frames", None)
            }
            Self::Map(_) => refused("mapping a heap page there again failed", None),
        }
    }
}

/// The one memory manager. Locked by the page-fault handler: nothing that holds it may fault
/// (hence an address space's records are allocated and touched before it is taken, see
/// `mm::address_space::Bookkeeping`).
///
/// Lock order, everywhere: the running process (`proc::process::CURRENT`), then `MM`, then the
/// shared program frames (`proc::process::SHARED`). The kernel's #PF handler tries `MM`: held
/// by this vCPU (the fault comes from inside the memory manager), the fault is reported, since
/// waiting would never end; held by another vCPU, it waits, for at most [`MM_WAIT_LIMIT_NS`]
/// (see [`take_mm_for_fault`]). The watchdog only tries the process's lock.
pub static MM: VcpuLock<Option<KernelMm>> = VcpuLock::new(None);

/// [`MM`] held.
pub type MmGuard<'a> = VcpuLockGuard<'a, Option<KernelMm>>;

/// How long a kernel page fault waits for another vCPU's hold of [`MM`] before it is reported:
/// generous, since a hold is as long as the longest operation (a process's teardown under TCG).
pub const MM_WAIT_LIMIT_NS: u64 = 10_000_000_000;

/// Kernel page faults that found [`MM`] held by another vCPU and began to wait, and those of
/// them that then took it.
static FAULTS_WAITING: AtomicU64 = AtomicU64::new(0);
static FAULTS_WAITED: AtomicU64 = AtomicU64::new(0);

/// (faults that began to wait for another vCPU's hold of [`MM`], faults that then took it).
pub fn faults_waited_for_mm() -> (u64, u64) {
    (FAULTS_WAITING.load(Ordering::Acquire), FAULTS_WAITED.load(Ordering::Acquire))
}

/// Takes [`MM`] for the kernel page-fault handler: at once if it is free; if this vCPU holds it
/// (the fault comes from inside the memory manager), never; if another vCPU holds it, once that
/// vCPU lets go, within [`MM_WAIT_LIMIT_NS`].
///
/// Why a holder read here is never mistaken (vCPU `me` faults; the spin lock's acquire and
/// release order everything one holder does before everything the next one does, so the
/// records and clears of `holder` follow the holds in one order):
/// - `Some(me)`: `me`'s last write to `holder` is its record (a vCPU reads its own last write or
///   a later one, and no other vCPU writes while `me` holds), so `me`'s interrupted code holds
///   `MM`: waiting would never end, the fault is fatal.
/// - `Some(other)`: `other` holds it or held it a moment ago (a stale record): either way
///   waiting and trying again is right.
/// - `None`: free (the next try takes it), or held by a vCPU that has not recorded itself yet.
///   That vCPU is not `me`: `me`'s own windows between the spin lock and the record, or the
///   clear and the release, cannot fault (see [`VcpuLock`]). So it is another vCPU: wait. With
///   one vCPU there is no other: fatal at once, as before SMP.
///
/// The wait spins with the fault's vCPU in the handler; the bound turns a hold that never ends
/// (another vCPU stuck, or a fault in an upcall that interrupted one of `me`'s windows) into
/// the report naming the holder.
fn take_mm_for_fault() -> Result<MmGuard<'static>, FatalFault> {
    if let Some(guard) = MM.try_lock() {
        return Ok(guard);
    }
    let me = vcpu::current();
    let start = time::now_ns();
    let mut waiting = false;
    loop {
        let holder = MM.holder();
        if holder == Some(me) || (holder.is_none() && !vcpu::several()) {
            return Err(FatalFault::InsideMemoryManager { holder });
        }
        if !waiting {
            FAULTS_WAITING.fetch_add(1, Ordering::AcqRel);
            waiting = true;
        }
        if time::now_ns().saturating_sub(start) > MM_WAIT_LIMIT_NS {
            return Err(FatalFault::MemoryManagerHeldElsewhere { holder });
        }
        core::hint::spin_loop();
        if let Some(guard) = MM.try_lock() {
            FAULTS_WAITED.fetch_add(1, Ordering::AcqRel);
            return Ok(guard);
        }
    }
}

struct Bitmaps {
    frames: [u64; BITMAP_WORDS_4GIB],
    tables: [u64; BITMAP_WORDS_4GIB],
}
/// A one-shot cell: `init` takes the bitmaps for good by leaking the guard (a second `init`
/// finds the lock held and is refused).
static BITMAPS: spin::Mutex<Bitmaps> =
    spin::Mutex::new(Bitmaps { frames: [0; BITMAP_WORDS_4GIB], tables: [0; BITMAP_WORDS_4GIB] });

extern "C" {
    static boot_stack_guard: u8;
    static boot_stack_bottom: u8;
}

/// The kernel tables as the #PF handler reads them without [`MM`]: set once the direct map is
/// built.
static SPURIOUS_CHECK: spin::Once<SpuriousCheck<'static, WindowAccess>> = spin::Once::new();

/// Spurious kernel page faults resolved since boot, on every vCPU (counted outside [`MM`], which
/// the fault may have come from inside of).
static SPURIOUS_FAULTS: AtomicU64 = AtomicU64::new(0);

static P2M_LIST: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The virtual address of the p2m list (`start_info.mfn_list`).
pub fn p2m_list_address() -> u64 {
    P2M_LIST.load(core::sync::atomic::Ordering::Relaxed)
}

/// Why the memory manager could not be built.
#[derive(Debug)]
pub enum MmInitError {
    /// `init` ran before: the bitmaps are taken.
    Twice,
    TooMuchMemory(u64),
    Xen(&'static str, XenError),
    Frames(FrameError),
    Tables(&'static str, MmError),
    TooManyWindows(&'static str),
    /// The boot regions do not fit the region table.
    TooManyRegions,
}

impl fmt::Display for MmInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Twice => write!(f, "the memory manager is initialised once"),
            Self::TooMuchMemory(n) => {
                write!(f, "{n} pages is more than the {MAX_FRAMES_4GIB} this kernel tracks")
            }
            Self::Xen(what, e) => write!(f, "{what}: {e}"),
            Self::Frames(e) => write!(f, "frame allocator: {e:?}"),
            Self::Tables(what, e) => write!(f, "{what}: {e:?}"),
            Self::TooManyWindows(what) => write!(f, "{what}: every alias-window slot is taken"),
            Self::TooManyRegions => write!(f, "the boot regions do not fit the region table"),
        }
    }
}

/// Builds the memory manager (steps 1-5 above) and installs it in [`MM`].
pub fn init(info: &StartInfo<'_>) -> Result<(), MmInitError> {
    let raw = info.raw();
    let nr_pages = raw.nr_pages;
    if nr_pages > MAX_FRAMES_4GIB {
        return Err(MmInitError::TooMuchMemory(nr_pages));
    }
    P2M_LIST.store(raw.mfn_list, core::sync::atomic::Ordering::Relaxed);
    let machphys = hypercall::machphys_mapping()
        .map_err(|e| MmInitError::Xen("XENMEM_machphys_mapping", e))?;
    // SAFETY: Xen maps the p2m list (nr_pages u64 entries) at mfn_list for the life of the
    // domain, and we never write it.
    let p2m_list =
        unsafe { core::slice::from_raw_parts(raw.mfn_list as *const u64, nr_pages as usize) };
    // SAFETY: we run as a 64-bit PV guest; Xen maps m2p entries up to max_mfn.
    let m2p = unsafe { machine_to_phys_table(machphys.max_mfn as usize + 1) };
    let p2m = P2m::new(p2m_list, m2p);

    let ring_pfn = |mfn: u64| p2m.mfn_to_pfn(super::addr::Mfn(mfn)).ok();
    let layout = BootLayout {
        virt_base: KERNEL_VIRT_BASE,
        nr_pages,
        start_info_va: raw as *const abi::start_info as u64,
        pt_base: raw.pt_base,
        nr_pt_frames: raw.nr_pt_frames,
        mfn_list: raw.mfn_list,
        mod_start: raw.mod_start,
        mod_len: raw.mod_len,
        mod_start_is_pfn: raw.flags & xen_sys::SIF_MOD_START_PFN != 0,
        first_p2m_pfn: raw.first_p2m_pfn,
        nr_p2m_frames: raw.nr_p2m_frames,
        console_pfn: if info.is_dom0() { None } else { ring_pfn(info.domu_console().0) },
        store_pfn: if info.is_dom0() || info.store().0 == 0 {
            None
        } else {
            ring_pfn(info.store().0)
        },
    };
    let (reserved, reserved_count) = layout.reserved();
    let reserved = &reserved[..reserved_count];

    let bitmaps = BITMAPS.try_lock().map(spin::MutexGuard::leak).ok_or(MmInitError::Twice)?;
    let words = (nr_pages as usize).div_ceil(64);
    let frames = FrameAllocator::new(&mut bitmaps.frames[..words], nr_pages, reserved)
        .map_err(MmInitError::Frames)?;
    let boot_reserved_frames = nr_pages - frames.free_frames();

    // Until we know how far Xen's initial mapping reaches, only the bootstrap region is used.
    let bootstrap = AliasWindow {
        virt_base: VirtAddr::new(KERNEL_VIRT_BASE),
        first_pfn: Pfn(0),
        count_frames: layout.bootstrap_end().0,
    };
    // SAFETY: Xen's initial mapping maps pfn N at KERNEL_VIRT_BASE + N pages, writable, for at
    // least the bootstrap region (Xen public/xen.h start_info comment), except our slot pages,
    // whose pfns are reserved image frames that the page-table code never touches.
    let mem = unsafe { WindowAccess::new(bootstrap) };
    let l4_pfn = Pfn((raw.pt_base - KERNEL_VIRT_BASE) / PAGE_SIZE);
    let mut tables = PageTables::new(HypercallMmu, mem, p2m, l4_pfn, &mut bitmaps.tables[..words])
        .map_err(|e| MmInitError::Tables("taking over the boot page tables", e.into()))?;

    let boot_window = initial_mapping(&tables, nr_pages);
    // SAFETY: `initial_mapping` checked that every page of the window maps its own pfn (or is
    // a slot, see above).
    unsafe { tables.memory_mut().replace_newest(boot_window) };
    tables
        .add_alias_window(boot_window)
        .map_err(|_| MmInitError::TooManyWindows("recording the boot mapping"))?;

    let mut mm = KernelMm {
        tables,
        frames,
        faults: FaultCounts::default(),
        boot_reserved_frames,
        direct_map_tables: 0,
        boot_window,
        regions: KernelRegions::new(),
    };
    for region in boot_regions() {
        mm.regions.push(region).map_err(|_| MmInitError::TooManyRegions)?;
    }
    let tables_before = mm.tables.stats().tables_live();
    build_direct_map(&mut mm, nr_pages)?;
    mm.direct_map_tables = mm.tables.stats().tables_live() - tables_before;
    // SAFETY: the direct map, just built, maps every frame of the domain readable for the
    // kernel's life (it is never unmapped; table frames are read-only there, and the check only
    // reads).
    let direct_map = unsafe { WindowAccess::new(AliasWindow::direct_map(nr_pages)) };
    SPURIOUS_CHECK.call_once(|| SpuriousCheck::new(p2m, direct_map, mm.tables.kernel_root()));
    unmap_boot_stack_guard(&mut mm)?;
    *MM.lock() = Some(mm);
    Ok(())
}

/// How far Xen's initial mapping reaches: pages from VIRT_BASE that map their own pfn, with
/// the slot pages (which map Xen-shared frames) allowed inside.
fn initial_mapping(tables: &KernelTables, nr_pages: u64) -> AliasWindow {
    let root = tables.kernel_root();
    let mut count = 0;
    while count < nr_pages {
        let va = KERNEL_VIRT_BASE + count * PAGE_SIZE;
        if !slots::contains(va) {
            match tables.translate(root, VirtAddr::new(va)) {
                Ok(Some(m)) if m.pfn == Pfn(count) => {}
                _ => break,
            }
        }
        count += 1;
    }
    AliasWindow {
        virt_base: VirtAddr::new(KERNEL_VIRT_BASE),
        first_pfn: Pfn(0),
        count_frames: count,
    }
}

fn build_direct_map(mm: &mut KernelMm, nr_pages: u64) -> Result<(), MmInitError> {
    let direct = AliasWindow::direct_map(nr_pages);
    mm.tables
        .add_alias_window(direct)
        .map_err(|_| MmInitError::TooManyWindows("recording the direct map"))?;
    let empty = AliasWindow { count_frames: 0, ..direct };
    // SAFETY: an empty window covers nothing yet; it grows below as parts get mapped.
    unsafe { mm.tables.memory_mut().add_window(empty) }
        .map_err(|_| MmInitError::TooManyWindows("direct map window"))?;
    let mut done = 0;
    while done < nr_pages {
        mm.tables
            .map_window_part(direct, done, DIRECT_MAP_PART_FRAMES, &mut mm.frames)
            .map_err(|e| MmInitError::Tables("building the direct map", e.into()))?;
        done = (done + DIRECT_MAP_PART_FRAMES).min(nr_pages);
        // SAFETY: frames 0..done are now mapped at DIRECT_MAP_BASE, writable unless they are
        // tables (map_window_part maps table frames read-only).
        unsafe {
            mm.tables.memory_mut().replace_newest(AliasWindow { count_frames: done, ..direct })
        };
    }
    Ok(())
}

fn unmap_boot_stack_guard(mm: &mut KernelMm) -> Result<(), MmInitError> {
    let guard = VirtAddr::new(core::ptr::addr_of!(boot_stack_guard) as u64);
    let root = mm.tables.kernel_root();
    let pfn = mm
        .tables
        .unmap_flushed(root, guard)
        .map_err(|e| MmInitError::Tables("unmapping the boot stack guard", e.into()))?;
    // The guard's frame is still ours (and in the direct map): give it to the allocator.
    mm.frames.free_frame(pfn).map_err(MmInitError::Frames)?;
    Ok(())
}

fn boot_regions() -> [KernelRegion; 5] {
    let guard = core::ptr::addr_of!(boot_stack_guard) as u64;
    let stack_bottom = core::ptr::addr_of!(boot_stack_bottom) as u64;
    [
        KernelRegion {
            name: "heap",
            start: VirtAddr::new(HEAP_BASE),
            size_bytes: HEAP_SIZE_BYTES,
            kind: KernelRegionKind::DemandZero { flags: DATA_FLAGS },
            user: false,
        },
        KernelRegion {
            name: "demand-test",
            start: VirtAddr::new(DEMAND_TEST_BASE),
            size_bytes: DEMAND_TEST_SIZE_BYTES,
            kind: KernelRegionKind::DemandZero { flags: DATA_FLAGS },
            user: false,
        },
        KernelRegion {
            name: "boot-stack-guard",
            start: VirtAddr::new(guard),
            size_bytes: stack_bottom - guard,
            kind: KernelRegionKind::StackGuard,
            user: false,
        },
        KernelRegion {
            name: "direct-map",
            start: VirtAddr::new(DIRECT_MAP_BASE),
            size_bytes: MAX_FRAMES_4GIB * PAGE_SIZE,
            kind: KernelRegionKind::Fixed,
            user: false,
        },
        KernelRegion {
            name: "kernel-image",
            start: VirtAddr::new(KERNEL_VIRT_BASE),
            size_bytes: 1 << 30,
            kind: KernelRegionKind::Fixed,
            user: false,
        },
    ]
}

/// Why a kernel-mode page fault was not handled, for the crash report.
pub enum FatalFault {
    NoMemoryManager,
    /// [`MM`] is held by this vCPU (`holder`), or by no recorded vCPU with one vCPU running.
    InsideMemoryManager {
        holder: Option<usize>,
    },
    /// Another vCPU (`None`: one that had not recorded itself) held [`MM`] past
    /// [`MM_WAIT_LIMIT_NS`].
    MemoryManagerHeldElsewhere {
        holder: Option<usize>,
    },
    StackOverflow(&'static str),
    Unexpected(UnexpectedFault),
    OutOfFrames(&'static str),
    MapFailed(MapToError),
    /// A spurious fault whose page Xen refused to invalidate.
    SpuriousNotInvalidated(BatchFailure),
}

impl fmt::Display for FatalFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMemoryManager => write!(f, "page fault before the memory manager exists"),
            Self::InsideMemoryManager { holder: Some(n) } => {
                write!(
                    f,
                    "page fault inside the memory manager (its lock is held by this vCPU, {n})"
                )
            }
            Self::InsideMemoryManager { holder: None } => {
                write!(
                    f,
                    "page fault inside the memory manager (its lock is held, holder not recorded)"
                )
            }
            Self::MemoryManagerHeldElsewhere { holder } => {
                let secs = MM_WAIT_LIMIT_NS / 1_000_000_000;
                match holder {
                    Some(n) => write!(f, "page fault waited {secs} s for the memory manager, held by vCPU {n}"),
                    None => write!(f, "page fault waited {secs} s for the memory manager, held by a vCPU not yet recorded"),
                }
            }
            Self::StackOverflow(region) => {
                write!(f, "kernel stack overflow: hit the guard page {region}")
            }
            Self::Unexpected(reason) => write!(f, "unexpected page fault: {reason:?}"),
            Self::OutOfFrames(region) => {
                write!(f, "out of memory: no free frame to back a page of {region}")
            }
            Self::MapFailed(e) => write!(f, "mapping the page failed: {e:?}"),
            Self::SpuriousNotInvalidated(e) => {
                write!(f, "spurious page fault, but Xen refused the INVLPG: {e:?}")
            }
        }
    }
}

/// The handler of a page fault in kernel mode (arch decoded it, cr2 included): a spurious fault
/// is invalidated without [`MM`] (it may come from inside it); otherwise `classify` decides.
/// `Ok` once the faulting instruction can run again.
pub fn handle_page_fault(fault: &PageFault) -> Result<(), FatalFault> {
    if let Some(check) = SPURIOUS_CHECK.get() {
        match check.resolve(fault, &mut HypercallMmu) {
            Ok(true) => {
                SPURIOUS_FAULTS.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => return Err(FatalFault::SpuriousNotInvalidated(e)),
        }
    }
    let fault = *fault;
    let mut guard = take_mm_for_fault()?;
    let Some(mm) = guard.as_mut() else { return Err(FatalFault::NoMemoryManager) };
    let Ok(va) = VirtAddr::try_new(fault.address) else {
        mm.faults.unexpected += 1;
        return Err(FatalFault::Unexpected(UnexpectedFault::OutsideRegions));
    };
    match classify(va, fault, mm.regions()) {
        FaultAction::MapZeroed { page, flags } => {
            let root = mm.tables.kernel_root();
            match mm.tables.map_zeroed(root, page, flags, &mut mm.frames) {
                Ok(_) => {
                    mm.faults.demand_zero += 1;
                    Ok(())
                }
                Err(MapToError::Frame(FrameError::Exhausted)) => {
                    mm.faults.unexpected += 1;
                    let region = region_of(page, mm.regions()).map_or("?", |r| r.name);
                    Err(FatalFault::OutOfFrames(region))
                }
                Err(e) => {
                    mm.faults.unexpected += 1;
                    Err(FatalFault::MapFailed(e))
                }
            }
        }
        FaultAction::KernelStackOverflow { region } => {
            mm.faults.stack_overflow += 1;
            Err(FatalFault::StackOverflow(region))
        }
        FaultAction::Unexpected(reason) => {
            mm.faults.unexpected += 1;
            Err(FatalFault::Unexpected(reason))
        }
    }
}

/// The `mmu_update` entries and `mmuext_op` operations sent since boot (0 before the memory
/// manager exists).
pub fn batch_entries() -> (u64, u64) {
    MM.lock().as_ref().map_or((0, 0), |mm| {
        let stats = mm.tables.stats();
        (stats.mmu_update_entries, stats.mmuext_ops)
    })
}

/// User page tables built and TLB shootdown ops sent since boot (0 before the memory manager
/// exists).
pub fn smp_counts() -> (u64, u64) {
    MM.lock().as_ref().map_or((0, 0), |mm| {
        let stats = mm.tables.stats();
        (stats.user_tables_built, stats.tlb_shootdowns)
    })
}

/// Prints the `stats:` line: the memory manager's counters, faults, frames and every hypercall
/// by kind; the returns through HYPERVISOR_iret are counted apart (`hc_iret`). The hypercalls
/// are the running vCPU's (vCPU 0 prints it: the other vCPUs count their own).
pub fn print_stats() {
    let guard = MM.lock();
    let Some(mm) = guard.as_ref() else {
        crate::println!("stats: memory manager not initialised");
        return;
    };
    let line = mm.tables.stats().line(mm.frames.free_frames(), mm.frames.used_frames());
    let f = mm.faults;
    crate::println!(
        "{line} faults_demand={} faults_stack_overflow={} faults_unexpected={} faults_spurious={} hypercalls={} hc_mmu_update={} hc_mmuext_op={} hc_update_va_mapping={} hc_console_io={} hc_sched_op={} hc_event_channel_op={} hc_iret={}",
        f.demand_zero,
        f.stack_overflow,
        f.unexpected,
        SPURIOUS_FAULTS.load(Ordering::Relaxed),
        hypercall::total(),
        hypercall::count(abi::__HYPERVISOR_mmu_update),
        hypercall::count(abi::__HYPERVISOR_mmuext_op),
        hypercall::count(abi::__HYPERVISOR_update_va_mapping),
        hypercall::count(abi::__HYPERVISOR_console_io),
        hypercall::count(abi::__HYPERVISOR_sched_op),
        hypercall::count(abi::__HYPERVISOR_event_channel_op),
        hypercall::irets(),
    );
}
