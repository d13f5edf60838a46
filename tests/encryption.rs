//! Encryption at rest: with a data key, no user byte reaches the data directory in the
//! clear (WAL, SST, MANIFEST, anything); without one the same bytes are there (so the scan
//! can fail). A wrong or missing key, a key on a plaintext store, a moved value and a
//! tampered ciphertext each fail loudly; verify means the same with and without a key; a
//! store can be rewritten plaintext → encrypted → rotated → plaintext.

mod support;

use std::path::{Path, PathBuf};

use eventdbx::config::SecretString;
use eventdbx::engine::seal::{rewrite_store, KeySpec};
use eventdbx::engine::{AppendRequest, Engine, EngineError, EngineOptions, Issuer, NewEvent};
use eventdbx::server::RestrictMode;
use serde_json::{json, Map, Value};
use support::TestServer;

/// Appears only in values (payloads, metadata, notes, states, snapshots, the schema
/// source), never in keys. Letters that JSON, ids and binary framing do not produce, so
/// LZ4 in plaintext SSTs stores its first occurrence literally.
const MARKER: &str = "Quokka7Zx9Marker";
/// `base64:` of the 32 bytes `0123456789abcdef0123456789abcdef`.
const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY_BYTES: &[u8] = b"0123456789abcdef0123456789abcdef";
const OTHER_KEY_B64: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";
const PASSPHRASE: &str = "correct horse battery staple";

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn spec(text: &str) -> KeySpec {
    KeySpec::parse(text).expect("key spec")
}

fn options(dir: &Path, key: Option<&str>) -> EngineOptions {
    let mut options = EngineOptions::new(dir);
    options.default_snapshot_threshold = Some(2);
    options.encryption = key.map(spec);
    options
}

fn open(dir: &Path, key: Option<&str>) -> Result<Engine, EngineError> {
    Engine::open(options(dir, key))
}

fn issuer() -> Issuer {
    Issuer {
        group: "ops".into(),
        user: "alice".into(),
    }
}

