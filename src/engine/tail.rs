//! The opened tail of the history: the most recently committed events, in id order, kept in
//! memory as the plaintext of their stored values.
//!
//! Consumers that keep up with the history (the outbox's main use: a relay asking for what
//! came after its checkpoint) read only its newest part. Serving them from here skips
//! RocksDB's iterator and, in an encrypted store, opening every sealed value: the two were
//! ~40% of the server's CPU on a 1,000-event page (docs/BENCHMARKS.md, ninth pass). This is
//! the same trade every encrypted database's buffer pool makes: data is sealed at rest and
//! held opened in memory, where the key already is.
//!
//! Invariants (checked by the property test below against a plain ordered map):
//! - **Contiguous.** The tail holds every committed event whose id is in `(floor, newest]`
//!   and nothing else, so a scan that starts at or above `floor` can be answered from here
//!   alone, in id order, without looking at RocksDB.
//! - **Durable only.** Only the commit path adds events, a group at a time, after the group's
//!   synced write succeeded and before any writer in it is answered (`commit.rs`); before
//!   the committer starts, `Engine::open` fills it with the newest stored events
//!   (`warm_tail`). An acknowledged event is therefore here until evicted, and nothing here
//!   can be lost.
//! - **Off after a failed write.** RocksDB may then hold events this tail never saw; it stops
//!   answering for the life of the engine rather than risk a gap.
//! - **Bounded.** At most `budget` bytes (allocated capacity, index included); the oldest
//!   segment goes first, and `floor` rises to its last id.
//!
//! This module does no I/O and knows nothing of sealing; it stores and copies bytes.

use std::collections::VecDeque;

/// Bytes of events one segment is allocated for. Eviction drops a whole segment, so this is
/// the budget's granularity; large enough that a 1,000-event page spans one or two segments
/// (the benchmark's events store 260 to ~410 bytes), small enough that 32 MiB is 128 of them.
const SEGMENT_BYTES: usize = 256 * 1024;

/// A run of consecutive events stored back to back: one of the tail's segments, or one
/// of the opened history's buckets (`opened.rs`).
#[derive(Debug, Default)]
pub(super) struct Segment {
    ids: Vec<u64>,
    /// Where each event's bytes end in `data` (it starts where the previous one ended).
    ends: Vec<u32>,
    data: Vec<u8>,
}

impl Segment {
    fn with_room_for(bytes: usize) -> Self {
        Self {
            ids: Vec::new(),
            ends: Vec::new(),
            data: Vec::with_capacity(bytes.max(SEGMENT_BYTES)),
        }
    }

    fn last_id(&self) -> Option<u64> {
        self.ids.last().copied()
    }

    fn fits(&self, bytes: usize) -> bool {
        // `u32` offsets: a segment never grows past 4 GiB (one event is at most 16 MiB).
        self.data.len() + bytes <= self.data.capacity()
            && u32::try_from(self.data.len() + bytes).is_ok()
    }

    /// Appends the next event, whose id is above every id held. The caller keeps the
    /// segment under 4 GiB (`fits`, or `opened::MAX_BUCKET_BYTES`), so offsets fit a `u32`.
    pub(super) fn push(&mut self, event_id: u64, value: &[u8]) {
        debug_assert!(self.ids.last().is_none_or(|last| *last < event_id));
        self.data.extend_from_slice(value);
        self.ids.push(event_id);
        self.ends
            .push(u32::try_from(self.data.len()).unwrap_or(u32::MAX));
    }

