//! The one queue every page-table write to a live table goes through: a fixed batch for `mmu_update`.
//!
//! Entries are applied by Xen in order. Two sections keep that order safe: alias downgrades
//! (making a new table's writable aliases read-only) go to the front section, every other update
//! to the back, so within one batch a table is always read-only everywhere before anything links
//! it. The queue never talks to Xen itself: its owner flushes it when it is full and before it
//! reads anything the batch would change (or answers such reads from [`UpdateQueue::pending`]).
//!
//! Each entry remembers the value it replaces, so that a batch Xen stopped part-way can be undone
//! exactly ([`UpdateQueue::undo`]). Reads of pending values go through a small open-addressing
//! index (entry address -> slot), so a batch of 512 entries built by a walk that checks the queue
//! at every level costs a constant per lookup, not a scan.

use super::addr::MachineAddr;
use crate::xen::abi::MmuUpdate;

/// Entries per batch (Mini-OS batches up to 512 too).
pub const QUEUE_CAPACITY: usize = 512;

/// Buckets of the index: a power of two, at least twice the capacity (load factor <= 1/2).
const INDEX_BUCKETS: usize = 2 * QUEUE_CAPACITY;

/// An empty bucket.
const NO_SLOT: u16 = u16::MAX;

/// Up to [`QUEUE_CAPACITY`] pending `mmu_update` entries.
#[derive(Debug)]
pub struct UpdateQueue {
    entries: [MmuUpdate; QUEUE_CAPACITY],
    /// `replaced[i]`: the value entry `i`'s target held before entry `i` (through earlier entries).
    replaced: [u64; QUEUE_CAPACITY],
    len: usize,
    front_len: usize,
    /// Entry address -> slot of the last queued write of it, [`NO_SLOT`] if none.
    index: [u16; INDEX_BUCKETS],
}

impl Default for UpdateQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl UpdateQueue {
    /// An empty queue.
    pub(in crate::mm) const fn new() -> Self {
        UpdateQueue {
            entries: [MmuUpdate { ptr: 0, val: 0 }; QUEUE_CAPACITY],
            replaced: [0; QUEUE_CAPACITY],
            len: 0,
            front_len: 0,
            index: [NO_SLOT; INDEX_BUCKETS],
        }
    }

    /// The batch as it should be sent.
    pub(in crate::mm) fn as_slice(&self) -> &[MmuUpdate] {
        &self.entries[..self.len]
    }

    /// How many entries lead the batch as alias downgrades.
    pub(in crate::mm) const fn front_len(&self) -> usize {
        self.front_len
    }

    /// Whether nothing is pending.
    pub(in crate::mm) const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the next push needs a flush first.
    pub(in crate::mm) const fn is_full(&self) -> bool {
        self.len == QUEUE_CAPACITY
    }

    /// Appends an update after everything queued; `replaced` is the value its entry holds before
    /// it. The queue must not be full.
    pub(in crate::mm) fn push_back(&mut self, update: MmuUpdate, replaced: u64) {
        debug_assert!(!self.is_full());
        self.entries[self.len] = update;
        self.replaced[self.len] = replaced;
        self.remember(update.entry_addr(), self.len);
        self.len += 1;
    }

    /// Adds an alias downgrade before every non-downgrade entry; `replaced` as for
    /// [`UpdateQueue::push_back`]. The entry must not be written later in the batch (a downgrade
    /// of an entry the batch writes is a [`UpdateQueue::rewrite_pending`]). The queue must not
    /// be full.
    pub(in crate::mm) fn push_front(&mut self, update: MmuUpdate, replaced: u64) {
        debug_assert!(!self.is_full());
        let at = self.front_len;
        self.entries.copy_within(at..self.len, at + 1);
        self.replaced.copy_within(at..self.len, at + 1);
        for slot in self.index.iter_mut().filter(|s| **s != NO_SLOT && usize::from(**s) >= at) {
            *slot += 1;
        }
        self.entries[at] = update;
        self.replaced[at] = replaced;
        self.front_len += 1;
        self.len += 1;
        if self.slot_of(update.entry_addr()).is_none_or(|slot| slot < at) {
            self.remember(update.entry_addr(), at);
        }
    }

    /// The value the entry at `entry` will hold once the batch is applied, if the batch writes it.
    pub(in crate::mm) fn pending(&self, entry: MachineAddr) -> Option<u64> {
        self.slot_of(entry).map(|slot| self.entries[slot].val)
    }

    /// Changes the last queued write of `entry` to `value`; false if none is queued.
    pub(in crate::mm) fn rewrite_pending(&mut self, entry: MachineAddr, value: u64) -> bool {
        match self.slot_of(entry) {
            Some(slot) => {
                self.entries[slot].val = value;
                true
            }
            None => false,
        }
    }

