//! Plain counters of memory-management work, printed by the kernel on its `stats:` line.

use core::fmt;

use super::pte::Level;

/// What the page-table code asked of Xen and how many table pages it owns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmStats {
    /// `mmu_update` hypercalls made.
    pub mmu_update_calls: u64,
    /// Entries sent in them.
    pub mmu_update_entries: u64,
    /// `mmuext_op` hypercalls made.
    pub mmuext_calls: u64,
    /// Operations sent in them.
    pub mmuext_ops: u64,
    /// `update_va_mapping` hypercalls made.
    pub update_va_mapping_calls: u64,
    /// TLB flushes issued (INVLPG or full).
    pub tlb_flushes: u64,
    /// Of their ops, those sent to other vCPUs too (`MMUEXT_*_MULTI`: a shootdown).
    pub tlb_shootdowns: u64,
    /// Page tables built for user address spaces (roots included).
    pub user_tables_built: u64,
    /// Table pages allocated, indexed by level (L1 at 0).
    pub tables_allocated: [u64; 4],
    /// Table pages freed, indexed by level (L1 at 0).
    pub tables_freed: [u64; 4],
}

impl MmStats {
    /// Counts a new table page of `level`.
    pub(in crate::mm) fn table_allocated(&mut self, level: Level) {
        self.tables_allocated[level as usize] += 1;
    }

    /// Counts a freed table page of `level`.
    pub(in crate::mm) fn table_freed(&mut self, level: Level) {
        self.tables_freed[level as usize] += 1;
    }

    /// Table pages allocated minus freed, all levels.
    pub(crate) fn tables_live(&self) -> u64 {
        self.tables_allocated.iter().sum::<u64>() - self.tables_freed.iter().sum::<u64>()
    }

    /// The `stats:` line, with the frame counts from the allocator.
    pub(in crate::mm) fn line(&self, frames_free: u64, frames_used: u64) -> StatsLine<'_> {
        StatsLine { stats: self, frames_free, frames_used }
    }
}

/// One line of `key=value` pairs; see [`MmStats::line`].
pub struct StatsLine<'a> {
    stats: &'a MmStats,
    frames_free: u64,
    frames_used: u64,
}

impl fmt::Display for StatsLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats;
        let [a1, a2, a3, a4] = s.tables_allocated;
        let [f1, f2, f3, f4] = s.tables_freed;
        write!(
            f,
            "stats: mmu_update_calls={} mmu_update_entries={} mmuext_calls={} mmuext_ops={} \
             update_va_mapping_calls={} tlb_flushes={} tlb_shootdowns={} tables_l1={a1} tables_l2={a2} tables_l3={a3} \
             tables_l4={a4} tables_freed={} frames_free={} frames_used={}",
            s.mmu_update_calls,
            s.mmu_update_entries,
            s.mmuext_calls,
            s.mmuext_ops,
            s.update_va_mapping_calls,
            s.tlb_flushes,
            s.tlb_shootdowns,
            f1 + f2 + f3 + f4,
            self.frames_free,
            self.frames_used
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_line_names_every_counter() {
        let mut s = MmStats { mmu_update_calls: 2, mmu_update_entries: 5, ..MmStats::default() };
        s.table_allocated(Level::L1);
        s.table_allocated(Level::L3);
        let line = format!("{}", s.line(10, 6));
        assert_eq!(
            line,
            "stats: mmu_update_calls=2 mmu_update_entries=5 mmuext_calls=0 mmuext_ops=0 \
             update_va_mapping_calls=0 tlb_flushes=0 tlb_shootdowns=0 tables_l1=1 tables_l2=0 tables_l3=1 tables_l4=0 \
             tables_freed=0 frames_free=10 frames_used=6"
        );
        assert_eq!(s.tables_live(), 2);
    }
}
