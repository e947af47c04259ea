//! Throughput of `materialize` per input format (ignored by default; run
//! with `cargo test -p kiln-base --test bench -- --ignored --nocapture`).
//! Disk: a 1 GiB balenaOS-layout fixture with 256 MiB of incompressible
//! data written over the middle of its data partition (the partition's
//! filesystem is not read, only copied).

use kiln_e2e::base_fixtures::{make_base, pack, BaseSpec, Packed};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

#[test]
#[ignore]
fn materialize_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let spec = BaseSpec {
        data_mib: 880,
        ..BaseSpec::default()
    };
    let raw = make_base(dir.path(), &spec);
    let disk_bytes = std::fs::metadata(&raw).unwrap().len();
    {
        // xorshift: deterministic, incompressible.
        let f = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
        let mut x = 0x9e3779b97f4a7c15u64;
        let mut buf = vec![0u8; 1 << 20];
        for i in 0..256u64 {
            for c in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all_at(&buf, disk_bytes / 2 + i * (1 << 20))
                .unwrap();
        }
        f.sync_all().unwrap();
    }
    let mut report = Vec::new();
    let mut one = |name: &str, input: &std::path::Path| {
        let out = dir.path().join("out.raw");
        let _ = std::fs::remove_file(&out);
        let f = File::create(&out).unwrap();
        let t = Instant::now();
        let m = kiln_base::materialize(input, &f).unwrap();
        let s = t.elapsed().as_secs_f64();
        assert_eq!(m.disk_bytes, disk_bytes);
        let in_bytes = std::fs::metadata(input).unwrap().len();
        report.push(format!(
            "{name:<6} input {:>11} B  {:>6.2} s  {:>7.1} MiB/s of disk",
            in_bytes,
            s,
            disk_bytes as f64 / s / 1048576.0
        ));
    };
    one("raw", &raw);
    for kind in [
        Packed::Zst,
        Packed::Gz,
        Packed::Zip,
        Packed::Qcow2,
        Packed::Xz,
    ] {
        let p = pack(&raw, kind);
        one(&format!("{kind:?}").to_lowercase(), &p);
        std::fs::remove_file(&p).unwrap();
    }
    let mut o = std::io::stdout();
    writeln!(o, "materialize, {disk_bytes} B disk, 256 MiB random data:").unwrap();
    for l in report {
        writeln!(o, "  {l}").unwrap();
    }
}
