//! The embedded text descriptor (spec section "The Descriptor File").

use super::VmdkOptions;

/// Renders the descriptor of a disk of `sectors` sectors whose one
/// extent is of `create_type` (`streamOptimized`, `monolithicSparse`).
pub(crate) fn render(options: &VmdkOptions, sectors: u64, create_type: &str) -> String {
    let (heads, spt) = match options.adapter {
        super::VmdkAdapter::Ide => (16u64, 63u64),
        _ => (255, 63),
    };
    let cylinders = (sectors / (heads * spt)).clamp(1, 16383);
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"{create_type}\"\n\
         \n\
         # Extent description\n\
         RW {sectors} SPARSE \"{name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"4\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"{heads}\"\n\
         ddb.geometry.sectors = \"{spt}\"\n\
         ddb.adapterType = \"{adapter}\"\n",
        cid = options.cid,
        name = options.extent_file_name,
        adapter = options.adapter.name(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_complete() {
        let o = VmdkOptions::new()
            .cid(0xdeadbeef)
            .extent_file_name("a\"b.vmdk");
        let d = render(&o, 524_288, "streamOptimized");
        assert_eq!(d, render(&o, 524_288, "streamOptimized"));
        assert!(d.contains("CID=deadbeef\n"));
        assert!(d.contains("RW 524288 SPARSE \"a_b.vmdk\"\n"));
        assert!(d.contains("createType=\"streamOptimized\""));
        assert!(d.contains("ddb.geometry.cylinders = \"520\""));
    }
}
