//! The running program: its address space, demand paging of user memory, and how it ends.
//!
//! One program runs at a time. Its user L4 is pinned and installed as the user base pointer;
//! the kernel never dereferences user addresses: it finds the frame through the user tables
//! and copies through the direct map (`copy_from_user`/`copy_to_user`), faulting pages in on
//! the way like the CPU would, so a bad pointer is an `EFAULT`, never a kernel fault.

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use super::areas::Areas;
use super::elf::LoadPlan;
use super::expect::{Access, Cause, Outcome, PageFault};
use super::initial_stack::{
    self, StackSpec, AT_FAULTLINE_KERNEL_ADDRESS, AT_FAULTLINE_P2M, AT_FAULTLINE_PAGE_TABLE,
};
use super::layout::{self, page_floor, Region, PAGE_SIZE, STACK_TOP};
use super::syscall_abi::Errno;
use super::user_fault::{decide, Decision, Source, Space};
use crate::arch::x86_64::exception;
use crate::arch::x86_64::trap_frame::TrapFrame;
use crate::arch::x86_64::user::{self, UserEntry, USER_RFLAGS};
use crate::mm::kernel::{KernelMm, MM};
use crate::mm::{
    FrameSource, MmError, Pfn, PfnRange, PteFlags, Root, TlbFlush, VirtAddr, DIRECT_MAP_BASE,
};
use crate::xen::{abi, events, hypercall, shared_info, time};

/// A program image to run: its file in the boot module and where that lies in frames.
#[derive(Clone, Copy)]
pub struct Image {
    pub name: &'static str,
    pub file: &'static [u8],
    pub plan: LoadPlan,
    /// The frame holding the file's first byte, when the file starts on a page boundary of
    /// the boot module (then its pages are shared, never copied, for read-only use).
    pub file_first_pfn: Option<Pfn>,
    /// All frames of the boot module: mapped into programs, never freed with them.
    pub module_frames: PfnRange,
}

/// Limits for one run.
#[derive(Clone, Copy)]
pub struct Limits {
    pub time_budget_ms: u64,
    pub memory_limit_bytes: u64,
}

struct Process {
    image: Image,
    root: Root,
    heap: Range<u64>,
    brk: u64,
    areas: Areas,
    frames_at_start: u64,
    limit_frames: u64,
    deadline_ns: u64,
    fs_base: u64,
    gs_base: u64,
}

static CURRENT: spin::Mutex<Option<Process>> = spin::Mutex::new(None);

/// Read-only file pages that are not whole pages of the module (the last page of a segment,
/// a segment that starts mid-page): copied once when the program is loaded, then mapped by
/// every run like the module's own frames.
struct PageCache {
    pages: [(u64, Pfn); PAGE_CACHE_PAGES],
    len: usize,
}
const PAGE_CACHE_PAGES: usize = 32;

static PAGE_CACHE: spin::Mutex<PageCache> =
    spin::Mutex::new(PageCache { pages: [(0, Pfn(0)); PAGE_CACHE_PAGES], len: 0 });

impl PageCache {
    fn find(&self, page: u64) -> Option<Pfn> {
        self.pages[..self.len].iter().find(|(p, _)| *p == page).map(|(_, pfn)| *pfn)
    }

    fn holds(&self, pfn: Pfn) -> bool {
        self.pages[..self.len].iter().any(|(_, p)| *p == pfn)
    }
}

