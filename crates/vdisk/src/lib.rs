//! Virtual disk formats for kiln: streaming writers and bounded readers
//! for raw (sparse), qcow2 v3, VMDK streamOptimized, VHD fixed/dynamic and
//! VHDX dynamic.
//!
//! **Writing.** Every writer implements [`DiskWriter`]: it is created with
//! the virtual size, fed the disk as an ordered stream of data extents
//! ([`DiskWriter::write_extent`], offsets increasing, zero regions simply
//! not sent) and closed with [`DiskWriter::finish`]. Writers see the data
//! once, in order, and keep only the small tables their format needs (each
//! writer's doc lists what it keeps), so a 64 GB disk needs a few MiB.
//! [`OutputFormat::create_writer`] picks the writer from options;
//! [`feed_sparse_file`] pumps a sparse raw file into any writer using
//! SEEK_DATA/SEEK_HOLE, and [`feed_read_at`] pumps from any reader.
//! Raw, VHD fixed and VMDK streamOptimized output is produced strictly
//! front to back, so [`SequentialWriter`] can feed it straight into a pipe,
//! compressor or hasher; qcow2 and VHD dynamic need a seekable target.
//! [`Qcow2RandomWriter`] and [`VhdDynamicRandomWriter`] take positional
//! writes in any order instead (a [`kiln_units::WriteAt`] over the virtual
//! disk), for builders that cannot produce their disk front to back.
//!
//! **Reading.** [`open`] detects the format by its magic and returns an
//! [`Image`] that implements [`kiln_units::ReadAt`] over the *virtual*
//! contents (zeros where unallocated) and [`VirtualDisk`] (allocation map,
//! see [`allocated_extents`]). Every count and offset read from the file is
//! bounds-checked before use; hostile input yields [`Error`], never a
//! panic or an allocation beyond the documented bounds.
//!
//! Specifications (cited per module, with offset tables): QEMU
//! `docs/interop/qcow2.txt` ([`qcow2`]), VMware "Virtual Disk Format 1.1"
//! ([`vmdk`]), Microsoft "Virtual Hard Disk Image Format Specification"
//! ([`vhd`]), Microsoft "[MS-VHDX]" ([`vhdx`]), DMTF DSP0243 OVF ([`ova`]).
//!
//! ```
//! use kiln_vdisk::{open, DiskWriter, OutputFormat, Qcow2Options, VirtualDisk};
//! let mut file = Vec::new();
//! let mut w = OutputFormat::Qcow2(Qcow2Options::new()).create_writer(&mut file, 1 << 20)?;
//! w.write_extent(4096, b"hello")?;
//! w.finish()?;
//! drop(w);
//! let img = open(file)?;
//! let mut buf = [0u8; 5];
//! img.read_virtual(&mut buf, 4096)?;
//! assert_eq!(&buf, b"hello");
//! # Ok::<(), kiln_vdisk::Error>(())
//! ```
//!
//! # Errors
//! One [`Error`] type: [`Error::Io`] (with the file offset),
//! [`Error::Corrupt`] and [`Error::Unsupported`] for input images, and
//! [`Error::ExtentOutOfOrder`], [`Error::SizeNotSupported`],
//! [`Error::AlreadyFinished`], [`Error::ReadOutOfRange`] for requests.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

// Field helpers and the cluster assembler serve the format modules, all
// of which may be compiled out.
mod bytes;
#[cfg_attr(
    not(any(feature = "qcow2", feature = "vmdk", feature = "vhd", feature = "vhdx")),
    allow(dead_code)
)]
mod error;
#[cfg_attr(
    not(any(feature = "qcow2", feature = "vmdk", feature = "vhd", feature = "vhdx")),
    allow(dead_code)
)]
mod extent;
#[cfg(any(feature = "qcow2", feature = "vmdk"))]
mod parallel;
mod source;
mod stream;

#[cfg(feature = "qcow2")]
mod backing;
#[cfg(feature = "ova")]
pub mod ova;
#[cfg(feature = "qcow2")]
pub mod qcow2;
pub mod raw;
#[cfg(feature = "vhd")]
pub mod vhd;
#[cfg(feature = "vhdx")]
pub mod vhdx;
#[cfg(feature = "vmdk")]
pub mod vmdk;

