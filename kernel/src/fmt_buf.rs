//! Formatting into a fixed byte buffer, for paths that must not take the console lock.

use core::fmt;

struct BufWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for BufWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let take = s.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Formats `args` into `buf`, truncating what does not fit; returns the length written.
pub fn format_into(buf: &mut [u8], args: fmt::Arguments<'_>) -> usize {
    let mut writer = BufWriter { buf, len: 0 };
    let _ = fmt::write(&mut writer, args);
    writer.len
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncates_instead_of_failing() {
        let mut buf = [0u8; 8];
        let len = super::format_into(&mut buf, format_args!("{}-{}", 1234, 56789));
        assert_eq!(&buf[..len], b"1234-567");
    }
}
