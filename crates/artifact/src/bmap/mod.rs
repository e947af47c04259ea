//! Block maps in bmaptool format 2.0: the list of mapped (non-hole) block
//! ranges of a raw image with a SHA-256 per range, so flashing skips holes
//! and verifies what it wrote.
//!
//! Format reference: bmaptool (github.com/yoctoproject/bmaptool,
//! `bmaptools/BmapCreate.py` and `BmapCopy.py`, format 2.0; 1.4 is the same
//! format under a mistaken number).
//!
//! # Document layout
//!
//! | element | content |
//! |---|---|
//! | `<bmap version="2.0">` | root |
//! | `<ImageSize>` | image size in bytes |
//! | `<BlockSize>` | block size in bytes (kiln writes 4096) |
//! | `<BlocksCount>` | `ceil(ImageSize / BlockSize)` |
//! | `<MappedBlocksCount>` | sum of the range lengths |
//! | `<ChecksumType>` | `sha256` |
//! | `<BmapFileChecksum>` | sha256 of the whole file *with this field's value replaced by 64 ASCII `0`*; bmaptool finds the first occurrence of the value, zeroes it and re-hashes |
//! | `<BlockMap>` | `<Range chksum="HEX"> A-B </Range>` or `<Range chksum="HEX"> A </Range>`, blocks inclusive, ascending |
//!
//! A range checksum covers bytes `[A*BlockSize, min((B+1)*BlockSize,
//! ImageSize))`: bmaptool reads past the end of an image whose size is not
//! a block multiple and gets a short read, so the last range is clipped.

mod xml;

use std::io::{Read, Write};

use kiln_units::ReadAt;

use crate::digest::{Sha256Digest, Sha256Hasher};
use crate::error::{io_err, Error, Result};
use xml::{Token, Tokenizer};

/// The block size kiln writes bmaps with, in bytes.
pub const BMAP_BLOCK_SIZE: u32 = 4096;
/// Largest bmap file [`Bmap::read_from`] accepts, in bytes (about 2.5
/// million ranges).
pub const BMAP_MAX_FILE_BYTES: u64 = 256 << 20;

/// An inclusive range of blocks `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockRange {
    /// First block.
    pub first: u64,
    /// Last block (inclusive).
    pub last: u64,
}

impl BlockRange {
    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.last.saturating_sub(self.first).saturating_add(1)
    }

    /// Turns byte extents `(offset, length)` of written data into sorted,
    /// merged block ranges covering them (blocks of `block_size` bytes).
    /// Empty extents are ignored.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a zero block size or an extent whose
    /// end overflows.
    pub fn cover_extents(extents: &[(u64, u64)], block_size: u32) -> Result<Vec<BlockRange>> {
        let bs = u64::from(block_size);
        if bs == 0 {
            return Err(Error::InvalidRequest {
                reason: "block size must not be zero",
            });
        }
        let mut blocks: Vec<BlockRange> = Vec::with_capacity(extents.len());
        for &(off, len) in extents {
            if len == 0 {
                continue;
            }
            let end = off.checked_add(len).ok_or(Error::InvalidRequest {
                reason: "extent end overflows",
            })?;
            blocks.push(BlockRange {
                first: off / bs,
                last: (end - 1) / bs,
            });
        }
        blocks.sort_unstable();
        let mut merged: Vec<BlockRange> = Vec::with_capacity(blocks.len());
        for r in blocks {
            match merged.last_mut() {
                Some(prev) if r.first <= prev.last.saturating_add(1) => {
                    prev.last = prev.last.max(r.last);
                }
                _ => merged.push(r),
            }
        }
        Ok(merged)
    }
}

/// One mapped range of a bmap with its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BmapRange {
    /// The blocks.
    pub blocks: BlockRange,
    /// sha256 of the range's bytes (clipped to the image size).
    pub sha256: Sha256Digest,
}

/// A validated block map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    image_size: u64,
    block_size: u32,
    ranges: Vec<BmapRange>,
}

