//! Crash test: a child process appends with many concurrent writers and prints every
//! acknowledgment; the parent kills it with SIGKILL at random moments, many times, and after
//! each kill checks that every acknowledged event survived byte for byte, versions are
//! gap-free, the outbox is complete and ordered, and every aggregate verifies.
//!
//! Every other round the child also flushes the memtables every few milliseconds, so the
//! WAL switches files constantly and RocksDB reuses old WAL files (`recycle_log_file_num`):
//! those kills land in a recycled WAL whose tail still holds records from its previous use,
//! which recovery must tell apart from acknowledged writes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use eventdbx::engine::{AppendRequest, Engine, EngineOptions, Issuer, NewEvent};
use rand::Rng;
use serde_json::{json, Map, Value};

const CHILD_DIR_ENV: &str = "EVENTDBX_CRASH_CHILD_DIR";
/// Set for rounds whose child flushes the memtables continuously (see the module doc).
const CHILD_ROTATE_WAL_ENV: &str = "EVENTDBX_CRASH_ROTATE_WAL";
/// Pause between forced flushes in a rotating round: several WAL switches per round.
const ROTATE_EVERY: Duration = Duration::from_millis(25);
const ROUNDS: usize = 12;
const WRITERS: usize = 16;
const AGGREGATES: usize = 8;

fn options(dir: &str) -> EngineOptions {
    let mut options = EngineOptions::new(dir);
    options.default_snapshot_threshold = Some(5);
    options
}

/// The child side; run only by the parent below (hence ignored in a normal run).
#[test]
#[ignore = "spawned by crash_recovery_keeps_every_acknowledged_event"]
fn child_writer() {
    let dir = std::env::var(CHILD_DIR_ENV).expect("child needs its directory");
    let engine = Engine::open(options(&dir)).expect("child open");
    let out = std::sync::Arc::new(Mutex::new(std::io::stdout()));
    if std::env::var_os(CHILD_ROTATE_WAL_ENV).is_some() {
        let engine = engine.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(ROTATE_EVERY);
            flush_all_column_families(&engine);
        });
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let engine = engine.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                let mut rng = rand::rng();
                loop {
                    let mut events = Vec::new();
                    for _ in 0..rng.random_range(1..=2) {
                        let agg = rng.random_range(0..AGGREGATES);
                        let mut payload = Map::new();
                        payload.insert("writer".into(), json!(w));
                        payload.insert("marker".into(), Value::from(rng.random::<u64>()));
                        events.push(NewEvent::new(
                            "crash",
                            format!("agg-{agg}"),
                            "written",
                            payload,
                        ));
                    }
                    let request = AppendRequest {
                        events,
                        idempotency_key: None,
                        issued_by: Issuer {
                            group: "g".into(),
                            user: format!("w{w}"),
                        },
                    };
                    let outcome = engine.append(request).expect("append in child");
                    let mut lines = String::new();
                    for e in &outcome.events {
                        lines.push_str(&format!(
                            "ACK {} {} {} {}\n",
                            e.event_id,
                            e.aggregate_id,
                            e.version,
                            hex::encode(e.hash)
                        ));
                    }
                    let mut out = out.lock().expect("stdout lock");
                    out.write_all(lines.as_bytes()).expect("stdout");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for w in writers {
        let _ = w.join();
    }
}

/// Flushes every column family (atomically, as the store is configured), which switches the
/// WAL to a new or recycled file.
fn flush_all_column_families(engine: &Engine) {
    let db = engine.raw_db();
    let handles: Vec<_> = eventdbx::engine::keys::ALL_CFS
        .iter()
        .filter_map(|name| db.cf_handle(name))
        .collect();
    db.flush_cfs_opt(&handles, &rocksdb::FlushOptions::default())
        .expect("flush in child");
}

struct Ack {
    event_id: u64,
    aggregate_id: String,
    version: u64,
    hash: String,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.split_whitespace();
    (parts.next()? == "ACK").then_some(())?;
    Some(Ack {
        event_id: parts.next()?.parse().ok()?,
        aggregate_id: parts.next()?.to_owned(),
        version: parts.next()?.parse().ok()?,
        hash: parts.next()?.to_owned(),
    })
}

