//! `trace=fault`: every step of one real user demand fault that needs new tables, as lines.
//!
//! The command line arms the tracer. From then on, each user page fault is recorded from its
//! delivery (`deliver`, called where the fault handler read cr2) to its return (`iret`, called
//! where `trap_dispatch` hands the frame to `trap_return` and HYPERVISOR_iret). The hooks in
//! between sit where the code does each thing, and record the values it used: the entries the
//! walk read, the frames it took, the plain stores into new tables, the alias downgrades and the
//! link it queued, the `mmu_update` batch as sent and Xen's answer. The first fault whose walk
//! found a level missing is printed at its return, then the tracer stops for good; other faults
//! are dropped. Off (the default), every hook is one relaxed load and a branch not taken.
//!
//! The lines are `trace: <n> <kind> key=value ...`, numbered from 1, and a last line
//! `trace: end steps=<n>` (`faultline_abi::trace`, whose [`SCHEMA`] lists each kind's keys in order): `cargo xtask trace`
//! checks every line against it and draws the sequence diagram of docs/page-fault.md.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::arch::x86_64::page_fault::PageFault;
use crate::arch::x86_64::trap_frame::TrapFrame;
use crate::mm::addr::{MachineAddr, Pfn, VirtAddr, PAGE_SIZE};
use crate::mm::backend::BatchFailure;
use crate::mm::pte::{Level, Pte, PteFlags};
use crate::xen::abi::MmuUpdate;

pub use faultline_abi::trace::{keys_of, SCHEMA};
use faultline_abi::trace::{END, PREFIX, TRUNCATED};

/// What an `mmu_update` entry of the traced batch does, learned from the step that queued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Makes a writable alias of a new table read-only (front of the batch).
    ReadOnly,
    /// Links the new subtree into the existing parent (back of the batch).
    Link,
    /// Queued by a step this trace has no hook for.
    Other,
}

/// One recorded step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The fault as the handler decoded it: cr2 from vcpu_info, the error code from the frame
    /// (access, present and mode are its bits; Xen sets the user bit for guest user mode).
    Fault { cr2: u64, error_code: u64, access: &'static str, present: bool, user: bool },
    /// The frame Xen pushed (rcx and r11 as the entry stub saved them).
    Frame { rip: u64, cs: u64, rflags: u64, rsp: u64, ss: u64, rcx: u64, r11: u64 },
    /// A frame taken from the allocator: a new table of `level`, or the page itself (`None`).
    Alloc { level: Option<Level>, pfn: Pfn, mfn: u64 },
    /// The entry that will map the page: its frame turned into a machine frame by the p2m.
    Leaf { va: VirtAddr, pfn: Pfn, pte: Pte },
    /// One entry the walk read for the faulting page.
    Walk { va: VirtAddr, level: Level, table: Pfn, index: usize, entry: Pte },
    /// A plain store into a new table that is still ordinary writable memory.
    Store { level: Level, table: Pfn, index: usize, value: Pte },
    /// The link of the new subtree into its existing parent, queued.
    Link { level: Level, table: Pfn, index: usize, ptr: MachineAddr, value: Pte },
    /// A writable alias of new table `table` made read-only (queued, or stored into a new L1).
    ReadOnly {
        table: Pfn,
        alias: VirtAddr,
        l1: Pfn,
        index: usize,
        ptr: MachineAddr,
        old: Pte,
        new: Pte,
        queued: bool,
    },
    /// HYPERVISOR_mmu_update with `count` entries.
    Batch { count: usize },
    /// Entry `i` of that batch as sent, decoded by the step that queued it.
    Entry { i: usize, update: MmuUpdate, level: Option<Level>, role: Role },
    /// Xen's answer to the batch.
    BatchDone { result: Result<(), BatchFailure>, count: usize },
    /// The frame handed to HYPERVISOR_iret (with a zero flags word).
    Iret { rip: u64, cs: u64, rflags: u64, rsp: u64, ss: u64 },
}

impl Step {
    /// The kind word of the step's line (a key of [`SCHEMA`]).
    pub const fn kind(&self) -> &'static str {
        match self {
            Step::Fault { .. } => "fault",
            Step::Frame { .. } => "frame",
            Step::Alloc { .. } => "alloc",
            Step::Leaf { .. } => "leaf",
            Step::Walk { .. } => "walk",
            Step::Store { .. } => "store",
            Step::Link { .. } => "link",
            Step::ReadOnly { .. } => "readonly",
            Step::Batch { .. } => "mmu_update",
            Step::Entry { .. } => "entry",
            Step::BatchDone { .. } => "mmu_update_done",
            Step::Iret { .. } => "iret",
        }
    }
}