/// Loads `image`: copies its partial read-only file pages into the page cache, once for all
/// of its runs. Pages past the cache's capacity are copied per run instead.
pub fn load(image: &Image) -> Result<(), StartError> {
    let mut guard = MM.lock();
    let mut cache = PAGE_CACHE.lock();
    let mm = guard.as_mut().expect("memory manager initialised at boot");
    for seg in image.plan.segments().iter().filter(|s| !s.perms.write) {
        let mut page = seg.pages().start;
        while page < seg.pages().end && cache.len < PAGE_CACHE_PAGES {
            let contents = seg.page_contents(image.file, page);
            let shared_whole = contents.is_whole_file_page()
                && image.file_first_pfn.is_some()
                && page >= seg.vaddr;
            if !shared_whole && !contents.bytes.is_empty() {
                let pfn = mm
                    .frames
                    .allocate_frame()
                    .map_err(|e| StartError::Memory(MmError::Frame(e)))?;
                // SAFETY: `pfn` was just allocated and is ours alone; the direct map maps it
                // writable (it is not a table); the copy stays inside the page.
                unsafe { fill_frame(pfn, contents.offset_in_page, contents.bytes) };
                let len = cache.len;
                cache.pages[len] = (page, pfn);
                cache.len += 1;
            }
            page += PAGE_SIZE;
        }
    }
    Ok(())
}

/// Frees the page cache of the program loaded last.
pub fn unload() {
    let mut guard = MM.lock();
    let mut cache = PAGE_CACHE.lock();
    let mm = guard.as_mut().expect("memory manager initialised at boot");
    for i in 0..cache.len {
        let pfn = cache.pages[i].1;
        give_back(mm, pfn);
    }
    cache.len = 0;
}

/// Zeroes frame `pfn` and copies `bytes` into it at `offset`.
///
/// # Safety
/// `pfn` must be a frame nothing else uses, mapped writable in the direct map, and
/// `offset + bytes.len()` must not pass the page.
unsafe fn fill_frame(pfn: Pfn, offset: usize, bytes: &[u8]) {
    // SAFETY: the caller's contract.
    unsafe {
        let dst = frame_ptr(pfn);
        core::ptr::write_bytes(dst, 0, PAGE_SIZE as usize);
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.add(offset), bytes.len());
    }
}
/// How the program ended; set just before leaving user mode for good.
static ENDING: spin::Mutex<Option<Outcome>> = spin::Mutex::new(None);

/// What the user-memory paths did, for the `stats:` line and the sharing tests.
pub struct Counters {
    pub shared_file_maps: AtomicU64,
    pub private_file_copies: AtomicU64,
    pub zero_fills: AtomicU64,
    pub cow_copies: AtomicU64,
    pub user_faults: AtomicU64,
    pub syscalls: AtomicU64,
    /// The first frame the running program mapped from the module (0: none yet): two runs of
    /// one program print the same value when they share their text.
    pub first_shared_pfn: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    shared_file_maps: AtomicU64::new(0),
    private_file_copies: AtomicU64::new(0),
    zero_fills: AtomicU64::new(0),
    cow_copies: AtomicU64::new(0),
    user_faults: AtomicU64::new(0),
    syscalls: AtomicU64::new(0),
    first_shared_pfn: AtomicU64::new(0),
};