#[cfg(feature = "qcow2")]
pub use backing::BackingOptions;
pub use error::{Error, Format, Result};
pub use extent::{DiskWriter, Extent, WriteSummary};
#[cfg(feature = "ova")]
pub use ova::{Firmware, OvaOptions, OvaWriter};
#[cfg(feature = "qcow2")]
pub use qcow2::{Backing, BackingDisk, Qcow2Options, Qcow2RandomWriter, Qcow2Reader, Qcow2Writer};
pub use raw::{RawReader, RawWriter};
pub use source::{
    allocated_extents, copy_allocated, feed_read_at, feed_sparse_file, AllocatedExtents,
    DataRegions, NoHoles, VirtualDisk, PUMP_BUFFER, ZERO_SKIP_BLOCK,
};
pub use stream::SequentialWriter;
#[cfg(feature = "vhd")]
pub use vhd::{VhdDynamicRandomWriter, VhdKind, VhdOptions, VhdReader, VhdWriter};
#[cfg(feature = "vhdx")]
pub use vhdx::{VhdxOptions, VhdxReader, VhdxWriter};
#[cfg(feature = "vmdk")]
pub use vmdk::{VmdkAdapter, VmdkOptions, VmdkReader, VmdkSparseWriter, VmdkWriter};

use std::io;

use kiln_units::{ReadAt, WriteAt};

/// The output format and its options, as the pipeline selects it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputFormat {
    /// Sparse raw image.
    Raw,
    /// qcow2 v3.
    #[cfg(feature = "qcow2")]
    Qcow2(Qcow2Options),
    /// VMDK streamOptimized.
    #[cfg(feature = "vmdk")]
    Vmdk(VmdkOptions),
    /// VMDK monolithicSparse.
    #[cfg(feature = "vmdk")]
    VmdkSparse(VmdkOptions),
    /// VHD fixed or dynamic.
    #[cfg(feature = "vhd")]
    Vhd(VhdOptions),
    /// VHDX dynamic.
    #[cfg(feature = "vhdx")]
    Vhdx(VhdxOptions),
    /// OVA package.
    #[cfg(feature = "ova")]
    Ova(OvaOptions),
}

impl OutputFormat {
    /// A writer of this format onto `out` for a disk of `virtual_size` bytes.
    ///
    /// # Errors
    /// [`Error::SizeNotSupported`] when the format cannot hold the size;
    /// [`Error::Io`] if writing the leading metadata fails.
    pub fn create_writer<'a, W: WriteAt + 'a>(
        &self,
        out: W,
        virtual_size: u64,
    ) -> Result<Box<dyn DiskWriter + 'a>> {
        Ok(match self {
            OutputFormat::Raw => Box::new(RawWriter::new(out, virtual_size)),
            #[cfg(feature = "qcow2")]
            OutputFormat::Qcow2(o) => Box::new(Qcow2Writer::new(out, virtual_size, o)?),
            #[cfg(feature = "vmdk")]
            OutputFormat::Vmdk(o) => Box::new(VmdkWriter::new(out, virtual_size, o)?),
            #[cfg(feature = "vmdk")]
            OutputFormat::VmdkSparse(o) => Box::new(VmdkSparseWriter::new(out, virtual_size, o)?),
            #[cfg(feature = "vhd")]
            OutputFormat::Vhd(o) => Box::new(VhdWriter::new(out, virtual_size, o)?),
            #[cfg(feature = "vhdx")]
            OutputFormat::Vhdx(o) => Box::new(VhdxWriter::new(out, virtual_size, o)?),
            #[cfg(feature = "ova")]
            OutputFormat::Ova(o) => Box::new(OvaWriter::new(out, virtual_size, o)?),
        })
    }
}

/// An opened image of any supported format.
#[derive(Debug)]
#[non_exhaustive]
pub enum Image<R: DataRegions> {
    /// Raw (anything without a known magic).
    Raw(RawReader<R>),
    /// qcow2.
    #[cfg(feature = "qcow2")]
    Qcow2(Qcow2Reader<R>),
    /// VMDK sparse extent.
    #[cfg(feature = "vmdk")]
    Vmdk(VmdkReader<R>),
    /// VHD.
    #[cfg(feature = "vhd")]
    Vhd(VhdReader<R>),
    /// VHDX.
    #[cfg(feature = "vhdx")]
    Vhdx(VhdxReader<R>),
}