/// A level as printed: `L1`..`L4`.
pub const fn level_name(level: Level) -> &'static str {
    match level {
        Level::L1 => "L1",
        Level::L2 => "L2",
        Level::L3 => "L3",
        Level::L4 => "L4",
    }
}

/// An entry's flags as `P|W|U|A|NX` (`-` for none), in a fixed order.
struct Flags(PteFlags);

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(PteFlags, &str); 10] = [
            (PteFlags::PRESENT, "P"),
            (PteFlags::WRITABLE, "W"),
            (PteFlags::USER_ACCESSIBLE, "U"),
            (PteFlags::WRITE_THROUGH, "PWT"),
            (PteFlags::NO_CACHE, "PCD"),
            (PteFlags::ACCESSED, "A"),
            (PteFlags::DIRTY, "D"),
            (PteFlags::HUGE_PAGE, "PS"),
            (PteFlags::GLOBAL, "G"),
            (PteFlags::NO_EXECUTE, "NX"),
        ];
        let mut first = true;
        for (flag, name) in NAMES {
            if self.0.contains(flag) {
                f.write_str(if first { "" } else { "|" })?;
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// The step's line without the `trace: <n> ` prefix.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind())?;
        match *self {
            Step::Fault { cr2, error_code, access, present, user } => write!(
                f,
                " cr2={cr2:#x} err={error_code:#x} access={access} present={} mode={}",
                yes_no(present),
                if user { "user" } else { "kernel" }
            ),
            Step::Frame { rip, cs, rflags, rsp, ss, rcx, r11 } => write!(
                f,
                " rip={rip:#x} cs={cs:#x} rflags={rflags:#x} rsp={rsp:#x} ss={ss:#x} rcx={rcx:#x} r11={r11:#x}"
            ),
            Step::Alloc { level, pfn, mfn } => {
                let what = level.map_or("page", level_name);
                write!(f, " for={what} pfn={:#x} mfn={mfn:#x}", pfn.0)
            }
            Step::Leaf { va, pfn, pte } => write!(
                f,
                " va={:#x} pfn={:#x} mfn={:#x} pte={:#x} flags={}",
                va.as_u64(),
                pfn.0,
                pte.mfn().0,
                pte.0,
                Flags(pte.flags())
            ),
            Step::Walk { level, table, index, entry, .. } => {
                write!(
                    f,
                    " level={} table_pfn={:#x} index={index} entry={:#x} outcome=",
                    level_name(level),
                    table.0,
                    entry.0
                )?;
                match level.child() {
                    None => f.write_str("leaf"),
                    Some(_) if entry.is_present() => f.write_str("descend"),
                    Some(child) => write!(f, "missing-{}", level_name(child)),
                }
            }
            Step::Store { level, table, index, value } => write!(
                f,
                " level={} table_pfn={:#x} index={index} val={:#x} mfn={:#x} flags={}",
                level_name(level),
                table.0,
                value.0,
                value.mfn().0,
                Flags(value.flags())
            ),
            Step::Link { level, table, index, ptr, value } => write!(
                f,
                " level={} table_pfn={:#x} index={index} ptr={:#x} val={:#x} mfn={:#x} flags={}",
                level_name(level),
                table.0,
                ptr.0,
                value.0,
                value.mfn().0,
                Flags(value.flags())
            ),
            Step::ReadOnly { table, alias, l1, index, ptr, old, new, queued } => write!(
                f,
                " table_pfn={:#x} alias={:#x} l1_pfn={:#x} index={index} ptr={:#x} old={:#x} new={:#x} via={}",
                table.0,
                alias.as_u64(),
                l1.0,
                ptr.0,
                old.0,
                new.0,
                if queued { "queue" } else { "store" }
            ),
            Step::Batch { count } => write!(f, " count={count}"),
            Step::Entry { i, update, level, role } => {
                let value = Pte(update.val);
                write!(
                    f,
                    " i={i} ptr={:#x} val={:#x} level={} index={} mfn={:#x} flags={} role={}",
                    update.ptr,
                    update.val,
                    level.map_or("?", level_name),
                    update.entry_addr().frame_offset_bytes() / 8,
                    value.mfn().0,
                    Flags(value.flags()),
                    match role {
                        Role::ReadOnly => "readonly",
                        Role::Link => "link",
                        Role::Other => "other",
                    }
                )
            }
            Step::BatchDone { result, count } => match result {
                Ok(()) => write!(f, " result=ok done={count}"),
                Err(e) => write!(f, " result=-{} done={}", e.errno.0, e.done),
            },
            Step::Iret { rip, cs, rflags, rsp, ss } => write!(
                f,
                " rip={rip:#x} cs={cs:#x} rflags={rflags:#x} rsp={rsp:#x} ss={ss:#x} flags=0"
            ),
        }
    }
}

