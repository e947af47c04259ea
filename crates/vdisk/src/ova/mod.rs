//! OVA packages: an OVF descriptor, the disk as a streamOptimized VMDK and
//! a SHA-1 manifest in one ustar archive (DMTF DSP0243 "Open
//! Virtualization Format Specification" §5 "OVF packages", §5.1
//! manifest, §9 virtual disks; ustar in the `tar` module's doc, the descriptor
//! in the `ovf` module's).
//!
//! Archive layout written (all members 512-byte aligned):
//!
//! | archive offset | content |
//! |---:|---|
//! | 0 | ustar header of `NAME.ovf` |
//! | 512 | the descriptor, padded with trailing spaces to its reserved slot |
//! | 512 + slot | ustar header of `NAME-disk1.vmdk` |
//! | 1024 + slot | the streamOptimized VMDK, padded to 512 |
//! | then | ustar header of `NAME.mf`, the manifest (`SHA1(file)= hex`, descriptor then disk), padded |
//! | end | two zero blocks (end of archive) |
//!
//! The descriptor comes first, as every OVF version requires; the manifest
//! comes last (OVF 2.0 §5.3 allows it at the end; VirtualBox writes it
//! there too) because its disk digest is known only once the disk is
//! written. The VMDK is written straight into the archive and hashed as
//! it goes (its writer is strictly front to back); the descriptor's slot
//! is reserved for the widest numbers it can hold and filled last, so the
//! archive is made in one pass with no intermediate file.
//!
//! The manifest holds SHA-1 digests: DSP0243 1.x §5.1 ("The manifest file
//! shall contain SHA-1 digests") for the OVF 1.0 envelope written here;
//! validators that follow the version (COT) check SHA-1 for a 1.x
//! envelope. The whole OVA is covered by SHA-256 where kiln lists it
//! (SHA256SUMS, the build manifest).

mod ovf;
mod tar;
mod writer;

pub use writer::OvaWriter;

use kiln_units::Guid;

use crate::vmdk::VmdkOptions;

/// Firmware the virtual machine boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Firmware {
    /// Legacy BIOS (MBR boards).
    #[default]
    Bios,
    /// UEFI (GPT boards).
    Efi,
}

/// Options of the OVA writer: the virtual machine the descriptor declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvaOptions {
    name: String,
    product: String,
    vendor: Option<String>,
    version: Option<String>,
    cpus: u32,
    memory_mib: u64,
    firmware: Firmware,
    network: bool,
    mtime: u64,
    machine_uuid: Guid,
    disk_uuid: Guid,
    vmdk: VmdkOptions,
}

impl OvaOptions {
    /// A machine named `name` (also the members' file names, made
    /// filesystem safe): 2 CPUs, 2048 MiB, BIOS, one NIC, product `name`.
    pub fn new(name: &str) -> Self {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        Self {
            name: if safe.is_empty() { "disk".into() } else { safe },
            product: name.to_owned(),
            vendor: None,
            version: None,
            cpus: 2,
            memory_mib: 2048,
            firmware: Firmware::Bios,
            network: true,
            mtime: 0,
            machine_uuid: Guid::v4_from_seed([1; 16]),
            disk_uuid: Guid::v4_from_seed([2; 16]),
            vmdk: VmdkOptions::new(),
        }
    }
    /// Product name (ProductSection).
    pub fn product(mut self, s: &str) -> Self {
        s.clone_into(&mut self.product);
        self
    }
    /// Vendor (ProductSection).
    pub fn vendor(mut self, s: Option<&str>) -> Self {
        self.vendor = s.map(str::to_owned);
        self
    }
    /// Version (ProductSection).
    pub fn version(mut self, s: Option<&str>) -> Self {
        self.version = s.map(str::to_owned);
        self
    }
    /// Virtual CPUs (at least 1).
    pub fn cpus(mut self, n: u32) -> Self {
        self.cpus = n.max(1);
        self
    }
    /// Memory, MiB (at least 1).
    pub fn memory_mib(mut self, n: u64) -> Self {
        self.memory_mib = n.max(1);
        self
    }
    /// BIOS or UEFI.
    pub fn firmware(mut self, f: Firmware) -> Self {
        self.firmware = f;
        self
    }
    /// Whether the machine has a NIC (off for a strictly offline appliance).
    pub fn network(mut self, on: bool) -> Self {
        self.network = on;
        self
    }
    /// Modification time of the archive members, Unix seconds.
    pub fn mtime(mut self, secs: u64) -> Self {
        self.mtime = secs;
        self
    }
    /// The VirtualBox machine and disk UUIDs of the `vbox:Machine` section
    /// written for UEFI machines (VirtualBox matches the disk to its
    /// attachment by the UUID).
    pub fn vbox_uuids(mut self, machine: Guid, disk: Guid) -> Self {
        self.machine_uuid = machine;
        self.disk_uuid = disk;
        self
    }
    /// Options of the streamOptimized VMDK inside (CID, adapter, threads;
    /// its extent file name is set to the member's name).
    pub fn vmdk(mut self, o: VmdkOptions) -> Self {
        self.vmdk = o;
        self
    }
    /// The descriptor's member name, `NAME.ovf`.
    pub fn ovf_name(&self) -> String {
        format!("{}.ovf", self.name)
    }
    /// The disk's member name, `NAME-disk1.vmdk`.
    pub fn vmdk_name(&self) -> String {
        format!("{}-disk1.vmdk", self.name)
    }
    /// The manifest's member name, `NAME.mf`.
    pub fn mf_name(&self) -> String {
        format!("{}.mf", self.name)
    }
}