/// Failures of the kernel's own calls while a program ran (a Xen refusal of a flush, a timer or
/// a base-pointer switch, a frame that could not be given back). They never pass silently: the
/// suite reports them after the run as an ERROR. The upcall path may record them, so the lock is
/// only ever tried, never waited for.
static KERNEL_ERRORS: spin::Mutex<(u64, Option<(&'static str, i64)>)> = spin::Mutex::new((0, None));

/// Records a failed kernel call (`errno` as Xen or the allocator gave it).
pub fn kernel_error(what: &'static str, errno: i64) {
    if let Some(mut errors) = KERNEL_ERRORS.try_lock() {
        errors.0 += 1;
        errors.1.get_or_insert((what, errno));
    }
}

/// Takes the failures recorded since the last call: their count and the first one.
pub fn take_kernel_errors() -> (u64, Option<(&'static str, i64)>) {
    core::mem::take(&mut *KERNEL_ERRORS.lock())
}

fn check_xen(what: &'static str, result: Result<(), crate::xen::XenError>) {
    if let Err(e) = result {
        kernel_error(what, -e.0);
    }
}

fn check_mm<T>(what: &'static str, result: Result<T, MmError>) {
    if let Err(e) = result {
        kernel_error(what, mm_errno(e));
    }
}

fn mm_errno(e: MmError) -> i64 {
    match e {
        MmError::Hypervisor(failure) => failure.errno.0,
        MmError::HypervisorCall(errno) => errno.0,
        _ => 0,
    }
}

/// Gives a frame back, recording a refusal (a double free would be a kernel bug).
fn give_back(mm: &mut KernelMm, pfn: Pfn) {
    if mm.frames.free_frame(pfn).is_err() {
        kernel_error("freeing a program frame", 0);
    }
}

/// The stack Xen switches to when the program enters the kernel, with a guard page below it.
#[repr(C, align(4096))]
struct TrapStack {
    guard: [u8; 4096],
    stack: [u8; TRAP_STACK_BYTES],
}
const TRAP_STACK_BYTES: usize = 64 * 1024;
#[link_section = ".bss.page_aligned"]
static mut TRAP_STACK: TrapStack = TrapStack { guard: [0; 4096], stack: [0; TRAP_STACK_BYTES] };

static mut STACK_IMAGE: [u8; 16 * 1024] = [0; 16 * 1024];

/// What one run left behind.
pub struct RunReport {
    pub outcome: Outcome,
    /// Frames not back in the pool after the teardown (0 unless something leaked).
    pub leaked_frames: i64,
}

/// Why a program could not be started at all.
#[derive(Debug)]
pub enum StartError {
    Memory(MmError),
    Stack(initial_stack::StackError),
    StackCopy,
    Xen(crate::xen::XenError),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Memory(e) => write!(f, "setting up its address space: {e:?}"),
            Self::Stack(e) => write!(f, "building its initial stack: {e}"),
            Self::StackCopy => write!(f, "copying its initial stack failed"),
            Self::Xen(e) => write!(f, "Xen refused: {e}"),
        }
    }
}

/// Registers the syscall handler and the kernel stack for user mode, and unmaps the stack's
/// guard page.
pub fn init() -> Result<(), InitError> {
    user::set_syscall_handler(super::syscall::dispatch);
    let guard = core::ptr::addr_of!(TRAP_STACK) as u64;
    let bottom = guard + 4096;
    let mut mm = MM.lock();
    let mm = mm.as_mut().ok_or(InitError::NoMemoryManager)?;
    mm.add_stack_guard("trap-stack-guard", VirtAddr::new(guard)).map_err(InitError::Guard)?;
    crate::arch::x86_64::crash::register_stack(bottom..bottom + TRAP_STACK_BYTES as u64);
    user::set_kernel_stack(bottom + TRAP_STACK_BYTES as u64).map_err(InitError::StackSwitch)
}

/// Why user mode could not be set up.
#[derive(Debug)]
pub enum InitError {
    NoMemoryManager,
    Guard(MmError),
    StackSwitch(crate::xen::XenError),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoMemoryManager => write!(f, "no memory manager"),
            Self::Guard(e) => write!(f, "unmapping the trap stack's guard page: {e:?}"),
            Self::StackSwitch(e) => write!(f, "HYPERVISOR_stack_switch: {e}"),
        }
    }
}