/// Steps one traced fault may take; a fault that needs more is reported as truncated.
pub const MAX_STEPS: usize = 96;

/// The steps of the fault being handled.
pub struct Recorder {
    steps: [Option<Step>; MAX_STEPS],
    len: usize,
    /// Steps that did not fit.
    dropped: usize,
    fault_page: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub const fn new() -> Self {
        Recorder { steps: [None; MAX_STEPS], len: 0, dropped: 0, fault_page: 0 }
    }

    /// Forgets everything and starts the fault at `cr2`.
    pub fn start(&mut self, cr2: u64) {
        self.len = 0;
        self.dropped = 0;
        self.fault_page = cr2 & !(PAGE_SIZE - 1);
    }

    /// Records `step`. A walk is recorded only for the faulting page (the code also walks the
    /// kernel's tables to find a new table's alias), and a batch entry is decoded by the
    /// `link` or `readonly` step that queued it.
    pub fn record(&mut self, step: Step) {
        let step = match step {
            Step::Walk { va, .. } if va.as_u64() & !(PAGE_SIZE - 1) != self.fault_page => return,
            Step::Entry { i, update, .. } => {
                let (level, role) = self.queued_by(update.entry_addr());
                Step::Entry { i, update, level, role }
            }
            step => step,
        };
        if self.len == MAX_STEPS {
            self.dropped += 1;
            return;
        }
        self.steps[self.len] = Some(step);
        self.len += 1;
    }

    /// Records every entry of a batch about to be sent.
    pub fn record_batch(&mut self, updates: &[MmuUpdate]) {
        self.record(Step::Batch { count: updates.len() });
        for (i, &update) in updates.iter().enumerate() {
            self.record(Step::Entry { i, update, level: None, role: Role::Other });
        }
    }

    fn queued_by(&self, entry: MachineAddr) -> (Option<Level>, Role) {
        self.steps()
            .rev()
            .find_map(|step| match *step {
                Step::Link { level, ptr, .. } if ptr == entry => Some((Some(level), Role::Link)),
                Step::ReadOnly { ptr, queued: true, .. } if ptr == entry => {
                    Some((Some(Level::L1), Role::ReadOnly))
                }
                _ => None,
            })
            .unwrap_or((None, Role::Other))
    }

    /// The steps recorded so far.
    pub fn steps(&self) -> impl DoubleEndedIterator<Item = &Step> {
        self.steps[..self.len].iter().flatten()
    }

    /// Whether the walk found a level missing: the fault built new tables.
    pub fn needed_tables(&self) -> bool {
        self.steps().any(|step| {
            matches!(step, Step::Walk { level, entry, .. } if *level != Level::L1 && !entry.is_present())
        })
    }

    /// Writes the trace's lines, each with its newline.
    pub fn write_lines(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut number = 0;
        for step in self.steps() {
            number += 1;
            writeln!(out, "{PREFIX} {number} {step}")?;
        }
        if self.dropped > 0 {
            writeln!(
                out,
                "{PREFIX} {TRUNCATED} dropped={} (more than {MAX_STEPS} steps)",
                self.dropped
            )?;
        }
        writeln!(out, "{PREFIX} {END} steps={number}")
    }
}

const OFF: u8 = 0;
const ARMED: u8 = 1;
const RECORDING: u8 = 2;

/// OFF, ARMED (waiting for a fault), RECORDING (inside one); back to OFF once printed.
static STATE: AtomicU8 = AtomicU8::new(OFF);
static RECORDER: spin::Mutex<Recorder> = spin::Mutex::new(Recorder::new());
/// Steps dropped because the recorder was busy.
static LOST: AtomicUsize = AtomicUsize::new(0);

/// `trace=fault`: trace the first user fault that needs new tables.
pub fn arm() {
    STATE.store(ARMED, Ordering::Relaxed);
}

/// Whether a fault is being recorded: the one branch every hook costs.
#[inline(always)]
fn recording() -> bool {
    STATE.load(Ordering::Relaxed) == RECORDING
}

