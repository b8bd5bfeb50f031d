//! Several vCPUs on one address space, against the SMP model of Xen: concurrent faults, TLB
//! shootdowns, and a property test of random operations in a random schedule.
//!
//! The schedule has the granularity of a hypercall: the model calls a hook before every hypercall
//! it receives, and there the other vCPUs make user accesses through their own TLBs (a thread
//! running on them). An access that faults stands for a thread that trapped into the kernel and
//! waits for the address space's lock: its fault is resolved on its vCPU once the operation in
//! progress has returned. After every step: no vCPU can reach a stale translation, Xen refused
//! nothing, the model caught no guest bug (a frame freed while a TLB still reaches it included),
//! and the frames in use are exactly what the space holds.

use std::cell::RefCell;
use std::rc::Rc;

use proptest::prelude::*;

use super::address_space::{limits, World, DATA, TEXT};
use super::Fixture;
use crate::arch::x86_64::page_fault::{Access, PageFault};
use crate::mm::addr::{Pfn, VirtAddr, PAGE_SIZE};
use crate::mm::address_space::{AddressSpace, MapError, MapRequest, Placement, Refusal, Resolved};
use crate::mm::areas::Prot;
use crate::mm::backend::VcpuMask;
use crate::mm::frame::FrameSource;
use crate::mm::model::{AccessFault, Hypercall, Machine};
use crate::mm::page_table::{MmError, Root};
use crate::mm::pte::PteFlags;
use crate::xen::XenError;

const RW: Prot = Prot::READ_WRITE;
const RO: Prot = Prot { read: true, write: false, exec: false };

/// An mmap window that crosses a 1 GiB boundary: its far half needs a new L2 and L1.
const WINDOW: u64 = 0x3fff_c000;
const WINDOW_PAGES: u64 = 8;

fn user_flags(writable: bool) -> PteFlags {
    let flags = PteFlags::PRESENT | PteFlags::USER_ACCESSIBLE | PteFlags::NO_EXECUTE;
    if writable {
        flags | PteFlags::WRITABLE
    } else {
        flags
    }
}

/// A world of `vcpus` vCPUs with one address space loaded on all of them.
fn loaded_world(vcpus: usize) -> (World, AddressSpace<'static>, u64) {
    let mut w = World::smp(vcpus);
    let baseline = w.used();
    let space = w.space(limits());
    for vcpu in 1..vcpus {
        w.f.xen.machine().set_current(vcpu);
        space.activate(&mut w.f.pt).unwrap();
    }
    w.f.xen.machine().set_current(0);
    (w, space, baseline)
}

/// Resolves a fault at `addr` on `vcpu`, as that vCPU's trap handler would.
fn fault_on(
    w: &mut World,
    space: &mut AddressSpace<'_>,
    vcpu: usize,
    addr: u64,
    write: bool,
    present: bool,
) -> Result<Resolved, Refusal> {
    w.f.xen.machine().set_current(vcpu);
    let access = if write { Access::Write } else { Access::Read };
    let fault = PageFault::user(addr, access, present);
    let result = space.fault(&mut w.f.pt, &mut w.f.frames, &w.shared, &fault);
    w.f.xen.machine().set_current(0);
    result
}

/// A user access by `vcpu`, faulting into the space as needed (at most twice).
fn touch_on(
    w: &mut World,
    space: &mut AddressSpace<'_>,
    vcpu: usize,
    addr: u64,
    write: bool,
) -> Result<Pfn, Refusal> {
    for _ in 0..2 {
        let access = w.f.xen.machine().access_on(vcpu, VirtAddr::new(addr), write);
        let present = match access {
            Ok(pfn) => return Ok(pfn.expect("the space is loaded there")),
            Err(AccessFault::NotPresent) => false,
            Err(AccessFault::ReadOnly) => true,
        };
        fault_on(w, space, vcpu, addr, write, present)?;
    }
    panic!("the fault at {addr:#x} on vcpu{vcpu} was resolved but the access still faults");
}

