//! Streaming OVA writer (layout in the module doc).

use kiln_units::WriteAt;
use sha1::{Digest, Sha1};

use crate::error::{Error, Format, Result};
use crate::extent::{DiskWriter, WriteSummary};
use crate::vmdk::VmdkWriter;

use super::ovf::{self, DiskFacts};
use super::tar::{self, TAR_BLOCK};
use super::OvaOptions;

/// The VMDK's part of the archive: positions relative to `base`, written
/// strictly in order and hashed as they pass.
#[derive(Debug)]
struct Window<W> {
    out: W,
    base: u64,
    pos: u64,
    hash: Sha1,
}

fn out_of_order() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "the VMDK inside an OVA must be written front to back",
    )
}

impl<W: WriteAt> WriteAt for Window<W> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        if offset != self.pos {
            return Err(out_of_order());
        }
        self.out.write_all_at(buf, self.base + offset)?;
        self.hash.update(buf);
        self.pos += buf.len() as u64;
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        match len.checked_sub(self.pos) {
            Some(0) => Ok(()),
            Some(n) => {
                let zeros = vec![0u8; usize::try_from(n).map_err(|_| out_of_order())?];
                self.write_all_at(&zeros, self.pos)
            }
            None => Err(out_of_order()),
        }
    }
}

/// Writes an OVA from an ordered extent stream: the disk goes into a
/// streamOptimized VMDK inside the archive as it comes; the descriptor,
/// the VMDK's tar header, the manifest and the end of the archive are
/// written by [`DiskWriter::finish`].
///
/// Memory kept: the VMDK writer's, and the descriptor and manifest text.
#[derive(Debug)]
pub struct OvaWriter<W> {
    options: OvaOptions,
    /// Bytes reserved for the descriptor (a multiple of 512).
    ovf_slot: u64,
    vmdk: Option<VmdkWriter<Window<W>>>,
}

impl<W: WriteAt> OvaWriter<W> {
    /// A writer for a disk of `virtual_size` bytes.
    ///
    /// # Errors
    /// As [`VmdkWriter::new`].
    pub fn new(out: W, virtual_size: u64, options: &OvaOptions) -> Result<Self> {
        let widest = DiskFacts {
            file_size: u64::MAX,
            capacity: u64::MAX,
            populated: u64::MAX,
        };
        let ovf_slot = tar::padded(ovf::render(options, &options.vmdk_name(), widest).len() as u64);
        let base = TAR_BLOCK + ovf_slot + TAR_BLOCK;
        let window = Window {
            out,
            base,
            pos: 0,
            hash: Sha1::new(),
        };
        let vmdk_opts = options.vmdk.clone().extent_file_name(&options.vmdk_name());
        Ok(Self {
            options: options.clone(),
            ovf_slot,
            vmdk: Some(VmdkWriter::new(window, virtual_size, &vmdk_opts)?),
        })
    }

    fn vmdk(&mut self) -> Result<&mut VmdkWriter<Window<W>>> {
        self.vmdk.as_mut().ok_or(Error::AlreadyFinished {
            format: Format::Ova,
        })
    }
}

fn put<W: WriteAt>(out: &mut W, bytes: &[u8], at: u64) -> Result<()> {
    out.write_all_at(bytes, at).map_err(Error::io(at))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl<W: WriteAt> DiskWriter for OvaWriter<W> {
    fn format(&self) -> Format {
        Format::Ova
    }
    fn virtual_size(&self) -> u64 {
        self.vmdk.as_ref().map_or(0, DiskWriter::virtual_size)
    }
    fn write_extent(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.vmdk()?.write_extent(offset, data)
    }

    fn finish(&mut self) -> Result<WriteSummary> {
        let summary = self.vmdk()?.finish()?;
        let Some(vmdk) = self.vmdk.take() else {
            return Err(Error::AlreadyFinished {
                format: Format::Ova,
            });
        };
        let Window {
            mut out,
            base,
            pos: vmdk_len,
            hash,
        } = vmdk.into_inner();
        let o = &self.options;
        let facts = DiskFacts {
            file_size: vmdk_len,
            capacity: summary.virtual_size,
            populated: summary.allocated_bytes,
        };
        let mut desc = ovf::render(o, &o.vmdk_name(), facts).into_bytes();
        // Pad inside the document (trailing whitespace after the root
        // element is allowed by XML 1.0 §2.1) to fill the slot exactly.
        let slot = usize::try_from(self.ovf_slot).unwrap_or(usize::MAX);
        if desc.len() < slot {
            desc.pop();
            desc.resize(slot - 1, b' ');
            desc.push(b'\n');
        }
        let desc_digest = Sha1::digest(&desc);
        put(
            &mut out,
            &tar::header(&o.ovf_name(), self.ovf_slot, o.mtime),
            0,
        )?;
        put(&mut out, &desc, TAR_BLOCK)?;
        put(
            &mut out,
            &tar::header(&o.vmdk_name(), vmdk_len, o.mtime),
            base - TAR_BLOCK,
        )?;
        let mut at = base + vmdk_len;
        let pad = tar::padded(vmdk_len) - vmdk_len;
        put(&mut out, &vec![0u8; usize::try_from(pad).unwrap_or(0)], at)?;
        at += pad;
        let mf = format!(
            "SHA1({})= {}\nSHA1({})= {}\n",
            o.ovf_name(),
            hex(&desc_digest),
            o.vmdk_name(),
            hex(&hash.finalize())
        );
        put(
            &mut out,
            &tar::header(&o.mf_name(), mf.len() as u64, o.mtime),
            at,
        )?;
        at += TAR_BLOCK;
        let mut body = mf.into_bytes();
        body.resize(
            usize::try_from(tar::padded(body.len() as u64)).unwrap_or(0),
            0,
        );
        // The manifest, then the two zero blocks that end the archive.
        body.extend_from_slice(&[0u8; 2 * TAR_BLOCK as usize]);
        put(&mut out, &body, at)?;
        let end = at + body.len() as u64;
        out.set_len(end).map_err(Error::io(end))?;
        Ok(WriteSummary {
            virtual_size: summary.virtual_size,
            file_size: end,
            allocated_bytes: summary.allocated_bytes,
        })
    }
}