/// Records the step `make` builds, if a fault is being recorded (`make` runs only then).
#[inline(always)]
pub fn step(make: impl FnOnce() -> Step) {
    if recording() {
        with_recorder(|r| r.record(make()));
    }
}

/// Records the `mmu_update` batch about to be sent.
#[inline(always)]
pub fn batch(updates: &[MmuUpdate]) {
    if recording() {
        with_recorder(|r| r.record_batch(updates));
    }
}

/// Records Xen's answer to that batch.
#[inline(always)]
pub fn batch_done(result: &Result<(), BatchFailure>, count: usize) {
    if recording() {
        with_recorder(|r| r.record(Step::BatchDone { result: *result, count }));
    }
}

fn with_recorder(f: impl FnOnce(&mut Recorder)) {
    // Never wait: a hook inside a hook (a fault while recording) drops its step instead, and the
    // trace says so (`trace: truncated`).
    match RECORDER.try_lock() {
        Some(mut recorder) => f(&mut recorder),
        None => {
            LOST.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A user page fault was delivered: starts recording it (dropping an unfinished one, e.g. of a
/// program that was killed) with the fault as the handler decoded it.
#[inline(always)]
pub fn deliver(frame: &TrapFrame, fault: &PageFault) {
    let state = STATE.load(Ordering::Relaxed);
    if state == ARMED || state == RECORDING {
        LOST.store(0, Ordering::Relaxed);
        with_recorder(|r| {
            r.start(fault.address);
            r.record(Step::Fault {
                cr2: fault.address,
                error_code: frame.error_code,
                access: fault.access.word(),
                present: fault.present,
                user: fault.user_mode,
            });
            r.record(Step::Frame {
                rip: frame.rip,
                cs: frame.cs,
                rflags: frame.rflags,
                rsp: frame.rsp,
                ss: frame.ss,
                rcx: frame.rcx,
                r11: frame.r11,
            });
        });
        STATE.store(RECORDING, Ordering::Relaxed);
    }
}

/// The handled fault returns through HYPERVISOR_iret with `frame`: prints the trace if the fault
/// needed new tables (and stops tracing), else drops it and waits for the next fault.
#[inline(always)]
pub fn iret(frame: &TrapFrame) {
    if recording() {
        finish(frame);
    }
}

fn finish(frame: &TrapFrame) {
    let Some(mut recorder) = RECORDER.try_lock() else { return };
    recorder.dropped += LOST.swap(0, Ordering::Relaxed);
    recorder.record(Step::Iret {
        rip: frame.rip,
        cs: frame.cs,
        rflags: frame.rflags,
        rsp: frame.rsp,
        ss: frame.ss,
    });
    if !recorder.needed_tables() {
        STATE.store(ARMED, Ordering::Relaxed);
        return;
    }
    STATE.store(OFF, Ordering::Relaxed);
    print(&recorder);
}

#[cfg(target_os = "none")]
fn print(recorder: &Recorder) {
    struct Console;
    impl fmt::Write for Console {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            crate::print!("{s}");
            Ok(())
        }
    }
    let _ = recorder.write_lines(&mut Console);
}

#[cfg(not(target_os = "none"))]
fn print(recorder: &Recorder) {
    let mut text = String::new();
    let _ = recorder.write_lines(&mut text);
    std::print!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::addr::Mfn;

    const TABLE: PteFlags = PteFlags::PRESENT
        .union(PteFlags::WRITABLE)
        .union(PteFlags::USER_ACCESSIBLE)
        .union(PteFlags::ACCESSED);

    fn va(addr: u64) -> VirtAddr {
        VirtAddr::new(addr)
    }

    /// A fault at 0x401234 that needs L3, L2 and L1 tables, as the kernel records it.
    fn recorded() -> Recorder {
        let mut r = Recorder::new();
        r.start(0x401234);
        r.record(Step::Fault {
            cr2: 0x401234,
            error_code: 0x14,
            access: "exec",
            present: false,
            user: true,
        });
        r.record(Step::Leaf {
            va: va(0x401000),
            pfn: Pfn(0x300),
            pte: Pte::new(Mfn(0x9300), PteFlags::PRESENT | PteFlags::USER_ACCESSIBLE),
        });
        r.record(Step::Walk {
            va: va(0x401000),
            level: Level::L4,
            table: Pfn(0x200),
            index: 0,
            entry: Pte::EMPTY,
        });
        // The walk to a new table's alias in the kernel's tables is not the fault's walk.
        r.record(Step::Walk {
            va: va(0xffff_8880_0020_1000),
            level: Level::L4,
            table: Pfn(0x10),
            index: 273,
            entry: Pte(0x1234_7067),
        });
        r.record(Step::Alloc { level: Some(Level::L3), pfn: Pfn(0x201), mfn: 0x9201 });
        r.record(Step::Store {
            level: Level::L1,
            table: Pfn(0x203),
            index: 1,
            value: Pte::new(Mfn(0x9300), PteFlags::PRESENT | PteFlags::USER_ACCESSIBLE),
        });
        r.record(Step::Link {
            level: Level::L4,
            table: Pfn(0x200),
            index: 0,
            ptr: Mfn(0x9200).entry_addr(0),
            value: Pte::new(Mfn(0x9201), TABLE),
        });
        r.record(Step::ReadOnly {
            table: Pfn(0x201),
            alias: va(0xffff_8880_0020_1000),
            l1: Pfn(0x11),
            index: 0x101,
            ptr: Mfn(0x9011).entry_addr(0x101),
            old: Pte(0x8000_0000_0920_1003),
            new: Pte(0x8000_0000_0920_1001),
            queued: true,
        });
        r.record_batch(&[
            MmuUpdate::normal(Mfn(0x9011).entry_addr(0x101), Pte(0x8000_0000_0920_1001)),
            MmuUpdate::normal(Mfn(0x9200).entry_addr(0), Pte::new(Mfn(0x9201), TABLE)),
            MmuUpdate { ptr: 0x5000, val: 1 },
        ]);
        r.record(Step::BatchDone { result: Ok(()), count: 3 });
        r
    }

    fn lines(r: &Recorder) -> Vec<String> {
        let mut text = String::new();
        r.write_lines(&mut text).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn lines_are_numbered_and_keyed_as_the_schema_says() {
        let lines = lines(&recorded());
        assert_eq!(lines.last().unwrap(), &format!("trace: end steps={}", lines.len() - 1));
        for (n, line) in lines[..lines.len() - 1].iter().enumerate() {
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some("trace:"));
            assert_eq!(words.next(), Some((n + 1).to_string().as_str()), "{line}");
            let kind = words.next().unwrap();
            let keys: Vec<&str> = words.map(|w| w.split_once('=').unwrap().0).collect();
            assert_eq!(keys, keys_of(kind).unwrap(), "{line}");
        }
    }

    #[test]
    fn batch_entries_are_decoded_by_the_step_that_queued_them() {
        let lines = lines(&recorded());
        let entries: Vec<&String> = lines.iter().filter(|l| l.contains(" entry ")).collect();
        assert_eq!(entries.len(), 3);
        assert!(entries[0].ends_with("level=L1 index=257 mfn=0x9201 flags=P|NX role=readonly"));
        assert!(entries[1].ends_with("level=L4 index=0 mfn=0x9201 flags=P|W|U|A role=link"));
        assert!(entries[2].ends_with("level=? index=0 mfn=0x0 flags=P role=other"));
    }

    #[test]
    fn only_the_faulting_pages_walk_is_kept_and_a_missing_level_is_named() {
        let r = recorded();
        assert_eq!(r.steps().filter(|s| s.kind() == "walk").count(), 1);
        assert!(r.needed_tables());
        let lines = lines(&r);
        assert!(lines[2]
            .ends_with("walk level=L4 table_pfn=0x200 index=0 entry=0x0 outcome=missing-L3"));
        let mut present = Recorder::new();
        present.start(0x1000);
        present.record(Step::Walk {
            va: va(0x1000),
            level: Level::L1,
            table: Pfn(1),
            index: 1,
            entry: Pte::EMPTY,
        });
        assert!(!present.needed_tables(), "a missing leaf needs no table");
    }

    #[test]
    fn decoded_fields_read_as_intended() {
        let lines = lines(&recorded());
        assert_eq!(
            lines[0],
            "trace: 1 fault cr2=0x401234 err=0x14 access=exec present=no mode=user"
        );
        assert_eq!(
            lines[1],
            "trace: 2 leaf va=0x401000 pfn=0x300 mfn=0x9300 pte=0x9300005 flags=P|U"
        );
        assert!(lines.iter().any(|l| l.ends_with("result=ok done=3")));
    }

    #[test]
    fn a_fault_too_long_to_keep_says_so() {
        let mut r = Recorder::new();
        r.start(0);
        for _ in 0..MAX_STEPS + 2 {
            r.record(Step::Batch { count: 0 });
        }
        let lines = lines(&r);
        assert_eq!(lines[MAX_STEPS], "trace: truncated dropped=2 (more than 96 steps)");
    }
}