fn invalid(element: &'static str, reason: &'static str) -> Error {
    Error::BmapInvalid { element, reason }
}

fn blocks_for(image_size: u64, block_size: u32) -> u64 {
    image_size.div_ceil(u64::from(block_size).max(1))
}

fn check_block_size(block_size: u32) -> Result<()> {
    if !block_size.is_power_of_two() || !(512..=(1 << 20)).contains(&block_size) {
        return Err(Error::BmapUnsupported {
            what: "block size other than a power of two from 512 to 1 MiB",
        });
    }
    Ok(())
}

fn check_ranges(ranges: &[BlockRange], blocks_count: u64) -> Result<()> {
    let mut next_free = 0u64;
    for (i, r) in ranges.iter().enumerate() {
        if r.first > r.last {
            return Err(invalid("Range", "first block after last block"));
        }
        if r.last >= blocks_count {
            return Err(invalid("Range", "range past the end of the image"));
        }
        if i > 0 && r.first < next_free {
            return Err(invalid("Range", "ranges overlap or are not ascending"));
        }
        next_free = r.last.saturating_add(1);
    }
    Ok(())
}

impl Bmap {
    /// A bmap from ranges whose checksums are already known.
    ///
    /// # Errors
    /// [`Error::BmapUnsupported`] for a block size that is not a power of
    /// two in 512..=1 MiB, [`Error::BmapInvalid`] for ranges that are not
    /// ascending, overlap or pass the end of the image.
    pub fn new(image_size: u64, block_size: u32, ranges: Vec<BmapRange>) -> Result<Self> {
        check_block_size(block_size)?;
        let plain: Vec<BlockRange> = ranges.iter().map(|r| r.blocks).collect();
        check_ranges(&plain, blocks_for(image_size, block_size))?;
        Ok(Self {
            image_size,
            block_size,
            ranges,
        })
    }

    /// Builds the bmap of `image` by hashing each mapped range from it.
    /// `mapped` must be ascending and non-overlapping (see
    /// [`BlockRange::cover_extents`]).
    ///
    /// # Errors
    /// As [`Bmap::new`], plus [`Error::Io`] when reading the image.
    pub fn from_image<R: ReadAt + ?Sized>(
        image: &R,
        image_size: u64,
        block_size: u32,
        mapped: &[BlockRange],
    ) -> Result<Self> {
        check_block_size(block_size)?;
        check_ranges(mapped, blocks_for(image_size, block_size))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut ranges = Vec::with_capacity(mapped.len());
        for r in mapped {
            let (start, end) = range_bytes(*r, block_size, image_size);
            let mut h = Sha256Hasher::new();
            let mut off = start;
            while off < end {
                let n = (end - off).min(buf.len() as u64);
                // OK: n <= buf.len().
                let chunk = buf.get_mut(..n as usize).unwrap_or_default();
                image
                    .read_exact_at(chunk, off)
                    .map_err(io_err("reading the image for the bmap", off))?;
                h.update(chunk);
                off += n;
            }
            ranges.push(BmapRange {
                blocks: *r,
                sha256: h.finish(),
            });
        }
        Ok(Self {
            image_size,
            block_size,
            ranges,
        })
    }