/// Runs `image` once in a fresh address space and tears it down again.
pub fn run(image: Image, limits: Limits) -> Result<RunReport, StartError> {
    let (root, frames_at_start, aux) = {
        let mut guard = MM.lock();
        let mm = guard.as_mut().expect("memory manager initialised at boot");
        let frames_at_start = mm.frames.used_frames();
        let root = mm.tables.new_user_root(&mut mm.frames).map_err(StartError::Memory)?;
        let kernel_root = mm.tables.kernel_root();
        let aux = [
            (AT_FAULTLINE_KERNEL_ADDRESS, crate::mm::layout::KERNEL_VIRT_BASE),
            (AT_FAULTLINE_PAGE_TABLE, DIRECT_MAP_BASE + kernel_root.pfn.0 * PAGE_SIZE),
            (AT_FAULTLINE_P2M, p2m_address()),
        ];
        (root, frames_at_start, aux)
    };
    let heap = image.plan.heap_reservation();
    let deadline_ns = time::now_ns() + limits.time_budget_ms * 1_000_000;
    *CURRENT.lock() = Some(Process {
        image,
        root,
        brk: heap.start,
        heap,
        areas: Areas::default(),
        frames_at_start,
        limit_frames: limits.memory_limit_bytes / PAGE_SIZE,
        deadline_ns,
        fs_base: 0,
        gs_base: 0,
    });
    let started = start_user(image, &aux, deadline_ns);
    *ENDING.lock() = None;
    let outcome = match started {
        Ok(entry) => {
            let code = user::run(&entry);
            check_xen("cancelling the watchdog timer", events::set_timer(0));
            events::set_timer_hook(None);
            ENDING.lock().take().unwrap_or(Outcome::Killed {
                cause: Cause::Exception { vector: code as u8 },
                rip: 0,
            })
        }
        Err(e) => {
            teardown();
            return Err(e);
        }
    };
    let leaked_frames = teardown();
    Ok(RunReport { outcome, leaked_frames })
}

fn p2m_address() -> u64 {
    crate::mm::kernel::p2m_list_address()
}

/// Builds the initial stack in user memory, installs the user tables and arms the watchdog.
fn start_user(image: Image, aux: &[(u64, u64)], deadline_ns: u64) -> Result<UserEntry, StartError> {
    // SAFETY: one program starts at a time, and only here; a static keeps the kernel heap
    // (whose growth would count as the program's frames) out of the run.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(STACK_IMAGE) };
    let random = time::rdtsc().to_le_bytes();
    let mut random16 = [0u8; 16];
    random16[..8].copy_from_slice(&random);
    random16[8..].copy_from_slice(&time::now_ns().to_le_bytes());
    let spec = StackSpec {
        args: &[image.name],
        env: &[],
        plan: &image.plan,
        random: random16,
        extra_aux: aux,
    };
    let stack = initial_stack::build(buf, STACK_TOP, &spec).map_err(StartError::Stack)?;
    copy_to_user(stack.rsp, stack.bytes).map_err(|_| StartError::StackCopy)?;
    {
        let mut guard = MM.lock();
        let mm = guard.as_mut().expect("memory manager initialised at boot");
        let root = CURRENT.lock().as_ref().expect("set by run").root;
        mm.tables.set_user_root(Some(root)).map_err(StartError::Memory)?;
    }
    hypercall::set_segment_base(abi::SEGBASE_FS, 0).map_err(StartError::Xen)?;
    hypercall::set_segment_base(abi::SEGBASE_GS_USER, 0).map_err(StartError::Xen)?;
    events::set_timer_hook(Some(watchdog));
    events::set_timer(deadline_ns).map_err(StartError::Xen)?;
    Ok(UserEntry { rip: image.plan.entry, rsp: stack.rsp, rflags: USER_RFLAGS })
}

/// Removes the address space; returns how many frames did not come back.
fn teardown() -> i64 {
    let Some(process) = CURRENT.lock().take() else { return 0 };
    let mut guard = MM.lock();
    let mm = guard.as_mut().expect("memory manager initialised at boot");
    let module = process.image.module_frames;
    check_mm("clearing the user base pointer", mm.tables.set_user_root(None));
    let cache = PAGE_CACHE.lock();
    if let Err(e) = mm.tables.destroy_user_root(process.root, &mut mm.frames, &|pfn| {
        module.contains(pfn) || cache.holds(pfn)
    }) {
        crate::println!("# teardown of {}: {e:?}", process.image.name);
    }
    mm.frames.used_frames() as i64 - process.frames_at_start as i64
}

