//! The commit path: the one write authority.
//!
//! Every append is committed as part of a *group* by whoever holds the one commit lock
//! ([`CommitLock`]). Concurrent writers queue their requests for the committer thread, which
//! drains whatever is queued (up to [`MAX_GROUP_REQUESTS`] / [`MAX_GROUP_EVENTS`]) into one
//! group; a writer with no concurrent company commits its own request as a group of one on
//! its own thread ([`Committer::commit_alone`]), saving two thread hand-offs. Either way the
//! group stages each request against an overlay of the group's earlier requests (versions,
//! expected-version checks, schema policy, Merkle frontier, state, snapshots, idempotency),
//! puts the whole group into one `WriteBatch`, writes it with a synced WAL, and only then
//! answers the writers. One fdatasync is shared by every writer in the group (group commit); a
//! rejected request is simply left out of the batch. Because groups are staged and written
//! one at a time under the lock, ids are assigned in write order and no reader can ever
//! observe a higher event id before a lower one.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rocksdb::{WriteBatch, WriteOptions, DB};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::error::{EngineError, ExpectedVersion};
use super::event::{encode_stored_parts, Event, Issuer};
use super::keys::{
    aggregate_key, event_key, versioned_key, CF_AGGREGATES, CF_EVENTS, CF_IDEMPOTENCY, CF_META,
    CF_SNAPSHOTS, CF_STREAMS, META_COUNTERS,
};
use super::merkle::{leaf_hash, Frontier};
use super::names::{check_aggregate_id, check_idempotency_key, check_issuer_name, check_type_name};
use super::options::{
    MAX_APPEND_BYTES, MAX_EVENTS_PER_APPEND, MAX_GROUP_EVENTS, MAX_GROUP_REQUESTS,
    MAX_METADATA_BYTES, MAX_NOTE_CHARS,
};
use super::policy::{EventCheck, SnapshotSetting, WritePolicy};
use super::record::{encode_snapshot, parse_state, AggregateRecord};
use super::records::RecordCache;
use super::seal::ValueCipher;
use super::snowflake::{unix_micros_now, Snowflake};
use super::tail::HistoryTail;
use super::{cf, Counters};
use crate::merge_patch::{merge_patch, merge_patch_text};
use crate::payload::{to_compact_json, Payload};

/// One event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    /// Shared, not owned: a prepared INSERT's literal payload is parsed and written as text
    /// once and lent to every append it makes (`sql::LiteralObjects`); nothing on the write
    /// path changes it.
    pub payload: Arc<Payload>,
    pub metadata: Map<String, Value>,
    pub note: Option<String>,
    pub expected_version: ExpectedVersion,
}

impl NewEvent {
    /// An event with empty metadata, no note and no version expectation.
    pub fn new(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        event_type: impl Into<String>,
        payload: Map<String, Value>,
    ) -> Self {
        Self {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            event_type: event_type.into(),
            payload: Arc::new(Payload::new(payload)),
            metadata: Map::new(),
            note: None,
            expected_version: ExpectedVersion::Any,
        }
    }

    /// Sets the expected version.
    pub fn expecting(mut self, expected: ExpectedVersion) -> Self {
        self.expected_version = expected;
        self
    }
}

/// An atomic append of one or more events, for one or many aggregates.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppendRequest {
    pub events: Vec<NewEvent>,
    /// A retry carrying the same key gets the original outcome back instead of a second write.
    pub idempotency_key: Option<String>,
    pub issued_by: Issuer,
}

/// What an accepted append produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    /// The committed events, in request order.
    pub events: Vec<Event>,
    /// True when this is the stored outcome of an earlier append with the same idempotency key.
    pub replayed: bool,
}

/// Messages to the committer.
pub(crate) enum Command {
    Append {
        request: AppendRequest,
        reply: oneshot::Sender<Result<AppendOutcome, EngineError>>,
    },
    /// Writes meta keys durably through the same path (e.g. an applied schema), then runs
    /// `after` on the committer thread before the next group is staged.
    PutMeta {
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        after: Box<dyn FnOnce() + Send>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Append { request, .. } => f
                .debug_struct("Append")
                .field("events", &request.events.len())
                .finish_non_exhaustive(),
            Command::PutMeta { entries, .. } => f
                .debug_struct("PutMeta")
                .field("entries", &entries.len())
                .finish_non_exhaustive(),
        }
    }
}

