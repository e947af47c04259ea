//! Property tests: random valid layouts survive write -> read unchanged
//! and satisfy the layout invariants; random damage to valid tables never
//! makes the reader (or the resize/relocate editors) panic or allocate
//! past its bounds.

use kiln_part::{
    read_table, relocate_gpt_backup, resize_partition, Extended, Gpt, GptPartition, Mbr,
    MbrPartition, MbrType, PartitionType,
};
use kiln_units::Guid;
use proptest::prelude::*;

const S: u64 = 512;

/// A primary: (gap before, size) in sectors, type, bootable.
type P = (u64, u64, u8, bool);

/// The extended partition: (gap, EBR-to-partition gap, logicals (gap, size)).
type X = (u64, u64, Vec<(u64, u64)>);

fn mbr_layout() -> impl Strategy<Value = (Vec<P>, Option<X>, u64)> {
    (
        prop::collection::vec(
            (
                0u64..8,
                1u64..64,
                prop::sample::select(vec![0x0c, 0x0e, 0x83, 0x82]),
                any::<bool>(),
            ),
            0..=3,
        ),
        // extended: (gap, gap between EBR and partition, logicals (gap, size)), trailing space
        prop::option::of((
            0u64..8,
            1u64..4,
            prop::collection::vec((0u64..4, 1u64..32), 0..=8),
        )),
        0u64..16,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mbr_round_trip((primaries, ext, tail) in mbr_layout()) {
        let mut mbr = Mbr::new(0x1234);
        let mut cursor = 1; // sectors; the MBR is sector 0
        let mut expect = Vec::new();
        for (i, &(gap, size, ty, boot)) in primaries.iter().enumerate() {
            let start = cursor + gap;
            mbr.push_primary(MbrPartition::new(format!("p{i}"), MbrType(ty), start * S, size * S).bootable(boot));
            expect.push((i as u32 + 1, start, size, ty, boot, false));
            cursor = start + size;
        }
        if let Some((gap, ebr_gap, logicals)) = &ext {
            let ext_start = cursor + gap;
            let mut c = ext_start;
            let mut parts = Vec::new();
            for (j, &(lgap, size)) in logicals.iter().enumerate() {
                let ebr = if j == 0 { ext_start } else { c + lgap };
                let start = ebr + ebr_gap;
                parts.push(MbrPartition::new(format!("l{j}"), MbrType::LINUX, start * S, size * S));
                c = start + size;
            }
            let ext_size = (c - ext_start).max(1) + tail;
            let slot = primaries.len() as u32 + 1;
            expect.push((slot, ext_start, ext_size, 0x0f, false, false));
            for (j, p) in parts.iter().enumerate() {
                expect.push((5 + j as u32, p.start_bytes / S, p.size_bytes / S, 0x83, false, true));
            }
            let mut e = Extended::new(ext_start * S, ext_size * S, ebr_gap * S);
            for p in parts { e = e.logical(p); }
            mbr.push_extended(e);
            cursor = ext_start + ext_size;
        }
        let disk = (cursor + tail + 1) * S;
        let mut img = Vec::new();
        mbr.write_to(&mut img, disk).unwrap();
        img.resize(disk as usize, 0);
        let t = read_table(&img).unwrap();
        let got: Vec<_> = t.partitions.iter().map(|p| {
            let PartitionType::Mbr(MbrType(ty)) = p.partition_type else { panic!() };
            (p.number, p.start_bytes / S, p.size_bytes / S, ty, p.bootable, p.logical)
        }).collect();
        prop_assert_eq!(got, expect);
        // Invariants: inside the disk, non-extended partitions disjoint.
        let real: Vec<_> = t.partitions.iter().filter(|p| !p.is_extended()).collect();
        for (i, a) in real.iter().enumerate() {
            prop_assert!(a.end_bytes() <= disk);
            for b in &real[i + 1..] {
                prop_assert!(a.end_bytes() <= b.start_bytes || b.end_bytes() <= a.start_bytes);
            }
        }
    }

    #[test]
    fn gpt_round_trip(
        parts in prop::collection::vec((0u64..8, 1u64..64, "[a-zA-Z0-9é€-]{0,36}", any::<u64>(), any::<[u8; 16]>()), 0..=12),
        tail in 1u64..8, // at least one usable sector (Gpt requires it)
        disk_seed in any::<[u8; 16]>(),
    ) {
        let mut gpt = Gpt::new(Guid::v4_from_seed(disk_seed));
        let mut cursor = 34;
        let mut expect = Vec::new();
        for (i, (gap, size, name, attrs, seed)) in parts.iter().enumerate() {
            let start = cursor + gap;
            let mut seed = *seed;
            seed[0] = i as u8; // distinct unique GUIDs
            let ty = if i % 2 == 0 { kiln_part::gpt_types::LINUX_FILESYSTEM } else { Guid::from_rfc_bytes(seed) };
            gpt.push(GptPartition::new(name.clone(), ty, Guid::from_rfc_bytes(seed), start * S, size * S).attributes(*attrs));
            expect.push((i as u32 + 1, start, *size, ty, name.clone(), Guid::from_rfc_bytes(seed), *attrs));
            cursor = start + size;
        }
        let disk = (cursor + tail + 33) * S;
        let mut img = Vec::new();
        gpt.write_to(&mut img, disk).unwrap();
        prop_assert_eq!(img.len() as u64, disk);
        let t = read_table(&img).unwrap();
        let got: Vec<_> = t.partitions.iter().map(|p| {
            let PartitionType::Gpt(ty) = p.partition_type else { panic!() };
            (p.number, p.start_bytes / S, p.size_bytes / S, ty, p.name.clone().unwrap(), p.guid.unwrap(), p.attributes)
        }).collect();
        prop_assert_eq!(got, expect);
    }

    #[test]
    fn damaged_tables_never_panic(
        gpt in any::<bool>(),
        edits in prop::collection::vec((0usize..80, 0usize..512, any::<u8>()), 1..16),
        new_size in 1u64..4096,
        number in 0u32..10,
    ) {
        let disk = 2 * 1024 * 1024u64;
        let mut img = Vec::new();
        if gpt {
            let mut g = Gpt::new(Guid::v4_from_seed([1; 16]));
            for i in 0..3u8 {
                g.push(GptPartition::new("x", kiln_part::gpt_types::LINUX_FILESYSTEM, Guid::v4_from_seed([i + 2; 16]), (64 + u64::from(i) * 256) * S, 128 * S));
            }
            g.write_to(&mut img, disk).unwrap();
        } else {
            let mut m = Mbr::new(1);
            m.push_primary(MbrPartition::new("a", MbrType::LINUX, 8 * S, 8 * S));
            let mut e = Extended::new(16 * S, 512 * S, 8 * S);
            for i in 0..4 {
                e = e.logical(MbrPartition::new("l", MbrType::LINUX, (24 + i * 32) * S, 16 * S));
            }
            m.push_extended(e);
            m.write_to(&mut img, disk).unwrap();
            img.resize(disk as usize, 0);
        }
        // Damage sectors where tables live: the first 40 and the last 40
        // (GPT), or the MBR and the EBRs at 16, 48, 80, 112 (MBR).
        let sectors = disk as usize / 512;
        for (sector, byte, value) in edits {
            let lba = if gpt {
                if sector < 40 { sector } else { sectors - 80 + sector }
            } else {
                [0, 16, 48, 80, 112][sector % 5]
            };
            img[lba * 512 + byte] = value;
        }
        if let Ok(t) = read_table(&img) {
            prop_assert!(t.partitions.len() <= 4 + kiln_part::MAX_LOGICAL.max(128));
        }
        let mut copy = img.clone();
        let _ = resize_partition(&mut copy, number, new_size * S);
        prop_assert!(copy.len() as u64 <= disk);
        let mut copy = img.clone();
        let _ = relocate_gpt_backup(&mut copy, 2 * disk);
        prop_assert!(copy.len() as u64 <= 2 * disk);
    }
}
