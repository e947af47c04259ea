//! Writes a bmaptool 2.0 bmap for a raw image by scanning for non-zero
//! 4 KiB blocks.
//!
//! `cargo run --release -p kiln-artifact --example bmap -- IMAGE OUT.bmap`

use kiln_artifact::bmap::{nonzero_ranges, Bmap, BMAP_BLOCK_SIZE};
use kiln_units::ReadAt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: bmap IMAGE OUT.bmap");
        std::process::exit(2);
    }
    let image = std::fs::File::open(&args[1])?;
    let size = ReadAt::size(&image)?;
    let ranges = nonzero_ranges(&image, BMAP_BLOCK_SIZE)?;
    let bmap = Bmap::from_image(&image, size, BMAP_BLOCK_SIZE, &ranges)?;
    bmap.write_to(std::fs::File::create(&args[2])?)?;
    println!(
        "{} ranges, {} of {} bytes mapped",
        bmap.ranges().len(),
        bmap.mapped_bytes(),
        size
    );
    Ok(())
}
