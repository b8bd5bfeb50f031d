//! Which boot self-test runs: the names `selftest=` takes (testing::selftest runs them).

/// The boot self-tests (issue: boot): each proves one piece of the trap and report path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// Boot, report, power off.
    None,
    /// The in-guest memory tests: demand paging across new L3/L2/L1 tables, a table frame
    /// mapped writable refused by Xen, heap growth (the default).
    Mm,
    /// A read 12 KiB below the stack pointer reaches the guard page below the boot stack: must
    /// produce a crash report naming it. Not a real overflow: once the stack pointer itself is in
    /// the guard, Xen cannot write the exception frame and crashes the domain without a report
    /// (docs/page-fault.md, "A limit of PV").
    StackGuard,
    /// vCPU 1 reads the guard page below its own trap stack (a heap page vCPU 0 unmapped when
    /// it gave vCPU 1 its stacks): must produce a crash report from vCPU 1 naming that guard.
    VcpuStackGuard,
    VcpuCrashWhileConsoleHeld,
    /// vCPU 1 holds the memory manager while vCPU 0 takes a demand fault on a fresh heap page:
    /// the fault must wait for vCPU 1 to let go and be resolved, not be reported as a fault
    /// from inside the memory manager.
    MmHeldElsewhere,
    /// A breakpoint that is handled and resumed: proves the iret path.
    Int3,
    /// Unexpected faults that must produce a crash report.
    InvalidOpcode,
    GeneralProtection,
    NullRead,
    DivideError,
    Panic,
    /// A one-shot timer event wakes a blocked vCPU: proves event channels and the upcall.
    Timer,
    /// A round trip through user mode: iret to ring-3 user mode, syscalls back.
    User,
    /// An NMI sent to ourselves arrives through the NMI callback and is handled and resumed.
    Nmi,
    /// `int $0x80` in the kernel, a vector no exception uses: must produce a crash report.
    SoftwareInterrupt,
    /// A #UD announced at one instruction and raised at another: the expectation must not
    /// swallow it, the crash report must come.
    ExpectedElsewhere,
    /// A burst of console output: 5000 numbered lines, none may be lost (the DomU ring).
    Flood,
}

impl SelfTest {
    pub const ALL: [(&'static str, SelfTest); 18] = [
        ("none", SelfTest::None),
        ("mm", SelfTest::Mm),
        ("stack-guard", SelfTest::StackGuard),
        ("vcpu-stack-guard", SelfTest::VcpuStackGuard),
        ("vcpu-crash-console-held", SelfTest::VcpuCrashWhileConsoleHeld),
        ("mm-held-elsewhere", SelfTest::MmHeldElsewhere),
        ("int3", SelfTest::Int3),
        ("ud", SelfTest::InvalidOpcode),
        ("gp", SelfTest::GeneralProtection),
        ("pf", SelfTest::NullRead),
        ("de", SelfTest::DivideError),
        ("panic", SelfTest::Panic),
        ("timer", SelfTest::Timer),
        ("user", SelfTest::User),
        ("flood", SelfTest::Flood),
        ("nmi", SelfTest::Nmi),
        ("int80", SelfTest::SoftwareInterrupt),
        ("expect-elsewhere", SelfTest::ExpectedElsewhere),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, t)| *t == self).map_or("?", |(n, _)| n)
    }
}