/// Shared between the engine handle and the committer.
#[derive(Debug)]
pub(crate) struct CommitterParts {
    pub db: Arc<DB>,
    pub policy: Arc<RwLock<Arc<dyn WritePolicy>>>,
    pub counters: Arc<RwLock<Counters>>,
    /// Seals every value that holds user data before it enters a batch (see `seal.rs`).
    pub cipher: ValueCipher,
    pub snowflake: Snowflake,
    /// The opened tail of the history: each written group's events are added after its
    /// synced write, before any of its writers is answered (see `tail.rs`).
    pub tail: Arc<RwLock<HistoryTail>>,
    /// Current aggregate records kept opened: a group's are put there after its synced
    /// write, before any of its writers is answered (see `records.rs`).
    pub records: Arc<RecordCache>,
    pub max_payload_bytes: usize,
    pub default_snapshot_threshold: Option<u64>,
}

type AggKey = (String, String);

/// An aggregate as the group sees it: persisted record plus staged changes.
#[derive(Debug, Clone)]
struct Working {
    version: u64,
    last_event_id: u64,
    created_at_micros: i64,
    updated_at_micros: i64,
    frontier: Frontier,
    state: WorkingState,
}

impl Working {
    fn empty() -> Self {
        Self {
            version: 0,
            last_event_id: 0,
            created_at_micros: 0,
            updated_at_micros: 0,
            frontier: Frontier::default(),
            state: WorkingState::Text("{}".to_owned()),
        }
    }

    fn from_record(record: AggregateRecord) -> Self {
        Self {
            version: record.version,
            last_event_id: record.last_event_id,
            created_at_micros: record.created_at_micros,
            updated_at_micros: record.updated_at_micros,
            frontier: record.frontier,
            state: WorkingState::Text(record.state_json),
        }
    }
}

/// An aggregate's state while a group stages it. Loaded as its stored text and kept so
/// while events only replace or remove its members: merging a payload into it as text
/// (`merge_patch_text`) spares parsing the state, copying every member and writing it all
/// out again, which was most of the committer's JSON work per append. It is parsed when a
/// policy asks for the prior state, or a payload member is an object to merge into.
#[derive(Debug, Clone)]
enum WorkingState {
    /// Compact JSON text, as `to_compact_json` writes it.
    Text(String),
    Parsed(Map<String, Value>),
}

impl WorkingState {
    fn parsed(&mut self) -> Result<&Map<String, Value>, EngineError> {
        self.parsed_mut().map(|state| &*state)
    }

    fn parsed_mut(&mut self) -> Result<&mut Map<String, Value>, EngineError> {
        if let WorkingState::Text(text) = self {
            *self = WorkingState::Parsed(parse_state(text)?);
        }
        match self {
            WorkingState::Parsed(state) => Ok(state),
            WorkingState::Text(_) => Err(EngineError::corrupt("aggregate state", "not parsed")),
        }
    }

    /// Merges `patch` (RFC 7396); `patch_json` is its compact text.
    fn merge(&mut self, patch: &Map<String, Value>, patch_json: &str) -> Result<(), EngineError> {
        if let WorkingState::Text(text) = self {
            if let Some(merged) = merge_patch_text(text, patch_json) {
                *text = merged;
                return Ok(());
            }
        }
        merge_patch(self.parsed_mut()?, patch);
        Ok(())
    }

    fn to_json(&self) -> String {
        match self {
            WorkingState::Text(text) => text.clone(),
            WorkingState::Parsed(state) => to_compact_json(state),
        }
    }
}

/// One event of a request being staged: what goes into the batch, and its plaintext stored
/// value for the opened tail.
struct StagedEvent {
    event: Event,
    /// The stored value, plaintext: kept for the tail, and what `events` gets in a plain
    /// store.
    opened: Vec<u8>,
    /// What `events` gets in an encrypted store: `opened`, sealed.
    sealed: Option<Vec<u8>>,
    /// A sealed snapshot to write beside it, when one is due.
    snapshot: Option<Vec<u8>>,
}

