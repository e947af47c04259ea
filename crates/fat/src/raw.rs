//! On-disk structures of FAT16/FAT32, as zerocopy wire structs.
//!
//! Source: Microsoft Extensible Firmware Initiative FAT32 File System
//! Specification, version 1.03 (December 6, 2000; "fatgen103"). Field
//! names are the specification's. All multi-byte fields are little-endian.
//!
//! # Boot sector and BPB (fatgen103 §3.1 "Boot Sector and BPB Structure")
//!
//! | offset | size | field            | kiln writes                          |
//! |-------:|-----:|------------------|--------------------------------------|
//! |      0 |    3 | `BS_jmpBoot`     | `EB 3C 90` (FAT16) / `EB 58 90` (FAT32) |
//! |      3 |    8 | `BS_OEMName`     | option, default `"KILN    "`         |
//! |     11 |    2 | `BPB_BytsPerSec` | 512                                  |
//! |     13 |    1 | `BPB_SecPerClus` | 1..=128, power of two                |
//! |     14 |    2 | `BPB_RsvdSecCnt` | 1 (FAT16) / 32 (FAT32), cluster-aligned |
//! |     16 |    1 | `BPB_NumFATs`    | 2                                    |
//! |     17 |    2 | `BPB_RootEntCnt` | 512 (FAT16) / 0 (FAT32)              |
//! |     19 |    2 | `BPB_TotSec16`   | total sectors if < 65536 and FAT16, else 0 |
//! |     21 |    1 | `BPB_Media`      | 0xF8 (fixed disk)                    |
//! |     22 |    2 | `BPB_FATSz16`    | FAT size in sectors (FAT16) / 0      |
//! |     24 |    2 | `BPB_SecPerTrk`  | geometry                             |
//! |     26 |    2 | `BPB_NumHeads`   | geometry                             |
//! |     28 |    4 | `BPB_HiddSec`    | partition start LBA                  |
//! |     32 |    4 | `BPB_TotSec32`   | total sectors when `TotSec16` is 0   |
//!
//! FAT16 continues (§3.2 "FAT12 and FAT16 Structure Starting at Offset 36"):
//!
//! | offset | size | field            |
//! |-------:|-----:|------------------|
//! |     36 |    1 | `BS_DrvNum` (0x80) |
//! |     37 |    1 | `BS_Reserved1`   |
//! |     38 |    1 | `BS_BootSig` (0x29) |
//! |     39 |    4 | `BS_VolID`       |
//! |     43 |   11 | `BS_VolLab`      |
//! |     54 |    8 | `BS_FilSysType` (`"FAT16   "`) |
//! |     62 |  448 | boot code        |
//! |    510 |    2 | signature `55 AA` |
//!
//! FAT32 continues (§3.3 "FAT32 Structure Starting at Offset 36"):
//!
//! | offset | size | field            |
//! |-------:|-----:|------------------|
//! |     36 |    4 | `BPB_FATSz32`    |
//! |     40 |    2 | `BPB_ExtFlags` (0: FAT mirrored) |
//! |     42 |    2 | `BPB_FSVer` (0.0) |
//! |     44 |    4 | `BPB_RootClus` (2) |
//! |     48 |    2 | `BPB_FSInfo` (1) |
//! |     50 |    2 | `BPB_BkBootSec` (6) |
//! |     52 |   12 | `BPB_Reserved`   |
//! |     64 |    1 | `BS_DrvNum`      |
//! |     65 |    1 | `BS_Reserved1`   |
//! |     66 |    1 | `BS_BootSig` (0x29) |
//! |     67 |    4 | `BS_VolID`       |
//! |     71 |   11 | `BS_VolLab`      |
//! |     82 |    8 | `BS_FilSysType` (`"FAT32   "`) |
//! |     90 |  420 | boot code        |
//! |    510 |    2 | signature `55 AA` |
//!
//! # FSInfo sector (fatgen103 §5 "FAT32 FSInfo Sector Structure")
//!
//! | offset | size | field             | value        |
//! |-------:|-----:|-------------------|--------------|
//! |      0 |    4 | `FSI_LeadSig`     | 0x41615252   |
//! |      4 |  480 | `FSI_Reserved1`   | 0            |
//! |    484 |    4 | `FSI_StrucSig`    | 0x61417272   |
//! |    488 |    4 | `FSI_Free_Count`  | free clusters |
//! |    492 |    4 | `FSI_Nxt_Free`    | first free cluster |
//! |    496 |   12 | `FSI_Reserved2`   | 0            |
//! |    508 |    4 | `FSI_TrailSig`    | 0xAA550000   |
//!
//! # Directory entry (fatgen103 §6 "FAT Directory Structure")
//!
//! | offset | size | field              |
//! |-------:|-----:|--------------------|
//! |      0 |   11 | `DIR_Name` (8 + 3, space padded) |
//! |     11 |    1 | `DIR_Attr`         |
//! |     12 |    1 | `DIR_NTRes` (0x08 base lowercase, 0x10 extension lowercase) |
//! |     13 |    1 | `DIR_CrtTimeTenth` (10 ms units, 0..=199) |
//! |     14 |    2 | `DIR_CrtTime`      |
//! |     16 |    2 | `DIR_CrtDate`      |
//! |     18 |    2 | `DIR_LstAccDate`   |
//! |     20 |    2 | `DIR_FstClusHI`    |
//! |     22 |    2 | `DIR_WrtTime`      |
//! |     24 |    2 | `DIR_WrtDate`      |
//! |     26 |    2 | `DIR_FstClusLO`    |
//! |     28 |    4 | `DIR_FileSize`     |
//!
//! The `DIR_NTRes` case bits are not in fatgen103; they are the Windows NT
//! extension that Linux `vfat` and mtools honour.
//!
//! # Long-name entry (fatgen103 §7 "FAT Long Directory Entries")
//!
//! | offset | size | field             |
//! |-------:|-----:|-------------------|
//! |      0 |    1 | `LDIR_Ord` (1-based, 0x40 on the last = first stored) |
//! |      1 |   10 | `LDIR_Name1` (UTF-16LE chars 1-5) |
//! |     11 |    1 | `LDIR_Attr` (0x0F) |
//! |     12 |    1 | `LDIR_Type` (0)   |
//! |     13 |    1 | `LDIR_Chksum` (of the short name) |
//! |     14 |   12 | `LDIR_Name2` (chars 6-11) |
//! |     26 |    2 | `LDIR_FstClusLO` (0) |
//! |     28 |    4 | `LDIR_Name3` (chars 12-13) |

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes per sector; kiln always writes 512-byte sectors (fatgen103 §3.1
/// allows 512..4096, 512 is what every firmware reads).
pub const BPB_BYTS_PER_SEC: u32 = 512;
/// Size of one directory entry in bytes (fatgen103 §6).
pub const DIR_ENTRY_SIZE: u32 = 32;
/// `DIR_Attr` read-only bit.
pub const ATTR_READ_ONLY: u8 = 0x01;
/// `DIR_Attr` hidden bit.
pub const ATTR_HIDDEN: u8 = 0x02;
/// `DIR_Attr` system bit.
pub const ATTR_SYSTEM: u8 = 0x04;
/// `DIR_Attr` volume-label bit.
pub const ATTR_VOLUME_ID: u8 = 0x08;
/// `DIR_Attr` directory bit.
pub const ATTR_DIRECTORY: u8 = 0x10;
/// `DIR_Attr` archive bit (set on every file written since the last backup).
pub const ATTR_ARCHIVE: u8 = 0x20;
/// `LDIR_Attr` of a long-name entry (fatgen103 §7).
pub const ATTR_LONG_NAME: u8 = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID;
/// `LDIR_Ord` flag of the last long-name entry of a set (fatgen103 §7).
pub const LAST_LONG_ENTRY: u8 = 0x40;
/// `DIR_NTRes` bit: the 8-character base is shown in lowercase.
pub const NTRES_LOWER_BASE: u8 = 0x08;
/// `DIR_NTRes` bit: the 3-character extension is shown in lowercase.
pub const NTRES_LOWER_EXT: u8 = 0x10;
/// `BS_BootSig` value saying the three following fields exist.
pub const BS_BOOT_SIG: u8 = 0x29;
/// `FSI_LeadSig` (fatgen103 §5).
pub const FSI_LEAD_SIG: u32 = 0x4161_5252;
/// `FSI_StrucSig` (fatgen103 §5).
pub const FSI_STRUC_SIG: u32 = 0x6141_7272;
/// `FSI_TrailSig` (fatgen103 §5).
pub const FSI_TRAIL_SIG: u32 = 0xAA55_0000;

/// The common BPB, offsets 0..36 (fatgen103 §3.1).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawBpb {
    /// 0: jump instruction to the boot code.
    pub bs_jmp_boot: [u8; 3],
    /// 3: name of the formatting system.
    pub bs_oem_name: [u8; 8],
    /// 11: bytes per sector.
    pub bpb_byts_per_sec: U16,
    /// 13: sectors per cluster.
    pub bpb_sec_per_clus: u8,
    /// 14: reserved sectors before the first FAT.
    pub bpb_rsvd_sec_cnt: U16,
    /// 16: number of FATs.
    pub bpb_num_fats: u8,
    /// 17: 32-byte entries in the fixed FAT16 root directory.
    pub bpb_root_ent_cnt: U16,
    /// 19: total sectors (16-bit form).
    pub bpb_tot_sec16: U16,
    /// 21: media descriptor.
    pub bpb_media: u8,
    /// 22: sectors per FAT (FAT12/16).
    pub bpb_fat_sz16: U16,
    /// 24: sectors per track (INT 13h geometry).
    pub bpb_sec_per_trk: U16,
    /// 26: number of heads.
    pub bpb_num_heads: U16,
    /// 28: sectors before this partition.
    pub bpb_hidd_sec: U32,
    /// 32: total sectors (32-bit form).
    pub bpb_tot_sec32: U32,
}
const _: () = assert!(core::mem::size_of::<RawBpb>() == 36);

