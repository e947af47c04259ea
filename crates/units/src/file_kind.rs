//! [`FileKind`]: the type of a file found where kiln expected another
//! (a regular file to read, a path to replace), for typed errors.

use std::fmt;

/// The type of a file, as `lstat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link (not followed).
    Symlink,
    /// A named pipe: opening it for reading blocks until a writer comes.
    Fifo,
    /// A character device (`/dev/zero`, a tty).
    CharDevice,
    /// A block device (a disk).
    BlockDevice,
    /// A Unix socket.
    Socket,
}

impl FileKind {
    /// The kind of `ft` (from [`std::fs::symlink_metadata`], or
    /// [`std::fs::metadata`] when links are followed).
    pub fn of(ft: std::fs::FileType) -> Self {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_file() {
            Self::Regular
        } else if ft.is_dir() {
            Self::Directory
        } else if ft.is_symlink() {
            Self::Symlink
        } else if ft.is_fifo() {
            Self::Fifo
        } else if ft.is_char_device() {
            Self::CharDevice
        } else if ft.is_block_device() {
            Self::BlockDevice
        } else {
            // The last kind POSIX defines.
            Self::Socket
        }
    }

    /// Its name in errors ("character device").
    pub fn name(self) -> &'static str {
        match self {
            Self::Regular => "regular file",
            Self::Directory => "directory",
            Self::Symlink => "symbolic link",
            Self::Fifo => "FIFO",
            Self::CharDevice => "character device",
            Self::BlockDevice => "block device",
            Self::Socket => "socket",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_real_files() {
        let d = std::env::temp_dir();
        let md = |p: &str| std::fs::symlink_metadata(p).unwrap().file_type();
        assert_eq!(FileKind::of(md("/dev/null")), FileKind::CharDevice);
        assert_eq!(FileKind::of(md("/")), FileKind::Directory);
        assert_eq!(
            FileKind::of(std::fs::symlink_metadata(&d).unwrap().file_type()).name(),
            "directory"
        );
        assert_eq!(FileKind::Fifo.to_string(), "FIFO");
    }
}