fn assert_no_stale(m: &Machine) {
    for vcpu in 0..m.vcpu_count() {
        assert_eq!(m.stale_translations_on(vcpu), [], "vcpu{vcpu} reaches a stale translation");
    }
    assert_eq!(m.rejections(), &[], "Xen rejected something");
    assert_eq!(m.bugs(), &[], "the model caught a guest bug");
}

// ---- Concurrent faults ---------------------------------------------------------------------

/// Runs `access` once, on `vcpu`, before the first hypercall of whatever runs next.
fn before_first_hypercall(w: &World, vcpu: usize, addr: u64) -> Rc<RefCell<Option<AccessFault>>> {
    let seen = Rc::new(RefCell::new(None));
    let record = seen.clone();
    let mut done = false;
    w.f.xen.machine().set_hook(Some(Box::new(move |m: &mut Machine, _call: Hypercall| {
        if !done {
            done = true;
            *record.borrow_mut() = m.access_on(vcpu, VirtAddr::new(addr), true).err();
        }
    })));
    seen
}

#[test]
fn two_vcpus_fault_on_the_same_missing_l1_and_one_table_is_built() {
    let (mut w, mut space, baseline) = loaded_world(2);
    let request = MapRequest {
        placement: Placement::Replace { addr: WINDOW },
        len: WINDOW_PAGES * PAGE_SIZE,
        prot: RW,
        populate: false,
    };
    space.mmap(&mut w.f.pt, &mut w.f.frames, &w.shared, request).unwrap();
    // Both pages are past the 1 GiB boundary, and nothing was touched yet: no L3, L2 or L1.
    let (first, second) = (WINDOW + 4 * PAGE_SIZE, WINDOW + 5 * PAGE_SIZE);
    let built = |w: &World| w.f.pt.stats().user_tables_built;
    let tables_before = built(&w);
    // vCPU 1 writes the second page while vCPU 0's fault on the first is about to send its
    // batch: not present yet, so vCPU 1 traps and waits for the lock.
    let seen = before_first_hypercall(&w, 1, second);
    assert_eq!(
        fault_on(&mut w, &mut space, 0, first, true, false),
        Ok(Resolved::ZeroFilled { ahead: 0 })
    );
    w.f.xen.machine().set_hook(None);
    assert_eq!(*seen.borrow(), Some(AccessFault::NotPresent), "vCPU 1 raced and faulted");
    assert_eq!(built(&w) - tables_before, 3, "vCPU 0 built the L3, the L2 and the L1");
    // vCPU 1's fault maps into the L1 vCPU 0 built: one entry, no table.
    let (counts, used) = (w.f.counts(), w.used());
    assert_eq!(
        fault_on(&mut w, &mut space, 1, second, true, false),
        Ok(Resolved::ZeroFilled { ahead: 0 })
    );
    let cost = w.f.counts() - counts;
    assert_eq!(built(&w) - tables_before, 3, "exactly one table of each level was built");
    assert_eq!((cost.mmu_update_calls, cost.mmu_update_entries, cost.mmuext_calls), (1, 1, 0));
    assert_eq!(w.used() - used, 1, "one frame: the page");
    touch_on(&mut w, &mut space, 1, second, true).unwrap();
    assert_eq!(w.used() - baseline, space.held_frames(), "frames in use are the space's");
    assert_no_stale(&w.f.xen.machine());
    for vcpu in 1..2 {
        w.f.xen.machine().set_current(vcpu);
        space.deactivate(&mut w.f.pt).unwrap();
    }
    w.f.xen.machine().set_current(0);
    w.teardown(space);
    assert_eq!(w.used(), baseline, "no frame leaked");
    assert_no_stale(&w.f.xen.machine());
}

