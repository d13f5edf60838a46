//! The current records of recently used aggregates, kept opened in memory.
//!
//! A state read (`SELECT … FROM aggregates WHERE aggregate_type = … AND aggregate_id = …`)
//! and every append's staging need an aggregate's current record. From RocksDB that is a
//! memtable skip-list search (the `aggregates` memtables hold a version of every recently
//! written record, and each step of the search is a cache miss: ~10% of the server's CPU
//! under 32 reading clients), block-cache lookups below it, and opening a sealed value.
//! This cache keeps the plaintext encoding of records (`record.rs`) by key, so a hit is one
//! hash lookup and a decode.
//!
//! # Invariants
//!
//! - **Never newer than what is acknowledged, never older than what a reader has seen.**
//!   The commit path is the only writer of `aggregates`. It marks a write in flight
//!   ([`RecordCache::write_begins`], the epoch turns odd) before its synced write, and after
//!   the write returns it overwrites the group's records with what it wrote (or removes them
//!   when the write failed) and ends the write (the epoch turns even again), all before it
//!   publishes the group's events or answers anyone. A read that missed
//!   ([`RecordCache::read`], for state reads and the commit path's loads alike) fills the
//!   cache only with a ticket taken before its read of RocksDB, and only when the epoch is still
//!   that ticket's (no write began since, so what it read is the current record and any
//!   later write will overwrite it) and the key is absent.
//! - **Bounded.** Entries are counted at their key, their value, a size-class allowance and
//!   a fixed per-entry overhead ([`ENTRY_OVERHEAD_BYTES`]); each shard evicts its least
//!   recently used entries to stay within its share of the budget. A budget of 0 keeps
//!   nothing.
//! - Memory only: nothing here is ever written anywhere, and a restart starts it empty.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashlink::LruCache;
use parking_lot::Mutex;
use rocksdb::DB;

use super::error::EngineError;
use super::keys::CF_AGGREGATES;
use super::record::AggregateRecord;
use super::seal::ValueCipher;

/// Independent locks over the cache: the runtime's workers and the commit path look records
/// up at once, and one lock would serialize them (2 cores here, more elsewhere).
const SHARDS: usize = 16;

/// What an entry costs beyond its key and value: the LRU list node (two pointers, two boxed
/// slices), its hash table slot, and the `Arc` header, rounded up.
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// A ticket for filling the cache after a miss: the write epoch seen before the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FillTicket(u64);

#[derive(Debug)]
struct Shard {
    entries: LruCache<Box<[u8]>, Arc<[u8]>>,
    bytes: usize,
}

impl Shard {
    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= entry_bytes(key, &old);
        }
    }

    fn insert(&mut self, key: &[u8], plain: &[u8], budget: usize) {
        self.remove(key);
        let bytes = entry_bytes(key, plain);
        if bytes > budget {
            return;
        }
        while self.bytes + bytes > budget {
            match self.entries.remove_lru() {
                Some((old_key, old)) => self.bytes -= entry_bytes(&old_key, &old),
                None => break,
            }
        }
        self.entries.insert(Box::from(key), Arc::from(plain));
        self.bytes += bytes;
    }
}

/// What an entry is counted at: key and value, an eighth more for the allocator's size
/// classes (mimalloc's are at most 12.5% apart), and [`ENTRY_OVERHEAD_BYTES`].
fn entry_bytes(key: &[u8], plain: &[u8]) -> usize {
    let data = key.len() + plain.len();
    data + data / 8 + ENTRY_OVERHEAD_BYTES
}

/// Each key's last record of `records`, in the order of those last records (so the last
/// staged is the most recently used once they go in).
///
/// Only these go into the cache. A group holding two records of one aggregate once put the
/// earlier one in first, each under its own lock, and a reader that had already read the
/// later one from RocksDB (its miss, between the sync and `write_ends`) then hit the earlier
/// one: its version went back. Caught in CI by tests/engine.rs
/// `state_readers_racing_writers_never_see_a_version_go_back`.
fn last_record_of_each_key<'a>(
    records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<(&'a [u8], &'a [u8])> {
    let records: Vec<(&[u8], &[u8])> = records.into_iter().collect();
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    let mut last_of_each: Vec<(&[u8], &[u8])> = records
        .into_iter()
        .rev()
        .filter(|(key, _)| seen.insert(*key))
        .collect();
    last_of_each.reverse();
    last_of_each
}