    /// Image size in bytes.
    pub fn image_size(&self) -> u64 {
        self.image_size
    }
    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
    /// `ceil(image_size / block_size)`.
    pub fn blocks_count(&self) -> u64 {
        blocks_for(self.image_size, self.block_size)
    }
    /// Number of mapped blocks.
    pub fn mapped_blocks(&self) -> u64 {
        self.ranges.iter().map(|r| r.blocks.blocks()).sum()
    }
    /// Bytes covered by mapped ranges (clipped to the image size).
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| {
                let (s, e) = self.byte_range(r.blocks);
                e - s
            })
            .sum()
    }
    /// The mapped ranges, ascending.
    pub fn ranges(&self) -> &[BmapRange] {
        &self.ranges
    }
    /// Byte range `[start, end)` of `blocks` in the image, clipped to the
    /// image size.
    pub fn byte_range(&self, blocks: BlockRange) -> (u64, u64) {
        range_bytes(blocks, self.block_size, self.image_size)
    }

    /// The bmap XML document, byte-identical for equal bmaps.
    pub fn to_xml(&self) -> String {
        let mut head = String::new();
        head.push_str("<?xml version=\"1.0\" ?>\n");
        head.push_str(
            "<!-- Block map (bmaptool format 2.0) written by kiln: the mapped block\n     \
             ranges of the image; blocks outside them are holes and read as zeros. -->\n\n",
        );
        head.push_str("<bmap version=\"2.0\">\n");
        head.push_str(&format!(
            "    <!-- Image size in bytes -->\n    <ImageSize> {} </ImageSize>\n\n",
            self.image_size
        ));
        head.push_str(&format!(
            "    <!-- Size of a block in bytes -->\n    <BlockSize> {} </BlockSize>\n\n",
            self.block_size
        ));
        head.push_str(&format!(
            "    <!-- Count of blocks in the image file -->\n    <BlocksCount> {} </BlocksCount>\n\n",
            self.blocks_count()
        ));
        head.push_str(&format!(
            "    <!-- Count of mapped blocks -->\n    <MappedBlocksCount> {} </MappedBlocksCount>\n\n",
            self.mapped_blocks()
        ));
        head.push_str(
            "    <!-- Type of checksum used in this file -->\n    <ChecksumType> sha256 </ChecksumType>\n\n",
        );
        head.push_str(
            "    <!-- The checksum of this bmap file. When it is calculated, the value of\n         \
             the checksum has be zero (all ASCII \"0\" symbols).  -->\n    <BmapFileChecksum> ",
        );
        let mut tail = String::new();
        tail.push_str(" </BmapFileChecksum>\n\n");
        tail.push_str(
            "    <!-- The block map: ranges of mapped blocks (inclusive) with the sha256 of\n         \
             their bytes in the 'chksum' attribute. -->\n    <BlockMap>\n",
        );
        for r in &self.ranges {
            if r.blocks.first == r.blocks.last {
                tail.push_str(&format!(
                    "        <Range chksum=\"{}\"> {} </Range>\n",
                    r.sha256, r.blocks.first
                ));
            } else {
                tail.push_str(&format!(
                    "        <Range chksum=\"{}\"> {}-{} </Range>\n",
                    r.sha256, r.blocks.first, r.blocks.last
                ));
            }
        }
        tail.push_str("    </BlockMap>\n</bmap>\n");
        let mut h = Sha256Hasher::new();
        h.update(head.as_bytes());
        h.update(ZERO_DIGEST_TEXT.as_bytes());
        h.update(tail.as_bytes());
        let file_sum = h.finish();
        head.push_str(&file_sum.to_hex());
        head.push_str(&tail);
        head
    }

    /// Writes [`Bmap::to_xml`] to `w`.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn write_to<W: Write>(&self, mut w: W) -> Result<()> {
        w.write_all(self.to_xml().as_bytes())
            .map_err(io_err("writing the bmap", 0))
    }

    /// Reads and parses a bmap file of at most `max_bytes` bytes (use
    /// [`BMAP_MAX_FILE_BYTES`]).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::BmapInvalid`] if the file is larger, and
    /// everything [`Bmap::parse`] returns.
    pub fn read_from<R: Read>(r: R, max_bytes: u64) -> Result<Self> {
        let mut data = Vec::new();
        r.take(max_bytes.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(io_err("reading the bmap", 0))?;
        if data.len() as u64 > max_bytes {
            return Err(invalid("bmap", "file larger than the limit"));
        }
        Self::parse(&data)
    }

    /// Parses and validates a bmap document (format 2.0 or 1.4, sha256).
    /// Checks the file checksum, the counts, and that ranges ascend, do not
    /// overlap and stay inside the image.
    ///
    /// # Errors
    /// [`Error::BmapSyntax`] with the byte offset, [`Error::BmapInvalid`],
    /// [`Error::BmapUnsupported`] (other versions, checksum types or ranges
    /// without a checksum), [`Error::BmapChecksum`].
    pub fn parse(doc: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(doc).map_err(|e| Error::BmapSyntax {
            offset: e.valid_up_to(),
            reason: "not UTF-8",
        })?;
        let raw = parse_tree(text)?;
        let version = raw
            .version
            .ok_or(invalid("bmap", "missing version attribute"))?;
        let major = version.split('.').next().unwrap_or_default();
        if major != "2" && version != "1.4" {
            return Err(Error::BmapUnsupported {
                what: "bmap format version other than 2.x (or 1.4)",
            });
        }
        let image_size = number("ImageSize", raw.image_size)?;
        let block_size = number("BlockSize", raw.block_size)?;
        let blocks_count = number("BlocksCount", raw.blocks_count)?;
        let mapped_count = number("MappedBlocksCount", raw.mapped_count)?;
        let ctype = raw
            .checksum_type
            .ok_or(invalid("ChecksumType", "missing"))?;
        if ctype.trim() != "sha256" {
            return Err(Error::BmapUnsupported {
                what: "checksum type other than sha256",
            });
        }
        let block_size = u32::try_from(block_size).map_err(|_| Error::BmapUnsupported {
            what: "block size other than a power of two from 512 to 1 MiB",
        })?;
        check_block_size(block_size)?;
        if blocks_count != blocks_for(image_size, block_size) {
            return Err(invalid(
                "BlocksCount",
                "does not equal ImageSize / BlockSize rounded up",
            ));
        }
        let file_sum_text = raw
            .file_checksum
            .ok_or(invalid("BmapFileChecksum", "missing"))?;
        let expected: Sha256Digest = file_sum_text
            .trim()
            .parse()
            .map_err(|_| invalid("BmapFileChecksum", "not 64 hex digits"))?;
        let mut ranges = Vec::with_capacity(raw.ranges.len());
        for (text, sum, offset) in raw.ranges {
            let sum = sum.ok_or(Error::BmapUnsupported {
                what: "range without a chksum attribute",
            })?;
            let sha256: Sha256Digest = sum
                .parse()
                .map_err(|_| invalid("Range", "chksum is not 64 hex digits"))?;
            let blocks = parse_range(&text).ok_or(Error::BmapSyntax {
                offset,
                reason: "range is not 'N' or 'N-M'",
            })?;
            ranges.push(BmapRange { blocks, sha256 });
        }
        let plain: Vec<BlockRange> = ranges.iter().map(|r| r.blocks).collect();
        check_ranges(&plain, blocks_count)?;
        let sum: u64 = plain.iter().map(BlockRange::blocks).sum();
        if sum != mapped_count {
            return Err(invalid(
                "MappedBlocksCount",
                "does not equal the number of blocks in the ranges",
            ));
        }
        // bmaptool's rule: zero the first occurrence of the value, hash.
        let needle = file_sum_text.trim();
        let at = text
            .find(needle)
            .ok_or(invalid("BmapFileChecksum", "value not found in file"))?;
        let mut h = Sha256Hasher::new();
        h.update(doc.get(..at).unwrap_or_default());
        h.update(&vec![b'0'; needle.len()]);
        h.update(doc.get(at + needle.len()..).unwrap_or_default());
        let actual = h.finish();
        if actual != expected {
            return Err(Error::BmapChecksum { expected, actual });
        }
        Ok(Self {
            image_size,
            block_size,
            ranges,
        })
    }
}

