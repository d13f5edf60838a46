//! Property test: random appends, conflicts, idempotent retries, reads and reopens against
//! an in-memory model of what the engine must hold, compared after every step.

use std::collections::HashMap;

use eventdbx::engine::{
    AppendRequest, Engine, EngineError, EngineOptions, ExpectedVersion, Issuer, NewEvent,
};
use eventdbx::merge_patch::merge_patch;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const AGGREGATES: usize = 4;

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    /// Offset from the model's actual version (0 = correct, others conflict).
    Offset(i8),
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        events: Vec<(usize, Expect, u8, bool)>,
        key: Option<u8>,
    },
    Read(usize),
    Outbox(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        4 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        2 => (-1i8..=1).prop_map(Expect::Offset),
    ];
    prop_oneof![
        6 => (
            prop::collection::vec((0..AGGREGATES, expect, any::<u8>(), any::<bool>()), 1..4),
            prop::option::of(0u8..4)
        )
            .prop_map(|(events, key)| Op::Append { events, key }),
        2 => (0..AGGREGATES).prop_map(Op::Read),
        1 => any::<u8>().prop_map(Op::Outbox),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    versions: HashMap<usize, u64>,
    states: HashMap<usize, Map<String, Value>>,
    /// (aggregate, version, payload) in commit order.
    log: Vec<(usize, u64, Map<String, Value>)>,
    /// idempotency key -> (request, outcome positions in the log)
    keys: HashMap<u8, (AppendRequest, Vec<usize>)>,
}

fn payload(value: u8, remove: bool) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(format!("k{}", value % 5), json!(value));
    if remove {
        map.insert(format!("k{}", (value % 5 + 1) % 5), Value::Null);
    }
    // Now and then an object member, which the commit path cannot merge into the state as
    // text (it merges recursively and drops its own nulls): the state is parsed from then
    // on, also in the middle of a group.
    if value % 7 == 3 {
        map.insert("nested".into(), json!({"v": value, "gone": null}));
    }
    map
}

/// What the engine keeps opened in memory: the tail's budget, the opened history's and the
/// current aggregate records'.
#[derive(Debug, Clone, Copy)]
struct Budgets {
    tail: usize,
    opened: usize,
    records: usize,
}

fn open(dir: &std::path::Path, budgets: Budgets) -> Engine {
    let mut options = EngineOptions::new(dir);
    options.default_snapshot_threshold = Some(2);
    options.history_tail_bytes = budgets.tail;
    options.opened_history_bytes = budgets.opened;
    options.aggregate_records_bytes = budgets.records;
    Engine::open(options).expect("open")
}

/// Opened-tail budgets: none (every scan from RocksDB), one byte (each group evicted as soon
/// as it is published: only scans from the newest event are answered by the tail), and the
/// default (every event since the last reopen in the tail, older ones in RocksDB).
fn tail_budget() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(EngineOptions::new(".").history_tail_bytes)
    ]
}

/// Opened-history budgets: none (scans below the tail read RocksDB from their cursor), one
/// byte (scans read whole buckets but keep none), two kilobytes (a bucket or two of these
/// events, evicted as others are read), and the default (every bucket read whole is kept).
fn opened_budget() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2048),
        Just(EngineOptions::new(".").opened_history_bytes)
    ]
}

/// Aggregate-record budgets: none (every read from RocksDB), a few records' worth spread
/// over the cache's shards (records evicted and read back all the time), and the default
/// (every aggregate the model uses is kept).
fn records_budget() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(16 * 1024),
        Just(EngineOptions::new(".").aggregate_records_bytes)
    ]
}

fn budgets() -> impl Strategy<Value = Budgets> {
    (tail_budget(), opened_budget(), records_budget()).prop_map(|(tail, opened, records)| Budgets {
        tail,
        opened,
        records,
    })
}