fn append(engine: &Engine, id: &str, n: u64, idempotency: Option<&str>) -> u64 {
    let mut event = NewEvent::new(
        "order",
        id,
        "changed",
        obj(json!({"n": n, "secret": MARKER})),
    );
    event.metadata = obj(json!({"trace": MARKER}));
    event.note = Some(MARKER.into());
    engine
        .append(AppendRequest {
            events: vec![event],
            idempotency_key: idempotency.map(str::to_owned),
            issued_by: issuer(),
        })
        .expect("append")
        .events[0]
        .event_id
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .expect("read")
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn has_suffix(paths: &[PathBuf], suffix: &str) -> bool {
    paths.iter().any(|p| p.to_string_lossy().ends_with(suffix))
}

/// Flushes every column family's memtable into SST files (atomically, as the store is
/// configured), so the scan sees SSTs as well as the WAL.
fn flush_all(engine: &Engine) {
    let db = engine.raw_db();
    let handles: Vec<_> = [
        "events",
        "streams",
        "aggregates",
        "snapshots",
        "idempotency",
        "meta",
    ]
    .iter()
    .map(|name| db.cf_handle(name).expect("cf"))
    .collect();
    let mut flush = rocksdb::FlushOptions::default();
    flush.set_wait(true);
    db.flush_cfs_opt(&handles, &flush).expect("flush");
}

/// Writes through the real server (SQL appends, a schema apply), stops it, and scans the
/// data directory: first as the server left it (WAL), then after a flush (SSTs). Returns
/// the files holding the marker in each scan.
async fn write_stop_and_scan(key: Option<&str>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let key_text = key.map(|k| format!("base64:{k}"));
    let configured = key_text.clone();
    let server = TestServer::start_configured(RestrictMode::Default, move |config| {
        config.data_encryption_key = configured.map(SecretString::new);
        config.snapshot_threshold = Some(2);
    })
    .await;
    let client = server.connect().await;
    let schema = format!(
        "# {MARKER}\naggregate order {{\n    field secret {{ type = \"text\" }}\n    field n {{ type = \"integer\" }}\n    event changed {{ fields = [\"secret\", \"n\"] }}\n}}\n"
    );
    client
        .query("CALL apply_schema($1)", &[&schema])
        .await
        .expect("apply schema");
    for n in 0..5i64 {
        client
            .query(
                "INSERT INTO events (aggregate_type, aggregate_id, event_type, payload, metadata, note, idempotency_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &"order",
                    &"o-1",
                    &"changed",
                    &json!({"n": n, "secret": MARKER}),
                    &json!({"trace": MARKER}),
                    &MARKER,
                    &format!("retry-{n}"),
                ],
            )
            .await
            .expect("insert");
    }
    let data_dir = server.workspace.data_dir();
    let _dir = server.stop_keep_dir().await;
    let before_flush = files_containing(&data_dir, MARKER.as_bytes());

    // Reopen with the same key: everything reads back, then lands in SST files.
    let engine = open(&data_dir, key_text.as_deref()).expect("reopen");
    let state = engine
        .aggregate("order", "o-1")
        .expect("read")
        .expect("exists");
    assert_eq!(state.version, 5);
    assert!(state.state_json.contains(MARKER));
    assert!(engine
        .verify("order", "o-1")
        .expect("verify")
        .expect("exists")
        .ok());
    flush_all(&engine);
    engine.shutdown();
    drop(engine);
    assert!(
        file_names(&data_dir).iter().any(|n| n.ends_with(".sst")),
        "the flush wrote SST files: {:?}",
        file_names(&data_dir)
    );
    let after_flush = files_containing(&data_dir, MARKER.as_bytes());
    if key.is_some() {
        for needle in [KEY_B64.as_bytes(), KEY_BYTES] {
            assert!(
                files_containing(&data_dir, needle).is_empty(),
                "key material in the data directory"
            );
        }
    }
    (before_flush, after_flush)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_no_user_byte_reaches_the_data_directory() {
    // Control: without a key the marker is in the WAL, and after a flush in the SSTs.
    let (wal, sst) = write_stop_and_scan(None).await;
    assert!(
        has_suffix(&wal, ".log"),
        "plaintext WAL holds the marker: {wal:?}"
    );
    assert!(
        has_suffix(&sst, ".sst"),
        "plaintext SSTs hold the marker: {sst:?}"
    );

    let (wal, sst) = write_stop_and_scan(Some(KEY_B64)).await;
    assert!(
        wal.is_empty(),
        "marker found with a key (WAL/MANIFEST): {wal:?}"
    );
    assert!(sst.is_empty(), "marker found with a key (SST): {sst:?}");
}

#[test]
fn a_missing_wrong_or_unexpected_key_fails_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sealed = dir.path().join("sealed");
    {
        let engine = open(&sealed, Some(&format!("base64:{KEY_B64}"))).expect("create");
        append(&engine, "o-1", 1, None);
    }
    let err = open(&sealed, None).expect_err("no key");
    assert!(matches!(err, EngineError::EncryptionKey(_)), "{err:?}");
    assert!(err.to_string().contains("is encrypted at rest"), "{err}");

    let err = open(&sealed, Some(&format!("base64:{OTHER_KEY_B64}"))).expect_err("wrong key");
    assert!(err.to_string().contains("key check failed"), "{err}");
    assert!(!err.to_string().contains(OTHER_KEY_B64), "{err}");

    let err = open(&sealed, Some(PASSPHRASE)).expect_err("passphrase for a raw key");
    assert!(err.to_string().contains("passphrase"), "{err}");

    // The right key still opens it, and the read-only probe agrees.
    let key = format!("base64:{KEY_B64}");
    eventdbx::engine::seal::check_key(&sealed, Some(&spec(&key))).expect("probe");
    assert!(eventdbx::engine::seal::check_key(&sealed, None).is_err());
    let engine = open(&sealed, Some(&key)).expect("right key");
    assert_eq!(engine.stats().expect("stats").events, 1);
    drop(engine);

    // A plaintext store with data refuses a key (its values would be misread as sealed)
    // and says how to proceed.
    let plain = dir.path().join("plain");
    {
        let engine = open(&plain, None).expect("create");
        append(&engine, "o-1", 1, None);
    }
    let err = open(&plain, Some(&key)).expect_err("key on plaintext");
    assert!(err.to_string().contains("unencrypted data"), "{err}");
    assert!(err.to_string().contains("dbx storage rekey"), "{err}");

    // A store with no user data yet may be given a key.
    let empty = dir.path().join("empty");
    drop(open(&empty, None).expect("create"));
    let engine = open(&empty, Some(&key)).expect("key on an empty store");
    append(&engine, "o-1", 1, None);
    drop(engine);
    assert!(open(&empty, None).is_err());
}