#[test]
fn the_loser_of_a_race_for_the_same_page_allocates_nothing_and_calls_nothing() {
    let (mut w, mut space, baseline) = loaded_world(2);
    let page = DATA + 3 * PAGE_SIZE; // bss: zero-filled
    let seen = before_first_hypercall(&w, 1, page);
    fault_on(&mut w, &mut space, 0, page, true, false).unwrap();
    w.f.xen.machine().set_hook(None);
    assert_eq!(*seen.borrow(), Some(AccessFault::NotPresent));
    let (counts, used, steps) = (w.f.counts(), w.used(), w.f.xen.machine().steps());
    assert_eq!(fault_on(&mut w, &mut space, 1, page, true, false), Ok(Resolved::AlreadyMapped));
    assert_eq!(w.f.counts(), counts, "a spurious fault makes no hypercall");
    assert_eq!((w.used(), w.f.xen.machine().steps()), (used, steps), "and allocates nothing");
    touch_on(&mut w, &mut space, 1, page, true).unwrap();
    assert_eq!(w.used() - baseline, space.held_frames());
    assert_no_stale(&w.f.xen.machine());
}

// ---- Shootdowns ----------------------------------------------------------------------------

#[test]
fn munmap_shoots_down_every_vcpu_holding_the_space_and_only_them() {
    let (mut w, mut space, baseline) = loaded_world(3);
    // vCPU 2 leaves: it must not be disturbed.
    w.f.xen.machine().set_current(2);
    space.deactivate(&mut w.f.pt).unwrap();
    w.f.xen.machine().set_current(0);
    assert_eq!(space.loaded_on(&w.f.pt), VcpuMask::single(0).with(1));
    let page = DATA + 2 * PAGE_SIZE;
    touch_on(&mut w, &mut space, 0, page, true).unwrap();
    touch_on(&mut w, &mut space, 1, page, true).unwrap();
    let (counts, shootdowns) = (w.f.counts(), w.f.pt.stats().tlb_shootdowns);
    space.munmap(&mut w.f.pt, &mut w.f.frames, &w.shared, page..page + PAGE_SIZE).unwrap();
    let cost = w.f.counts() - counts;
    // One entry, then one INVLPG_MULTI to vCPUs 0 and 1, then the frame goes back.
    assert_eq!((cost.mmu_update_calls, cost.mmuext_calls, cost.mmuext_ops), (1, 1, 1));
    assert_eq!(w.f.pt.stats().tlb_shootdowns - shootdowns, 1);
    assert_no_stale(&w.f.xen.machine());
    assert_eq!(
        w.f.xen.machine().access_on(1, VirtAddr::new(page), false),
        Err(AccessFault::NotPresent)
    );
    assert_eq!(w.used() - baseline, space.held_frames());
}

#[test]
fn one_vcpu_keeps_the_local_flush_and_its_counts() {
    let (mut w, mut space, _) = loaded_world(2);
    w.f.xen.machine().set_current(1);
    space.deactivate(&mut w.f.pt).unwrap();
    w.f.xen.machine().set_current(0);
    let page = DATA + 2 * PAGE_SIZE;
    touch_on(&mut w, &mut space, 0, page, true).unwrap();
    let (counts, shootdowns) = (w.f.counts(), w.f.pt.stats().tlb_shootdowns);
    space.munmap(&mut w.f.pt, &mut w.f.frames, &w.shared, page..page + PAGE_SIZE).unwrap();
    let cost = w.f.counts() - counts;
    assert_eq!((cost.mmu_update_calls, cost.mmuext_calls, cost.mmuext_ops), (1, 1, 1));
    assert_eq!(w.f.pt.stats().tlb_shootdowns, shootdowns, "INVLPG_LOCAL, no shootdown");
    assert_no_stale(&w.f.xen.machine());
}

#[test]
fn mprotect_and_copy_on_write_shoot_down_the_other_vcpus() {
    let (mut w, mut space, _) = loaded_world(2);
    let page = DATA + 3 * PAGE_SIZE;
    touch_on(&mut w, &mut space, 0, page, true).unwrap();
    touch_on(&mut w, &mut space, 1, page, true).unwrap();
    space.mprotect(&mut w.f.pt, &w.shared, page..page + PAGE_SIZE, RO).unwrap();
    assert_no_stale(&w.f.xen.machine());
    assert_eq!(
        w.f.xen.machine().access_on(1, VirtAddr::new(page), true),
        Err(AccessFault::ReadOnly)
    );
    // The file-backed data page: both read the shared frame, then vCPU 0 writes (a copy).
    let shared = touch_on(&mut w, &mut space, 0, DATA, false).unwrap();
    assert_eq!(touch_on(&mut w, &mut space, 1, DATA, false).unwrap(), shared);
    let private = touch_on(&mut w, &mut space, 0, DATA, true).unwrap();
    assert_ne!(private, shared);
    assert_no_stale(&w.f.xen.machine());
    assert_eq!(
        touch_on(&mut w, &mut space, 1, DATA, false).unwrap(),
        private,
        "vCPU 1 sees the copy"
    );
}

