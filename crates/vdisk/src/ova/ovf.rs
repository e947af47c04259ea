//! The OVF 1.0 descriptor (DMTF DSP0243 1.0/1.1 "Open Virtualization
//! Format Specification"; hardware items are CIM
//! `CIM_ResourceAllocationSettingData` instances, elements in schema
//! (alphabetical) order). Written elements:
//!
//! | element | content |
//! |---|---|
//! | `References/File` | the VMDK: `ovf:href`, `ovf:size` (bytes) |
//! | `DiskSection/Disk` | `ovf:capacity` (bytes), `ovf:populatedSize` (bytes of allocated grains), `ovf:format` streamOptimized URI |
//! | `NetworkSection` | one network `NAT` (left out without a NIC) |
//! | `VirtualSystem/ProductSection` | Product, Vendor, Version |
//! | `OperatingSystemSection` | CIM id 101 (Linux 64-bit), `vmw:osType` |
//! | `VirtualHardwareSection` | System (`vmx-14`), CPU (type 3), memory (type 4, MiB), SATA AHCI controller (type 20, `vmware.sata.ahci`, which VirtualBox also reads as AHCI), the disk on it (type 17, `ovf:/disk/vmdisk1`), E1000 NIC (type 10) unless offline, and `vmw:Config firmware` = `bios` or `efi` (what VMware reads) |
//! | `VirtualSystem/vbox:Machine` | UEFI machines only: VirtualBox ignores `vmw:Config` and takes the machine from its own section (settings format 1.16, as VirtualBox 6.x and 7.x export it): CPU count, memory, `Firmware type="EFI"`, IOAPIC, the NIC (Intel PRO/1000 MT, NAT) unless offline, and the disk on an AHCI controller, matched to `DiskSection/Disk/@vbox:uuid` by UUID. BIOS machines have none (VirtualBox's default is BIOS) |

use super::{Firmware, OvaOptions};

/// VirtualBox's OVF extension namespace.
const VBOX_NS: &str = "http://www.virtualbox.org/ovf/machine";

/// The streamOptimized VMDK format URI (DSP0243 §9.3 lets the format be
/// any URI; this is the one VMware, VirtualBox and ovftool recognise).
pub(crate) const VMDK_STREAM_URI: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// XML text with `& < > " '` escaped.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Sizes only known once the disk is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DiskFacts {
    /// Bytes of the VMDK file.
    pub file_size: u64,
    /// Virtual size, bytes.
    pub capacity: u64,
    /// Bytes of allocated grains.
    pub populated: u64,
}

fn item(fields: &[(&str, String)]) -> String {
    let mut s = String::from("      <Item>\n");
    for (k, v) in fields {
        s.push_str(&format!("        <rasd:{k}>{v}</rasd:{k}>\n"));
    }
    s.push_str("      </Item>\n");
    s
}

fn hardware(o: &OvaOptions) -> String {
    let mut s = item(&[
        ("AllocationUnits", "hertz * 10^6".into()),
        ("Description", "Number of virtual CPUs".into()),
        ("ElementName", format!("{} virtual CPU(s)", o.cpus)),
        ("InstanceID", "1".into()),
        ("ResourceType", "3".into()),
        ("VirtualQuantity", o.cpus.to_string()),
    ]);
    s += &item(&[
        ("AllocationUnits", "byte * 2^20".into()),
        ("Description", "Memory Size".into()),
        ("ElementName", format!("{} MB of memory", o.memory_mib)),
        ("InstanceID", "2".into()),
        ("ResourceType", "4".into()),
        ("VirtualQuantity", o.memory_mib.to_string()),
    ]);
    s += &item(&[
        ("Address", "0".into()),
        ("Description", "SATA Controller".into()),
        ("ElementName", "sataController0".into()),
        ("InstanceID", "3".into()),
        ("ResourceSubType", "vmware.sata.ahci".into()),
        ("ResourceType", "20".into()),
    ]);
    s += &item(&[
        ("AddressOnParent", "0".into()),
        ("ElementName", "disk0".into()),
        ("HostResource", "ovf:/disk/vmdisk1".into()),
        ("InstanceID", "4".into()),
        ("Parent", "3".into()),
        ("ResourceType", "17".into()),
    ]);
    if o.network {
        s += &item(&[
            ("AddressOnParent", "0".into()),
            ("AutomaticAllocation", "true".into()),
            ("Connection", "NAT".into()),
            ("Description", "E1000 ethernet adapter on NAT".into()),
            ("ElementName", "ethernet0".into()),
            ("InstanceID", "5".into()),
            ("ResourceSubType", "E1000".into()),
            ("ResourceType", "10".into()),
        ]);
    }
    let fw = match o.firmware {
        Firmware::Bios => "bios",
        Firmware::Efi => "efi",
    };
    s += &format!(
        "      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"{fw}\"/>\n"
    );
    s
}