/// Plaintext aggregate records by `aggregates` key, least recently used evicted first.
#[derive(Debug)]
pub(crate) struct RecordCache {
    shards: Box<[Mutex<Shard>]>,
    /// Bytes each shard may hold.
    shard_budget: usize,
    /// Odd while the commit path's write is in flight; moves on with every write.
    epoch: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
}

impl RecordCache {
    /// A cache holding at most `budget_bytes` (counted as [`entry_bytes`]).
    pub fn new(budget_bytes: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    entries: LruCache::new_unbounded(),
                    bytes: 0,
                })
            })
            .collect();
        Self {
            shards,
            shard_budget: budget_bytes / SHARDS,
            epoch: AtomicU64::new(0),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        // `SHARDS` is small: the remainder of a 64-bit hash spreads keys evenly.
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        &self.shards[index]
    }

    /// The plaintext record at `key`, if kept; marks it recently used.
    pub fn get(&self, key: &[u8]) -> Option<Arc<[u8]>> {
        if self.shard_budget == 0 {
            return None;
        }
        self.shard(key).lock().entries.get(key).cloned()
    }

    /// The current record at `key`: the kept one, else RocksDB's, which is then kept if no
    /// write began since the read started. State reads and the commit path's loads both
    /// read records through here.
    pub fn read(
        &self,
        db: &DB,
        cipher: &ValueCipher,
        key: &[u8],
    ) -> Result<Option<AggregateRecord>, EngineError> {
        if let Some(plain) = self.get(key) {
            return AggregateRecord::decode(&plain).map(Some);
        }
        // Taken before the read: a write that begins after it keeps this read out of the
        // cache ("never older than what a reader has seen").
        let ticket = self.fill_ticket();
        cipher.get(db, CF_AGGREGATES, key, |plain| {
            let record = AggregateRecord::decode(plain)?;
            if let Some(ticket) = ticket {
                self.fill(ticket, key, plain);
            }
            Ok(record)
        })
    }

    /// Taken before a read of RocksDB whose result may fill the cache; `None` while the
    /// commit path's write is in flight (what the read returns may then be about to change).
    /// Private with [`Self::fill`]: [`Self::read`] is the one place that takes a ticket
    /// before its read, which the invariant depends on.
    fn fill_ticket(&self) -> Option<FillTicket> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        (self.shard_budget > 0 && epoch.is_multiple_of(2)).then_some(FillTicket(epoch))
    }

    /// Keeps what a reader read at `key` with `ticket`, unless a write began since the
    /// ticket was taken or the key is already kept (then the kept record is at least as new).
    fn fill(&self, ticket: FillTicket, key: &[u8], plain: &[u8]) {
        let mut shard = self.shard(key).lock();
        // Under the shard's lock: the commit path overwrites a shard's records under the
        // same lock, after the epoch turned odd.
        if self.epoch.load(Ordering::SeqCst) != ticket.0 || shard.entries.contains_key(key) {
            return;
        }
        shard.insert(key, plain, self.shard_budget);
    }

    /// The commit path is about to write records: no fill from a read that started before
    /// this may land. Called with the commit lock held; paired with [`Self::write_ends`].
    pub fn write_begins(&self) {
        let before = self.epoch.fetch_add(1, Ordering::SeqCst);
        debug_assert!(
            before.is_multiple_of(2),
            "a write began while another was in flight"
        );
    }

    /// The commit path's write returned: `records` (key and plaintext, in staging order, so
    /// a later record of the same aggregate wins) become the kept ones when it was
    /// `written`, and are forgotten when it failed (RocksDB may hold either version).
    pub fn write_ends<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        written: bool,
    ) {
        if self.shard_budget > 0 {
            for (key, plain) in last_record_of_each_key(records) {
                let mut shard = self.shard(key).lock();
                if written {
                    shard.insert(key, plain, self.shard_budget);
                } else {
                    shard.remove(key);
                }
            }
        }
        let before = self.epoch.fetch_add(1, Ordering::SeqCst);
        debug_assert!(
            !before.is_multiple_of(2),
            "a write ended that had not begun"
        );
    }

    /// Bytes held, counted as the budget counts them.
    pub fn footprint(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> Vec<u8> {
        format!("order\0order-{n}").into_bytes()
    }

    #[test]
    fn a_written_record_is_what_a_later_read_gets() {
        let cache = RecordCache::new(1 << 20);
        cache.write_begins();
        cache.write_ends([(&key(1)[..], &b"v1"[..]), (&key(1)[..], &b"v2"[..])], true);
        assert_eq!(cache.get(&key(1)).as_deref(), Some(&b"v2"[..]));
        assert_eq!(cache.get(&key(2)), None);
    }

    // Regression: `write_ends` put every record of a group into the cache in staging order,
    // so an aggregate appended to twice in one group had its earlier record kept for a
    // moment, and a reader that had already seen the later one from RocksDB could hit it
    // (tests/engine.rs `state_readers_racing_writers_never_see_a_version_go_back` failed
    // intermittently in CI: "s4 went back from 4 to 3"). Only each key's last record goes in.
    #[test]
    fn only_each_keys_last_record_of_a_group_goes_in() {
        let (a, b, c) = (key(1), key(2), key(3));
        let group: [(&[u8], &[u8]); 6] = [
            (&a, b"a-v3"),
            (&b, b"b-v1"),
            (&a, b"a-v4"),
            (&c, b"c-v7"),
            (&b, b"b-v2"),
            (&a, b"a-v5"),
        ];
        let kept = last_record_of_each_key(group);
        assert_eq!(
            kept,
            vec![
                (&c[..], &b"c-v7"[..]),
                (&b[..], &b"b-v2"[..]),
                (&a[..], &b"a-v5"[..])
            ],
            "one record per key, each the key's last, ordered by when that last was staged"
        );
        assert!(last_record_of_each_key(std::iter::empty()).is_empty());
    }

    #[test]
    fn a_fill_from_before_a_write_never_lands() {
        let cache = RecordCache::new(1 << 20);
        // A reader takes its ticket and reads version 1 from the store...
        let ticket = cache.fill_ticket().expect("no write in flight");
        // ...while a group writes version 2 and then loses it to eviction (here: removed
        // by a failed write, which forgets the key the same way).
        cache.write_begins();
        assert_eq!(
            cache.fill_ticket(),
            None,
            "no ticket while a write is in flight"
        );
        cache.write_ends([(&key(1)[..], &b"v2"[..])], false);
        cache.fill(ticket, &key(1), b"v1");
        assert_eq!(cache.get(&key(1)), None, "the stale read must not be kept");
        // A ticket taken after the write fills.
        let ticket = cache.fill_ticket().expect("no write in flight");
        cache.fill(ticket, &key(1), b"v2");
        assert_eq!(cache.get(&key(1)).as_deref(), Some(&b"v2"[..]));
    }

    #[test]
    fn a_fill_never_replaces_a_kept_record() {
        let cache = RecordCache::new(1 << 20);
        let ticket = cache.fill_ticket().expect("no write in flight");
        cache.fill(ticket, &key(1), b"first");
        cache.fill(ticket, &key(1), b"second");
        assert_eq!(cache.get(&key(1)).as_deref(), Some(&b"first"[..]));
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let value = vec![7u8; 400];
        let per_entry = entry_bytes(&key(0), &value);
        // Room for ~4 entries per shard.
        let cache = RecordCache::new(SHARDS * per_entry * 4);
        cache.write_begins();
        let keys: Vec<Vec<u8>> = (0..1_000).map(key).collect();
        cache.write_ends(keys.iter().map(|k| (&k[..], &value[..])), true);
        assert!(cache.footprint() <= SHARDS * per_entry * 4);
        let kept = keys.iter().filter(|k| cache.get(k).is_some()).count();
        assert!(kept > 0 && kept <= SHARDS * 4, "kept {kept}");
        // The newest key of every shard is kept: it was used last.
        assert!(cache.get(&key(999)).is_some());
        assert!(cache.get(&key(0)).is_none());
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let cache = RecordCache::new(0);
        assert_eq!(cache.fill_ticket(), None);
        cache.write_begins();
        cache.write_ends([(&key(1)[..], &b"v"[..])], true);
        assert_eq!(cache.get(&key(1)), None);
        assert_eq!(cache.footprint(), 0);
    }
}
