//! The opened history: stored events older than the tail, kept opened in memory a bucket
//! at a time, the least recently read bucket out first.
//!
//! The tail (`tail.rs`) holds the newest events because the commit path puts them there.
//! Older history is read from RocksDB and, in an encrypted store, opened value by value:
//! on a 1,000-event outbox page that is not in the tail, RocksDB's iterator and AES-GCM
//! were ~48% of the server's CPU (docs/BENCHMARKS.md, eleventh pass). A stretch of history
//! read again (consumers replaying a window, several consumers at about the same position,
//! `events` scans by id range) is answered from here instead: the buffer pool of an
//! encrypted database, which keeps pages opened in memory where the key already is.
//!
//! A bucket is every event whose id falls in one aligned range of 2^[`BUCKET_SHIFT`] ids.
//! Ids are snowflakes (`snowflake.rs`: `ms << 22 | worker << 12 | sequence`), so a bucket is
//! a slice of one millisecond's sequence of one worker and holds at most 256 events, however
//! dense the history. Invariants:
//! - **Whole.** A bucket is kept only with every event of its id range, and with the id of
//!   the first event after it. The engine fills one from a single RocksDB iterator that
//!   read the range from its first event (it entered the range from an earlier one, or
//!   started where no event of the range lies before it) and went on past its last one,
//!   and never keeps the bucket an iterator ends in. Ids become visible in
//!   order, a committed group at a time, so nothing can appear in the range, or between it
//!   and that next id, afterwards; events are never changed or removed, so a kept bucket
//!   never goes stale and needs no invalidation.
//! - **Bounded.** At most `budget` bytes (allocated capacity, index and bookkeeping
//!   included); keeping a bucket evicts the least recently read ones until it fits. A bucket
//!   over [`MAX_BUCKET_BYTES`] is never kept. A kept bucket is a copy allocated for its
//!   contents alone, so the capacity counted is what is held, but for the allocator's
//!   rounding of each block to its size class (under a quarter with mimalloc, ~2% for a
//!   full bucket of the benchmark's events).
//! - **Kept on a second read.** A bucket read from RocksDB is kept only when it was read
//!   there recently, among as many other buckets as are kept (at least [`MIN_GHOSTS`]): a
//!   scan that passes over history once (a consumer catching up, random pages over far
//!   more history than the budget) neither evicts what is read again nor pays for copying
//!   what will not be (without this, random pages over 1M events cost 12% more server CPU
//!   than with no opened history at all).
//!
//! This module does no I/O and knows nothing of sealing; it stores and lends bytes.

use std::sync::Arc;

use hashlink::LruCache;

use super::tail::Segment;

/// Ids per bucket, as a power of two. 2^8 = 256 ids: a slice of one millisecond's
/// sequence, so a bucket never holds more than 256 events (a dense history's page of 1,000
/// events spans about four buckets; a sparse one's may span one per event, each a hash
/// lookup). A scan that misses reads on to the end of the bucket it stops in, so a cold
/// read costs at most one bucket of extra events.
const BUCKET_SHIFT: u32 = 8;

/// Ids per bucket (see [`BUCKET_SHIFT`]).
#[cfg(test)]
const BUCKET_IDS: u64 = 1 << BUCKET_SHIFT;

/// A bucket larger than this is not kept (its events average over 4 KiB): large events
/// would evict many buckets of ordinary ones, and opening them is the smaller part of
/// sending them.
pub const MAX_BUCKET_BYTES: usize = 1024 * 1024;

/// Buckets read from RocksDB and not kept that are remembered, at the least (see
/// [`OpenedHistory::admit`]): while few buckets are kept, a bucket read again within the
/// last 64 misses is still kept on its second read.
const MIN_GHOSTS: usize = 64;

/// What a kept bucket costs besides its vectors: the `Arc`, the LRU's entry and its share
/// of the hash table.
const BUCKET_OVERHEAD_BYTES: usize = 128;

/// The bucket of `event_id`.
pub fn bucket_of(event_id: u64) -> u64 {
    event_id >> BUCKET_SHIFT
}

/// The first id of `bucket`'s range.
pub fn first_id(bucket: u64) -> u64 {
    bucket << BUCKET_SHIFT
}

/// The events of one bucket, opened, back to back in id order.
#[derive(Debug)]
pub struct OpenedBucket {
    events: Segment,
    /// The id of the first stored event after the bucket's range: no event has an id
    /// between the range's end and this one.
    next_id: u64,
}

