//! `kiln convert`: any supported image (raw, qcow2, VMDK, VHD, VHDX, or a
//! raw image compressed with xz/gz/zst) to raw, qcow2, VMDK, VHD or VHDX,
//! streaming:
//! random-access inputs are read by allocated extent, compressed inputs
//! once in order with all-zero 4 KiB blocks left out.

use crate::deliver::{DiskFormat, Temps};
use crate::Error;
use kiln_artifact::compress::{Compression, Decoder};
use kiln_vdisk::{DiskWriter, OutputFormat};
use std::fs::File;
use std::io::Read;
use std::path::Path;

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Output {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn bad<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// What a conversion produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConvertReport {
    /// Virtual disk size in bytes.
    pub virtual_size: u64,
    /// Output file size in bytes.
    pub file_size: u64,
}

/// Converts `input` to `output` in `format`; `seed` and `timestamp` fix
/// the format identities (VHD UUID and time stamp, VMDK CID). A qcow2
/// overlay's backing file is looked up under `backing`.
pub fn convert(
    input: &Path,
    output: &Path,
    format: DiskFormat,
    seed: [u8; 16],
    timestamp: i64,
    backing: kiln_vdisk::BackingOptions,
) -> Result<ConvertReport, Error> {
    let file = File::open(input).map_err(io(input, "cannot open the image"))?;
    let mut head = [0u8; 8];
    let n = (&file)
        .read(&mut head)
        .map_err(io(input, "cannot read the image"))?;
    let compression = Compression::detect(&head[..n]);
    let opts = match format {
        DiskFormat::Ova => {
            return Err(Error::Image {
                path: output.to_path_buf(),
                reason: "an OVA is a build output (`kiln build --format ova`): its machine comes from the recipe's [vm] and the board".into(),
            })
        }
        DiskFormat::Raw => OutputFormat::Raw,
        DiskFormat::Qcow2 => OutputFormat::Qcow2(kiln_vdisk::Qcow2Options::new()),
        DiskFormat::Vmdk => OutputFormat::Vmdk(
            kiln_vdisk::VmdkOptions::new()
                .cid(u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]])),
        ),
        DiskFormat::Vhd | DiskFormat::VhdDynamic => OutputFormat::Vhd(
            kiln_vdisk::VhdOptions::new()
                .kind(if format == DiskFormat::Vhd {
                    kiln_vdisk::VhdKind::Fixed
                } else {
                    kiln_vdisk::VhdKind::Dynamic
                })
                .unique_id(kiln_units::Guid::v4_from_seed(seed))
                .timestamp_unix(u64::try_from(timestamp).unwrap_or(0)),
        ),
        DiskFormat::Vhdx => OutputFormat::Vhdx(crate::vm_options::vhdx_options(seed)),
        DiskFormat::VmdkSparse => OutputFormat::VmdkSparse(
            kiln_vdisk::VmdkOptions::new()
                .cid(u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]))
                .extent_file_name(&crate::vm_options::file_name(output)),
        ),
    };
    let mut temps = Temps::new();
    let (_, mut out) = temps.create(output)?;
    let summary = if compression == Compression::None {
        let img = kiln_vdisk::open_with_backing(&file, kiln_units::parent_dir(input), backing)
            .map_err(bad(input))?;
        let size = kiln_vdisk::VirtualDisk::virtual_size(&img);
        let mut w = opts.create_writer(&mut out, size).map_err(bad(output))?;
        kiln_vdisk::copy_allocated(&img, &mut w).map_err(bad(input))?;
        let summary = w.finish().map_err(bad(output))?;
        drop(w);
        summary
    } else {
        // The decompressed size is needed up front: a first pass counts it
        // (decompression is cheap next to writing), the second converts.
        let mut size = 0u64;
        let mut dec = Decoder::new(File::open(input).map_err(io(input, "cannot open the image"))?)
            .map_err(bad(input))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = dec
                .read(&mut buf)
                .map_err(io(input, "cannot decompress the image"))?;
            if n == 0 {
                break;
            }
            size += n as u64;
        }
        let mut w = opts.create_writer(&mut out, size).map_err(bad(output))?;
        let mut dec = Decoder::new(File::open(input).map_err(io(input, "cannot open the image"))?)
            .map_err(bad(input))?;
        let mut pos = 0u64;
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = dec
                    .read(&mut buf[filled..])
                    .map_err(io(input, "cannot decompress the image"))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            feed_nonzero(&mut *w, pos, &buf[..filled]).map_err(bad(output))?;
            pos += filled as u64;
        }
        let summary = w.finish().map_err(bad(output))?;
        drop(w);
        summary
    };
    out.sync_all()
        .map_err(io(output, "cannot flush the output"))?;
    temps.commit()?;
    Ok(ConvertReport {
        virtual_size: summary.virtual_size,
        file_size: summary.file_size,
    })
}

/// Sends the non-zero 4 KiB runs of `data` (at disk offset `pos`).
fn feed_nonzero(w: &mut dyn DiskWriter, pos: u64, data: &[u8]) -> kiln_vdisk::Result<()> {
    let mut run_start = None;
    let mut i = 0;
    while i < data.len() {
        let end = (i + 4096).min(data.len());
        let zero = data[i..end].iter().all(|&b| b == 0);
        match (zero, run_start) {
            (false, None) => run_start = Some(i),
            (true, Some(s)) => {
                w.write_extent(pos + s as u64, &data[s..i])?;
                run_start = None;
            }
            _ => {}
        }
        i = end;
    }
    if let Some(s) = run_start {
        w.write_extent(pos + s as u64, &data[s..])?;
    }
    Ok(())
}
