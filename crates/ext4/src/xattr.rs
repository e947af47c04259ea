//! Extended attributes: in the inode's spare bytes and in one external
//! xattr block.
//!
//! Spec: kernel `Documentation/filesystems/ext4/attributes.rst`.
//!
//! In-inode area (after `i_extra_isize`): magic `0xEA020000`, entries,
//! a zero u32, values (value offsets count from the first entry). Block:
//!
//! | offset | field                                               |
//! |--------|-----------------------------------------------------|
//! | 0x00   | h_magic 0xEA020000                                  |
//! | 0x04   | h_refcount (1)                                      |
//! | 0x08   | h_blocks (1)                                        |
//! | 0x0C   | h_hash (rehash of entry hashes)                     |
//! | 0x10   | h_checksum: crc32c(fs seed, le64 block, block)      |
//! | 0x20   | entries (sorted), zero u32, ..., values at the end  |
//!
//! Entry: e_name_len u8, e_name_index u8, e_value_offs u16,
//! e_value_inum u32 (0), e_value_size u32, e_hash u32, name (pad 4).
//!
//! POSIX ACLs (`system.posix_acl_access`/`_default`) are stored in the
//! ext4 ACL format (version 1, 4-byte short entries for owner, group,
//! mask and other), converted from the xattr format (version 2, 8-byte
//! entries) that tar and `getxattr` use.

use crate::checksum::Crc32c;
use crate::inode::INLINE_XATTR_SPACE;
use crate::options::BLOCK_SIZE;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// xattr magic.
pub(crate) const XATTR_MAGIC: u32 = 0xEA02_0000;
const BS: usize = BLOCK_SIZE as usize;

/// `ext4_xattr_header`: the first 32 bytes of an xattr block.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawXattrHeader {
    pub h_magic: U32,
    pub h_refcount: U32,
    pub h_blocks: U32,
    pub h_hash: U32,
    pub h_checksum: U32,
    pub h_reserved: [U32; 3],
}

/// `ext4_xattr_entry` without its name (`e_name_len` bytes follow,
/// padded to 4).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawXattrEntry {
    pub e_name_len: u8,
    pub e_name_index: u8,
    pub e_value_offs: U16,
    pub e_value_inum: U32,
    pub e_value_size: U32,
    pub e_hash: U32,
}

/// `e_name_index` values and the name prefix each stands for, in the
/// order a full name is matched (the exact ACL names before `system.`).
pub(crate) const NAME_INDEXES: [(&[u8], u8); 7] = [
    (b"system.posix_acl_access", 2),
    (b"system.posix_acl_default", 3),
    (b"user.", 1),
    (b"trusted.", 4),
    (b"security.", 6),
    (b"system.richacl", 8),
    (b"system.", 7),
];

/// The name prefix of an `e_name_index`.
pub(crate) fn prefix(index: u8) -> Option<&'static [u8]> {
    NAME_INDEXES
        .iter()
        .find(|(_, i)| *i == index)
        .map(|(p, _)| *p)
}

/// Whether an index names a whole attribute (no suffix): the ACLs.
fn is_exact(index: u8) -> bool {
    matches!(index, 2 | 3 | 8)
}

/// Whether an index holds a POSIX ACL (converted between formats).
pub(crate) fn is_acl(index: u8) -> bool {
    matches!(index, 2 | 3)
}

/// POSIX ACL entry tags (`acl_ea_entry.e_tag`).
pub(crate) mod acl_tag {
    /// Owner, owning group, mask, others: short entries on disk.
    pub(crate) const SHORT: [u16; 4] = [0x01, 0x04, 0x10, 0x20];
    /// Named user, named group: with an id.
    pub(crate) const WITH_ID: [u16; 2] = [0x02, 0x08];
}

/// Why an attribute cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XattrError {
    UnknownNamespace,
    NameTooLong,
    BadAcl,
    TooLarge,
}

impl XattrError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            XattrError::UnknownNamespace => {
                "unknown namespace (user., trusted., security., system.)"
            }
            XattrError::NameTooLong => "name longer than 255 bytes after its prefix",
            XattrError::BadAcl => "malformed POSIX ACL value",
            XattrError::TooLarge => "attributes do not fit in the inode plus one 4 KiB block",
        }
    }
}

