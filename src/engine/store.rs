//! Opening RocksDB: explicit options for every setting durability or correctness depends
//! on, the column families, and the checks that refuse stores this build must not touch.

use std::path::Path;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompactionStyle,
    DBCompressionType, DBRecoveryMode, Options, UniversalCompactOptions,
    UniversalCompactionStopStyle, WriteBufferManager, DB,
};

use super::error::EngineError;
use super::keys::{
    ALL_CFS, CF_EVENTS, CF_IDEMPOTENCY, CF_META, CF_STREAMS, META_DOMAIN, META_FORMAT,
};

/// Version of the on-disk layout this build writes and reads.
pub const STORE_FORMAT: u32 = 1;
/// The one logical domain of this single-tenant build.
pub const DOMAIN: &str = "default";

/// Directory names that only legacy multi-domain / multi-tenant layouts had.
const LEGACY_DIRS: [&str; 3] = ["tenants", "domains", "tenant"];

const LEGACY_ADVICE: &str = "This build of EventDBX is single-tenant and pinned to the \
    `default` domain; it refuses legacy multi-domain or multi-tenant layouts. Export the \
    data with the build that wrote it and import it here, or run a dedicated migration \
    before upgrading.";

/// What this process writes into the column families whose values are all sealed under a
/// data key ([`super::seal::every_value_sealed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueForm {
    /// AEAD ciphertext: incompressible, so those column families are not compressed.
    Sealed,
    /// Plaintext (no data key).
    Plain,
}

impl ValueForm {
    /// The form of the values written with data key `key`, if any.
    pub fn of(key: Option<&super::seal::KeySpec>) -> Self {
        if key.is_some() {
            ValueForm::Sealed
        } else {
            ValueForm::Plain
        }
    }
}

/// Opens (creating if needed) the store in `dir`, after checking it is ours.
pub fn open(dir: &Path, block_cache_bytes: usize, values: ValueForm) -> Result<DB, EngineError> {
    refuse_foreign_layouts(dir)?;
    let existed = exists(dir);
    if existed {
        require_meta_column_family(dir)?;
    }

    let cache = Cache::new_lru_cache(block_cache_bytes);
    let db_options = db_options();
    let descriptors = ALL_CFS
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, &cache, values)));
    let db = DB::open_cf_descriptors(&db_options, dir, descriptors)?;
    check_or_stamp_format(&db, dir, existed)?;
    Ok(db)
}

/// True when `dir` holds a RocksDB database (EventDBX's or not).
pub fn exists(dir: &Path) -> bool {
    dir.join("CURRENT").exists()
}

/// Opens an existing store read-only, for inspection while a daemon may hold it open
/// (read-only opens take no lock and write nothing, not even WAL recovery).
pub fn open_read_only(dir: &Path) -> Result<DB, EngineError> {
    require_meta_column_family(dir)?;
    Ok(DB::open_cf_for_read_only(
        &Options::default(),
        dir,
        ALL_CFS,
        false,
    )?)
}

/// Refuses a RocksDB database in `dir` that is not an EventDBX store (it has no `meta`
/// column family).
fn require_meta_column_family(dir: &Path) -> Result<(), EngineError> {
    let cfs = DB::list_cf(&Options::default(), dir)?;
    if cfs.iter().any(|cf| cf == CF_META) {
        return Ok(());
    }
    Err(EngineError::IncompatibleStore(format!(
        "{} holds a RocksDB database that is not an EventDBX store (no `meta` column \
         family); point data_dir at an empty directory",
        dir.display()
    )))
}