#[test]
fn teardown_waits_for_every_other_vcpu_to_leave() {
    let (mut w, mut space, baseline) = loaded_world(3);
    touch_on(&mut w, &mut space, 2, DATA + PAGE_SIZE * 3, true).unwrap();
    let (used, counts) = (w.used(), w.f.counts());
    let refused = space.teardown(&mut w.f.pt, &mut w.f.frames, &w.shared);
    let others = VcpuMask::single(1).with(2);
    assert_eq!(refused, Err(MmError::LoadedElsewhere(others)));
    assert_eq!((w.used(), w.f.counts()), (used, counts), "a refused teardown changes nothing");
    for vcpu in 1..3 {
        w.f.xen.machine().set_current(vcpu);
        let before = w.f.counts();
        space.deactivate(&mut w.f.pt).unwrap();
        let cost = w.f.counts() - before;
        assert_eq!((cost.mmuext_calls, cost.mmuext_ops), (1, 2), "base pointer 0 and a flush");
        assert_eq!(w.f.xen.machine().user_baseptr(), None);
    }
    w.f.xen.machine().set_current(0);
    assert_eq!(space.loaded_on(&w.f.pt), VcpuMask::single(0));
    // The page vCPU 2 wrote is gone from its TLB: its flush went with the deactivation.
    w.teardown(space);
    assert_eq!(w.used(), baseline);
    assert_no_stale(&w.f.xen.machine());
}

// ---- The page-table operations that owe a flush on a user root ------------------------------

/// A user root loaded on two vCPUs, a page mapped writable in it and cached by vCPU 1.
fn shared_root() -> (Fixture, Root, VirtAddr, Pfn) {
    let mut f = Fixture::boot_smp(256, 2);
    let root = f.pt.new_user_root(&mut f.frames).unwrap();
    for vcpu in 0..2 {
        f.xen.machine().set_current(vcpu);
        f.pt.set_user_root(Some(root)).unwrap();
    }
    f.xen.machine().set_current(0);
    let va = VirtAddr::new(0x60_0000);
    let pfn = f.frames.allocate_frame().unwrap();
    f.pt.map(root, va, pfn, user_flags(true), &mut f.frames).unwrap();
    assert_eq!(f.xen.machine().access_on(1, va, true), Ok(Some(pfn)));
    (f, root, va, pfn)
}

#[test]
fn single_page_updates_on_a_shared_root_reach_the_other_vcpu() {
    let (mut f, root, va, _) = shared_root();
    let flush = f.pt.protect(root, va, user_flags(false)).unwrap();
    f.pt.flush_tlb(flush).unwrap();
    assert_no_stale(&f.xen.machine());
    let upgrade = f.pt.protect(root, va, user_flags(true)).unwrap();
    f.pt.flush_tlb(upgrade).unwrap();
    assert_eq!(f.xen.machine().access_on(1, va, true).map(|p| p.is_some()), Ok(true));
    let (_, flush) = f.pt.unmap(root, va).unwrap();
    f.pt.flush_tlb(flush).unwrap();
    assert_no_stale(&f.xen.machine());
}

#[test]
fn unmap_flushed_on_a_shared_root_reaches_the_other_vcpu() {
    let (mut f, root, va, pfn) = shared_root();
    assert_eq!(f.pt.unmap_flushed(root, va), Ok(pfn));
    assert_no_stale(&f.xen.machine());
}

