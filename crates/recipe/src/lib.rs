//! Board profiles and recipes: the two TOML inputs of a kiln build,
//! parsed with serde (`deny_unknown_fields`, kebab-case keys) into private
//! wire structs and validated once into the typed [`BoardProfile`] and
//! [`Recipe`] the pipeline uses.
//!
//! Every error names the file, the line and column, and the key; an
//! unknown key comes with the closest valid one ("did you mean").
//!
//! ```
//! use kiln_recipe::BoardProfile;
//! let toml = r#"
//! name = "demo"
//! description = "example"
//! arch = "amd64"
//! table = "gpt"
//! media = ["8GB"]
//! device-type = "generic-amd64"
//! [[partition]]
//! label = "resin-boot"
//! role = "boot"
//! fs = "fat16"
//! size = "40MiB"
//! [[partition]]
//! label = "resin-rootA"
//! role = "root-a"
//! fs = "ext4"
//! size = "1000MiB"
//! [[partition]]
//! label = "resin-data"
//! role = "data"
//! fs = "ext4"
//! size = "auto"
//! "#;
//! let p = BoardProfile::from_toml_str(toml, "demo.toml".as_ref()).unwrap();
//! assert_eq!(p.partitions.len(), 3);
//! ```
//!
//! # Errors
//! [`Error`]: I/O on a profile, recipe or referenced file; TOML syntax and
//! schema errors with location; semantic validation errors.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod config;
mod error;
mod installer;
mod profile;
mod recipe;
mod sign;
mod span;
mod vm;

pub use config::{
    record_secrets, recorded_secrets, redact_known, ConfigValue, EnvLookup, ResolvedConfig,
    REDACTED, SECRET_RECORD_KEY,
};
pub use error::{Error, Location};
pub use installer::{InstallerSpec, TargetRule};
pub use profile::{
    Arch, BoardProfile, FsKind, Media, PartSize, PartitionSpec, Platform, Role, TableKind,
};
pub use recipe::{
    AppImage, AppSpec, BaseSpec, BootExtra, BuildSpec, DataSize, DataSpec, InputPath, OsSpec,
    OutputSpec, Recipe, SwapActivation, SwapSpec,
};
pub use sign::{SecretRef, SecretSource, SignSpec};
pub use vm::VmSpec;
