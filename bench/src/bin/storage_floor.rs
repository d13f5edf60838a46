//! Storage floor: what RocksDB alone, opened with EventDBX's own options, costs per durable
//! append of the shape the engine writes, with nothing of EventDBX's on the path (no SQL,
//! no pgwire, no JSON, no schema, no Merkle hashing, no sealing, no commit queue).
//!
//! The store is first filled through the real engine (`--seed-events`, 256-byte payloads
//! over 10,000 aggregates, encrypted or not), so values, files and levels are what the
//! `bench/run.sh` harness sees. Then, with the engine closed, each phase writes for
//! `--seconds`:
//!
//! - `groups of G` (one thread): each synced `WriteBatch` holds G appends, each one
//!   `events` value, one `streams` entry and one `aggregates` record (values copied from the
//!   seeded store, so they compress as the real ones do), plus the `meta` counters: what the
//!   engine's committer writes for a group of G single-event appends, minus snapshots.
//! - `G threads, own writes`: G threads each write their own one-append batch, synced;
//!   RocksDB's write groups share the WAL sync between them.
//! - the same phases with `+read`: one point read of the aggregate's record per append,
//!   as an engine that keeps no state in memory must do to check the expected version.
//!
//! For each it prints appends/s and the process's CPU time per append (every thread,
//! RocksDB's flushes and compactions included: the clock runs on after the phase until no
//! flush or compaction is pending or running). An append through the server costs at least
//! this plus a round trip, which is why this bounds the appends/s any engine on this store
//! can reach over the wire on this machine.
//!
//! `cargo run -p eventdbx-bench --bin storage_floor -- [--runs N] [--seconds S]
//! [--seed-events N] [--encryption on|off] [--dir PATH] [--phases ID,ID,...]`
//!
//! `--phases` runs only the named phases (ids in [`PHASES`]); `bench/run.sh --bound` runs
//! `groups-32` in every run of the side-by-side harness.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventdbx::engine::keys::{
    aggregate_key, event_key, versioned_key, CF_AGGREGATES, CF_EVENTS, CF_META, CF_STREAMS,
    META_COUNTERS,
};
use eventdbx::engine::options::DEFAULT_BLOCK_CACHE_BYTES;
use eventdbx::engine::{background_work, open_raw_store, AppendRequest, NewEvent};
use eventdbx_bench::{issuer, median, open_engine, parse_flag, payload, AGGREGATES};
use rocksdb::{ColumnFamily, WriteBatch, WriteOptions, DB};

/// Stored values sampled per column family to copy into the measured writes.
const SAMPLED_VALUES: usize = 2_000;
/// Longest wait for RocksDB's background work after a phase; past it the phase is reported
/// with the CPU counted so far and marked.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// Clock ticks per second of `/proc/self/stat`'s times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;
/// Writers in the seeding phase: enough for group commit to fill the store quickly.
const SEED_WRITERS: u64 = 32;

/// One measured phase of a run.
struct Phase {
    /// Its name for `--phases`.
    id: &'static str,
    /// Its name in the output.
    name: &'static str,
    shape: Shape,
    /// Whether each append also reads the aggregate's record.
    read: bool,
}

/// Every phase, in the order a run measures them.
const PHASES: [Phase; 6] = [
    Phase {
        id: "groups-1",
        name: "groups of 1",
        shape: Shape::Groups(1),
        read: false,
    },
    Phase {
        id: "groups-32",
        name: "groups of 32",
        shape: Shape::Groups(32),
        read: false,
    },
    Phase {
        id: "groups-32-read",
        name: "groups of 32 +read",
        shape: Shape::Groups(32),
        read: true,
    },
    Phase {
        id: "threads-32",
        name: "32 threads, own writes",
        shape: Shape::Threads(32),
        read: false,
    },
    Phase {
        id: "threads-32-read",
        name: "32 threads, own writes +read",
        shape: Shape::Threads(32),
        read: true,
    },
    Phase {
        id: "groups-256",
        name: "groups of 256",
        shape: Shape::Groups(256),
        read: false,
    },
];

