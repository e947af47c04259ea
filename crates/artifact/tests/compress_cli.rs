//! Compression outputs checked by the real CLIs (`xz -t`, `gzip -t`,
//! `zstd -t`, decompression round trips both ways), determinism, and
//! `SHA256SUMS` checked by `sha256sum -c`.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use common::{ok, payload, require, run};
use kiln_artifact::compress::{CompressOptions, Compression, Decoder, Encoder};
use kiln_artifact::digest::{HashingWriter, Sha256Digest};
use kiln_artifact::sums::Sha256Sums;

fn input() -> Vec<u8> {
    let mut v = payload(6 << 20, 7);
    v.extend(std::iter::repeat_n(0u8, 2 << 20));
    v.extend(payload(1 << 20, 8));
    v
}

/// Compresses with our encoder into `path`; returns (artifact digest,
/// uncompressed digest) as computed while writing.
fn compress_to(path: &Path, opts: &CompressOptions, data: &[u8]) -> (Sha256Digest, Sha256Digest) {
    let file = HashingWriter::new(std::fs::File::create(path).unwrap());
    let mut raw = HashingWriter::new(Encoder::new(file, opts).unwrap());
    for chunk in data.chunks(100_003) {
        raw.write_all(chunk).unwrap();
    }
    let (enc, raw_digest, n) = raw.finish();
    assert_eq!(n, data.len() as u64);
    let (f, file_digest, _) = enc.finish().unwrap().finish();
    f.sync_all().unwrap();
    (file_digest, raw_digest)
}

fn tool(c: Compression) -> (&'static str, &'static str) {
    match c {
        Compression::Xz => ("xz", "xz-utils"),
        Compression::Gzip => ("gzip", "gzip"),
        Compression::Zstd => ("zstd", "zstd"),
        _ => unreachable!(),
    }
}

const CODECS: [Compression; 3] = [Compression::Xz, Compression::Gzip, Compression::Zstd];

#[test]
fn cli_validates_and_round_trips_our_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = input();
    let data_path = dir.path().join("data");
    std::fs::write(&data_path, &data).unwrap();
    for c in CODECS {
        let (bin, pkg) = tool(c);
        require(bin, pkg);
        let out = dir.path().join(format!("data.{}", c.extension().unwrap()));
        let opts = CompressOptions::new(c).level(3).threads(2);
        let (file_digest, raw_digest) = compress_to(&out, &opts, &data);
        assert_eq!(raw_digest, Sha256Digest::of(&data));
        assert_eq!(file_digest, Sha256Digest::of(&std::fs::read(&out).unwrap()));
        // The CLI's integrity test.
        ok(Command::new(bin).arg("-t").arg(&out));
        // The CLI decompresses to the same bytes.
        let dec = run(Command::new(bin).arg("-dc").arg(&out));
        assert!(dec.status.success(), "{bin} -dc failed");
        assert!(
            dec.stdout == data,
            "{bin} -dc output differs from the input"
        );
        // A corrupted artifact is caught by the CLI (the check can fail).
        let mut bad = std::fs::read(&out).unwrap();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        let bad_path = dir.path().join(format!("bad.{}", c.extension().unwrap()));
        std::fs::write(&bad_path, &bad).unwrap();
        assert!(
            !run(Command::new(bin).arg("-t").arg(&bad_path))
                .status
                .success(),
            "{bin} -t accepted a corrupted file"
        );
        // ... and by our decoder.
        let mut sink = Vec::new();
        let r = Decoder::new(std::fs::File::open(&bad_path).unwrap())
            .unwrap()
            .read_to_end(&mut sink);
        assert!(r.is_err() || sink != data, "{c}: corruption not detected");
    }
}

#[test]
fn decoder_reads_cli_output_and_concatenations() {
    let dir = tempfile::tempdir().unwrap();
    let data = input();
    let data_path = dir.path().join("data");
    std::fs::write(&data_path, &data).unwrap();
    for c in CODECS {
        let (bin, pkg) = tool(c);
        require(bin, pkg);
        let packed = run(Command::new(bin).arg("-c").arg("-T2").arg(&data_path));
        let packed = if packed.status.success() {
            packed.stdout
        } else {
            // gzip has no -T.
            ok_bytes(Command::new(bin).arg("-c").arg(&data_path))
        };
        // Two concatenated streams decode to the data twice.
        let mut two = packed.clone();
        two.extend_from_slice(&packed);
        let mut d = Decoder::new(two.as_slice()).unwrap();
        assert_eq!(d.compression(), c);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 2 * data.len(), "{c}");
        assert!(
            out[..data.len()] == data[..] && out[data.len()..] == data[..],
            "{c}"
        );
    }
}