/// Ends the program: records the outcome and leaves user mode for good. No lock may be held.
pub fn end(outcome: Outcome) -> ! {
    *ENDING.lock() = Some(outcome);
    user::exit_to_kernel(1)
}

/// The timer hook: past the deadline, a program caught in user mode is killed; otherwise the
/// timer is re-armed (a timer event may come early, or while the kernel works for the program).
fn watchdog(frame: &mut TrapFrame) {
    let Some(deadline) = CURRENT.try_lock().and_then(|p| p.as_ref().map(|p| p.deadline_ns)) else {
        return;
    };
    let now = time::now_ns();
    if now >= deadline && !frame.from_kernel() {
        end(Outcome::Killed { cause: Cause::Watchdog, rip: frame.rip });
    }
    check_xen("re-arming the watchdog timer", events::set_timer(deadline.max(now + 1_000_000)));
}

/// The deadline of the running program, for blocking syscalls.
pub fn deadline_ns() -> Option<u64> {
    CURRENT.lock().as_ref().map(|p| p.deadline_ns)
}

/// An exception from user mode. Returns if it was a page fault that is now mapped; otherwise
/// the program is killed (does not return).
pub fn user_exception(frame: &mut TrapFrame) {
    if frame.vector == exception::PAGE_FAULT {
        let cr2 = shared_info::cr2().unwrap_or(0);
        COUNTERS.user_faults.fetch_add(1, Ordering::Relaxed);
        let access = PageFault::from_error_code(frame.error_code, cr2, Region::Unmapped).access;
        let present = frame.error_code & 1 != 0;
        match resolve(cr2, access, present) {
            Ok(()) => return,
            Err(cause) => end(Outcome::Killed {
                cause: fault_cause(cause, frame.error_code, cr2),
                rip: frame.rip,
            }),
        }
    }
    let cause = match frame.vector {
        exception::DIVIDE_ERROR => Cause::DivideError,
        exception::BREAKPOINT => Cause::Breakpoint,
        exception::INVALID_OPCODE => Cause::InvalidOpcode,
        exception::GENERAL_PROTECTION => Cause::GeneralProtection,
        v => Cause::Exception { vector: v as u8 },
    };
    end(Outcome::Killed { cause, rip: frame.rip })
}

/// Why resolving a user page failed.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// The access is not allowed there (the region says where).
    Forbidden(Region),
    OutOfMemory,
}

fn fault_cause(refusal: Refusal, error_code: u64, cr2: u64) -> Cause {
    match refusal {
        Refusal::Forbidden(region) => {
            Cause::PageFault(PageFault::from_error_code(error_code, cr2, region))
        }
        Refusal::OutOfMemory => Cause::OutOfMemory,
    }
}

/// Makes `addr` accessible for `access` as the program's rules allow: maps a page, or copies
/// a shared one before its first write.
fn resolve(addr: u64, access: Access, present: bool) -> Result<(), Refusal> {
    let mut current = CURRENT.lock();
    let process = current.as_mut().expect("a program is running");
    let mut guard = MM.lock();
    let mm = guard.as_mut().expect("memory manager initialised at boot");
    let space = Space {
        plan: &process.image.plan,
        file: process.image.file,
        file_page_aligned: process.image.file_first_pfn.is_some(),
        heap: process.heap.start..process.brk,
        areas: &process.areas,
    };
    match decide(&space, addr, access, present) {
        Decision::Kill(region) => Err(Refusal::Forbidden(region)),
        Decision::Map { page, source, writable, exec } => {
            map_page(mm, process, page, source, user_flags(writable, exec))
        }
        Decision::CopyOnWrite { page, exec } => {
            copy_on_write(mm, process, page, user_flags(true, exec))
        }
    }
}

/// Counts a shared file page mapped, remembering the run's first.
fn note_shared(pfn: Pfn) {
    COUNTERS.shared_file_maps.fetch_add(1, Ordering::Relaxed);
    if COUNTERS.first_shared_pfn.load(Ordering::Relaxed) == 0 {
        COUNTERS.first_shared_pfn.store(pfn.0, Ordering::Relaxed);
    }
}