struct Args {
    runs: usize,
    seconds: f64,
    seed_events: u64,
    encrypted: bool,
    dir: Option<PathBuf>,
    /// The phases to measure, in [`PHASES`]' order.
    phases: Vec<&'static Phase>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 3,
        seconds: 5.0,
        seed_events: 100_000,
        encrypted: true,
        dir: None,
        phases: PHASES.iter().collect(),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let value = iter.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => args.runs = parse_flag("--runs", &value)?,
            "--seconds" => args.seconds = parse_flag("--seconds", &value)?,
            "--seed-events" => args.seed_events = parse_flag("--seed-events", &value)?,
            "--encryption" => {
                args.encrypted = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--encryption: on or off, not {other}")),
                }
            }
            "--dir" => args.dir = Some(PathBuf::from(value)),
            "--phases" => args.phases = parse_phases(&value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.runs == 0 || args.seconds <= 0.0 {
        return Err("--runs and --seconds must be positive".into());
    }
    Ok(args)
}

/// The phases named in a comma-separated list of ids, in [`PHASES`]' order.
fn parse_phases(list: &str) -> Result<Vec<&'static Phase>, String> {
    let ids: Vec<&str> = list.split(',').map(str::trim).collect();
    if let Some(unknown) = ids
        .iter()
        .find(|id| !PHASES.iter().any(|phase| phase.id == **id))
    {
        let known: Vec<&str> = PHASES.iter().map(|phase| phase.id).collect();
        return Err(format!(
            "--phases: no phase {unknown:?}; the phases are {}",
            known.join(", ")
        ));
    }
    Ok(PHASES
        .iter()
        .filter(|phase| ids.contains(&phase.id))
        .collect())
}

/// Fills a fresh store in `dir` through the engine, then closes it.
fn seed(dir: &Path, events: u64, encrypted: bool) -> Result<(), String> {
    let engine = open_engine(dir, encrypted)?;
    let next = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..SEED_WRITERS)
        .map(|_| {
            let engine = engine.clone();
            let next = Arc::clone(&next);
            std::thread::spawn(move || -> Result<(), String> {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= events {
                        return Ok(());
                    }
                    let id = format!("agg-{}", n % AGGREGATES);
                    engine
                        .append(AppendRequest {
                            events: vec![NewEvent::new("bench", id, "happened", payload(n))],
                            idempotency_key: None,
                            issued_by: issuer(),
                        })
                        .map_err(|e| e.to_string())?;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().map_err(|_| "a seeding writer panicked")??;
    }
    drop(engine);
    Ok(())
}

/// Stored values to write again, per column family.
struct Samples {
    events: Vec<Vec<u8>>,
    aggregates: Vec<Vec<u8>>,
    counters: Vec<u8>,
}

fn sample_values(db: &DB, name: &str) -> Result<Vec<Vec<u8>>, String> {
    let cf = db
        .cf_handle(name)
        .ok_or(format!("no column family {name}"))?;
    let mut iter = db.raw_iterator_cf(cf);
    iter.seek_to_first();
    let mut values = Vec::new();
    while let Some(value) = iter.value() {
        values.push(value.to_vec());
        if values.len() == SAMPLED_VALUES {
            break;
        }
        iter.next();
    }
    iter.status().map_err(|e| e.to_string())?;
    if values.is_empty() {
        return Err(format!("the seeded store has no {name} values"));
    }
    Ok(values)
}

fn samples(db: &DB) -> Result<Samples, String> {
    let meta = db.cf_handle(CF_META).ok_or("no meta column family")?;
    let counters = db
        .get_cf(meta, META_COUNTERS)
        .map_err(|e| e.to_string())?
        .ok_or("the seeded store has no counters")?;
    Ok(Samples {
        events: sample_values(db, CF_EVENTS)?,
        aggregates: sample_values(db, CF_AGGREGATES)?,
        counters,
    })
}

fn mean_len(values: &[Vec<u8>]) -> f64 {
    values.iter().map(Vec::len).sum::<usize>() as f64 / values.len().max(1) as f64
}

/// The process's user + system CPU time so far, in seconds (every thread).
fn process_cpu_seconds() -> Result<f64, String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    // Fields after the parenthesized command name; utime and stime are the 14th and 15th.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("bad stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<f64, String> {
        fields
            .get(index)
            .ok_or("short stat")?
            .parse::<f64>()
            .map_err(|e| e.to_string())
    };
    // `after_name` starts at field 3 (state), so field N is at index N - 3.
    Ok((ticks(14 - 3)? + ticks(15 - 3)?) / TICKS_PER_SECOND)
}