#[test]
fn reclaiming_a_table_a_vcpu_walked_reaches_it() {
    let (mut f, root, va, pfn) = shared_root();
    f.pt.unmap_range(root, va, 1, &mut |_| {}).unwrap();
    f.frames.free_frame(pfn).unwrap();
    // A fault would drop the walk it made; a speculative walk keeps it: the next batch (a page
    // mapped elsewhere) leaves vCPU 1's paging-structure caches naming the now empty L1.
    f.xen.machine().speculate(true);
    let elsewhere = f.frames.allocate_frame().unwrap();
    f.pt.map(root, VirtAddr::new(0x80_0000_0000), elsewhere, user_flags(true), &mut f.frames)
        .unwrap();
    assert_eq!(f.pt.reclaim_empty_tables(root, va, &mut f.frames), Ok(3), "L1, L2 and L3");
    assert_no_stale(&f.xen.machine());
}

#[test]
fn the_undo_of_a_refused_batch_reaches_every_vcpu_that_may_have_cached_it() {
    let (mut w, mut space, baseline) = loaded_world(2);
    let window = |len, populate| MapRequest {
        placement: Placement::Replace { addr: WINDOW },
        len: len * PAGE_SIZE,
        prot: RW,
        populate,
    };
    space.mmap(&mut w.f.pt, &mut w.f.frames, &w.shared, window(1, true)).unwrap();
    // Every translation that exists for an instant is cached, on every vCPU; Xen applies the
    // first entry of the next batch and refuses the second: the first is undone.
    w.f.xen.machine().speculate(true);
    w.f.xen.machine().refuse_step(1, XenError::ENOMEM);
    let request = MapRequest {
        placement: Placement::Replace { addr: WINDOW + PAGE_SIZE },
        ..window(3, true)
    };
    let result = space.mmap(&mut w.f.pt, &mut w.f.frames, &w.shared, request);
    assert!(matches!(result, Err(MapError::Kernel(MmError::Hypervisor(_)))), "{result:?}");
    assert_eq!(w.f.xen.machine().pending_refusals(), 0);
    assert_no_stale(&w.f.xen.machine());
    assert_eq!(w.used() - baseline, space.held_frames());
}

// ---- The property: random operations on 2-3 vCPUs in a random schedule ----------------------

/// The pages the property test uses: text, the four data pages (the first two file-backed, so
/// a write copies them), and the mmap window.
fn page_addr(index: u8) -> u64 {
    match u64::from(index) {
        0 => TEXT,
        i @ 1..=4 => DATA + (i - 1) * PAGE_SIZE,
        i => WINDOW + (i - 5) % WINDOW_PAGES * PAGE_SIZE,
    }
}

const PAGES: u8 = 5 + WINDOW_PAGES as u8;

/// The pages a range operation covers: in the data segment or in the window, never both.
#[derive(Clone, Copy, Debug)]
struct Span {
    in_window: bool,
    first: u8,
    count: u8,
}

impl Span {
    fn range(self) -> core::ops::Range<u64> {
        let (base, pages) = if self.in_window { (WINDOW, WINDOW_PAGES) } else { (DATA, 4) };
        let first = u64::from(self.first) % pages;
        let count = u64::from(self.count).clamp(1, pages - first);
        base + first * PAGE_SIZE..base + (first + count) * PAGE_SIZE
    }
}

#[derive(Clone, Copy, Debug)]
enum SmpOp {
    Touch { vcpu: usize, page: u8, write: bool },
    Mmap { vcpu: usize, span: Span, populate: bool },
    Munmap { vcpu: usize, span: Span },
    Mprotect { vcpu: usize, span: Span, prot: Prot },
}

impl SmpOp {
    const fn vcpu(&self) -> usize {
        match *self {
            SmpOp::Touch { vcpu, .. }
            | SmpOp::Mmap { vcpu, .. }
            | SmpOp::Munmap { vcpu, .. }
            | SmpOp::Mprotect { vcpu, .. } => vcpu,
        }
    }