/// The extended boot record fields shared by FAT16 (offset 36) and FAT32
/// (offset 64), fatgen103 §3.2/§3.3.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawExtBoot {
    /// Drive number for INT 13h (0x80 = hard disk).
    pub bs_drv_num: u8,
    /// Reserved (Windows NT uses it as a dirty flag).
    pub bs_reserved1: u8,
    /// 0x29: the next three fields are present.
    pub bs_boot_sig: u8,
    /// Volume serial number.
    pub bs_vol_id: U32,
    /// Volume label, space padded.
    pub bs_vol_lab: [u8; 11],
    /// Informational type string.
    pub bs_fil_sys_type: [u8; 8],
}
const _: () = assert!(core::mem::size_of::<RawExtBoot>() == 26);

/// FAT16 boot sector (fatgen103 §3.1 + §3.2).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawBootSector16 {
    /// 0..36.
    pub bpb: RawBpb,
    /// 36..62.
    pub ext: RawExtBoot,
    /// 62..510.
    pub boot_code: [u8; 448],
    /// 510: `55 AA`.
    pub signature: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<RawBootSector16>() == 512);

/// FAT32 boot sector (fatgen103 §3.1 + §3.3).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawBootSector32 {
    /// 0..36.
    pub bpb: RawBpb,
    /// 36: sectors per FAT.
    pub bpb_fat_sz32: U32,
    /// 40: mirroring flags (0 = all FATs mirrored).
    pub bpb_ext_flags: U16,
    /// 42: version 0.0.
    pub bpb_fs_ver: U16,
    /// 44: first cluster of the root directory.
    pub bpb_root_clus: U32,
    /// 48: sector of the FSInfo structure.
    pub bpb_fs_info: U16,
    /// 50: sector of the backup boot sector.
    pub bpb_bk_boot_sec: U16,
    /// 52: reserved, zero.
    pub bpb_reserved: [u8; 12],
    /// 64..90.
    pub ext: RawExtBoot,
    /// 90..510.
    pub boot_code: [u8; 420],
    /// 510: `55 AA`.
    pub signature: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<RawBootSector32>() == 512);

