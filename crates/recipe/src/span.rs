//! Locations in TOML sources and "did you mean" suggestions.

use crate::Location;
use std::path::Path;

/// The 1-based line and column of byte `offset` in `src`.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let upto = src.get(..offset.min(src.len())).unwrap_or(src);
    let line = upto.matches('\n').count() + 1;
    let col = upto
        .rfind('\n')
        .map_or(upto.len(), |nl| upto.len() - nl - 1)
        + 1;
    (line, col)
}

/// A [`Location`] for a byte span of a file.
pub(crate) fn locate(file: &Path, src: &str, span: Option<std::ops::Range<usize>>) -> Location {
    let (line, column) = span.map_or((0, 0), |s| line_col(src, s.start));
    Location {
        file: file.to_path_buf(),
        line,
        column,
    }
}

/// Levenshtein distance (small inputs only: keys).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lw = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&lw, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Pulls the backquoted names out of serde's
/// "unknown field `x`, expected one of `a`, `b`" message.
pub(crate) fn unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.split("unknown field `").nth(1)?;
    let (name, tail) = rest.split_once('`')?;
    let expected = tail
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((name.to_string(), expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let s = "a = 1\nbb = 2\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 6), (2, 1));
        assert_eq!(line_col(s, 9), (2, 4));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            closest("hostnme", ["hostname", "headroom"]),
            Some("hostname")
        );
        assert_eq!(closest("rootf", ["rootfs", "boot"]), Some("rootfs"));
        assert_eq!(closest("zzzzzzzz", ["rootfs", "boot"]), None);
        let (n, e) =
            unknown_field("unknown field `hedroom`, expected one of `headroom`, `size`").unwrap();
        assert_eq!(n, "hedroom");
        assert_eq!(e, ["headroom", "size"]);
        let (n, e) = unknown_field("unknown field `x`, expected `size`").unwrap();
        assert_eq!((n.as_str(), e), ("x", vec!["size".to_string()]));
    }
}