/// What one group commit accumulates.
#[derive(Default)]
struct Group {
    aggregates: HashMap<AggKey, Working>,
    idempotency: HashMap<String, ([u8; 32], Vec<u64>)>,
    /// The events of this group's requests that carry an idempotency key: a retry of one
    /// within the same group is answered from here, since they are not stored yet. Nothing
    /// else reads them, so other requests' events are not copied here.
    keyed_events: HashMap<u64, Event>,
    /// The plaintext stored value of every event in `batch`, in id order, for the tail.
    opened: Vec<(u64, Vec<u8>)>,
    /// Every aggregate record in `batch` (key, plaintext), in staging order, for the cache
    /// of current records.
    records: Vec<(Vec<u8>, Vec<u8>)>,
    batch: WriteBatch,
    counters: Counters,
    staged_anything: bool,
}

/// The staging and writing half of the commit path. It sits behind one mutex
/// ([`CommitLock`]): whoever holds the lock is the write authority for one group, so ids,
/// versions and batches are assigned and written strictly one group after another whichever
/// thread runs the group.
pub(crate) struct Committer {
    parts: CommitterParts,
    sync_write: WriteOptions,
    /// Moving average of recent synced writes, in microseconds (`u64::MAX` before the
    /// first): how long a lone writer would block its thread.
    typical_write_micros: u64,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

/// The commit path's one lock.
pub(crate) type CommitLock = Arc<Mutex<Committer>>;

impl Committer {
    pub fn new(parts: CommitterParts) -> Self {
        let mut sync_write = WriteOptions::default();
        // The durability contract: an append is acknowledged only after this write, whose
        // WAL record is fdatasync'ed before `write_opt` returns.
        sync_write.set_sync(true);
        sync_write.disable_wal(false);
        Self {
            parts,
            sync_write,
            typical_write_micros: u64::MAX,
        }
    }

    /// How long a synced group write has typically taken lately; `None` before the first.
    pub fn typical_write(&self) -> Option<std::time::Duration> {
        (self.typical_write_micros != u64::MAX)
            .then(|| std::time::Duration::from_micros(self.typical_write_micros))
    }