/// Database-wide options. Each durability-relevant one is set explicitly, never inherited.
fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Checksums are verified and corruption is an error, not silently skipped.
    opts.set_paranoid_checks(true);
    // After kill -9 or power loss, recover every synced write and stop at the first torn
    // record: only an unacknowledged tail can be torn, because acks follow the sync.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    // The WAL is written by every write; we sync it ourselves per group commit
    // (`WriteOptions::set_sync(true)`), so RocksDB must not buffer it in user space.
    opts.set_manual_wal_flush(false);
    // fdatasync, not fsync: the WAL's metadata changes are covered by RocksDB's own
    // preallocation and MANIFEST syncs; this is RocksDB's durable default, set on purpose.
    opts.set_use_fsync(false);
    // All column families flush together, so after a crash no CF's SST files are ahead of
    // another's; the WAL replays the rest consistently.
    opts.set_atomic_flush(true);
    // Record WAL files in the MANIFEST so a missing or truncated synced WAL is detected.
    opts.set_track_and_verify_wals_in_manifest(true);
    // Only the holder of the commit lock writes, so there is never a second writer for a
    // pipeline to overlap with; unordered writes stay off because readers must never see a
    // later batch before an earlier one (the outbox relies on it).
    opts.set_enable_pipelined_write(false);
    opts.set_unordered_write(false);
    // Reuse old WAL files instead of creating new ones: a recycled file is overwritten in
    // place, so the per-commit fdatasync does not also journal a file-size change (measured
    // on ext4 here: ~95 µs against ~145 µs for an append that grows the file). Recycled
    // files use RocksDB's recyclable record format, whose records carry the WAL number, so
    // point-in-time recovery stops at the first stale record left from the file's previous
    // use exactly as it stops at a torn tail.
    opts.set_recycle_log_file_num(WAL_FILES_RECYCLED);
    opts.set_max_open_files(512);
    opts.set_keep_log_file_num(4);
    opts.set_max_total_wal_size(256 * 1024 * 1024);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1024 * 1024);
    // One budget for every column family's memtables together, mutable and immutable: past
    // 7/8 of it the largest CF flushes, and at the budget writers stall until a flush frees
    // memory. Six CFs of up to three 16-32 MiB memtables could otherwise hold several
    // hundred MiB under a long write burst (`db_write_buffer_size` only triggers flushes;
    // immutable memtables waiting for them are not counted against it).
    opts.set_write_buffer_manager(&WriteBufferManager::new_write_buffer_manager(
        MEMTABLE_BUDGET_BYTES,
        true,
    ));
    opts
}

/// WAL files kept for reuse after their memtables are flushed (see `db_options`): one per
/// flush that can be in flight, plus one spare.
const WAL_FILES_RECYCLED: usize = 4;

/// Size of one partition of an SST's index and of its filter (RocksDB's default): what a
/// point lookup or a seek loads into the block cache besides the data block.
const METADATA_BLOCK_BYTES: usize = 4096;

/// Memory all memtables may hold together (see `db_options`); with the block cache (8 MiB
/// by default, an eighth of `cache_threshold`), the two budgets that bound RocksDB's memory.
const MEMTABLE_BUDGET_BYTES: usize = 64 * 1024 * 1024;

