//! What can be flashed: [`FlashTarget`] (files, block devices, memory)
//! and the second handle a read-back thread uses ([`ReadBack`]).

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::num::NonZeroU64;
use std::os::unix::fs::FileTypeExt;

use kiln_units::{ReadAt, WriteAt};

/// A device or file that can be flashed.
pub trait FlashTarget: ReadAt + WriteAt {
    /// Flushes written data to stable storage (`fsync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes `[offset, offset+len)` read as zeros without writing data
    /// (punch a hole in a file; zero-out/discard on a block device).
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Drops cached pages of the range so the next read comes from the
    /// device.
    fn drop_cache(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Capacity in bytes (device size, or current file length).
    fn capacity(&self) -> io::Result<u64>;
    /// Grows a file target to at least `len` bytes; devices are left alone.
    fn grow_to(&mut self, len: u64) -> io::Result<()>;
    /// A second handle on the same target for a thread that flushes and
    /// reads back while writing goes on; `None` (the default) verifies
    /// after writing instead.
    fn read_back(&self) -> Option<Box<dyn ReadBack + Send>> {
        None
    }
}

/// The read-back side of a [`FlashTarget`] (see [`FlashTarget::read_back`]).
pub trait ReadBack: ReadAt {
    /// Waits until everything written so far is on the device (`fdatasync`).
    fn sync_written(&self) -> io::Result<()>;
    /// Drops cached pages of the range, as [`FlashTarget::drop_cache`].
    fn evict(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Hints that `[offset, offset+len)` will be read next (starts the
    /// device reads early); a no-op by default.
    fn prefetch(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

fn fadvise(f: &File, offset: u64, len: u64, advice: rustix::fs::Advice) -> io::Result<()> {
    rustix::fs::fadvise(f, offset, NonZeroU64::new(len), advice).map_err(io::Error::from)
}

impl ReadBack for File {
    fn sync_written(&self) -> io::Result<()> {
        self.sync_data()
    }
    fn evict(&self, offset: u64, len: u64) -> io::Result<()> {
        fadvise(self, offset, len, rustix::fs::Advice::DontNeed)
    }
    fn prefetch(&self, offset: u64, len: u64) -> io::Result<()> {
        fadvise(self, offset, len, rustix::fs::Advice::WillNeed)
    }
}

impl FlashTarget for File {
    fn sync_data(&mut self) -> io::Result<()> {
        self.sync_all()
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::{fallocate, FallocateFlags};
        // On block devices Linux turns this into a zero-out/discard that
        // guarantees zeros; on files it punches a hole.
        fallocate(
            &*self,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )
        .map_err(io::Error::from)
    }
    fn drop_cache(&self, offset: u64, len: u64) -> io::Result<()> {
        fadvise(self, offset, len, rustix::fs::Advice::DontNeed)
    }
    fn capacity(&self) -> io::Result<u64> {
        let md = self.metadata()?;
        if md.file_type().is_block_device() {
            let mut f = self;
            f.seek(SeekFrom::End(0))
        } else {
            Ok(md.len())
        }
    }
    fn grow_to(&mut self, len: u64) -> io::Result<()> {
        let md = self.metadata()?;
        if md.is_file() && md.len() < len {
            self.set_len(len)?;
        }
        Ok(())
    }
    fn read_back(&self) -> Option<Box<dyn ReadBack + Send>> {
        self.try_clone()
            .ok()
            .map(|f| Box::new(f) as Box<dyn ReadBack + Send>)
    }
}

impl FlashTarget for Vec<u8> {
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let zeros = vec![0u8; usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?];
        self.write_all_at(&zeros, offset)
    }
    fn drop_cache(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn capacity(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn grow_to(&mut self, len: u64) -> io::Result<()> {
        if (self.len() as u64) < len {
            WriteAt::set_len(self, len)?;
        }
        Ok(())
    }
}
