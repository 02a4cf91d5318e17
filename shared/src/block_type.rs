//! Block types as they travel on the wire.
//!
//! libventi has an in-memory numbering (`VtDataType` = 0, `VtDirType` = 8,
//! ...) but every message carries the older "disk type" numbering of
//! `src/libventi/dtype.c`; only the disk type matters to a server, which
//! keys blocks on (score, type). This module is that wire numbering.

use std::fmt;

/// A venti block type in wire ("disk") numbering: 1 root, 2 dir,
/// 3..=9 pointer depth 0..=6, 13 data. Every other byte is illegal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockType(u8);

impl BlockType {
    /// A vac/fossil root block.
    pub const ROOT: BlockType = BlockType(1);
    /// A directory (entry list) block at depth 0.
    pub const DIR: BlockType = BlockType(2);
    /// A data block: opaque bytes. eventi writes all its encrypted blocks
    /// with this type so no venti tool mistakes them for pointers.
    pub const DATA: BlockType = BlockType(13);

    /// A pointer block of depth `depth` (0..=6) above data blocks.
    pub fn pointer(depth: u8) -> Option<BlockType> {
        (depth <= 6).then(|| BlockType(3 + depth))
    }

    /// The type for a wire byte, or `None` if the byte is not a legal type.
    pub fn from_wire(byte: u8) -> Option<BlockType> {
        matches!(byte, 1..=9 | 13).then_some(BlockType(byte))
    }

    /// The byte that carries this type on the wire and in the store's keys.
    pub fn to_wire(self) -> u8 {
        self.0
    }
}

impl fmt::Display for BlockType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("root"),
            2 => f.write_str("dir"),
            3..=9 => write!(f, "pointer{}", self.0 - 3),
            13 => f.write_str("data"),
            n => write!(f, "type{n}"),
        }
    }
}

impl fmt::Debug for BlockType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockType({}={})", self.0, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_bytes_match_libventi_fromdisk_table() {
        // dtype.c's fromdisk[] maps 0 and 10..=12 to VtCorruptType; the
        // table has 14 entries, so 14.. are corrupt too.
        let legal: Vec<u8> = (0..=255u8)
            .filter(|b| BlockType::from_wire(*b).is_some())
            .collect();
        assert_eq!(legal, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 13]);
    }

    #[test]
    fn pointer_depths() {
        assert_eq!(BlockType::pointer(0).unwrap().to_wire(), 3);
        assert_eq!(BlockType::pointer(6).unwrap().to_wire(), 9);
        assert!(BlockType::pointer(7).is_none());
    }
}
