//! The outcome of a boot: the most severe verdict seen wins (verdicts are ordered as XTF orders them).

/// The verdict and its console words are faultline-abi's: the runner reads what this prints.
pub use faultline_abi::Verdict;

/// The running outcome of a boot: how many checks, and the worst verdict among them.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    worst: Verdict,
    checks: u32,
}

impl Outcome {
    pub const fn new() -> Self {
        Outcome { worst: Verdict::Success, checks: 0 }
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

impl Default for Outcome {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_severe_wins() {
        let mut o = Outcome::new();
        assert_eq!(o.result(), Verdict::Success);
        o.record(Verdict::Skip);
        o.record(Verdict::Success);
        assert_eq!(o.result(), Verdict::Skip);
        o.record(Verdict::Failure);
        o.record(Verdict::Error);
        assert_eq!(o.result(), Verdict::Failure);
        assert_eq!(o.checks(), 4);
    }
}
