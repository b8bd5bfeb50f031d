//! Kernel fault injection: the kernel's own calls fail on purpose, chosen on the command line.
//!
//! Each [`Point`] is one kind of call that can fail (a frame allocation, a table page, a heap
//! allocation, an MMU hypercall, an event-channel operation, a console write). A call site asks
//! [`fail`] whether this call fails; off (the default), that is one load of a flag that is never
//! set and one predictable branch. The grammar (README, docs/abi.md):
//!
//! ```text
//! inject=POINT:RULE[,RULE...][@SCOPE]     (several inject= words for several points)
//! RULE  = nth=N | every=N | times=K | probability=P
//!       | sweep=FROM..TO[,step=S]         (alone, scoped, one per boot)
//! SCOPE = (none: calls counted from boot) | programs | NAME (one program)
//! inject_seed=S                           (the seed of probability=; printed at boot)
//! ```
//!
//! `nth=N` fails the Nth call, `every=N` every Nth, `probability=P` each call with probability P
//! (a decimal fraction, `0.05`, or a percentage, `5%`), `times=K` caps the failures (per
//! program run when scoped). With a scope, calls are counted only while a program runs (every
//! program, or the one named), from 1 at the start of each run, so that one boot injects into
//! every program at once. The suite prints one `inject:` line per program and point.
//!
//! `sweep=FROM..TO` is `nth=` at many positions in one boot: the suite runs each program in
//! scope again and again, with the failure at call FROM, FROM+S, ... up to TO, and moves on to
//! the next program after the first run that no longer reaches the position (see
//! `proc::suite`). `cargo xtask sweep` boots with it; one case replays with `nth=`.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The calls that can be made to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Any frame allocation from the frame allocator (table pages included).
    Frame = 0,
    /// A page-table page allocation.
    Table,
    /// A kernel heap allocation.
    Heap,
    /// An `mmu_update` batch: Xen itself refuses a deliberately invalid entry at a position
    /// drawn from the seed, so the done count is below the batch length.
    MmuUpdate,
    /// An `mmuext_op` batch: only the operations before a drawn position are sent.
    MmuextOp,
    /// `update_va_mapping`.
    UpdateVaMapping,
    /// An event-channel operation (bind, unmask, send).
    Evtchn,
    /// A console write.
    Console,
}

/// Number of points.
pub const POINT_COUNT: usize = 8;

impl Point {
    pub const ALL: [(&'static str, Point); POINT_COUNT] = [
        ("frame", Point::Frame),
        ("table", Point::Table),
        ("heap", Point::Heap),
        ("mmu_update", Point::MmuUpdate),
        ("mmuext_op", Point::MmuextOp),
        ("update_va_mapping", Point::UpdateVaMapping),
        ("evtchn", Point::Evtchn),
        ("console", Point::Console),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL[self as usize].0
    }

    fn by_name(name: &str) -> Option<Point> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }
}

/// Longest program name a scope can hold.
const SCOPE_NAME_MAX: usize = 32;

/// Where a rule counts calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every call from boot on (boot-time calls included).
    Boot,
    /// Calls made while any program runs, counted per run.
    Programs,
    /// Calls made while the named program runs, counted per run.
    Program { name: [u8; SCOPE_NAME_MAX], len: usize },
}

impl Scope {
    pub fn matches(&self, program: Option<&str>) -> bool {
        match (self, program) {
            (Scope::Boot, _) => true,
            (Scope::Programs, Some(_)) => true,
            (Scope::Program { name, len }, Some(p)) => p.as_bytes() == &name[..*len],
            _ => false,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Boot => f.write_str("boot"),
            Scope::Programs => f.write_str("programs"),
            Scope::Program { name, len } => {
                f.write_str(core::str::from_utf8(&name[..*len]).unwrap_or("?"))
            }
        }
    }
}

/// Positions `from`, `from + step`, ... up to `to` of a swept point, one program run each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sweep {
    pub from: u64,
    pub to: u64,
    pub step: u64,
}