impl OpenedBucket {
    /// Each event after `after`, with its opened value, in id order.
    pub fn events_after(&self, after: u64) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.events.events_after(after)
    }

    /// The id of the first stored event after this bucket's range.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    fn footprint(&self) -> usize {
        self.events.footprint() + BUCKET_OVERHEAD_BYTES
    }
}

/// Buckets being read from RocksDB, one at a time and in id order, into buffers reused from
/// one bucket to the next; a whole bucket is copied out at its size
/// ([`Segment::copied_to_size`]), so what the opened history counts is what it holds.
#[derive(Debug)]
pub struct BucketBuilder {
    bucket: u64,
    events: Segment,
    /// Over [`MAX_BUCKET_BYTES`]: it will not be kept, and holds nothing.
    oversized: bool,
}

impl BucketBuilder {
    /// An empty bucket, to be filled from the first event of `bucket`'s range.
    pub fn new(bucket: u64) -> Self {
        Self {
            bucket,
            events: Segment::default(),
            oversized: false,
        }
    }

    /// Empty again, to be filled from the first event of `bucket`'s range; the buffers stay.
    pub fn restart(&mut self, bucket: u64) {
        self.bucket = bucket;
        self.events.clear();
        self.oversized = false;
    }

    #[cfg(test)]
    fn bucket(&self) -> u64 {
        self.bucket
    }

    /// Whether it can still be kept (it has not outgrown [`MAX_BUCKET_BYTES`]).
    pub fn keepable(&self) -> bool {
        !self.oversized
    }

    /// Adds the next event of the bucket's range, in id order.
    pub fn push(&mut self, event_id: u64, value: &[u8]) {
        debug_assert_eq!(bucket_of(event_id), self.bucket);
        if self.oversized {
            return;
        }
        if self.events.bytes() + value.len() > MAX_BUCKET_BYTES {
            self.oversized = true;
            self.events.clear();
            return;
        }
        self.events.push(event_id, value);
    }

    /// The whole bucket, now that `next_id` (the first id past its range) was read; `None`
    /// when it outgrew [`MAX_BUCKET_BYTES`]. The builder is then [`restart`](Self::restart)ed
    /// for the next bucket.
    pub fn finish(&self, next_id: u64) -> Option<OpenedBucket> {
        debug_assert!(bucket_of(next_id) > self.bucket);
        if self.oversized {
            return None;
        }
        Some(OpenedBucket {
            events: self.events.copied_to_size(),
            next_id,
        })
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct OpenedHistory {
    budget: usize,
    footprint: usize,
    buckets: LruCache<u64, Arc<OpenedBucket>>,
    /// Buckets read from RocksDB recently and not kept, the oldest first: at most
    /// `max(buckets.len(), MIN_GHOSTS)` ids (outside the budget: ~50 bytes each, against a
    /// kept bucket's [`BUCKET_OVERHEAD_BYTES`] plus its events).
    ghosts: LruCache<u64, ()>,
}

impl OpenedHistory {
    /// An empty one holding at most `budget` bytes; 0 keeps nothing.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            footprint: 0,
            buckets: LruCache::new_unbounded(),
            ghosts: LruCache::new_unbounded(),
        }
    }

    /// Whether it keeps anything at all.
    pub fn keeps(&self) -> bool {
        self.budget > 0
    }

    /// Bytes held (allocated capacity, index and bookkeeping included).
    pub fn footprint(&self) -> usize {
        self.footprint
    }

    /// The kept `bucket`, now the most recently read.
    pub fn get(&mut self, bucket: u64) -> Option<Arc<OpenedBucket>> {
        self.buckets.get(&bucket).cloned()
    }

    /// Whether `bucket` is kept (without counting as a read).
    pub fn contains(&self, bucket: u64) -> bool {
        self.buckets.contains_key(&bucket)
    }

    /// Whether a scan about to read `bucket` from RocksDB should keep it opened: only when it
    /// was read there recently (see the module documentation). Otherwise it is remembered,
    /// and the oldest remembered bucket beyond the limit is forgotten.
    pub fn admit(&mut self, bucket: u64) -> bool {
        if !self.keeps() {
            return false;
        }
        if self.ghosts.remove(&bucket).is_some() {
            return true;
        }
        self.ghosts.insert(bucket, ());
        let limit = self.buckets.len().max(MIN_GHOSTS);
        while self.ghosts.len() > limit {
            self.ghosts.remove_lru();
        }
        false
    }