#[test]
fn a_passphrase_store_opens_only_with_its_passphrase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    {
        let engine = open(&data, Some(PASSPHRASE)).expect("create");
        append(&engine, "o-1", 1, None);
    }
    let err = open(&data, Some("correct horse battery stable")).expect_err("wrong passphrase");
    assert!(err.to_string().contains("key check failed"), "{err}");
    let err = open(&data, Some(&format!("base64:{KEY_B64}"))).expect_err("raw for passphrase");
    assert!(err.to_string().contains("passphrase"), "{err}");
    let engine = open(&data, Some(PASSPHRASE)).expect("reopen");
    assert_eq!(
        engine
            .aggregate("order", "o-1")
            .expect("read")
            .expect("exists")
            .version,
        1
    );
}

/// Copies the raw bytes stored at `from` to `to` in column family `cf`.
fn copy_raw(engine: &Engine, cf: &str, from: &[u8], to: &[u8]) {
    let db = engine.raw_db();
    let handle = db.cf_handle(cf).expect("cf");
    let bytes = db.get_cf(handle, from).expect("get").expect("stored");
    db.put_cf(handle, to, bytes).expect("put");
}

/// Flips one bit of the raw value at `key` in `cf`, `at` bytes from its end.
fn flip(engine: &Engine, cf: &str, key: &[u8], at: usize) {
    let db = engine.raw_db();
    let handle = db.cf_handle(cf).expect("cf");
    let mut bytes = db.get_cf(handle, key).expect("get").expect("stored");
    let index = bytes.len() - 1 - at;
    bytes[index] ^= 0x01;
    db.put_cf(handle, key, bytes).expect("put");
}