/// FAT32 FSInfo sector (fatgen103 §5).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawFsInfo {
    /// 0: 0x41615252.
    pub fsi_lead_sig: U32,
    /// 4: zero.
    pub fsi_reserved1: [u8; 480],
    /// 484: 0x61417272.
    pub fsi_struc_sig: U32,
    /// 488: free cluster count.
    pub fsi_free_count: U32,
    /// 492: hint for the next free cluster.
    pub fsi_nxt_free: U32,
    /// 496: zero.
    pub fsi_reserved2: [u8; 12],
    /// 508: 0xAA550000.
    pub fsi_trail_sig: U32,
}
const _: () = assert!(core::mem::size_of::<RawFsInfo>() == 512);

/// A short (8.3) directory entry (fatgen103 §6).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawDirEntry {
    /// 0: 8.3 name, space padded, no dot.
    pub dir_name: [u8; 11],
    /// 11: attributes.
    pub dir_attr: u8,
    /// 12: NT case bits.
    pub dir_nt_res: u8,
    /// 13: creation time, 10 ms units within two seconds.
    pub dir_crt_time_tenth: u8,
    /// 14: creation time.
    pub dir_crt_time: U16,
    /// 16: creation date.
    pub dir_crt_date: U16,
    /// 18: last access date.
    pub dir_lst_acc_date: U16,
    /// 20: high half of the first cluster (FAT32).
    pub dir_fst_clus_hi: U16,
    /// 22: write time.
    pub dir_wrt_time: U16,
    /// 24: write date.
    pub dir_wrt_date: U16,
    /// 26: low half of the first cluster.
    pub dir_fst_clus_lo: U16,
    /// 28: file size in bytes.
    pub dir_file_size: U32,
}
const _: () = assert!(core::mem::size_of::<RawDirEntry>() == 32);

