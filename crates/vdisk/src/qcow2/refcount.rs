//! Refcount table and blocks (qcow2.txt, "Host cluster management").
//!
//! The writer keeps one 16-bit counter per host cluster it has used
//! (2 bytes per 64 KiB of output: 2 MiB for a fully allocated 64 GiB disk)
//! and lays out the refcount structures at `finish` so they also count
//! themselves.

/// Refcount order written: 16-bit counters (QEMU's default).
pub(crate) const QCOW2_REFCOUNT_ORDER: u32 = 4;

/// Where the refcount structures go and how big they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefcountLayout {
    /// First host cluster of the refcount blocks.
    pub blocks_start: u64,
    /// Number of refcount blocks.
    pub blocks: u64,
    /// First host cluster of the refcount table (right after the blocks).
    pub table_start: u64,
    /// Clusters of the refcount table.
    pub table_clusters: u64,
}

impl RefcountLayout {
    /// Lays out refcount blocks and table after `used` clusters, for
    /// `cluster_size`-byte clusters and 16-bit counters.
    pub(crate) fn after(used: u64, cluster_size: u64) -> Self {
        let per_block = cluster_size / 2;
        let per_table_cluster = cluster_size / 8;
        let mut blocks = 0u64;
        let mut table_clusters = 0u64;
        // Fixed point: the structures must count themselves; it converges
        // in two or three rounds because each round adds at most a few.
        loop {
            let total = used + blocks + table_clusters;
            let nb = total.div_ceil(per_block);
            let nt = nb.div_ceil(per_table_cluster).max(1);
            if nb == blocks && nt == table_clusters {
                break;
            }
            blocks = nb;
            table_clusters = nt;
        }
        Self {
            blocks_start: used,
            blocks,
            table_start: used + blocks,
            table_clusters,
        }
    }

    /// Total clusters in the file once the structures are written.
    pub(crate) fn total_clusters(&self) -> u64 {
        self.table_start + self.table_clusters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_counts_itself() {
        let cs = 65536;
        let l = RefcountLayout::after(10, cs);
        assert_eq!((l.blocks, l.table_clusters, l.total_clusters()), (1, 1, 12));
        // 32768 counters per block: 32767 used + 1 block + 1 table = 32769 -> 2 blocks.
        let l = RefcountLayout::after(32767, cs);
        assert_eq!((l.blocks, l.table_clusters), (2, 1));
        assert!(l.blocks * (cs / 2) >= l.total_clusters());
    }
}
