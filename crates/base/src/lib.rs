//! Base images for kiln (`kiln build --base IMAGE`, `kiln inspect`): read
//! a vendor OS image as released (raw, xz/gzip/zstd-compressed, zipped,
//! or qcow2/VMDK/VHD), find its balenaOS partitions by label, and read
//! what it says about itself.
//!
//! 1. [`sniff`] tells the input format by magic bytes ([`BaseFormat`],
//!    table in [`format`](mod@format)); [`materialize`] streams any of them into a
//!    raw sparse file and hashes the input on the way.
//! 2. [`detect`] reads the partition table (MBR with extended/logical, or
//!    GPT, via `kiln-part`) and labels each partition from its filesystem
//!    ([`Layout`], [`Role`]; label table in [`layout`]).
//! 3. [`device_info`] (boot partition `device-type.json`/`config.json`),
//!    [`os_info`] (rootA `os-release`, `image-version-info`),
//!    [`Ext4Super`] (free space of the data partition),
//!    [`flasher_inner`]/[`extract_inner`] (the OS image inside an
//!    installer image).
//!
//! Nothing here runs tools, reads the clock or the environment. Inputs are
//! untrusted: sizes are bounded before reading (JSON 1 MiB, text 64 KiB),
//! everything streams through 1 MiB buffers.
//!
//! ```no_run
//! use std::rc::Rc;
//! let out = std::fs::File::create("/tmp/base.raw")?;
//! let m = kiln_base::materialize("balena.img.xz".as_ref(), &out)?;
//! let disk = Rc::new(std::fs::File::open("/tmp/base.raw")?);
//! let layout = kiln_base::detect(&*disk)?;
//! let dev = kiln_base::device_info(&*disk, &layout)?;
//! let os = kiln_base::os_info(&disk, &layout)?;
//! println!("{} {:?} {:?} {:?}", m.disk_bytes, layout.role(kiln_base::Role::Data), dev.slug, os.version);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod error;
pub mod ext4;
mod flasher;
pub mod format;
mod info;
pub mod layout;
mod materialize;

pub use error::Error;
pub use ext4::Ext4Super;
pub use flasher::{extract_inner, flasher_inner, InnerImage};
pub use format::{sniff, sniff_bytes, BaseFormat};
pub use info::{device_info, os_info, parse_os_release, DeviceInfo, OsInfo};
pub use layout::{detect, BasePartition, FsType, Layout, Role, Span};
pub use materialize::{materialize, open_raw, Materialized};
