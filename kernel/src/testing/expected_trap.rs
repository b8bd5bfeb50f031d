//! Expected exceptions, tied to the instruction that raises them (as XTF's exception table
//! ties a fault to one instruction): a test announces the vector and the range of addresses the
//! CPU reports as rip for it, the trap path consumes the announcement only for that vector at
//! that place and resumes instead of reporting a crash. The same vector anywhere else is not
//! taken for the expected one: it ends in the crash report.
//!
//! The rip the CPU reports is the instruction's own address for a fault (#UD, #GP, #PF) and the
//! next instruction's for a trap (#BP after `int3`); an NMI comes where the vCPU next returns to
//! the guest, so its expectation names the hypercall page entry that sent it.

use core::ops::Range;

use crate::arch::x86_64::trap_frame::TrapFrame;

/// One announced exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedTrap {
    pub vector: u64,
    /// The addresses the trap's rip may have: the instruction, or the range it lies in.
    pub rip_start: u64,
    pub rip_end: u64,
    /// Where to resume; None: where the CPU left off (right for traps such as #BP).
    pub resume_at: Option<u64>,
}

impl ExpectedTrap {
    /// `vector` with rip in `at`, resumed where the CPU left off.
    pub fn at(vector: u64, at: Range<u64>) -> ExpectedTrap {
        ExpectedTrap { vector, rip_start: at.start, rip_end: at.end, resume_at: None }
    }

    fn matches(&self, frame: &TrapFrame) -> bool {
        frame.vector == self.vector && (self.rip_start..self.rip_end).contains(&frame.rip)
    }
}

/// What a consumed expectation saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    pub count: u64,
    pub last_rip: u64,
    pub last_error_code: u64,
}

struct State {
    armed: Option<ExpectedTrap>,
    hits: Hits,
}

static STATE: spin::Mutex<State> = spin::Mutex::new(State {
    armed: None,
    hits: Hits { count: 0, last_rip: 0, last_error_code: 0 },
});

/// Announces the next exception: `expected.vector` at `expected`'s rip range.
pub fn expect(expected: ExpectedTrap) {
    STATE.lock().armed = Some(expected);
}

/// Called by the trap path: true if this exception was the announced one at the announced
/// place (the frame is then adjusted to resume), false if it must be reported.
pub fn consume(frame: &mut TrapFrame) -> bool {
    // try_lock: a trap taken while a test holds the lock is not an announced one.
    let Some(mut state) = STATE.try_lock() else { return false };
    let Some(expected) = state.armed.filter(|e| e.matches(frame)) else { return false };
    state.armed = None;
    state.hits.count += 1;
    state.hits.last_rip = frame.rip;
    state.hits.last_error_code = frame.error_code;
    if let Some(resume) = expected.resume_at {
        frame.rip = resume;
    }
    true
}

/// How many expected exceptions have been taken, and where the last one was.
pub fn hits() -> Hits {
    STATE.lock().hits
}

/// Withdraws an expectation that did not happen; true if it was still pending.
pub fn withdraw() -> bool {
    STATE.lock().armed.take().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test: the state is global.
    #[test]
    fn only_the_announced_vector_at_the_announced_place_is_consumed_once() {
        let mut frame = TrapFrame { vector: 3, rip: 0x1000, ..Default::default() };
        assert!(!consume(&mut frame), "nothing announced");
        expect(ExpectedTrap::at(3, 0x1000..0x1001));
        let mut other_vector = TrapFrame { vector: 14, rip: 0x1000, ..Default::default() };
        assert!(!consume(&mut other_vector));
        // The same vector at another instruction is not the announced one, before or after it.
        for rip in [0x0fff, 0x1001, 0x5000] {
            let mut elsewhere = TrapFrame { vector: 3, rip, ..Default::default() };
            assert!(!consume(&mut elsewhere), "a #BP at {rip:#x} was swallowed");
        }
        assert!(consume(&mut frame));
        assert_eq!(frame.rip, 0x1000);
        assert!(!consume(&mut frame), "an expectation is consumed once");
        assert_eq!(hits().count, 1);
        assert_eq!(hits().last_rip, 0x1000);
        expect(ExpectedTrap { resume_at: Some(0x2000), ..ExpectedTrap::at(6, 0x1500..0x1502) });
        let mut ud = TrapFrame { vector: 6, rip: 0x1500, error_code: 0, ..Default::default() };
        assert!(consume(&mut ud));
        assert_eq!(ud.rip, 0x2000);
        assert!(!withdraw());
        expect(ExpectedTrap::at(2, 0x3000..0x3020));
        assert!(withdraw());
        assert!(!withdraw());
    }
}
