//! The audit after every program: the kernel's records against each other and against the
//! live page tables.
//!
//! Before and after a run it takes a [`Snapshot`]: frames in use, table pages live, kernel heap
//! bytes in use and tables pinned through the MMU seam. A run must leave all four as it found
//! them. It then walks the kernel's live tables from the root (Xen's own L4 slots excepted) and
//! checks that every table reached is a table in the memory manager's records, and that the
//! records hold no table the walk does not reach (no process runs between programs, so every
//! table the kernel owns hangs under the kernel's root).

use core::fmt;

use crate::mm::kernel::KernelTables;
use crate::mm::kernel_space::is_guest_l4_slot;
use crate::mm::{FrameAccess, Level, Pfn, Pte, PteFlags};

/// The counts a run must give back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub frames_used: u64,
    pub tables_live: u64,
    pub heap_bytes: usize,
    pub pins: i64,
    /// The walk of the live tables against the records.
    pub walk: Walk,
}

/// What the walk of the kernel's live tables found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// Tables recorded by the memory manager.
    pub recorded: u64,
    /// Tables reachable from the kernel root.
    pub reached: u64,
    /// Reachable tables that are not recorded, or not ours (a foreign mfn).
    pub unrecorded: u64,
}

/// Takes the counts now.
pub fn snapshot() -> Snapshot {
    let heap_bytes = crate::mm::heap::usage().0;
    let guard = crate::mm::kernel::MM.lock();
    let (frames_used, tables_live, walk) = guard.as_ref().map_or((0, 0, Walk::default()), |mm| {
        let walk = walk_kernel_tables(&mm.tables, &mut |_| {});
        (mm.frames.used_frames(), mm.tables.stats().tables_live(), walk)
    });
    Snapshot {
        frames_used,
        tables_live,
        heap_bytes,
        pins: crate::mm::hypercall_mmu::pins_live(),
        walk,
    }
}

/// One disagreement found by the audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Frames {
        before: u64,
        after: u64,
    },
    Tables {
        before: u64,
        after: u64,
    },
    HeapBytes {
        before: usize,
        after: usize,
    },
    Pins {
        before: i64,
        after: i64,
    },
    /// A live table entry points at a frame the m2p does not give back as ours.
    ForeignTable {
        parent: Pfn,
        index: usize,
        mfn: u64,
    },
    /// A live table that the records do not hold as a table.
    Unrecorded {
        pfn: Pfn,
        level: Level,
    },
    /// Tables in the records that the walk did not reach.
    Unreached {
        recorded: u64,
        reached: u64,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frames { before, after } => write!(f, "frames in use {before} -> {after}"),
            Self::Tables { before, after } => write!(f, "table pages live {before} -> {after}"),
            Self::HeapBytes { before, after } => {
                write!(f, "kernel heap bytes in use {before} -> {after}")
            }
            Self::Pins { before, after } => write!(f, "pinned tables {before} -> {after}"),
            Self::ForeignTable { parent, index, mfn } => write!(
                f,
                "table pfn {:#x} entry {index} points at mfn {mfn:#x}, not one of ours",
                parent.0
            ),
            Self::Unrecorded { pfn, level } => {
                write!(f, "live {level:?} table pfn {:#x} is not recorded as a table", pfn.0)
            }
            Self::Unreached { recorded, reached } => {
                write!(f, "{recorded} tables recorded, {reached} reachable from the kernel root")
            }
        }
    }
}

/// Compares two snapshots (the walk included: a disagreement that was there before the run is
/// the earlier run's, already reported); calls `report` for every mismatch and returns how many
/// there were.
pub fn check(before: Snapshot, after: Snapshot, mut report: impl FnMut(Mismatch)) -> usize {
    let mut found = 0;
    let mut note = |m| {
        found += 1;
        report(m);
    };
    if before.frames_used != after.frames_used {
        note(Mismatch::Frames { before: before.frames_used, after: after.frames_used });
    }
    if before.tables_live != after.tables_live {
        note(Mismatch::Tables { before: before.tables_live, after: after.tables_live });
    }
    if before.heap_bytes != after.heap_bytes {
        note(Mismatch::HeapBytes { before: before.heap_bytes, after: after.heap_bytes });
    }
    if before.pins != after.pins {
        note(Mismatch::Pins { before: before.pins, after: after.pins });
    }
    let (old, new) = (before.walk, after.walk);
    if new.unrecorded > old.unrecorded {
        let guard = crate::mm::kernel::MM.lock();
        if let Some(mm) = guard.as_ref() {
            walk_kernel_tables(&mm.tables, &mut note);
        }
    }
    if new.recorded - new.reached.min(new.recorded) != old.recorded - old.reached.min(old.recorded)
    {
        note(Mismatch::Unreached { recorded: new.recorded, reached: new.reached });
    }
    found
}

/// The walk: every table under the kernel root must be recorded, and every recorded table
/// reached.
fn walk_kernel_tables(tables: &KernelTables, note: &mut impl FnMut(Mismatch)) -> Walk {
    let root = tables.kernel_root().pfn;
    let mut walk_counts = Walk { reached: 1, ..Walk::default() };
    let mut counted = |m| {
        walk_counts.unrecorded += 1;
        note(m);
    };
    if !tables.is_table(root) {
        counted(Mismatch::Unrecorded { pfn: root, level: Level::L4 });
    }
    let mut reached = 1;
    walk(tables, root, Level::L4, &mut reached, &mut counted);
    walk_counts.reached = reached;
    let nr_pages = tables.p2m().nr_pages();
    walk_counts.recorded = (0..nr_pages).filter(|&pfn| tables.is_table(Pfn(pfn))).count() as u64;
    walk_counts
}

fn walk(
    tables: &KernelTables,
    table: Pfn,
    level: Level,
    reached: &mut u64,
    note: &mut impl FnMut(Mismatch),
) {
    let Some(child_level) = level.child() else { return };
    for index in 0..512 {
        if level == Level::L4 && !is_guest_l4_slot(index) {
            continue;
        }
        let pte = Pte(tables.memory().read_entry(table, index));
        if !pte.is_present() || pte.flags().contains(PteFlags::HUGE_PAGE) {
            continue;
        }
        let Ok(child) = tables.p2m().mfn_to_pfn(pte.mfn()) else {
            note(Mismatch::ForeignTable { parent: table, index, mfn: pte.mfn().0 });
            continue;
        };
        *reached += 1;
        if !tables.is_table(child) {
            note(Mismatch::Unrecorded { pfn: child, level: child_level });
        }
        walk(tables, child, child_level, reached, note);
    }
}