fn cf_options(name: &str, cache: &Cache, values: ValueForm) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_format_version(6);
    table.set_block_size(16 * 1024);
    // Each file's index and filter are cut into partitions under a small top-level index,
    // pinned: a lookup loads the partitions it needs, not the file's whole index and filter.
    // Whole, one 64 MiB `idempotency` file's filter is ~750 KiB. With millions of keys they
    // outgrew the 8 MiB block cache, so each lookup re-read them from the page cache and
    // checked their checksums: ~60% of the committer's CPU, and appends with a key fell from
    // ~17,000/s to ~6,500/s by 500,000 entries (BENCHMARKS.md, sixteenth pass).
    table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(METADATA_BLOCK_BYTES);
    table.set_pin_top_level_index_and_filter(true);
    // Bloom filters where point lookups can miss: aggregates and idempotency keys (most
    // idempotency lookups are misses), snapshots and meta. `streams` is only ever read by
    // bounded range scans, which filters cannot help, and `events` by scans and by ids that
    // exist (see below). A filter is built in memory for a whole SST file before it is
    // written, 8 bytes per key: `streams` holds ~4 million tiny entries per 64 MiB file, so a
    // compaction of a large history held tens of MiB for a filter nothing reads, and the
    // finished filters took block-cache space from data.
    if name != CF_STREAMS {
        table.set_bloom_filter(10.0, false);
    }

    let mut opts = Options::default();
    if name == CF_EVENTS {
        // Event ids are looked up only when they exist (from a stream entry or a cursor),
        // and ids grow with time, so an id's key range is in one file per level: the
        // bottommost level, which holds nearly all the history, needs no filter.
        opts.set_optimize_filters_for_hits(true);
    }
    opts.set_block_based_table_factory(&table);
    if values == ValueForm::Sealed && super::seal::every_value_sealed(name) {
        // Ciphertext does not compress: RocksDB compressed every block of these column
        // families on each flush and compaction only to store it raw (LZ4 and ZSTD were ~4%
        // of the server's CPU under 32 appending clients). Values already stored compressed
        // stay readable; compaction rewrites them uncompressed.
        opts.set_compression_type(DBCompressionType::None);
        opts.set_bottommost_compression_type(DBCompressionType::None);
    } else {
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_bottommost_compression_type(DBCompressionType::Zstd);
    }
    if TIERED_CFS.contains(&name) {
        set_tiered_compaction(&mut opts);
    } else {
        opts.set_level_compaction_dynamic_level_bytes(true);
    }
    // Per-CF memtable sizes within MEMTABLE_BUDGET_BYTES: `events` takes the most bytes per
    // append; `aggregates` rewrites one record per append.
    let write_buffer = if name == CF_EVENTS {
        32 * 1024 * 1024
    } else {
        16 * 1024 * 1024
    };
    opts.set_write_buffer_size(write_buffer);
    opts.set_max_write_buffer_number(3);
    opts
}

/// Sorted runs of a tiered column family that start a compaction, and the most a stream
/// scan seeks in or an idempotency lookup asks between compactions.
///
/// Flushes are atomic across column families (see `db_options`), so `streams` and
/// `idempotency` flush whenever `events` fills its memtable: ~30,000 entries each, far
/// below what their own memtables hold. Tiered compaction keeps one sorted run per doubling
/// of the column family only while it may keep that many; at 10 million entries that is
/// ~9 runs. At RocksDB's default of 4, every flush past the fourth run was merged into the
/// next run up whatever its size (RocksDB's fallback to "reduce sorted runs"), so that run
/// was rewritten whole ~30,000 entries at a time until it caught up with the one above:
/// - `streams`: 8.2 rewrites per entry while seeding 10 million events, 43 s of compaction
///   CPU, and 8–13 µs of the server's CPU per append at 10 million. With 8: 3.6 rewrites,
///   16 s, ~1 µs per append (BENCHMARKS.md, seventeenth pass).
/// - `idempotency`: 9.2 rewrites per entry while seeding 10 million keyed appends (48 s of
///   compaction CPU, 9.2 GiB written), and 10–12 µs of the server's CPU per keyed append at
///   10 million keys. With 8: 2.9 rewrites (19 s, 2.9 GiB) and 2.6–2.8 µs (eighteenth pass).
///
/// The price is read-side: a stream scan seeks in up to 8 runs (history pages at 10 million
/// events were 6–13% slower than at 4), and an idempotency lookup, mostly a miss, asks up to
/// 8 runs' filters (at 10 million keys the server still spent ~10 µs less per keyed append
/// in all). It stays well below the 20 runs at which RocksDB starts slowing writes down.
const TIERED_RUNS_BEFORE_COMPACTION: i32 = 8;
/// How much larger than the newer runs picked for a merge (together) the next older run may
/// be, in percent, and still join it: RocksDB's default. Runs merge once the newer ones add
/// up to about their size, so while the column family may keep a run per doubling (see
/// `TIERED_RUNS_BEFORE_COMPACTION`) an entry is rewritten about once each time it doubles.
const TIERED_MERGE_SIZE_RATIO_PERCENT: i32 = 1;
/// Everything newer than the oldest run, as a share of it, that forces one full merge:
/// RocksDB's default; the size ratio above usually merges the oldest run earlier. Stream
/// and idempotency entries are never overwritten, so the runs hold no stale copies; what
/// this bounds is how long the newest entries wait before the full merge.
const TIERED_MAX_SIZE_AMPLIFICATION_PERCENT: i32 = 200;
/// Fewest runs one merge takes: RocksDB's default; a merge of one run would only rewrite it.
const TIERED_MIN_MERGE_WIDTH: i32 = 2;

