//! Tiered shape: what compacting `streams` costs per entry as it grows, with the store's
//! own options, and how many sorted runs a stream scan then seeks in.
//!
//! It opens a fresh store with `store::open`'s options (through `open_raw_store`) and writes
//! only `streams` entries, keyed as the engine keys them (aggregate, then version, over
//! 10,000 aggregates in a fixed pseudo-random order, as 32 appending clients produce), and
//! flushes `streams` every `--flush-every` entries: the server's flushes are atomic across
//! column families and come when `events` fills its memtable, ~30,000 appends apart. Then
//! it prints, from RocksDB's LOG, the compactions' CPU and the records they rewrote per
//! entry, over the whole load and over its last million entries (after the earlier
//! compactions finished), the largest single compaction, and the sorted runs left; then
//! the time to read 10-entry pages of random aggregates from random versions.
//!
//! `--runs-trigger N` changes `level0_file_num_compaction_trigger` of `streams` after opening
//! (a mutable option), to compare what a different number of runs would cost.
//!
//! `cargo run -p eventdbx-bench --bin tiered_shape -- [--entries N] [--flush-every N]
//! [--runs-trigger N] [--dir PATH]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eventdbx::engine::keys::{versioned_key, CF_STREAMS};
use eventdbx::engine::options::DEFAULT_BLOCK_CACHE_BYTES;
use eventdbx::engine::{open_raw_store, sorted_runs};
use eventdbx_bench::{parse_flag, AGGREGATES};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};

/// Entries per write: large enough that the writes cost little beside the compactions.
const ENTRIES_PER_BATCH: usize = 500;
/// Entries counted apart at the end of the load: the steady cost at the final size.
const LAST_ENTRIES: u64 = 1_000_000;
/// How long no compaction may run before the store counts as settled.
const SETTLED_AFTER: Duration = Duration::from_secs(1);
/// Pages read after the load.
const PAGES_READ: u64 = 20_000;
/// Entries per page read (as `bench/pgbench/stream.pgbench` reads).
const PAGE_ENTRIES: usize = 10;

struct Args {
    entries: u64,
    flush_every: u64,
    runs_trigger: Option<u32>,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        entries: 10_000_000,
        flush_every: 30_000,
        runs_trigger: None,
        dir: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let value = iter.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--entries" => args.entries = parse_flag("--entries", &value)?,
            "--flush-every" => args.flush_every = parse_flag("--flush-every", &value)?,
            "--runs-trigger" => args.runs_trigger = Some(parse_flag("--runs-trigger", &value)?),
            "--dir" => args.dir = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.entries <= LAST_ENTRIES || args.flush_every == 0 {
        return Err(format!(
            "--entries must exceed {LAST_ENTRIES} and --flush-every be positive"
        ));
    }
    Ok(args)
}

/// Compactions finished so far, from RocksDB's LOG: (count, CPU µs, input records, largest
/// input).
#[derive(Default, Clone, Copy)]
struct Compactions {
    count: u64,
    cpu_micros: u64,
    input_records: u64,
    largest_input: u64,
}