impl Sweep {
    /// The position after `nth`, if it is still in range.
    pub fn next(&self, nth: u64) -> Option<u64> {
        nth.checked_add(self.step).filter(|&n| n <= self.to)
    }
}

/// When calls of one point fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub point: Point,
    /// Fail call N (0: no such rule).
    pub nth: u64,
    /// Fail every Nth call (0: no such rule).
    pub every: u64,
    /// At most this many failures per scope (0: no cap).
    pub times: u64,
    /// Probability in parts per million (0: no such rule).
    pub probability_ppm: u32,
    /// Fail call N for each position N of the sweep, one program run per position.
    pub sweep: Option<Sweep>,
    pub scope: Scope,
}

impl Rule {
    /// Whether call `call` (1-based) fails, given `failed` failures so far and a uniform draw
    /// in 0..1_000_000.
    pub fn decides(&self, call: u64, failed: u64, draw_ppm: u32) -> bool {
        if self.times != 0 && failed >= self.times {
            return false;
        }
        (self.nth != 0 && call == self.nth)
            || (self.every != 0 && call.is_multiple_of(self.every))
            || (self.probability_ppm != 0 && draw_ppm < self.probability_ppm)
    }
}

/// A word of the command line that is not a valid injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectError<'a> {
    UnknownPoint(&'a str),
    BadRule(&'a str),
    NoRule(&'a str),
    ScopeTooLong(&'a str),
    BadSeed(&'a str),
    TooManyRules,
    /// `sweep=` with another rule, without a program scope, or in a second word.
    BadSweep(&'a str),
}

impl fmt::Display for InjectError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPoint(p) => {
                write!(f, "inject: unknown point '{p}' (known:")?;
                for (name, _) in Point::ALL {
                    write!(f, " {name}")?;
                }
                write!(f, ")")
            }
            Self::BadRule(r) => write!(
                f,
                "inject: bad rule '{r}' (nth=N, every=N, times=K, probability=0.05 or 5%)"
            ),
            Self::NoRule(w) => {
                write!(f, "inject: '{w}' has no nth=, every=, probability= or sweep=")
            }
            Self::ScopeTooLong(s) => {
                write!(f, "inject: scope '{s}' is longer than {SCOPE_NAME_MAX} bytes")
            }
            Self::BadSeed(s) => write!(f, "inject_seed: '{s}' is not a number"),
            Self::TooManyRules => write!(f, "inject: more than {MAX_RULES} rules"),
            Self::BadSweep(w) => write!(
                f,
                "inject: '{w}': sweep=FROM..TO[,step=S] stands alone, with @programs or @NAME, in one word a boot"
            ),
        }
    }
}

fn number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// `0.05`, `5%` or `1` as parts per million.
fn probability_ppm(text: &str) -> Option<u32> {
    let (text, scale) = match text.strip_suffix('%') {
        Some(t) => (t, 10_000u64),
        None => (text, 1_000_000u64),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.len() > 6 {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut frac_ppm = 0u64;
    for (i, digit) in frac.bytes().enumerate() {
        if !digit.is_ascii_digit() {
            return None;
        }
        frac_ppm += u64::from(digit - b'0') * 10u64.pow(5 - i as u32);
    }
    let ppm = whole.checked_mul(scale)? + frac_ppm * scale / 1_000_000;
    (ppm <= 1_000_000).then_some(ppm as u32)
}

/// Parses the value of one `inject=` word.
pub fn parse_rule(value: &str) -> Result<Rule, InjectError<'_>> {
    let (body, scope) = match value.split_once('@') {
        Some((body, "programs")) => (body, Scope::Programs),
        Some((body, name)) => {
            if name.len() > SCOPE_NAME_MAX || name.is_empty() {
                return Err(InjectError::ScopeTooLong(name));
            }
            let mut buf = [0u8; SCOPE_NAME_MAX];
            buf[..name.len()].copy_from_slice(name.as_bytes());
            (body, Scope::Program { name: buf, len: name.len() })
        }
        None => (value, Scope::Boot),
    };
    let (point, rules) = body.split_once(':').unwrap_or((body, ""));
    let point = Point::by_name(point).ok_or(InjectError::UnknownPoint(point))?;
    let mut rule =
        Rule { point, nth: 0, every: 0, times: 0, probability_ppm: 0, sweep: None, scope };
    let mut step = None;
    for part in rules.split(',').filter(|p| !p.is_empty()) {
        let bad = InjectError::BadRule(part);
        let (key, val) = part.split_once('=').ok_or(bad)?;
        match key {
            "nth" => rule.nth = number(val).filter(|&n| n > 0).ok_or(bad)?,
            "every" => rule.every = number(val).filter(|&n| n > 0).ok_or(bad)?,
            "times" => rule.times = number(val).filter(|&n| n > 0).ok_or(bad)?,
            "probability" => rule.probability_ppm = probability_ppm(val).ok_or(bad)?,
            "sweep" => {
                let (from, to) = val.split_once("..").ok_or(bad)?;
                let (from, to) = (number(from).ok_or(bad)?, number(to).ok_or(bad)?);
                if from == 0 || to < from {
                    return Err(bad);
                }
                rule.sweep = Some(Sweep { from, to, step: 1 });
            }
            "step" => step = Some(number(val).filter(|&n| n > 0).ok_or(bad)?),
            _ => return Err(bad),
        }
    }
    match (&mut rule.sweep, step) {
        (Some(sweep), step) => {
            let alone = rule.nth == 0
                && rule.every == 0
                && rule.times == 0
                && rule.probability_ppm == 0
                && rule.scope != Scope::Boot;
            if !alone {
                return Err(InjectError::BadSweep(value));
            }
            sweep.step = step.unwrap_or(1);
        }
        (None, Some(_)) => return Err(InjectError::BadSweep(value)),
        (None, None) => {}
    }
    if rule.nth == 0 && rule.every == 0 && rule.probability_ppm == 0 && rule.sweep.is_none() {
        return Err(InjectError::NoRule(value));
    }
    Ok(rule)
}

/// Parses `inject_seed=`.
pub fn parse_seed(value: &str) -> Result<u64, InjectError<'_>> {
    number(value).ok_or(InjectError::BadSeed(value))
}

/// Rules one boot can hold.
pub const MAX_RULES: usize = 8;

/// All `inject=` and `inject_seed=` words of a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub rules: [Option<Rule>; MAX_RULES],
    pub seed: Option<u64>,
}

impl Config {
    pub fn parse(cmdline: &str) -> Result<Config, InjectError<'_>> {
        let mut config = Config { rules: [None; MAX_RULES], seed: None };
        let mut count = 0;
        for word in cmdline.split_ascii_whitespace() {
            if let Some(value) = word.strip_prefix("inject=") {
                let rule = parse_rule(value)?;
                if rule.sweep.is_some() && config.sweep().is_some() {
                    return Err(InjectError::BadSweep(value));
                }
                let slot = config.rules.get_mut(count).ok_or(InjectError::TooManyRules)?;
                *slot = Some(rule);
                count += 1;
            } else if let Some(value) = word.strip_prefix("inject_seed=") {
                config.seed = Some(parse_seed(value)?);
            }
        }
        Ok(config)
    }

    pub fn is_empty(&self) -> bool {
        self.rules[0].is_none()
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().flatten()
    }

    /// The one rule with `sweep=`, if any.
    pub fn sweep(&self) -> Option<&Rule> {
        self.rules().find(|r| r.sweep.is_some())
    }
}