/// Waits until RocksDB has no flush or compaction pending or running; false on timeout.
fn settle(db: &DB) -> Result<bool, String> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    let cfs = [CF_EVENTS, CF_STREAMS, CF_AGGREGATES, CF_META];
    while background_work(db, &cfs).map_err(|e| e.to_string())? != 0 {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

/// Where the measured writes go: fresh event ids after the seeded ones, fresh stream
/// versions, and a cheap deterministic spread over the aggregates.
struct Cursor {
    next_event_id: AtomicU64,
    next_version: AtomicU64,
}

impl Cursor {
    fn new(db: &DB) -> Result<Self, String> {
        let events = db.cf_handle(CF_EVENTS).ok_or("no events column family")?;
        let mut iter = db.raw_iterator_cf(events);
        iter.seek_to_last();
        let last = iter
            .key()
            .and_then(|key| key.try_into().ok())
            .map_or(0, u64::from_be_bytes);
        Ok(Self {
            next_event_id: AtomicU64::new(last + 1),
            // Above any seeded version, so no stream entry is overwritten.
            next_version: AtomicU64::new(1 << 40),
        })
    }
}

/// The column families a measured write touches, looked up once per writer thread (the
/// lookup takes a lock and searches a map: not RocksDB's cost per append, so kept out of
/// the measured loop).
struct Families<'a> {
    events: &'a ColumnFamily,
    streams: &'a ColumnFamily,
    aggregates: &'a ColumnFamily,
    meta: &'a ColumnFamily,
}

impl<'a> Families<'a> {
    fn of(db: &'a DB) -> Result<Self, String> {
        let family = |name: &str| db.cf_handle(name).ok_or(format!("no {name} column family"));
        Ok(Self {
            events: family(CF_EVENTS)?,
            streams: family(CF_STREAMS)?,
            aggregates: family(CF_AGGREGATES)?,
            meta: family(CF_META)?,
        })
    }
}

/// Adds one append (and its point read, when `read`) to `batch`; `n` picks the aggregate
/// and the sampled values.
fn add_append(
    db: &DB,
    families: &Families<'_>,
    batch: &mut WriteBatch,
    samples: &Samples,
    cursor: &Cursor,
    n: u64,
    read: bool,
) -> Result<(), String> {
    let id = format!("agg-{}", n.wrapping_mul(7919) % AGGREGATES);
    let record_key = aggregate_key("bench", &id);
    if read {
        let found = db
            .get_pinned_cf(families.aggregates, &record_key)
            .map_err(|e| e.to_string())?;
        std::hint::black_box(found.map(|value| value.len()));
    }
    let event_id = cursor.next_event_id.fetch_add(1, Ordering::Relaxed);
    let version = cursor.next_version.fetch_add(1, Ordering::Relaxed);
    let pick = n as usize;
    batch.put_cf(
        families.events,
        event_key(event_id),
        &samples.events[pick % samples.events.len()],
    );
    batch.put_cf(
        families.streams,
        versioned_key("bench", &id, version),
        event_id.to_be_bytes(),
    );
    batch.put_cf(
        families.aggregates,
        record_key,
        &samples.aggregates[pick % samples.aggregates.len()],
    );
    Ok(())
}

/// One phase's result.
struct Outcome {
    appends_per_second: f64,
    cpu_micros_per_append: f64,
    settled: bool,
}

#[derive(Clone, Copy)]
enum Shape {
    /// One thread, batches of this many appends.
    Groups(u64),
    /// This many threads, one append per batch each.
    Threads(u64),
}

