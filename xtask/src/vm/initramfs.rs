//! Writes the guest's initramfs: an uncompressed cpio archive in the kernel's "newc" format
//! (see the kernel's Documentation/driver-api/early-userspace/buffer-format.rst).

use std::{fs, path::Path};

/// File type bits of `st_mode`.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// An initramfs being assembled in memory.
#[derive(Default)]
pub struct Initramfs {
    data: Vec<u8>,
    inode: u32,
}

impl Initramfs {
    /// Adds a directory (parents must have been added first).
    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, 0, &[]);
    }

    /// Adds a regular file with the given permission bits.
    pub fn file(&mut self, path: &str, mode: u32, contents: &[u8]) {
        self.entry(path, S_IFREG | mode, 0, contents);
    }

    /// Adds a regular file copied from the host.
    pub fn copy(&mut self, path: &str, mode: u32, host: &Path) -> anyhow::Result<()> {
        let contents =
            fs::read(host).map_err(|err| anyhow::anyhow!("reading {}: {err}", host.display()))?;
        self.file(path, mode, &contents);
        Ok(())
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 0, target.as_bytes());
    }

    /// Adds a character device node.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | mode, (major << 8) | minor, &[]);
    }

    /// Closes the archive and writes it to `dest`.
    pub fn write(mut self, dest: &Path) -> anyhow::Result<()> {
        self.entry("TRAILER!!!", 0, 0, &[]);
        fs::write(dest, &self.data)?;
        Ok(())
    }

    /// One newc record: a 110-byte ASCII header, the NUL-terminated name and the contents, each
    /// padded to four bytes. `rdev` packs major << 8 | minor.
    fn entry(&mut self, path: &str, mode: u32, rdev: u32, contents: &[u8]) {
        let name = path.trim_start_matches('/');
        self.inode += 1;
        let nlink = if mode & S_IFMT == S_IFDIR { 2 } else { 1 };
        let fields = [
            self.inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(contents.len()).expect("initramfs member under 4 GiB"),
            0, // devmajor
            0, // devminor
            rdev >> 8,
            rdev & 0xff,
            u32::try_from(name.len() + 1).expect("short name"),
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            self.data
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(contents);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Initramfs;

    #[test]
    fn records_are_newc_and_four_byte_aligned() {
        let mut archive = Initramfs::default();
        archive.dir("/bin");
        archive.file("/init", 0o755, b"#!/bin/sh\n");
        let dir = std::env::temp_dir().join(format!("xtask-initramfs-{}", std::process::id()));
        archive.write(&dir).unwrap();
        let data = std::fs::read(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert!(data.starts_with(b"070701"));
        assert_eq!(data.len() % 4, 0);
        // Header of "bin": mode 040755, name size 4.
        assert_eq!(&data[14..22], b"000041ed");
        assert_eq!(&data[94..102], b"00000004");
        assert_eq!(&data[110..114], b"bin\0");
        let trailer = data.windows(10).position(|w| w == b"TRAILER!!!");
        assert!(trailer.is_some());
    }
}
