//! Formatting into a fixed byte buffer, for paths that must not take the console lock, and
//! bytes from a program shown so that they cannot drive a terminal.

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

/// Bytes that came from a test program, displayed so that they cannot drive a terminal:
/// printable ASCII stays as it is; every other byte (control characters such as ESC, CR, NUL
/// and DEL, and bytes >= 0x80, where UTF-8 can encode the C1 controls and reordering marks) is
/// written `\xNN`, tab `\t`, CR `\r`, and a backslash `\\` so that the escapes cannot be
/// forged. One byte in, one readable unit out, whatever the input.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while !rest.is_empty() {
            // The longest run of bytes that pass as they are, written in one go.
            let plain = rest.iter().take_while(|b| is_plain(**b)).count();
            let (run, after) = rest.split_at(plain);
            // `run` is printable ASCII, hence UTF-8.
            f.write_str(core::str::from_utf8(run).map_err(|_| fmt::Error)?)?;
            let Some((&byte, after)) = after.split_first() else { break };
            match byte {
                b'\\' => f.write_str("\\\\")?,
                b'\t' => f.write_str("\\t")?,
                b'\r' => f.write_str("\\r")?,
                _ => write!(f, "\\x{byte:02x}")?,
            }
            rest = after;
        }
        Ok(())
    }
}

fn is_plain(byte: u8) -> bool {
    (0x20..0x7f).contains(&byte) && byte != b'\\'
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn control_bytes_are_escaped_and_the_rest_kept() {
        let shown = |bytes: &[u8]| Escaped(bytes).to_string();
        assert_eq!(shown(b"plain text: 1 + 1 = 2"), "plain text: 1 + 1 = 2");
        assert_eq!(
            shown(b"\x1b[1;32mTest result: SUCCESS\x1b[0m\r"),
            "\\x1b[1;32mTest result: SUCCESS\\x1b[0m\\r"
        );
        assert_eq!(shown(b"nul \0 del \x7f tab \t"), "nul \\x00 del \\x7f tab \\t");
        // A forged escape stays distinguishable from a real one.
        assert_eq!(shown(b"\\x1b"), "\\\\x1b");
        // C1 CSI in UTF-8 (U+009B), a right-to-left override (U+202E), a lone 0xff.
        assert_eq!(shown("\u{9b}2J".as_bytes()), "\\xc2\\x9b2J");
        assert_eq!(shown("\u{202e}".as_bytes()), "\\xe2\\x80\\xae");
        assert_eq!(shown(&[0xff]), "\\xff");
        assert!((0..=255u8).all(|b| shown(&[b]).bytes().all(|c| (0x20..0x7f).contains(&c))));
    }

    #[test]
    fn truncates_instead_of_failing() {
        let mut buf = [0u8; 8];
        let len = super::format_into(&mut buf, format_args!("{}-{}", 1234, 56789));
        assert_eq!(&buf[..len], b"1234-567");
    }
}