const ZERO_DIGEST_TEXT: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn range_bytes(r: BlockRange, block_size: u32, image_size: u64) -> (u64, u64) {
    let bs = u64::from(block_size);
    let start = r.first.saturating_mul(bs).min(image_size);
    let end = r.last.saturating_add(1).saturating_mul(bs).min(image_size);
    (start, end)
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn number(element: &'static str, v: Option<String>) -> Result<u64> {
    let v = v.ok_or(invalid(element, "missing"))?;
    parse_u64(&v).ok_or(invalid(element, "not a decimal number"))
}

fn parse_range(s: &str) -> Option<BlockRange> {
    match s.split_once('-') {
        Some((a, b)) => Some(BlockRange {
            first: parse_u64(a)?,
            last: parse_u64(b)?,
        }),
        None => {
            let a = parse_u64(s)?;
            Some(BlockRange { first: a, last: a })
        }
    }
}

#[derive(Default)]
struct RawBmap {
    version: Option<String>,
    image_size: Option<String>,
    block_size: Option<String>,
    blocks_count: Option<String>,
    mapped_count: Option<String>,
    checksum_type: Option<String>,
    file_checksum: Option<String>,
    ranges: Vec<(String, Option<String>, usize)>,
}

/// Deepest nesting accepted: bmap > BlockMap > Range (> unknown child).
const MAX_DEPTH: usize = 4;

/// The state of [`parse_tree`] between tokens.
struct TreeParser<'a> {
    raw: RawBmap,
    /// Open elements, outermost first.
    stack: Vec<&'a str>,
    current_text: String,
    /// `chksum` attribute of the open `<Range>`.
    current_attr: Option<String>,
    /// Byte offset of the open `<Range>`.
    range_offset: usize,
    root_done: bool,
}