/// Counts and failures of one point in its current scope.
struct PointState {
    calls: AtomicU64,
    failed: AtomicU64,
    /// The first failed call of the scope (0: none).
    first_failed: AtomicU64,
    /// Failures since the current (or last) program started, whatever the scope.
    run_failed: AtomicU64,
    /// The first of them, as the scope numbers calls (0: none).
    run_first: AtomicU64,
    /// The call a `sweep=` rule fails in this run (see [`Injector::set_position`]).
    position: AtomicU64,
}

/// The injector the kernel consults: configured once at boot, then only counted.
pub struct Injector {
    enabled: AtomicBool,
    /// Whether the rules' scope includes the code running now (a program scope: only while it
    /// runs).
    active: [AtomicBool; POINT_COUNT],
    config: spin::Once<Config>,
    points: [PointState; POINT_COUNT],
    rng: AtomicU64,
    /// The seed the generator restarts from: at boot, and at each program's start mixed with its
    /// name, so that a program's failures replay the same alone or in the whole suite.
    seed: AtomicU64,
    /// Failures since the last [`Injector::take_fired`]: a syscall that fails after one
    /// reports it.
    pending: AtomicU64,
}

impl Injector {
    pub const fn new() -> Self {
        Injector {
            enabled: AtomicBool::new(false),
            active: [const { AtomicBool::new(false) }; POINT_COUNT],
            config: spin::Once::new(),
            points: [const {
                PointState {
                    calls: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    first_failed: AtomicU64::new(0),
                    run_failed: AtomicU64::new(0),
                    run_first: AtomicU64::new(0),
                    position: AtomicU64::new(0),
                }
            }; POINT_COUNT],
            rng: AtomicU64::new(0),
            seed: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        }
    }

