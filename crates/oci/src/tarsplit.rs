//! Writer of the tar-split metadata (`tar-split.json.gz`) that lets the
//! engine re-create a layer's exact tar from the unpacked files
//! (github.com/vbatts/tar-split, `tar/storage` and `tar/asm`).
//!
//! The file is gzip-compressed newline-delimited JSON. Each line is one
//! entry, numbered by `position` from 0:
//!
//! | `type` | meaning | other keys |
//! |---|---|---|
//! | 2 (segment) | raw bytes copied verbatim: tar headers, PAX/GNU extension members, padding, the end-of-archive blocks | `payload`: the bytes, base64 |
//! | 1 (file) | a member's data, read back from the unpacked file | `name` (or `name_raw`, base64, when not UTF-8), `size` (omitted if 0), `payload`: CRC-64/GO-ISO of the data, 8 bytes big-endian, base64 (`null` when size is 0) |
//!
//! After the last member come two segments, as Go's `archive/tar` reads
//! them: the two-block end-of-archive marker, then everything else to the
//! end of the stream (often empty). With that, the records equal the
//! engine's own disassembly of the same tar (checked in the dockerd test).
//!
//! Concatenating segment payloads and file data in order gives back the
//! layer tar byte for byte, hence the same diff ID.

use base64::Engine as _;
use flate2::write::GzEncoder;
use serde::Serialize;
use std::io::Write;

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_raw: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    size: u64,
    payload: Option<String>,
    position: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Builds a `tar-split.json.gz` in memory (its size is proportional to the
/// layer's tar headers, not its data).
pub(crate) struct TarSplitWriter {
    gz: GzEncoder<Vec<u8>>,
    pos: u64,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl TarSplitWriter {
    pub(crate) fn new() -> Self {
        Self {
            gz: GzEncoder::new(Vec::new(), flate2::Compression::default()),
            pos: 0,
        }
    }

    fn line(&mut self, l: &Line<'_>) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.gz, l)?;
        self.gz.write_all(b"\n")?;
        self.pos = self.pos.saturating_add(1);
        Ok(())
    }

    /// Raw bytes to copy verbatim.
    pub(crate) fn segment(&mut self, raw: &[u8]) -> std::io::Result<()> {
        let payload = Some(B64.encode(raw));
        self.line(&Line {
            kind: 2,
            name: None,
            name_raw: None,
            size: 0,
            payload,
            position: self.pos,
        })
    }

    /// A member's data: its name in the archive, size and checksum.
    pub(crate) fn file(
        &mut self,
        name: &[u8],
        size: u64,
        crc: Option<[u8; 8]>,
    ) -> std::io::Result<()> {
        let (n, raw) = match std::str::from_utf8(name) {
            Ok(s) => (Some(s), None),
            Err(_) => (None, Some(B64.encode(name))),
        };
        self.line(&Line {
            kind: 1,
            name: n,
            name_raw: raw,
            size,
            payload: crc.map(|c| B64.encode(c)),
            position: self.pos,
        })
    }

    /// The gzip-compressed file.
    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        self.gz.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn lines_match_the_go_encoding() {
        let mut w = TarSplitWriter::new();
        w.segment(b"hdr").unwrap();
        w.file(b"etc/passwd", 3, Some([0, 1, 2, 3, 4, 5, 6, 7]))
            .unwrap();
        w.file(b"empty", 0, None).unwrap();
        w.file(b"\xff", 0, None).unwrap();
        let gz = w.finish().unwrap();
        let mut s = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(
            s,
            "{\"type\":2,\"payload\":\"aGRy\",\"position\":0}\n\
             {\"type\":1,\"name\":\"etc/passwd\",\"size\":3,\"payload\":\"AAECAwQFBgc=\",\"position\":1}\n\
             {\"type\":1,\"name\":\"empty\",\"payload\":null,\"position\":2}\n\
             {\"type\":1,\"name_raw\":\"/w==\",\"payload\":null,\"position\":3}\n"
        );
    }
}
