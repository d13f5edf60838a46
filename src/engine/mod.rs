//! The storage engine: the single write authority over a RocksDB store, and every read.
//!
//! Writes go through [`commit`] (one commit lock, group commit, synced WAL before any
//! acknowledgment). Reads go to RocksDB: every batch the committer writes is atomic and
//! written in event-id order, so a reader always sees a prefix of the commit history. Scans
//! of the history in id order that start within its newest part are answered from the
//! opened tail ([`tail`]), which the commit path fills with the same events, in the same
//! order, after each synced write; older stretches read again from the opened history
//! ([`opened`]), which such scans fill from RocksDB a bucket at a time.
//! Nothing here knows SQL or pgwire; the schema reaches the write path only through
//! [`policy::WritePolicy`].

mod codec;
pub mod commit;
pub mod error;
pub mod event;
pub mod keys;
pub mod merkle;
pub mod names;
mod opened;
pub mod options;
pub mod policy;
pub mod record;
mod records;
pub mod seal;
pub mod snowflake;
mod store;
mod tail;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};
use rocksdb::{ColumnFamily, Direction, IteratorMode, ReadOptions, DB};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

pub use commit::{AppendOutcome, AppendRequest, NewEvent};
pub use error::{EngineError, ExpectedVersion, SchemaRejection, ViolationClass};
pub use event::{format_timestamp_micros, Event, EventView, Issuer, StoredText};
pub use merkle::Hash;
pub use options::EngineOptions;
pub use policy::{AcceptAll, CheckedEvent, EventCheck, SnapshotSetting, WritePolicy};
pub use seal::KeySpec;
pub use store::{DOMAIN, STORE_FORMAT};

use commit::{Command, CommitLock, Committer, CommitterParts};
use keys::{
    aggregate_key, aggregate_type_prefix, event_key, prefix_upper_bound, split_aggregate_key,
    stream_prefix, version_of_key, versioned_key, CF_AGGREGATES, CF_EVENTS, CF_META, CF_SNAPSHOTS,
    CF_STREAMS, META_COUNTERS,
};
use merkle::Frontier;
use opened::{BucketBuilder, OpenedHistory};
use options::{COMMIT_QUEUE_DEPTH, MAX_OUTBOX_PAGE_BYTES};
use record::{decode_snapshot, AggregateRecord};
use records::RecordCache;
use seal::{OpenScratch, ValueCipher};
use snowflake::Snowflake;
use tail::{HistoryTail, TailBatch};

/// Bytes of events a history scan copies out of the opened tail per lock: the commit path
/// waits for a reader's copy (~3 µs for 32 KiB) before it can add the next group.
const TAIL_COPY_BYTES: usize = 32 * 1024;

/// Totals kept in the meta column family, updated in every group commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub aggregates: u64,
}

impl Counters {
    fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.events.to_be_bytes());
        out[8..].copy_from_slice(&self.aggregates.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let events = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let aggregates = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Self { events, aggregates })
    }
}

/// An aggregate's materialized state at some version.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateState {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub version: u64,
    /// Compact JSON text of the state object.
    pub state_json: String,
    pub merkle_root: Hash,
    pub created_at_micros: i64,
    pub updated_at_micros: i64,
    pub last_event_id: u64,
}

impl AggregateState {
    /// The state parsed as a JSON object.
    pub fn state(&self) -> Result<Map<String, Value>, EngineError> {
        match serde_json::from_str::<Value>(&self.state_json) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(EngineError::corrupt("aggregate state", "not a JSON object")),
        }
    }
}

/// One page of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxPage {
    /// Committed events in ascending event id, all greater than the `after` asked for.
    pub events: Vec<Event>,
    /// The checkpoint to persist: pass it as `after` for the next page.
    pub next_after_event_id: u64,
}

/// The result of recomputing one aggregate's Merkle root from its stored events.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The version the aggregate record claims.
    pub version: u64,
    /// Events read and hashed.
    pub events_checked: u64,
    /// The root recomputed from the stored events.
    pub recomputed_root: Hash,
    /// The root stored in the aggregate record.
    pub stored_root: Hash,
    /// Every inconsistency found (empty when `ok`).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when the recomputed root matches and nothing was inconsistent.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.recomputed_root == self.stored_root
    }
}

/// What RocksDB holds in memory right now, in bytes (RocksDB's own accounting; the process
/// RSS adds allocator overhead, the Rust side and thread stacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    /// Blocks in the shared block cache (data, index and filter blocks).
    pub block_cache: u64,
    /// The part of `block_cache` pinned by open iterators and L0 index/filter blocks.
    pub block_cache_pinned: u64,
    /// Every column family's memtables, mutable and immutable.
    pub memtables: u64,
    /// Table readers outside the block cache.
    pub table_readers: u64,
    /// The opened tail of the history (engine memory, not RocksDB's).
    pub history_tail: u64,
    /// Older stretches of the history kept opened (engine memory, not RocksDB's).
    pub opened_history: u64,
    /// Current aggregate records kept opened (engine memory, not RocksDB's).
    pub aggregate_records: u64,
}

/// Store-wide figures for status displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub aggregates: u64,
    pub last_event_id: u64,
}