fn user_flags(writable: bool, exec: bool) -> PteFlags {
    let mut flags = PteFlags::PRESENT | PteFlags::USER_ACCESSIBLE;
    if writable {
        flags |= PteFlags::WRITABLE;
    }
    if !exec {
        flags |= PteFlags::NO_EXECUTE;
    }
    flags
}

/// Frames this program may still take (its pages and tables), keeping room for three tables.
fn check_limit(mm: &KernelMm, process: &Process) -> Result<(), Refusal> {
    let used = mm.frames.used_frames().saturating_sub(process.frames_at_start);
    if used + 4 > process.limit_frames || mm.frames.free_frames() < 4 {
        return Err(Refusal::OutOfMemory);
    }
    Ok(())
}

fn frame_ptr(pfn: Pfn) -> *mut u8 {
    (DIRECT_MAP_BASE + pfn.0 * PAGE_SIZE) as *mut u8
}

fn map_page(
    mm: &mut KernelMm,
    process: &Process,
    page: u64,
    source: Source<'_>,
    flags: PteFlags,
) -> Result<(), Refusal> {
    check_limit(mm, process)?;
    let root = process.root;
    let va = VirtAddr::new(page);
    let result = match source {
        Source::SharedFile { file_offset } => {
            let first = process.image.file_first_pfn.expect("shared only when page-aligned");
            let pfn = Pfn(first.0 + file_offset / PAGE_SIZE);
            note_shared(pfn);
            mm.tables.map(root, va, pfn, flags, &mut mm.frames)
        }
        Source::Zero => {
            COUNTERS.zero_fills.fetch_add(1, Ordering::Relaxed);
            mm.tables.map_zeroed(root, va, flags, &mut mm.frames).map(drop)
        }
        Source::PrivateFile(_)
            if !flags.contains(PteFlags::WRITABLE) && PAGE_CACHE.lock().find(page).is_some() =>
        {
            let pfn = PAGE_CACHE.lock().find(page).expect("checked above");
            note_shared(pfn);
            mm.tables.map(root, va, pfn, flags, &mut mm.frames)
        }
        Source::PrivateFile(contents) => {
            COUNTERS.private_file_copies.fetch_add(1, Ordering::Relaxed);
            let pfn = mm.frames.allocate_frame().map_err(|_| Refusal::OutOfMemory)?;
            // SAFETY: `pfn` was just allocated: nothing else uses it, and the direct map maps
            // it writable (it is not a table). `PageContents` stays inside the page.
            unsafe { fill_frame(pfn, contents.offset_in_page, contents.bytes) };
            let mapped = mm.tables.map(root, va, pfn, flags, &mut mm.frames);
            if mapped.is_err() {
                give_back(mm, pfn);
            }
            mapped
        }
    };
    result.map_err(|e| match e {
        MmError::Frame(_) => Refusal::OutOfMemory,
        _ => Refusal::Forbidden(Region::Unmapped),
    })
}

/// The first write to a shared file page: copy it to a private frame and point the entry at
/// that, writable: one mmu_update entry and the flush the changed frame owes.
fn copy_on_write(
    mm: &mut KernelMm,
    process: &Process,
    page: u64,
    flags: PteFlags,
) -> Result<(), Refusal> {
    check_limit(mm, process)?;
    let root = process.root;
    let va = VirtAddr::new(page);
    let Ok(Some(shared)) = mm.tables.translate(root, va) else {
        return Err(Refusal::Forbidden(Region::Unmapped));
    };
    let new = mm.frames.allocate_frame().map_err(|_| Refusal::OutOfMemory)?;
    // SAFETY: `new` is ours alone and writable in the direct map; `shared.pfn` is a mapped
    // frame we only read; both copies stay inside one page.
    unsafe {
        core::ptr::copy_nonoverlapping(frame_ptr(shared.pfn), frame_ptr(new), PAGE_SIZE as usize)
    };
    match mm.tables.replace(root, va, new, flags) {
        Ok((_shared, flush)) => {
            // The user's TLB may keep the old entry across the switch to the kernel's tables
            // (Xen may use PCIDs), so flush everything local, not just one address.
            check_mm(
                "flushing the TLB after copy-on-write",
                mm.tables.flush_tlb(flush.merge(TlbFlush::everything())),
            );
            COUNTERS.cow_copies.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            give_back(mm, new);
            kernel_error("replacing a shared page for copy-on-write", mm_errno(e));
            Err(Refusal::OutOfMemory)
        }
    }
}