/// The column families compacted tiered (RocksDB's universal style); the others are leveled.
///
/// Their keys are not in time order: a stream entry's key is its aggregate, an idempotency
/// entry's the client's key. So appends land all over the key range, every flushed file
/// overlaps most of the column family, and leveled compaction rewrote most of it every few
/// flushes, a cost that grows with the history:
/// - `streams` is small (~6.5 bytes an entry compressed: ~65 MB at 10 million events), so
///   with dynamic level sizes it sat in one level below the 256 MiB base, and each
///   compaction rewrote ~10 million entries. At 10 million events that was 12–19 µs of the
///   server's CPU per append (~25% of it) under 32 appending clients, and the cause of the
///   slow runs in the history-size benchmark; tiered, 1.7–2.3 µs (BENCHMARKS.md, fifteenth
///   pass).
/// - `idempotency` with a random key per append: at 2 million entries, leveled compaction
///   wrote ~1.8 KB per ~110-byte entry appended (7.6 µs of CPU per append); tiered, 250
///   bytes (1.5 µs) (BENCHMARKS.md, sixteenth pass).
///
/// Tiered compaction merges runs of similar size, so an entry is rewritten about once per
/// doubling of the column family (while it may keep a run per doubling). The cost is read
/// amplification: a stream scan seeks in each sorted run and an idempotency lookup asks
/// each run's filter (up to `TIERED_RUNS_BEFORE_COMPACTION`); both load only one index and
/// one filter partition per run (see `METADATA_BLOCK_BYTES`). `events` keys rise with time
/// (new files move down without a rewrite) and `aggregates` rewrites a bounded set of
/// records, so leveled suits them.
///
/// A store written with these column families leveled opens as is: each of their levels is
/// one sorted run.
const TIERED_CFS: [&str; 2] = [CF_STREAMS, CF_IDEMPOTENCY];

fn set_tiered_compaction(opts: &mut Options) {
    opts.set_compaction_style(DBCompactionStyle::Universal);
    let mut tiered = UniversalCompactOptions::default();
    tiered.set_size_ratio(TIERED_MERGE_SIZE_RATIO_PERCENT);
    tiered.set_min_merge_width(TIERED_MIN_MERGE_WIDTH);
    tiered.set_max_size_amplification_percent(TIERED_MAX_SIZE_AMPLIFICATION_PERCENT);
    tiered.set_stop_style(UniversalCompactionStopStyle::Total);
    opts.set_universal_compaction_options(&tiered);
    opts.set_level_zero_file_num_compaction_trigger(TIERED_RUNS_BEFORE_COMPACTION);
}

/// Levels of every column family: RocksDB's default `num_levels`, which the store keeps.
const LEVELS: u32 = 7;

/// Sorted runs of a column family compacted tiered: each L0 file is one, and so is each
/// non-empty level. What a stream scan seeks in and what `TIERED_RUNS_BEFORE_COMPACTION` bounds.
pub fn sorted_runs(db: &DB, cf: &str) -> Result<u64, EngineError> {
    let handle = db
        .cf_handle(cf)
        .ok_or_else(|| EngineError::corrupt("store", format!("{cf} column family missing")))?;
    let mut runs = 0;
    for level in 0..LEVELS {
        let files = db
            .property_int_value_cf(handle, &format!("rocksdb.num-files-at-level{level}"))?
            .unwrap_or(0);
        runs += if level == 0 {
            files
        } else {
            u64::from(files > 0)
        };
    }
    Ok(runs)
}

