//! The spec's Quick Start, verbatim, and the data commands against a running daemon:
//! tokens taking effect, errors for the common mistakes, paging and verification.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::{command, Project};

/// The schema from the spec's Quick Start.
const QUICK_START_SCHEMA: &str = r#"aggregate order {
  snapshot_threshold = 100
  field status {
    type = "text"
  }
  event order_created {
    fields = ["status"]
  }
  event order_paid {
    fields = ["status"]
  }
}
"#;

/// `dbx serve start --foreground` as a child; stopped with `dbx serve stop` on drop.
struct Foreground {
    child: Child,
}

impl Foreground {
    fn start(p: &Project, args: &[&str]) -> Self {
        let mut all = vec!["serve", "start", "--foreground"];
        all.extend_from_slice(args);
        let child = command(p.path())
            .args(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let status = p.wait_for_status(Duration::from_secs(30));
        assert_eq!(status["pid"].as_u64(), Some(u64::from(child.id())));
        Foreground { child }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output();
        let _ = self.child.wait();
    }
}

use std::process::Command;

fn initialized_with_schema() -> Project {
    let p = Project::initialized();
    std::fs::write(p.path().join("schema.dbx"), QUICK_START_SCHEMA).expect("schema");
    p
}

#[test]
fn quick_start_verbatim() {
    let p = Project::new();
    // 1. dbx init
    let init = p.run(&["init"]).ok();
    assert!(init.stdout.contains(".dbx/cli.token"), "{}", init.stdout);
    // (tests only: a free port so they can run in parallel)
    p.run(&["config", "--port", &common::free_port().to_string()])
        .ok();
    // 2. dbx serve start --foreground
    let daemon = Foreground::start(&p, &[]);
    let status = p.run(&["serve", "status"]).ok();
    assert!(status.stdout.contains("running"), "{}", status.stdout);
    // 3. schema.dbx
    std::fs::write(p.path().join("schema.dbx"), QUICK_START_SCHEMA).expect("schema");
    // 4. validate and preview
    let out = p.run(&["schema", "validate"]).ok();
    assert!(
        out.stdout.contains("valid") && out.stdout.contains("order"),
        "{}",
        out.stdout
    );
    let all = p.run(&["schema", "show"]).ok();
    let all_json: serde_json::Value = serde_json::from_str(&all.stdout).expect("show is JSON");
    assert_eq!(
        all_json["aggregates"]["order"]["fields"]["status"]["type"],
        "text"
    );
    assert_eq!(
        p.run(&["schema", "show"]).ok().stdout,
        all.stdout,
        "deterministic"
    );
    let order = p.run(&["schema", "show", "order"]).ok();
    let order_json: serde_json::Value = serde_json::from_str(&order.stdout).expect("JSON");
    assert_eq!(order_json["snapshot_threshold"], 100);
    assert!(order_json["events"]["order_paid"].is_object());
    // 5. apply
    let out = p.run(&["schema", "apply"]).ok();
    assert!(out.stdout.contains("order"), "{}", out.stdout);
    // 6. tokens
    let boot = p.run(&["token", "bootstrap", "--stdout"]).ok();
    assert!(boot.stdout.trim().starts_with("dbx_"), "{}", boot.stdout);
    let alice = p
        .run(&[
            "token",
            "generate",
            "--group",
            "ops",
            "--user",
            "alice",
            "--action",
            "aggregate.read",
            "--action",
            "aggregate.append",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(alice["user"], "alice");
    // 7. write and read
    let created = p
        .run(&[
            "aggregate",
            "create",
            "order",
            "order-42",
            "--event",
            "order_created",
            "--field",
            "status=open",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(created["aggregate_type"], "order");
    assert_eq!(created["aggregate_id"], "order-42");
    assert_eq!(created["version"], 1);
    assert_eq!(created["event_type"], "order_created");
    assert!(
        created["event_id"]
            .as_str()
            .and_then(|id| id.parse::<i64>().ok())
            .is_some_and(|id| id > 0),
        "{created}"
    );
    assert!(
        created["merkle_root"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{created}"
    );
    let applied = p
        .run(&[
            "aggregate",
            "apply",
            "order",
            "order-42",
            "order_paid",
            "--field",
            "status=paid",
        ])
        .ok();
    assert!(
        applied.stdout.contains("order#order-42") && applied.stdout.contains("version 2"),
        "{}",
        applied.stdout
    );
    let got = p
        .run(&["aggregate", "get", "order", "order-42", "--include-events"])
        .ok();
    for needle in [
        "order#order-42",
        "\"status\": \"paid\"",
        "order_created",
        "order_paid",
        "VERSION",
    ] {
        assert!(got.stdout.contains(needle), "{needle}: {}", got.stdout);
    }
    let list = p.run(&["aggregate", "list", "order", "--json"]).ok().json();
    assert_eq!(list["items"][0]["aggregate_id"], "order-42");
    assert_eq!(list["items"][0]["version"], 2);
    assert!(list["next_cursor"].is_null());
    let events = p
        .run(&["events", "order", "order-42", "--json"])
        .ok()
        .json();
    let items = events["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["event_type"], "order_created");
    assert_eq!(items[1]["payload"]["status"], "paid");
    let verified = p
        .run(&["aggregate", "verify", "order", "order-42", "--json"])
        .ok()
        .json();
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["recomputed_root"], verified["stored_root"]);
    // Counts in the status.
    let status = p.run(&["serve", "status", "--json"]).ok().json();
    assert_eq!(status["event_count"], 2);
    assert_eq!(status["aggregate_count"], 1);
    // 8. stop
    let out = p.run(&["serve", "stop"]).ok();
    assert!(out.stdout.contains("stopped"), "{}", out.stdout);
    drop(daemon);
}

#[test]
fn revoked_and_bad_tokens_are_rejected_with_advice() {
    let p = initialized_with_schema();
    let _daemon = Foreground::start(&p, &[]);
    p.run(&["schema", "apply"]).ok();
    let gen = p
        .run(&[
            "token", "generate", "--group", "ops", "--user", "bob", "--action", "*", "--json",
        ])
        .ok()
        .json();
    let token = gen["token"].as_str().expect("token").to_owned();
    p.run(&[
        "aggregate",
        "create",
        "order",
        "o-1",
        "--event",
        "order_created",
        "--field",
        "status=open",
        "--token",
        &token,
    ])
    .ok();
    // EVENTDBX_TOKEN is the second choice.
    p.run_env(
        &["aggregate", "get", "order", "o-1"],
        &[("EVENTDBX_TOKEN", &token)],
    )
    .ok();
    p.run(&["token", "revoke", gen["id"].as_str().expect("id")])
        .ok();
    let out = p
        .run(&["aggregate", "get", "order", "o-1", "--token", &token])
        .fails(6);
    assert!(
        out.stderr.contains("authentication failed") && out.stderr.contains("dbx token bootstrap"),
        "{}",
        out.stderr
    );
    let out = p
        .run_env(
            &["aggregate", "get", "order", "o-1"],
            &[("EVENTDBX_TOKEN", "dbx_nonsense")],
        )
        .fails(6);
    assert!(
        out.stderr.contains("authentication failed"),
        "{}",
        out.stderr
    );
    // The CLI token still works.
    p.run(&["aggregate", "get", "order", "o-1"]).ok();
    // A read-only token is refused writes.
    let reader = p
        .run(&[
            "token",
            "generate",
            "--group",
            "ops",
            "--user",
            "ro",
            "--action",
            "aggregate.read",
            "--json",
        ])
        .ok()
        .json();
    let out = p
        .run(&[
            "aggregate",
            "apply",
            "order",
            "o-1",
            "order_paid",
            "--field",
            "status=paid",
            "--token",
            reader["token"].as_str().expect("t"),
        ])
        .fails(6);
    assert!(out.stderr.contains("permission denied"), "{}", out.stderr);
}

#[test]
fn common_mistakes_give_one_line_errors() {
    let p = initialized_with_schema();
    let _daemon = Foreground::start(&p, &[]);
    p.run(&["schema", "apply"]).ok();
    // Unknown aggregate.
    let out = p.run(&["aggregate", "get", "order", "missing"]).fails(4);
    assert!(
        out.stderr.contains("aggregate order#missing not found"),
        "{}",
        out.stderr
    );
    // Create twice: the aggregate already exists (expected version 0).
    p.run(&[
        "aggregate",
        "create",
        "order",
        "o-1",
        "--event",
        "order_created",
        "--field",
        "status=open",
    ])
    .ok();
    let out = p
        .run(&[
            "aggregate",
            "create",
            "order",
            "o-1",
            "--event",
            "order_created",
            "--field",
            "status=open",
        ])
        .fails(7);
    assert!(!out.stderr.is_empty());
    // Version conflict.
    let out = p
        .run(&[
            "aggregate",
            "apply",
            "order",
            "o-1",
            "order_paid",
            "--field",
            "status=paid",
            "--expected-version",
            "5",
        ])
        .fails(7);
    assert!(!out.stderr.is_empty());
    // Schema violation: an undeclared event and an undeclared field.
    p.run(&[
        "aggregate",
        "apply",
        "order",
        "o-1",
        "order_shipped",
        "--field",
        "status=x",
    ])
    .fails(7);
    p.run(&[
        "aggregate",
        "apply",
        "order",
        "o-1",
        "order_paid",
        "--field",
        "status=paid",
        "--field",
        "amount=3",
    ])
    .fails(7);
    // Still at version 1 and verifiable.
    let got = p
        .run(&["aggregate", "get", "order", "o-1", "--json"])
        .ok()
        .json();
    assert_eq!(got["version"], 1);
    p.run(&["aggregate", "verify", "order", "o-1"]).ok();
}

#[test]
fn fields_are_typed_by_the_applied_schema() {
    let p = Project::initialized();
    std::fs::write(
        p.path().join("schema.dbx"),
        r#"aggregate item {
  field qty { type = "integer" }
  field price { type = "decimal(12,2)" }
  field gift { type = "boolean" }
  field sku { type = "text" }
  event item_added {}
}
"#,
    )
    .expect("schema");
    let _daemon = Foreground::start(&p, &[]);
    p.run(&["schema", "apply"]).ok();
    p.run(&[
        "aggregate",
        "create",
        "item",
        "i-1",
        "--event",
        "item_added",
        "--field",
        "qty=3",
        "--field",
        "price=9.50",
        "--field",
        "gift=true",
        "--field",
        "sku=007",
        "--metadata",
        r#"{"trace":"t-1"}"#,
        "--note",
        "first",
    ])
    .ok();
    let got = p
        .run(&[
            "aggregate",
            "get",
            "item",
            "i-1",
            "--json",
            "--include-events",
        ])
        .ok()
        .json();
    assert_eq!(got["state"]["qty"], 3);
    assert_eq!(got["state"]["gift"], true);
    assert_eq!(got["state"]["sku"], "007");
    assert_eq!(got["events"][0]["metadata"]["trace"], "t-1");
    assert_eq!(got["events"][0]["note"], "first");
    let out = p
        .run(&[
            "aggregate",
            "apply",
            "item",
            "i-1",
            "item_added",
            "--field",
            "qty=three",
        ])
        .fails(2);
    assert!(out.stderr.contains("integer"), "{}", out.stderr);
    // Without a schema, literals are inferred.
    p.run(&[
        "aggregate",
        "create",
        "note",
        "n-1",
        "--event",
        "noted",
        "--field",
        "count=4",
        "--field",
        "text=hi",
    ])
    .ok();
    let got = p
        .run(&["aggregate", "get", "note", "n-1", "--json"])
        .ok()
        .json();
    assert_eq!(got["state"]["count"], 4);
    assert_eq!(got["state"]["text"], "hi");
}

#[test]
fn listing_and_events_page_with_cursors() {
    let p = Project::initialized();
    let _daemon = Foreground::start(&p, &[]);
    for i in 0..5 {
        p.run(&[
            "aggregate",
            "create",
            "task",
            &format!("t-{i}"),
            "--event",
            "task_opened",
            "--field",
            "n=1",
        ])
        .ok();
    }
    p.run(&["aggregate", "create", "bug", "b-0", "--event", "bug_filed"])
        .ok();
    for _ in 0..2 {
        p.run(&["aggregate", "apply", "task", "t-0", "task_touched"])
            .ok();
    }
    // By type, with an id cursor.
    let page = p
        .run(&["aggregate", "list", "task", "--take", "2", "--json"])
        .ok()
        .json();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next_cursor"], "t-1");
    let page = p
        .run(&[
            "aggregate",
            "list",
            "task",
            "--take",
            "2",
            "--cursor",
            "t-3",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(page["items"][0]["aggregate_id"], "t-4");
    assert!(page["next_cursor"].is_null());
    let human = p.run(&["aggregate", "list", "task", "--take", "2"]).ok();
    assert!(
        human.stdout.contains("next cursor: t-1"),
        "{}",
        human.stdout
    );
    // All types, with an offset cursor.
    let page = p
        .run(&["aggregate", "list", "--take", "4", "--json"])
        .ok()
        .json();
    assert_eq!(page["items"][0]["aggregate_type"], "bug");
    assert_eq!(page["next_cursor"], "4");
    let page = p
        .run(&[
            "aggregate",
            "list",
            "--take",
            "4",
            "--cursor",
            "4",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    // Events.
    let all = p.run(&["events", "--json"]).ok().json();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(8));
    let first: i64 = all["items"][0]["event_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("event ids are decimal strings in --json");
    let after = p
        .run(&["events", "--after-event-id", &first.to_string(), "--json"])
        .ok()
        .json();
    assert_eq!(after["items"].as_array().map(Vec::len), Some(7));
    let tasks = p
        .run(&["events", "task", "--take", "3", "--json"])
        .ok()
        .json();
    assert_eq!(tasks["items"].as_array().map(Vec::len), Some(3));
    let cursor = tasks["next_cursor"].as_str().expect("cursor").to_owned();
    let rest = p
        .run(&["events", "task", "--cursor", &cursor, "--json"])
        .ok()
        .json();
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(4));
    let one = p
        .run(&["events", "task", "t-0", "--take", "2", "--json"])
        .ok()
        .json();
    assert_eq!(one["next_cursor"], "2");
    let one = p
        .run(&["events", "task", "t-0", "--cursor", "2", "--json"])
        .ok()
        .json();
    assert_eq!(one["items"][0]["version"], 3);
    // State at a version.
    let at = p
        .run(&[
            "aggregate",
            "get",
            "task",
            "t-0",
            "--version",
            "1",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(at["version"], 1);
}

#[test]
fn background_daemon_serves_data_and_status_counts() {
    let p = Project::initialized();
    p.run(&["serve", "start"]).ok();
    p.run(&[
        "aggregate",
        "create",
        "order",
        "o-1",
        "--event",
        "order_created",
        "--field",
        "status=open",
    ])
    .ok();
    let out = p.run(&["serve", "status"]).ok();
    assert!(
        out.stdout.contains("events") && out.stdout.contains("aggregates"),
        "{}",
        out.stdout
    );
    // Restart keeps the data.
    p.run(&["serve", "restart"]).ok();
    let got = p
        .run(&["aggregate", "get", "order", "o-1", "--json"])
        .ok()
        .json();
    assert_eq!(got["state"]["status"], "open");
    p.run(&["serve", "stop"]).ok();
}

#[test]
fn stop_lets_in_flight_writes_finish() {
    let p = Project::initialized();
    p.run(&["serve", "start"]).ok();
    p.run(&[
        "aggregate",
        "create",
        "counter",
        "c-1",
        "--event",
        "counter_created",
    ])
    .ok();
    let writers: Vec<Child> = (0..16)
        .map(|i| {
            command(p.path())
                .args([
                    "aggregate",
                    "apply",
                    "counter",
                    "c-1",
                    "counter_bumped",
                    "--field",
                ])
                .arg(format!("n={i}"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn writer")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(15));
    p.run(&["serve", "stop"]).ok();
    let mut acknowledged = 0;
    for writer in writers {
        let out = writer.wait_with_output().expect("wait");
        if out.status.success() {
            acknowledged += 1;
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1,
                "{stderr}"
            );
        }
    }
    p.run(&["serve", "start"]).ok();
    let got = p
        .run(&["aggregate", "get", "counter", "c-1", "--json"])
        .ok()
        .json();
    let version = got["version"].as_i64().expect("version");
    // Every acknowledged write survived the stop; none was lost or half-applied.
    assert!(
        version > acknowledged,
        "version {version}, acknowledged {acknowledged}"
    );
    p.run(&["aggregate", "verify", "counter", "c-1"]).ok();
    p.run(&["serve", "stop"]).ok();
}
