//! The running program: its address space, how it starts, and how it ends.
//!
//! One program runs at a time, with up to one thread per vCPU (`proc::thread`). Its user
//! memory is an [`AddressSpace`] of the memory manager:
//! this module only routes to it (faults, syscall buffers, brk, mmap, munmap, mprotect) and never
//! touches page tables or frames itself. The kernel never dereferences user addresses: a syscall
//! reads and writes user buffers through the address space, so a bad pointer is an `EFAULT`,
//! never a kernel fault.
//!
//! Lock order: [`CURRENT`] (the process), then `mm::kernel::MM` (the memory manager), then
//! [`SHARED`] (the frames every run shares). The page-fault handler of the kernel only ever
//! *tries* MM, and the watchdog reads the deadline and the end from atomics (it takes only the
//! short lock that records an end), so neither can deadlock against a holder. Threads on other vCPUs take the same locks in the same order
//! (`proc::futex`'s lock comes before CURRENT).

use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::elf::{LoadPlan, SEGMENTS_MAX};
use super::expectation::{Cause, Outcome};
use super::initial_stack::{
    self, StackSpec, AT_FAULTLINE_KERNEL_ADDRESS, AT_FAULTLINE_P2M, AT_FAULTLINE_PAGE_TABLE,
};
use super::syscall_abi::Errno;
use crate::arch::x86_64::exception;
use crate::arch::x86_64::page_fault::{Access, PageFault};
use crate::arch::x86_64::trap_frame::TrapFrame;
use crate::arch::x86_64::user::{self, AfterTrap, UserEntry, UserHandlers, USER_RFLAGS};
use crate::mm::addr::PAGE_SIZE;
use crate::mm::address_space::{
    AddressSpace, BadAddress, Bookkeeping, MapError, MapRequest, ProgramImage, Refusal, Resolved,
    SegmentSpec, SharedPages, SpaceLimits, Tuning,
};
use crate::mm::areas::{Prot, AREAS_MAX};
use crate::mm::kernel::{KernelMm, KernelTables, StackGuardError, MM};
use crate::mm::kernel_space::direct_map_address;
use crate::mm::user_space::STACK_TOP;
use crate::mm::{FrameAllocator, MmError, Pfn, PfnRange, VirtAddr};
use crate::xen::{abi, events, hypercall, shared_info, time, XenError};

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

impl Image {
    /// The segments as the address space takes them, and how many there are.
    fn segment_specs(&self) -> ([SegmentSpec; SEGMENTS_MAX], usize) {
        let mut specs = [SegmentSpec::default(); SEGMENTS_MAX];
        let segments = self.plan.segments();
        for (spec, seg) in specs.iter_mut().zip(segments) {
            *spec = seg.spec();
        }
        (specs, segments.len())
    }
}

/// Limits for one run.
#[derive(Clone, Copy)]
pub struct Limits {
    pub time_budget_ms: u64,
    pub memory_limit_bytes: u64,
    /// Fault-around and prefault windows.
    pub tuning: Tuning,
}

struct Process {
    image: Image,
    space: AddressSpace<'static>,
    frames_at_start: u64,
}

static CURRENT: spin::Mutex<Option<Process>> = spin::Mutex::new(None);

/// The frames every run of the loaded program shares: the boot module's and the page cache's.
static SHARED: spin::Mutex<SharedPages> = spin::Mutex::new(SharedPages::new());

/// Loads `image`: copies its partial read-only file pages into the page cache, once for all of
/// its runs.
pub fn load(image: &Image) -> Result<(), StartError> {
    let mut guard = MM.lock();
    let mm = guard.as_mut().expect("memory manager initialised at boot");
    let (segments, count) = image.segment_specs();
    let program = program_image(image, &segments[..count]);
    SHARED
        .lock()
        .load(&mut mm.tables, &mut mm.frames, image.module_frames, &program)
        .map_err(|e| StartError::Memory(MmError::Frame(e)))
}

