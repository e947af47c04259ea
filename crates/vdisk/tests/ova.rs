//! OVA: `tar -tf` order (descriptor first), every `.mf` digest checked
//! by `sha1sum -c`, the descriptor well-formed (`xmllint`) with the
//! hardware asked for, the VMDK inside identical to the raw image
//! (`qemu-img compare`), and byte-reproducible.
#![cfg(feature = "ova")]

mod common;

use std::process::Command;

use common::*;
use kiln_vdisk::{Firmware, OutputFormat, OvaOptions};

fn opts(network: bool, firmware: Firmware) -> OutputFormat {
    OutputFormat::Ova(
        OvaOptions::new("bob appliance")
            .product("BoB <on-prem>")
            .vendor(Some("ACME & Co"))
            .version(Some("1.2.3"))
            .cpus(3)
            .memory_mib(3072)
            .firmware(firmware)
            .network(network)
            .mtime(1_700_000_000),
    )
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn ova_members_digests_descriptor_and_disk() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let ova = d.path("out.ova");
    write_with(&raw, &ova, &opts(true, Firmware::Efi));
    let list = run(Command::new("tar").arg("-tf").arg(&ova));
    assert_eq!(
        list,
        "bob_appliance.ovf\nbob_appliance-disk1.vmdk\nbob_appliance.mf\n"
    );
    let x = d.path("x");
    std::fs::create_dir(&x).unwrap();
    run(Command::new("tar").arg("-xf").arg(&ova).arg("-C").arg(&x));
    // The manifest (SHA-1, as OVF 1.x asks), in sha1sum's BSD form,
    // checked by sha1sum itself.
    let mf = std::fs::read_to_string(x.join("bob_appliance.mf")).unwrap();
    assert_eq!(mf.lines().count(), 2, "{mf}");
    assert!(mf.lines().all(|l| l.starts_with("SHA1(")), "{mf}");
    let ck = run(Command::new("sha1sum")
        .args(["-c", "bob_appliance.mf"])
        .current_dir(&x));
    assert_eq!(ck.matches(": OK").count(), 2, "{ck}");
    let vmdk = x.join("bob_appliance-disk1.vmdk");
    assert_check("vmdk", &vmdk);
    assert_identical(&raw, "vmdk", &vmdk);
    let j = info(Some("vmdk"), &vmdk);
    assert_eq!(
        j["format-specific"]["data"]["create-type"],
        "streamOptimized"
    );
    // The descriptor: well-formed XML with the sizes and hardware asked for.
    let ovf = x.join("bob_appliance.ovf");
    run(Command::new("xmllint").arg("--noout").arg(&ovf));
    let q = |xpath: &str| {
        run(Command::new("xmllint").args(["--xpath", xpath]).arg(&ovf))
            .trim()
            .to_owned()
    };
    let size = std::fs::metadata(&vmdk).unwrap().len();
    assert_eq!(
        q("string(//*[local-name()='File']/@*[local-name()='size'])"),
        size.to_string()
    );
    assert_eq!(
        q("string(//*[local-name()='Disk']/@*[local-name()='capacity'])"),
        std::fs::metadata(&raw).unwrap().len().to_string()
    );
    let populated: u64 = q("string(//*[local-name()='Disk']/@*[local-name()='populatedSize'])")
        .parse()
        .unwrap();
    assert!(populated > 0 && populated % 65536 == 0, "{populated}");
    let by_type = |t: u32, field: &str| {
        q(&format!(
            "string(//*[local-name()='Item'][*[local-name()='ResourceType']='{t}']/*[local-name()='{field}'])"
        ))
    };
    assert_eq!(by_type(3, "VirtualQuantity"), "3");
    assert_eq!(by_type(4, "VirtualQuantity"), "3072");
    assert_eq!(by_type(4, "AllocationUnits"), "byte * 2^20");
    assert_eq!(by_type(20, "ResourceSubType"), "vmware.sata.ahci");
    assert_eq!(by_type(17, "Parent"), by_type(20, "InstanceID"));
    assert_eq!(by_type(17, "HostResource"), "ovf:/disk/vmdisk1");
    assert_eq!(by_type(10, "ResourceSubType"), "E1000");
    assert_eq!(
        q("string(//*[local-name()='Config'][@*[local-name()='key']='firmware']/@*[local-name()='value'])"),
        "efi"
    );
    // VirtualBox's own section: UEFI, the same CPUs, memory and NIC, the
    // disk attached by the UUID the DiskSection gives it.
    let vbox = "//*[local-name()='Machine']";
    assert_eq!(
        q(&format!(
            "string({vbox}/*[local-name()='Hardware']/*[local-name()='Firmware']/@type)"
        )),
        "EFI"
    );
    assert_eq!(
        q(&format!(
            "string({vbox}/*[local-name()='Hardware']/*[local-name()='CPU']/@count)"
        )),
        "3"
    );
    assert_eq!(
        q(&format!(
            "string({vbox}/*[local-name()='Hardware']/*[local-name()='Memory']/@RAMSize)"
        )),
        "3072"
    );
    assert_eq!(
        q(&format!(
            "count({vbox}//*[local-name()='Adapter'][@enabled='true'])"
        )),
        "1"
    );
    let disk_uuid = q("string(//*[local-name()='Disk']/@*[local-name()='uuid'])");
    assert_eq!(disk_uuid.len(), 36, "{disk_uuid}");
    assert_eq!(
        q(&format!(
            "string({vbox}//*[local-name()='AttachedDevice']/*[local-name()='Image']/@uuid)"
        )),
        format!("{{{disk_uuid}}}")
    );
    assert_eq!(q("string(//*[local-name()='Product'])"), "BoB <on-prem>");
    assert_eq!(q("string(//*[local-name()='Vendor'])"), "ACME & Co");
    assert_eq!(q("string(//*[local-name()='Version'])"), "1.2.3");
    assert_deterministic(&d, &raw, &opts(true, Firmware::Efi), "ova");
}

#[test]
fn offline_bios_appliance_has_no_nic() {
    let d = Dir::new();
    let raw = d.path("in.raw");
    make_raw(&raw);
    let ova = d.path("out.ova");
    write_with(&raw, &ova, &opts(false, Firmware::Bios));
    let ovf = run(Command::new("tar")
        .arg("-xOf")
        .arg(&ova)
        .arg("bob_appliance.ovf"));
    assert!(!ovf.contains("<rasd:ResourceType>10<"), "{ovf}");
    assert!(!ovf.contains("NetworkSection"), "{ovf}");
    assert!(
        ovf.contains("vmw:key=\"firmware\" vmw:value=\"bios\""),
        "{ovf}"
    );
    assert!(
        !ovf.contains("vbox:"),
        "BIOS: VirtualBox's default, no section: {ovf}"
    );
}
