//! Property: for random extent streams (unaligned, any lengths, some
//! all-zero), every writer's output read back by our reader equals the
//! model disk, and the allocation map covers every non-zero byte.
#![cfg(all(feature = "qcow2", feature = "vmdk", feature = "vhd"))]

use kiln_vdisk::{
    allocated_extents, open, OutputFormat, Qcow2Options, VhdKind, VhdOptions, VirtualDisk,
    VmdkOptions,
};
use proptest::prelude::*;

fn formats() -> Vec<OutputFormat> {
    vec![
        OutputFormat::Raw,
        OutputFormat::Qcow2(Qcow2Options::new()),
        OutputFormat::Qcow2(Qcow2Options::new().compressed(1)),
        OutputFormat::Qcow2(Qcow2Options::new().compressed(1).threads(2)),
        OutputFormat::Vmdk(VmdkOptions::new().compression_level(1)),
        OutputFormat::Vmdk(VmdkOptions::new().empty_grain_tables(false).threads(2)),
        OutputFormat::Vhd(VhdOptions::new()),
        OutputFormat::Vhd(VhdOptions::new().kind(VhdKind::Dynamic)),
    ]
}

/// (gap before, length, fill byte) triples turned into ordered extents.
fn extents() -> impl Strategy<Value = (u64, Vec<(u64, Vec<u8>)>)> {
    (
        1u64..(6 << 20),
        prop::collection::vec(
            (0u64..300_000, 1usize..150_000, any::<u8>(), any::<bool>()),
            0..8,
        ),
    )
        .prop_map(|(size, parts)| {
            let size = size.div_ceil(512) * 512;
            let mut pos = 0u64;
            let mut out = Vec::new();
            for (gap, len, fill, noisy) in parts {
                let off = pos + gap;
                if off >= size {
                    break;
                }
                let len = (len as u64).min(size - off) as usize;
                let data: Vec<u8> = (0..len)
                    .map(|i| {
                        if noisy {
                            (i as u8).wrapping_mul(fill)
                        } else {
                            fill
                        }
                    })
                    .collect();
                pos = off + len as u64;
                out.push((off, data));
            }
            (size, out)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn write_then_read_equals_model((size, exts) in extents()) {
        let mut model = vec![0u8; size as usize];
        for (off, d) in &exts {
            model[*off as usize..*off as usize + d.len()].copy_from_slice(d);
        }
        for fmt in formats() {
            let mut file = Vec::new();
            let mut w = fmt.create_writer(&mut file, size).unwrap();
            for (off, d) in &exts {
                w.write_extent(*off, d).unwrap();
            }
            w.finish().unwrap();
            drop(w);
            let img = open(file).unwrap();
            prop_assert!(img.virtual_size() >= size);
            let mut back = vec![0u8; img.virtual_size() as usize];
            img.read_virtual(&mut back, 0).unwrap();
            prop_assert!(back[..size as usize] == model[..], "{:?}", fmt);
            prop_assert!(back[size as usize..].iter().all(|&b| b == 0));
            let map: Vec<_> = allocated_extents(&img).collect::<Result<_, _>>().unwrap();
            for (i, &b) in model.iter().enumerate() {
                if b != 0 {
                    let i = i as u64;
                    prop_assert!(map.iter().any(|e| e.offset <= i && i < e.end()), "{:?}: byte {} not mapped", fmt, i);
                }
            }
        }
    }
}