fn syntax(offset: usize, reason: &'static str) -> Error {
    Error::BmapSyntax { offset, reason }
}

impl<'a> TreeParser<'a> {
    /// `<name ...>` or `<name .../>`: only `<bmap>` at the root and
    /// `<Range>` in `<BlockMap>`, nesting bounded.
    fn start(
        &mut self,
        name: &'a str,
        attrs: Vec<(&'a str, String)>,
        self_closing: bool,
        offset: usize,
    ) -> Result<()> {
        if self.root_done {
            return Err(syntax(offset, "content after the root element"));
        }
        let attr = |key: &str| attrs.into_iter().find(|(k, _)| *k == key).map(|(_, v)| v);
        if self.stack.is_empty() {
            if name != "bmap" {
                return Err(syntax(offset, "root element is not <bmap>"));
            }
            self.raw.version = attr("version").map(|v| v.trim().to_owned());
        } else if self.stack.len() == 2 && self.stack.last() == Some(&"BlockMap") {
            if name != "Range" {
                return Err(syntax(offset, "only <Range> is allowed in <BlockMap>"));
            }
            self.current_attr = attr("chksum");
            self.range_offset = offset;
        } else if self.stack.len() >= MAX_DEPTH {
            return Err(syntax(offset, "elements nested too deeply"));
        }
        self.current_text.clear();
        if self_closing {
            if self.stack.is_empty() {
                self.root_done = true;
            } else if self.stack.len() == 2 && name == "Range" {
                return Err(syntax(offset, "empty <Range/>"));
            }
        } else {
            self.stack.push(name);
        }
        Ok(())
    }

    /// Character data: only whitespace outside the root, bounded inside.
    fn text(&mut self, text: &str, offset: usize) -> Result<()> {
        if self.stack.is_empty() {
            if !text.trim().is_empty() {
                return Err(syntax(offset, "text outside the root element"));
            }
        } else {
            if self.current_text.len().saturating_add(text.len()) > 4096 {
                return Err(syntax(offset, "element text too long"));
            }
            self.current_text.push_str(text);
        }
        Ok(())
    }

    /// `</name>`: stores the text of a known header element or a
    /// `<Range>`.
    fn end(&mut self, name: &'a str, offset: usize) -> Result<()> {
        let open = self.stack.pop();
        if open != Some(name) {
            return Err(syntax(offset, "mismatched end tag"));
        }
        let value = std::mem::take(&mut self.current_text);
        let depth = self.stack.len();
        if depth == 0 {
            self.root_done = true;
        } else if depth == 1 {
            let raw = &mut self.raw;
            let slot = match name {
                "ImageSize" => Some(&mut raw.image_size),
                "BlockSize" => Some(&mut raw.block_size),
                "BlocksCount" => Some(&mut raw.blocks_count),
                "MappedBlocksCount" => Some(&mut raw.mapped_count),
                "ChecksumType" => Some(&mut raw.checksum_type),
                "BmapFileChecksum" => Some(&mut raw.file_checksum),
                // Newer minor versions may add elements; skip them.
                _ => None,
            };
            if let Some(slot) = slot {
                if slot.is_some() {
                    return Err(syntax(offset, "duplicate element"));
                }
                *slot = Some(value);
            }
        } else if depth == 2 && name == "Range" {
            self.raw
                .ranges
                .push((value, self.current_attr.take(), self.range_offset));
        }
        Ok(())
    }
}

/// Reads the element tree of a bmap document into its raw strings.
fn parse_tree(text: &str) -> Result<RawBmap> {
    let mut p = TreeParser {
        raw: RawBmap::default(),
        stack: Vec::new(),
        current_text: String::new(),
        current_attr: None,
        range_offset: 0,
        root_done: false,
    };
    let mut t = Tokenizer::new(text);
    while let Some(tok) = t.next_token()? {
        match tok {
            Token::Start {
                name,
                attrs,
                self_closing,
                offset,
            } => p.start(name, attrs, self_closing, offset)?,
            Token::Text { text, offset } => p.text(&text, offset)?,
            Token::End { name, offset } => p.end(name, offset)?,
        }
    }
    if !p.stack.is_empty() || !p.root_done {
        return Err(syntax(text.len(), "document ends inside an element"));
    }
    Ok(p.raw)
}

/// Computes a bmap in one pass while the image is produced in order: feed
/// every image byte (data and holes) with [`BmapStreamHasher::update`] /
/// [`BmapStreamHasher::update_zeros`]; bytes inside mapped ranges are
/// hashed per range, the rest is skipped. Also yields the sha256 of the
/// whole image, so one pass gives both (or, with
/// [`BmapStreamHasher::ranges_only`], leaves that digest to the caller,
/// e.g. a second thread reading the image).
#[derive(Debug)]
pub struct BmapStreamHasher {
    image_size: u64,
    block_size: u32,
    mapped: Vec<BlockRange>,
    next: usize,
    pos: u64,
    current: Option<Sha256Hasher>,
    done: Vec<BmapRange>,
    /// `None` for [`BmapStreamHasher::ranges_only`].
    whole: Option<Sha256Hasher>,
}

impl BmapStreamHasher {
    /// Starts for an image of `image_size` bytes with the given mapped
    /// ranges (ascending, non-overlapping).
    ///
    /// # Errors
    /// As [`Bmap::new`].
    pub fn new(image_size: u64, block_size: u32, mapped: Vec<BlockRange>) -> Result<Self> {
        Self::start(image_size, block_size, mapped, true)
    }