fn ok_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed");
    out.stdout
}

#[test]
fn deterministic_at_fixed_params_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    let data = input();
    for c in CODECS {
        let base = CompressOptions::new(c).level(2).xz_block_size(1 << 20);
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let t = dir.path().join("t");
        compress_to(&a, &base.threads(2), &data);
        compress_to(&b, &base.threads(2), &data);
        compress_to(&t, &base.threads(1), &data);
        let (a, b, t) = (
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            std::fs::read(&t).unwrap(),
        );
        assert!(a == b, "{c}: two runs differ");
        assert!(a == t, "{c}: 1 thread and 2 threads differ");
    }
}

#[test]
fn xz_matches_cli_multithreaded_output() {
    // Our block-parallel xz writes what liblzma's multi-threaded encoder
    // writes (`xz -T2 --block-size=B`): same preset, dictionary and block
    // size => same bytes, including the reused all-zero blocks (the input has 2 MiB of
    // zeros at a 1 MiB boundary) and the short last block.
    require("xz", "xz-utils");
    let dir = tempfile::tempdir().unwrap();
    let data = input();
    let data_path = dir.path().join("data");
    std::fs::write(&data_path, &data).unwrap();
    // (level, our block size (0 = default), the CLI's block size and
    // dictionary: ours is cut to the block size)
    for (level, block, cli_block, cli_dict) in [
        (1u32, 0u64, "1MiB", "1MiB"),
        (6, 1 << 19, "512KiB", "512KiB"),
        (6, 0, "2MiB", "2MiB"),
        (6, 4 << 20, "4MiB", "4MiB"),
        (3, 16 << 20, "16MiB", "4MiB"),
    ] {
        let ours = dir.path().join("ours.xz");
        compress_to(
            &ours,
            &CompressOptions::new(Compression::Xz)
                .level(level)
                .xz_block_size(block)
                .threads(2),
            &data,
        );
        let theirs = ok_bytes(
            Command::new("xz")
                .arg(format!("--lzma2=preset={level},dict={cli_dict}"))
                .arg("-T2")
                .arg(format!("--block-size={cli_block}"))
                .arg("-c")
                .arg(&data_path),
        );
        let ours = std::fs::read(&ours).unwrap();
        assert!(
            ours == theirs,
            "our xz -{level} (block {cli_block}) differs from `xz -T2` ({} vs {} bytes)",
            ours.len(),
            theirs.len()
        );
    }
}

#[test]
fn xz_empty_and_exact_block_inputs_match_cli() {
    require("xz", "xz-utils");
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in [
        ("empty", Vec::new()),
        ("one-zero-block", vec![0u8; 1 << 20]),
        ("two-blocks-exact", payload(2 << 20, 3)),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &data).unwrap();
        let ours = dir.path().join(format!("{name}.xz"));
        compress_to(
            &ours,
            &CompressOptions::new(Compression::Xz)
                .level(0)
                .xz_block_size(1 << 20)
                .threads(3),
            &data,
        );
        let theirs = ok_bytes(
            Command::new("xz")
                .args(["-0", "-T2", "--block-size=1MiB", "-c"])
                .arg(&path),
        );
        ok(Command::new("xz").arg("-t").arg(&ours));
        assert!(std::fs::read(&ours).unwrap() == theirs, "{name}");
    }
}

#[test]
fn sha256sums_checked_by_sha256sum() {
    require("sha256sum", "coreutils");
    let dir = tempfile::tempdir().unwrap();
    let mut sums = Sha256Sums::new();
    let names = [
        "disk.img.xz",
        "disk.bmap",
        "with space.qcow2",
        "back\\slash.vhd",
    ];
    for (i, name) in names.iter().enumerate() {
        let data = payload(100_000 + i * 7, i as u64 + 1);
        let mut w = HashingWriter::new(std::fs::File::create(dir.path().join(name)).unwrap());
        w.write_all(&data).unwrap();
        let (_, digest, _) = w.finish();
        sums.insert(name, digest).unwrap();
    }
    sums.write_to(std::fs::File::create(dir.path().join("SHA256SUMS")).unwrap())
        .unwrap();
    let out = ok(Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(dir.path()));
    assert_eq!(out.matches(": OK").count(), names.len(), "{out}");
    // Our parser reads sha256sum's own output back.
    let theirs = ok(Command::new("sha256sum")
        .args(names)
        .current_dir(dir.path()));
    assert_eq!(Sha256Sums::parse(&theirs).unwrap(), sums);
    // Corrupting one file makes sha256sum -c fail.
    let p = dir.path().join(names[2]);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let out = run(Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dir.path()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("with space.qcow2: FAILED"));
}
