//! kiln-base against base images made by the real tools
//! (tests/src/base_fixtures.rs: sfdisk, mkfs.vfat + mcopy, mke2fs -d,
//! dockerd `docker load`, xz/gzip/zstd/zip, qemu-img).

use kiln_base::{
    detect, device_info, extract_inner, flasher_inner, materialize, os_info, sniff, BaseFormat,
    Error, Ext4Super, FsType, Role,
};
use kiln_e2e::base_fixtures::{
    make_base, make_flasher, pack, zip, BaseSpec, BootFat, Packed, Table,
};
use kiln_units::SubRegion;
use std::fs::File;
use std::path::Path;
use std::rc::Rc;

fn mat(input: &Path, out: &Path) -> Result<kiln_base::Materialized, Error> {
    let f = File::create(out).unwrap();
    materialize(input, &f)
}

fn same_file(a: &Path, b: &Path) {
    let st = std::process::Command::new("cmp")
        .arg(a)
        .arg(b)
        .status()
        .unwrap();
    assert!(st.success(), "{} differs from {}", a.display(), b.display());
}

#[test]
fn every_format_materializes_to_the_same_disk() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_base(dir.path(), &BaseSpec::default());
    let out = dir.path().join("out.raw");
    let m = mat(&raw, &out).unwrap();
    assert_eq!(m.format, BaseFormat::Raw);
    same_file(&raw, &out);
    assert_eq!(hex(&m.input_sha256), kiln_e2e::sha256_file(&raw));
    // Sparse: far fewer blocks allocated than the disk size.
    use std::os::unix::fs::MetadataExt;
    let alloc = std::fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        alloc < m.disk_bytes / 4,
        "{alloc} of {} bytes allocated",
        m.disk_bytes
    );
    for kind in Packed::ALL {
        let packed = pack(&raw, kind);
        let want = match kind {
            Packed::Xz => BaseFormat::Xz,
            Packed::Gz => BaseFormat::Gz,
            Packed::Zst => BaseFormat::Zst,
            Packed::Zip => BaseFormat::Zip,
            Packed::Qcow2 => BaseFormat::Qcow2,
            Packed::Vmdk => BaseFormat::Vmdk,
            Packed::Vhd => BaseFormat::Vhd,
        };
        // Sniffed by content, not name.
        let renamed = dir.path().join(format!("input-{kind:?}.bin"));
        std::fs::rename(&packed, &renamed).unwrap();
        assert_eq!(sniff(&renamed).unwrap(), want, "{kind:?}");
        let out = dir.path().join(format!("{kind:?}.raw"));
        let m = mat(&renamed, &out).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(m.format, want);
        assert_eq!(
            m.disk_bytes,
            std::fs::metadata(&raw).unwrap().len(),
            "{kind:?}"
        );
        assert_eq!(
            hex(&m.input_sha256),
            kiln_e2e::sha256_file(&renamed),
            "{kind:?}"
        );
        assert_eq!(
            m.inner_name.as_deref(),
            (kind == Packed::Zip).then_some("base.img")
        );
        same_file(&raw, &out);
        std::fs::remove_file(&out).unwrap();
        std::fs::remove_file(&renamed).unwrap();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check_layout(raw: &Path, spec: &BaseSpec) {
    let disk = Rc::new(File::open(raw).unwrap());
    let layout = detect(&*disk).unwrap();
    assert!(!layout.flasher);
    let (_, parts) = kiln_e2e::sfdisk(raw);
    let want: &[(Role, u32, &str)] = match spec.table {
        Table::Mbr => &[
            (Role::Boot, 1, "boot"),
            (Role::RootA, 2, "rootA"),
            (Role::RootB, 3, "rootB"),
            (Role::State, 5, "state"),
            (Role::Data, 6, "data"),
        ],
        Table::Gpt => &[
            (Role::Boot, 1, "boot"),
            (Role::RootA, 2, "rootA"),
            (Role::RootB, 3, "rootB"),
            (Role::State, 4, "state"),
            (Role::Data, 5, "data"),
        ],
    };
    for (role, number, suffix) in want {
        let p = layout
            .role(*role)
            .unwrap_or_else(|| panic!("{role} not found"));
        assert_eq!(p.number, *number, "{role}");
        assert_eq!(p.label.as_deref(), Some(spec.label(suffix).as_str()));
        assert_eq!(
            p.fs,
            if *role == Role::Boot {
                FsType::Fat
            } else {
                FsType::Ext4
            }
        );
        let sf = parts.iter().find(|s| s.number == *number).unwrap();
        assert_eq!(
            (p.start_bytes, p.size_bytes),
            (sf.start * 512, sf.size * 512),
            "{role}"
        );
        // blkid agrees on the label.
        let (_, label, _) = kiln_e2e::blkid(raw, sf);
        assert_eq!(label, spec.label(suffix));
    }
    assert_eq!(layout.extended.is_some(), spec.table == Table::Mbr);
    let dev = device_info(&*disk, &layout).unwrap();
    assert_eq!(dev.slug.as_deref(), Some(spec.slug.as_str()));
    assert_eq!(dev.arch.as_deref(), Some(spec.arch.as_str()));
    assert_eq!(dev.source, "device-type.json");
    let os = os_info(&disk, &layout).unwrap();
    assert_eq!(os.pretty_name, Some(spec.pretty_name()));
    assert_eq!(os.version, Some(spec.os_version.clone()));
    assert_eq!(os.image_version_info, Some(spec.image_version_info()));
    // Free space of the data partition equals what dumpe2fs reports.
    let data = layout.role(Role::Data).unwrap();
    let sb = Ext4Super::read(&SubRegion::new(&*disk, data.start_bytes, data.size_bytes))
        .unwrap()
        .unwrap();
    let sf = parts.iter().find(|s| s.number == data.number).unwrap();
    let fs = raw.with_extension("data.ext4");
    kiln_e2e::extract(raw, sf, &fs);
    kiln_e2e::require("dumpe2fs", "e2fsprogs");
    let d = kiln_e2e::ok(std::process::Command::new("dumpe2fs").arg("-h").arg(&fs));
    let field = |k: &str| -> u64 {
        d.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} not in dumpe2fs output"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(sb.free_blocks, field("Free blocks:"));
    assert_eq!(sb.blocks, field("Block count:"));
    assert_eq!(sb.block_size, field("Block size:"));
}

#[test]
fn mbr_extended_fat16_layout_and_facts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = BaseSpec::default();
    let raw = make_base(dir.path(), &spec);
    check_layout(&raw, &spec);
}

