//! The structure rules of issue 15, checked from the sources:
//! - no import cycle between the source files of a crate (edges from
//!   `crate::a::b` paths, `use crate::{a, b}` groups and `super::` paths,
//!   resolved to the module files that define them; test modules are
//!   left out, and a parent declaring its children is not an import);
//! - no file over 800 lines in `crates/pipeline` and `crates/base`;
//! - the README's crate table names exactly each crate's kiln
//!   dependencies (from its `Cargo.toml`).
//!
//! Function length is clippy's `too_many_lines` (120, denied in the
//! workspace lints), so it is not repeated here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn crates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("crates"))
        .expect("crates/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    v.sort();
    v
}

type Module = Vec<String>;

/// Module path -> file, for every `.rs` file under `src`.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut todo = vec![src.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src).expect("under src").with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    parts.last().map(String::as_str),
                    Some("lib" | "main" | "mod")
                ) {
                    parts.pop();
                }
                out.insert(parts, p);
            }
        }
    }
    out
}

/// The text without `#[cfg(test)] mod x { ... }` blocks.
fn strip_tests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]") {
        let after = &rest[i + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        if !trimmed.starts_with("mod ") {
            out.push_str(&rest[..i + "#[cfg(test)]".len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..i]);
        let Some(open) = after.find('{') else {
            rest = "";
            break;
        };
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn ident_path(s: &str) -> Vec<String> {
    let mut segs = Vec::new();
    let mut rest = s;
    while let Some(r) = rest.strip_prefix("::") {
        let n = r
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(r.len());
        if n == 0 {
            break;
        }
        segs.push(r[..n].to_string());
        rest = &r[n..];
    }
    segs
}

/// The longest prefix of `segs` that names a module file.
fn resolve(mods: &BTreeMap<Module, PathBuf>, segs: &[String]) -> Option<Module> {
    (1..=segs.len())
        .rev()
        .map(|k| segs[..k].to_vec())
        .find(|m| mods.contains_key(m))
}

fn is_word_start(text: &str, i: usize) -> bool {
    text[..i]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
}

fn edges(mods: &BTreeMap<Module, PathBuf>, m: &Module, text: &str) -> BTreeSet<Module> {
    let mut out = BTreeSet::new();
    for (kw, base) in [
        ("crate", Vec::new()),
        ("super", m[..m.len().saturating_sub(1)].to_vec()),
    ] {
        for (i, _) in text.match_indices(kw) {
            if !is_word_start(text, i) {
                continue;
            }
            let after = &text[i + kw.len()..];
            if let Some(group) = after.strip_prefix("::{") {
                for item in group.split('}').next().unwrap_or("").split(',') {
                    let segs = ident_path(&format!("::{}", item.trim()));
                    let full: Vec<String> = base.iter().cloned().chain(segs).collect();
                    out.extend(resolve(mods, &full));
                }
            } else {
                let full: Vec<String> = base.iter().cloned().chain(ident_path(after)).collect();
                out.extend(resolve(mods, &full));
            }
        }
    }
    out.retain(|e| e != m && !e.is_empty() && !e.starts_with(m));
    out
}

/// Strongly connected components with more than one module.
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    // Kosaraju: order by finish time, then walk the reversed graph.
    fn visit(
        v: &Module,
        g: &BTreeMap<Module, BTreeSet<Module>>,
        seen: &mut BTreeSet<Module>,
        out: &mut Vec<Module>,
    ) {
        if !seen.insert(v.clone()) {
            return;
        }
        for w in g.get(v).into_iter().flatten() {
            visit(w, g, seen, out);
        }
        out.push(v.clone());
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for v in graph.keys() {
        visit(v, graph, &mut seen, &mut order);
    }
    let mut rev: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (v, ws) in graph {
        for w in ws {
            rev.entry(w.clone()).or_default().insert(v.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let mut comps = Vec::new();
    for v in order.iter().rev() {
        let mut comp = Vec::new();
        visit(v, &rev, &mut seen, &mut comp);
        if comp.len() > 1 {
            comps.push(comp);
        }
    }
    comps
}

#[test]
fn no_import_cycle_between_source_files() {
    let mut bad = Vec::new();
    for c in crates() {
        let mods = modules(&c.join("src"));
        let mut graph = BTreeMap::new();
        for (m, f) in &mods {
            let text = strip_tests(&std::fs::read_to_string(f).expect("read"));
            graph.insert(m.clone(), edges(&mods, m, &text));
        }
        for comp in cycles(&graph) {
            let mut names: Vec<String> = comp
                .iter()
                .map(|m| {
                    mods[m]
                        .strip_prefix(repo())
                        .unwrap_or(&mods[m])
                        .display()
                        .to_string()
                })
                .collect();
            names.sort();
            bad.push(names.join(" <-> "));
        }
    }
    assert!(bad.is_empty(), "import cycles:\n{}", bad.join("\n"));
}

#[test]
fn the_cycle_finder_finds_one() {
    // The check above must be able to fail: a <-> b is a cycle, c is not in it.
    let m = |s: &str| vec![s.to_string()];
    let graph = BTreeMap::from([
        (m("a"), BTreeSet::from([m("b")])),
        (m("b"), BTreeSet::from([m("a"), m("c")])),
        (m("c"), BTreeSet::new()),
    ]);
    let comps = cycles(&graph);
    assert_eq!(comps.len(), 1);
    assert_eq!(comps[0].len(), 2);
    let mods = BTreeMap::from([(m("a"), PathBuf::new()), (m("b"), PathBuf::new())]);
    let e = edges(
        &mods,
        &m("a"),
        "use crate::{b::X, c};\nfn f() { super::b::g() }",
    );
    assert_eq!(e, BTreeSet::from([m("b")]));
}

#[test]
fn orchestration_files_stay_under_800_lines() {
    let mut bad = Vec::new();
    for c in ["pipeline", "base"] {
        for f in modules(&repo().join("crates").join(c).join("src")).values() {
            let n = std::fs::read_to_string(f).expect("read").lines().count();
            if n > 800 {
                bad.push(format!("{}: {n} lines", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// `kiln-*` names in the `[dependencies]` section of a Cargo.toml.
fn kiln_deps(toml: &str) -> BTreeSet<String> {
    let mut in_deps = false;
    let mut out = BTreeSet::new();
    for line in toml.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_deps = l == "[dependencies]";
            continue;
        }
        if in_deps && l.starts_with("kiln-") {
            let name = l.split(['=', '.', ' ']).next().unwrap_or("");
            out.insert(name.to_string());
        }
    }
    out
}

#[test]
fn readme_crate_table_is_true() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    // The rows of the table in "## Crates":
    // | `kiln-x` | job | `kiln-a`, `kiln-b` |
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Crates\n"))
        .expect("README has a Crates section");
    let mut table: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `kiln")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let deps = cells[3]
            .split(',')
            .map(|d| d.trim().trim_matches('`').to_string())
            .filter(|d| d.starts_with("kiln-"))
            .collect();
        table.insert(name, deps);
    }
    let mut actual = BTreeMap::new();
    for c in crates() {
        let toml = std::fs::read_to_string(c.join("Cargo.toml")).expect("Cargo.toml");
        let name = toml
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .expect("package name")
            .trim_matches('"')
            .to_string();
        actual.insert(name, kiln_deps(&toml));
    }
    assert_eq!(
        table, actual,
        "README's crate table (left) differs from the Cargo.toml files (right)"
    );
}