    fn start(
        image_size: u64,
        block_size: u32,
        mapped: Vec<BlockRange>,
        whole: bool,
    ) -> Result<Self> {
        check_block_size(block_size)?;
        check_ranges(&mapped, blocks_for(image_size, block_size))?;
        Ok(Self {
            image_size,
            block_size,
            done: Vec::with_capacity(mapped.len()),
            mapped,
            next: 0,
            pos: 0,
            current: None,
            whole: whole.then(Sha256Hasher::new),
        })
    }

    /// As [`BmapStreamHasher::new`], without the whole-image digest (for
    /// a caller that hashes the image elsewhere, e.g. straight from a
    /// sparse file on another thread); finish with
    /// [`BmapStreamHasher::finish_ranges`].
    ///
    /// # Errors
    /// As [`Bmap::new`].
    pub fn ranges_only(image_size: u64, block_size: u32, mapped: Vec<BlockRange>) -> Result<Self> {
        Self::start(image_size, block_size, mapped, false)
    }

    fn feed(&mut self, mut data: Option<&[u8]>, mut len: u64) {
        while len > 0 {
            // Range boundaries around the current position.
            let (limit, inside) = match self.mapped.get(self.next) {
                Some(r) => {
                    let (s, e) = range_bytes(*r, self.block_size, self.image_size);
                    if self.pos < s {
                        (s, false)
                    } else {
                        if self.current.is_none() {
                            self.current = Some(Sha256Hasher::new());
                        }
                        (e, true)
                    }
                }
                None => (u64::MAX, false),
            };
            let n = len.min(limit.saturating_sub(self.pos));
            // OK: n <= len, and len <= data.len() when data is given.
            let chunk = data.map(|d| d.get(..n as usize).unwrap_or(d));
            if inside {
                if let Some(h) = self.current.as_mut() {
                    match chunk {
                        Some(c) => h.update(c),
                        None => h.update_zeros(n),
                    }
                }
            }
            self.pos += n;
            len -= n;
            data = data.map(|d| d.get(n as usize..).unwrap_or_default());
            if inside && self.pos == limit {
                if let (Some(h), Some(r)) = (self.current.take(), self.mapped.get(self.next)) {
                    self.done.push(BmapRange {
                        blocks: *r,
                        sha256: h.finish(),
                    });
                }
                self.next += 1;
            }
        }
    }

