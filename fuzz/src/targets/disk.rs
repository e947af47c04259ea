//! Virtual disk readers (kiln-vdisk: qcow2 incl. overlays' backing names,
//! VMDK sparse/streamOptimized, VHD fixed/dynamic, VHDX, format detection) and
//! partition table readers (kiln-part: MBR with its EBR chain, GPT with
//! its backup).

use kiln_part::read_table;
use kiln_units::ReadAt;
use kiln_vdisk::qcow2::{Backing, BackingDisk};
use kiln_vdisk::{Qcow2Reader, RawReader, VhdReader, VhdxReader, VirtualDisk, VmdkReader};

use super::outcome::{bucket, err_sig, mix};
use crate::target::Target;

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

/// Recomputes the checksums of a VHD footer (at the end, and its copy
/// at 0) and of the dynamic header it points to (VHD spec: one's
/// complement of the byte sum without the field), so mutations reach
/// the code behind the checksum check. Done for half the inputs (by a
/// hash bit), so the check itself stays fuzzed.
fn fix_vhd(data: &mut [u8]) {
    fn fix(d: &mut [u8], at: usize, len: usize, field: usize) {
        let Some(s) = d.get_mut(at..at.saturating_add(len)) else {
            return;
        };
        s[field..field + 4].fill(0);
        let sum = s.iter().fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
        s[field..field + 4].copy_from_slice(&(!sum).to_be_bytes());
    }
    let n = data.len();
    for at in [0, n.saturating_sub(512)] {
        if data.get(at..at + 8) == Some(b"conectix") {
            fix(data, at, 512, 64);
            let off = data
                .get(at + 16..at + 24)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0xff; 8])));
            if let Some(h) = off.and_then(|o| usize::try_from(o).ok()) {
                if data.get(h..h.saturating_add(8)) == Some(b"cxsparse") {
                    fix(data, h, 1024, 36);
                }
            }
            // Both copies may point at the header: fix the footer again
            // in case the header fix changed nothing it covers.
            fix(data, at, 512, 64);
        }
    }
}

fn vhd(data: &[u8]) -> u64 {
    let mut fixed;
    let data = if crate::mutate::fnv(data) & 1 == 0 {
        fixed = data.to_vec();
        fix_vhd(&mut fixed);
        &fixed[..]
    } else {
        data
    };
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
    invariant: "VHD footer (and its copy), dynamic header, BAT and sector bitmaps (checksums \
                recomputed for half the inputs): no panic, no hang, memory bounded",
    run: vhd,
};

/// Recomputes the CRC-32C of both VHDX headers (4 KiB at 64 and 128 KiB)
/// and both region tables (64 KiB at 192 and 256 KiB; MS-VHDX 2.2), for
/// half the inputs, as [`fix_vhd`] does for VHD.
fn fix_vhdx(data: &mut [u8]) {
    for (at, len) in [
        (64 << 10, 4096),
        (128 << 10, 4096),
        (192 << 10, 65536),
        (256 << 10, 65536),
    ] {
        if let Some(s) = data.get_mut(at..at + len) {
            let sum = kiln_vdisk::vhdx::VhdxCrc32c::compute(s, 4);
            s[4..8].copy_from_slice(&sum.0.to_le_bytes());
        }
    }
}

fn vhdx(data: &[u8]) -> u64 {
    let mut fixed;
    let data = if crate::mutate::fnv(data) & 1 == 0 {
        fixed = data.to_vec();
        fix_vhdx(&mut fixed);
        &fixed[..]
    } else {
        data
    };
    match VhdxReader::open(data) {
        Ok(r) => mix(bucket(r.block_size()), walk(&r)),
        Err(e) => err_sig(&e),
    }
}

/// VHDX reader (kiln-vdisk).
pub const VHDX: Target = Target {
    name: "vhdx",
    invariant: "VHDX headers, region tables (CRC-32C recomputed for half the inputs), metadata \
                items and BAT: no panic, no hang, memory bounded",
    run: vhdx,
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

/// Recomputes the CRC32s of the GPT headers at LBA 1 and in the last
/// sector (entry array first, then the header; UEFI 2.10 section 5.3.2),
/// for half the inputs, as [`fix_vhd`] does for VHD.
fn fix_gpt(data: &mut [u8]) {
    let n = data.len();
    for at in [512, n.saturating_sub(512) / 512 * 512] {
        let Some(h) = data.get(at..at + 92) else {
            continue;
        };
        if &h[..8] != b"EFI PART" {
            continue;
        }
        let le32 = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let size = usize::try_from(le32(h, 12)).unwrap_or(0).clamp(92, 512);
        let lba = u64::from_le_bytes(h[72..80].try_into().unwrap_or([0xff; 8]));
        let count = u64::from(le32(h, 80)) * u64::from(le32(h, 84));
        let entries = usize::try_from(lba.saturating_mul(512))
            .ok()
            .zip(usize::try_from(count.min(1 << 20)).ok());
        if let Some(arr) = entries.and_then(|(s, c)| data.get(s..s.checked_add(c)?)) {
            let crc = crc32fast::hash(arr);
            data[at + 88..at + 92].copy_from_slice(&crc.to_le_bytes());
        }
        let Some(hdr) = data.get_mut(at..at + size) else {
            continue;
        };
        hdr[16..20].fill(0);
        let crc = crc32fast::hash(hdr);
        hdr[16..20].copy_from_slice(&crc.to_le_bytes());
    }
}

fn part(data: &[u8]) -> u64 {
    let mut fixed;
    let data = if crate::mutate::fnv(data) & 1 == 0 {
        fixed = data.to_vec();
        fix_gpt(&mut fixed);
        &fixed[..]
    } else {
        data
    };
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
    invariant: "MBR, EBR chains (loops, counts), GPT headers, entry arrays and CRCs (recomputed \
                for half the inputs), backup GPT: no panic, no hang, memory bounded",
    run: part,
};

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_part::Scheme;

    fn seed(path: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(path);
        zstd::decode_all(std::fs::read(p).unwrap().as_slice()).unwrap()
    }

    fn problems(d: &[u8]) -> (bool, bool) {
        match read_table(d).unwrap().scheme {
            Scheme::Gpt {
                primary_problem,
                backup_problem,
                ..
            } => (primary_problem.is_none(), backup_problem.is_none()),
            Scheme::Mbr { .. } => panic!("not a GPT"),
        }
    }

    #[test]
    fn gpt_fixup_makes_mutated_headers_and_entries_valid_again() {
        let mut d = seed("part/gpt-sgdisk.img.zst");
        assert_eq!(problems(&d), (true, true));
        // The same partition name byte in the primary array and in the
        // backup array (33 sectors from the end).
        d[1024 + 56] ^= 0x20;
        let backup_array = d.len() - 33 * 512;
        d[backup_array + 56] ^= 0x20;
        assert!(
            read_table(&d[..]).is_err(),
            "both headers should be refused"
        );
        fix_gpt(&mut d);
        assert_eq!(problems(&d), (true, true));
    }

    #[test]
    fn vhd_fixup_makes_a_mutated_footer_and_header_valid_again() {
        let mut d = seed("vhd/dynamic.vhd.zst");
        assert!(VhdReader::open(&d[..]).is_ok());
        let n = d.len();
        d[n - 512 + 40] ^= 1; // original size
        d[512 + 8 + 8 + 8] ^= 0x80; // a byte in the dynamic header's reserved area
        d[40] ^= 1;
        assert!(VhdReader::open(&d[..]).is_err());
        fix_vhd(&mut d);
        let r = VhdReader::open(&d[..]);
        assert!(r.is_ok(), "{r:?}");
    }
}
