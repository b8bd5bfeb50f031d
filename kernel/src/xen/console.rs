//! The kernel console: `print!`/`println!` into a line buffer, flushed to whichever sink boot chose.
//!
//! The sink is dom0's `console_io` or a DomU's console ring; callers never know which. Output
//! is buffered per line so that one line costs one sink write (one hypercall on dom0).

use core::fmt;

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

/// The kernel's one console.
pub static CONSOLE: spin::Mutex<Console> = spin::Mutex::new(Console::new());

/// Chooses the sink, once, at boot.
pub fn set_sink(sink: &'static dyn Sink) {
    CONSOLE.lock().set_sink(sink);
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    use fmt::Write;
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Flushes any partial line and waits for the sink to deliver it.
pub fn drain() {
    CONSOLE.lock().drain();
}

/// Takes the console even if its lock is held: for the crash and panic paths, which may have
/// interrupted a `println!` on this (only) CPU and must still be heard.
pub fn emergency() -> spin::MutexGuard<'static, Console> {
    if CONSOLE.is_locked() {
        // SAFETY: there is one vCPU and the crash path never returns to the interrupted
        // holder, so no other user of the console can observe the broken lock.
        unsafe { CONSOLE.force_unlock() };
    }
    CONSOLE.lock()
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
