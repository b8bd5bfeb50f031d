//! Expected exceptions: a test announces the vector it is about to raise, the trap path
//! consumes the announcement and resumes instead of reporting a crash.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::x86_64::trap_frame::TrapFrame;

const NONE: u64 = u64::MAX;

static EXPECTED_VECTOR: AtomicU64 = AtomicU64::new(NONE);
/// Where to resume; 0 means "at the frame's rip" (right for traps such as #BP).
static RESUME_AT: AtomicU64 = AtomicU64::new(0);
static HITS: AtomicU64 = AtomicU64::new(0);
static LAST_RIP: AtomicU64 = AtomicU64::new(0);
static LAST_ERROR_CODE: AtomicU64 = AtomicU64::new(0);

/// The next exception `vector` is expected; resume at `resume_at` (0: where the CPU left off).
pub fn expect(vector: u64, resume_at: u64) {
    RESUME_AT.store(resume_at, Ordering::SeqCst);
    EXPECTED_VECTOR.store(vector, Ordering::SeqCst);
}

/// Called by the trap path: true if this exception was expected (the frame is then adjusted
/// to resume), false if it must be reported.
pub fn consume(frame: &mut TrapFrame) -> bool {
    if EXPECTED_VECTOR
        .compare_exchange(frame.vector, NONE, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return false;
    }
    LAST_RIP.store(frame.rip, Ordering::SeqCst);
    LAST_ERROR_CODE.store(frame.error_code, Ordering::SeqCst);
    HITS.fetch_add(1, Ordering::SeqCst);
    let resume = RESUME_AT.swap(0, Ordering::SeqCst);
    if resume != 0 {
        frame.rip = resume;
    }
    true
}

/// How many expected exceptions have been taken, and the rip of the last one.
pub fn hits() -> (u64, u64) {
    (HITS.load(Ordering::SeqCst), LAST_RIP.load(Ordering::SeqCst))
}

/// Withdraws an expectation that did not happen; true if it was still pending.
pub fn withdraw() -> bool {
    EXPECTED_VECTOR.swap(NONE, Ordering::SeqCst) != NONE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_announced_vector_is_consumed_once() {
        let mut frame = TrapFrame { vector: 3, rip: 0x1000, ..Default::default() };
        assert!(!consume(&mut frame));
        expect(3, 0);
        let mut other = TrapFrame { vector: 14, ..Default::default() };
        assert!(!consume(&mut other));
        assert!(consume(&mut frame));
        assert_eq!(frame.rip, 0x1000);
        assert!(!consume(&mut frame), "an expectation is consumed once");
        expect(6, 0x2000);
        let mut ud = TrapFrame { vector: 6, rip: 0x1500, ..Default::default() };
        assert!(consume(&mut ud));
        assert_eq!(ud.rip, 0x2000);
        assert!(!withdraw());
    }
}
