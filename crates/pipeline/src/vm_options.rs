//! Identities and machine settings of the VM import formats (VHDX, VMDK
//! monolithicSparse, OVA), from the build seed, the recipe and the board.

use std::path::Path;

/// The last component of `path`, lossily as text (a VMDK descriptor
/// names its own file).
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// VHDX options from the build seed: the virtual disk id and (from the
/// seed reversed, so the two differ) the headers' write GUID.
pub(crate) fn vhdx_options(seed: [u8; 16]) -> kiln_vdisk::VhdxOptions {
    let mut other = seed;
    other.reverse();
    kiln_vdisk::VhdxOptions::new()
        .disk_id(kiln_units::Guid::v4_from_seed(seed))
        .write_guid(kiln_units::Guid::v4_from_seed(other))
}

/// Deflate level of the OVA's grains: 1 deflates a real root filesystem
/// about 2x faster than the streamOptimized VMDK's 6 for about 9 % more
/// bytes (the OVA is made to be imported once; the standalone `vmdk`
/// output keeps level 6 and its bytes).
const OVA_DEFLATE_LEVEL: u32 = 1;

/// The OVA's machine: `[vm]` of the recipe (CPUs, memory, NIC, product,
/// vendor, version; product defaults to the recipe's name), firmware by
/// the board's table (MBR boards boot BIOS, GPT boards UEFI), the VMDK's
/// CID and the VirtualBox machine and disk UUIDs from `seed`, the
/// archive's times from `timestamp`; grains deflated at
/// [`OVA_DEFLATE_LEVEL`] on `threads` threads (the output does not depend
/// on the thread count).
pub(crate) fn ova_options(
    recipe: &kiln_recipe::Recipe,
    table: kiln_recipe::TableKind,
    seed: [u8; 16],
    timestamp: i64,
    threads: u32,
) -> kiln_vdisk::OvaOptions {
    let vm = &recipe.vm;
    let firmware = match table {
        kiln_recipe::TableKind::Mbr => kiln_vdisk::Firmware::Bios,
        kiln_recipe::TableKind::Gpt => kiln_vdisk::Firmware::Efi,
    };
    let (mut machine, mut disk) = (seed, seed);
    machine[15] ^= 0x4d;
    disk[15] ^= 0x44;
    kiln_vdisk::OvaOptions::new(&recipe.name)
        .product(vm.product.as_deref().unwrap_or(&recipe.name))
        .vendor(vm.vendor.as_deref())
        .version(vm.version.as_deref())
        .cpus(vm.cpus)
        .memory_mib(vm.memory_mib)
        .network(vm.network)
        .firmware(firmware)
        .mtime(u64::try_from(timestamp).unwrap_or(0))
        .vbox_uuids(
            kiln_units::Guid::v4_from_seed(machine),
            kiln_units::Guid::v4_from_seed(disk),
        )
        .vmdk(
            kiln_vdisk::VmdkOptions::new()
                .cid(u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]))
                .threads(usize::try_from(threads).unwrap_or(1))
                .compression_level(OVA_DEFLATE_LEVEL),
        )
}
