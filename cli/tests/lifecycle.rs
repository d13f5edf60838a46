//! The daemon lifecycle: serve start (background and foreground), status, stop, restart,
//! destroy, and auto-init. These need only a daemon that binds its port.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{command, free_port, pid_alive, Project};

fn pid_of(p: &Project) -> u64 {
    p.status_json().expect("serve.json")["pid"]
        .as_u64()
        .expect("pid")
}

#[test]
fn background_start_status_refuse_second_stop() {
    let p = Project::initialized();
    let out = p.run(&["serve", "start", "--restrict", "strict"]).ok();
    let status = p.status_json().expect("serve.json written");
    let addr = status["addr"].as_str().expect("addr").to_owned();
    assert!(out.stdout.contains(&addr), "{}", out.stdout);
    assert!(out.stdout.contains("restrict: strict"), "{}", out.stdout);
    assert_eq!(status["restrict"], "strict");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let pid = pid_of(&p);
    assert_eq!(p.read(".dbx/serve.pid").trim(), pid.to_string());
    assert!(pid_alive(pid));
    assert!(
        std::net::TcpStream::connect(&addr).is_ok(),
        "accepts connections"
    );
    assert!(p.read(".dbx/serve.log").contains("EventDBX listening on"));

    let out = p.run(&["serve", "status"]).ok();
    for needle in [
        "running",
        &pid.to_string(),
        &addr,
        "uptime",
        env!("CARGO_PKG_VERSION"),
        "strict",
        "MiB resident",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    let json = p.run(&["serve", "status", "--json"]).ok().json();
    assert_eq!(json["running"], true);
    assert_eq!(json["pid"].as_u64(), Some(pid));
    // A running daemon holds at least its block cache's first blocks and its memtables.
    assert!(
        json["resident_bytes"]
            .as_u64()
            .is_some_and(|b| b > 1024 * 1024),
        "{json}"
    );

    let out = p.run(&["serve", "start"]).fails(1);
    assert!(
        out.stderr.contains("already running") && out.stderr.contains(&pid.to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("dbx serve stop"), "{}", out.stderr);
    let out = p.run(&["serve", "start", "--foreground"]).fails(1);
    assert!(out.stderr.contains("already running"), "{}", out.stderr);

    let out = p.run(&["serve", "stop"]).ok();
    assert!(out.stdout.contains("stopped"), "{}", out.stdout);
    assert!(!pid_alive(pid));
    assert!(!p.dbx_dir().join("serve.pid").exists());
    assert!(!p.dbx_dir().join("serve.json").exists());
    assert_eq!(p.run(&["serve", "status"]).code, 3);
}

#[test]
fn foreground_start_prints_the_address_and_cleans_up_on_stop() {
    let p = Project::initialized();
    let mut child = command(p.path())
        .args(["serve", "start", "--foreground"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = p.wait_for_status(Duration::from_secs(20));
    assert_eq!(status["pid"].as_u64(), Some(u64::from(child.id())));
    assert_eq!(status["restrict"], "default");
    let out = p.run(&["serve", "stop"]).ok();
    assert!(
        out.stdout.contains(&child.id().to_string()),
        "{}",
        out.stdout
    );
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "{exit}");
    let mut stdout = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    let listening = format!(
        "EventDBX listening on {} (restrict: default)",
        status["addr"].as_str().expect("addr")
    );
    assert!(stdout.contains(&listening), "{stdout}");
    assert!(!p.dbx_dir().join("serve.pid").exists());
}

#[test]
fn port_and_data_dir_flags_apply_to_one_run_only() {
    let p = Project::initialized();
    let config_before = p.read(".dbx/config.toml");
    let port = free_port();
    let data = tempfile::tempdir().expect("tempdir");
    p.run(&[
        "serve",
        "start",
        "--port",
        &port.to_string(),
        "--data-dir",
        &data.path().display().to_string(),
    ])
    .ok();
    let status = p.status_json().expect("status");
    assert_eq!(status["addr"], format!("127.0.0.1:{port}"));
    assert!(
        std::fs::read_dir(data.path())
            .expect("data dir")
            .next()
            .is_some(),
        "store created in --data-dir"
    );
    assert_eq!(p.read(".dbx/config.toml"), config_before);
    p.run(&["serve", "stop"]).ok();
}

#[test]
fn restart_keeps_the_restrict_mode_and_replaces_the_process() {
    let p = Project::initialized();
    // Restart of a stopped daemon just starts it.
    let out = p.run(&["serve", "restart"]).ok();
    assert!(out.stdout.contains("not running"), "{}", out.stdout);
    p.run(&["serve", "stop"]).ok();

    p.run(&["serve", "start", "--restrict", "off"]).ok();
    let first = pid_of(&p);
    let out = p.run(&["serve", "restart"]).ok();
    assert!(
        out.stdout.contains(&format!("stopped (pid {first})")),
        "{}",
        out.stdout
    );
    let second = pid_of(&p);
    assert_ne!(first, second);
    assert!(!pid_alive(first));
    assert_eq!(p.status_json().expect("status")["restrict"], "off");

    // restart --foreground runs in the calling process.
    let mut child = command(p.path())
        .args(["serve", "restart", "--foreground", "--restrict", "strict"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if p.status_json()
            .is_some_and(|s| s["pid"].as_u64() == Some(u64::from(child.id())))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "foreground restart did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_alive(second));
    assert_eq!(p.status_json().expect("status")["restrict"], "strict");
    p.run(&["serve", "stop"]).ok();
    assert!(child.wait().expect("wait").success());
}

#[test]
fn a_failed_start_reports_the_reason() {
    let p = Project::initialized();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = blocker.local_addr().expect("addr").port().to_string();
    let out = p.run(&["serve", "start", "--port", &port]).fails(1);
    assert!(out.stderr.contains("failed to start"), "{}", out.stderr);
    assert!(out.stderr.contains(&port), "{}", out.stderr);
    assert!(out.stderr.contains("serve.log"), "{}", out.stderr);
    let out = p
        .run(&["serve", "start", "--foreground", "--port", &port])
        .fails(1);
    assert!(
        out.stderr.contains("cannot start EventDBX"),
        "{}",
        out.stderr
    );
    assert!(!p.dbx_dir().join("serve.pid").exists());
}

#[test]
fn destroy_asks_unless_yes_and_keeps_an_external_data_dir() {
    let p = Project::initialized();
    p.run(&["serve", "start"]).ok();
    let pid = pid_of(&p);
    // stdin is not a terminal: refuse without --yes.
    let out = p.run(&["serve", "destroy"]).fails(2);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert!(p.dbx_dir().exists() && pid_alive(pid));

    let out = p.run(&["serve", "destroy", "--yes"]).ok();
    assert!(out.stdout.contains("removed"), "{}", out.stdout);
    assert!(!p.dbx_dir().exists());
    assert!(!pid_alive(pid));

    let p = Project::initialized();
    let external = tempfile::tempdir().expect("tempdir");
    let data = external.path().join("store");
    p.run(&["config", "--data-dir", &data.display().to_string()])
        .ok();
    p.run(&["serve", "start"]).ok();
    let out = p.run(&["serve", "destroy", "--yes"]).ok();
    assert!(!p.dbx_dir().exists());
    assert!(data.is_dir(), "external data dir kept");
    assert!(
        out.stdout.contains(&data.display().to_string()) && out.stdout.contains("left in place"),
        "{}",
        out.stdout
    );
}

#[test]
fn auto_init_creates_the_workspace_on_first_foreground_start() {
    let p = Project::new();
    let port = free_port().to_string();
    let mut child = command(p.path())
        .args(["serve", "start", "--foreground"])
        .env("EVENTDBX_AUTO_INIT", "1")
        .env("EVENTDBX_PORT", &port)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = p.wait_for_status(Duration::from_secs(20));
    assert_eq!(status["addr"], format!("127.0.0.1:{port}"));
    assert!(p.dbx_dir().join("config.toml").is_file());
    assert!(p.cli_token().starts_with("dbx_"));
    p.run(&["serve", "stop"]).ok();
    assert!(child.wait().expect("wait").success());
    let mut stdout = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    assert!(stdout.contains("EVENTDBX_AUTO_INIT"), "{stdout}");
    assert!(
        !stdout.contains(&p.cli_token()),
        "the secret stays out of the logs: {stdout}"
    );

    // A second start reuses the workspace.
    let token = p.cli_token();
    let out = p
        .run_env(&["serve", "start"], &[("EVENTDBX_AUTO_INIT", "1")])
        .ok();
    assert!(!out.stdout.contains("initialized"), "{}", out.stdout);
    assert_eq!(p.cli_token(), token);
    p.run(&["serve", "stop"]).ok();

    // Without the variable, no workspace is created.
    let empty = Project::new();
    let out = empty.run(&["serve", "start", "--foreground"]).fails(1);
    assert!(out.stderr.contains("dbx init"), "{}", out.stderr);
    assert!(!empty.dbx_dir().exists());
}

#[test]
fn destroy_prompts_on_a_terminal() {
    // `script` (util-linux) gives the command a pseudo-terminal as stdin.
    if !std::path::Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: /usr/bin/script is not installed");
        return;
    }
    let p = Project::initialized();
    let run_with_answer = |answer: &str| {
        let mut child = std::process::Command::new("/usr/bin/script")
            .args([
                "-qec",
                &format!("{} serve destroy", common::dbx_path()),
                "/dev/null",
            ])
            .current_dir(p.path())
            .env_remove("EVENTDBX_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn script");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{answer}\n").as_bytes())
            .expect("answer");
        let out = child.wait_with_output().expect("wait");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run_with_answer("no");
    assert!(out.contains("Type 'yes' to continue"), "{out}");
    assert!(out.contains("aborted; nothing was removed"), "{out}");
    assert!(p.dbx_dir().join("config.toml").exists());
    let out = run_with_answer("yes");
    assert!(out.contains("removed the workspace"), "{out}");
    assert!(!p.dbx_dir().exists());
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn an_encrypted_store_refuses_other_keys_and_rekey_rewrites_it() {
    const MARKER: &str = "Wombat3Qx8Marker";
    let p = Project::initialized();
    let data = p.dbx_dir().join("data");
    p.run(&["serve", "start"]).ok();
    p.run(&[
        "aggregate",
        "create",
        "order",
        "o-1",
        "--event",
        "created",
        "--field",
        &format!("secret={MARKER}"),
        "--note",
        MARKER,
    ])
    .ok();
    p.run(&["serve", "stop"]).ok();
    assert!(files_containing(&data, MARKER.as_bytes()).is_empty());

    // A different key file: the start fails at once, in one line, and serves nothing.
    let key = p.read(".dbx/keys/data.key");
    std::fs::write(
        p.dbx_dir().join("keys/data.key"),
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\n",
    )
    .expect("write");
    let out = p.run(&["serve", "start", "--foreground"]).fails(1);
    assert!(out.stderr.contains("key check failed"), "{}", out.stderr);
    std::fs::write(p.dbx_dir().join("keys/data.key"), &key).expect("restore");

    // The config refuses a key that does not open the existing store, and says what to do.
    let out = p
        .run(&["config", "--data-encryption-key", "a different passphrase"])
        .fails(2);
    assert!(out.stderr.contains("dbx storage rekey"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("different passphrase"),
        "{}",
        out.stderr
    );

    // Decrypt, then encrypt again under a newly generated key.
    let out = p.run(&["storage", "rekey", "--plaintext"]).ok();
    assert!(out.stdout.contains("now unencrypted"), "{}", out.stdout);
    assert!(!p.read(".dbx/config.toml").contains("data_encryption_key"));
    assert!(!files_containing(&data, MARKER.as_bytes()).is_empty());
    let out = p.run(&["storage", "rekey"]).ok();
    assert!(out.stdout.contains("new key"), "{}", out.stdout);
    let config = p.read(".dbx/config.toml");
    assert!(
        config.contains("data_encryption_key = \"file:keys/data-"),
        "{config}"
    );
    assert!(files_containing(&data, MARKER.as_bytes()).is_empty());
    assert!(!data.with_file_name("data.pre-rekey").exists());
    assert!(!data.with_file_name("data.rekey").exists());

    p.run(&["serve", "start"]).ok();
    let got = p
        .run(&["aggregate", "get", "order", "o-1", "--json"])
        .ok()
        .json();
    assert_eq!(got["state"]["secret"], MARKER);
    p.run(&["aggregate", "verify", "order", "o-1"]).ok();
    // A rekey needs the daemon stopped.
    let out = p.run(&["storage", "rekey"]).fails(1);
    assert!(out.stderr.contains("dbx serve stop"), "{}", out.stderr);
    p.run(&["serve", "stop"]).ok();
}
