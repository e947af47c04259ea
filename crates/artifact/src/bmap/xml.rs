#![warn(clippy::arithmetic_side_effects, clippy::as_conversions)]
//! A minimal, strict, bounded XML tokenizer for bmap files.
//!
//! Supports exactly what bmap files use: one XML declaration, comments,
//! elements with quoted attributes, character data and the five predefined
//! entities. DOCTYPE, CDATA, processing instructions after the prolog and
//! any other entity reference are refused, so no hostile document can make
//! the parser expand entities or recurse. Every index goes through
//! `get`, so malformed input yields an error, never a panic.

use crate::error::Error;

/// One token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// `<name a="v">` (`self_closing` for `<name/>`).
    Start {
        name: &'a str,
        attrs: Vec<(&'a str, String)>,
        self_closing: bool,
        offset: usize,
    },
    /// `</name>`.
    End { name: &'a str, offset: usize },
    /// Character data between tags, entities resolved.
    Text { text: String, offset: usize },
}

/// Maximum attributes on one element (bmap uses at most one).
const MAX_ATTRS: usize = 8;

pub(crate) struct Tokenizer<'a> {
    src: &'a str,
    pos: usize,
    seen_element: bool,
}

fn syntax(offset: usize, reason: &'static str) -> Error {
    Error::BmapSyntax { offset, reason }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

pub(crate) fn unescape(raw: &str, offset: usize) -> Result<String, Error> {
    if !raw.contains('&') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(rest.get(..i).unwrap_or_default());
        let tail = rest.get(i..).unwrap_or_default();
        let (rep, len) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&apos;", '\''),
        ]
        .iter()
        .find(|(e, _)| tail.starts_with(e))
        .map(|(e, c)| (*c, e.len()))
        .ok_or_else(|| syntax(offset, "only the five predefined entities are allowed"))?;
        out.push(rep);
        rest = tail.get(len..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

impl<'a> Tokenizer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self {
            src,
            pos: 0,
            seen_element: false,
        }
    }

    /// Moves forward, never past the end of the input.
    fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.src.len());
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn skip_until(&mut self, end: &str, reason: &'static str) -> Result<&'a str, Error> {
        let rest = self.rest();
        let i = rest.find(end).ok_or_else(|| syntax(self.pos, reason))?;
        let inner = rest.get(..i).unwrap_or_default();
        self.advance(i.saturating_add(end.len()));
        Ok(inner)
    }

    fn name(&mut self) -> Result<&'a str, Error> {
        let rest = self.rest();
        let len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        if len == 0 {
            return Err(syntax(self.pos, "expected a name"));
        }
        self.advance(len);
        Ok(rest.get(..len).unwrap_or_default())
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        let n = rest
            .len()
            .saturating_sub(rest.trim_start_matches([' ', '\t', '\r', '\n']).len());
        self.advance(n);
    }

    /// Next token, or `None` at the end of input.
    pub(crate) fn next_token(&mut self) -> Result<Option<Token<'a>>, Error> {
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return Ok(None);
            }
            let start = self.pos;
            if let Some(after) = rest.strip_prefix("<?") {
                if self.seen_element || start != 0 || !after.starts_with("xml") {
                    return Err(syntax(start, "processing instructions are not allowed"));
                }
                self.skip_until("?>", "unterminated XML declaration")?;
                continue;
            }
            if rest.starts_with("<!--") {
                self.advance(4);
                self.skip_until("-->", "unterminated comment")?;
                continue;
            }
            if rest.starts_with("<!") {
                return Err(syntax(start, "DOCTYPE and CDATA are not allowed"));
            }
            if rest.starts_with("</") {
                self.advance(2);
                let name = self.name()?;
                self.skip_ws();
                if !self.rest().starts_with('>') {
                    return Err(syntax(self.pos, "expected '>'"));
                }
                self.advance(1);
                return Ok(Some(Token::End {
                    name,
                    offset: start,
                }));
            }
            if rest.starts_with('<') {
                self.advance(1);
                let name = self.name()?;
                let mut attrs = Vec::new();
                loop {
                    self.skip_ws();
                    let r = self.rest();
                    if r.starts_with("/>") {
                        self.advance(2);
                        self.seen_element = true;
                        return Ok(Some(Token::Start {
                            name,
                            attrs,
                            self_closing: true,
                            offset: start,
                        }));
                    }
                    if r.starts_with('>') {
                        self.advance(1);
                        self.seen_element = true;
                        return Ok(Some(Token::Start {
                            name,
                            attrs,
                            self_closing: false,
                            offset: start,
                        }));
                    }
                    if attrs.len() >= MAX_ATTRS {
                        return Err(syntax(self.pos, "too many attributes"));
                    }
                    let aname = self.name()?;
                    self.skip_ws();
                    if !self.rest().starts_with('=') {
                        return Err(syntax(self.pos, "expected '=' after attribute name"));
                    }
                    self.advance(1);
                    self.skip_ws();
                    let quote = match self.rest().chars().next() {
                        Some(q @ ('"' | '\'')) => q,
                        _ => return Err(syntax(self.pos, "expected a quoted attribute value")),
                    };
                    self.advance(1);
                    let vpos = self.pos;
                    let raw = self.skip_until(
                        if quote == '"' { "\"" } else { "'" },
                        "unterminated attribute value",
                    )?;
                    if raw.contains('<') {
                        return Err(syntax(vpos, "'<' in attribute value"));
                    }
                    if attrs.iter().any(|(n, _)| *n == aname) {
                        return Err(syntax(vpos, "duplicate attribute"));
                    }
                    attrs.push((aname, unescape(raw, vpos)?));
                }
            }
            let len = rest.find('<').unwrap_or(rest.len());
            let raw = rest.get(..len).unwrap_or_default();
            self.advance(len);
            if raw.contains('>') && raw.contains("]]>") {
                return Err(syntax(start, "']]>' in text"));
            }
            return Ok(Some(Token::Text {
                text: unescape(raw, start)?,
                offset: start,
            }));
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let src = "<?xml version=\"1.0\" ?>\n<!-- c -->\n<a x='1 &amp; 2'><b/>t&lt;</a>";
        let mut t = Tokenizer::new(src);
        let mut names = Vec::new();
        while let Some(tok) = t.next_token().unwrap() {
            match tok {
                Token::Start { name, attrs, .. } => names.push(format!(
                    "<{name}{}",
                    attrs
                        .iter()
                        .map(|(k, v)| format!(" {k}={v}"))
                        .collect::<String>()
                )),
                Token::End { name, .. } => names.push(format!("</{name}")),
                Token::Text { text, .. } => names.push(format!("T{}", text.trim())),
            }
        }
        assert_eq!(names, ["T", "T", "<a x=1 & 2", "<b", "Tt<", "</a"]);
    }

    #[test]
    fn refusals() {
        for bad in [
            "<!DOCTYPE x [<!ENTITY a \"b\">]><a/>",
            "<a>&a;</a>",
            "<a><![CDATA[x]]></a>",
            "<a x=1/>",
            "<a x='1' x='2'/>",
            "<!-- never closed",
            "<a/><?pi?>",
            "<a x='<'/>",
            "< a/>",
        ] {
            let mut t = Tokenizer::new(bad);
            let mut r = Ok(None);
            for _ in 0..10 {
                r = t.next_token();
                if !matches!(r, Ok(Some(_))) {
                    break;
                }
            }
            assert!(r.is_err(), "{bad}");
        }
    }
}
