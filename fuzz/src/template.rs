//! The `oci` target's input format: a container image (OCI image layout
//! or `docker save` directory) as a list of files whose cross-references
//! are tokens, so mutated JSON still reaches the parsers instead of
//! failing the digest check in front of them.
//!
//! Input: segments separated by [`SEP`]; each is `name\n` then the file's
//! bytes. In names and bytes, `@D<n>@` becomes `sha256:<hex>` of segment
//! `n`, `@H<n>@` the bare hex and `@S<n>@` its size in bytes. Bytes may
//! only name later segments (they are resolved last to first); names may
//! name any segment, including their own. Names with `..`, a leading `/`
//! or bytes outside `[A-Za-z0-9._/-]` are skipped.
//!
//! `kiln-fuzz pack-oci DIR` turns a real image directory into this form
//! (see [`pack`]).

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// Segment separator.
pub const SEP: &[u8] = b"\n\x00--kiln-fuzz-segment--\x00\n";

fn hex(d: &[u8]) -> String {
    Sha256::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn split(data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let (seg, next) = match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(p) => (&rest[..p], Some(&rest[p + SEP.len()..])),
            None => (rest, None),
        };
        let nl = seg.iter().position(|&b| b == b'\n').unwrap_or(seg.len());
        let body = seg.get(nl + 1..).unwrap_or(&[]);
        out.push((&seg[..nl], body));
        match next {
            Some(n) => rest = n,
            None => return out,
        }
    }
}

/// Replaces the tokens of `src` that name a resolved segment.
fn resolve(src: &[u8], done: &BTreeMap<usize, (String, usize)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        if src[i] == b'@' && i + 2 < src.len() && matches!(src[i + 1], b'D' | b'H' | b'S') {
            let digits = src[i + 2..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let end = i + 2 + digits;
            if digits > 0 && digits < 6 && src.get(end) == Some(&b'@') {
                let n: usize = std::str::from_utf8(&src[i + 2..end])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                if let Some((h, size)) = done.get(&n) {
                    match src[i + 1] {
                        b'D' => out.extend_from_slice(format!("sha256:{h}").as_bytes()),
                        b'H' => out.extend_from_slice(h.as_bytes()),
                        _ => out.extend_from_slice(size.to_string().as_bytes()),
                    }
                    i = end + 1;
                    continue;
                }
            }
        }
        out.push(src[i]);
        i += 1;
    }
    out
}

fn safe_name(name: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(name).ok()?;
    let ok = !s.is_empty()
        && !s.starts_with('/')
        && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
    ok.then_some(s)
}

/// Writes the files of a template input under `dir`; returns how many.
///
/// # Errors
/// Creating or writing a file (a name that is both a file and a
/// directory, for instance).
pub fn materialize(data: &[u8], dir: &Path) -> std::io::Result<u64> {
    let segs = split(data);
    let mut done: BTreeMap<usize, (String, usize)> = BTreeMap::new();
    let mut bodies = vec![Vec::new(); segs.len()];
    for (i, (_, body)) in segs.iter().enumerate().rev() {
        let b = resolve(body, &done);
        done.insert(i, (hex(&b), b.len()));
        bodies[i] = b;
    }
    let mut n = 0;
    for ((name, _), body) in segs.iter().zip(&bodies) {
        let name = resolve(name, &done);
        let Some(name) = safe_name(&name) else {
            continue;
        };
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, body)?;
        n += 1;
    }
    Ok(n)
}

/// Sizes of descriptors are replaced by this plus the segment index while
/// packing, then by `@S<n>@`.
const SIZE_SENTINEL: u64 = 987_654_321_000;