    /// Bytes of events held.
    pub(super) fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Each event after `after`, with its bytes, in id order.
    pub(super) fn events_after(&self, after: u64) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        let first = self.ids.partition_point(|id| *id <= after);
        let starts = std::iter::once(0).chain(self.ends.iter().map(|end| *end as usize));
        self.ids
            .iter()
            .zip(starts.zip(self.ends.iter().map(|end| *end as usize)))
            .skip(first)
            .map(|(id, (start, end))| (*id, self.data.get(start..end).unwrap_or_default()))
    }

    /// A copy whose vectors are allocated for their contents alone, for a segment that is
    /// done growing. Not `shrink_to_fit`: an allocator may shrink a block where it is and
    /// keep all of it. mimalloc (the `dbx` binary's allocator) does so for any block at most
    /// twice the new size, so after doubling growth a shrunk segment's `capacity()`, which
    /// its footprint counts, could be half of what it held (docs/BENCHMARKS.md, twelfth
    /// pass).
    pub(super) fn copied_to_size(&self) -> Segment {
        Segment {
            ids: self.ids.to_vec(),
            ends: self.ends.to_vec(),
            data: self.data.to_vec(),
        }
    }

    fn start_of(&self, index: usize) -> usize {
        match index {
            0 => 0,
            n => self.ends.get(n - 1).map_or(0, |end| *end as usize),
        }
    }

    /// Bytes allocated (capacity, index included).
    pub(super) fn footprint(&self) -> usize {
        self.data.capacity() + self.ids.capacity() * 8 + self.ends.capacity() * 4
    }

    /// Empty, keeping its allocations for reuse.
    pub(super) fn clear(&mut self) {
        self.ids.clear();
        self.ends.clear();
        self.data.clear();
    }
}

/// Events copied out of the tail, to be decoded after its lock is released.
#[derive(Debug, Default)]
pub(crate) struct TailBatch {
    ids: Vec<u64>,
    ends: Vec<usize>,
    data: Vec<u8>,
}

impl TailBatch {
    fn clear(&mut self) {
        self.ids.clear();
        self.ends.clear();
        self.data.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Each event's id and stored value, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.ids
            .iter()
            .zip(starts.zip(self.ends.iter().copied()))
            .map(|(id, (start, end))| (*id, self.data.get(start..end).unwrap_or_default()))
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct HistoryTail {
    budget: usize,
    /// Every committed event above `floor` (up to `newest`) is in `segments`.
    floor: u64,
    newest: u64,
    segments: VecDeque<Segment>,
    footprint: usize,
    /// The last evicted segment, emptied, for the next one: a full tail evicts a segment
    /// for every one it starts, and reusing it spares the allocator and the page faults of
    /// a fresh 256 KiB. Not counted in `footprint` (the bound is `budget` plus this one).
    spare: Option<Segment>,
    enabled: bool,
}

impl HistoryTail {
    /// An empty tail above the store's last event id, holding at most `budget` bytes; a
    /// budget of 0 keeps nothing (every read goes to RocksDB).
    pub fn new(budget: usize, last_event_id: u64) -> Self {
        Self {
            budget,
            floor: last_event_id,
            newest: last_event_id,
            segments: VecDeque::new(),
            footprint: 0,
            spare: None,
            enabled: budget > 0,
        }
    }

    /// Bytes held (allocated capacity, index included, the spare segment too).
    pub fn footprint(&self) -> usize {
        self.footprint + self.spare.as_ref().map_or(0, Segment::footprint)
    }

    /// The newest event id the commit path has published, whether or not the tail holds it
    /// (it may be off): the horizon of history scans, since every event up to it is durable
    /// and every acknowledged event is at or below it.
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// Adds one group's committed events, in id order. Called by the commit path only, after
    /// the group's synced write succeeded. An id that does not follow the newest one means
    /// the commit path broke its own ordering; the tail then turns itself off.
    pub fn publish<'a>(&mut self, events: impl IntoIterator<Item = (u64, &'a [u8])>) {
        for (event_id, value) in events {
            if self.enabled {
                if event_id > self.newest {
                    self.push(event_id, value);
                } else {
                    debug_assert!(false, "event {event_id} published after {}", self.newest);
                    tracing::error!(
                        event_id,
                        newest = self.newest,
                        "history tail saw an event id out of order; scans go to RocksDB"
                    );
                    self.disable();
                }
            }
            self.newest = self.newest.max(event_id);
        }
        if self.enabled {
            self.evict();
        }
    }

    fn push(&mut self, event_id: u64, value: &[u8]) {
        let needs_segment = self
            .segments
            .back()
            .is_none_or(|last| !last.fits(value.len()));
        if needs_segment {
            let segment = match self.spare.take() {
                Some(spare) if spare.data.capacity() >= value.len() => spare,
                _ => Segment::with_room_for(value.len()),
            };
            self.footprint += segment.footprint();
            self.segments.push_back(segment);
        }
        let Some(segment) = self.segments.back_mut() else {
            return;
        };
        debug_assert!(event_id > self.newest);
        let before = segment.footprint();
        // `fits` checked the offset against u32 (a fresh segment holds one event of at most
        // the payload ceiling).
        segment.push(event_id, value);
        self.footprint = self.footprint - before + segment.footprint();
    }