fn aggregate_key(id: &str) -> Vec<u8> {
    let mut key = b"order\0".to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

#[test]
fn a_moved_value_fails_loudly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(&dir.path().join("data"), Some(&format!("base64:{KEY_B64}"))).expect("open");
    let first = append(&engine, "o-1", 1, None);
    let second = append(&engine, "o-2", 2, None);

    // An event's sealed bytes copied over another event: opening it fails, nothing decodes.
    copy_raw(
        &engine,
        "events",
        &first.to_be_bytes(),
        &second.to_be_bytes(),
    );
    let err = engine.event(second).expect_err("moved event");
    assert!(
        matches!(err, EngineError::Tampered { cf: "events", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("moved"), "{err}");
    assert!(engine.event(first).expect("untouched").is_some());
    // Scans read what the files hold once an engine is opened on them; a running engine
    // answers its newest events from the opened tail, as they were committed.
    drop(engine);
    let engine =
        open(&dir.path().join("data"), Some(&format!("base64:{KEY_B64}"))).expect("reopen");
    assert!(
        engine.read_outbox(0, 10).is_err(),
        "the outbox refuses, never skips"
    );
    let report = engine
        .verify("order", "o-2")
        .expect("verify")
        .expect("exists");
    assert!(!report.ok());
    assert!(
        report.problems.iter().any(|p| p.contains("does not open")),
        "{report:?}"
    );

    // An aggregate record moved to another aggregate's key. A running engine answers the
    // records of the aggregates it used from memory, as they were committed or read
    // (engine/records.rs), so the files are read by an engine opened on them.
    copy_raw(
        &engine,
        "aggregates",
        &aggregate_key("o-1"),
        &aggregate_key("o-2"),
    );
    drop(engine);
    let engine =
        open(&dir.path().join("data"), Some(&format!("base64:{KEY_B64}"))).expect("reopen");
    assert!(matches!(
        engine.aggregate("order", "o-2"),
        Err(EngineError::Tampered {
            cf: "aggregates",
            ..
        })
    ));
    assert!(engine
        .aggregate("order", "o-1")
        .expect("untouched")
        .is_some());
}

#[test]
fn tampered_ciphertext_fails_loudly_never_as_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(&dir.path().join("data"), Some(&format!("base64:{KEY_B64}"))).expect("open");
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(append(&engine, "o-1", n, Some(&format!("key-{n}"))));
    }
    // A bit in the ciphertext body, in the tag, and in the nonce of three events.
    flip(&engine, "events", &ids[0].to_be_bytes(), 20);
    flip(&engine, "events", &ids[1].to_be_bytes(), 0);
    let len = engine
        .raw_db()
        .get_cf(
            engine.raw_db().cf_handle("events").expect("cf"),
            ids[2].to_be_bytes(),
        )
        .expect("get")
        .expect("stored")
        .len();
    flip(&engine, "events", &ids[2].to_be_bytes(), len - 3);
    for id in &ids[..3] {
        assert!(
            matches!(engine.event(*id), Err(EngineError::Tampered { .. })),
            "event {id}"
        );
    }
    assert!(engine.event(ids[3]).expect("untouched").is_some());
    assert!(engine.events_of("order", "o-1", 0, 10, u64::MAX).is_err());
    let report = engine
        .verify("order", "o-1")
        .expect("verify")
        .expect("exists");
    assert!(!report.ok());
    assert_eq!(
        report
            .problems
            .iter()
            .filter(|p| p.contains("does not open"))
            .count(),
        3,
        "{report:?}"
    );

    // The state record, a snapshot, and an idempotency entry (a retry then fails instead
    // of replaying or appending twice). The record is read by an engine opened on the
    // files: a running one answers from the records it committed (engine/records.rs).
    flip(&engine, "aggregates", &aggregate_key("o-1"), 5);
    drop(engine);
    let engine =
        open(&dir.path().join("data"), Some(&format!("base64:{KEY_B64}"))).expect("reopen");
    assert!(matches!(
        engine.aggregate("order", "o-1"),
        Err(EngineError::Tampered {
            cf: "aggregates",
            ..
        })
    ));
    let mut snapshot_key = aggregate_key("o-1");
    snapshot_key.push(0);
    snapshot_key.extend_from_slice(&2u64.to_be_bytes());
    flip(&engine, "snapshots", &snapshot_key, 7);
    let db = engine.raw_db();
    let snapshot = db
        .get_cf(db.cf_handle("snapshots").expect("cf"), &snapshot_key)
        .expect("get")
        .expect("a snapshot at version 2");
    assert!(!snapshot
        .windows(MARKER.len())
        .any(|w| w == MARKER.as_bytes()));
    flip(&engine, "idempotency", b"key-3", 9);
    let mut retry = NewEvent::new(
        "order",
        "o-1",
        "changed",
        obj(json!({"n": 3, "secret": MARKER})),
    );
    retry.metadata = obj(json!({"trace": MARKER}));
    retry.note = Some(MARKER.into());
    let err = engine
        .append(AppendRequest {
            events: vec![retry],
            idempotency_key: Some("key-3".into()),
            issued_by: issuer(),
        })
        .expect_err("tampered idempotency entry");
    assert!(
        matches!(
            err,
            EngineError::Tampered {
                cf: "idempotency",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn verify_means_the_same_with_and_without_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = [
        None,
        Some(format!("base64:{KEY_B64}")),
        Some(PASSPHRASE.to_owned()),
    ];
    for (index, key) in keys.into_iter().enumerate() {
        let data = dir.path().join(format!("data-{index}"));
        let engine = open(&data, key.as_deref()).expect("open");
        for n in 0..7 {
            append(&engine, "o-1", n, None);
        }
        let report = engine
            .verify("order", "o-1")
            .expect("verify")
            .expect("exists");
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.events_checked, 7);
        // Leaves cover the plaintext canonical encoding whatever the key.
        for event in engine
            .events_of("order", "o-1", 0, 10, u64::MAX)
            .expect("events")
        {
            assert_eq!(
                event.hash,
                eventdbx::engine::merkle::leaf_hash(&event.canonical_bytes())
            );
        }
        // The past state comes from an opened snapshot plus replay.
        let at = engine
            .aggregate_at("order", "o-1", 5)
            .expect("at")
            .expect("exists");
        assert!(at.state_json.contains("\"n\":4"), "{}", at.state_json);
    }
}

#[test]
fn a_store_is_rewritten_plaintext_to_encrypted_to_rotated_to_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("plain");
    let (root, expected_state) = {
        let engine = open(&plain, None).expect("create");
        for n in 0..5 {
            append(&engine, "o-1", n, Some(&format!("k-{n}")));
        }
        append(&engine, "o-2", 9, None);
        let state = engine
            .aggregate("order", "o-1")
            .expect("read")
            .expect("exists");
        (state.merkle_root, state.state_json)
    };
    let key = format!("base64:{KEY_B64}");
    let steps: [(&Path, Option<&str>, &str, Option<&str>); 3] = [
        (&plain, None, "sealed", Some(&key)),
        (
            &dir.path().join("sealed"),
            Some(&key),
            "rotated",
            Some(PASSPHRASE),
        ),
        (
            &dir.path().join("rotated"),
            Some(PASSPHRASE),
            "plain-again",
            None,
        ),
    ];
    for (from, from_key, to, to_key) in steps {
        let to = dir.path().join(to);
        let mut calls = 0;
        let copied = rewrite_store(
            from,
            from_key.map(spec).as_ref(),
            &to,
            to_key.map(spec).as_ref(),
            &mut |done, total| {
                calls += 1;
                assert!(done <= total);
            },
        )
        .expect("rewrite");
        assert!(
            copied > 6 && calls > 0,
            "{copied} records, {calls} progress calls"
        );
        let engine = open(&to, to_key).expect("open rewritten");
        let state = engine
            .aggregate("order", "o-1")
            .expect("read")
            .expect("exists");
        assert_eq!(
            (state.merkle_root, &state.state_json),
            (root, &expected_state)
        );
        assert!(engine
            .verify_many(None)
            .expect("verify")
            .iter()
            .all(|r| r.ok()));
        assert_eq!(engine.stats().expect("stats").events, 6);
        // Idempotency entries came along: a retry replays.
        let replay = engine
            .append(AppendRequest {
                events: vec![{
                    let mut e = NewEvent::new(
                        "order",
                        "o-1",
                        "changed",
                        obj(json!({"n": 0, "secret": MARKER})),
                    );
                    e.metadata = obj(json!({"trace": MARKER}));
                    e.note = Some(MARKER.into());
                    e
                }],
                idempotency_key: Some("k-0".into()),
                issued_by: issuer(),
            })
            .expect("replay");
        assert!(replay.replayed);
        drop(engine);
        let marked = files_containing(&to, MARKER.as_bytes());
        assert_eq!(to_key.is_none(), !marked.is_empty(), "{to:?}: {marked:?}");
        if let Some(wrong) = [None, Some(key.as_str())]
            .into_iter()
            .find(|k| *k != to_key)
        {
            assert!(open(&to, wrong).is_err(), "{to:?} opened with another key");
        }
    }
    // A rewrite never writes into an existing store.
    let err = rewrite_store(
        &plain,
        None,
        &dir.path().join("sealed"),
        None,
        &mut |_, _| {},
    )
    .expect_err("target exists");
    assert!(err.to_string().contains("already holds a store"), "{err}");
}
