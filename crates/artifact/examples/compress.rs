//! Compresses a file with kiln's encoders and prints the digests computed
//! while writing.
//!
//! `cargo run --release -p kiln-artifact --example compress -- IN OUT xz|gz|zst [LEVEL] [THREADS] [nodigest]`
//!
//! `nodigest` skips the two sha256 computations (codec-only timing).

use std::io::Write;

use kiln_artifact::compress::{CompressOptions, Compression, Encoder};
use kiln_artifact::digest::HashingWriter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: compress IN OUT xz|gz|zst [LEVEL] [THREADS] [nodigest]");
        std::process::exit(2);
    }
    let codec: Compression = args[3].parse()?;
    let mut opts = CompressOptions::new(codec);
    if let Some(l) = args.get(4) {
        opts = opts.level(l.parse()?);
    }
    let threads = match args.get(5) {
        Some(t) => t.parse()?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
    };
    opts = opts.threads(threads);
    if args.get(6).map(String::as_str) == Some("nodigest") {
        let start = std::time::Instant::now();
        let mut input = std::fs::File::open(&args[1])?;
        let out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&args[2])?);
        let mut enc = Encoder::new(out, &opts)?;
        let n = std::io::copy(&mut input, &mut enc)?;
        enc.finish()?.flush()?;
        println!(
            "{codec}: {n} bytes in {:.2} s (no digests)",
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let start = std::time::Instant::now();
    let mut input = std::fs::File::open(&args[1])?;
    let file = HashingWriter::new(std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&args[2])?,
    ));
    let mut raw = HashingWriter::new(Encoder::new(file, &opts)?);
    // Large reads: 1 MiB per write into the encoder.
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        raw.write_all(&buf[..n])?;
    }
    let (enc, raw_digest, raw_bytes) = raw.finish();
    let (mut out, out_digest, out_bytes) = enc.finish()?.finish();
    out.flush()?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{codec} level {} threads {threads}: {raw_bytes} -> {out_bytes} bytes in {secs:.2} s ({:.1} MB/s)\ninput  sha256 {raw_digest}\noutput sha256 {out_digest}",
        opts.get_level(),
        raw_bytes as f64 / secs / 1e6
    );
    Ok(())
}
