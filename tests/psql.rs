//! Runs `sql/examples/quickstart.sql` with the real psql client against a real server: the
//! spec's Quick Start through SQL, end to end, including `\x` and an error's SQLSTATE.

mod support;

use support::TestServer;

#[tokio::test]
async fn the_quick_start_runs_in_psql() {
    let server = TestServer::start().await;
    let url = format!(
        "postgres://dbx:{}@127.0.0.1:{}/default?sslmode=disable",
        server.admin_token,
        server.addr.port()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/examples/quickstart.sql");
    let output = tokio::process::Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", &url, "-f", script])
        .output()
        .await
        .expect("psql is installed by scripts/test (Debian postgresql-client)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "psql failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("QUICKSTART OK"), "{stdout}");
    assert!(
        stdout.contains(r#"{"status":"paid"}"#),
        "state shown: {stdout}"
    );
    assert!(stdout.contains("LAST_ERROR_SQLSTATE 23514"), "{stdout}");
    assert!(
        stderr.contains("23514"),
        "verbose error shows the SQLSTATE: {stderr}"
    );
    // \x output of the state at version 1.
    assert!(stdout.contains("-[ RECORD 1 ]"), "{stdout}");
    assert!(
        stdout.contains(r#"state          | {"status":"open"}"#),
        "{stdout}"
    );
    server.stop().await;
}

#[tokio::test]
async fn psql_meta_commands_list_the_relations() {
    let server = TestServer::start().await;
    let url = format!(
        "postgres://dbx:{}@127.0.0.1:{}/default?sslmode=disable",
        server.admin_token,
        server.addr.port()
    );
    let run = |command: &'static str| {
        let url = url.clone();
        async move {
            let output = tokio::process::Command::new("psql")
                .args(["-X", "-v", "ON_ERROR_STOP=1", &url, "-c", command])
                .output()
                .await
                .expect("psql");
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                output.status.success(),
                "{command}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            stdout
        }
    };
    let dt = run("\\dt").await;
    for table in ["events", "aggregates", "outbox", "schemas"] {
        assert!(dt.contains(table), "\\dt lists {table}: {dt}");
    }
    let d = run("\\d events").await;
    assert!(
        d.contains("event_id") && d.contains("bigint") && d.contains("merkle_root"),
        "{d}"
    );
    let d = run("\\d aggregates").await;
    assert!(d.contains("state") && d.contains("json"), "{d}");
    let l = run("\\l").await;
    assert!(l.contains("default"), "{l}");
    let conninfo = run("\\conninfo").await;
    assert!(conninfo.contains("database \"default\""), "{conninfo}");
    server.stop().await;
}

#[tokio::test]
async fn psql_connects_over_tls() {
    let server = TestServer::start().await;
    let url = format!(
        "postgres://dbx:{}@127.0.0.1:{}/default?sslmode=require",
        server.admin_token,
        server.addr.port()
    );
    let output = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            &url,
            "-c",
            "\\conninfo",
            "-c",
            "SELECT 1 AS one",
        ])
        .output()
        .await
        .expect("psql");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("SSL connection"), "TLS in use: {stdout}");
    assert!(
        stdout.contains("TLSv1.3") || stdout.contains("TLSv1.2"),
        "{stdout}"
    );
    server.stop().await;
}
