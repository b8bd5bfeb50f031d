//! dom0's console sink: HYPERVISOR_console_io(CONSOLEIO_write), which lands on Xen's serial line.

use super::console::Sink;
use super::hypercall;

/// Writes through `console_io`. A refused write cannot be reported on the console it failed
/// on, so it is counted instead and the count is printed once a write succeeds again.
pub struct ConsoleIo {
    refused: core::sync::atomic::AtomicU64,
}

pub static CONSOLE_IO: ConsoleIo = ConsoleIo { refused: core::sync::atomic::AtomicU64::new(0) };

impl Sink for ConsoleIo {
    fn write(&self, bytes: &[u8]) {
        use core::sync::atomic::Ordering;
        if hypercall::console_write(bytes).is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let lost = self.refused.swap(0, Ordering::Relaxed);
        if lost != 0 {
            let mut note = [0u8; 64];
            let len = crate::fmt_buf::format_into(
                &mut note,
                format_args!("[console: Xen refused {lost} earlier writes]\n"),
            );
            let _ = hypercall::console_write(&note[..len]);
        }
    }
}