/// Copies user memory at `addr` into `out`, faulting pages in as a read would.
pub fn copy_from_user(addr: u64, out: &mut [u8]) -> Result<(), Errno> {
    walk_user(addr, out.len(), Access::Read, |pfn, offset, range| {
        let dst = &mut out[range];
        // SAFETY: `pfn` is mapped for the program, readable through the direct map; the range
        // stays inside the page.
        unsafe {
            core::ptr::copy_nonoverlapping(frame_ptr(pfn).add(offset), dst.as_mut_ptr(), dst.len())
        };
    })
}

/// Makes every page of `[addr, addr + len)` accessible for `access`, or says EFAULT: lets a
/// syscall refuse a bad buffer before it has done anything.
pub fn check_user(addr: u64, len: usize, access: Access) -> Result<(), Errno> {
    walk_user(addr, len, access, |_, _, _| {})
}

/// Copies `bytes` into user memory at `addr`, faulting pages in (and copying on write) as a
/// write would.
pub fn copy_to_user(addr: u64, bytes: &[u8]) -> Result<(), Errno> {
    walk_user(addr, bytes.len(), Access::Write, |pfn, offset, range| {
        // SAFETY: `pfn` is a private writable frame of the program (resolved for a write),
        // writable through the direct map; the range stays inside the page.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes[range.clone()].as_ptr(),
                frame_ptr(pfn).add(offset),
                range.len(),
            )
        };
    })
}

/// Calls `each(pfn, offset_in_page, range_in_buffer)` for every page of `[addr, addr+len)`,
/// after making it accessible for `access`.
fn walk_user(
    addr: u64,
    len: usize,
    access: Access,
    mut each: impl FnMut(Pfn, usize, Range<usize>),
) -> Result<(), Errno> {
    let end = addr.checked_add(len as u64).ok_or(Errno::EFAULT)?;
    if end > layout::USER_END {
        return Err(Errno::EFAULT);
    }
    let mut at = addr;
    while at < end {
        let page = page_floor(at);
        let chunk_end = end.min(page + PAGE_SIZE);
        let pfn = user_frame(page, access).ok_or(Errno::EFAULT)?;
        each(pfn, (at - page) as usize, (at - addr) as usize..(chunk_end - addr) as usize);
        at = chunk_end;
    }
    Ok(())
}

/// The frame behind user page `page`, made accessible for `access` first.
fn user_frame(page: u64, access: Access) -> Option<Pfn> {
    for _ in 0..2 {
        let mapping = {
            let current = CURRENT.lock();
            let root = current.as_ref()?.root;
            let guard = MM.lock();
            guard.as_ref()?.tables.translate(root, VirtAddr::new(page)).ok()?
        };
        match mapping {
            Some(m) if access != Access::Write || m.flags.contains(PteFlags::WRITABLE) => {
                return Some(m.pfn)
            }
            Some(_) => resolve(page, Access::Write, true).ok()?,
            None => resolve(page, access, false).ok()?,
        }
    }
    None
}

/// The program's break: moves it within the heap reservation; returns the break in force.
pub fn brk(requested: u64) -> u64 {
    let mut current = CURRENT.lock();
    let Some(process) = current.as_mut() else { return 0 };
    let new = super::syscall_abi::decide_brk(requested, &process.heap, process.brk);
    if new < process.brk {
        let range = layout::page_ceil(new).unwrap_or(new)
            ..layout::page_ceil(process.brk).unwrap_or(process.brk);
        unmap_range(process, range);
    }
    process.brk = new;
    new
}

