//! Engine benchmark: durable appends per second with 1 and 32 writers (256-byte payloads),
//! the disk's fdatasync rate as the floor, and current-state read latency at 10 and
//! 100,000 versions. Prints medians of several runs as a Markdown table.
//!
//! `cargo run -p eventdbx-bench --bin engine_bench -- [--runs N] [--seconds S] [--dir PATH]
//! [--writers-only] [--encryption off|on|both]`
//!
//! `--encryption on` opens every store with a random data key (encryption at rest);
//! `both` measures each run without and then with a key, on fresh stores, so the two
//! columns share the machine's conditions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eventdbx::engine::{AppendRequest, Engine, NewEvent};
use eventdbx_bench::{issuer, median, open_engine, parse_flag, payload, AGGREGATES};

const LONG_HISTORY: u64 = 100_000;
const READS: usize = 20_000;

struct Args {
    runs: usize,
    seconds: f64,
    dir: Option<PathBuf>,
    /// Only the 32-writer phase (for profiling).
    writers_only: bool,
    /// Which stores to measure: without a key (`false`), with one (`true`), in this order.
    modes: Vec<bool>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 3,
        seconds: 5.0,
        dir: None,
        writers_only: false,
        modes: vec![false],
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        if flag == "--writers-only" {
            args.writers_only = true;
            continue;
        }
        let value = iter.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => args.runs = parse_flag("--runs", &value)?,
            "--seconds" => args.seconds = parse_flag("--seconds", &value)?,
            "--dir" => args.dir = Some(PathBuf::from(value)),
            "--encryption" => {
                args.modes = match value.as_str() {
                    "off" => vec![false],
                    "on" => vec![true],
                    "both" => vec![false, true],
                    other => return Err(format!("--encryption: off, on or both, not {other}")),
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

/// One run's figures for one mode.
#[derive(Default)]
struct Samples {
    floor: Vec<f64>,
    one: Vec<f64>,
    many: Vec<f64>,
    short: Vec<f64>,
    long: Vec<f64>,
}

fn mode_name(encrypted: bool) -> &'static str {
    if encrypted {
        "encrypted"
    } else {
        "plaintext"
    }
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
    let mut samples: Vec<Samples> = args.modes.iter().map(|_| Samples::default()).collect();
    for run in 0..args.runs {
        for (&encrypted, s) in args.modes.iter().zip(samples.iter_mut()) {
            let mode = mode_name(encrypted);
            let dir = base.path().join(format!("run-{run}-{mode}"));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            s.floor.push(fdatasync_rate(&dir, args.seconds.min(3.0))?);
            let engine = open_engine(&dir.join("data"), encrypted)?;
            if args.writers_only {
                let rate = append_rate(&engine, 32, args.seconds);
                eprintln!("run {run} {mode}: 32 writers {rate:.0}/s");
                engine.shutdown();
                continue;
            }
            s.one.push(append_rate(&engine, 1, args.seconds));
            s.many.push(append_rate(&engine, 32, args.seconds));
            build_history(&engine, "short", 10)?;
            build_history(&engine, "long", LONG_HISTORY)?;
            s.short.push(read_latency_micros(&engine, "short")?);
            s.long.push(read_latency_micros(&engine, "long")?);
            eprintln!(
                "run {run} {mode}: fdatasync/s {:.0}, 1 writer {:.0}/s, 32 writers {:.0}/s, read@10 {:.1}us, read@100k {:.1}us",
                s.floor[run], s.one[run], s.many[run], s.short[run], s.long[run]
            );
            engine.shutdown();
        }
    }
    if args.writers_only {
        return Ok(());
    }
    let medians: Vec<[f64; 5]> = samples
        .iter_mut()
        .map(|s| {
            [
                median(&mut s.floor),
                median(&mut s.one),
                median(&mut s.many),
                median(&mut s.short),
                median(&mut s.long),
            ]
        })
        .collect();
    let header: Vec<&str> = args.modes.iter().map(|m| mode_name(*m)).collect();
    println!(
        "| measure (median of {} runs) | {} |",
        args.runs,
        header.join(" | ")
    );
    println!("| --- |{}", " --- |".repeat(header.len()));
    let row = |label: &str, cell: &dyn Fn(&[f64; 5]) -> String| {
        let cells: Vec<String> = medians.iter().map(cell).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    row("fdatasync/s on this disk (floor)", &|m| {
        format!("{:.0}", m[0])
    });
    row("durable appends/s, 1 writer", &|m| format!("{:.0}", m[1]));
    row("durable appends/s, 32 writers", &|m| format!("{:.0}", m[2]));
    row("32 writers / 1 writer", &|m| format!("{:.1}x", m[2] / m[1]));
    row("1 writer / fdatasync floor", &|m| {
        format!("{:.2}", m[1] / m[0])
    });
    row("current-state read, 10 versions", &|m| {
        format!("{:.1} µs", m[3])
    });
    row("current-state read, 100,000 versions", &|m| {
        format!("{:.1} µs", m[4])
    });
    Ok(())
}