#[test]
fn gpt_fat32_balena_labels_layout_and_facts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = BaseSpec {
        table: Table::Gpt,
        fat: BootFat::Fat32,
        prefix: "balena".into(),
        slug: "fincm3".into(),
        arch: "armv7hf".into(),
        os_version: "6.0.13".into(),
        ..BaseSpec::default()
    };
    let raw = make_base(dir.path(), &spec);
    kiln_e2e::require("sgdisk", "gdisk");
    let v = kiln_e2e::ok(std::process::Command::new("sgdisk").arg("-v").arg(&raw));
    assert!(v.contains("No problems found"), "{v}");
    check_layout(&raw, &spec);
}

#[test]
fn device_type_from_config_json_when_no_device_type_json() {
    let dir = tempfile::tempdir().unwrap();
    let spec = BaseSpec {
        device_type_json: false,
        slug: "raspberrypi4-64".into(),
        ..BaseSpec::default()
    };
    let raw = make_base(dir.path(), &spec);
    let disk = File::open(&raw).unwrap();
    let layout = detect(&disk).unwrap();
    let dev = device_info(&disk, &layout).unwrap();
    assert_eq!(dev.slug.as_deref(), Some("raspberrypi4-64"));
    assert_eq!((dev.arch, dev.source), (None, "config.json"));
}

