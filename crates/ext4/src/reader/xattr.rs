//! Decoding extended attributes: the in-inode area and the external
//! xattr block, back into full names and the values `getxattr` returns.
//!
//! Spec: kernel `Documentation/filesystems/ext4/attributes.rst` (layout
//! table in [`crate::xattr`]'s module doc). In-inode: magic `0xEA020000`
//! then entries; value offsets count from the first entry. Block: header
//! of 32 bytes (magic at 0x00), entries from 0x20; value offsets count
//! from the block start. Entry: `e_name_len` u8, `e_name_index` u8,
//! `e_value_offs` u16, `e_value_inum` u32, `e_value_size` u32, `e_hash`
//! u32, name. POSIX ACLs are converted from the ext4 ACL format
//! (version 1) to the xattr format (version 2).

use super::{corrupt, le16, le32, Ext4Reader, Inode};
use crate::xattr::{acl_tag, is_acl, prefix, RawXattrEntry, RawXattrHeader, XATTR_MAGIC};
use crate::Error;
use kiln_tree::Xattr;
use kiln_units::ReadAt;
use zerocopy::FromBytes;

/// ext4 ACL (v1: 4-byte short entries for owner/group/mask/other, 8-byte
/// entries with an id for named users/groups) → POSIX ACL xattr (v2,
/// 8-byte entries, id `u32::MAX` for the short ones).
pub(crate) fn acl_from_disk(v: &[u8], ino: u32) -> Result<Vec<u8>, Error> {
    let bad = || corrupt(ino, "malformed POSIX ACL");
    if le32(v, 0) != 1 || v.len() < 4 {
        return Err(bad());
    }
    let mut out = 2u32.to_le_bytes().to_vec();
    let mut at = 4;
    while at < v.len() {
        let tag = le16(v, at);
        let perm = le16(v, at + 2);
        let (id, len) = if acl_tag::SHORT.contains(&tag) {
            (u32::MAX, 4)
        } else if acl_tag::WITH_ID.contains(&tag) {
            (le32(v, at + 4), 8)
        } else {
            return Err(bad());
        };
        if at + len > v.len() {
            return Err(bad());
        }
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        at += len;
    }
    Ok(out)
}

/// Parses entries from `area[entries_at..]` with values relative to
/// `area[value_base..]`, appending full-name attributes to `out`.
fn parse_entries(
    area: &[u8],
    entries_at: usize,
    value_base: usize,
    ino: u32,
    out: &mut Vec<Xattr>,
) -> Result<(), Error> {
    let mut at = entries_at;
    loop {
        if at + 4 > area.len() {
            return Err(corrupt(ino, "xattr entries run past their area"));
        }
        if le32(area, at) == 0 {
            return Ok(());
        }
        let Ok((e, _)) = RawXattrEntry::ref_from_prefix(&area[at..]) else {
            return Err(corrupt(ino, "xattr entry truncated"));
        };
        let name_len = usize::from(e.e_name_len);
        let index = e.e_name_index;
        let voff = usize::from(e.e_value_offs.get());
        let vinum = e.e_value_inum.get();
        let vsize = e.e_value_size.get() as usize;
        let name = area
            .get(at + 16..at + 16 + name_len)
            .ok_or_else(|| corrupt(ino, "xattr name truncated"))?;
        if vinum != 0 {
            return Err(Error::Unsupported {
                feature: "ea_inode (xattr value stored in its own inode)",
            });
        }
        let start = value_base + voff;
        let value = if vsize == 0 {
            &[][..]
        } else {
            area.get(start..start + vsize)
                .ok_or_else(|| corrupt(ino, "xattr value outside its area"))?
        };
        let pre = prefix(index).ok_or_else(|| corrupt(ino, "unknown xattr name index"))?;
        let mut full = pre.to_vec();
        full.extend_from_slice(name);
        let value = if is_acl(index) {
            acl_from_disk(value, ino)?
        } else {
            value.to_vec()
        };
        out.push(Xattr { name: full, value });
        at += 16 + ((name_len + 3) & !3);
    }
}

impl<R: ReadAt> Ext4Reader<R> {
    /// Every extended attribute of an inode (in-inode first, then the
    /// xattr block), sorted by full name.
    pub(crate) fn xattrs(&self, node: &Inode) -> Result<Vec<Xattr>, Error> {
        let mut out = Vec::new();
        let a = &node.xattr_area;
        if a.len() >= 4 && le32(a, 0) == XATTR_MAGIC {
            parse_entries(a, 4, 4, node.ino, &mut out)?;
        }
        if node.file_acl != 0 {
            let bs = usize::try_from(self.block_size()).unwrap_or(4096);
            let mut b = vec![0u8; bs];
            self.read_block(node.file_acl, node.ino, &mut b)?;
            let Ok((head, _)) = RawXattrHeader::read_from_prefix(&b) else {
                return Err(corrupt(node.ino, "xattr block shorter than its header"));
            };
            if head.h_magic.get() != XATTR_MAGIC {
                return Err(corrupt(node.ino, "bad xattr block magic"));
            }
            if let Some(seed) = self.fs_csum_seed() {
                let stored = head.h_checksum.get();
                let mut z = b.clone();
                z[0x10..0x14].fill(0);
                let c = crate::checksum::Crc32c::new(seed)
                    .update_u64(node.file_acl)
                    .update(&z)
                    .value();
                if c != stored {
                    return Err(corrupt(node.ino, "xattr block checksum mismatch"));
                }
            }
            if head.h_blocks.get() != 1 {
                return Err(corrupt(node.ino, "xattr block spans more than one block"));
            }
            parse_entries(&b, 32, 0, node.ino, &mut out)?;
        }
        out.sort();
        if out.windows(2).any(|w| w[0].name == w[1].name) {
            return Err(corrupt(node.ino, "duplicate xattr name"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_round_trip() {
        let mut x = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (8, 5, 50),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            x.extend_from_slice(&tag.to_le_bytes());
            x.extend_from_slice(&perm.to_le_bytes());
            x.extend_from_slice(&id.to_le_bytes());
        }
        let disk = crate::xattr::acl_to_disk(&x).unwrap();
        assert_eq!(acl_from_disk(&disk, 1).unwrap(), x);
        assert!(acl_from_disk(b"\x01\0\0\0\x02\0\x04\0", 1).is_err());
        assert!(acl_from_disk(b"\x02\0\0\0", 1).is_err());
    }
}