    /// The committer thread: runs until every sender is gone, finishing whatever was queued.
    /// Each wake-up drains the queue into one group, so concurrent writers share one sync.
    pub fn run(lock: CommitLock, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut commands = Vec::with_capacity(16);
            let mut events = command_events(&first);
            commands.push(first);
            while commands.len() < MAX_GROUP_REQUESTS && events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(next) => {
                        events += command_events(&next);
                        commands.push(next);
                    }
                    Err(_) => break,
                }
            }
            lock.lock().commit_group(commands);
        }
    }

    /// Commits one request as a group of its own, on the caller's thread. Used for a writer
    /// with no concurrent company: it skips the two thread hand-offs (to the committer and
    /// back) that only pay for themselves when there is a group to form. The caller decides
    /// how to block from [`Committer::typical_write`].
    pub fn commit_alone(&mut self, request: AppendRequest) -> Result<AppendOutcome, EngineError> {
        let (reply, mut answer) = oneshot::channel();
        self.commit_group(vec![Command::Append { request, reply }]);
        answer.try_recv().map_err(|_| EngineError::Closed)?
    }

    fn commit_group(&mut self, commands: Vec<Command>) {
        let policy = self.parts.policy.read().clone();
        let mut group = Group {
            counters: *self.parts.counters.read(),
            ..Group::default()
        };
        let mut append_replies = Vec::with_capacity(commands.len());
        let mut meta_replies = Vec::new();
        for command in commands {
            match command {
                Command::Append { request, reply } => {
                    let result = self.stage(&mut group, policy.as_ref(), request);
                    append_replies.push((reply, result));
                }
                Command::PutMeta {
                    entries,
                    after,
                    reply,
                } => match cf(&self.parts.db, CF_META) {
                    Ok(meta) => {
                        for (key, value) in entries {
                            group.batch.put_cf(meta, key, value);
                        }
                        group.staged_anything = true;
                        meta_replies.push((reply, after));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err));
                    }
                },
            }
        }

        let written = if group.staged_anything {
            let writes_records = !group.records.is_empty();
            if writes_records {
                self.parts.records.write_begins();
            }
            let written = self.write_group(&mut group);
            if writes_records {
                // Before the group's events are published or anyone is answered: whoever
                // learns of them finds the records they produced.
                self.parts.records.write_ends(
                    group
                        .records
                        .iter()
                        .map(|(key, plain)| (key.as_slice(), plain.as_slice())),
                    written.is_ok(),
                );
            }
            written
        } else {
            Ok(())
        };
        match written {
            Ok(()) => {
                // Before the counters move and before anyone is answered: whoever learns of
                // these events can find them in the tail (tail.rs, "durable only").
                if !group.opened.is_empty() {
                    self.parts.tail.write().publish(
                        group
                            .opened
                            .iter()
                            .map(|(id, value)| (*id, value.as_slice())),
                    );
                }
                *self.parts.counters.write() = group.counters;
                for (reply, after) in meta_replies {
                    after();
                    let _ = reply.send(Ok(()));
                }
                for (reply, result) in append_replies {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "group commit failed; no write of the group was acknowledged");
                // RocksDB may hold part of what failed; the tail can no longer vouch that it
                // has every event above its floor.
                self.parts.tail.write().disable();
                for (reply, _) in meta_replies {
                    let _ = reply.send(Err(EngineError::Storage(err.clone())));
                }
                for (reply, result) in append_replies {
                    let _ = reply.send(result.and(Err(EngineError::Storage(err.clone()))));
                }
            }
        }
    }

    fn write_group(&mut self, group: &mut Group) -> Result<(), rocksdb::Error> {
        if let Ok(meta) = cf(&self.parts.db, CF_META) {
            group
                .batch
                .put_cf(meta, META_COUNTERS, group.counters.encode());
        }
        let batch = std::mem::take(&mut group.batch);
        let started = std::time::Instant::now();
        let written = self.parts.db.write_opt(batch, &self.sync_write);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        // An average over roughly the last eight writes: one slow sync raises it at once by
        // an eighth of its excess, a run of them takes it over any threshold.
        self.typical_write_micros = match self.typical_write_micros {
            u64::MAX => micros,
            typical => typical - typical / 8 + micros / 8,
        };
        written
    }

    fn load(&self, group: &Group, key: &AggKey) -> Result<Working, EngineError> {
        if let Some(working) = group.aggregates.get(key) {
            return Ok(working.clone());
        }
        let record_key = aggregate_key(&key.0, &key.1);
        match self
            .parts
            .records
            .read(&self.parts.db, &self.parts.cipher, &record_key)?
        {
            Some(record) => Ok(Working::from_record(record)),
            None => Ok(Working::empty()),
        }
    }

    fn exists(&self, group: &Group, local: &HashMap<AggKey, Working>, ty: &str, id: &str) -> bool {
        let key = (ty.to_owned(), id.to_owned());
        if let Some(w) = local.get(&key).or_else(|| group.aggregates.get(&key)) {
            return w.version > 0;
        }
        let record_key = aggregate_key(ty, id);
        if self.parts.records.get(&record_key).is_some() {
            return true;
        }
        let Ok(aggregates) = cf(&self.parts.db, CF_AGGREGATES) else {
            return false;
        };
        matches!(
            self.parts.db.get_pinned_cf(aggregates, record_key),
            Ok(Some(_))
        )
    }

    fn snapshot_threshold(&self, policy: &dyn WritePolicy, aggregate_type: &str) -> Option<u64> {
        match policy.snapshot_setting(aggregate_type) {
            SnapshotSetting::EngineDefault => self.parts.default_snapshot_threshold,
            SnapshotSetting::Every(n) => Some(n.max(1)),
            SnapshotSetting::Disabled => None,
        }
    }

    /// Stages one request into the group, or rejects it without touching the group.
    fn stage(
        &mut self,
        group: &mut Group,
        policy: &dyn WritePolicy,
        request: AppendRequest,
    ) -> Result<AppendOutcome, EngineError> {
        check_request_shape(&request)?;
        let fingerprint = request
            .idempotency_key
            .as_ref()
            .map(|_| fingerprint(&request));
        if let (Some(key), Some(fingerprint)) = (&request.idempotency_key, fingerprint) {
            if let Some(outcome) = self.replay(group, key, &fingerprint)? {
                return Ok(outcome);
            }
        }

        let mut local: HashMap<AggKey, Working> = HashMap::new();
        let mut staged: Vec<StagedEvent> = Vec::with_capacity(request.events.len());
        let mut new_aggregates = 0u64;
        let mut append_bytes = 0usize;
        for new_event in request.events {
            let key = (
                new_event.aggregate_type.clone(),
                new_event.aggregate_id.clone(),
            );
            let mut working = match local.remove(&key) {
                Some(w) => w,
                None => self.load(group, &key)?,
            };
            let actual = working.version;
            let expectation_met = match new_event.expected_version {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => actual == 0,
                ExpectedVersion::Exact(n) => actual == n,
            };
            if !expectation_met {
                return Err(EngineError::Conflict {
                    aggregate_type: key.0,
                    aggregate_id: key.1,
                    expected: new_event.expected_version,
                    actual,
                });
            }

            // Serialize once and refuse oversized payloads before the schema spends time
            // validating them; the text is stored as is unless the schema normalizes.
            let given_json = new_event.payload.compact_json();
            check_payload_size(given_json.len(), self.parts.max_payload_bytes)?;
            let prior_state = match actual > 0 && policy.reads_prior_state(&key.0) {
                true => Some(working.state.parsed()?),
                false => None,
            };
            let exists = |ty: &str, id: &str| self.exists(group, &local, ty, id);
            let checked = policy.check_event(&EventCheck {
                aggregate_type: &key.0,
                aggregate_id: &key.1,
                event_type: &new_event.event_type,
                payload: new_event.payload.object(),
                prior_state,
                aggregate_exists: &exists,
            })?;
            let (normalized, payload_json) = match checked.payload {
                Some(normalized) => {
                    let normalized_json = to_compact_json(&normalized);
                    check_payload_size(normalized_json.len(), self.parts.max_payload_bytes)?;
                    (Some(normalized), normalized_json)
                }
                None => (None, given_json.to_owned()),
            };
            let metadata_json = to_compact_json(&new_event.metadata);
            if metadata_json.len() > MAX_METADATA_BYTES {
                return Err(EngineError::TooLarge {
                    what: "event metadata",
                    size: metadata_json.len(),
                    limit: MAX_METADATA_BYTES,
                });
            }
            append_bytes = append_bytes
                .saturating_add(payload_json.len())
                .saturating_add(metadata_json.len());
            if append_bytes > MAX_APPEND_BYTES {
                return Err(EngineError::TooLarge {
                    what: "append (bytes)",
                    size: append_bytes,
                    limit: MAX_APPEND_BYTES,
                });
            }
            let note = new_event.note.or(checked.default_note);

            let now = unix_micros_now();
            let mut event = Event {
                event_id: self.parts.snowflake.next_id(),
                aggregate_type: key.0.clone(),
                aggregate_id: key.1.clone(),
                version: actual + 1,
                event_type: new_event.event_type,
                payload_json,
                metadata_json,
                note,
                created_at_micros: now,
                issued_by: request.issued_by.clone(),
                hash: [0; 32],
                merkle_root: [0; 32],
            };
            let canonical = event.canonical_bytes();
            event.hash = leaf_hash(&canonical);
            working.frontier.push(event.hash);
            event.merkle_root = working.frontier.root();
            // Sealed after hashing: the leaf covers the plaintext canonical encoding. The
            // plaintext is kept for the opened tail of the history.
            let opened = encode_stored_parts(&canonical, &event.hash, &event.merkle_root);
            let sealed =
                self.parts
                    .cipher
                    .seal_kept(CF_EVENTS, &event_key(event.event_id), &opened)?;
            let payload = normalized.as_ref().unwrap_or(new_event.payload.object());
            working.state.merge(payload, &event.payload_json)?;
            if actual == 0 {
                working.created_at_micros = now;
                new_aggregates += 1;
            }
            working.version = event.version;
            working.updated_at_micros = now;
            working.last_event_id = event.event_id;

            let snapshot = match self
                .snapshot_threshold(policy, &key.0)
                .filter(|every| event.version.is_multiple_of(*every))
            {
                Some(_) => Some(self.parts.cipher.seal(
                    CF_SNAPSHOTS,
                    &versioned_key(&key.0, &key.1, event.version),
                    encode_snapshot(event.event_id, &working.state.to_json()),
                )?),
                None => None,
            };
            staged.push(StagedEvent {
                event,
                opened,
                sealed,
                snapshot,
            });
            local.insert(key, working);
        }

        // Seal the aggregate records and the idempotency entry before touching the group's
        // batch, so that a failure leaves the group as it was.
        let mut records = Vec::with_capacity(local.len());
        for (key, working) in local {
            let record = AggregateRecord {
                version: working.version,
                last_event_id: working.last_event_id,
                created_at_micros: working.created_at_micros,
                updated_at_micros: working.updated_at_micros,
                merkle_root: working.frontier.root(),
                frontier: working.frontier.clone(),
                state_json: working.state.to_json(),
            };
            let record_key = aggregate_key(&key.0, &key.1);
            let plain = record.encode();
            let sealed = self
                .parts
                .cipher
                .seal_kept(CF_AGGREGATES, &record_key, &plain)?;
            records.push((key, working, record_key, plain, sealed));
        }
        let idempotency = match (request.idempotency_key, fingerprint) {
            (Some(key), Some(fingerprint)) => {
                let ids: Vec<u64> = staged.iter().map(|s| s.event.event_id).collect();
                let sealed = self.parts.cipher.seal(
                    CF_IDEMPOTENCY,
                    key.as_bytes(),
                    encode_idempotency(&fingerprint, &ids),
                )?;
                Some((key, fingerprint, ids, sealed))
            }
            _ => None,
        };

        // Accepted: move everything into the group's batch.
        let db = &self.parts.db;
        let (events_cf, streams_cf, aggregates_cf, snapshots_cf) = (
            cf(db, CF_EVENTS)?,
            cf(db, CF_STREAMS)?,
            cf(db, CF_AGGREGATES)?,
            cf(db, CF_SNAPSHOTS)?,
        );
        let mut outcome = Vec::with_capacity(staged.len());
        for StagedEvent {
            event,
            opened,
            sealed,
            snapshot,
        } in staged
        {
            let stream_key =
                versioned_key(&event.aggregate_type, &event.aggregate_id, event.version);
            group.batch.put_cf(
                events_cf,
                event_key(event.event_id),
                sealed.as_deref().unwrap_or(&opened),
            );
            group
                .batch
                .put_cf(streams_cf, &stream_key, event.event_id.to_be_bytes());
            if let Some(snapshot) = snapshot {
                group.batch.put_cf(snapshots_cf, &stream_key, snapshot);
            }
            group.opened.push((event.event_id, opened));
            if idempotency.is_some() {
                group.keyed_events.insert(event.event_id, event.clone());
            }
            outcome.push(event);
        }
        for (key, working, record_key, plain, sealed) in records {
            group.batch.put_cf(
                aggregates_cf,
                &record_key,
                sealed.as_deref().unwrap_or(&plain),
            );
            group.records.push((record_key, plain));
            group.aggregates.insert(key, working);
        }
        if let Some((key, fingerprint, ids, sealed)) = idempotency {
            group
                .batch
                .put_cf(cf(db, CF_IDEMPOTENCY)?, key.as_bytes(), sealed);
            group.idempotency.insert(key, (fingerprint, ids));
        }
        group.counters.events += outcome.len() as u64;
        group.counters.aggregates += new_aggregates;
        group.staged_anything = true;
        Ok(AppendOutcome {
            events: outcome,
            replayed: false,
        })
    }

    /// The stored outcome for a retried idempotency key, if any.
    fn replay(
        &self,
        group: &Group,
        key: &str,
        fingerprint: &[u8; 32],
    ) -> Result<Option<AppendOutcome>, EngineError> {
        let (stored_fingerprint, ids) = match group.idempotency.get(key) {
            Some((f, ids)) => (*f, ids.clone()),
            None => {
                match self.parts.cipher.get(
                    &self.parts.db,
                    CF_IDEMPOTENCY,
                    key.as_bytes(),
                    decode_idempotency,
                )? {
                    Some(stored) => stored,
                    None => return Ok(None),
                }
            }
        };
        if &stored_fingerprint != fingerprint {
            return Err(EngineError::IdempotencyMismatch {
                key: key.to_owned(),
            });
        }
        let mut events = Vec::with_capacity(ids.len());
        for id in ids {
            let event = match group.keyed_events.get(&id) {
                Some(event) => event.clone(),
                None => match self.parts.cipher.get(
                    &self.parts.db,
                    CF_EVENTS,
                    &event_key(id),
                    Event::decode_stored,
                )? {
                    Some(event) => event,
                    None => {
                        return Err(EngineError::corrupt(
                            "idempotency record",
                            format!("names event {id}, which is not stored"),
                        ))
                    }
                },
            };
            events.push(event);
        }
        Ok(Some(AppendOutcome {
            events,
            replayed: true,
        }))
    }
}

