//! Virtual disk readers (kiln-vdisk: qcow2 incl. overlays' backing names,
//! VMDK sparse/streamOptimized, VHD fixed/dynamic, format detection) and
//! partition table readers (kiln-part: MBR with its EBR chain, GPT with
//! its backup).

use kiln_part::read_table;
use kiln_units::ReadAt;
use kiln_vdisk::qcow2::{Backing, BackingDisk};
use kiln_vdisk::{Qcow2Reader, RawReader, VhdReader, VirtualDisk, VmdkReader};

use super::{bucket, err_sig, mix, Target};

/// Most bytes one walk reads from a virtual disk.
const MAX_READ: u64 = 8 << 20;
/// Most allocated regions one walk follows.
const MAX_REGIONS: u32 = 4096;

/// Walks the allocation map from the start and reads (up to 64 KiB of)
/// every allocated region, plus the last sector: the whole read path.
fn walk(d: &dyn VirtualDisk) -> u64 {
    let mut h = mix(
        d.virtual_size().count_ones().into(),
        bucket(d.virtual_size()),
    );
    let mut at = 0u64;
    let mut read = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    for _ in 0..MAX_REGIONS {
        let ext = match d.next_allocated(at) {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return mix(h, err_sig(&e)),
        };
        if ext.offset < at || ext.len == 0 {
            // Not an error the reader reports, but a broken contract.
            panic!("next_allocated({at}) went back or stood still: {ext:?}");
        }
        let n = ext.len.min(buf.len() as u64).min(MAX_READ - read);
        let len = usize::try_from(n).unwrap_or(buf.len());
        if let Err(e) = d.read_virtual(&mut buf[..len], ext.offset) {
            return mix(h, err_sig(&e));
        }
        h = mix(h, bucket(ext.len));
        read += n;
        at = ext.offset.saturating_add(ext.len);
        if read >= MAX_READ || at >= d.virtual_size() {
            break;
        }
    }
    let size = d.virtual_size();
    if size >= 512 {
        if let Err(e) = d.read_virtual(&mut buf[..512], size - 512) {
            h = mix(h, err_sig(&e));
        }
    }
    h
}

/// The disk under a fuzzed overlay: 1 MiB of a pattern, in memory.
fn backing_disk(b: &Backing) -> kiln_vdisk::Result<BackingDisk> {
    let raw = RawReader::new(vec![0x5a; 1 << 20])
        .map_err(|source| kiln_vdisk::Error::Io { offset: 0, source })?;
    let _ = (b.name.len(), b.format.as_deref());
    Ok(Box::new(raw))
}

fn qcow2(data: &[u8]) -> u64 {
    let mut open = backing_disk;
    match Qcow2Reader::open_overlay(data, Some(&mut open)) {
        Ok(r) => {
            let b = r.backing().map_or(0, |b| {
                mix(b.name.len() as u64, u64::from(b.format.is_some()))
            });
            mix(b, walk(&r))
        }
        Err(e) => err_sig(&e),
    }
}

/// qcow2 reader (kiln-vdisk).
pub const QCOW2: Target = Target {
    name: "qcow2",
    invariant:
        "qcow2 header, backing name and format extension, L1/L2 tables, compressed clusters: \
                no panic, no hang, memory bounded; every allocated region reads or errs",
    run: qcow2,
};

fn vmdk(data: &[u8]) -> u64 {
    match VmdkReader::open(data) {
        Ok(r) => mix(u64::from(r.is_stream_optimized()), walk(&r)),
        Err(e) => err_sig(&e),
    }
}

/// VMDK reader (kiln-vdisk).
pub const VMDK: Target = Target {
    name: "vmdk",
    invariant:
        "VMDK sparse header, descriptor, grain directory/tables, deflated grains and markers: \
                no panic, no hang, memory bounded",
    run: vmdk,
};

fn vhd(data: &[u8]) -> u64 {
    match VhdReader::open(data) {
        Ok(r) => mix(
            u64::from(r.kind() == kiln_vdisk::VhdKind::Dynamic),
            walk(&r),
        ),
        Err(e) => err_sig(&e),
    }
}

/// VHD reader (kiln-vdisk).
pub const VHD: Target = Target {
    name: "vhd",
    invariant: "VHD footer (and its copy), dynamic header, BAT and sector bitmaps: \
                no panic, no hang, memory bounded",
    run: vhd,
};

fn vdisk_open(data: &[u8]) -> u64 {
    match kiln_vdisk::open(data) {
        Ok(img) => mix(
            crate::mutate::fnv(img.format().to_string().as_bytes()),
            walk(&img),
        ),
        Err(e) => err_sig(&e),
    }
}

/// Format detection then the detected reader (kiln-vdisk `open`).
pub const VDISK_OPEN: Target = Target {
    name: "vdisk-open",
    invariant: "kiln_vdisk::open on any bytes (magic at the start or a VHD footer at the end): \
                no panic, no hang, memory bounded",
    run: vdisk_open,
};

fn part(data: &[u8]) -> u64 {
    let t = match read_table(data) {
        Ok(t) => t,
        Err(e) => return err_sig(&e),
    };
    let mut h = bucket(t.partitions.len() as u64);
    let disk = data.size().unwrap_or(0);
    for p in &t.partitions {
        // Each partition's first and last sector must be readable when the
        // reader says the partition lies inside the disk.
        h = mix(h, u64::from(p.logical) | u64::from(p.bootable) << 1);
        let end = p.start_bytes.checked_add(p.size_bytes);
        if let Some(end) = end.filter(|&e| e <= disk && p.size_bytes >= 512) {
            let mut sec = [0u8; 512];
            let first = data.read_exact_at(&mut sec, p.start_bytes).is_ok();
            let last = data.read_exact_at(&mut sec, end - 512).is_ok();
            h = mix(h, u64::from(first) | u64::from(last) << 1);
        }
    }
    let _ = t.misaligned(4 << 20);
    h
}

/// MBR/EBR and GPT reader (kiln-part).
pub const PART: Target = Target {
    name: "part",
    invariant: "MBR, EBR chains (loops, counts), GPT headers, entry arrays and CRCs, backup GPT: \
                no panic, no hang, memory bounded",
    run: part,
};