    /// Feeds the next image bytes.
    pub fn update(&mut self, data: &[u8]) {
        if let Some(w) = &mut self.whole {
            w.update(data);
        }
        self.feed(Some(data), data.len() as u64);
    }

    /// Feeds `len` zero bytes (a hole).
    pub fn update_zeros(&mut self, len: u64) {
        if let Some(w) = &mut self.whole {
            w.update_zeros(len);
        }
        self.feed(None, len);
    }

    /// Bytes fed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The bmap and the sha256 of the whole image.
    ///
    /// # Errors
    /// [`Error::ImageTruncated`] if fewer or more than `image_size` bytes
    /// were fed.
    pub fn finish(mut self) -> Result<(Bmap, Sha256Digest)> {
        if self.pos != self.image_size || self.done.len() != self.mapped.len() {
            return Err(Error::ImageTruncated {
                expected: self.image_size,
                actual: self.pos,
            });
        }
        let whole = self
            .whole
            .take()
            .map(Sha256Hasher::finish)
            .ok_or(Error::InvalidRequest {
                reason: "no whole-image sha256 (ranges_only)",
            })?;
        Ok((self.finish_ranges()?, whole))
    }

    /// The bmap alone (what [`BmapStreamHasher::ranges_only`] computes).
    ///
    /// # Errors
    /// As [`BmapStreamHasher::finish`].
    pub fn finish_ranges(self) -> Result<Bmap> {
        if self.pos != self.image_size || self.done.len() != self.mapped.len() {
            return Err(Error::ImageTruncated {
                expected: self.image_size,
                actual: self.pos,
            });
        }
        Ok(Bmap {
            image_size: self.image_size,
            block_size: self.block_size,
            ranges: self.done,
        })
    }
}

/// Finds the blocks of `image` that are not all zeros, as merged ranges
/// (for images from elsewhere, where no allocation map is known). Reads
/// the image once in 1 MiB chunks.
///
/// # Errors
/// [`Error::Io`], [`Error::BmapUnsupported`] for a bad block size.
pub fn nonzero_ranges<R: ReadAt + ?Sized>(image: &R, block_size: u32) -> Result<Vec<BlockRange>> {
    check_block_size(block_size)?;
    let size = image.size().map_err(io_err("sizing the image", 0))?;
    let bs = u64::from(block_size);
    let chunk_len = (1u64 << 20).max(bs);
    let mut buf = vec![0u8; chunk_len as usize];
    let mut out: Vec<BlockRange> = Vec::new();
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(chunk_len);
        let chunk = buf.get_mut(..n as usize).unwrap_or_default();
        image
            .read_exact_at(chunk, off)
            .map_err(io_err("scanning the image", off))?;
        for (i, block) in chunk.chunks(bs as usize).enumerate() {
            if block.iter().any(|&b| b != 0) {
                let b = off / bs + i as u64;
                match out.last_mut() {
                    Some(r) if r.last + 1 == b => r.last = b,
                    _ => out.push(BlockRange { first: b, last: b }),
                }
            }
        }
        off += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<u8> {
        let mut v = vec![0u8; 10 * 4096 + 100];
        v[5] = 1;
        v[4096 * 3 + 7] = 2;
        v[4096 * 4] = 3;
        v[10 * 4096 + 99] = 4;
        v
    }

    #[test]
    fn cover_extents_merges() {
        let r = BlockRange::cover_extents(&[(8192, 1), (0, 4097), (9000, 5000), (20000, 0)], 4096)
            .unwrap();
        assert_eq!(r, vec![BlockRange { first: 0, last: 3 }]);
        let r = BlockRange::cover_extents(&[(0, 1), (3 * 4096, 1)], 4096).unwrap();
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn xml_round_trip_and_checksums() {
        let img = image();
        let mapped = nonzero_ranges(&img, 4096).unwrap();
        assert_eq!(
            mapped,
            vec![
                BlockRange { first: 0, last: 0 },
                BlockRange { first: 3, last: 4 },
                BlockRange {
                    first: 10,
                    last: 10
                }
            ]
        );
        let b = Bmap::from_image(&img, img.len() as u64, 4096, &mapped).unwrap();
        assert_eq!(b.blocks_count(), 11);
        assert_eq!(b.mapped_blocks(), 4);
        assert_eq!(b.ranges()[2].sha256, Sha256Digest::of(&img[40960..]));
        let xml = b.to_xml();
        assert_eq!(Bmap::parse(xml.as_bytes()).unwrap(), b);
        // Stream hasher gives the same bmap and the whole-image digest.
        let mut s = BmapStreamHasher::new(img.len() as u64, 4096, mapped).unwrap();
        s.update(&img[..5000]);
        s.update_zeros(0);
        s.update(&img[5000..5001]);
        s.update(&img[5001..]);
        let (b2, whole) = s.finish().unwrap();
        assert_eq!(b2, b);
        assert_eq!(whole, Sha256Digest::of(&img));
        // Tampering breaks the file checksum.
        let bad = xml.replace("<ImageSize> 41060", "<ImageSize> 41061");
        assert!(matches!(
            Bmap::parse(bad.as_bytes()),
            Err(Error::BmapChecksum { .. })
        ));
    }

    #[test]
    fn invalid_documents() {
        let img = image();
        let mapped = nonzero_ranges(&img, 4096).unwrap();
        let xml = Bmap::from_image(&img, img.len() as u64, 4096, &mapped)
            .unwrap()
            .to_xml();
        for (from, to) in [
            ("<BlocksCount> 11", "<BlocksCount> 12"),
            ("<MappedBlocksCount> 4", "<MappedBlocksCount> 5"),
            ("> 3-4 <", "> 4-3 <"),
            ("> 10 <", "> 11 <"),
            ("> 10 <", "> 4 <"),
            ("sha256 </Checksum", "sha1 </Checksum"),
            ("version=\"2.0\"", "version=\"3.0\""),
            ("</bmap>", ""),
            ("<BlockMap>", "<BlockMap><Foo/>"),
            ("> 10 <", "> x <"),
        ] {
            let bad = xml.replace(from, to);
            assert_ne!(bad, xml, "{from}");
            assert!(Bmap::parse(bad.as_bytes()).is_err(), "{from} -> {to}");
        }
        assert!(Bmap::parse(b"").is_err());
        assert!(Bmap::parse(b"\xff\xfe").is_err());
        assert!(Bmap::parse("<bmap version='2.0'>".repeat(10).as_bytes()).is_err());
    }
}