fn command_events(command: &Command) -> usize {
    match command {
        Command::Append { request, .. } => request.events.len().max(1),
        Command::PutMeta { .. } => 1,
    }
}

/// Shape and size checks that need no stored state.
fn check_request_shape(request: &AppendRequest) -> Result<(), EngineError> {
    if request.events.is_empty() {
        return Err(EngineError::InvalidValue {
            what: "append",
            reason: "an append needs at least one event".into(),
        });
    }
    if request.events.len() > MAX_EVENTS_PER_APPEND {
        return Err(EngineError::TooLarge {
            what: "append (events)",
            size: request.events.len(),
            limit: MAX_EVENTS_PER_APPEND,
        });
    }
    if let Some(key) = &request.idempotency_key {
        check_idempotency_key(key)?;
    }
    check_issuer_name("issuer group", &request.issued_by.group)?;
    check_issuer_name("issuer user", &request.issued_by.user)?;
    for event in &request.events {
        check_type_name("aggregate type", &event.aggregate_type)?;
        check_aggregate_id(&event.aggregate_id)?;
        check_type_name("event type", &event.event_type)?;
        if let Some(note) = &event.note {
            let chars = note.chars().count();
            if chars > MAX_NOTE_CHARS {
                return Err(EngineError::TooLarge {
                    what: "event note (characters)",
                    size: chars,
                    limit: MAX_NOTE_CHARS,
                });
            }
        }
    }
    Ok(())
}