    /// Takes the configuration (once); boot-scoped rules are active from now on.
    pub fn configure(&self, config: Config, seed: u64) {
        let config = *self.config.call_once(|| config);
        self.seed.store(seed, Ordering::Relaxed);
        self.reseed(seed);
        for rule in config.rules() {
            if rule.scope == Scope::Boot {
                self.active[rule.point as usize].store(true, Ordering::Relaxed);
            }
        }
        self.enabled.store(!config.is_empty(), Ordering::Release);
    }

    pub fn config(&self) -> Option<&Config> {
        self.config.get()
    }

    fn rule(&self, point: Point) -> Option<&Rule> {
        self.config.get()?.rules().find(|r| r.point == point)
    }

    /// A program starts (`Some(name)`) or ends (`None`): program-scoped counters restart.
    pub fn enter_program(&self, program: Option<&str>) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        if let Some(name) = program {
            // FNV-1a of the name, mixed into the seed.
            let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            self.reseed(self.seed.load(Ordering::Relaxed) ^ hash);
        }
        for (_, point) in Point::ALL {
            if program.is_some() {
                self.points[point as usize].run_failed.store(0, Ordering::Relaxed);
                self.points[point as usize].run_first.store(0, Ordering::Relaxed);
            }
            let Some(rule) = self.rule(point) else { continue };
            if rule.scope == Scope::Boot {
                continue;
            }
            let state = &self.points[point as usize];
            if program.is_some() {
                state.calls.store(0, Ordering::Relaxed);
                state.failed.store(0, Ordering::Relaxed);
                state.first_failed.store(0, Ordering::Relaxed);
            }
            self.active[point as usize].store(rule.scope.matches(program), Ordering::Relaxed);
        }
        self.pending.store(0, Ordering::Relaxed);
    }

    fn reseed(&self, seed: u64) {
        // xorshift needs a non-zero state; distinct seeds give distinct states.
        let state = (seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self.rng.store(state.max(1), Ordering::Relaxed);
    }

    /// Whether this call of `point` fails.
    #[inline]
    pub fn fail(&self, point: Point) -> bool {
        if !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        self.decide(point)
    }

    #[inline(never)]
    fn decide(&self, point: Point) -> bool {
        if !self.active[point as usize].load(Ordering::Relaxed) {
            return false;
        }
        let Some(rule) = self.rule(point) else { return false };
        let state = &self.points[point as usize];
        let call = state.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let draw = if rule.probability_ppm != 0 { self.draw() % 1_000_000 } else { 0 };
        let swept;
        let rule = match rule.sweep {
            Some(_) => {
                swept = Rule { nth: state.position.load(Ordering::Relaxed), ..*rule };
                &swept
            }
            None => rule,
        };
        if !rule.decides(call, state.failed.load(Ordering::Relaxed), draw as u32) {
            return false;
        }
        state.failed.fetch_add(1, Ordering::Relaxed);
        let _ = state.first_failed.compare_exchange(0, call, Ordering::Relaxed, Ordering::Relaxed);
        state.run_failed.fetch_add(1, Ordering::Relaxed);
        let _ = state.run_first.compare_exchange(0, call, Ordering::Relaxed, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The swept rule's position for the runs that follow: it fails call `nth` of each.
    pub fn set_position(&self, point: Point, nth: u64) {
        self.points[point as usize].position.store(nth, Ordering::Relaxed);
    }

    /// The rule with `sweep=`, if the command line has one.
    pub fn sweep(&self) -> Option<&Rule> {
        self.config.get()?.sweep()
    }

    /// The next number of the seeded generator (xorshift64*), e.g. a batch position.
    pub fn draw(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11
    }

    /// Failures injected since the last call (a syscall's result reports them).
    pub fn take_fired(&self) -> u64 {
        if !self.enabled.load(Ordering::Relaxed) {
            return 0;
        }
        self.pending.swap(0, Ordering::Relaxed)
    }

    /// Calls, failures and the first failed call of `point` in its current scope.
    pub fn counts(&self, point: Point) -> (u64, u64, u64) {
        let s = &self.points[point as usize];
        (
            s.calls.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
            s.first_failed.load(Ordering::Relaxed),
        )
    }

    /// Failures of `point` since the last program started, and the first failed call.
    pub fn run_counts(&self, point: Point) -> (u64, u64) {
        let s = &self.points[point as usize];
        (s.run_failed.load(Ordering::Relaxed), s.run_first.load(Ordering::Relaxed))
    }

    /// The first point that failed since the last program started, with its first failed call.
    pub fn first_run_failure(&self) -> Option<(Point, u64)> {
        self.config.get()?.rules().find_map(|rule| {
            let (failed, first) = self.run_counts(rule.point);
            (failed != 0).then_some((rule.point, first))
        })
    }

    /// Whether any rule exists.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }
}

impl Default for Injector {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's one injector (host tests build their own).
pub static INJECTOR: Injector = Injector::new();

/// Whether this call of `point` fails (see the module doc). Off: one branch.
#[inline(always)]
pub fn fail(point: Point) -> bool {
    INJECTOR.fail(point)
}

/// The crash report's note (registered at boot when a rule is armed): the failure injected
/// since the current program, or the boot, started.
pub fn crash_note(out: &mut dyn fmt::Write) {
    if let Some((point, call)) = INJECTOR.first_run_failure() {
        let _ = writeln!(out, "    injected: {} failure at call {call}", point.name());
    }
}

/// What one program run made of its injected failures, for the sweep's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The program was killed by the failure.
    Killed,
    /// A syscall returned an errno (or the program could not start).
    Errno,
    /// The program ran as expected.
    NoEffect,
}

impl Effect {
    pub fn word(self) -> &'static str {
        match self {
            Effect::Killed => "killed",
            Effect::Errno => "errno",
            Effect::NoEffect => "no-effect",
        }
    }
}

/// Records a failed syscall after an injected failure (see [`Injector::take_fired`]).
static ERRNO_AFTER_INJECTION: AtomicU64 = AtomicU64::new(0);

/// The syscall path reports each result: an error right after an injected failure is the
/// failure's errno. Off: one branch.
#[inline]
pub fn syscall_result(errno: Option<i64>) {
    if INJECTOR.take_fired() != 0 {
        if let Some(errno) = errno {
            let _ = ERRNO_AFTER_INJECTION.compare_exchange(
                0,
                errno as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// A syscall that reports failure without an errno (brk keeps the old break) says so with the
/// errno Linux documents for it, so the run counts as an errno after the injected failure.
pub fn refused_without_errno(errno: i64) {
    syscall_result(Some(errno));
}

/// The first errno a syscall returned after an injected failure in this run (0: none), reset.
pub fn take_errno() -> u64 {
    ERRNO_AFTER_INJECTION.swap(0, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_scopes() {
        let r = parse_rule("frame:nth=3@cow_write").unwrap();
        assert_eq!((r.point, r.nth, r.every, r.times), (Point::Frame, 3, 0, 0));
        assert!(r.scope.matches(Some("cow_write")) && !r.scope.matches(Some("hello")));
        assert!(!r.scope.matches(None));
        let r = parse_rule("mmu_update:every=2,times=3@programs").unwrap();
        assert_eq!((r.every, r.times, r.scope), (2, 3, Scope::Programs));
        assert_eq!(parse_rule("heap:probability=5%").unwrap().probability_ppm, 50_000);
        assert_eq!(parse_rule("heap:probability=0.25").unwrap().probability_ppm, 250_000);
        assert_eq!(parse_rule("heap:probability=1").unwrap().probability_ppm, 1_000_000);
        assert_eq!(parse_rule("heap:nth=1").unwrap().scope, Scope::Boot);
    }

    #[test]
    fn bad_words_are_named() {
        assert_eq!(parse_rule("frames:nth=1"), Err(InjectError::UnknownPoint("frames")));
        assert_eq!(parse_rule("frame:nth=0"), Err(InjectError::BadRule("nth=0")));
        assert_eq!(parse_rule("frame:n=1"), Err(InjectError::BadRule("n=1")));
        assert_eq!(parse_rule("frame:probability=2"), Err(InjectError::BadRule("probability=2")));
        assert_eq!(parse_rule("frame:times=2"), Err(InjectError::NoRule("frame:times=2")));
        assert_eq!(parse_rule("frame"), Err(InjectError::NoRule("frame")));
        assert!(InjectError::UnknownPoint("x").to_string().contains("update_va_mapping"));
        assert_eq!(Config::parse("inject_seed=x"), Err(InjectError::BadSeed("x")));
    }

    #[test]
    fn nth_every_times_and_probability_decide() {
        let rule = |s| parse_rule(s).unwrap();
        let fails = |r: Rule, n: u64| -> Vec<u64> {
            let mut failed = 0;
            (1..=n)
                .filter(|&c| {
                    let f = r.decides(c, failed, 999_999);
                    failed += u64::from(f);
                    f
                })
                .collect()
        };
        assert_eq!(fails(rule("frame:nth=3"), 10), vec![3]);
        assert_eq!(fails(rule("frame:every=4"), 12), vec![4, 8, 12]);
        assert_eq!(fails(rule("frame:every=2,times=2"), 12), vec![2, 4]);
        assert_eq!(fails(rule("frame:probability=1"), 3), vec![1, 2, 3]);
        assert!(!rule("frame:probability=0.5").decides(1, 0, 500_000));
        assert!(rule("frame:probability=0.5").decides(1, 0, 499_999));
    }

    #[test]
    fn a_program_scope_counts_from_one_in_each_run_of_that_program() {
        let inj = Injector::new();
        inj.configure(Config::parse("inject=frame:nth=2@b").unwrap(), 7);
        assert!(!inj.fail(Point::Frame) && !inj.fail(Point::Frame), "boot is out of scope");
        for _ in 0..2 {
            inj.enter_program(Some("a"));
            assert!((0..5).all(|_| !inj.fail(Point::Frame)));
            inj.enter_program(Some("b"));
            assert!(!inj.fail(Point::Frame) && inj.fail(Point::Frame) && !inj.fail(Point::Frame));
            assert_eq!(inj.counts(Point::Frame), (3, 1, 2));
            assert_eq!(inj.first_run_failure(), Some((Point::Frame, 2)));
            assert_eq!(inj.take_fired(), 1);
            inj.enter_program(None);
            assert!(!inj.fail(Point::Frame));
        }
    }

    #[test]
    fn the_seed_replays_the_same_failures() {
        let run = |seed| {
            let inj = Injector::new();
            inj.configure(Config::parse("inject=heap:probability=30%").unwrap(), seed);
            (0..64).map(|_| inj.fail(Point::Heap)).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        let in_program = |seed, first: &str| {
            let inj = Injector::new();
            inj.configure(Config::parse("inject=heap:probability=30%@programs").unwrap(), seed);
            inj.enter_program(Some(first));
            for _ in 0..10 {
                inj.fail(Point::Heap);
            }
            inj.enter_program(Some("b"));
            (0..64).map(|_| inj.fail(Point::Heap)).collect::<Vec<_>>()
        };
        assert_eq!(in_program(5, "a"), in_program(5, "other"), "each program replays alone");
        assert_ne!(run(42), run(43));
        let hits = run(42).iter().filter(|&&f| f).count();
        assert!((8..=32).contains(&hits), "{hits} of 64 at 30%");
    }

    #[test]
    fn a_sweep_is_one_scoped_word_of_its_own() {
        let r = parse_rule("frame:sweep=3..40,step=4@programs").unwrap();
        assert_eq!(r.sweep, Some(Sweep { from: 3, to: 40, step: 4 }));
        assert_eq!(parse_rule("heap:sweep=1..1@a").unwrap().sweep.unwrap().step, 1);
        let bad = |w: &'static str| parse_rule(w).unwrap_err();
        assert_eq!(bad("frame:sweep=1..9"), InjectError::BadSweep("frame:sweep=1..9"), "no scope");
        assert_eq!(
            bad("frame:sweep=1..9,nth=2@a"),
            InjectError::BadSweep("frame:sweep=1..9,nth=2@a")
        );
        assert_eq!(bad("frame:step=2,nth=2@a"), InjectError::BadSweep("frame:step=2,nth=2@a"));
        assert_eq!(bad("frame:sweep=5..4@a"), InjectError::BadRule("sweep=5..4"));
        assert_eq!(bad("frame:sweep=0..4@a"), InjectError::BadRule("sweep=0..4"));
        assert_eq!(bad("frame:sweep=4@a"), InjectError::BadRule("sweep=4"));
        assert_eq!(
            Config::parse("inject=frame:sweep=1..2@a inject=heap:sweep=1..2@a"),
            Err(InjectError::BadSweep("heap:sweep=1..2@a"))
        );
        let sweep = Sweep { from: 2, to: 9, step: 3 };
        assert_eq!((sweep.next(2), sweep.next(5), sweep.next(8)), (Some(5), Some(8), None));
        assert_eq!(Sweep { from: 1, to: u64::MAX, step: 2 }.next(u64::MAX - 1), None);
    }

    #[test]
    fn a_sweep_fails_the_set_position_of_each_run() {
        let inj = Injector::new();
        inj.configure(Config::parse("inject=table:sweep=1..9@programs").unwrap(), 1);
        for nth in 1..=3 {
            inj.set_position(Point::Table, nth);
            inj.enter_program(Some("a"));
            let failed: Vec<bool> = (0..4).map(|_| inj.fail(Point::Table)).collect();
            let expected: Vec<bool> = (1..=4).map(|c| c == nth).collect();
            assert_eq!(failed, expected, "position {nth}");
            assert_eq!(inj.first_run_failure(), Some((Point::Table, nth)));
            inj.enter_program(None);
        }
        inj.set_position(Point::Table, 5);
        inj.enter_program(Some("a"));
        assert!((0..4).all(|_| !inj.fail(Point::Table)));
        assert_eq!(inj.first_run_failure(), None, "not reached: the suite moves on");
    }

    #[test]
    fn off_means_no_counting() {
        let inj = Injector::new();
        inj.configure(Config::parse("tests=all").unwrap(), 1);
        assert!(!inj.enabled() && !inj.fail(Point::Frame));
        assert_eq!(inj.counts(Point::Frame), (0, 0, 0));
    }
}
