//! `kiln boards` and `kiln recipes`: what the profile and recipe
//! directories hold.

use crate::env::list_dir;
use anyhow::Result;
use kiln_recipe::{BoardProfile, Recipe};

/// Runs `kiln boards`.
pub fn boards() -> Result<()> {
    for (name, path) in list_dir("board-profiles") {
        match BoardProfile::load(&path) {
            Ok(p) => outln!(
                "{name:<14} {:<6} {:<4} media {:<28} {}",
                p.arch.as_str(),
                format!("{:?}", p.table).to_lowercase(),
                p.media
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                p.description
            ),
            Err(e) => outln!("{name:<14} (invalid: {e})"),
        }
    }
    Ok(())
}

/// Runs `kiln recipes`.
pub fn recipes() -> Result<()> {
    for (name, path) in list_dir("recipes") {
        match Recipe::load(&path) {
            Ok(r) => outln!(
                "{name:<14} arch {:<12} {}",
                r.os.keys()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                r.description
            ),
            Err(e) => outln!("{name:<14} (invalid: {e})"),
        }
    }
    Ok(())
}