/// RocksDB's background work on `cfs`: flushes and compactions running in the store, plus
/// memtable flushes and compactions due in those column families. Zero once it has settled.
pub fn background_work(db: &DB, cfs: &[&str]) -> Result<u64, EngineError> {
    let mut work = db
        .property_int_value("rocksdb.num-running-flushes")?
        .unwrap_or(0)
        + db.property_int_value("rocksdb.num-running-compactions")?
            .unwrap_or(0);
    for cf in cfs {
        let handle = db
            .cf_handle(cf)
            .ok_or_else(|| EngineError::corrupt("store", format!("{cf} column family missing")))?;
        for due in [
            "rocksdb.mem-table-flush-pending",
            "rocksdb.compaction-pending",
        ] {
            work += db.property_int_value_cf(handle, due)?.unwrap_or(0);
        }
    }
    Ok(work)
}

fn refuse_foreign_layouts(dir: &Path) -> Result<(), EngineError> {
    for legacy in LEGACY_DIRS {
        let path = dir.join(legacy);
        if path.is_dir() {
            return Err(EngineError::IncompatibleStore(format!(
                "{} contains `{legacy}/`, a legacy multi-tenant layout. {LEGACY_ADVICE}",
                dir.display()
            )));
        }
    }
    if dir.is_dir() && !exists(dir) {
        let entries = std::fs::read_dir(dir).map_err(|source| EngineError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        if entries.flatten().next().is_some() {
            return Err(EngineError::IncompatibleStore(format!(
                "{} is not empty and is not an EventDBX store; point data_dir at an empty \
                 or new directory",
                dir.display()
            )));
        }
    }
    Ok(())
}

fn check_or_stamp_format(db: &DB, dir: &Path, existed: bool) -> Result<(), EngineError> {
    let meta = db
        .cf_handle(CF_META)
        .ok_or_else(|| EngineError::corrupt("store", "meta column family missing"))?;
    match db.get_cf(meta, META_FORMAT)? {
        Some(bytes) => {
            let format = <[u8; 4]>::try_from(bytes.as_slice())
                .map(u32::from_be_bytes)
                .map_err(|_| EngineError::corrupt("store format marker", "wrong length"))?;
            if format > STORE_FORMAT {
                return Err(EngineError::IncompatibleStore(format!(
                    "{} was written by a newer EventDBX (store format {format}; this build \
                     reads format {STORE_FORMAT}). Upgrade dbx to open it.",
                    dir.display()
                )));
            }
        }
        None if existed => {
            return Err(EngineError::IncompatibleStore(format!(
                "{} has no EventDBX format marker; it was not created by this build",
                dir.display()
            )));
        }
        None => {
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(meta, META_FORMAT, STORE_FORMAT.to_be_bytes());
            batch.put_cf(meta, META_DOMAIN, DOMAIN.as_bytes());
            let mut write = rocksdb::WriteOptions::default();
            write.set_sync(true);
            db.write_opt(batch, &write)?;
        }
    }
    match db.get_cf(meta, META_DOMAIN)? {
        Some(domain) if domain == DOMAIN.as_bytes() => Ok(()),
        other => Err(EngineError::IncompatibleStore(format!(
            "{} is pinned to domain {:?}, not `default`. {LEGACY_ADVICE}",
            dir.display(),
            other.map(|d| String::from_utf8_lossy(&d).into_owned())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::keys::CF_AGGREGATES;

    /// The value RocksDB recorded for `option` of column family `cf` in the newest OPTIONS
    /// file of `dir` (the options a store actually runs with).
    fn recorded_option(dir: &Path, cf: &str, option: &str) -> String {
        recorded_in_section(dir, &format!("[CFOptions \"{cf}\"]"), option)
    }

    /// The same for `cf`'s block-based table options (index, filters, blocks).
    fn recorded_table_option(dir: &Path, cf: &str, option: &str) -> String {
        recorded_in_section(
            dir,
            &format!("[TableOptions/BlockBasedTable \"{cf}\"]"),
            option,
        )
    }

    fn recorded_in_section(dir: &Path, header: &str, option: &str) -> String {
        let newest = std::fs::read_dir(dir)
            .expect("data dir")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("OPTIONS-"))
            .max_by_key(|name| name["OPTIONS-".len()..].parse::<u64>().unwrap_or(0))
            .expect("an OPTIONS file");
        let text = std::fs::read_to_string(dir.join(newest)).expect("OPTIONS");
        let start = text.find(header).expect("the column family's section") + header.len();
        let section = text[start..].split("\n[").next().unwrap_or_default();
        section
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(&format!("{option}=")))
            .expect("the option")
            .to_owned()
    }

    /// The `compression` and `bottommost_compression` recorded for `cf`.
    fn recorded_compression(dir: &Path, cf: &str) -> (String, String) {
        (
            recorded_option(dir, cf, "compression"),
            recorded_option(dir, cf, "bottommost_compression"),
        )
    }

    #[test]
    fn streams_and_idempotency_are_compacted_tiered_and_the_others_leveled() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(open(dir.path(), 1 << 20, ValueForm::Sealed).expect("store"));
        let tiered_cfs = [CF_STREAMS, CF_IDEMPOTENCY];
        for cf in ALL_CFS {
            let expected = if tiered_cfs.contains(&cf) {
                "kCompactionStyleUniversal"
            } else {
                "kCompactionStyleLevel"
            };
            assert_eq!(
                recorded_option(dir.path(), cf, "compaction_style"),
                expected,
                "{cf}"
            );
        }
        for cf in tiered_cfs {
            let tiered = recorded_option(dir.path(), cf, "compaction_options_universal");
            for setting in [
                format!("size_ratio={TIERED_MERGE_SIZE_RATIO_PERCENT}"),
                format!("max_size_amplification_percent={TIERED_MAX_SIZE_AMPLIFICATION_PERCENT}"),
                format!("min_merge_width={TIERED_MIN_MERGE_WIDTH}"),
            ] {
                assert!(tiered.contains(&setting), "{cf}: {setting} in {tiered}");
            }
        }
    }

    // Regression: at RocksDB's default of 4 runs, every `streams` flush past the fourth run
    // was merged into the next run up whatever its size, which rewrote that run whole each
    // ~30,000 appends (8.2 rewrites per entry while seeding 10M events); `idempotency` did
    // the same at 10M keys (9.2 rewrites per entry).
    #[test]
    fn tiered_flushes_wait_for_runs_of_their_size_until_eight_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), 1 << 20, ValueForm::Sealed).expect("store");
        let flush_overlapping = |flush: u32, flushes: u32| {
            for cf in TIERED_CFS {
                let handle = db.cf_handle(cf).expect("column family");
                // Keys across the whole range in every flush, as appends to many aggregates
                // (or random idempotency keys) produce: each flushed file overlaps the others.
                for key in 0..500u32 {
                    let key = (key * flushes + flush).to_be_bytes();
                    db.put_cf(handle, key, b"v").expect("put");
                }
                db.flush_cf(handle).expect("flush");
            }
        };
        let settle = |what: &str| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while background_work(&db, &TIERED_CFS).expect("properties") != 0 {
                assert!(std::time::Instant::now() < deadline, "not settled {what}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        let flushes = 12;
        for flush in 0..6 {
            flush_overlapping(flush, flushes);
        }
        settle("after six flushes");
        for cf in TIERED_CFS {
            assert_eq!(
                sorted_runs(&db, cf).expect("runs"),
                6,
                "{cf} after six flushes"
            );
            assert_eq!(
                recorded_option(dir.path(), cf, "level0_file_num_compaction_trigger"),
                "8",
                "{cf}"
            );
        }
        // Past the trigger they do merge.
        for flush in 6..flushes {
            flush_overlapping(flush, flushes);
        }
        settle("after twelve flushes");
        for cf in TIERED_CFS {
            let runs = sorted_runs(&db, cf).expect("runs");
            assert!(
                (1..8).contains(&runs),
                "{cf}: {runs} runs after twelve flushes"
            );
        }
    }

    /// Writes a store as an earlier build did, with `cf_options` for column family `cf`
    /// (RocksDB's defaults for the others): entries 0..4,000 of `cf`, flushed in four
    /// batches, the first three compacted to the bottom level and the last left in L0.
    fn write_as_an_earlier_build(
        dir: &Path,
        cf: &str,
        cf_options: &Options,
        entry: impl Fn(u32) -> (Vec<u8>, Vec<u8>),
    ) {
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        let descriptors = ALL_CFS.iter().map(|name| {
            let opts = if *name == cf {
                cf_options.clone()
            } else {
                Options::default()
            };
            ColumnFamilyDescriptor::new(*name, opts)
        });
        let db = DB::open_cf_descriptors(&db_options, dir, descriptors).expect("db");
        let meta = db.cf_handle(CF_META).expect("meta");
        db.put_cf(meta, META_FORMAT, STORE_FORMAT.to_be_bytes())
            .expect("format");
        db.put_cf(meta, META_DOMAIN, DOMAIN.as_bytes())
            .expect("domain");
        let handle = db.cf_handle(cf).expect("column family");
        for batch in 0..4u32 {
            for n in batch * 1_000..(batch + 1) * 1_000 {
                let (key, value) = entry(n);
                db.put_cf(handle, key, value).expect("put");
            }
            db.flush_cf(handle).expect("flush");
            if batch == 2 {
                db.compact_range_cf(handle, None::<&[u8]>, None::<&[u8]>);
            }
        }
        assert_eq!(
            db.property_value_cf(handle, "rocksdb.num-files-at-level0")
                .expect("property")
                .as_deref(),
            Some("1"),
            "the last batch is in L0"
        );
    }

    // Stores written before `streams` was compacted tiered hold it leveled: in L0 and in the
    // bottom level. They must open and read back whole, and compact, under tiered compaction.
    #[test]
    fn a_store_with_leveled_streams_opens_and_reads_back_every_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entry = |n: u32| {
            // Appends spread over aggregates, as stream keys are (aggregate, version).
            let aggregate = n.wrapping_mul(2_654_435_761) % 97;
            (
                format!("order\0order-{aggregate}\0{n:010}").into_bytes(),
                u64::from(n).to_be_bytes().to_vec(),
            )
        };
        let mut streams_leveled = Options::default();
        streams_leveled.set_level_compaction_dynamic_level_bytes(true);
        write_as_an_earlier_build(dir.path(), CF_STREAMS, &streams_leveled, entry);

        let db = open(dir.path(), 1 << 20, ValueForm::Plain).expect("a leveled store opens");
        let streams = db.cf_handle(CF_STREAMS).expect("streams");
        let read_back = |db: &DB| {
            // In key order, as RocksDB returns them across sorted runs.
            db.iterator_cf(streams, rocksdb::IteratorMode::Start)
                .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("entry"))
                .collect::<Vec<_>>()
        };
        let mut expected: Vec<(Vec<u8>, Vec<u8>)> = (0..4_000).map(entry).collect();
        expected.sort();
        assert_eq!(read_back(&db), expected);
        // And it compacts under the new style without losing an entry.
        db.compact_range_cf(streams, None::<&[u8]>, None::<&[u8]>);
        assert_eq!(read_back(&db), expected);
    }

    // Regression: with one index block and one filter per SST file, appends carrying an
    // idempotency key slowed from ~17,000/s to ~6,500/s by 500,000 keys. Each key's lookup
    // re-read whole filter and index blocks that no longer fitted the block cache and
    // verified their checksums. Partitions keep what a lookup loads small.
    #[test]
    fn every_column_family_has_a_partitioned_index_and_filters() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(open(dir.path(), 1 << 20, ValueForm::Sealed).expect("store"));
        for cf in ALL_CFS {
            let table = |option| recorded_table_option(dir.path(), cf, option);
            assert_eq!(table("index_type"), "kTwoLevelIndexSearch", "{cf}");
            assert_eq!(table("partition_filters"), "true", "{cf}");
            assert_eq!(
                table("metadata_block_size"),
                METADATA_BLOCK_BYTES.to_string(),
                "{cf}"
            );
            assert_eq!(table("pin_top_level_index_and_filter"), "true", "{cf}");
            assert_eq!(table("cache_index_and_filter_blocks"), "true", "{cf}");
        }
    }

    // Stores written before the index and filters were partitioned hold SSTs with one index
    // block and one filter per file, in L0 and in the bottom level. Point lookups, hits and
    // misses, must answer the same from them, and after a compaction rewrites them.
    #[test]
    fn idempotency_entries_written_with_whole_file_indexes_and_filters_are_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Random-looking keys, as clients' idempotency keys are.
        let key = |n: u32| format!("k-{:08x}", n.wrapping_mul(2_654_435_761)).into_bytes();
        let value = |n: u32| u64::from(n).to_be_bytes();
        let mut whole_file = BlockBasedOptions::default();
        whole_file.set_bloom_filter(10.0, false);
        whole_file.set_index_type(BlockBasedIndexType::BinarySearch);
        let mut idempotency = Options::default();
        idempotency.set_level_compaction_dynamic_level_bytes(true);
        idempotency.set_block_based_table_factory(&whole_file);
        write_as_an_earlier_build(dir.path(), CF_IDEMPOTENCY, &idempotency, |n| {
            (key(n), value(n).to_vec())
        });

        let db = open(dir.path(), 1 << 20, ValueForm::Plain).expect("the store opens");
        let cf = db.cf_handle(CF_IDEMPOTENCY).expect("idempotency");
        let look_up_all = |db: &DB| {
            for n in 0..4_000u32 {
                let found = db.get_cf(cf, key(n)).expect("get");
                assert_eq!(found.as_deref(), Some(&value(n)[..]), "entry {n}");
            }
            for n in 4_000..5_000u32 {
                assert_eq!(db.get_cf(cf, key(n)).expect("get"), None, "absent {n}");
            }
        };
        let partitioned = |db: &DB| {
            db.property_value_cf(cf, "rocksdb.aggregated-table-properties")
                .expect("property")
                .unwrap_or_default()
                .contains("# index partitions=")
        };
        assert!(
            !partitioned(&db),
            "the files were written with whole indexes"
        );
        look_up_all(&db);
        db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        assert!(partitioned(&db), "compaction rewrote them partitioned");
        look_up_all(&db);
    }

    #[test]
    fn sealed_column_families_are_not_compressed_only_when_values_are_sealed() {
        let sealed = tempfile::tempdir().expect("tempdir");
        drop(open(sealed.path(), 1 << 20, ValueForm::Sealed).expect("store"));
        let none = ("kNoCompression".to_owned(), "kNoCompression".to_owned());
        let compressed = ("kLZ4Compression".to_owned(), "kZSTD".to_owned());
        assert_eq!(recorded_compression(sealed.path(), CF_EVENTS), none);
        assert_eq!(recorded_compression(sealed.path(), CF_AGGREGATES), none);
        // Stream entries are never sealed: still worth compressing.
        assert_eq!(recorded_compression(sealed.path(), CF_STREAMS), compressed);

        let plain = tempfile::tempdir().expect("tempdir");
        drop(open(plain.path(), 1 << 20, ValueForm::Plain).expect("store"));
        assert_eq!(recorded_compression(plain.path(), CF_EVENTS), compressed);
    }
}