/// Unmaps every mapped page of `range`, giving private frames back.
fn unmap_range(process: &Process, range: Range<u64>) {
    let mut guard = MM.lock();
    let Some(mm) = guard.as_mut() else { return };
    let module = process.image.module_frames;
    let cache = PAGE_CACHE.lock();
    let mut owed = TlbFlush::none();
    let mut page = page_floor(range.start);
    while page < range.end {
        if let Ok((pfn, flush)) = mm.tables.unmap(process.root, VirtAddr::new(page)) {
            owed = owed.merge(flush).merge(TlbFlush::everything());
            // Shared frames (the module's, the page cache's) belong to every run.
            if !module.contains(pfn) && !cache.holds(pfn) {
                give_back(mm, pfn);
            }
        }
        page += PAGE_SIZE;
    }
    check_mm("flushing the TLB after unmapping", mm.tables.flush_tlb(owed));
}

/// Runs `f` on the running program's mmap areas, and unmaps what it says to.
pub fn with_areas<T>(f: impl FnOnce(&mut Areas) -> (T, Option<Range<u64>>)) -> Option<T> {
    let mut current = CURRENT.lock();
    let process = current.as_mut()?;
    let (value, unmap) = f(&mut process.areas);
    if let Some(range) = unmap {
        unmap_range(process, range);
    }
    Some(value)
}

/// Changes the flags of the mapped pages of `range` (after mprotect); PROT_NONE unmaps them.
pub fn reprotect(range: Range<u64>, writable: bool, exec: bool, readable: bool) {
    let current = CURRENT.lock();
    let Some(process) = current.as_ref() else { return };
    if !readable {
        unmap_range(process, range);
        return;
    }
    let mut guard = MM.lock();
    let Some(mm) = guard.as_mut() else { return };
    let mut owed = TlbFlush::none();
    let mut page = page_floor(range.start);
    while page < range.end {
        // The user's TLB may survive the switch to the kernel's tables: flush everything.
        match mm.tables.protect(process.root, VirtAddr::new(page), user_flags(writable, exec)) {
            Ok(flush) => owed = owed.merge(flush).merge(TlbFlush::everything()),
            Err(MmError::NotMapped(_)) => {}
            Err(e) => kernel_error("changing a page's protection", mm_errno(e)),
        }
        page += PAGE_SIZE;
    }
    check_mm("flushing the TLB after mprotect", mm.tables.flush_tlb(owed));
}

/// Which user segment base arch_prctl sets.
#[derive(Clone, Copy)]
pub enum SegmentBase {
    Fs,
    Gs,
}

/// Sets the FS or GS base (arch_prctl ARCH_SET_FS / ARCH_SET_GS) with set_segment_base.
pub fn set_segment_base(which: SegmentBase, base: u64) -> Result<(), Errno> {
    let selector = match which {
        SegmentBase::Fs => abi::SEGBASE_FS,
        SegmentBase::Gs => abi::SEGBASE_GS_USER,
    };
    hypercall::set_segment_base(selector, base).map_err(|_| Errno::EPERM)?;
    if let Some(p) = CURRENT.lock().as_mut() {
        match which {
            SegmentBase::Fs => p.fs_base = base,
            SegmentBase::Gs => p.gs_base = base,
        }
    }
    Ok(())
}

pub fn segment_base(which: SegmentBase) -> u64 {
    CURRENT.lock().as_ref().map_or(0, |p| match which {
        SegmentBase::Fs => p.fs_base,
        SegmentBase::Gs => p.gs_base,
    })
}

/// The running program's name.
pub fn name() -> &'static str {
    CURRENT.lock().as_ref().map_or("?", |p| p.image.name)
}
