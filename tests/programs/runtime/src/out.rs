//! Output on stdout and stderr through `write`, and the `println!`/`eprintln!`/`ensure!` macros.

use core::fmt;

use crate::sys;

pub struct Stdout;
pub struct Stderr;

impl fmt::Write for Stdout {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_all(1, s.as_bytes())
    }
}

impl fmt::Write for Stderr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_all(2, s.as_bytes())
    }
}

fn write_all(fd: u64, mut bytes: &[u8]) -> fmt::Result {
    while !bytes.is_empty() {
        match sys::write(fd, bytes) {
            Ok(0) | Err(_) => return Err(fmt::Error),
            Ok(n) => bytes = &bytes[n as usize..],
        }
    }
    Ok(())
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::out::Stdout, format_args!("{}\n", format_args!($($arg)*)));
    }};
}

#[macro_export]
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::out::Stderr, format_args!("{}\n", format_args!($($arg)*)));
    }};
}

/// Checks a condition of a test that should exit 0: if false, says which on stderr and exits 1.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::eprintln!("FAILED {}: {}", stringify!($cond), format_args!($($arg)*));
            $crate::sys::exit(1);
        }
    };
}

/// Checks a condition and carries on: if false, says which on stderr and counts it in `$failed`
/// (for programs that report every failed check before they exit non-zero).
#[macro_export]
macro_rules! check {
    ($failed:ident, $cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::eprintln!("FAILED {}: {}", stringify!($cond), format_args!($($arg)*));
            $failed += 1;
        }
    };
}