#[test]
fn crash_recovery_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path").to_owned();
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::rng();
    let mut all_acks: Vec<Ack> = Vec::new();
    let mut rounds_in_recycled_wal = 0;
    for round in 0..ROUNDS {
        let rotate = round % 2 == 1;
        let mut command = Command::new(&exe);
        if rotate {
            command.env(CHILD_ROTATE_WAL_ENV, "1");
        }
        let mut child = command
            .args([
                "--ignored",
                "--exact",
                "child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, &data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            // Only complete lines count: a line cut by the kill was never fully reported.
            while reader
                .read_until(b'\n', &mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                if line.ends_with(b"\n") {
                    if let Some(ack) = std::str::from_utf8(&line).ok().and_then(parse_ack) {
                        acks.push(ack);
                    }
                }
                line.clear();
            }
            acks
        });
        // Let the child open the store and get going, then kill it at a random moment.
        let started = Instant::now();
        let delay = Duration::from_millis(rng.random_range(150..700));
        while started.elapsed() < delay {
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().expect("SIGKILL child");
        let _ = child.wait();
        let acks = reader.join().expect("reader");
        // The child's RocksDB info log says when it switched to a recycled WAL file.
        let child_log = std::fs::read_to_string(dir.path().join("data").join("LOG"))
            .expect("child's RocksDB LOG");
        let recycled = child_log.contains("from recycle list");
        rounds_in_recycled_wal += usize::from(rotate && recycled);
        eprintln!(
            "round {round}: {} acknowledged events before SIGKILL (rotating WAL: {rotate}, \
             recycled a WAL file: {recycled})",
            acks.len()
        );
        all_acks.extend(acks);

        let engine = Engine::open(options(&data)).expect("reopen after kill");
        for ack in &all_acks {
            let event = engine
                .event(ack.event_id)
                .expect("read")
                .unwrap_or_else(|| panic!("acknowledged event {} lost", ack.event_id));
            assert_eq!(event.aggregate_id, ack.aggregate_id);
            assert_eq!(event.version, ack.version);
            assert_eq!(
                hex::encode(event.hash),
                ack.hash,
                "event {} changed",
                ack.event_id
            );
            assert_eq!(
                eventdbx::engine::merkle::leaf_hash(&event.canonical_bytes()),
                event.hash,
                "stored bytes of {} differ from what was acknowledged",
                ack.event_id
            );
        }
        let mut total = 0u64;
        for agg in 0..AGGREGATES {
            let id = format!("agg-{agg}");
            let Some(state) = engine.aggregate("crash", &id).expect("read") else {
                continue;
            };
            let events = engine
                .events_of("crash", &id, 0, usize::MAX, u64::MAX)
                .expect("events");
            assert_eq!(events.len() as u64, state.version, "{id}: history length");
            assert!(
                events
                    .iter()
                    .enumerate()
                    .all(|(i, e)| e.version == i as u64 + 1),
                "{id}: gap"
            );
            let report = engine
                .verify("crash", &id)
                .expect("verify")
                .expect("exists");
            assert!(report.ok(), "{report:?}");
            total += state.version;
        }
        let mut after = 0;
        let mut outbox = Vec::new();
        loop {
            let page = engine.read_outbox(after, 1000).expect("outbox");
            if page.events.is_empty() {
                break;
            }
            outbox.extend(page.events.iter().map(|e| e.event_id));
            after = page.next_after_event_id;
        }
        assert_eq!(
            outbox.len() as u64,
            total,
            "outbox holds every stored event"
        );
        assert!(outbox.windows(2).all(|w| w[0] < w[1]), "outbox ordered");
        assert_eq!(
            engine.stats().expect("stats").events,
            total,
            "counters survive the crash"
        );
    }
    assert!(
        rounds_in_recycled_wal > 0,
        "no rotating round reused a WAL file, so recovery from a recycled WAL went untested"
    );
    assert!(
        all_acks.len() > 100,
        "the child acknowledged too little to prove anything: {}",
        all_acks.len()
    );
}