/// Identifies a request's content, so a reused idempotency key with other content is caught.
fn fingerprint(request: &AppendRequest) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    let mut field = |bytes: &[u8]| {
        hasher.update(&(bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(request.issued_by.group.as_bytes());
    field(request.issued_by.user.as_bytes());
    for event in &request.events {
        field(event.aggregate_type.as_bytes());
        field(event.aggregate_id.as_bytes());
        field(event.event_type.as_bytes());
        field(event.payload.compact_json().as_bytes());
        field(to_compact_json(&event.metadata).as_bytes());
        field(event.note.as_deref().unwrap_or("\u{0}none").as_bytes());
        field(format!("{:?}", event.expected_version).as_bytes());
    }
    *hasher.finalize().as_bytes()
}

fn encode_idempotency(fingerprint: &[u8; 32], ids: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + ids.len() * 8);
    out.extend_from_slice(fingerprint);
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

fn decode_idempotency(bytes: &[u8]) -> Result<([u8; 32], Vec<u64>), EngineError> {
    let corrupt = || EngineError::corrupt("idempotency record", "malformed");
    if bytes.len() < 32 || !(bytes.len() - 32).is_multiple_of(8) {
        return Err(corrupt());
    }
    let fingerprint: [u8; 32] = bytes[..32].try_into().map_err(|_| corrupt())?;
    let ids = bytes[32..]
        .chunks_exact(8)
        .map(|chunk| {
            let mut id = [0u8; 8];
            id.copy_from_slice(chunk);
            u64::from_be_bytes(id)
        })
        .collect();
    Ok((fingerprint, ids))
}

fn check_payload_size(size: usize, limit: usize) -> Result<(), EngineError> {
    if size > limit {
        return Err(EngineError::TooLarge {
            what: "event payload",
            size,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::policy::AcceptAll;
    use crate::engine::store;
    use serde_json::json;

    fn committer(dir: &std::path::Path) -> Committer {
        let db = Arc::new(store::open(dir, 1 << 20, store::ValueForm::Sealed).expect("store"));
        let policy: Arc<dyn WritePolicy> = Arc::new(AcceptAll);
        Committer::new(CommitterParts {
            db,
            policy: Arc::new(RwLock::new(policy)),
            counters: Arc::new(RwLock::new(Counters::default())),
            cipher: ValueCipher::for_tests(),
            snowflake: Snowflake::new(0, 0),
            tail: Arc::new(RwLock::new(HistoryTail::new(1 << 20, 0))),
            records: Arc::new(RecordCache::new(1 << 20)),
            max_payload_bytes: 1 << 16,
            default_snapshot_threshold: None,
        })
    }

    fn keyed(aggregate_id: &str, key: &str, amount: u64) -> AppendRequest {
        let payload = json!({ "amount": amount });
        let Value::Object(payload) = payload else {
            unreachable!("an object literal")
        };
        AppendRequest {
            events: vec![NewEvent::new("account", aggregate_id, "deposited", payload)],
            idempotency_key: Some(key.to_owned()),
            issued_by: Issuer::default(),
        }
    }

    /// Commits `requests` as one group, as the committer thread does with concurrent
    /// writers, and returns each request's answer.
    fn commit_as_one_group(
        committer: &mut Committer,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, EngineError>> {
        let mut answers = Vec::new();
        let commands = requests
            .into_iter()
            .map(|request| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                Command::Append { request, reply }
            })
            .collect();
        committer.commit_group(commands);
        answers
            .into_iter()
            .map(|mut answer| answer.try_recv().expect("every request answered"))
            .collect()
    }

    fn ids(outcome: &AppendOutcome) -> Vec<u64> {
        outcome.events.iter().map(|event| event.event_id).collect()
    }

    // Requests in one group see each other's idempotency entries through the group's
    // overlay and earlier groups' through the store; every answer must be the one a lone
    // request would get.
    #[test]
    fn a_group_answers_stored_new_and_repeated_idempotency_keys_as_lone_requests_would() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut committer = committer(dir.path());
        let first = commit_as_one_group(
            &mut committer,
            vec![keyed("a", "k1", 1), keyed("b", "k2", 2)],
        );
        let k1 = first[0].as_ref().expect("k1 appended");
        let k2 = first[1].as_ref().expect("k2 appended");
        assert!(!k1.replayed && !k2.replayed);

        let second = commit_as_one_group(
            &mut committer,
            vec![
                keyed("a", "k1", 1),
                keyed("b", "k2", 3),
                keyed("c", "k3", 4),
                keyed("c", "k3", 4),
                keyed("a", "k1", 1),
                keyed("d", "k4", 5),
            ],
        );
        let stored_retry = second[0].as_ref().expect("k1 retried");
        assert!(stored_retry.replayed);
        assert_eq!(ids(stored_retry), ids(k1));
        assert!(matches!(
            &second[1],
            Err(EngineError::IdempotencyMismatch { key }) if key == "k2"
        ));
        let k3 = second[2].as_ref().expect("k3 appended");
        assert!(!k3.replayed);
        let in_group_retry = second[3].as_ref().expect("k3 retried in its group");
        assert!(in_group_retry.replayed);
        // Answered from the group's copy of the keyed events (not stored yet): whole events.
        assert_eq!(in_group_retry.events, k3.events);
        assert_eq!(ids(second[4].as_ref().expect("k1 again")), ids(k1));
        assert!(!second[5].as_ref().expect("k4 appended").replayed);

        // What the groups stored is what a lone request finds afterwards.
        let alone = committer
            .commit_alone(keyed("c", "k3", 4))
            .expect("k3 retried alone");
        assert!(alone.replayed);
        assert_eq!(ids(&alone), ids(k3));
        assert!(matches!(
            committer.commit_alone(keyed("d", "k4", 6)),
            Err(EngineError::IdempotencyMismatch { key }) if key == "k4"
        ));
    }
}