/// The `vbox:Machine` section VirtualBox reads the firmware from (UEFI
/// machines only; empty for BIOS).
fn vbox_machine(o: &OvaOptions) -> String {
    if o.firmware != Firmware::Efi {
        return String::new();
    }
    let nic = if o.network {
        "        <Network>\n          <Adapter slot=\"0\" enabled=\"true\" type=\"82540EM\">\n            \
         <NAT/>\n          </Adapter>\n        </Network>\n"
    } else {
        ""
    };
    format!(
        "    <vbox:Machine ovf:required=\"false\" version=\"1.16-linux\" uuid=\"{{{machine}}}\" \
name=\"{name}\" OSType=\"Linux_64\" snapshotFolder=\"Snapshots\">\n      \
<ovf:Info>Complete VirtualBox machine configuration in VirtualBox format</ovf:Info>\n      \
<Hardware>\n        <CPU count=\"{cpus}\">\n          <PAE enabled=\"true\"/>\n          \
<LongMode enabled=\"true\"/>\n        </CPU>\n        <Memory RAMSize=\"{mem}\"/>\n        \
<Firmware type=\"EFI\"/>\n        <BIOS>\n          <IOAPIC enabled=\"true\"/>\n        </BIOS>\n\
{nic}        <RTC localOrUTC=\"UTC\"/>\n      </Hardware>\n      <StorageControllers>\n        \
<StorageController name=\"SATA\" type=\"AHCI\" PortCount=\"1\" useHostIOCache=\"false\" Bootable=\"true\">\n          \
<AttachedDevice type=\"HardDisk\" hotpluggable=\"false\" port=\"0\" device=\"0\">\n            \
<Image uuid=\"{{{disk}}}\"/>\n          </AttachedDevice>\n        </StorageController>\n      \
</StorageControllers>\n    </vbox:Machine>\n",
        machine = o.machine_uuid,
        name = esc(&o.name),
        cpus = o.cpus,
        mem = o.memory_mib,
        disk = o.disk_uuid,
    )
}

/// The descriptor of an OVA whose disk file is `vmdk_name`.
pub(crate) fn render(o: &OvaOptions, vmdk_name: &str, disk: DiskFacts) -> String {
    let name = esc(&o.name);
    let network = if o.network {
        "  <NetworkSection>\n    <Info>The list of logical networks</Info>\n    \
         <Network ovf:name=\"NAT\">\n      <Description>The NAT network</Description>\n    \
         </Network>\n  </NetworkSection>\n"
    } else {
        ""
    };
    let mut product = format!("      <Product>{}</Product>\n", esc(&o.product));
    if let Some(v) = &o.vendor {
        product += &format!("      <Vendor>{}</Vendor>\n", esc(v));
    }
    if let Some(v) = &o.version {
        product += &format!("      <Version>{}</Version>\n", esc(v));
    }
    let (vbox_ns, vbox_disk) = if o.firmware == Firmware::Efi {
        (
            format!(" xmlns:vbox=\"{VBOX_NS}\""),
            format!(" vbox:uuid=\"{}\"", o.disk_uuid),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<Envelope ovf:version=\"1.0\" xml:lang=\"en-US\" \
xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" \
xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\" \
xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData\" \
xmlns:vssd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData\" \
xmlns:vmw=\"http://www.vmware.com/schema/ovf\" \
xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"{vbox_ns}>\n\
  <References>\n    <File ovf:href=\"{href}\" ovf:id=\"file1\" ovf:size=\"{file_size}\"/>\n  </References>\n\
  <DiskSection>\n    <Info>Virtual disk information</Info>\n    \
<Disk ovf:capacity=\"{capacity}\" ovf:capacityAllocationUnits=\"byte\" ovf:diskId=\"vmdisk1\" \
ovf:fileRef=\"file1\" ovf:format=\"{uri}\" ovf:populatedSize=\"{populated}\"{vbox_disk}/>\n  </DiskSection>\n\
{network}\
  <VirtualSystem ovf:id=\"{name}\">\n    <Info>A virtual machine</Info>\n    <Name>{name}</Name>\n\
    <ProductSection>\n      <Info>Meta-information about the installed software</Info>\n{product}    </ProductSection>\n\
    <OperatingSystemSection ovf:id=\"101\" vmw:osType=\"otherLinux64Guest\">\n      \
<Info>The kind of installed guest operating system</Info>\n      <Description>Linux 64-bit</Description>\n    \
</OperatingSystemSection>\n\
    <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n      <System>\n        \
<vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n        <vssd:InstanceID>0</vssd:InstanceID>\n        \
<vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>\n        \
<vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>\n      </System>\n\
{hardware}    </VirtualHardwareSection>\n{machine}  </VirtualSystem>\n</Envelope>\n",
        href = esc(vmdk_name),
        file_size = disk.file_size,
        capacity = disk.capacity,
        populated = disk.populated,
        uri = VMDK_STREAM_URI,
        hardware = hardware(o),
        machine = vbox_machine(o),
    )
}