    /// The updates that undo entries `from..to` of the batch once Xen applied them, last first:
    /// each restores the value its entry replaced, paired with the value it takes away.
    pub(in crate::mm) fn undo(
        &self,
        from: usize,
        to: usize,
    ) -> impl Iterator<Item = (MmuUpdate, u64)> + '_ {
        (from..to.min(self.len)).rev().map(|i| {
            let applied = self.entries[i];
            (MmuUpdate { ptr: applied.ptr, val: self.replaced[i] }, applied.val)
        })
    }

    /// The value each queued entry replaced, in batch order.
    pub(in crate::mm) fn replaced_values(&self) -> impl Iterator<Item = u64> + '_ {
        self.replaced[..self.len].iter().copied()
    }

    /// Forgets everything (after the batch was sent).
    pub(in crate::mm) fn clear(&mut self) {
        self.len = 0;
        self.front_len = 0;
        self.index.fill(NO_SLOT);
    }

    fn bucket(entry: MachineAddr) -> usize {
        // Fibonacci hashing of the entry number: consecutive entries spread over the buckets.
        let hash = (entry.0 >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (hash >> (64 - INDEX_BUCKETS.trailing_zeros())) as usize
    }

    fn slot_of(&self, entry: MachineAddr) -> Option<usize> {
        let mut bucket = Self::bucket(entry);
        loop {
            let slot = self.index[bucket];
            if slot == NO_SLOT {
                return None;
            }
            if self.entries[usize::from(slot)].entry_addr() == entry {
                return Some(usize::from(slot));
            }
            bucket = (bucket + 1) % INDEX_BUCKETS;
        }
    }

    /// Points `entry`'s bucket at `slot` (a new bucket, or the one that held an older write).
    fn remember(&mut self, entry: MachineAddr, slot: usize) {
        let mut bucket = Self::bucket(entry);
        loop {
            let current = self.index[bucket];
            if current == NO_SLOT || self.entries[usize::from(current)].entry_addr() == entry {
                self.index[bucket] = slot as u16;
                return;
            }
            bucket = (bucket + 1) % INDEX_BUCKETS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(ptr: u64, val: u64) -> MmuUpdate {
        MmuUpdate { ptr, val }
    }

    #[test]
    fn downgrades_go_before_every_other_update_in_arrival_order() {
        let mut q = UpdateQueue::new();
        q.push_back(update(0x10, 1), 0);
        q.push_front(update(0x20, 2), 0);
        q.push_back(update(0x30, 3), 0);
        q.push_front(update(0x40, 4), 0);
        let ptrs: Vec<u64> = q.as_slice().iter().map(|u| u.ptr).collect();
        assert_eq!(ptrs, [0x20, 0x40, 0x10, 0x30]);
        assert_eq!(q.front_len(), 2);
        // The index followed the entries the downgrades pushed back.
        for (ptr, val) in [(0x10, 1), (0x20, 2), (0x30, 3), (0x40, 4)] {
            assert_eq!(q.pending(MachineAddr(ptr)), Some(val), "{ptr:#x}");
        }
    }

    #[test]
    fn pending_answers_with_the_last_write_and_can_be_rewritten() {
        let mut q = UpdateQueue::new();
        q.push_back(update(0x10, 1), 0);
        q.push_back(update(0x10, 5), 1);
        assert_eq!(q.pending(MachineAddr(0x10)), Some(5));
        assert_eq!(q.pending(MachineAddr(0x18)), None);
        assert!(q.rewrite_pending(MachineAddr(0x10), 7));
        assert_eq!(q.as_slice()[0].val, 1);
        assert_eq!(q.pending(MachineAddr(0x10)), Some(7));
        assert!(!q.rewrite_pending(MachineAddr(0x18), 7));
    }

    #[test]
    fn the_index_agrees_with_a_scan_for_a_full_batch_of_colliding_addresses() {
        let mut q = UpdateQueue::new();
        // Entries of many tables at the same index, rewritten, with downgrades in front.
        for i in 0..QUEUE_CAPACITY as u64 - 8 {
            q.push_back(update((i % 300) << 12 | 0x18, i), 0);
        }
        for i in 0..8u64 {
            q.push_front(update(0x7000_0000 + i * 8, 100 + i), 0);
        }
        assert!(q.is_full());
        for page in 0..310u64 {
            let entry = MachineAddr(page << 12 | 0x18);
            let scan = q.as_slice().iter().rev().find(|u| u.entry_addr() == entry).map(|u| u.val);
            assert_eq!(q.pending(entry), scan, "{entry:?}");
        }
        q.clear();
        assert_eq!(q.pending(MachineAddr(0x18)), None);
    }

    #[test]
    fn undo_restores_what_each_applied_entry_replaced_last_first() {
        let mut q = UpdateQueue::new();
        q.push_back(update(0x10, 1), 0);
        q.push_back(update(0x10, 2), 1);
        q.push_front(update(0x20, 3), 9);
        let undo: Vec<(u64, u64, u64)> = q.undo(0, 3).map(|(u, was)| (u.ptr, u.val, was)).collect();
        assert_eq!(undo, [(0x10, 1, 2), (0x10, 0, 1), (0x20, 9, 3)]);
        let undo: Vec<(u64, u64, u64)> = q.undo(1, 2).map(|(u, was)| (u.ptr, u.val, was)).collect();
        assert_eq!(undo, [(0x10, 0, 1)]);
    }

    #[test]
    fn reports_full_at_capacity_and_clears() {
        let mut q = UpdateQueue::new();
        for i in 0..QUEUE_CAPACITY as u64 {
            q.push_back(update(i * 8, i), 0);
        }
        assert!(q.is_full());
        q.clear();
        assert!(q.is_empty() && !q.is_full());
    }
}
