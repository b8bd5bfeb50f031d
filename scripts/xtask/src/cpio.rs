//! A newc ("070701") cpio writer: the per-run payload the Linux dom0 unpacks over its initramfs.
//!
//! Linux unpacks concatenated archives, so a payload goes after the cached base image
//! (`dom0-base.cpio.gz`), which is zero-padded to 4 bytes first: the kernel looks for a cpio
//! header only at 4-byte offsets and skips the zeros in between. Entries get mtime 0, uid/gid 0
//! and one link, so the same inputs give the same bytes. The one cpio writer of the repository:
//! the shell scripts (scripts/dom0/build.sh, payload.sh) call it as `cargo xtask cpio`
//! ([`command`]).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A directory entry's mode: `drwxr-xr-x`.
pub const DIRECTORY: u32 = 0o040_755;
/// A regular file's mode: `-rw-r--r--`.
pub const FILE: u32 = 0o100_644;

/// An executable's mode: `-rwxr-xr-x`.
pub const EXECUTABLE: u32 = 0o100_755;
/// A character device's mode: `crw-------`.
pub const CHAR_DEVICE: u32 = 0o020_600;
/// A symbolic link's mode: `lrwxrwxrwx`.
pub const SYMLINK: u32 = 0o120_777;
/// The file-type bits of a mode (`S_IFMT`).
const TYPE_MASK: u32 = 0o170_000;

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

    /// Adds a symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, SYMLINK, target.as_bytes());
    }

    /// Adds the contents of the folder `dir` (not the folder itself) under their paths relative
    /// to it: folders, regular files and symbolic links with their own permissions, in byte
    /// order of the paths (as `find | LC_ALL=C sort` lists them), so the same tree gives the same
    /// bytes. Anything else (a device, a socket) is an error.
    pub fn tree(&mut self, dir: &Path) -> Result<(), String> {
        let mut paths = Vec::new();
        walk(dir, &mut PathBuf::new(), &mut paths)?;
        paths
            .sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
        for relative in paths {
            let path = dir.join(&relative);
            let name =
                relative.to_str().ok_or_else(|| format!("{}: not a UTF-8 path", path.display()))?;
            let meta =
                fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mode = meta.mode();
            let kind = meta.file_type();
            if kind.is_dir() {
                self.entry(name, mode, &[]);
            } else if kind.is_file() {
                let data = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                self.entry(name, mode, &data);
            } else if kind.is_symlink() {
                let target =
                    fs::read_link(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| format!("{}: not a UTF-8 link", path.display()))?;
                self.symlink(name, target);
            } else {
                let what = if kind.is_char_device() || kind.is_block_device() {
                    "a device"
                } else {
                    "not a file, folder or link"
                };
                return Err(format!(
                    "{}: {what} (mode {:o}); the tree takes only files, folders and links",
                    path.display(),
                    mode & TYPE_MASK
                ));
            }
        }
        Ok(())
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

/// Every path below `dir`, relative to it, folders included (symbolic links are not followed).
fn walk(dir: &Path, relative: &mut PathBuf, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let here = dir.join(&*relative);
    let entries = fs::read_dir(&here).map_err(|e| format!("{}: {e}", here.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", here.display()))?;
        relative.push(entry.file_name());
        out.push(relative.clone());
        let kind = entry.file_type().map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if kind.is_dir() {
            walk(dir, relative, out)?;
        }
        relative.pop();
    }
    Ok(())
}

/// Usage of `cargo xtask cpio`.
pub const USAGE: &str = "\
cargo xtask cpio -o OUT [--after BASE] MEMBER...
    Writes a newc cpio archive to OUT, the members in the order given:
    --dir NAME                   a folder (drwxr-xr-x)
    --file NAME=PATH             a regular file (-rw-r--r--) with PATH's bytes
    --tree DIR                   DIR's contents with their own modes, sorted by path
    --char-device NAME=MAJOR:MINOR   a character device node (crw-------)
    --after BASE                 OUT starts with BASE's bytes (a compressed initramfs), padded
                                 to 4 bytes, then the archive (Linux unpacks both)
";

/// `cargo xtask cpio`: writes an archive as the arguments say (see [`USAGE`]).
pub fn command(args: &[String]) -> Result<(), String> {
    let mut out = None;
    let mut base = Vec::new();
    let mut members: Vec<(&str, &str)> = Vec::new();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next().map(String::as_str).ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "-o" => out = Some(PathBuf::from(value()?)),
            "--after" => {
                let path = value()?;
                base = fs::read(path).map_err(|e| format!("{path}: {e}"))?;
            }
            "--dir" | "--file" | "--tree" | "--char-device" => members.push((flag, value()?)),
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let out = out.ok_or_else(|| format!("-o OUT is required\n{USAGE}"))?;
    let mut writer = Writer::after(base);
    for (flag, value) in members {
        let pair =
            || value.split_once('=').ok_or_else(|| format!("{flag} takes NAME=..., not {value:?}"));
        match flag {
            "--dir" => writer.directory(value),
            "--file" => {
                let (name, path) = pair()?;
                let data = fs::read(path).map_err(|e| format!("{path}: {e}"))?;
                writer.file(name, &data);
            }
            "--tree" => writer.tree(Path::new(value))?,
            _ => {
                let (name, device) = pair()?;
                let numbers = device
                    .split_once(':')
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                let (major, minor) = numbers
                    .ok_or_else(|| format!("{flag} {value:?}: the device is MAJOR:MINOR"))?;
                writer.char_device(name, major, minor);
            }
        }
    }
    let temporary = out.with_extension("tmp-cpio");
    fs::write(&temporary, writer.finish()).map_err(|e| format!("{}: {e}", temporary.display()))?;
    fs::rename(&temporary, &out).map_err(|e| format!("{}: {e}", out.display()))
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
    fn a_tree_goes_in_sorted_with_its_modes_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("faultline-cpio-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::write(dir.join("bin/busybox"), b"ELF").unwrap();
        fs::set_permissions(dir.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("init"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join("init"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
        fs::create_dir_all(dir.join("bin-extra")).unwrap();
        let mut writer = Writer::after(Vec::new());
        writer.tree(&dir).unwrap();
        writer.char_device("dev/console", 5, 1);
        let bytes = writer.finish();
        let dir_mode = fs::metadata(dir.join("bin")).unwrap().mode();
        fs::remove_dir_all(&dir).unwrap();
        let found: Vec<(String, u32, Vec<u8>)> = entries(&bytes);
        let names: Vec<&str> = found.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["bin", "bin-extra", "bin/busybox", "bin/sh", "init", "dev/console"]);
        assert_eq!(found[0].1, dir_mode);
        assert_eq!(found[2], ("bin/busybox".to_string(), 0o100_755, b"ELF".to_vec()));
        assert_eq!(found[3], ("bin/sh".to_string(), SYMLINK, b"busybox".to_vec()));
        assert_eq!(found[4].1, 0o100_700);
        assert_eq!(found[5].1, CHAR_DEVICE);
    }

    #[test]
    fn the_command_writes_what_its_arguments_say() {
        let dir = std::env::temp_dir().join(format!("faultline-cpio-cmd-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("base"), b"gz!!!").unwrap();
        fs::write(dir.join("guests"), b"/payload/1.cfg 60 live\n").unwrap();
        let arg = |s: &str| s.replace("DIR", dir.to_str().unwrap());
        let args: Vec<String> = [
            "-o",
            "DIR/out",
            "--after",
            "DIR/base",
            "--dir",
            "payload",
            "--file",
            "payload/guests=DIR/guests",
        ]
        .iter()
        .map(|s| arg(s))
        .collect();
        command(&args).unwrap();
        let bytes = fs::read(dir.join("out")).unwrap();
        assert!(command(&["--dir".to_string()]).unwrap_err().starts_with("--dir needs a value"));
        assert!(command(&["-o".to_string(), arg("DIR/x"), "--file".to_string(), "a".to_string()])
            .unwrap_err()
            .contains("NAME="));
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(&bytes[..8], b"gz!!!\0\0\0");
        let found = entries(&bytes[8..]);
        assert_eq!(found[0], ("payload".to_string(), DIRECTORY, vec![]));
        assert_eq!(
            found[1],
            ("payload/guests".to_string(), FILE, b"/payload/1.cfg 60 live\n".to_vec())
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