/// Frees the page cache of the program loaded last.
pub fn unload() {
    let mut guard = MM.lock();
    let mm = guard.as_mut().expect("memory manager initialised at boot");
    if SHARED.lock().unload(&mut mm.frames).is_err() {
        kernel_error("freeing the page cache", None);
    }
}

fn program_image<'s>(image: &Image, segments: &'s [SegmentSpec]) -> ProgramImage<'static, 's> {
    ProgramImage {
        file: image.file,
        segments,
        file_first_pfn: image.file_first_pfn,
        heap: image.plan.heap_reservation(),
    }
}

/// How the program ended (the first end recorded wins); set just before leaving user mode for
/// good.
static ENDING: spin::Mutex<Option<Outcome>> = spin::Mutex::new(None);
/// Set once [`ENDING`] holds the end: read without a lock by the trap path and blocked threads.
static ENDED: AtomicBool = AtomicBool::new(false);
/// The running program's deadline (Xen system time), for the watchdog on every vCPU.
static DEADLINE_NS: AtomicU64 = AtomicU64::new(u64::MAX);
/// The vCPU (plus one; 0: none) that did not leave a program in time. Its thread may still run
/// in the shared slots (`CURRENT`, the run handlers), so no later program may start.
static STRAGGLER: AtomicU64 = AtomicU64::new(0);

/// What the user-memory paths did, for the `stats:` line and the sharing tests.
pub struct Counters {
    pub shared_file_maps: AtomicU64,
    pub private_file_copies: AtomicU64,
    pub zero_fills: AtomicU64,
    pub cow_copies: AtomicU64,
    pub user_faults: AtomicU64,
    pub syscalls: AtomicU64,
    /// Extra shared file pages mapped by fault-around.
    pub fault_around_pages: AtomicU64,
    /// Extra zeroed pages mapped ahead of sequential faults.
    pub prefault_pages: AtomicU64,
    /// Pages (and their tables) mapped by MAP_POPULATE.
    pub populated_pages: AtomicU64,
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
    fault_around_pages: AtomicU64::new(0),
    prefault_pages: AtomicU64::new(0),
    populated_pages: AtomicU64::new(0),
    first_shared_pfn: AtomicU64::new(0),
};

/// Failures of the kernel's own calls while a program ran (a Xen refusal of a flush, a timer or
/// a base-pointer switch, a frame that could not be given back). They never pass silently: the
/// suite reports them after the run as an ERROR. Every failure counts (an atomic: two vCPUs may
/// fail at once); the first one's name is kept under a lock that is only ever tried, never
/// waited for, because the upcall path may record one.
static KERNEL_ERROR_COUNT: AtomicU64 = AtomicU64::new(0);
static FIRST_KERNEL_ERROR: spin::Mutex<Option<KernelError>> = spin::Mutex::new(None);

/// One failed kernel call: what it was, and Xen's error when Xen refused it.
#[derive(Clone, Copy, Debug)]
pub struct KernelError {
    pub what: &'static str,
    pub xen: Option<XenError>,
}

impl core::fmt::Display for KernelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.xen {
            Some(e) => write!(f, "{} (Xen: {e})", self.what),
            None => write!(f, "{}", self.what),
        }
    }
}

/// Records a failed kernel call, with Xen's error if Xen refused it.
pub fn kernel_error(what: &'static str, xen: Option<XenError>) {
    KERNEL_ERROR_COUNT.fetch_add(1, Ordering::SeqCst);
    if let Some(mut first) = FIRST_KERNEL_ERROR.try_lock() {
        first.get_or_insert(KernelError { what, xen });
    }
}

/// Takes the failures recorded since the last call: their count and the first one.
pub fn take_kernel_errors() -> (u64, Option<KernelError>) {
    let first = FIRST_KERNEL_ERROR.lock().take();
    let count = KERNEL_ERROR_COUNT.swap(0, Ordering::SeqCst);
    // Every recorder found the lock taken (they collided): counted, never dropped.
    let unnamed = KernelError { what: "a failed kernel call whose name was not kept", xen: None };
    (count, first.or((count > 0).then_some(unnamed)))
}

