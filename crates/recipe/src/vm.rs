//! `[vm]`: the virtual machine an OVA output declares (CPUs, memory, NIC,
//! product information); the firmware follows the board's partition
//! table.

use kiln_units::ByteSize;
use serde::Deserialize;
use toml::Spanned;

use crate::Error;

/// The wire form of `[vm]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct WireVm {
    cpus: Option<Spanned<u32>>,
    memory: Option<Spanned<ByteSize>>,
    network: Option<bool>,
    product: Option<String>,
    vendor: Option<String>,
    version: Option<String>,
}

/// `[vm]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// Virtual CPUs (1 to 128; default 2).
    pub cpus: u32,
    /// Memory in MiB (64 MiB to 1 TiB, whole MiB; default 2 GiB).
    pub memory_mib: u64,
    /// Whether the machine has a NIC (default true; false for a strictly
    /// offline appliance).
    pub network: bool,
    /// Product name (default: the recipe's name).
    pub product: Option<String>,
    /// Vendor.
    pub vendor: Option<String>,
    /// Version.
    pub version: Option<String>,
}

impl Default for VmSpec {
    fn default() -> Self {
        Self {
            cpus: 2,
            memory_mib: 2048,
            network: true,
            product: None,
            vendor: None,
            version: None,
        }
    }
}

/// Validates `[vm]`; `invalid(span, key, reason)` makes the located error.
pub(crate) fn vm_spec(
    w: Option<WireVm>,
    invalid: &dyn Fn(std::ops::Range<usize>, &str, String) -> Error,
) -> Result<VmSpec, Error> {
    let Some(w) = w else {
        return Ok(VmSpec::default());
    };
    let mut vm = VmSpec::default();
    if let Some(c) = w.cpus {
        if !(1..=128).contains(c.get_ref()) {
            return Err(invalid(c.span(), "vm.cpus", "use 1 to 128".into()));
        }
        vm.cpus = c.into_inner();
    }
    if let Some(m) = w.memory {
        let bytes = m.get_ref().bytes();
        if bytes % (1 << 20) != 0 || !(64 << 20..=1 << 40).contains(&bytes) {
            return Err(invalid(
                m.span(),
                "vm.memory",
                "use whole MiB from 64MiB to 1TiB".into(),
            ));
        }
        vm.memory_mib = bytes >> 20;
    }
    vm.network = w.network.unwrap_or(true);
    vm.product = w.product;
    vm.vendor = w.vendor;
    vm.version = w.version;
    Ok(vm)
}
