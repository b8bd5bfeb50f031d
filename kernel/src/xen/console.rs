//! The kernel console: `print!`/`println!` into a line buffer, flushed to whichever sink boot chose.
//!
//! The sink is dom0's `console_io` or a DomU's console ring; callers never know which. Output
//! is buffered per line so that one line costs one sink write (one hypercall on dom0).

use super::vcpu_lock::{running_vcpu, VcpuLock, VcpuLockGuard};
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Where console bytes go. Implementations must not print (they are called with the console
/// lock held) and must deliver or report every byte they are given.
pub trait Sink: Sync {
    fn write(&self, bytes: &[u8]);
    /// Waits (bounded) until everything written has left the guest, e.g. before shutdown.
    fn drain(&self) {}
}

const LINE_CAPACITY: usize = 512;

/// A line buffer in front of a sink.
pub struct Console {
    sink: Option<&'static dyn Sink>,
    line: [u8; LINE_CAPACITY],
    len: usize,
}

impl Console {
    pub const fn new() -> Self {
        Console { sink: None, line: [0; LINE_CAPACITY], len: 0 }
    }

    pub fn set_sink(&mut self, sink: &'static dyn Sink) {
        self.sink = Some(sink);
    }

    pub fn has_sink(&self) -> bool {
        self.sink.is_some()
    }

    /// Appends bytes; each completed line (or a full buffer) goes to the sink.
    pub fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.line[self.len] = byte;
            self.len += 1;
            if byte == b'\n' || self.len == LINE_CAPACITY {
                self.flush();
            }
        }
    }

    /// Sends a partial line to the sink.
    pub fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        if let Some(sink) = self.sink {
            sink.write(&self.line[..self.len]);
            self.len = 0;
        } else if self.len == LINE_CAPACITY {
            // No sink yet: keep the oldest output (the start of the boot log) and drop the rest.
            self.len = LINE_CAPACITY - 1;
        }
    }

    /// Flushes and waits until the sink has delivered everything.
    pub fn drain(&mut self) {
        self.flush();
        if let Some(sink) = self.sink {
            sink.drain();
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// The kernel's one console. Its lock records the vCPU holding it: the crash path may break the
/// lock only when it interrupted a print on its own vCPU.
static CONSOLE: VcpuLock<Console> = VcpuLock::new(Console::new());

/// The crash path's console when another vCPU keeps the lock past [`EMERGENCY_SPINS`]: its own
/// line buffer in front of the same sink (see [`emergency`]).
static STUCK_CONSOLE: spin::Mutex<Console> = spin::Mutex::new(Console::new());

/// No vCPU, for [`GAVE_UP_WAITING`].
const NO_VCPU: usize = usize::MAX;

/// The vCPU whose crash path waited [`EMERGENCY_SPINS`] for the lock in vain ([`NO_VCPU`] when
/// none did).
static GAVE_UP_WAITING: AtomicUsize = AtomicUsize::new(NO_VCPU);

/// How often the crash path tries the lock a print on another vCPU holds (a print holds it for
/// one line; under TCG this is seconds).
const EMERGENCY_SPINS: u64 = 1 << 26;

/// The console, held: the lock of [`CONSOLE`] or of [`STUCK_CONSOLE`].
pub enum ConsoleGuard {
    Console(VcpuLockGuard<'static, Console>),
    Stuck(spin::MutexGuard<'static, Console>),
}

impl Deref for ConsoleGuard {
    type Target = Console;
    fn deref(&self) -> &Console {
        match self {
            ConsoleGuard::Console(guard) => guard,
            ConsoleGuard::Stuck(guard) => guard,
        }
    }
}

impl DerefMut for ConsoleGuard {
    fn deref_mut(&mut self) -> &mut Console {
        match self {
            ConsoleGuard::Console(guard) => guard,
            ConsoleGuard::Stuck(guard) => guard,
        }
    }
}

fn lock() -> ConsoleGuard {
    ConsoleGuard::Console(CONSOLE.lock())
}

/// Holds the console until the guard is dropped, as a print does for one line: for the self-test
/// that makes another vCPU crash while this one holds it. The holder must not print meanwhile
/// (the lock is not reentrant).
pub fn hold() -> ConsoleGuard {
    lock()
}

/// Chooses the sink, once, at boot.
pub fn set_sink(sink: &'static dyn Sink) {
    lock().set_sink(sink);
    STUCK_CONSOLE.lock().set_sink(sink);
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    use fmt::Write;
    let _ = lock().write_fmt(args);
}

/// Flushes any partial line and waits for the sink to deliver it.
pub fn drain() {
    lock().drain();
}

/// Takes the console even if its lock is held: for the crash and panic paths, which must still
/// be heard. A lock this vCPU holds (the crash interrupted its own print) is broken at once. A
/// lock another vCPU holds is waited for, boundedly; if it is still held after that, the holder
/// is stuck and the report goes through [`STUCK_CONSOLE`] to the same sink (its bytes may
/// interleave with the stuck line's, but no two users share one line buffer).
pub fn emergency() -> ConsoleGuard {
    let me = running_vcpu();
    // A crash path that already waited once (its report, then the drain before the shutdown)
    // does not wait again: the holder it waited for is stuck.
    let spins = if GAVE_UP_WAITING.load(Ordering::Acquire) == me { 1 } else { EMERGENCY_SPINS };
    for _ in 0..spins {
        if let Some(guard) = CONSOLE.try_lock() {
            return ConsoleGuard::Console(guard);
        }
        if CONSOLE.holder() == Some(me) {
            // SAFETY: this vCPU holds the lock, so the holder is the print this crash
            // interrupted on this vCPU, and the crash path never returns to it: no other user
            // of the console's line buffer can run while the broken lock's new holder uses it.
            unsafe { CONSOLE.force_unlock() };
        }
        core::hint::spin_loop();
    }
    GAVE_UP_WAITING.store(me, Ordering::Release);
    ConsoleGuard::Stuck(STUCK_CONSOLE.lock())
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::xen::console::_print(format_args!($($arg)*)));
}

#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::xen::console::_print(format_args!("{}\n", format_args!($($arg)*))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Mutex<Vec<Vec<u8>>>);
    impl Sink for Recorder {
        fn write(&self, bytes: &[u8]) {
            self.0.lock().unwrap().push(bytes.to_vec());
        }
    }

    fn recorder() -> &'static Recorder {
        Box::leak(Box::new(Recorder(Mutex::new(Vec::new()))))
    }

    #[test]
    fn one_sink_write_per_line() {
        let rec = recorder();
        let mut console = Console::new();
        console.set_sink(rec);
        console.push(b"hello ");
        console.push(b"world\nsecond");
        assert_eq!(*rec.0.lock().unwrap(), vec![b"hello world\n".to_vec()]);
        console.drain();
        assert_eq!(rec.0.lock().unwrap()[1], b"second".to_vec());
    }

    #[test]
    fn long_lines_are_split_not_lost() {
        let rec = recorder();
        let mut console = Console::new();
        console.set_sink(rec);
        let long = vec![b'x'; LINE_CAPACITY * 2 + 10];
        console.push(&long);
        console.drain();
        let total: usize = rec.0.lock().unwrap().iter().map(Vec::len).sum();
        assert_eq!(total, long.len());
    }

    #[test]
    fn output_before_the_sink_is_kept() {
        let rec = recorder();
        let mut console = Console::new();
        console.push(b"early");
        console.set_sink(rec);
        console.push(b" line\n");
        assert_eq!(*rec.0.lock().unwrap(), vec![b"early line\n".to_vec()]);
    }
}
