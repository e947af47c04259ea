//! Where a normal build writes its disk: the sparse raw file (also the
//! data of a fixed VHD written in place), or, when raw is not delivered,
//! a qcow2 or dynamic VHD written in place
//! ([`kiln_vdisk::Qcow2RandomWriter`], [`kiln_vdisk::VhdDynamicRandomWriter`])
//! so the disk never goes through a raw file first; or, when only
//! sequential outputs are delivered, no file at all: the disk is streamed
//! ([`crate::stream`]). The partition writers see one positional
//! interface.

use crate::stream::{Recorder, Streamer};
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
    /// A streamed build's dry run ([`crate::stream`]).
    Record(&'a mut Recorder),
    /// A streamed build's real run: the disk emitted in order.
    Stream(&'a mut Streamer),
}

impl Sink<'_> {
    /// Completes the image (writes a qcow2's or VHD's tables).
    pub(crate) fn finish(self) -> Result<(), kiln_vdisk::Error> {
        match self {
            Self::Raw(_) => Ok(()),
            Self::Qcow2(w) => w.finish().map(drop),
            Self::VhdDynamic(w) => w.finish().map(drop),
            Self::Record(_) | Self::Stream(_) => Ok(()),
        }
    }

    /// A partition's entries are about to be added.
    pub(crate) fn begin_partition(&mut self) {
        match self {
            Self::Record(r) => r.begin_partition(),
            Self::Stream(s) => s.begin_partition(),
            _ => {}
        }
    }

    /// The partition writer's `finish` (its metadata) is about to run.
    pub(crate) fn begin_finish(&mut self) {
        match self {
            Self::Record(r) => r.begin_finish(),
            Self::Stream(s) => s.begin_finish(),
            _ => {}
        }
    }

    /// The partition is written.
    pub(crate) fn end_partition(&mut self) -> io::Result<()> {
        match self {
            Self::Record(r) => {
                r.end_partition();
                Ok(())
            }
            Self::Stream(s) => s.end_partition(),
            _ => Ok(()),
        }
    }
}

/// Reading back is for the positional sinks; the streamed ones keep no
/// file data.
fn no_read_back() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a streamed build cannot read back what it wrote",
    )
}

impl WriteAt for Sink<'_> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self {
            Self::Raw(f) => f.write_all_at(buf, offset),
            Self::Qcow2(w) => w.write_all_at(buf, offset),
            Self::VhdDynamic(w) => w.write_all_at(buf, offset),
            Self::Record(r) => {
                r.write(buf, offset);
                Ok(())
            }
            Self::Stream(s) => s.write(buf, offset),
        }
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        match self {
            Self::Raw(f) => WriteAt::set_len(f, len),
            Self::Qcow2(w) => w.set_len(len),
            Self::VhdDynamic(w) => w.set_len(len),
            Self::Record(_) | Self::Stream(_) => Ok(()),
        }
    }
}

impl ReadAt for Sink<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Self::Raw(f) => ReadAt::read_exact_at(&**f, buf, offset),
            Self::Qcow2(w) => w.read_exact_at(buf, offset),
            Self::VhdDynamic(w) => w.read_exact_at(buf, offset),
            Self::Record(_) | Self::Stream(_) => Err(no_read_back()),
        }
    }
    fn size(&self) -> io::Result<u64> {
        match self {
            Self::Raw(f) => ReadAt::size(&**f),
            Self::Qcow2(w) => w.size(),
            Self::VhdDynamic(w) => w.size(),
            Self::Record(_) | Self::Stream(_) => Err(no_read_back()),
        }
    }
}