/// Opens `src`, detecting the format from its magic: `QFI\xfb` (qcow2),
/// `vhdxfile` (VHDX), `KDMV` (VMDK sparse extent), `conectix` in the last 512 bytes or at 0
/// (VHD; also a last sector that is a VHD footer but for a damaged
/// cookie, which is then refused rather than read as raw), else raw.
///
/// # Errors
/// [`Error::Corrupt`] or [`Error::Unsupported`] for a recognised but bad or
/// unsupported image; [`Error::Io`].
pub fn open<R: DataRegions>(src: R) -> Result<Image<R>> {
    open_inner(src, None)
}

/// Like [`open`], and a qcow2 overlay is read through its backing file: a
/// relative name is taken from `dir` (the overlay's directory, as QEMU
/// does). The backing file must be a regular file and, unless `backing`
/// allows otherwise, inside `dir` (see [`BackingOptions`]). It may be any
/// image [`open`] reads, not another overlay; its recorded format, if any,
/// must be what it is.
///
/// # Errors
/// As [`open`]; [`Error::Backing`] when the backing file cannot be opened,
/// [`Error::BackingOutside`] or [`Error::BackingNotRegular`] when it is
/// refused, [`Error::Unsupported`] for a backing overlay or a format
/// mismatch.
#[cfg(feature = "qcow2")]
pub fn open_with_backing<R: DataRegions>(
    src: R,
    dir: &std::path::Path,
    backing: BackingOptions,
) -> Result<Image<R>> {
    let mut resolve = |b: &qcow2::Backing| -> Result<qcow2::BackingDisk> {
        let file = backing::open_backing(dir, &b.name, backing)?;
        let disk = open(file)?;
        let fmt = disk.format().to_string();
        if let Some(want) = &b.format {
            // QEMU calls VHD "vpc".
            if want != &fmt && !(want == "vpc" && fmt == "vhd") {
                return Err(Error::unsupported(
                    Format::Qcow2,
                    "backing file of another format than the overlay records",
                ));
            }
        }
        Ok(Box::new(disk))
    };
    open_inner(src, Some(&mut resolve))
}

fn open_inner<R: DataRegions>(
    src: R,
    backing: Option<&mut qcow2::OpenBacking<'_>>,
) -> Result<Image<R>> {
    let size = src.size().map_err(Error::io(0))?;
    let mut head = [0u8; 8];
    if size >= 8 {
        src.read_exact_at(&mut head, 0).map_err(Error::io(0))?;
    }
    let mut tail = [0u8; 512];
    if size >= 512 {
        src.read_exact_at(&mut tail, size - 512)
            .map_err(Error::io(size - 512))?;
    }
    #[cfg(feature = "qcow2")]
    if head[..4] == qcow2::QCOW2_MAGIC {
        return Qcow2Reader::open_overlay(src, backing).map(Image::Qcow2);
    }
    #[cfg(feature = "vhdx")]
    if head == *b"vhdxfile" {
        return VhdxReader::open(src).map(Image::Vhdx);
    }
    #[cfg(feature = "vmdk")]
    if head[..4] == vmdk::VMDK4_MAGIC.to_le_bytes() || &head == b"# Disk D" {
        return VmdkReader::open(src).map(Image::Vmdk);
    }
    #[cfg(feature = "vhd")]
    if tail.starts_with(b"conectix") || &head == b"conectix" || vhd::looks_like_footer(&tail) {
        return VhdReader::open(src).map(Image::Vhd);
    }
    let _ = (&head, &tail);
    RawReader::new(src).map(Image::Raw).map_err(Error::io(0))
}

macro_rules! each {
    ($self:ident, $r:ident => $e:expr) => {
        match $self {
            Image::Raw($r) => $e,
            #[cfg(feature = "qcow2")]
            Image::Qcow2($r) => $e,
            #[cfg(feature = "vmdk")]
            Image::Vmdk($r) => $e,
            #[cfg(feature = "vhd")]
            Image::Vhd($r) => $e,
            #[cfg(feature = "vhdx")]
            Image::Vhdx($r) => $e,
        }
    };
}

impl<R: DataRegions> ReadAt for Image<R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_virtual(buf, offset).map_err(io::Error::from)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.virtual_size())
    }
}

impl<R: DataRegions> VirtualDisk for Image<R> {
    fn format(&self) -> Format {
        each!(self, r => r.format())
    }
    fn virtual_size(&self) -> u64 {
        each!(self, r => r.virtual_size())
    }
    fn next_allocated(&self, from: u64) -> Result<Option<Extent>> {
        each!(self, r => r.next_allocated(from))
    }
    fn read_virtual(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        each!(self, r => r.read_virtual(buf, offset))
    }
}