#[test]
fn bad_inputs_give_the_right_error() {
    let dir = tempfile::tempdir().unwrap();
    let raw = make_base(dir.path(), &BaseSpec::default());
    let out = dir.path().join("out.raw");

    // Truncated xz, gz, zst: Corrupt naming the file.
    for kind in [Packed::Xz, Packed::Gz, Packed::Zst] {
        let p = pack(&raw, kind);
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len / 2).unwrap();
        let e = mat(&p, &out).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{kind:?}: {e}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        assert!(e.to_string().contains("truncated or corrupt"), "{e}");
    }
    // Corrupt xz (a flipped byte in the middle).
    let p = pack(&raw, Packed::Xz);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    let e = mat(&p, &out).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Corrupt {
                format: BaseFormat::Xz,
                ..
            }
        ),
        "{e}"
    );

    // Short raw: not a whole number of sectors.
    let short = dir.path().join("short.img");
    std::fs::write(&short, vec![0x55u8; 1000]).unwrap();
    let e = mat(&short, &out).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadDiskSize {
                disk_bytes: 1000,
                ..
            }
        ),
        "{e}"
    );

    // Truncated qcow2: the vdisk reader refuses it.
    let q = pack(&raw, Packed::Qcow2);
    let f = std::fs::OpenOptions::new().write(true).open(&q).unwrap();
    f.set_len(100_000).unwrap();
    let e = mat(&q, &out).unwrap_err();
    assert!(
        matches!(
            e,
            Error::VirtualDisk {
                format: BaseFormat::Qcow2,
                ..
            }
        ),
        "{e}"
    );

    // Zip with two images, and zip with none.
    let other = dir.path().join("other.img");
    std::fs::copy(&short, &other).unwrap();
    let z = dir.path().join("two.zip");
    zip(&z, &[&raw, &other]);
    let e = mat(&z, &out).unwrap_err();
    match &e {
        Error::ZipMembers { members, .. } => {
            assert_eq!(members, &["base.img".to_string(), "other.img".to_string()])
        }
        _ => panic!("{e}"),
    }
    assert!(e.to_string().contains("base.img") && e.to_string().contains("other.img"));
    let txt = dir.path().join("readme.txt");
    std::fs::write(&txt, "hello").unwrap();
    let z = dir.path().join("none.zip");
    zip(&z, &[&txt]);
    assert!(matches!(
        mat(&z, &out).unwrap_err(),
        Error::ZipMembers { .. }
    ));

    // A disk without a partition table.
    let blank = dir.path().join("blank.img");
    File::create(&blank).unwrap().set_len(8 << 20).unwrap();
    let e = detect(&File::open(&blank).unwrap()).unwrap_err();
    assert!(matches!(e, Error::UnknownLayout { .. }), "{e}");
}

#[test]
fn missing_data_label_is_reported_with_the_labels_found() {
    let dir = tempfile::tempdir().unwrap();
    let spec = BaseSpec {
        data_label: Some("userdata".into()),
        ..BaseSpec::default()
    };
    let raw = make_base(dir.path(), &spec);
    let e = detect(&File::open(&raw).unwrap()).unwrap_err();
    match &e {
        Error::MissingLabel { role, found, .. } => {
            assert_eq!(*role, Role::Data);
            assert!(found.contains(&"userdata".to_string()), "{found:?}");
            assert!(found.contains(&"resin-boot".to_string()), "{found:?}");
        }
        _ => panic!("{e}"),
    }
    assert!(e.to_string().contains("resin-data"), "{e}");
}

#[test]
fn flasher_inner_image_is_found_and_extracted() {
    let dir = tempfile::tempdir().unwrap();
    let inner_dir = dir.path().join("inner");
    let raw = make_base(&inner_dir, &BaseSpec::default());
    let named = dir.path().join("balena-image-intel-nuc.img");
    std::fs::rename(&raw, &named).unwrap();
    let flasher = make_flasher(dir.path(), &named);
    let disk = Rc::new(File::open(&flasher).unwrap());
    let layout = detect(&*disk).unwrap();
    assert!(layout.flasher);
    assert_eq!(
        layout.role(Role::Boot).unwrap().label.as_deref(),
        Some("flash-boot")
    );
    let inner = flasher_inner(&disk, &layout).unwrap().unwrap();
    assert_eq!(inner.path, "/opt/balena-image-intel-nuc.img");
    assert_eq!(inner.size, std::fs::metadata(&named).unwrap().len());
    let out = dir.path().join("extracted.img");
    extract_inner(&disk, &layout, &inner, &File::create(&out).unwrap()).unwrap();
    same_file(&named, &out);
    use std::os::unix::fs::MetadataExt;
    let alloc = std::fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        alloc < inner.size / 4,
        "extracted image not sparse: {alloc}"
    );
    // The extracted inner image is itself a base image.
    let inner_layout = detect(&File::open(&out).unwrap()).unwrap();
    assert!(!inner_layout.flasher);
    // A non-flasher has no inner image.
    let e = flasher_inner(&Rc::new(File::open(&out).unwrap()), &inner_layout).unwrap_err();
    assert!(matches!(e, Error::NotFlasher), "{e}");
}
