//! A newc ("070701") cpio writer: the per-run payload the Linux dom0 unpacks over its initramfs.
//!
//! Linux unpacks concatenated archives, so a payload goes after the cached base image
//! (`dom0-base.cpio.gz`), which is zero-padded to 4 bytes first: the kernel looks for a cpio
//! header only at 4-byte offsets and skips the zeros in between. Entries get mtime 0, uid/gid 0
//! and one link, so the same inputs give the same bytes (scripts/dom0/cpio.sh writes the same
//! format for the shell scripts).

/// A directory entry's mode: `drwxr-xr-x`.
pub const DIRECTORY: u32 = 0o040_755;
/// A regular file's mode: `-rw-r--r--`.
pub const FILE: u32 = 0o100_644;

/// An executable's mode: `-rwxr-xr-x`.
pub const EXECUTABLE: u32 = 0o100_755;
/// A character device's mode: `crw-------`.
pub const CHAR_DEVICE: u32 = 0o020_600;

/// An archive being written into memory.
#[derive(Debug, Default)]
pub struct Writer {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Writer {
    /// An archive that continues `base` (e.g. a compressed initramfs), padded to 4 bytes.
    pub fn after(base: Vec<u8>) -> Writer {
        let mut writer = Writer { bytes: base, next_inode: 1 };
        writer.pad();
        writer
    }

    /// Adds a directory.
    pub fn directory(&mut self, name: &str) {
        self.entry(name, DIRECTORY, &[]);
    }

    /// Adds a regular file with these contents.
    pub fn file(&mut self, name: &str, data: &[u8]) {
        self.entry(name, FILE, data);
    }

    /// Adds an executable file.
    pub fn executable(&mut self, name: &str, data: &[u8]) {
        self.entry(name, EXECUTABLE, data);
    }

    /// Adds a character device node (e.g. `dev/console`, 5:1, for a Linux initramfs).
    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry_with(name, CHAR_DEVICE, &[], (major, minor));
    }

    /// Ends the archive (the `TRAILER!!!` entry) and returns all the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry_with(name, mode, data, (0, 0));
    }

    fn entry_with(&mut self, name: &str, mode: u32, data: &[u8], (major, minor): (u32, u32)) {
        let size = u32::try_from(data.len()).expect("a cpio member is smaller than 4 GiB");
        let name_size = u32::try_from(name.len() + 1).expect("a short name");
        // magic, then 13 eight-digit hex fields: ino, mode, uid, gid, nlink, mtime, filesize,
        // devmajor, devminor, rdevmajor, rdevminor, namesize, check.
        let fields = [self.next_inode, mode, 0, 0, 1, 0, size, 0, 0, major, minor, name_size, 0];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
        self.next_inode += 1;
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the entries back: (name, mode, data).
    fn entries(bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut at = 0;
        let mut found = Vec::new();
        let align = |n: usize| n.div_ceil(4) * 4;
        loop {
            assert_eq!(&bytes[at..at + 6], b"070701", "a header at {at}");
            let field = |index: usize| {
                let start = at + 6 + index * 8;
                let text = std::str::from_utf8(&bytes[start..start + 8]).unwrap();
                u32::from_str_radix(text, 16).unwrap() as usize
            };
            let (mode, size, name_size) = (field(1), field(6), field(11));
            let name_start = at + 110;
            let name = std::str::from_utf8(&bytes[name_start..name_start + name_size - 1])
                .unwrap()
                .to_string();
            assert_eq!(bytes[name_start + name_size - 1], 0);
            let data_start = align(name_start + name_size);
            let data = bytes[data_start..data_start + size].to_vec();
            at = align(data_start + size);
            if name == "TRAILER!!!" {
                assert_eq!(at, bytes.len());
                return found;
            }
            found.push((name, mode as u32, data));
        }
    }

    #[test]
    fn writes_newc_after_a_padded_base() {
        let mut writer = Writer::after(b"base!".to_vec());
        writer.directory("payload");
        writer.file("payload/guests", b"/payload/xl/faultline.cfg 60 log\n");
        writer.file("payload/empty", b"");
        let bytes = writer.finish();
        assert_eq!(&bytes[..8], b"base!\0\0\0");
        let entries = entries(&bytes[8..]);
        assert_eq!(
            entries,
            vec![
                ("payload".to_string(), DIRECTORY, vec![]),
                (
                    "payload/guests".to_string(),
                    FILE,
                    b"/payload/xl/faultline.cfg 60 log\n".to_vec()
                ),
                ("payload/empty".to_string(), FILE, vec![]),
            ]
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let make = || {
            let mut writer = Writer::after(Vec::new());
            writer.file("a", b"123");
            writer.finish()
        };
        assert_eq!(make(), make());
        assert_eq!(make().len() % 4, 0);
    }
}