    /// The operation as the transcript names it, run on `vcpu`.
    fn describe(&self, vcpu: usize) -> String {
        let span = |span: Span| {
            let r = span.range();
            format!("{:#x}..{:#x}", r.start, r.end)
        };
        match *self {
            SmpOp::Touch { page, write, .. } => {
                let kind = if write { "write" } else { "read" };
                format!("vcpu{vcpu} {kind} {:#x}", page_addr(page))
            }
            SmpOp::Mmap { span: s, populate, .. } => {
                let how = if populate { "mmap MAP_FIXED|MAP_POPULATE" } else { "mmap MAP_FIXED" };
                format!("{how} {} on vcpu{vcpu}", span(s))
            }
            SmpOp::Munmap { span: s, .. } => format!("munmap {} on vcpu{vcpu}", span(s)),
            SmpOp::Mprotect { span: s, prot, .. } => {
                format!("mprotect {} {prot:?} on vcpu{vcpu}", span(s))
            }
        }
    }
}

fn span() -> impl Strategy<Value = Span> {
    (any::<bool>(), 0u8..8, 1u8..8).prop_map(|(in_window, first, count)| Span {
        in_window,
        first,
        count,
    })
}

fn smp_op() -> impl Strategy<Value = SmpOp> {
    let vcpu = 0usize..3;
    let prot = prop_oneof![Just(RW), Just(RO), Just(Prot::NONE)];
    prop_oneof![
        4 => (vcpu.clone(), 0..PAGES, any::<bool>())
            .prop_map(|(vcpu, page, write)| SmpOp::Touch { vcpu, page, write }),
        2 => (vcpu.clone(), span(), any::<bool>())
            .prop_map(|(vcpu, span, populate)| SmpOp::Mmap { vcpu, span, populate }),
        2 => (vcpu.clone(), span()).prop_map(|(vcpu, span)| SmpOp::Munmap { vcpu, span }),
        2 => (vcpu, span(), prot).prop_map(|(vcpu, span, prot)| SmpOp::Mprotect { vcpu, span, prot }),
    ]
}

/// The schedule: which vCPU runs what between two hypercalls, drawn from a seed, and the
/// transcript of everything that ran, in readable steps.
struct Schedule {
    rng: u64,
    vcpus: usize,
    /// The operation in progress ("munmap 0x3fffc000..0x3fffe000 on vcpu0") and its hypercalls
    /// so far.
    running: String,
    calls: Vec<Hypercall>,
    /// Accesses that faulted: the thread on that vCPU waits in the kernel, (address, write,
    /// present).
    waiting: Vec<Option<(u64, bool, bool)>>,
    transcript: Vec<String>,
}

impl Schedule {
    fn draw(&mut self, bound: u64) -> u64 {
        // xorshift64*: enough to spread the choices, and the same from the same seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % bound
    }

    fn call_name(call: Hypercall, n: usize) -> String {
        let name = match call {
            Hypercall::MmuUpdate => "mmu_update",
            Hypercall::MmuextOp => "mmuext_op",
            Hypercall::UpdateVaMapping => "update_va_mapping",
        };
        format!("{name} #{n}")
    }

    /// Before hypercall `call` of the running operation: maybe another vCPU makes an access.
    fn before(&mut self, m: &mut Machine, call: Hypercall) {
        self.calls.push(call);
        let n = self.calls.len();
        let others: Vec<usize> =
            (0..self.vcpus).filter(|&v| v != m.current() && self.waiting[v].is_none()).collect();
        if others.is_empty() || self.draw(3) == 0 {
            return;
        }
        let vcpu = others[self.draw(others.len() as u64) as usize];
        let addr = page_addr(self.draw(u64::from(PAGES)) as u8);
        let write = self.draw(2) == 0;
        let when = match n {
            1 => format!("before {} of {}", Self::call_name(call, n), self.running),
            _ => format!(
                "between {} and {} of {}",
                Self::call_name(self.calls[n - 2], n - 1),
                Self::call_name(call, n),
                self.running
            ),
        };
        let kind = if write { "write" } else { "read" };
        let outcome = match m.access_on(vcpu, VirtAddr::new(addr), write) {
            Ok(Some(pfn)) => format!("reached pfn {}", pfn.0),
            Ok(None) => "no space loaded".into(),
            Err(fault) => {
                self.waiting[vcpu] = Some((addr, write, fault == AccessFault::ReadOnly));
                format!("faulted ({fault:?}), waits in the kernel")
            }
        };
        self.transcript.push(format!("  vcpu{vcpu} {kind} {addr:#x} {when}: {outcome}"));
    }

