//! The outcome of a boot: the most severe verdict seen wins (verdicts are ordered as XTF orders them).

/// The verdict and its console words are faultline-abi's: the runner reads what this prints.
pub use faultline_abi::Verdict;

/// The running tally of a boot: how many checks, and the worst verdict among them.
#[derive(Clone, Copy, Debug)]
pub struct Tally {
    worst: Verdict,
    checks: u32,
}

impl Tally {
    pub const fn new() -> Self {
        Tally { worst: Verdict::Success, checks: 0 }
    }

    pub fn record(&mut self, verdict: Verdict) {
        self.worst = self.worst.max(verdict);
        self.checks += 1;
    }

    pub fn checks(&self) -> u32 {
        self.checks
    }

    /// The final verdict: the worst one recorded (SUCCESS when every check passed).
    pub fn result(&self) -> Verdict {
        self.worst
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_severe_wins() {
        let mut tally = Tally::new();
        assert_eq!(tally.result(), Verdict::Success);
        tally.record(Verdict::Skip);
        tally.record(Verdict::Success);
        assert_eq!(tally.result(), Verdict::Skip);
        tally.record(Verdict::Failure);
        tally.record(Verdict::Error);
        assert_eq!(tally.result(), Verdict::Failure);
        assert_eq!(tally.checks(), 4);
    }
}
