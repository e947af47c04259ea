//! Where a normal build writes its disk: the sparse raw file (also the
//! data of a fixed VHD written in place), or, when raw is not delivered,
//! a qcow2 or dynamic VHD written in place
//! ([`kiln_vdisk::Qcow2RandomWriter`], [`kiln_vdisk::VhdDynamicRandomWriter`])
//! so the disk never goes through a raw file first. The partition writers
//! see one positional interface.

use kiln_units::{ReadAt, WriteAt};
use kiln_vdisk::{Qcow2RandomWriter, VhdDynamicRandomWriter};
use std::fs::File;
use std::io;

/// The disk being written.
#[derive(Debug)]
pub(crate) enum Sink<'a> {
    /// The sparse raw image file, already sized.
    Raw(&'a mut File),
    /// A qcow2 image, written in place.
    Qcow2(Qcow2RandomWriter<&'a mut File>),
    /// A dynamic VHD, written in place.
    VhdDynamic(VhdDynamicRandomWriter<&'a mut File>),
}

impl Sink<'_> {
    /// Completes the image (writes a qcow2's or VHD's tables).
    pub(crate) fn finish(self) -> Result<(), kiln_vdisk::Error> {
        match self {
            Self::Raw(_) => Ok(()),
            Self::Qcow2(w) => w.finish().map(drop),
            Self::VhdDynamic(w) => w.finish().map(drop),
        }
    }
}

impl WriteAt for Sink<'_> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self {
            Self::Raw(f) => f.write_all_at(buf, offset),
            Self::Qcow2(w) => w.write_all_at(buf, offset),
            Self::VhdDynamic(w) => w.write_all_at(buf, offset),
        }
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        match self {
            Self::Raw(f) => WriteAt::set_len(f, len),
            Self::Qcow2(w) => w.set_len(len),
            Self::VhdDynamic(w) => w.set_len(len),
        }
    }
}

impl ReadAt for Sink<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Self::Raw(f) => ReadAt::read_exact_at(&**f, buf, offset),
            Self::Qcow2(w) => w.read_exact_at(buf, offset),
            Self::VhdDynamic(w) => w.read_exact_at(buf, offset),
        }
    }
    fn size(&self) -> io::Result<u64> {
        match self {
            Self::Raw(f) => ReadAt::size(&**f),
            Self::Qcow2(w) => w.size(),
            Self::VhdDynamic(w) => w.size(),
        }
    }
}