fn run_phase(
    db: &Arc<DB>,
    samples: &Arc<Samples>,
    cursor: &Arc<Cursor>,
    shape: Shape,
    read: bool,
    seconds: f64,
) -> Result<Outcome, String> {
    settle(db)?;
    let cpu_before = process_cpu_seconds()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let (threads, per_batch) = match shape {
        Shape::Groups(size) => (1, size),
        Shape::Threads(count) => (count, 1),
    };
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let db = Arc::clone(db);
            let samples = Arc::clone(samples);
            let cursor = Arc::clone(cursor);
            std::thread::spawn(move || -> Result<u64, String> {
                let families = Families::of(&db)?;
                let mut sync = WriteOptions::default();
                sync.set_sync(true);
                sync.disable_wal(false);
                let mut n = thread * 1_000_003;
                let mut appends = 0u64;
                while Instant::now() < deadline {
                    let mut batch = WriteBatch::default();
                    for _ in 0..per_batch {
                        add_append(&db, &families, &mut batch, &samples, &cursor, n, read)?;
                        n += 1;
                    }
                    batch.put_cf(families.meta, META_COUNTERS, &samples.counters);
                    db.write_opt(batch, &sync).map_err(|e| e.to_string())?;
                    appends += per_batch;
                }
                Ok(appends)
            })
        })
        .collect();
    let mut appends = 0u64;
    for worker in workers {
        appends += worker.join().map_err(|_| "a writer panicked")??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let settled = settle(db)?;
    let cpu = process_cpu_seconds()? - cpu_before;
    Ok(Outcome {
        appends_per_second: appends as f64 / elapsed,
        cpu_micros_per_append: cpu * 1e6 / appends.max(1) as f64,
        settled,
    })
}

fn main() {
    if let Err(err) = run() {
        eprintln!("storage_floor: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let phases = &args.phases;
    let mut rates = vec![Vec::new(); phases.len()];
    let mut costs = vec![Vec::new(); phases.len()];
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for run in 0..args.runs {
        let scratch = match &args.dir {
            Some(dir) => tempfile::tempdir_in(dir),
            None => tempfile::tempdir(),
        }
        .map_err(|e| e.to_string())?;
        let dir = scratch.path().join("store");
        let seeding = Instant::now();
        seed(&dir, args.seed_events, args.encrypted)?;
        // The engine is closed (its committer joined) when `seed` returns, so the store is
        // free to open again.
        let db = Arc::new(
            open_raw_store(&dir, DEFAULT_BLOCK_CACHE_BYTES, args.encrypted)
                .map_err(|e| format!("could not reopen the seeded store: {e}"))?,
        );
        let samples = Arc::new(samples(&db)?);
        let cursor = Arc::new(Cursor::new(&db)?);
        eprintln!(
            "run {run}: seeded {} events in {:.1} s; mean stored value: events {:.0} B, \
             aggregates {:.0} B",
            args.seed_events,
            seeding.elapsed().as_secs_f64(),
            mean_len(&samples.events),
            mean_len(&samples.aggregates),
        );
        for (index, phase) in phases.iter().enumerate() {
            let outcome = run_phase(
                &db,
                &samples,
                &cursor,
                phase.shape,
                phase.read,
                args.seconds,
            )?;
            eprintln!(
                "run {run}: {}: {:.0} appends/s, {:.1} µs CPU per append{}",
                phase.name,
                outcome.appends_per_second,
                outcome.cpu_micros_per_append,
                if outcome.settled {
                    ""
                } else {
                    " (background work still running at the settle limit)"
                }
            );
            rates[index].push(outcome.appends_per_second);
            costs[index].push(outcome.cpu_micros_per_append);
        }
    }
    println!(
        "| RocksDB alone, EventDBX's options, {} store, {} seeded events, {} cores (median of {} runs, {} s each) | appends/s | CPU µs per append | appends/s if CPU-bound on every core |",
        if args.encrypted { "encrypted" } else { "plaintext" },
        args.seed_events,
        cores,
        args.runs,
        args.seconds
    );
    println!("| --- | --- | --- | --- |");
    for (index, phase) in phases.iter().enumerate() {
        let cost = median(&mut costs[index]);
        println!(
            "| {} | {:.0} | {:.1} | {:.0} |",
            phase.name,
            median(&mut rates[index]),
            cost,
            cores as f64 * 1e6 / cost
        );
    }
    Ok(())
}