fn compactions(dir: &Path) -> Compactions {
    let log = std::fs::read_to_string(dir.join("LOG")).unwrap_or_default();
    let field = |line: &str, name: &str| -> u64 {
        line.split(&format!("\"{name}\": "))
            .nth(1)
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut totals = Compactions::default();
    for line in log.lines().filter(|l| l.contains("compaction_finished")) {
        let input = field(line, "num_input_records");
        totals.count += 1;
        totals.cpu_micros += field(line, "compaction_time_cpu_micros");
        totals.input_records += input;
        totals.largest_input = totals.largest_input.max(input);
    }
    totals
}

/// Waits until no compaction has run for [`SETTLED_AFTER`]; RocksDB's pending flag can
/// stay set while its picker finds nothing to do, so it is not waited on.
fn settle(db: &DB) {
    let mut idle_since = Instant::now();
    while idle_since.elapsed() < SETTLED_AFTER {
        let running = db
            .property_int_value("rocksdb.num-running-compactions")
            .ok()
            .flatten()
            .unwrap_or(0);
        if running > 0 {
            idle_since = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// xorshift64: a fixed sequence, so every invocation writes the same entries.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn aggregate_id(n: u64) -> String {
    format!("order-{n}")
}

fn run(args: &Args) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().join("store"));
    let db = open_raw_store(&dir, DEFAULT_BLOCK_CACHE_BYTES, false).map_err(|e| e.to_string())?;
    let streams = db.cf_handle(CF_STREAMS).ok_or("no streams column family")?;
    if let Some(trigger) = args.runs_trigger {
        db.set_options_cf(
            streams,
            &[("level0_file_num_compaction_trigger", &trigger.to_string())],
        )
        .map_err(|e| e.to_string())?;
    }
    // Durability is not what this measures: the WAL is written but not synced. (The store
    // recycles WAL files, which rules out skipping the WAL.)
    let write = WriteOptions::default();

    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut versions = vec![0u64; AGGREGATES as usize];
    let mut batch = WriteBatch::default();
    let mut before_last = Compactions::default();
    let started = Instant::now();
    for n in 0..args.entries {
        let aggregate = next(&mut state) % AGGREGATES;
        let version = &mut versions[aggregate as usize];
        *version += 1;
        let key = versioned_key("order", &aggregate_id(aggregate), *version);
        batch.put_cf(streams, key, n.to_be_bytes());
        if batch.len() == ENTRIES_PER_BATCH || (n + 1) % args.flush_every == 0 {
            db.write_opt(std::mem::take(&mut batch), &write)
                .map_err(|e| e.to_string())?;
        }
        if (n + 1) % args.flush_every == 0 {
            db.flush_cf(streams).map_err(|e| e.to_string())?;
        }
        if n + 1 == args.entries - LAST_ENTRIES {
            settle(&db);
            before_last = compactions(&dir);
        }
    }
    db.write_opt(batch, &write).map_err(|e| e.to_string())?;
    db.flush_cf(streams).map_err(|e| e.to_string())?;
    settle(&db);
    let loaded = started.elapsed();
    let all = compactions(&dir);
    let entries = args.entries as f64;
    let last = LAST_ENTRIES as f64;
    println!(
        "{} entries, a flush every {}, compaction at {} runs: loaded and settled in {:.1} s",
        args.entries,
        args.flush_every,
        args.runs_trigger
            .map_or("the store's".to_owned(), |t| t.to_string()),
        loaded.as_secs_f64()
    );
    println!(
        "  compactions: {}, {:.1} s CPU; per entry {:.2} µs, {:.1} rewrites; largest {} records",
        all.count,
        all.cpu_micros as f64 / 1e6,
        all.cpu_micros as f64 / entries,
        all.input_records as f64 / entries,
        all.largest_input
    );
    println!(
        "  the last {LAST_ENTRIES}: per entry {:.2} µs, {:.1} rewrites",
        (all.cpu_micros - before_last.cpu_micros) as f64 / last,
        (all.input_records - before_last.input_records) as f64 / last
    );
    println!(
        "  sorted runs left: {}",
        sorted_runs(&db, CF_STREAMS).map_err(|e| e.to_string())?
    );

    let started = Instant::now();
    let mut read_entries = 0u64;
    for _ in 0..PAGES_READ {
        let aggregate = next(&mut state) % AGGREGATES;
        let id = aggregate_id(aggregate);
        let top = versions[aggregate as usize].max(1);
        let from = (next(&mut state) >> 20) % top;
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(versioned_key("order", &id, u64::MAX));
        let start = versioned_key("order", &id, from + 1);
        let page = db.iterator_cf_opt(
            streams,
            read,
            IteratorMode::From(&start, Direction::Forward),
        );
        for entry in page.take(PAGE_ENTRIES) {
            entry.map_err(|e| e.to_string())?;
            read_entries += 1;
        }
    }
    println!(
        "  reads: {:.1} µs per page of up to {PAGE_ENTRIES} ({read_entries} entries in {PAGES_READ} pages)",
        started.elapsed().as_secs_f64() * 1e6 / PAGES_READ as f64
    );
    Ok(())
}

fn main() {
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => {}
        Err(message) => {
            eprintln!("tiered_shape: {message}");
            std::process::exit(1);
        }
    }
}
