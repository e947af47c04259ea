//! Every board profile and recipe shipped in the repository loads, and
//! the profiles carry the layouts of DESIGN.md.

use kiln_recipe::{Arch, BoardProfile, FsKind, PartSize, Recipe, Role, TableKind};
use kiln_units::{ByteSize, MIB};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn profile(name: &str) -> BoardProfile {
    BoardProfile::load(&repo().join(format!("board-profiles/{name}.toml"))).unwrap()
}

#[test]
fn all_files_load() {
    for dir in ["board-profiles", "recipes"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                if dir == "recipes" {
                    Recipe::load(&p).unwrap_or_else(|e| panic!("{e}"));
                } else {
                    BoardProfile::load(&p).unwrap_or_else(|e| panic!("{e}"));
                }
            }
        }
    }
}

#[test]
fn layouts_match_design() {
    // (profile, table, boot fs, boot type, root size MiB, arch)
    let cases = [
        (
            "nuc",
            TableKind::Mbr,
            FsKind::Fat16,
            0x0e,
            1000,
            Arch::Amd64,
        ),
        (
            "nuc-gpt",
            TableKind::Gpt,
            FsKind::Fat16,
            0x0e,
            1000,
            Arch::Amd64,
        ),
        (
            "fin-cm3",
            TableKind::Mbr,
            FsKind::Fat32,
            0x0c,
            320,
            Arch::Armhf,
        ),
        (
            "fin-cm3plus",
            TableKind::Mbr,
            FsKind::Fat32,
            0x0c,
            320,
            Arch::Armhf,
        ),
    ];
    for (name, table, fs, ty, root_mib, arch) in cases {
        let p = profile(name);
        assert_eq!(p.table, table, "{name}");
        assert_eq!(p.arch, arch, "{name}");
        assert_eq!((p.alignment, p.first_offset), (4 * MIB, 4 * MIB), "{name}");
        let labels: Vec<_> = p.partitions.iter().map(|x| x.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "resin-boot",
                "resin-rootA",
                "resin-rootB",
                "resin-state",
                "resin-data"
            ]
        );
        let boot = &p.partitions[0];
        assert_eq!(
            (boot.role, boot.fs, boot.mbr_type, boot.bootable),
            (Role::Boot, fs, ty, true)
        );
        assert_eq!(boot.size, PartSize::Fixed(ByteSize::mib(40)));
        for r in &p.partitions[1..3] {
            assert_eq!(r.size, PartSize::Fixed(ByteSize::mib(root_mib)), "{name}");
        }
        assert_eq!(p.partitions[3].size, PartSize::Fixed(ByteSize::mib(20)));
        assert_eq!(p.partitions[4].size, PartSize::Auto);
        let logical = table == TableKind::Mbr;
        assert_eq!(
            (p.partitions[3].logical, p.partitions[4].logical),
            (logical, logical)
        );
    }
    let fin = profile("fin-cm3plus");
    let media: Vec<_> = fin.media.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(media, ["8GB", "16GB", "32GB", "64GB"]);
    assert_eq!(fin.ram, Some(ByteSize::mib(1024)));
}
