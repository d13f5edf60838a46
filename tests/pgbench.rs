//! pgbench drives the server with the benchmark's append and read scripts in all three
//! query modes (simple, extended, prepared); every transaction must succeed.

mod support;

use support::TestServer;

const TRANSACTIONS_PER_CLIENT: &str = "25";
const CLIENTS: &str = "4";

async fn pgbench(server: &TestServer, mode: &str, script: &str, extra: &[&str]) -> String {
    let script = format!("{}/bench/pgbench/{script}", env!("CARGO_MANIFEST_DIR"));
    let port = server.addr.port().to_string();
    let mut args = vec![
        "-n",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        "bench",
        "-M",
        mode,
        "-c",
        CLIENTS,
        "-j",
        "2",
        "-t",
        TRANSACTIONS_PER_CLIENT,
        "-f",
        &script,
    ];
    args.extend_from_slice(extra);
    args.push("default");
    let output = tokio::process::Command::new("pgbench")
        .args(&args)
        .env("PGPASSWORD", &server.admin_token)
        .output()
        .await
        .expect("pgbench is installed by scripts/test (Debian postgresql-15)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pgbench -M {mode} {script} failed\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("number of failed transactions: 0"),
        "{stdout}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_appends_and_reads_in_every_query_mode() {
    let server = TestServer::start().await;
    for mode in ["simple", "extended", "prepared"] {
        let out = pgbench(&server, mode, "append.pgbench", &[]).await;
        assert!(
            out.contains("number of transactions actually processed: 100/100"),
            "{out}"
        );
        pgbench(&server, mode, "get.pgbench", &[]).await;
    }
    let client = server.connect().await;
    let count: i64 = client
        .query_one("SELECT COUNT(*) FROM events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 300);
    let first: i64 = client
        .query_one("SELECT event_id FROM events ORDER BY event_id LIMIT 1", &[])
        .await
        .expect("first")
        .get(0);
    let base = format!("base={first}");
    for mode in ["simple", "extended", "prepared"] {
        pgbench(
            &server,
            mode,
            "outbox.pgbench",
            &["-D", &base, "-D", "step=1", "-D", "span=300"],
        )
        .await;
    }
    server.stop().await;
}