/// A handle on an open store. Cheap to clone; the store closes when the last handle drops
/// (or at [`Engine::shutdown`]).
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Arc<DB>,
    /// The committer thread's queue; `None` once shut down (no append is accepted then,
    /// inline or queued).
    sender: RwLock<Option<mpsc::Sender<Command>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    /// The commit path's lock, shared by the committer thread and lone writers.
    commit_lock: CommitLock,
    /// Appends between entry and answer, over both paths: 1 means the caller is alone.
    appends_in_flight: AtomicUsize,
    policy: Arc<RwLock<Arc<dyn WritePolicy>>>,
    counters: Arc<RwLock<Counters>>,
    /// Opens what the committer sealed (a pass-through without a key).
    cipher: ValueCipher,
    /// The newest events, opened; filled at open and then by the commit path only.
    tail: Arc<RwLock<HistoryTail>>,
    /// Buckets of older history kept opened; filled by the scans that read them.
    opened: Mutex<OpenedHistory>,
    /// Current records of recently used aggregates, opened; kept right by the commit path.
    records: Arc<RecordCache>,
    options: EngineOptions,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.sender.write().take();
        if let Some(handle) = self.committer.lock().take() {
            let _ = handle.join();
        }
    }
}

/// Counts an append from entry to answer (see `Inner::appends_in_flight`).
struct InFlight<'a> {
    counter: &'a AtomicUsize,
    /// The count right after this append entered.
    at_entry: usize,
}

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        let at_entry = counter.fetch_add(1, Ordering::AcqRel) + 1;
        Self { counter, at_entry }
    }

    /// True when no other append was in flight as this one entered.
    fn alone(&self) -> bool {
        self.at_entry == 1
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A lone writer on a tokio worker commits without first handing the worker's other tasks
/// away only while synced writes typically take at most this long: a few fdatasyncs of an
/// ordinary SSD (~95 µs on this project's machine). Longer, and the tasks queued behind it on
/// the worker would wait noticeably; the hand-off is then worth its cost.
const INLINE_COMMIT_MAX_TYPICAL_WRITE: std::time::Duration = std::time::Duration::from_micros(500);

/// How the calling thread may block for a synced write.
#[derive(Debug, Clone, Copy)]
enum Blocking {
    /// A plain thread: block.
    Allowed,
    /// A tokio worker: block directly while synced writes are quick
    /// ([`INLINE_COMMIT_MAX_TYPICAL_WRITE`]) and another worker keeps reading requests
    /// meanwhile, through `block_in_place` otherwise.
    InPlace { other_workers: bool },
}

/// The number of workers of the multi-threaded tokio runtime the caller is on (where
/// `block_in_place` is allowed); `None` on a current-thread runtime or off tokio.
fn multi_thread_workers() -> Option<usize> {
    tokio::runtime::Handle::try_current()
        .ok()
        .filter(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        .map(|handle| handle.metrics().num_workers())
}

pub(crate) fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a ColumnFamily, EngineError> {
    db.cf_handle(name)
        .ok_or_else(|| EngineError::corrupt("store", format!("column family {name} missing")))
}

impl Engine {
    /// Opens or creates the store described by `options` and starts the committer.
    pub fn open(options: EngineOptions) -> Result<Self, EngineError> {
        options
            .validate()
            .map_err(|reason| EngineError::InvalidValue {
                what: "engine options",
                reason,
            })?;
        std::fs::create_dir_all(&options.data_dir).map_err(|source| EngineError::Io {
            path: options.data_dir.display().to_string(),
            source,
        })?;
        let db = Arc::new(store::open(
            &options.data_dir,
            options.block_cache_bytes,
            store::ValueForm::of(options.encryption.as_ref()),
        )?);
        // Before anything is read: a wrong or missing key fails here, with one message.
        let cipher = seal::open_cipher(&db, &options.data_dir, options.encryption.as_ref(), true)?;
        let last_event_id = last_event_id(&db)?;
        let counters = match db.get_cf(cf(&db, CF_META)?, META_COUNTERS)? {
            Some(bytes) => Counters::decode(&bytes)
                .ok_or_else(|| EngineError::corrupt("counters", "malformed"))?,
            None => Counters::default(),
        };
        let counters = Arc::new(RwLock::new(counters));
        let policy: Arc<RwLock<Arc<dyn WritePolicy>>> = Arc::new(RwLock::new(Arc::new(AcceptAll)));
        let tail = Arc::new(RwLock::new(warm_tail(
            &db,
            &cipher,
            options.history_tail_bytes,
            last_event_id,
        )?));
        let records = Arc::new(RecordCache::new(options.aggregate_records_bytes));
        let (sender, receiver) = mpsc::channel(COMMIT_QUEUE_DEPTH);
        let commit_lock: CommitLock = Arc::new(Mutex::new(Committer::new(CommitterParts {
            db: db.clone(),
            policy: policy.clone(),
            counters: counters.clone(),
            cipher: cipher.clone(),
            snowflake: Snowflake::new(options.worker_id, last_event_id),
            tail: tail.clone(),
            records: records.clone(),
            max_payload_bytes: options.max_payload_bytes,
            default_snapshot_threshold: options.default_snapshot_threshold,
        })));
        let thread_lock = commit_lock.clone();
        let handle = std::thread::Builder::new()
            .name("eventdbx-commit".into())
            .spawn(move || Committer::run(thread_lock, receiver))
            .map_err(|source| EngineError::Io {
                path: "committer thread".into(),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                sender: RwLock::new(Some(sender)),
                committer: Mutex::new(Some(handle)),
                commit_lock,
                appends_in_flight: AtomicUsize::new(0),
                policy,
                counters,
                cipher,
                tail,
                opened: Mutex::new(OpenedHistory::new(options.opened_history_bytes)),
                records,
                options,
            }),
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// Stops accepting writes, lets queued appends finish, and stops the committer.
    /// Blocking: call it from a blocking context.
    pub fn shutdown(&self) {
        self.inner.sender.write().take();
        if let Some(handle) = self.inner.committer.lock().take() {
            let _ = handle.join();
        }
    }

    /// Replaces the write policy; the next staged event is judged by the new one.
    pub fn set_policy(&self, policy: Arc<dyn WritePolicy>) {
        *self.inner.policy.write() = policy;
    }

    /// The current write policy.
    pub fn policy(&self) -> Arc<dyn WritePolicy> {
        self.inner.policy.read().clone()
    }

    fn sender(&self) -> Result<mpsc::Sender<Command>, EngineError> {
        self.inner.sender.read().clone().ok_or(EngineError::Closed)
    }

    /// Appends atomically and durably; returns once the events are synced. Blocking: from
    /// async code use [`Engine::append_async`].
    pub fn append(&self, request: AppendRequest) -> Result<AppendOutcome, EngineError> {
        let in_flight = InFlight::enter(&self.inner.appends_in_flight);
        let request = match self.try_commit_alone(&in_flight, request, Blocking::Allowed) {
            Ok(result) => return result,
            Err(request) => request,
        };
        let (reply, answer) = oneshot::channel();
        self.sender()?
            .blocking_send(Command::Append { request, reply })
            .map_err(|_| EngineError::Closed)?;
        answer.blocking_recv().map_err(|_| EngineError::Closed)?
    }

    /// [`Engine::append`] for async callers.
    pub async fn append_async(&self, request: AppendRequest) -> Result<AppendOutcome, EngineError> {
        let in_flight = InFlight::enter(&self.inner.appends_in_flight);
        // A lone writer commits on this thread (see `try_commit_alone`): only on a
        // multi-threaded runtime, whose other workers keep serving meanwhile.
        let request = if let Some(workers) = multi_thread_workers() {
            let blocking = Blocking::InPlace {
                other_workers: workers > 1,
            };
            match self.try_commit_alone(&in_flight, request, blocking) {
                Ok(result) => return result,
                Err(request) => request,
            }
        } else {
            request
        };
        let (reply, answer) = oneshot::channel();
        self.sender()?
            .send(Command::Append { request, reply })
            .await
            .map_err(|_| EngineError::Closed)?;
        answer.await.map_err(|_| EngineError::Closed)?
    }

    /// Commits `request` on the calling thread when no other append is in flight and the
    /// commit lock is free; hands the request back otherwise, for the committer thread to
    /// group it with its company.
    fn try_commit_alone(
        &self,
        in_flight: &InFlight<'_>,
        request: AppendRequest,
        blocking: Blocking,
    ) -> Result<Result<AppendOutcome, EngineError>, AppendRequest> {
        if !in_flight.alone() {
            return Err(request);
        }
        // Held until the write is done, so a shutdown waits for it rather than racing it.
        let open = self.inner.sender.read();
        if open.is_none() {
            return Ok(Err(EngineError::Closed));
        }
        let Some(mut committer) = self.inner.commit_lock.try_lock() else {
            return Err(request);
        };
        let quick_disk = committer
            .typical_write()
            .is_some_and(|typical| typical <= INLINE_COMMIT_MAX_TYPICAL_WRITE);
        Ok(match blocking {
            Blocking::Allowed => committer.commit_alone(request),
            // A short synced write is just done: handing the worker's other tasks to another
            // thread first (`block_in_place`) cost ~28 µs per append on this project's
            // machine, a third of an fdatasync. On a slow disk, or before the first write
            // has been timed, the hand-off keeps other connections moving meanwhile. So it
            // does on a runtime with one worker (one CPU, or a container limited to one):
            // blocking that worker directly left no one to read the next requests, so every
            // append committed alone, one fdatasync each (32 pgbench clients: ~7,900
            // appends/s with one worker against ~44,500 with two).
            Blocking::InPlace {
                other_workers: true,
            } if quick_disk => committer.commit_alone(request),
            Blocking::InPlace { .. } => {
                tokio::task::block_in_place(|| committer.commit_alone(request))
            }
        })
    }

    /// Durably writes meta entries through the commit path, then runs `after` on the
    /// committer before it stages anything else (used to install a new schema policy
    /// atomically with storing it).
    pub async fn put_meta(
        &self,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        after: Box<dyn FnOnce() + Send>,
    ) -> Result<(), EngineError> {
        let entries = entries
            .into_iter()
            .map(|(key, value)| {
                let value = if seal::is_sealed(CF_META, &key) {
                    self.inner.cipher.seal(CF_META, &key, value)?
                } else {
                    value
                };
                Ok((key, value))
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let (reply, answer) = oneshot::channel();
        self.sender()?
            .send(Command::PutMeta {
                entries,
                after,
                reply,
            })
            .await
            .map_err(|_| EngineError::Closed)?;
        answer.await.map_err(|_| EngineError::Closed)?
    }

    /// Reads a meta entry.
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(stored) = self.inner.db.get_cf(cf(&self.inner.db, CF_META)?, key)? else {
            return Ok(None);
        };
        if !seal::is_sealed(CF_META, key) {
            return Ok(Some(stored));
        }
        Ok(Some(
            self.inner.cipher.open(CF_META, key, &stored)?.into_owned(),
        ))
    }

    /// Totals and the last event id.
    pub fn stats(&self) -> Result<EngineStats, EngineError> {
        let counters = *self.inner.counters.read();
        Ok(EngineStats {
            events: counters.events,
            aggregates: counters.aggregates,
            last_event_id: last_event_id(&self.inner.db)?,
        })
    }

    /// RocksDB's memory accounting, summed over the column families, and the opened tail's.
    pub fn memory(&self) -> Result<MemoryUsage, EngineError> {
        let property = |cf: &'static str, name: &str| -> Result<u64, EngineError> {
            Ok(self
                .inner
                .db
                .property_int_value_cf(self.cf(cf)?, name)?
                .unwrap_or(0))
        };
        // One cache serves every column family: ask any of them once.
        let mut usage = MemoryUsage {
            block_cache: property(CF_EVENTS, "rocksdb.block-cache-usage")?,
            block_cache_pinned: property(CF_EVENTS, "rocksdb.block-cache-pinned-usage")?,
            ..MemoryUsage::default()
        };
        for cf in keys::ALL_CFS {
            usage.memtables += property(cf, "rocksdb.cur-size-all-mem-tables")?;
            usage.table_readers += property(cf, "rocksdb.estimate-table-readers-mem")?;
        }
        usage.history_tail = self.inner.tail.read().footprint() as u64;
        usage.opened_history = self.inner.opened.lock().footprint() as u64;
        usage.aggregate_records = self.inner.records.footprint() as u64;
        Ok(usage)
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, EngineError> {
        cf(&self.inner.db, name)
    }

    fn clamp_take(&self, take: usize) -> usize {
        match take {
            0 => self.inner.options.list_page_size,
            n => n.min(self.inner.options.page_limit),
        }
    }

    fn record(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<AggregateRecord>, EngineError> {
        self.inner.records.read(
            &self.inner.db,
            &self.inner.cipher,
            &aggregate_key(aggregate_type, aggregate_id),
        )
    }

    /// The current state: one point lookup, whatever the history length.
    pub fn aggregate(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<AggregateState>, EngineError> {
        Ok(self
            .record(aggregate_type, aggregate_id)?
            .map(|record| state_from_record(aggregate_type, aggregate_id, record)))
    }

    /// The state right after `version`: the nearest snapshot at or below it, plus replay.
    /// `None` when the aggregate does not exist or has not reached `version` (or it is 0).
    pub fn aggregate_at(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        version: u64,
    ) -> Result<Option<AggregateState>, EngineError> {
        let Some(record) = self.record(aggregate_type, aggregate_id)? else {
            return Ok(None);
        };
        if version == 0 || version > record.version {
            return Ok(None);
        }
        let created_at = record.created_at_micros;
        if version == record.version {
            return Ok(Some(state_from_record(
                aggregate_type,
                aggregate_id,
                record,
            )));
        }
        let (base_version, mut state) =
            self.snapshot_at_or_below(aggregate_type, aggregate_id, version)?;
        let mut events = self.events_of(
            aggregate_type,
            aggregate_id,
            base_version,
            usize::MAX,
            version,
        )?;
        for event in &events {
            crate::merge_patch::merge_patch(&mut state, &event.payload()?);
        }
        if base_version == version {
            // The snapshot is the state itself; the event at that version supplies its root.
            events = self.events_of(aggregate_type, aggregate_id, version - 1, 1, version)?;
        }
        let Some(last) = events.pop() else {
            return Err(EngineError::corrupt(
                "stream",
                format!("no event at version {version}"),
            ));
        };
        if last.version != version {
            return Err(EngineError::corrupt(
                "stream",
                format!("history stops before version {version}"),
            ));
        }
        Ok(Some(AggregateState {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            version,
            state_json: crate::payload::to_compact_json(&state),
            merkle_root: last.merkle_root,
            created_at_micros: created_at,
            updated_at_micros: last.created_at_micros,
            last_event_id: last.event_id,
        }))
    }

    fn snapshot_at_or_below(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        version: u64,
    ) -> Result<(u64, Map<String, Value>), EngineError> {
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(stream_prefix(aggregate_type, aggregate_id));
        let start = versioned_key(aggregate_type, aggregate_id, version);
        let mut iter = self.inner.db.iterator_cf_opt(
            self.cf(CF_SNAPSHOTS)?,
            read,
            IteratorMode::From(&start, Direction::Reverse),
        );
        match iter.next() {
            Some(item) => {
                let (key, value) = item?;
                let snap_version = version_of_key(&key)
                    .ok_or_else(|| EngineError::corrupt("snapshot key", "too short"))?;
                let (_, state_json) =
                    decode_snapshot(&self.inner.cipher.open(CF_SNAPSHOTS, &key, &value)?)?;
                match serde_json::from_str::<Value>(&state_json) {
                    Ok(Value::Object(state)) => Ok((snap_version, state)),
                    _ => Err(EngineError::corrupt(
                        "snapshot",
                        "state is not a JSON object",
                    )),
                }
            }
            None => Ok((0, Map::new())),
        }
    }

    /// Aggregates in key order, optionally of one type, after a cursor (`(type, id)` of the
    /// last one seen). `take` 0 means the configured page size; it is capped by the page limit.
    pub fn list_aggregates(
        &self,
        aggregate_type: Option<&str>,
        after: Option<(&str, &str)>,
        take: usize,
    ) -> Result<Vec<AggregateState>, EngineError> {
        let take = self.clamp_take(take);
        let mut read = ReadOptions::default();
        let prefix = aggregate_type.map(aggregate_type_prefix);
        if let Some(upper) = prefix.as_deref().and_then(prefix_upper_bound) {
            read.set_iterate_upper_bound(upper);
        }
        let start = match (after, &prefix) {
            (Some((ty, id)), _) => aggregate_key(ty, id),
            (None, Some(prefix)) => prefix.clone(),
            (None, None) => Vec::new(),
        };
        let iter = self.inner.db.iterator_cf_opt(
            self.cf(CF_AGGREGATES)?,
            read,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::with_capacity(take.min(1024));
        for item in iter {
            let (key, value) = item?;
            if after.is_some() && *key == *start {
                continue;
            }
            if let Some(prefix) = &prefix {
                if !key.starts_with(prefix) {
                    break;
                }
            }
            let (ty, id) = split_aggregate_key(&key)
                .ok_or_else(|| EngineError::corrupt("aggregate key", "malformed"))?;
            let value = self.inner.cipher.open(CF_AGGREGATES, &key, &value)?;
            out.push(state_from_record(ty, id, AggregateRecord::decode(&value)?));
            if out.len() >= take {
                break;
            }
        }
        Ok(out)
    }

    /// An aggregate's events with `after_version < version <= up_to_version`, by version,
    /// at most `take`.
    pub fn events_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_version: u64,
        take: usize,
        up_to_version: u64,
    ) -> Result<Vec<Event>, EngineError> {
        let Some(first) = after_version.checked_add(1) else {
            return Ok(Vec::new());
        };
        let prefix = stream_prefix(aggregate_type, aggregate_id);
        let mut read = ReadOptions::default();
        if let Some(upper) = prefix_upper_bound(&prefix) {
            read.set_iterate_upper_bound(upper);
        }
        let start = versioned_key(aggregate_type, aggregate_id, first);
        let iter = self.inner.db.iterator_cf_opt(
            self.cf(CF_STREAMS)?,
            read,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= take {
                break;
            }
            let (key, value) = item?;
            let version = version_of_key(&key)
                .ok_or_else(|| EngineError::corrupt("stream key", "too short"))?;
            if version > up_to_version {
                break;
            }
            let event_id = u64::from_be_bytes(
                value
                    .as_ref()
                    .try_into()
                    .map_err(|_| EngineError::corrupt("stream entry", "not an event id"))?,
            );
            match self.inner.cipher.get(
                &self.inner.db,
                CF_EVENTS,
                &event_key(event_id),
                Event::decode_stored,
            )? {
                Some(event) => out.push(event),
                None => {
                    return Err(EngineError::corrupt(
                        "stream entry",
                        format!("event {event_id} is missing"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// One event by id.
    pub fn event(&self, event_id: u64) -> Result<Option<Event>, EngineError> {
        self.inner.cipher.get(
            &self.inner.db,
            CF_EVENTS,
            &event_key(event_id),
            Event::decode_stored,
        )
    }

    /// The outbox contract: committed events with `event_id > after_event_id`, ascending, at
    /// most `take` (0 = page size; capped by the page limit and [`MAX_OUTBOX_PAGE_BYTES`]).
    pub fn read_outbox(&self, after_event_id: u64, take: usize) -> Result<OutboxPage, EngineError> {
        self.scan_events(after_event_id, take, usize::MAX, &|_| true)
    }

    /// Like [`Engine::read_outbox`], returning only events `keep` accepts, scanning at most
    /// `max_scan` events. The checkpoint advances past everything scanned — matching or not —
    /// so a filtered page never stalls, and never past an event that was cut from a full
    /// page, so nothing is skipped.
    pub fn scan_events(
        &self,
        after_event_id: u64,
        take: usize,
        max_scan: usize,
        keep: &dyn Fn(&EventView<'_>) -> bool,
    ) -> Result<OutboxPage, EngineError> {
        let take = self.clamp_take(take);
        let mut events = Vec::with_capacity(take.min(1024));
        let mut next_after = after_event_id;
        if max_scan == 0 {
            return Ok(OutboxPage {
                events,
                next_after_event_id: next_after,
            });
        }
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        let mut failure = None;
        // The limits are checked after each event, so the scan never reads (and opens and
        // decodes) the event after the page.
        self.visit_events(after_event_id, &mut |event, stored_len| {
            if keep(&event) {
                if !events.is_empty() && bytes + stored_len > MAX_OUTBOX_PAGE_BYTES {
                    // Page full by size: stop before this event; it leads the next page.
                    return false;
                }
                bytes += stored_len;
                match event.to_event() {
                    Ok(owned) => events.push(owned),
                    Err(err) => {
                        failure = Some(err);
                        return false;
                    }
                }
            }
            next_after = event.event_id;
            scanned += 1;
            events.len() < take && scanned < max_scan
        })?;
        if let Some(err) = failure {
            return Err(err);
        }
        Ok(OutboxPage {
            events,
            next_after_event_id: next_after,
        })
    }

    /// Hands every event after `after_event_id` to `visit` in id order, read in place (no
    /// copy of any field), with the size of its stored value, until `visit` returns false or
    /// the history ends. The view borrows the iterator's current value: copy what must
    /// outlive the call.
    ///
    /// It stops at the newest event the commit path had published when it began (every
    /// acknowledged append is published first), from the opened tail or from RocksDB alike,
    /// so a later scan never sees less than an earlier one.
    pub fn visit_events(
        &self,
        after_event_id: u64,
        visit: &mut dyn FnMut(EventView<'_>, usize) -> bool,
    ) -> Result<(), EngineError> {
        let horizon = self.inner.tail.read().newest();
        let mut after = after_event_id;
        let mut batch = TailBatch::default();
        loop {
            let answered =
                self.inner
                    .tail
                    .read()
                    .copy_after(after, horizon, TAIL_COPY_BYTES, &mut batch);
            if !answered {
                // Older than the tail (or evicted from under a long scan): RocksDB has it.
                return self.visit_stored_events(after, horizon, visit);
            }
            if batch.is_empty() {
                return Ok(());
            }
            for (event_id, value) in batch.iter() {
                let event = decode_held("history tail", event_id, value)?;
                if !visit(event, value.len()) {
                    return Ok(());
                }
                after = event_id;
            }
        }
    }

    /// [`visit_events`](Self::visit_events) below the tail: from the opened history where
    /// it keeps the bucket the cursor is in, from RocksDB where it does not.
    fn visit_stored_events(
        &self,
        after_event_id: u64,
        horizon: u64,
        visit: &mut dyn FnMut(EventView<'_>, usize) -> bool,
    ) -> Result<(), EngineError> {
        let mut cursor = after_event_id;
        // Whether no event of the cursor's bucket is at or below the cursor, so reading
        // from the cursor reads the bucket whole.
        let mut at_bucket_start = cursor
            .checked_add(1)
            .is_some_and(|first| opened::first_id(opened::bucket_of(first)) == first);
        while cursor < horizon {
            let kept = self.inner.opened.lock().get(opened::bucket_of(cursor + 1));
            let Some(kept) = kept else {
                match self.visit_stored_and_keep(cursor, at_bucket_start, horizon, visit)? {
                    Some(next) => {
                        debug_assert!(next > cursor);
                        cursor = next;
                        at_bucket_start = true;
                        continue;
                    }
                    None => return Ok(()),
                }
            };
            for (event_id, value) in kept.events_after(cursor) {
                if event_id > horizon {
                    return Ok(());
                }
                let event = decode_held("opened history", event_id, value)?;
                if !visit(event, value.len()) {
                    return Ok(());
                }
            }
            // No event lies between the bucket's last one and `next_id`.
            cursor = kept.next_id() - 1;
            at_bucket_start = true;
        }
        Ok(())
    }

    /// Reads RocksDB from `cursor` for [`visit_stored_events`](Self::visit_stored_events),
    /// visiting the events after it up to `horizon`, and keeps opened each bucket it reads
    /// whole that the opened history admits ([`OpenedHistory::admit`]: read recently): every
    /// bucket it enters from an earlier one, the cursor's own when `at_bucket_start`, and
    /// the one it stops in, which it reads to the end for that. A scan that starts in the
    /// middle of a bucket does not go back for the bucket's start: the bucket is kept by a
    /// scan that passes through it or ends in it. Returns where to go on when it reached a
    /// bucket that is already kept; `None` when the scan is over.
    fn visit_stored_and_keep(
        &self,
        cursor: u64,
        at_bucket_start: bool,
        horizon: u64,
        visit: &mut dyn FnMut(EventView<'_>, usize) -> bool,
    ) -> Result<Option<u64>, EngineError> {
        let mut bucket = opened::bucket_of(cursor + 1);
        let (keeping, mut filling) = {
            let mut history = self.inner.opened.lock();
            (history.keeps(), at_bucket_start && history.admit(bucket))
        };
        // One builder for every bucket of the scan: its buffers grow once, and each kept
        // bucket is copied out at its size.
        let mut builder = BucketBuilder::new(bucket);
        let mut visiting = true;
        // A raw iterator lends key and value in place; the boxed iterator copied both into
        // fresh allocations for every event of every page.
        let mut iter = self.inner.db.raw_iterator_cf(self.cf(CF_EVENTS)?);
        iter.seek(event_key(cursor + 1));
        let mut scratch = OpenScratch::default();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let event_id = event_id_of_key(key)?;
            if keeping && opened::bucket_of(event_id) != bucket {
                // An id past the bucket is visible, so every event of the bucket was read:
                // ids become visible in order, a committed group at a time. Copied out
                // before the lock is taken.
                let whole = if filling {
                    builder.finish(event_id)
                } else {
                    None
                };
                let mut history = self.inner.opened.lock();
                if let Some(whole) = whole {
                    history.keep(bucket, whole);
                }
                if !visiting {
                    return Ok(None);
                }
                bucket = opened::bucket_of(event_id);
                if history.contains(bucket) {
                    // Every event before this one was visited.
                    return Ok(Some(event_id - 1));
                }
                // Entered from an earlier bucket: read from its first event.
                filling = history.admit(bucket);
                if filling {
                    builder.restart(bucket);
                }
            }
            let value = self
                .inner
                .cipher
                .open_reusing(CF_EVENTS, key, value, &mut scratch)?;
            if filling {
                builder.push(event_id, value);
            }
            if visiting {
                visiting = event_id <= horizon && {
                    let event = EventView::decode_stored(value)?;
                    visit(event, value.len())
                };
            }
            let still_keepable = filling && builder.keepable();
            if !visiting && !still_keepable {
                return Ok(None);
            }
            iter.next();
        }
        // An iterator that stopped on an I/O or corruption error is not "the end". At the
        // end of the history the bucket being read is not known whole: it is not kept.
        iter.status()?;
        Ok(None)
    }

    /// Recomputes one aggregate's Merkle root from its stored events and compares it with
    /// the stored root. `None` when the aggregate does not exist.
    pub fn verify(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<VerifyReport>, EngineError> {
        let Some(record) = self.record(aggregate_type, aggregate_id)? else {
            return Ok(None);
        };
        Ok(Some(self.verify_record(
            aggregate_type,
            aggregate_id,
            &record,
        )?))
    }

    fn verify_record(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        record: &AggregateRecord,
    ) -> Result<VerifyReport, EngineError> {
        let prefix = stream_prefix(aggregate_type, aggregate_id);
        let mut read = ReadOptions::default();
        if let Some(upper) = prefix_upper_bound(&prefix) {
            read.set_iterate_upper_bound(upper);
        }
        // Verification must read what is on disk, not what the block cache remembers.
        read.fill_cache(false);
        let iter = self.inner.db.iterator_cf_opt(
            self.cf(CF_STREAMS)?,
            read,
            IteratorMode::From(&prefix, Direction::Forward),
        );
        let events_cf = self.cf(CF_EVENTS)?;
        let mut frontier = Frontier::default();
        let mut problems = Vec::new();
        let mut expected_version = 1u64;
        for item in iter {
            let (key, value) = item?;
            let Some(version) = version_of_key(&key) else {
                problems.push("malformed stream key".to_owned());
                continue;
            };
            if version != expected_version {
                problems.push(format!(
                    "expected version {expected_version}, found version {version}"
                ));
                expected_version = version;
            }
            expected_version += 1;
            let Ok(id_bytes) = <[u8; 8]>::try_from(value.as_ref()) else {
                problems.push(format!("version {version}: malformed stream entry"));
                continue;
            };
            let event_id = u64::from_be_bytes(id_bytes);
            let Some(sealed) = self
                .inner
                .db
                .get_pinned_cf(events_cf, event_key(event_id))?
            else {
                problems.push(format!("version {version}: event {event_id} is missing"));
                continue;
            };
            // The leaf covers the plaintext encoding, so verify means the same with a key.
            let Ok(stored) = self
                .inner
                .cipher
                .open(CF_EVENTS, &event_key(event_id), &sealed)
            else {
                problems.push(format!(
                    "version {version}: event {event_id} does not open (sealed value altered or moved)"
                ));
                continue;
            };
            let Some(leaf) = Event::recompute_leaf(&stored) else {
                problems.push(format!("version {version}: event {event_id} is unreadable"));
                continue;
            };
            frontier.push(leaf);
            match Event::decode_stored(&stored) {
                Ok(event) => {
                    if event.event_id != event_id
                        || event.version != version
                        || event.aggregate_type != aggregate_type
                        || event.aggregate_id != aggregate_id
                    {
                        problems.push(format!(
                            "version {version}: event {event_id} belongs elsewhere ({}#{} v{}, id {})",
                            event.aggregate_type, event.aggregate_id, event.version, event.event_id
                        ));
                    }
                    if event.hash != leaf {
                        problems.push(format!(
                            "version {version}: event {event_id} does not match its hash"
                        ));
                    }
                    if event.merkle_root != frontier.root() {
                        problems.push(format!(
                            "version {version}: Merkle root after event {event_id} differs"
                        ));
                    }
                }
                Err(_) => problems.push(format!(
                    "version {version}: event {event_id} does not decode"
                )),
            }
        }
        if frontier.leaves() != record.version {
            problems.push(format!(
                "aggregate claims version {} but {} events are stored",
                record.version,
                frontier.leaves()
            ));
        }
        Ok(VerifyReport {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            version: record.version,
            events_checked: frontier.leaves(),
            recomputed_root: frontier.root(),
            stored_root: record.merkle_root,
            problems,
        })
    }

    /// Verifies every aggregate (of one type, or all), in key order.
    pub fn verify_many(
        &self,
        aggregate_type: Option<&str>,
    ) -> Result<Vec<VerifyReport>, EngineError> {
        let mut reports = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self.list_aggregates(
                aggregate_type,
                after.as_ref().map(|(t, i)| (t.as_str(), i.as_str())),
                self.inner.options.page_limit,
            )?;
            let Some(last) = page.last() else { break };
            after = Some((last.aggregate_type.clone(), last.aggregate_id.clone()));
            for state in &page {
                if let Some(report) = self.verify(&state.aggregate_type, &state.aggregate_id)? {
                    reports.push(report);
                }
            }
        }
        Ok(reports)
    }

    /// Test and tooling access to the raw store (e.g. the tamper test).
    #[doc(hidden)]
    pub fn raw_db(&self) -> &DB {
        &self.inner.db
    }
}

fn state_from_record(
    aggregate_type: &str,
    aggregate_id: &str,
    record: AggregateRecord,
) -> AggregateState {
    AggregateState {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        version: record.version,
        state_json: record.state_json,
        merkle_root: record.merkle_root,
        created_at_micros: record.created_at_micros,
        updated_at_micros: record.updated_at_micros,
        last_event_id: record.last_event_id,
    }
}

/// Opens the RocksDB database of a store in `dir` with exactly the options
/// [`Engine::open`] uses (`store.rs`), without an engine around it, for
/// `bench/src/bin/storage_floor.rs`: what RocksDB alone costs per append of the engine's
/// shape bounds what any engine on it can reach. `sealed` picks the compression settings of
/// an encrypted store. Nothing the engine guarantees holds for what is written through it;
/// never point it at a store a server uses.
#[doc(hidden)]
pub fn open_raw_store(
    dir: &std::path::Path,
    block_cache_bytes: usize,
    sealed: bool,
) -> Result<DB, EngineError> {
    let form = if sealed {
        store::ValueForm::Sealed
    } else {
        store::ValueForm::Plain
    };
    store::open(dir, block_cache_bytes, form)
}

#[doc(hidden)]
pub use store::{background_work, sorted_runs};

/// The opened tail of a store being opened: its newest events, as many as the budget holds,
/// so that consumers resuming near the head after a restart are served from memory at once
/// rather than only once new events arrive. A value that does not open leaves the tail
/// empty (its reader gets the error from RocksDB, as without a tail); the store still opens.
fn warm_tail(
    db: &DB,
    cipher: &ValueCipher,
    budget: usize,
    last_event_id: u64,
) -> Result<HistoryTail, EngineError> {
    if budget == 0 || last_event_id == 0 {
        return Ok(HistoryTail::new(budget, last_event_id));
    }
    let events = cf(db, CF_EVENTS)?;
    // Back from the newest event until the budget is spent, by stored sizes (a sealed value
    // is larger than its plaintext, so this never overfills): the first event left out is
    // the floor. An eighth is left for the segments' unused ends.
    let spendable = budget - budget / 8;
    let mut spent = 0usize;
    let mut floor = 0u64;
    // Not through the block cache: these values are kept opened, a copy there is waste.
    let uncached = || {
        let mut read = ReadOptions::default();
        read.fill_cache(false);
        read
    };
    let mut back = db.raw_iterator_cf_opt(events, uncached());
    back.seek_to_last();
    while let (Some(key), Some(value)) = (back.key(), back.value()) {
        spent += value.len() + TAIL_INDEX_BYTES_PER_EVENT;
        if spent > spendable {
            floor = event_id_of_key(key)?;
            break;
        }
        back.prev();
    }
    back.status()?;
    let mut tail = HistoryTail::new(budget, floor);
    let mut forward = db.raw_iterator_cf_opt(events, uncached());
    forward.seek(event_key(floor.saturating_add(1)));
    let mut scratch = OpenScratch::default();
    while let (Some(key), Some(value)) = (forward.key(), forward.value()) {
        let event_id = event_id_of_key(key)?;
        match cipher.open_reusing(CF_EVENTS, key, value, &mut scratch) {
            Ok(opened) => tail.publish([(event_id, opened)]),
            Err(err) => {
                tracing::warn!(event_id, error = %err, "history tail not warmed: an event does not open");
                return Ok(HistoryTail::new(budget, last_event_id));
            }
        }
        forward.next();
    }
    forward.status()?;
    if tail.newest() != last_event_id {
        // Written between the two reads cannot happen (no committer yet); a store that
        // changed under us is not one to vouch for.
        return Ok(HistoryTail::new(budget, last_event_id));
    }
    Ok(tail)
}

/// Decodes an event kept opened in memory (by the tail or the opened history, named by
/// `held_by`) and checks that it is the event its index files it under.
fn decode_held<'a>(
    held_by: &'static str,
    event_id: u64,
    value: &'a [u8],
) -> Result<EventView<'a>, EngineError> {
    let event = EventView::decode_stored(value)?;
    if event.event_id != event_id {
        return Err(EngineError::corrupt(
            held_by,
            format!("event {event_id} holds event {}", event.event_id),
        ));
    }
    Ok(event)
}

/// What the tail's index costs per event, for [`warm_tail`]'s budget: an id and an offset.
const TAIL_INDEX_BYTES_PER_EVENT: usize = 8 + 4;

fn event_id_of_key(key: &[u8]) -> Result<u64, EngineError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| EngineError::corrupt("event key", "not 8 bytes"))
}

fn last_event_id(db: &DB) -> Result<u64, EngineError> {
    let mut iter = db.iterator_cf(cf(db, CF_EVENTS)?, IteratorMode::End);
    match iter.next() {
        Some(item) => {
            let (key, _) = item?;
            event_id_of_key(&key)
        }
        None => Ok(0),
    }
}