    fn evict(&mut self) {
        while self.footprint > self.budget {
            let Some(mut oldest) = self.segments.pop_front() else {
                break;
            };
            self.footprint -= oldest.footprint();
            if let Some(last) = oldest.last_id() {
                self.floor = last;
            }
            // Only ordinary segments are kept: one grown for a large event is let go.
            if oldest.data.capacity() == SEGMENT_BYTES {
                oldest.clear();
                self.spare = Some(oldest);
            }
        }
    }

    /// Stops answering (after a failed group write) and frees what it holds.
    pub fn disable(&mut self) {
        self.enabled = false;
        self.segments.clear();
        self.spare = None;
        self.footprint = 0;
    }

    /// Copies into `out` the events after `after`, up to id `up_to`, in id order, until at
    /// least `max_bytes` are copied (at least one event, whatever its size). `false` when the
    /// tail cannot answer for the events after `after`: it is off, or they are older than
    /// what it holds, or `after` is newer than anything it has seen (a group written but not
    /// yet published). `true` with nothing copied means there is no such event.
    pub fn copy_after(
        &self,
        after: u64,
        up_to: u64,
        max_bytes: usize,
        out: &mut TailBatch,
    ) -> bool {
        out.clear();
        let max_bytes = max_bytes.max(1);
        if !self.enabled || after < self.floor || after > self.newest {
            return false;
        }
        let first_segment = self
            .segments
            .partition_point(|s| s.last_id().is_none_or(|last| last <= after));
        for segment in self.segments.range(first_segment..) {
            let start = segment.ids.partition_point(|id| *id <= after);
            let end = start + segment.ids[start..].partition_point(|id| *id <= up_to);
            let mut stop = end;
            let mut copied = out.data.len();
            // Events are whole or not at all: count how many fit the byte budget.
            for index in start..end {
                if copied >= max_bytes {
                    stop = index;
                    break;
                }
                copied += segment.ends[index] as usize - segment.start_of(index);
            }
            if stop > start {
                let base = out.data.len();
                let from = segment.start_of(start);
                let to = segment.start_of(stop);
                out.data.extend_from_slice(&segment.data[from..to]);
                out.ids.extend_from_slice(&segment.ids[start..stop]);
                out.ends.extend(
                    segment.ends[start..stop]
                        .iter()
                        .map(|end| base + (*end as usize - from)),
                );
            }
            if stop < segment.ids.len() || out.data.len() >= max_bytes {
                break;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn value(id: u64, len: usize) -> Vec<u8> {
        (0..len).map(|i| (id as usize + i) as u8).collect()
    }

    fn read_all(
        tail: &HistoryTail,
        after: u64,
        up_to: u64,
        max_bytes: usize,
    ) -> Option<Vec<(u64, Vec<u8>)>> {
        let mut batch = TailBatch::default();
        let mut cursor = after;
        let mut out = Vec::new();
        loop {
            if !tail.copy_after(cursor, up_to, max_bytes, &mut batch) {
                return None;
            }
            if batch.is_empty() {
                return Some(out);
            }
            for (id, bytes) in batch.iter() {
                assert!(id > cursor, "ids go up: {id} after {cursor}");
                cursor = id;
                out.push((id, bytes.to_vec()));
            }
        }
    }

    #[test]
    fn a_scan_below_the_floor_or_above_the_newest_is_not_answered() {
        let mut tail = HistoryTail::new(1 << 20, 100);
        assert!(read_all(&tail, 99, u64::MAX, 64).is_none());
        assert_eq!(read_all(&tail, 100, u64::MAX, 64), Some(vec![]));
        tail.publish([(101, &b"a"[..]), (105, &b"bb"[..])]);
        assert_eq!(
            read_all(&tail, 100, u64::MAX, 1),
            Some(vec![(101, b"a".to_vec()), (105, b"bb".to_vec())])
        );
        assert_eq!(
            read_all(&tail, 101, u64::MAX, 64),
            Some(vec![(105, b"bb".to_vec())])
        );
        assert_eq!(
            read_all(&tail, 100, 104, 64),
            Some(vec![(101, b"a".to_vec())])
        );
        assert!(
            read_all(&tail, 106, u64::MAX, 64).is_none(),
            "a group not yet published"
        );
    }

    #[test]
    fn eviction_raises_the_floor_to_the_last_evicted_id() {
        // Two segments' worth of budget: the third segment pushes out the first.
        let mut tail = HistoryTail::new(2 * SEGMENT_BYTES + 64 * 1024, 0);
        let big = vec![7u8; SEGMENT_BYTES / 2];
        for id in 1..=6u64 {
            tail.publish([(id, &big[..])]);
        }
        assert!(tail.footprint <= 2 * SEGMENT_BYTES + 64 * 1024);
        assert_eq!(tail.floor, 2);
        assert!(read_all(&tail, 1, u64::MAX, 1 << 20).is_none());
        let rest = read_all(&tail, 2, u64::MAX, 1 << 20).expect("answered");
        assert_eq!(
            rest.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
    }

    #[test]
    fn an_event_larger_than_a_segment_gets_one_of_its_own() {
        let mut tail = HistoryTail::new(64 << 20, 0);
        let huge = value(2, 3 * SEGMENT_BYTES);
        tail.publish([(1, &b"x"[..]), (2, &huge[..]), (3, &b"y"[..])]);
        let all = read_all(&tail, 0, u64::MAX, 16).expect("answered");
        assert_eq!(all, vec![(1, b"x".to_vec()), (2, huge), (3, b"y".to_vec())]);
    }

    #[test]
    fn a_zero_budget_or_an_out_of_order_id_turns_it_off() {
        let mut none = HistoryTail::new(0, 0);
        none.publish([(1, &b"x"[..])]);
        assert!(read_all(&none, 0, u64::MAX, 64).is_none());
        assert_eq!(none.footprint(), 0);

        let mut tail = HistoryTail::new(1 << 20, 10);
        tail.publish([(11, &b"x"[..])]);
        tail.disable();
        assert!(read_all(&tail, 10, u64::MAX, 64).is_none());
        assert_eq!(tail.footprint(), 0);
        // The horizon still moves: scans from RocksDB stop at what was published.
        tail.publish([(12, &b"y"[..])]);
        assert_eq!(tail.newest(), 12);
    }

    proptest! {
        // Failures are not saved to a seed file, as in tests/engine_model.rs: the cases this
        // test shrinks to come from deliberately broken builds as often as from real bugs.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
        // Against a model: an ordered map of every committed event. Whatever the tail
        // answers must equal the model's events after the cursor, and it must answer
        // every cursor from its floor to its newest id.
        #[test]
        fn the_tail_answers_exactly_the_committed_events_above_its_floor(
            start in 0u64..1_000,
            groups in prop::collection::vec(
                prop::collection::vec((1u64..5, 0usize..3_000), 1..20), 1..60),
            budget_segments in 0usize..6,
            probes in prop::collection::vec((0u64..4_000, 0u64..4_000, 1usize..20_000), 1..40),
        ) {
            let budget = budget_segments * SEGMENT_BYTES / 2;
            let mut tail = HistoryTail::new(budget, start);
            let mut model = BTreeMap::new();
            let mut next = start;
            for group in &groups {
                let mut values = Vec::new();
                for (gap, len) in group {
                    next += gap;
                    values.push((next, value(next, *len)));
                }
                tail.publish(values.iter().map(|(id, v)| (*id, v.as_slice())));
                model.extend(values);
                prop_assert!(tail.footprint <= budget);
                prop_assert!(tail.spare.as_ref().is_none_or(|s| s.data.capacity() == SEGMENT_BYTES));
            }
            for (after, up_to, max_bytes) in probes {
                let after = start + after;
                let up_to = start + up_to;
                let expected: Vec<(u64, Vec<u8>)> = model
                    .range(after + 1..)
                    .take_while(|(id, _)| **id <= up_to)
                    .map(|(id, v)| (*id, v.clone()))
                    .collect();
                match read_all(&tail, after, up_to, max_bytes) {
                    Some(got) => {
                        prop_assert!(budget > 0);
                        prop_assert!(after >= tail.floor && after <= tail.newest);
                        prop_assert_eq!(got, expected);
                    }
                    None => prop_assert!(
                        budget == 0 || after < tail.floor || after > tail.newest,
                        "a cursor in (floor {}, newest {}] was refused: {}",
                        tail.floor, tail.newest, after
                    ),
                }
            }
        }
    }
}