    /// Keeps `opened` as `bucket`, the most recently read, evicting the least recently read
    /// buckets until it fits. A bucket larger than the whole budget is not kept.
    pub fn keep(&mut self, bucket: u64, opened: OpenedBucket) {
        let size = opened.footprint();
        if size > self.budget {
            return;
        }
        if let Some(old) = self.buckets.insert(bucket, Arc::new(opened)) {
            // Two scans read the same bucket at once: the same events, kept once.
            self.footprint -= old.footprint();
        }
        self.footprint += size;
        while self.footprint > self.budget {
            let Some((_, evicted)) = self.buckets.remove_lru() else {
                break;
            };
            self.footprint -= evicted.footprint();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn value(id: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (id as usize).wrapping_add(i) as u8)
            .collect()
    }

    /// Fills the buckets of `history` the way the engine does: one pass in id order from the
    /// first bucket's first id; a bucket is finished when an id past it is read.
    fn fill(history: &BTreeMap<u64, Vec<u8>>, opened: &mut OpenedHistory) {
        let mut building: Option<BucketBuilder> = None;
        for (id, bytes) in history {
            let builder = building.get_or_insert_with(|| BucketBuilder::new(bucket_of(*id)));
            if builder.bucket() != bucket_of(*id) {
                if let Some(done) = builder.finish(*id) {
                    opened.keep(builder.bucket(), done);
                }
                builder.restart(bucket_of(*id));
            }
            builder.push(*id, bytes);
        }
    }

    #[test]
    fn a_bucket_lends_the_events_after_a_cursor_and_names_the_next_id() {
        let mut builder = BucketBuilder::new(bucket_of(BUCKET_IDS * 3));
        let first = BUCKET_IDS * 3;
        builder.push(first + 1, b"a");
        builder.push(first + 7, b"");
        builder.push(first + 9, b"ccc");
        let bucket = builder.finish(BUCKET_IDS * 9).expect("small enough");
        let after = |cursor: u64| {
            bucket
                .events_after(cursor)
                .map(|(id, bytes)| (id, bytes.to_vec()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            after(0),
            vec![
                (first + 1, b"a".to_vec()),
                (first + 7, vec![]),
                (first + 9, b"ccc".to_vec())
            ]
        );
        assert_eq!(after(first + 7), vec![(first + 9, b"ccc".to_vec())]);
        assert_eq!(after(first + 9), vec![]);
        assert_eq!(bucket.next_id(), BUCKET_IDS * 9);
    }

    #[test]
    fn a_kept_bucket_is_a_copy_allocated_for_its_events_alone() {
        // Regression: a kept bucket was its builder's vectors after `shrink_to_fit`, which
        // mimalloc (the `dbx` binary's allocator) does in place for any block at most twice
        // the new size. Each bucket was counted at its length while it held what doubling
        // growth had allocated, up to twice that: the opened history held more than its
        // budget (~7 MiB more at 32 MiB, docs/BENCHMARKS.md, twelfth pass). A test cannot see
        // where an allocator leaves a block (this crate forbids `unsafe`, so it cannot
        // install one that reports it); it checks that what is kept is a separate
        // allocation sized to its contents, and that the builder's buffers stay behind.
        let mut builder = BucketBuilder::new(0);
        for id in 1..=100 {
            builder.push(id, &[7u8; 333]);
        }
        let grown = builder.events.footprint();
        let bucket = builder.finish(BUCKET_IDS).expect("small enough");
        assert_eq!(
            bucket.footprint(),
            100 * (333 + 8 + 4) + BUCKET_OVERHEAD_BYTES,
            "counted at its contents"
        );
        assert!(
            grown > bucket.events.footprint(),
            "growth overshot the contents"
        );
        assert_eq!(
            builder.events.footprint(),
            grown,
            "the buffers stay for reuse"
        );
        builder.restart(1);
        assert_eq!(builder.events.bytes(), 0);
        assert_eq!(builder.events.footprint(), grown);
        assert_eq!(
            bucket.events_after(0).count(),
            100,
            "the copy holds every event"
        );
    }

    #[test]
    fn an_oversized_bucket_is_not_kept() {
        let mut builder = BucketBuilder::new(0);
        let big = vec![1u8; MAX_BUCKET_BYTES / 2 + 1];
        builder.push(1, &big);
        assert!(builder.keepable());
        builder.push(2, &big);
        assert!(!builder.keepable());
        assert!(builder.finish(BUCKET_IDS).is_none());
    }

    #[test]
    fn keeping_evicts_the_least_recently_read_bucket() {
        let one = |id: u64| {
            let mut builder = BucketBuilder::new(bucket_of(id));
            builder.push(id, &[0u8; 1000]);
            builder.finish(id + BUCKET_IDS).expect("small")
        };
        let size = one(0).footprint();
        let mut opened = OpenedHistory::new(2 * size);
        opened.keep(0, one(0));
        opened.keep(1, one(BUCKET_IDS));
        assert!(
            opened.get(0).is_some(),
            "bucket 0 read: bucket 1 is now the oldest"
        );
        opened.keep(2, one(2 * BUCKET_IDS));
        assert!(opened.contains(0));
        assert!(!opened.contains(1));
        assert!(opened.contains(2));
        assert_eq!(opened.footprint(), 2 * size);
        // Kept twice (two scans at once): counted once.
        opened.keep(2, one(2 * BUCKET_IDS));
        assert_eq!(opened.footprint(), 2 * size);

        let mut none = OpenedHistory::new(0);
        assert!(!none.keeps());
        none.keep(0, one(0));
        assert!(!none.contains(0));
        assert_eq!(none.footprint(), 0);
    }

    #[test]
    fn a_bucket_is_admitted_on_its_second_read_while_it_is_remembered() {
        let mut opened = OpenedHistory::new(1 << 20);
        assert!(!opened.admit(7), "a first read only remembers");
        assert!(opened.admit(7), "a second read keeps");
        assert!(!opened.admit(7), "remembered once: admitted once");
        // Past MIN_GHOSTS other misses (nothing kept), the oldest is forgotten.
        assert!(!opened.admit(1));
        for other in 100..100 + MIN_GHOSTS as u64 {
            assert!(!opened.admit(other));
        }
        assert!(
            !opened.admit(1),
            "forgotten: read again as if for the first time"
        );
        let mut none = OpenedHistory::new(0);
        assert!(!none.admit(3));
        assert!(!none.admit(3), "nothing is kept with no budget");
    }

    proptest! {
        // Failures are not saved to a seed file, as in tests/engine_model.rs.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
        // Against a model, an ordered map of the history: walking kept buckets from any
        // cursor (each bucket's events after it, then on from its next id) gives exactly the
        // model's events after the cursor, for as long as the buckets walked are kept, and the
        // footprint never passes the budget.
        #[test]
        fn kept_buckets_answer_exactly_the_history_they_cover(
            gaps in prop::collection::vec((0u64..3, 1u64..40, 0usize..2_000), 1..400),
            budget_choice in 0usize..4,
            probes in prop::collection::vec(0usize..400, 1..30),
        ) {
            let mut history = BTreeMap::new();
            let mut next = 1u64;
            for (jump, gap, len) in gaps {
                next += gap + jump * BUCKET_IDS * 5;
                history.insert(next, value(next, len));
            }
            let everything = 1usize << 40;
            let budget = [0, 16 * 1024, 256 * 1024, everything][budget_choice];
            let mut opened = OpenedHistory::new(budget);
            fill(&history, &mut opened);
            prop_assert!(opened.footprint() <= budget);
            let ids: Vec<u64> = history.keys().copied().collect();
            let last_bucket = ids.last().map_or(0, |id| bucket_of(*id));
            for probe in probes {
                // A cursor just before an event: its bucket was filled (the engine's fill
                // starts at a miss's bucket; this one's at the first event's).
                let Some(cursor) = ids.get(probe % ids.len()).map(|id| id - 1) else {
                    continue;
                };
                let expected: Vec<(u64, Vec<u8>)> =
                    history.range(cursor + 1..).map(|(id, v)| (*id, v.clone())).collect();
                let mut got = Vec::new();
                let mut at = cursor;
                while let Some(bucket) = opened.get(bucket_of(at + 1)) {
                    for (id, bytes) in bucket.events_after(at) {
                        got.push((id, bytes.to_vec()));
                    }
                    prop_assert!(bucket.next_id() > at);
                    at = bucket.next_id() - 1;
                }
                prop_assert_eq!(&got[..], &expected[..got.len()]);
                if budget == everything {
                    // Every bucket but the last (never seen whole) is kept, gaps included.
                    let whole = expected.iter().filter(|(id, _)| bucket_of(*id) < last_bucket).count();
                    prop_assert_eq!(got.len(), whole);
                }
            }
        }
    }
}