/// One attribute ready for disk: index, suffix and on-disk value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DiskXattr {
    pub index: u8,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// Splits a full name into (index, suffix) and converts ACL values.
pub(crate) fn to_disk(name: &[u8], value: &[u8]) -> Result<DiskXattr, XattrError> {
    for (p, idx) in NAME_INDEXES {
        if let Some(rest) = name.strip_prefix(p) {
            if is_exact(idx) && !rest.is_empty() {
                continue;
            }
            if rest.len() > 255 {
                return Err(XattrError::NameTooLong);
            }
            if !is_exact(idx) && rest.is_empty() {
                return Err(XattrError::UnknownNamespace);
            }
            let value = if is_acl(idx) {
                acl_to_disk(value)?
            } else {
                value.to_vec()
            };
            return Ok(DiskXattr {
                index: idx,
                name: rest.to_vec(),
                value,
            });
        }
    }
    Err(XattrError::UnknownNamespace)
}

/// POSIX ACL xattr (v2) → ext4 ACL (v1).
pub(crate) fn acl_to_disk(v: &[u8]) -> Result<Vec<u8>, XattrError> {
    if v.len() < 4 || (v.len() - 4) % 8 != 0 {
        return Err(XattrError::BadAcl);
    }
    if u32::from_le_bytes([v[0], v[1], v[2], v[3]]) != 2 {
        return Err(XattrError::BadAcl);
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in v[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        if acl_tag::SHORT.contains(&tag) {
            out.extend_from_slice(&e[..4]);
        } else if acl_tag::WITH_ID.contains(&tag) {
            out.extend_from_slice(e);
        } else {
            return Err(XattrError::BadAcl);
        }
    }
    Ok(out)
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn entry_len(x: &DiskXattr) -> usize {
    16 + pad4(x.name.len())
}

/// The kernel's `ext4_xattr_hash_entry`.
pub(crate) fn entry_hash(x: &DiskXattr) -> u32 {
    let mut h: u32 = 0;
    for &c in &x.name {
        h = (h << 5) ^ (h >> 27) ^ u32::from(c);
    }
    let mut padded = x.value.clone();
    padded.resize(pad4(x.value.len()), 0);
    for w in padded.chunks_exact(4) {
        h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    }
    h
}

/// Sort order of block entries (kernel's sorted lookup): index, name
/// length, name.
pub(crate) fn sort(v: &mut [DiskXattr]) {
    v.sort_by(|a, b| (a.index, a.name.len(), &a.name).cmp(&(b.index, b.name.len(), &b.name)));
}

/// Writes entries at `base + entries_at` and values downward from
/// `base + end`; value offsets are relative to `base`. Returns the entry
/// hashes. The caller checked the space.
fn layout(buf: &mut [u8], base: usize, entries_at: usize, end: usize, v: &[DiskXattr]) -> Vec<u32> {
    let mut e = base + entries_at;
    let mut val_end = base + end;
    let mut hashes = Vec::with_capacity(v.len());
    for x in v {
        let vs = pad4(x.value.len());
        let voff = if x.value.is_empty() {
            0
        } else {
            val_end -= vs;
            buf[val_end..val_end + x.value.len()].copy_from_slice(&x.value);
            val_end - base
        };
        let h = entry_hash(x);
        hashes.push(h);
        let raw = RawXattrEntry {
            e_name_len: x.name.len() as u8,
            e_name_index: x.index,
            e_value_offs: U16::new(voff as u16),
            e_value_inum: U32::new(0),
            e_value_size: U32::new(x.value.len() as u32),
            e_hash: U32::new(h),
        };
        buf[e..e + 16].copy_from_slice(raw.as_bytes());
        buf[e + 16..e + 16 + x.name.len()].copy_from_slice(&x.name);
        e += entry_len(x);
    }
    hashes
}

fn space(v: &[DiskXattr]) -> usize {
    v.iter()
        .map(|x| entry_len(x) + pad4(x.value.len()))
        .sum::<usize>()
        + 4
}

/// The attributes split between inode and block.
#[derive(Debug, Default)]
pub(crate) struct Placed {
    /// The in-inode area (zeros when nothing is stored there).
    pub inline: Option<[u8; INLINE_XATTR_SPACE]>,
    /// Attributes for the external block, if any.
    pub block: Vec<DiskXattr>,
}

/// Puts as many attributes as fit into the inode, the rest into a block.
pub(crate) fn place(mut v: Vec<DiskXattr>) -> Result<Placed, XattrError> {
    if v.is_empty() {
        return Ok(Placed::default());
    }
    sort(&mut v);
    // Greedy: keep in-inode while it fits (4 bytes are the magic).
    let room = INLINE_XATTR_SPACE - 4;
    let mut inl = Vec::new();
    let mut blk = Vec::new();
    for x in v {
        let mut trial = inl.clone();
        trial.push(x.clone());
        if space(&trial) <= room {
            inl = trial;
        } else {
            blk.push(x);
        }
    }
    if !blk.is_empty() && space(&blk) > BS - 32 {
        return Err(XattrError::TooLarge);
    }
    let inline = if inl.is_empty() {
        None
    } else {
        let mut a = [0u8; INLINE_XATTR_SPACE];
        a[0..4].copy_from_slice(&XATTR_MAGIC.to_le_bytes());
        layout(&mut a, 4, 0, INLINE_XATTR_SPACE - 4, &inl);
        Some(a)
    };
    Ok(Placed { inline, block: blk })
}

/// Encodes an external xattr block destined for physical block `blk`.
pub(crate) fn encode_block(v: &[DiskXattr], blk: u64, fs_seed: u32) -> Vec<u8> {
    let mut b = vec![0u8; BS];
    let hashes = layout(&mut b, 0, 32, BS, v);
    let mut h: u32 = 0;
    for eh in hashes {
        h = (h << 16) ^ (h >> 16) ^ eh;
    }
    let mut head = RawXattrHeader {
        h_magic: U32::new(XATTR_MAGIC),
        h_refcount: U32::new(1),
        h_blocks: U32::new(1),
        h_hash: U32::new(h),
        h_checksum: U32::new(0),
        h_reserved: [U32::new(0); 3],
    };
    b[..32].copy_from_slice(head.as_bytes());
    let c = Crc32c::new(fs_seed).update_u64(blk).update(&b).value();
    head.h_checksum = U32::new(c);
    b[..32].copy_from_slice(head.as_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        let t = |n: &[u8]| to_disk(n, b"").map(|d| (d.index, d.name));
        assert_eq!(t(b"user.foo"), Ok((1, b"foo".to_vec())));
        assert_eq!(
            t(b"trusted.overlay.opaque"),
            Ok((4, b"overlay.opaque".to_vec()))
        );
        assert_eq!(t(b"security.capability"), Ok((6, b"capability".to_vec())));
        assert_eq!(t(b"system.data"), Ok((7, b"data".to_vec())));
        assert_eq!(t(b"bogus.x"), Err(XattrError::UnknownNamespace));
        assert_eq!(t(b"user."), Err(XattrError::UnknownNamespace));
    }

    #[test]
    fn acl_conversion() {
        // user::rw- user:1000:r-- group::r-- mask::r-- other::---
        let mut x = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            x.extend_from_slice(&tag.to_le_bytes());
            x.extend_from_slice(&perm.to_le_bytes());
            x.extend_from_slice(&id.to_le_bytes());
        }
        let d = acl_to_disk(&x).unwrap();
        assert_eq!(d.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(&d[..4], &1u32.to_le_bytes());
        assert_eq!(&d[8..16], &[2, 0, 4, 0, 0xE8, 3, 0, 0]);
        assert_eq!(acl_to_disk(b"\x01\0\0\0"), Err(XattrError::BadAcl));
    }

    #[test]
    fn placement_spills_to_block() {
        let small = DiskXattr {
            index: 6,
            name: b"capability".to_vec(),
            value: vec![1; 20],
        };
        let big = DiskXattr {
            index: 1,
            name: b"big".to_vec(),
            value: vec![2; 1000],
        };
        let p = place(vec![small.clone()]).unwrap();
        assert!(p.inline.is_some() && p.block.is_empty());
        let p = place(vec![small, big]).unwrap();
        assert_eq!(p.block.len(), 1);
        let huge = DiskXattr {
            index: 1,
            name: b"h".to_vec(),
            value: vec![2; 5000],
        };
        assert_eq!(place(vec![huge]).unwrap_err(), XattrError::TooLarge);
    }
}