fn run(ops: Vec<Op>, budgets: Budgets) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = open(dir.path(), budgets);
    let mut model = Model::default();
    let mut ids: Vec<u64> = Vec::new();
    for op in ops {
        match op {
            Op::Append { events, key } => {
                let mut request = AppendRequest {
                    events: Vec::new(),
                    idempotency_key: key.map(|k| format!("key-{k}")),
                    issued_by: Issuer {
                        group: "g".into(),
                        user: "u".into(),
                    },
                };
                // The model's expected outcome, computed against a scratch copy.
                let mut versions = model.versions.clone();
                let mut conflict = false;
                for (agg, expect, value, remove) in &events {
                    let actual = versions.get(agg).copied().unwrap_or(0);
                    let expected = match expect {
                        Expect::Any => ExpectedVersion::Any,
                        Expect::NoStream => ExpectedVersion::NoStream,
                        Expect::Offset(d) => {
                            ExpectedVersion::Exact(actual.saturating_add_signed(i64::from(*d)))
                        }
                    };
                    let ok = match expected {
                        ExpectedVersion::Any => true,
                        ExpectedVersion::NoStream => actual == 0,
                        ExpectedVersion::Exact(n) => n == actual,
                    };
                    conflict |= !ok;
                    versions.insert(*agg, actual + 1);
                    request.events.push(
                        NewEvent::new(
                            "thing",
                            format!("t{agg}"),
                            "changed",
                            payload(*value, *remove),
                        )
                        .expecting(expected),
                    );
                }
                let replay = key.and_then(|k| model.keys.get(&k).cloned());
                let result = engine.append(request.clone());
                match (replay, result) {
                    (Some((original, positions)), result) => {
                        if original == request {
                            let outcome = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                            prop_assert!(outcome.replayed);
                            let got: Vec<u64> = outcome.events.iter().map(|e| e.event_id).collect();
                            let want: Vec<u64> = positions.iter().map(|p| ids[*p]).collect();
                            prop_assert_eq!(got, want);
                        } else {
                            let mismatch =
                                matches!(result, Err(EngineError::IdempotencyMismatch { .. }));
                            prop_assert!(mismatch, "expected an idempotency mismatch");
                        }
                    }
                    (None, Err(EngineError::Conflict { .. })) => prop_assert!(conflict),
                    (None, Err(other)) => return Err(TestCaseError::fail(other.to_string())),
                    (None, Ok(outcome)) => {
                        prop_assert!(!conflict, "append should have conflicted");
                        prop_assert!(!outcome.replayed);
                        let mut positions = Vec::new();
                        for ((agg, _, value, remove), event) in events.iter().zip(&outcome.events) {
                            let version = model.versions.entry(*agg).or_insert(0);
                            *version += 1;
                            prop_assert_eq!(event.version, *version);
                            prop_assert!(ids.last().is_none_or(|last| event.event_id > *last));
                            let p = payload(*value, *remove);
                            merge_patch(model.states.entry(*agg).or_default(), &p);
                            positions.push(model.log.len());
                            model.log.push((*agg, *version, p));
                            ids.push(event.event_id);
                        }
                        if let Some(k) = key {
                            model.keys.insert(k, (request, positions));
                        }
                    }
                }
            }
            Op::Read(agg) => {
                let got = engine
                    .aggregate("thing", &format!("t{agg}"))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                match (got, model.versions.get(&agg)) {
                    (None, None) => {}
                    (Some(state), Some(version)) => {
                        prop_assert_eq!(state.version, *version);
                        prop_assert_eq!(
                            &state
                                .state()
                                .map_err(|e| TestCaseError::fail(e.to_string()))?,
                            &model.states[&agg]
                        );
                        // The stored text too: members in the order merge patch leaves them
                        // (maps compare equal whatever their order).
                        let model_text = serde_json::to_string(&model.states[&agg])
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(&state.state_json, &model_text);
                        // A past version via snapshot + replay agrees with the model too.
                        let past = (*version).div_ceil(2);
                        let mut expected = Map::new();
                        for (a, v, p) in &model.log {
                            if *a == agg && *v <= past {
                                merge_patch(&mut expected, p);
                            }
                        }
                        let at = engine
                            .aggregate_at("thing", &format!("t{agg}"), past)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(at.map(|s| s.state().ok()), Some(Some(expected)));
                        let report = engine
                            .verify("thing", &format!("t{agg}"))
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert!(report.is_some_and(|r| r.ok()));
                    }
                    (got, want) => return Err(TestCaseError::fail(format!("{got:?} vs {want:?}"))),
                }
            }
            Op::Outbox(skip) => {
                let skip = usize::from(skip) % (ids.len() + 1);
                let after = if skip == 0 { 0 } else { ids[skip - 1] };
                let page = engine
                    .read_outbox(after, 1000)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let got: Vec<u64> = page.events.iter().map(|e| e.event_id).collect();
                prop_assert_eq!(&got[..], &ids[skip..]);
                for (event, (agg, version, payload)) in page.events.iter().zip(&model.log[skip..]) {
                    prop_assert_eq!(&event.aggregate_id, &format!("t{agg}"));
                    prop_assert_eq!(event.version, *version);
                    let stored = event
                        .payload()
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(&stored, payload);
                }
            }
            Op::Reopen => {
                drop(engine);
                engine = open(dir.path(), budgets);
            }
        }
        let stats = engine
            .stats()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(stats.events, model.log.len() as u64);
        prop_assert_eq!(stats.aggregates, model.versions.len() as u64);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn engine_agrees_with_the_model(
        ops in prop::collection::vec(op(), 1..40),
        budgets in budgets(),
    ) {
        run(ops, budgets)?;
    }
}
