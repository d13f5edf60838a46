//! Engine benchmark: durable appends per second with 1 and 32 writers (256-byte payloads),
//! the disk's fdatasync rate as the floor, and current-state read latency at 10 and
//! 100,000 versions. Prints medians of several runs as a Markdown table.
//!
//! `cargo run -p eventdbx-bench --bin engine_bench -- [--runs N] [--seconds S] [--dir PATH]
//! [--writers-only]`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eventdbx::engine::{AppendRequest, Engine, EngineOptions, Issuer, NewEvent};
use serde_json::{Map, Value};

const PAYLOAD_BYTES: usize = 256;
const AGGREGATES: u64 = 10_000;
const LONG_HISTORY: u64 = 100_000;
const READS: usize = 20_000;

struct Args {
    runs: usize,
    seconds: f64,
    dir: Option<PathBuf>,
    /// Only the 32-writer phase (for profiling).
    writers_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 3,
        seconds: 5.0,
        dir: None,
        writers_only: false,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        if flag == "--writers-only" {
            args.writers_only = true;
            continue;
        }
        let value = iter.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => args.runs = value.parse().map_err(|e| format!("--runs: {e}"))?,
            "--seconds" => args.seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--dir" => args.dir = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn payload(n: u64) -> Map<String, Value> {
    // A 256-byte JSON object: a counter plus padding.
    let mut map = Map::new();
    map.insert("n".into(), Value::from(n));
    let used = serde_json::to_string(&map).map(|s| s.len()).unwrap_or(0) + r#","pad":"""#.len();
    map.insert(
        "pad".into(),
        Value::from("x".repeat(PAYLOAD_BYTES.saturating_sub(used))),
    );
    map
}

fn issuer() -> Issuer {
    Issuer {
        group: "bench".into(),
        user: "bench".into(),
    }
}

fn open(dir: &Path) -> Result<Engine, String> {
    Engine::open(EngineOptions::new(dir)).map_err(|e| e.to_string())
}

fn fdatasync_rate(dir: &Path, seconds: f64) -> Result<f64, String> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let block = [7u8; 4096];
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut syncs = 0u64;
    while Instant::now() < deadline {
        file.write_all(&block).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
        syncs += 1;
    }
    let rate = syncs as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    Ok(rate)
}

fn append_rate(engine: &Engine, writers: usize, seconds: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut done = 0u64;
                let mut n = w as u64;
                while Instant::now() < deadline {
                    let id = format!("agg-{}", n % AGGREGATES);
                    let request = AppendRequest {
                        events: vec![NewEvent::new("bench", id, "happened", payload(n))],
                        idempotency_key: None,
                        issued_by: issuer(),
                    };
                    if engine.append(request).is_ok() {
                        done += 1;
                    }
                    n += writers as u64 * 7919;
                }
                done
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

fn build_history(engine: &Engine, id: &str, versions: u64) -> Result<(), String> {
    let mut written = 0;
    while written < versions {
        let batch = (versions - written).min(1_000);
        let events = (0..batch)
            .map(|i| NewEvent::new("history", id, "happened", payload(written + i)))
            .collect();
        engine
            .append(AppendRequest {
                events,
                idempotency_key: None,
                issued_by: issuer(),
            })
            .map_err(|e| e.to_string())?;
        written += batch;
    }
    Ok(())
}

fn read_latency_micros(engine: &Engine, id: &str) -> Result<f64, String> {
    let mut samples = Vec::with_capacity(READS);
    for _ in 0..READS {
        let started = Instant::now();
        let state = engine.aggregate("history", id).map_err(|e| e.to_string())?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        if state.is_none() {
            return Err(format!("{id} missing"));
        }
    }
    Ok(median(&mut samples))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn main() {
    if let Err(err) = run() {
        eprintln!("engine_bench: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let base = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            tempfile::tempdir_in(dir).map_err(|e| e.to_string())?
        }
        None => tempfile::tempdir().map_err(|e| e.to_string())?,
    };
    let (mut floor, mut one, mut many, mut short, mut long) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let dir = base.path().join(format!("run-{run}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        floor.push(fdatasync_rate(&dir, args.seconds.min(3.0))?);
        let engine = open(&dir.join("data"))?;
        if args.writers_only {
            let rate = append_rate(&engine, 32, args.seconds);
            eprintln!("run {run}: 32 writers {rate:.0}/s");
            engine.shutdown();
            continue;
        }
        one.push(append_rate(&engine, 1, args.seconds));
        many.push(append_rate(&engine, 32, args.seconds));
        build_history(&engine, "short", 10)?;
        build_history(&engine, "long", LONG_HISTORY)?;
        short.push(read_latency_micros(&engine, "short")?);
        long.push(read_latency_micros(&engine, "long")?);
        eprintln!(
            "run {run}: fdatasync/s {:.0}, 1 writer {:.0}/s, 32 writers {:.0}/s, read@10 {:.1}us, read@100k {:.1}us",
            floor[run], one[run], many[run], short[run], long[run]
        );
        engine.shutdown();
    }
    if args.writers_only {
        return Ok(());
    }
    let (floor, one, many) = (median(&mut floor), median(&mut one), median(&mut many));
    let (short, long) = (median(&mut short), median(&mut long));
    println!("| measure (median of {} runs) | value |", args.runs);
    println!("| --- | --- |");
    println!("| fdatasync/s on this disk (floor) | {floor:.0} |");
    println!("| durable appends/s, 1 writer | {one:.0} |");
    println!("| durable appends/s, 32 writers | {many:.0} |");
    println!("| 32 writers / 1 writer | {:.1}x |", many / one);
    println!("| 1 writer / fdatasync floor | {:.2} |", one / floor);
    println!("| current-state read, 10 versions | {short:.1} µs |");
    println!("| current-state read, 100,000 versions | {long:.1} µs |");
    Ok(())
}
