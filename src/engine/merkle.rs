//! Merkle trees over an aggregate's events: blake3 in the shape of RFC 6962.
//!
//! `leaf = H(0x00 || canonical event bytes)`, `node = H(0x01 || left || right)`, and a tree of
//! `n` leaves splits at the largest power of two below `n` (no duplicated last node). The
//! committer keeps each aggregate's *frontier* — the roots of the perfect subtrees that the
//! binary digits of `n` describe — so an append costs O(log n) hashes, and the root is the
//! right fold of the frontier. `verify` rebuilds the same root from the stored events with
//! the same frontier arithmetic, never from the stored root.

/// A 32-byte blake3 digest.
pub type Hash = [u8; 32];

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;
/// Frontier entries never exceed the bits of a u64 leaf count.
pub const MAX_FRONTIER_LEN: usize = 64;

/// The hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[LEAF_PREFIX]);
    hasher.update(data);
    *hasher.finalize().as_bytes()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

/// RFC 6962's hash of the empty tree.
pub fn empty_root() -> Hash {
    *blake3::hash(&[]).as_bytes()
}

/// An incrementally maintained Merkle tree: the leaf count and the frontier.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    leaves: u64,
    /// Roots of perfect subtrees, largest (leftmost) first; one per set bit of `leaves`.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// Rebuilds a frontier from stored parts, checking that they agree.
    pub fn from_parts(leaves: u64, peaks: Vec<Hash>) -> Option<Self> {
        (peaks.len() == leaves.count_ones() as usize).then_some(Self { leaves, peaks })
    }

    /// Number of leaves.
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// The stored peaks, largest first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends one leaf hash: O(log n) node hashes.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut count = self.leaves;
        // Each trailing one bit is a peak of the same size as the carry: merge them.
        while count & 1 == 1 {
            match self.peaks.pop() {
                Some(left) => carry = node_hash(&left, &carry),
                None => break,
            }
            count >>= 1;
        }
        self.peaks.push(carry);
        self.leaves += 1;
        debug_assert_eq!(self.peaks.len(), self.leaves.count_ones() as usize);
    }

    /// The RFC 6962 root of all leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        match peaks.next() {
            None => empty_root(),
            Some(last) => peaks.fold(*last, |acc, peak| node_hash(peak, &acc)),
        }
    }
}

/// The RFC 6962 root computed recursively from all leaves; the reference the frontier is
/// tested against.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            // The largest power of two strictly below n.
            let split = n.next_power_of_two() / 2;
            node_hash(&root_of(&leaves[..split]), &root_of(&leaves[split..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn small_trees_have_the_rfc6962_shape() {
        let l = leaves(7);
        assert_eq!(root_of(&l[..1]), l[0]);
        assert_eq!(root_of(&l[..2]), node_hash(&l[0], &l[1]));
        assert_eq!(root_of(&l[..3]), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        let left4 = node_hash(&node_hash(&l[0], &l[1]), &node_hash(&l[2], &l[3]));
        assert_eq!(
            root_of(&l[..7]),
            node_hash(&left4, &node_hash(&node_hash(&l[4], &l[5]), &l[6]))
        );
        // Domain separation: a leaf can never be mistaken for a node.
        assert_ne!(leaf_hash(&[1; 64]), node_hash(&[1; 32], &[1; 32]));
    }

    proptest! {
        #[test]
        fn frontier_matches_recursive_root(n in 0usize..300) {
            let l = leaves(n);
            let mut frontier = Frontier::default();
            for (i, leaf) in l.iter().enumerate() {
                frontier.push(*leaf);
                prop_assert_eq!(frontier.root(), root_of(&l[..=i]));
            }
            let rebuilt = Frontier::from_parts(frontier.leaves(), frontier.peaks().to_vec());
            prop_assert_eq!(rebuilt, Some(frontier));
        }
    }

    #[test]
    fn any_change_or_reorder_changes_the_root() {
        let l = leaves(9);
        let root = root_of(&l);
        let mut swapped = l.clone();
        swapped.swap(3, 4);
        assert_ne!(root_of(&swapped), root);
        assert_ne!(root_of(&l[..8]), root);
        let mut changed = l.clone();
        changed[8] = leaf_hash(b"x");
        assert_ne!(root_of(&changed), root);
    }
}