    /// Operation `what` starts; `number` is its step ("3." or "  " for a waiting fault).
    fn start(&mut self, number: &str, what: String) {
        self.transcript.push(format!("{number} {what}"));
        self.running = what;
        self.calls.clear();
    }
}

/// The three checks after a step; the error names what broke.
fn check_step(w: &World, space: &AddressSpace<'_>, baseline: u64) -> Result<(), String> {
    let m = w.f.xen.machine();
    for vcpu in 0..m.vcpu_count() {
        let stale = m.stale_translations_on(vcpu);
        if !stale.is_empty() {
            return Err(format!("vcpu{vcpu} can reach stale translations at {stale:x?}"));
        }
    }
    if !m.rejections().is_empty() {
        return Err(format!("Xen rejected {:?}", m.rejections()));
    }
    if !m.bugs().is_empty() {
        return Err(format!("the model caught {:?}", m.bugs()));
    }
    drop(m);
    let (used, held) = (w.used() - baseline, space.held_frames());
    if used != held {
        return Err(format!("{used} frames in use, the space holds {held}"));
    }
    Ok(())
}

/// Runs `ops` on `vcpus` vCPUs with the schedule drawn from `seed`; `Err` carries the failure
/// and the transcript.
fn run_schedule(vcpus: usize, ops: &[SmpOp], seed: u64) -> Result<(), String> {
    let (mut w, mut space, baseline) = loaded_world(vcpus);
    let schedule = Rc::new(RefCell::new(Schedule {
        rng: seed | 1,
        vcpus,
        running: String::new(),
        calls: Vec::new(),
        waiting: vec![None; vcpus],
        transcript: vec![format!("seed {seed:#x}, {vcpus} vCPUs, the space loaded on all:")],
    }));
    let hook = schedule.clone();
    w.f.xen.machine().set_hook(Some(Box::new(move |m: &mut Machine, call: Hypercall| {
        hook.borrow_mut().before(m, call);
    })));
    let fail = |why: String, schedule: &Rc<RefCell<Schedule>>| {
        Err(format!("{why}\n{}", schedule.borrow().transcript.join("\n")))
    };
    for (step, op) in ops.iter().enumerate() {
        let vcpu = op.vcpu() % vcpus;
        let what = op.describe(vcpu);
        if schedule.borrow().waiting[vcpu].is_some() {
            continue; // its thread waits in the kernel: it runs nothing else
        }
        schedule.borrow_mut().start(&format!("{}.", step + 1), what);
        w.f.xen.machine().set_current(vcpu);
        let outcome = match *op {
            SmpOp::Touch { page, write, .. } => {
                match w.f.xen.machine().access_on(vcpu, VirtAddr::new(page_addr(page)), write) {
                    Ok(_) => "done".to_string(),
                    Err(fault) => {
                        let present = fault == AccessFault::ReadOnly;
                        schedule.borrow_mut().waiting[vcpu] =
                            Some((page_addr(page), write, present));
                        format!("faulted ({fault:?})")
                    }
                }
            }
            SmpOp::Mmap { span, populate, .. } => {
                let r = span.range();
                let request = MapRequest {
                    placement: Placement::Replace { addr: r.start },
                    len: r.end - r.start,
                    prot: RW,
                    populate,
                };
                format!("{:?}", space.mmap(&mut w.f.pt, &mut w.f.frames, &w.shared, request))
            }
            SmpOp::Munmap { span, .. } => {
                format!("{:?}", space.munmap(&mut w.f.pt, &mut w.f.frames, &w.shared, span.range()))
            }
            SmpOp::Mprotect { span, prot, .. } => {
                format!("{:?}", space.mprotect(&mut w.f.pt, &w.shared, span.range(), prot))
            }
        };
        w.f.xen.machine().set_current(0);
        schedule.borrow_mut().transcript.push(format!("   -> {outcome}"));
        if let Err(why) = check_step(&w, &space, baseline) {
            return fail(why, &schedule);
        }
        // The threads that faulted get the lock in turn: each fault is resolved on its vCPU
        // (while the others keep running), then its access is made again.
        for waiter in 0..vcpus {
            let Some((addr, write, present)) = schedule.borrow_mut().waiting[waiter].take() else {
                continue;
            };
            let kind = if write { "write" } else { "read" };
            let what = format!("fault on vcpu{waiter} ({kind} {addr:#x})");
            schedule.borrow_mut().start("  ", what);
            let resolved = fault_on(&mut w, &mut space, waiter, addr, write, present);
            let again = match resolved {
                Ok(_) => w.f.xen.machine().access_on(waiter, VirtAddr::new(addr), write),
                Err(_) => Ok(None),
            };
            schedule.borrow_mut().transcript.push(format!("   -> {resolved:?}, then {again:?}"));
            if resolved.is_ok() && again.is_err() {
                return fail(
                    format!("vcpu{waiter}'s fault was resolved but it faults again"),
                    &schedule,
                );
            }
            if let Err(why) = check_step(&w, &space, baseline) {
                return fail(why, &schedule);
            }
        }
    }
    w.f.xen.machine().set_hook(None);
    // The end: teardown is refused while another vCPU holds the space, then works.
    let others = space.loaded_on(&w.f.pt).without(0);
    if !others.is_empty() {
        let refused = space.teardown(&mut w.f.pt, &mut w.f.frames, &w.shared);
        if refused != Err(MmError::LoadedElsewhere(others)) {
            return fail(
                format!("teardown while {others:?} hold the space: {refused:?}"),
                &schedule,
            );
        }
    }
    for vcpu in 1..vcpus {
        w.f.xen.machine().set_current(vcpu);
        space.deactivate(&mut w.f.pt).map_err(|e| format!("deactivate on vcpu{vcpu}: {e:?}"))?;
    }
    w.f.xen.machine().set_current(0);
    match space.teardown(&mut w.f.pt, &mut w.f.frames, &w.shared) {
        Ok(0) => {}
        other => return fail(format!("teardown: {other:?}"), &schedule),
    }
    let m = w.f.xen.machine();
    let stale = (0..vcpus).any(|v| !m.stale_translations_on(v).is_empty());
    if stale || !m.bugs().is_empty() || !m.rejections().is_empty() {
        let why = format!("after teardown: bugs {:?}, rejections {:?}", m.bugs(), m.rejections());
        drop(m);
        return fail(why, &schedule);
    }
    drop(m);
    if w.used() != baseline {
        return fail(format!("{} frames leaked", w.used() - baseline), &schedule);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_on_several_vcpus_never_leave_a_stale_translation(
        vcpus in 2usize..=3,
        ops in proptest::collection::vec(smp_op(), 1..40),
        seed in any::<u64>(),
    ) {
        let result = run_schedule(vcpus, &ops, seed);
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

#[test]
fn a_refused_undo_flush_is_sent_again_to_every_vcpu() {
    let (mut w, mut space, baseline) = loaded_world(2);
    let window = |addr, len| MapRequest {
        placement: Placement::Replace { addr },
        len: len * PAGE_SIZE,
        prot: RW,
        populate: true,
    };
    space.mmap(&mut w.f.pt, &mut w.f.frames, &w.shared, window(WINDOW, 1)).unwrap();
    w.f.xen.machine().speculate(true);
    // Steps from here: the batch's entries 0 (applied) and 1 (refused), the undo's entry (2),
    // the undo's flush (3, refused), its retry (4).
    w.f.xen.machine().refuse_step(1, XenError::ENOMEM);
    w.f.xen.machine().refuse_step(3, XenError::ENOMEM);
    let result = space.mmap(&mut w.f.pt, &mut w.f.frames, &w.shared, window(WINDOW + PAGE_SIZE, 3));
    assert!(matches!(result, Err(MapError::Kernel(MmError::Hypervisor(_)))), "{result:?}");
    assert_eq!(w.f.xen.machine().pending_refusals(), 0, "both refusals were reached");
    assert_no_stale(&w.f.xen.machine());
    assert_eq!(w.used() - baseline, space.held_frames());
}
