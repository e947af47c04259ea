//! What [`crate::flash`] is given and what it reports: the image source,
//! the options, progress reports and the final report.

use std::io::Read;

use kiln_part::GptRelocation;
use kiln_units::{ReadAt, SectorSize};

/// Where the image bytes come from.
pub enum ImageSource<'a> {
    /// Random access (raw file, a qcow2/vmdk/vhd reader, ...).
    Random(&'a dyn ReadAt),
    /// A sequential stream read once in order (a decompressor).
    Stream(&'a mut dyn Read),
}

impl std::fmt::Debug for ImageSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Random(_) => "ImageSource::Random",
            Self::Stream(_) => "ImageSource::Stream",
        })
    }
}

/// What to do with the holes (unmapped ranges) of the image on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoleMode {
    /// Leave them as they are (fastest; filesystems never read them).
    #[default]
    Skip,
    /// Write zeros.
    Zero,
    /// Discard / punch them ([`crate::FlashTarget::discard`]).
    Discard,
}

/// Phase a progress report belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Writing mapped data.
    Write,
    /// Reading back and verifying.
    Verify,
}

/// A progress report: the CLI derives speed and ETA from successive
/// reports and its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Bytes of mapped data done in this phase.
    pub done_bytes: u64,
    /// Total mapped bytes of this phase (unknown for a stream without a
    /// bmap until its end).
    pub total_bytes: Option<u64>,
}

/// Parameters of [`crate::flash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashOptions {
    pub(crate) holes: HoleMode,
    pub(crate) verify: bool,
    pub(crate) relocate_gpt: bool,
    pub(crate) sector_size: SectorSize,
    pub(crate) chunk_bytes: usize,
    pub(crate) image_size: Option<u64>,
    /// A stream source is a fan-out of a random-access image that
    /// [`crate::flash_many`] re-reads to assign blame when a range fails
    /// verification, so the stream need not be hashed while writing.
    pub(crate) source_rereadable: bool,
    /// Whether [`crate::flash_many`] hashes the whole image.
    pub(crate) image_sha256: bool,
}

impl Default for FlashOptions {
    fn default() -> Self {
        Self {
            holes: HoleMode::Skip,
            verify: true,
            relocate_gpt: true,
            sector_size: SectorSize::S512,
            // 1 MiB, as bmaptool: on Linux 6.x page caches with large
            // folios, 2 and 4 MiB buffered writes measured several times
            // slower than 1 MiB ones (bench/e2e.sh).
            chunk_bytes: 1 << 20,
            image_size: None,
            source_rereadable: false,
            image_sha256: true,
        }
    }
}

impl FlashOptions {
    /// Defaults: skip holes, verify, relocate the GPT, 512-byte sectors,
    /// 1 MiB chunks.
    pub fn new() -> Self {
        Self::default()
    }
    /// What to do with holes.
    pub fn holes(mut self, mode: HoleMode) -> Self {
        self.holes = mode;
        self
    }
    /// Whether to read back and verify (default true).
    pub fn verify(mut self, on: bool) -> Self {
        self.verify = on;
        self
    }
    /// Whether to move the backup GPT to the end of a larger target
    /// (default true).
    pub fn relocate_gpt(mut self, on: bool) -> Self {
        self.relocate_gpt = on;
        self
    }
    /// Logical sector size of the image's partition table (tried first;
    /// the other of 512/4096 is tried when no GPT is found).
    pub fn sector_size(mut self, s: SectorSize) -> Self {
        self.sector_size = s;
        self
    }
    /// Write chunk size in bytes (a multiple of 4096, at least 64 KiB;
    /// default 1 MiB). Memory use is a few times this.
    pub fn chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n;
        self
    }
    /// Whether [`crate::flash_many`] computes the sha256 of the whole
    /// image (default true). With a bmap it is not needed to verify: the
    /// read-back checks every mapped range against the bmap's digest, and
    /// the whole-image hash is one sequential core's worth of work.
    pub fn image_sha256(mut self, on: bool) -> Self {
        self.image_sha256 = on;
        self
    }
    /// Image size in bytes, when neither the bmap nor the source knows it.
    pub fn image_size(mut self, n: u64) -> Self {
        self.image_size = Some(n);
        self
    }
}

/// What [`crate::flash`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashReport {
    /// Image size in bytes.
    pub image_bytes: u64,
    /// Mapped bytes written.
    pub written_bytes: u64,
    /// Hole bytes zeroed or discarded (0 with [`HoleMode::Skip`]).
    pub hole_bytes: u64,
    /// [`HoleMode::Discard`] was asked but the target cannot discard with
    /// guaranteed zeros (`EOPNOTSUPP`), so the holes were written with
    /// zeros instead.
    pub discard_unsupported: bool,
    /// Bytes read back and verified.
    pub verified_bytes: u64,
    /// Number of ranges written (bmap ranges or 64 MiB segments).
    pub ranges: usize,
    /// The GPT relocation, if one was done.
    pub gpt: Option<GptRelocation>,
}