/// A long-name directory entry (fatgen103 §7).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawLfnEntry {
    /// 0: sequence number (| 0x40 on the last).
    pub ldir_ord: u8,
    /// 1: characters 1-5.
    pub ldir_name1: [U16; 5],
    /// 11: 0x0F.
    pub ldir_attr: u8,
    /// 12: zero.
    pub ldir_type: u8,
    /// 13: checksum of the short name.
    pub ldir_chksum: u8,
    /// 14: characters 6-11.
    pub ldir_name2: [U16; 6],
    /// 26: zero.
    pub ldir_fst_clus_lo: U16,
    /// 28: characters 12-13.
    pub ldir_name3: [U16; 2],
}
const _: () = assert!(core::mem::size_of::<RawLfnEntry>() == 32);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_the_spec() {
        assert_eq!(offset_of!(RawBpb, bpb_byts_per_sec), 11);
        assert_eq!(offset_of!(RawBpb, bpb_root_ent_cnt), 17);
        assert_eq!(offset_of!(RawBpb, bpb_media), 21);
        assert_eq!(offset_of!(RawBpb, bpb_hidd_sec), 28);
        assert_eq!(offset_of!(RawBootSector16, ext), 36);
        assert_eq!(offset_of!(RawBootSector16, boot_code), 62);
        assert_eq!(offset_of!(RawBootSector32, bpb_root_clus), 44);
        assert_eq!(offset_of!(RawBootSector32, bpb_bk_boot_sec), 50);
        assert_eq!(offset_of!(RawBootSector32, ext), 64);
        assert_eq!(offset_of!(RawBootSector32, boot_code), 90);
        assert_eq!(offset_of!(RawExtBoot, bs_vol_id), 3);
        assert_eq!(offset_of!(RawExtBoot, bs_fil_sys_type), 18);
        assert_eq!(offset_of!(RawFsInfo, fsi_struc_sig), 484);
        assert_eq!(offset_of!(RawFsInfo, fsi_trail_sig), 508);
        assert_eq!(offset_of!(RawDirEntry, dir_fst_clus_hi), 20);
        assert_eq!(offset_of!(RawDirEntry, dir_file_size), 28);
        assert_eq!(offset_of!(RawLfnEntry, ldir_attr), 11);
        assert_eq!(offset_of!(RawLfnEntry, ldir_chksum), 13);
        assert_eq!(offset_of!(RawLfnEntry, ldir_name3), 28);
    }
}
