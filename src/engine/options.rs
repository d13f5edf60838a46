//! Engine configuration and every limit the engine enforces, each with the reason for it.

use std::path::PathBuf;

use super::seal::KeySpec;

/// Default cap on one event's serialized payload. Large enough for any business document,
/// small enough that one append cannot monopolize the commit path or the WAL.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Hard ceiling for the configurable payload cap: a RocksDB value stays well below the sizes
/// where blob storage would be the right tool.
pub const MAX_PAYLOAD_BYTES_CEILING: usize = 16 * 1024 * 1024;
/// Metadata is for correlation ids and tracing context, not data.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// The spec's limit on an event note.
pub const MAX_NOTE_CHARS: usize = 128;
/// Events in one append: bounds the work (and memory) one request holds in the commit path.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;
/// Bytes in one append, summed over payloads and metadata, for the same reason.
pub const MAX_APPEND_BYTES: usize = 64 * 1024 * 1024;
/// Requests merged into one group commit: enough to amortize one fdatasync over a burst of
/// concurrent writers without letting a single write batch grow unbounded.
pub const MAX_GROUP_REQUESTS: usize = 1_024;
/// Events merged into one group commit, for the same reason.
pub const MAX_GROUP_EVENTS: usize = 32_768;
/// Queue depth in front of the committer; a full queue applies back-pressure to writers.
pub const COMMIT_QUEUE_DEPTH: usize = 8_192;
/// Idempotency keys are identifiers, not documents.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Aggregate and event type names: snake_case, short enough to stay readable in keys.
pub const MAX_TYPE_NAME_LEN: usize = 64;
/// Aggregate ids: `[A-Za-z0-9][A-Za-z0-9_-]{0,127}`.
pub const MAX_AGGREGATE_ID_LEN: usize = 128;
/// Issuer group and user names carried on every event.
pub const MAX_ISSUER_NAME_LEN: usize = 128;
/// Largest worker id that fits the 10 snowflake bits.
pub const MAX_WORKER_ID: u16 = 1023;
/// Default page of a listing when the caller names none.
pub const DEFAULT_LIST_PAGE_SIZE: usize = 100;
/// Default cap on any page, whatever the caller asks for.
pub const DEFAULT_PAGE_LIMIT: usize = 1_000;
/// Ceiling for the configurable page cap: a page is materialized in memory.
pub const PAGE_LIMIT_CEILING: usize = 100_000;
/// Bytes of event data in one outbox page before it is cut short (the cursor then stops at
/// the last event returned, never past one that was not).
pub const MAX_OUTBOX_PAGE_BYTES: usize = 32 * 1024 * 1024;
/// Default RocksDB block cache, shared by all column families: an eighth of the default
/// cache memory (`cache_threshold`, 64 MiB). With the history's values and the current
/// aggregate records kept opened by the engine, it holds mostly index and filter blocks,
/// streams, and the records of aggregates not used lately.
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Default memory for the current records of recently used aggregates (`records.rs`): an
/// eighth of the default cache memory, ~14,000 records of the benchmark's (~400 bytes of
/// plaintext and ~190 counted beside it each).
pub const DEFAULT_AGGREGATE_RECORDS_BYTES: usize = 8 * 1024 * 1024;
/// Default memory for the opened tail of the history (`tail.rs`): a quarter of the default
/// cache memory. It holds ~40,000 events of the benchmark's appends (~420 bytes each with
/// the index): a consumer that far behind the head is served from memory (about a second
/// of writes at 40,000 appends/s, forty at 1,000/s); one further behind, from the opened
/// history once it has read there.
pub const DEFAULT_HISTORY_TAIL_BYTES: usize = 16 * 1024 * 1024;
/// Default memory for the opened history (`opened.rs`): half of the default cache memory,
/// ~100,000 events of the benchmark's.
pub const DEFAULT_OPENED_HISTORY_BYTES: usize = 32 * 1024 * 1024;

/// What the engine needs to open a store.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Directory holding the RocksDB files. Created when missing.
    pub data_dir: PathBuf,
    /// Snowflake worker id, 0..=1023.
    pub worker_id: u16,
    /// Cap on one payload's serialized JSON.
    pub max_payload_bytes: usize,
    /// Snapshot every N versions for aggregate types whose schema names no threshold.
    /// `None` disables automatic snapshots for them.
    pub default_snapshot_threshold: Option<u64>,
    /// Page size when the caller names none.
    pub list_page_size: usize,
    /// Cap on every page.
    pub page_limit: usize,
    /// Block cache size in bytes.
    pub block_cache_bytes: usize,
    /// Memory for the current records of recently used aggregates (`records.rs`); 0 keeps
    /// none.
    pub aggregate_records_bytes: usize,
    /// Memory for the newest events kept opened (`tail.rs`); 0 keeps none.
    pub history_tail_bytes: usize,
    /// Memory for older stretches of the history kept opened once read (`opened.rs`); 0
    /// keeps none.
    pub opened_history_bytes: usize,
    /// The data encryption key: `None` stores values unencrypted. See `seal.rs`.
    pub encryption: Option<KeySpec>,
}

impl EngineOptions {
    /// Options with every default, storing in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            worker_id: 0,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            default_snapshot_threshold: Some(100),
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
            page_limit: DEFAULT_PAGE_LIMIT,
            block_cache_bytes: DEFAULT_BLOCK_CACHE_BYTES,
            aggregate_records_bytes: DEFAULT_AGGREGATE_RECORDS_BYTES,
            history_tail_bytes: DEFAULT_HISTORY_TAIL_BYTES,
            opened_history_bytes: DEFAULT_OPENED_HISTORY_BYTES,
            encryption: None,
        }
    }

    /// Checks every value against its allowed range.
    pub fn validate(&self) -> Result<(), String> {
        if self.worker_id > MAX_WORKER_ID {
            return Err(format!(
                "snowflake worker id {} is out of range 0..={MAX_WORKER_ID}",
                self.worker_id
            ));
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > MAX_PAYLOAD_BYTES_CEILING {
            return Err(format!(
                "max payload bytes {} is out of range 1..={MAX_PAYLOAD_BYTES_CEILING}",
                self.max_payload_bytes
            ));
        }
        if self.page_limit == 0 || self.page_limit > PAGE_LIMIT_CEILING {
            return Err(format!(
                "page limit {} is out of range 1..={PAGE_LIMIT_CEILING}",
                self.page_limit
            ));
        }
        if self.list_page_size == 0 || self.list_page_size > self.page_limit {
            return Err(format!(
                "list page size {} is out of range 1..={} (the page limit)",
                self.list_page_size, self.page_limit
            ));
        }
        if self.default_snapshot_threshold == Some(0) {
            return Err("snapshot threshold must be at least 1 (or unset)".into());
        }
        Ok(())
    }
}