fn check_xen(what: &'static str, result: Result<(), XenError>) {
    if let Err(e) = result {
        kernel_error(what, Some(e));
    }
}

/// Xen's error inside a memory-manager error, if Xen refused something.
fn xen_error(e: MmError) -> Option<XenError> {
    match e {
        MmError::Hypervisor(failure) => Some(failure.errno),
        MmError::HypervisorCall(errno) => Some(errno),
        _ => None,
    }
}

/// Where the initial stack is built before it is copied into user memory: a static keeps the
/// kernel heap (whose growth would count as the program's frames) out of the run.
static STACK_IMAGE: spin::Mutex<[u8; 16 * 1024]> = spin::Mutex::new([0; 16 * 1024]);

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
    /// The address space's records or its root could not be set up.
    Space(MapError),
    /// The kernel heap could not hold the address space's records.
    Heap,
    Stack(initial_stack::StackError),
    StackCopy,
    Xen(crate::xen::XenError),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Memory(e) => write!(f, "setting up its address space: {e:?}"),
            Self::Space(e) => write!(f, "setting up its address space: {e:?}"),
            Self::Heap => write!(f, "no kernel heap for its address space's records (ENOMEM)"),
            Self::Stack(e) => write!(f, "building its initial stack: {e}"),
            Self::StackCopy => write!(f, "copying its initial stack failed"),
            Self::Xen(e) => write!(f, "Xen refused: {e}"),
        }
    }
}

/// Who serves a program's traps while it runs.
static PROGRAM_HANDLERS: UserHandlers =
    UserHandlers { syscall: super::syscall::dispatch, exception: user_exception, event: watchdog };

/// Registers the kernel stack for user mode, and unmaps the stack's guard page.
pub fn init() -> Result<(), UserModeInitError> {
    let (guard, stack) = user::trap_stack();
    let mut mm = MM.lock();
    let mm = mm.as_mut().ok_or(UserModeInitError::NoMemoryManager)?;
    mm.add_stack_guard("trap-stack-guard", VirtAddr::new(guard))
        .map_err(UserModeInitError::Guard)?;
    crate::arch::x86_64::crash::register_stack(stack.clone());
    user::set_kernel_stack(stack.end).map_err(UserModeInitError::StackSwitch)
}

/// Why user mode could not be set up.
#[derive(Debug)]
pub enum UserModeInitError {
    NoMemoryManager,
    Guard(StackGuardError),
    StackSwitch(crate::xen::XenError),
}