fn walk_sizes(v: &mut serde_json::Value, index: &BTreeMap<String, usize>) {
    match v {
        serde_json::Value::Object(m) => {
            let target = m
                .get("digest")
                .and_then(|d| d.as_str())
                .and_then(|d| d.strip_prefix("sha256:"))
                .and_then(|h| index.get(h))
                .copied();
            if let (Some(n), Some(size)) = (target, m.get_mut("size")) {
                *size = serde_json::Value::from(SIZE_SENTINEL + n as u64);
            }
            m.values_mut().for_each(|x| walk_sizes(x, index));
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk_sizes(x, index)),
        _ => {}
    }
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Packs the image directory `dir` into a template input: files ordered
/// so that every file comes before the files it names, digests, hex names
/// and descriptor sizes turned into tokens.
///
/// # Errors
/// Reading the directory.
pub fn pack(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                files.push((rel, std::fs::read(&p)?));
            }
        }
    }
    files.sort();
    let hexes: Vec<String> = files.iter().map(|(_, b)| hex(b)).collect();
    // Referencers first: order by "is named by" depth (a file named by
    // nobody is a root; a blob named by a manifest comes after it).
    let names =
        |i: usize, j: usize| i != j && files[i].1.windows(64).any(|w| w == hexes[j].as_bytes());
    let mut depth = vec![0usize; files.len()];
    for _ in 0..files.len() {
        for i in 0..files.len() {
            for j in 0..files.len() {
                if names(i, j) && depth[j] <= depth[i] {
                    depth[j] = depth[i] + 1;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| (depth[i], files[i].0.clone()));
    let index: BTreeMap<String, usize> = order
        .iter()
        .enumerate()
        .map(|(n, &i)| (hexes[i].clone(), n))
        .collect();
    let mut out = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        let (name, body) = &files[i];
        let mut body = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(mut v) if v.is_object() || v.is_array() => {
                walk_sizes(&mut v, &index);
                serde_json::to_vec(&v).unwrap_or_else(|_| body.clone())
            }
            _ => body.clone(),
        };
        let mut name = name.clone().into_bytes();
        for (h, &k) in &index {
            let sentinel = (SIZE_SENTINEL + k as u64).to_string();
            body = replace(&body, sentinel.as_bytes(), format!("@S{k}@").as_bytes());
            body = replace(
                &body,
                format!("sha256:{h}").as_bytes(),
                format!("@D{k}@").as_bytes(),
            );
            body = replace(&body, h.as_bytes(), format!("@H{k}@").as_bytes());
            name = replace(&name, h.as_bytes(), format!("@H{k}@").as_bytes());
        }
        if n > 0 {
            out.extend_from_slice(SEP);
        }
        out.extend_from_slice(&name);
        out.push(b'\n');
        out.extend_from_slice(&body);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_resolve_to_later_segments_and_own_name() {
        let input = [
            &b"index.json\n{\"d\":\"@D1@\",\"s\":@S1@}"[..],
            SEP,
            b"blobs/sha256/@H1@\nhello",
        ]
        .concat();
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(materialize(&input, dir.path()).unwrap(), 2);
        let h = hex(b"hello");
        let idx = std::fs::read_to_string(dir.path().join("index.json")).unwrap();
        assert_eq!(idx, format!("{{\"d\":\"sha256:{h}\",\"s\":5}}"));
        assert_eq!(
            std::fs::read(dir.path().join(format!("blobs/sha256/{h}"))).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn hostile_names_are_skipped() {
        let input = [&b"../x\na"[..], SEP, b"/etc/y\nb", SEP, b"ok\nc"].concat();
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(materialize(&input, dir.path()).unwrap(), 1);
    }

    #[test]
    fn pack_then_materialize_gives_the_files_back() {
        let src = tempfile::tempdir().unwrap();
        let blob = b"layer bytes";
        let h = hex(blob);
        std::fs::create_dir_all(src.path().join("blobs/sha256")).unwrap();
        std::fs::write(src.path().join("blobs/sha256").join(&h), blob).unwrap();
        let idx = format!("{{\"manifests\":[{{\"digest\":\"sha256:{h}\",\"size\":11}}]}}");
        std::fs::write(src.path().join("index.json"), &idx).unwrap();
        let packed = pack(src.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        assert_eq!(materialize(&packed, out.path()).unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(out.path().join("index.json")).unwrap(),
            idx
        );
        assert_eq!(
            std::fs::read(out.path().join("blobs/sha256").join(&h)).unwrap(),
            blob
        );
    }
}