impl core::fmt::Display for UserModeInitError {
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
    let space_limits =
        SpaceLimits { frames: limits.memory_limit_bytes / PAGE_SIZE, areas: AREAS_MAX };
    // Allocated and touched before MM is locked: growing the heap takes a page fault.
    let bookkeeping = Bookkeeping::try_new(space_limits).ok_or(StartError::Heap)?;
    let (space, frames_at_start, aux) = {
        let mut guard = MM.lock();
        let mm = guard.as_mut().expect("memory manager initialised at boot");
        let frames_at_start = mm.frames.used_frames();
        let (segments, count) = image.segment_specs();
        let program = program_image(&image, &segments[..count]);
        let mut space =
            AddressSpace::new(&mut mm.tables, &mut mm.frames, &program, bookkeeping, space_limits)
                .map_err(StartError::Space)?;
        space.set_tuning(limits.tuning);
        let kernel_root = mm.tables.kernel_root();
        let aux = [
            (AT_FAULTLINE_KERNEL_ADDRESS, crate::mm::kernel_space::KERNEL_VIRT_BASE),
            (AT_FAULTLINE_PAGE_TABLE, direct_map_address(kernel_root.pfn).as_u64()),
            (AT_FAULTLINE_P2M, crate::mm::kernel::p2m_list_address()),
        ];
        (space, frames_at_start, aux)
    };
    let deadline_ns =
        time::now_ns().saturating_add(limits.time_budget_ms.saturating_mul(1_000_000));
    *CURRENT.lock() = Some(Process { image, space, frames_at_start });
    *ENDING.lock() = None;
    ENDED.store(false, Ordering::SeqCst);
    DEADLINE_NS.store(deadline_ns, Ordering::SeqCst);
    super::thread::begin_program();
    let started = start_user(image, &aux, deadline_ns);
    let outcome = match started {
        Ok(entry) => {
            let code = user::run(&entry, &PROGRAM_HANDLERS);
            super::thread::ended();
            if let Err(straggler) = super::thread::wait_for_the_others(deadline_ns) {
                // The space stays (another vCPU may still use it): its frames count as leaked.
                crate::check!(
                    Error,
                    "{}: vCPU {} did not leave the program within {} ms of its end; its address space is left in place",
                    image.name,
                    straggler.vcpu,
                    straggler.waited_ms
                );
                kernel_error("a vCPU did not leave the program", None);
                STRAGGLER.store(straggler.vcpu as u64 + 1, Ordering::SeqCst);
                if let Some(process) = CURRENT.lock().take() {
                    core::mem::forget(process);
                }
            }
            super::syscall::OUTPUT.lock().finish();
            check_xen("cancelling the watchdog timer", events::set_timer(0));
            ENDING.lock().take().unwrap_or(Outcome::Killed {
                cause: Cause::Exception { vector: code as u8, int_vector: None },
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

/// Runs a thread of the program on this vCPU (not vCPU 0) from `registers`: loads the user page
/// tables and the segment bases here, arms this vCPU's watchdog timer, runs it until its run
/// ends, then ends the thread and drops the page tables from this vCPU. A failed set-up is
/// recorded (the run's line becomes `not ok`, the verdict ERROR) and the thread never runs: it
/// ends at once, without its clear-tid store, so a join on it waits for the watchdog.
pub fn run_thread(registers: &TrapFrame, fs_base: u64, gs_base: u64) {
    let loaded = with_space(|space, mm, _| space.activate(&mut mm.tables));
    let ready = match loaded {
        Some(Ok(())) => {
            let bases = hypercall::set_segment_base(abi::SEGBASE_FS, fs_base)
                .and_then(|()| hypercall::set_segment_base(abi::SEGBASE_GS_USER, gs_base))
                .and_then(|()| events::set_timer(DEADLINE_NS.load(Ordering::SeqCst)));
            check_xen("setting up a thread's vCPU (set_segment_base, set_timer_op)", bases);
            bases.is_ok()
        }
        Some(Err(e)) => {
            kernel_error("loading the user page tables on a thread's vCPU", xen_error(e));
            false
        }
        None => false,
    };
    if ready && !is_over() {
        user::run_registers(registers, &PROGRAM_HANDLERS);
    }
    check_xen("cancelling a thread's watchdog timer", events::set_timer(0));
    super::thread::ended();
    if let Some(Err(e)) = with_space(|space, mm, _| space.deactivate(&mut mm.tables)) {
        kernel_error("dropping the user page tables from a thread's vCPU", xen_error(e));
    }
}

/// Builds the initial stack in user memory, installs the user tables and arms the watchdog.
fn start_user(image: Image, aux: &[(u64, u64)], deadline_ns: u64) -> Result<UserEntry, StartError> {
    let mut image_buf = STACK_IMAGE.lock();
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
    let stack =
        initial_stack::build(&mut image_buf[..], STACK_TOP, &spec).map_err(StartError::Stack)?;
    copy_to_user(stack.rsp, stack.bytes).map_err(|_| StartError::StackCopy)?;
    let rsp = stack.rsp;
    drop(image_buf);
    with_space(|space, mm, _| space.activate(&mut mm.tables))
        .expect("set by run")
        .map_err(StartError::Memory)?;
    hypercall::set_segment_base(abi::SEGBASE_FS, 0).map_err(StartError::Xen)?;
    hypercall::set_segment_base(abi::SEGBASE_GS_USER, 0).map_err(StartError::Xen)?;
    events::set_timer(deadline_ns).map_err(StartError::Xen)?;
    Ok(UserEntry { rip: image.plan.entry, rsp, rflags: USER_RFLAGS })
}

/// Runs `f` on the running program's address space and the memory manager (lock order: the
/// process, MM, the shared frames).
fn with_space<T>(
    f: impl FnOnce(&mut AddressSpace<'static>, &mut KernelMm, &SharedPages) -> T,
) -> Option<T> {
    let mut current = CURRENT.lock();
    let process = current.as_mut()?;
    let mut guard = MM.lock();
    let mm = guard.as_mut()?;
    let shared = SHARED.lock();
    Some(f(&mut process.space, mm, &shared))
}

/// The tables and the frames of the memory manager, borrowed apart.
fn split(mm: &mut KernelMm) -> (&mut KernelTables, &mut FrameAllocator<'static>) {
    (&mut mm.tables, &mut mm.frames)
}

/// Removes the address space; returns how many frames did not come back.
fn teardown() -> i64 {
    let Some(mut process) = CURRENT.lock().take() else { return 0 };
    let mut guard = MM.lock();
    let mm = guard.as_mut().expect("memory manager initialised at boot");
    let shared = SHARED.lock();
    let (tables, frames) = split(mm);
    match process.space.teardown(tables, frames, &shared) {
        Ok(0) => {}
        Ok(lost) => {
            crate::println!("# teardown of {}: {lost} frames unaccounted", process.image.name)
        }
        Err(e) => {
            crate::println!("# teardown of {}: {e:?}", process.image.name);
            kernel_error("tearing down the address space", xen_error(e));
        }
    }
    mm.frames.used_frames() as i64 - process.frames_at_start as i64
}

/// Ends the program, every thread of it: records the outcome (unless an end is recorded
/// already: the first wins) and stops the threads on other vCPUs; the handler returns what
/// this returns, and the trap path then leaves user mode for good on this vCPU.
pub fn end(outcome: Outcome) -> AfterTrap {
    record_end(outcome);
    super::thread::stop_others();
    AfterTrap::EndRun(1)
}

/// Records the program's end (the first recorded wins) without stopping anything.
pub fn record_end(outcome: Outcome) {
    ENDING.lock().get_or_insert(outcome);
    ENDED.store(true, Ordering::SeqCst);
}

/// The vCPU that never left an earlier program, if one did not: no program may run after it
/// (its thread would fault and call into the next program's address space).
pub fn straggler() -> Option<usize> {
    match STRAGGLER.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n as usize - 1),
    }
}

/// Whether the program's end is recorded.
pub fn is_over() -> bool {
    ENDED.load(Ordering::SeqCst)
}

/// Whether the program's end is recorded (by a check deep inside a system call, or by another
/// thread): the handler returns this then instead of resuming.
pub fn ended() -> Option<AfterTrap> {
    is_over().then_some(AfterTrap::EndRun(1))
}

/// Ends the calling thread alone (`exit`): the program goes on while it has other threads.
pub fn end_thread(status: u8) -> AfterTrap {
    super::thread::exit(status);
    AfterTrap::EndRun(1)
}

/// The handler of a timer event or an IPI on a vCPU that runs a thread of the program: a
/// thread caught in user mode leaves it once the program is over (another thread ended it), or
/// is killed past the deadline, with the whole program; otherwise the timer is re-armed (a
/// timer event may come early, or while the kernel works for the program).
fn watchdog(frame: &mut TrapFrame) -> AfterTrap {
    let deadline = DEADLINE_NS.load(Ordering::SeqCst);
    let now = time::now_ns();
    if !frame.from_kernel() {
        if let Some(end_run) = ended() {
            return end_run;
        }
        if now >= deadline {
            return end(Outcome::Killed { cause: Cause::Watchdog, rip: frame.rip });
        }
    }
    check_xen("re-arming the watchdog timer", events::set_timer(deadline.max(now + 1_000_000)));
    AfterTrap::Resume
}

/// The deadline of the running program, for blocking syscalls.
pub fn deadline_ns() -> u64 {
    DEADLINE_NS.load(Ordering::SeqCst)
}

/// An exception from user mode: resumes if it was a page fault that is now mapped; otherwise
/// the program is killed.
fn user_exception(frame: &mut TrapFrame) -> AfterTrap {
    if frame.vector == exception::PAGE_FAULT {
        let fault = PageFault::decode(frame.error_code, shared_info::cr2().unwrap_or(0));
        COUNTERS.user_faults.fetch_add(1, Ordering::Relaxed);
        crate::trace::deliver(frame, &fault);
        let resolved = with_space(|space, mm, shared| {
            let (tables, frames) = split(mm);
            let resolved = space.fault(tables, frames, shared, &fault);
            (resolved, space.region(fault.address))
        });
        let cause = match resolved {
            Some((Ok(how), _)) => {
                count(how);
                // Handled: the frame goes back through HYPERVISOR_iret as it is now.
                crate::trace::iret(frame);
                return AfterTrap::Resume;
            }
            Some((Err(Refusal::Forbidden(region)), _)) => Cause::PageFault(fault, region),
            Some((Err(Refusal::OutOfMemory), _)) => Cause::OutOfMemory,
            Some((Err(Refusal::Kernel(e)), region)) => {
                kernel_error("mapping a user page", xen_error(e));
                Cause::PageFault(fault, region)
            }
            None => Cause::Exception { vector: frame.vector as u8, int_vector: None },
        };
        return end(Outcome::Killed { cause, rip: frame.rip });
    }
    let cause = match frame.vector {
        exception::DIVIDE_ERROR => Cause::DivideError,
        exception::BREAKPOINT => Cause::Breakpoint,
        exception::INVALID_OPCODE => Cause::InvalidOpcode,
        exception::GENERAL_PROTECTION => {
            Cause::GeneralProtection { int_vector: int_instruction_at(frame.rip) }
        }
        v => Cause::Exception {
            vector: v as u8,
            int_vector: frame.rip.checked_sub(2).and_then(int_instruction_at),
        },
    };
    end(Outcome::Killed { cause, rip: frame.rip })
}

/// The `n` of an `int $n` (bytes 0xcd, n) at `at`, if that is what the program has there.
///
/// A program's `int $n` through a gate it may not use reaches the kernel as #GP with rip at the
/// instruction; one Xen lets through (a trap-type vector: #OF, or a vector above 31) with rip
/// after it. The #GP's error code is not used to name `n`: the CPU puts the vector in bits 3 and
/// up (Intel SDM vol. 3, 6.13), but QEMU's TCG puts `n * 16 + 2` there (target/i386/tcg
/// seg_helper.c, do_interrupt64), and Xen, reading `error_code >> 3` as the vector, then
/// delivers `int $2` and `int $0x82` as #OF (vector 4 is open to user mode). The instruction
/// bytes say what the program did under either.
fn int_instruction_at(at: u64) -> Option<u8> {
    let mut bytes = [0u8; 2];
    copy_from_user(at, &mut bytes).ok()?;
    (bytes[0] == 0xcd).then_some(bytes[1])
}

/// Counts what a resolved fault did.
fn count(how: Resolved) {
    let counter = match how {
        Resolved::ZeroFilled { ahead } => {
            COUNTERS.prefault_pages.fetch_add(ahead, Ordering::Relaxed);
            &COUNTERS.zero_fills
        }
        Resolved::FileCopy => &COUNTERS.private_file_copies,
        Resolved::CopyOnWrite => &COUNTERS.cow_copies,
        Resolved::Shared { pfn, around } => {
            if COUNTERS.first_shared_pfn.load(Ordering::Relaxed) == 0 {
                COUNTERS.first_shared_pfn.store(pfn.0, Ordering::Relaxed);
            }
            COUNTERS.fault_around_pages.fetch_add(around, Ordering::Relaxed);
            &COUNTERS.shared_file_maps
        }
        Resolved::Unparked | Resolved::AlreadyMapped => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Copies user memory at `addr` into `out`. Never allocates a frame.
pub fn copy_from_user(addr: u64, out: &mut [u8]) -> Result<(), Errno> {
    with_space(|space, mm, shared| space.read(&mm.tables, shared, addr, out))
        .unwrap_or(Err(BadAddress))
        .map_err(|BadAddress| Errno::EFAULT)
}

/// Whether `[addr, addr + len)` allows `access`, or EFAULT: lets a syscall refuse a bad buffer
/// before it has done anything. No side effects.
pub fn check_user(addr: u64, len: usize, access: Access) -> Result<(), Errno> {
    with_space(|space, _, _| space.check(addr, len as u64, access))
        .unwrap_or(Err(BadAddress))
        .map_err(|BadAddress| Errno::EFAULT)
}

/// Copies `bytes` into user memory at `addr`, faulting pages in (and copying on write) as a
/// write would.
pub fn copy_to_user(addr: u64, bytes: &[u8]) -> Result<(), Errno> {
    match with_space(|space, mm, shared| {
        let (tables, frames) = split(mm);
        space.write(tables, frames, shared, addr, bytes)
    }) {
        Some(Ok(())) => Ok(()),
        Some(Err(Refusal::Kernel(e))) => {
            kernel_error("writing to user memory", xen_error(e));
            Err(Errno::EFAULT)
        }
        _ => Err(Errno::EFAULT),
    }
}

/// The program's break: moves it within the heap reservation; returns the break in force.
pub fn brk(requested: u64) -> u64 {
    with_space(|space, mm, shared| {
        let (tables, frames) = split(mm);
        space.set_brk(tables, frames, shared, requested).unwrap_or_else(|e| {
            let xen = if let MapError::Kernel(e) = e { xen_error(e) } else { None };
            kernel_error("moving the break", xen);
            crate::testing::inject::refused_without_errno(Errno::ENOMEM as i64);
            space.brk()
        })
    })
    .unwrap_or(0)
}

fn map_errno(e: MapError) -> Errno {
    match e {
        MapError::Exists => Errno::EEXIST,
        MapError::NoRoom | MapError::NotMapped => Errno::ENOMEM,
        MapError::Kernel(e) => {
            kernel_error("changing user mappings", xen_error(e));
            Errno::ENOMEM
        }
    }
}

/// mmap of anonymous private memory; returns its address.
pub fn mmap(request: MapRequest) -> Result<u64, Errno> {
    with_space(|space, mm, shared| {
        let (tables, frames) = split(mm);
        let before = space.held_frames();
        let mapped = space.mmap(tables, frames, shared, request);
        if request.populate {
            let populated = space.held_frames().saturating_sub(before);
            COUNTERS.populated_pages.fetch_add(populated, Ordering::Relaxed);
        }
        mapped
    })
    .unwrap_or(Err(MapError::NoRoom))
    .map_err(map_errno)
}

/// munmap.
pub fn munmap(range: Range<u64>) -> Result<(), Errno> {
    with_space(|space, mm, shared| {
        let (tables, frames) = split(mm);
        space.munmap(tables, frames, shared, range)
    })
    .unwrap_or(Err(MapError::NoRoom))
    .map_err(map_errno)
}

/// mprotect.
pub fn mprotect(range: Range<u64>, prot: Prot) -> Result<(), Errno> {
    with_space(|space, mm, shared| space.mprotect(&mut mm.tables, shared, range, prot))
        .unwrap_or(Err(MapError::NoRoom))
        .map_err(map_errno)
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
    super::thread::record_segment_base(which, base);
    Ok(())
}

/// The calling thread's FS or GS base.
pub fn segment_base(which: SegmentBase) -> u64 {
    let (fs, gs) = super::thread::segment_bases();
    match which {
        SegmentBase::Fs => fs,
        SegmentBase::Gs => gs,
    }
}

/// The running program's name.
pub fn name() -> &'static str {
    CURRENT.lock().as_ref().map_or("?", |p| p.image.name)
}
