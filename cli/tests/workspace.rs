//! End-to-end tests that need no running daemon: init, config, tokens, the migration guard,
//! common mistakes, removed commands and help text.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{run_in, Project};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn init_creates_the_workspace_with_private_files_and_a_day_long_token() {
    let p = Project::new();
    let out = p.run(&["init"]).ok();
    let dbx = p.dbx_dir();
    for file in [
        "config.toml",
        "cli.token",
        "tokens.json",
        "keys/token.key",
        "keys/data.key",
        "keys/server.crt",
        "keys/server.key",
    ] {
        assert!(dbx.join(file).is_file(), "{file} missing");
    }
    assert!(dbx.join("data").is_dir());
    for file in [
        "config.toml",
        "cli.token",
        "tokens.json",
        "keys/token.key",
        "keys/data.key",
        "keys/server.key",
    ] {
        assert_eq!(mode(&dbx.join(file)), 0o600, "{file}");
    }
    // Encrypted at rest by default: a 32-byte key (base64) that the config references
    // and that is never printed.
    let data_key = p.read(".dbx/keys/data.key");
    assert_eq!(data_key.trim().len(), 44, "{data_key}");
    assert!(p
        .read(".dbx/config.toml")
        .contains("data_encryption_key = \"file:keys/data.key\""));
    assert!(!out.stdout.contains(data_key.trim()), "{}", out.stdout);
    assert!(out.stdout.contains("encrypted at rest"), "{}", out.stdout);
    let token = p.cli_token();
    assert!(token.starts_with("dbx_"), "{token}");
    // Printed once, with a sentence saying where it is stored.
    assert!(out.stdout.contains(&token), "{}", out.stdout);
    assert!(out.stdout.contains("cli.token"), "{}", out.stdout);
    assert!(p.read(".dbx/keys/server.crt").contains("BEGIN CERTIFICATE"));
    assert!(p.read(".dbx/keys/server.key").contains("PRIVATE KEY"));

    // Default lifetime: 86,400 s.
    let list = p.run(&["token", "list", "--json"]).ok().json();
    let item = &list["items"][0];
    assert_eq!(item["label"], "bootstrap");
    assert_eq!(item["group"], "admin");
    assert_eq!(item["status"], "active");
    let registry: serde_json::Value =
        serde_json::from_str(&p.read(".dbx/tokens.json")).expect("registry");
    let record = registry["tokens"]
        .as_object()
        .expect("tokens")
        .values()
        .next()
        .expect("one")
        .clone();
    let lifetime = record["expires_at"].as_i64().expect("expires")
        - record["issued_at"].as_i64().expect("issued");
    assert_eq!(lifetime, 86_400);
    // The registry holds no secret.
    let secret = token.rsplit('_').next().expect("secret");
    assert!(!p.read(".dbx/tokens.json").contains(secret));
}

#[test]
fn init_no_encryption_writes_no_data_key() {
    let p = Project::new();
    let out = p.run(&["init", "--no-encryption"]).ok();
    assert!(out.stdout.contains("unencrypted"), "{}", out.stdout);
    assert!(!p.dbx_dir().join("keys/data.key").exists());
    assert!(!p.read(".dbx/config.toml").contains("data_encryption_key"));
}

#[test]
fn init_twice_changes_nothing() {
    let p = Project::new();
    p.run(&["init"]).ok();
    let config = p.read(".dbx/config.toml");
    let token = p.cli_token();
    let out = p.run(&["init"]).ok();
    assert!(out.stdout.contains("already exists"), "{}", out.stdout);
    assert_eq!(p.read(".dbx/config.toml"), config);
    assert_eq!(p.cli_token(), token);
}

#[test]
fn init_ttl_accepts_suffixes_seconds_and_zero() {
    for (ttl, seconds) in [
        ("10m", Some(600)),
        ("24h", Some(86_400)),
        ("10d", Some(864_000)),
        ("2w", Some(1_209_600)),
        ("90", Some(90)),
        ("0", None),
    ] {
        let p = Project::new();
        let out = p.run(&["init", "--ttl", ttl]).ok();
        let registry: serde_json::Value =
            serde_json::from_str(&p.read(".dbx/tokens.json")).expect("registry");
        let record = registry["tokens"]
            .as_object()
            .expect("tokens")
            .values()
            .next()
            .expect("one")
            .clone();
        match seconds {
            Some(s) => assert_eq!(
                record["expires_at"].as_i64().expect("expires")
                    - record["issued_at"].as_i64().expect("issued"),
                s,
                "{ttl}"
            ),
            None => {
                assert!(record["expires_at"].is_null(), "{ttl}");
                assert!(out.stdout.contains("never expires"), "{}", out.stdout);
            }
        }
    }
    let p = Project::new();
    let out = p.run(&["init", "--ttl", "10y"]).fails(1);
    assert!(out.stderr.contains("invalid ttl"), "{}", out.stderr);
    assert!(!p.dbx_dir().join("config.toml").exists());
}

#[test]
fn runtime_commands_discover_the_workspace_from_a_subdirectory() {
    let p = Project::initialized();
    let sub = p.path().join("src/deep/er");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let out = run_in(&sub, &["config"]).ok();
    assert!(
        out.stdout
            .contains(&p.dbx_dir().join("config.toml").display().to_string()),
        "{}",
        out.stdout
    );
    run_in(&sub, &["token", "list"]).ok();
}

#[test]
fn config_prints_toml_with_the_auth_block_and_no_secrets() {
    let p = Project::initialized();
    p.run(&[
        "config",
        "--data-encryption-key",
        "c2VjcmV0LWtleS1tYXRlcmlhbA==",
    ])
    .ok();
    let out = p.run(&["config"]).ok();
    let parsed: toml::Table = out.stdout.parse().expect("valid TOML");
    assert_eq!(parsed["domain"].as_str(), Some("default"));
    assert!(parsed.contains_key("auth"), "{}", out.stdout);
    assert!(out.stdout.contains("token_key_file"));
    assert!(!out.stdout.contains("c2VjcmV0"), "{}", out.stdout);
    assert!(out.stdout.contains("<redacted>"));
    // Stored, not printed.
    assert!(p
        .read(".dbx/config.toml")
        .contains("c2VjcmV0LWtleS1tYXRlcmlhbA=="));
}

#[test]
fn config_flags_update_and_validate() {
    let p = Project::initialized();
    let out = p
        .run(&[
            "config",
            "--port",
            "7001",
            "--cache-threshold",
            "128",
            "--list-page-size",
            "50",
            "--page-limit",
            "500",
            "--bind-addr",
            "0.0.0.0",
            "--snowflake-worker-id",
            "7",
            "--noise",
        ])
        .ok();
    for changed in [
        "port",
        "cache_threshold",
        "list_page_size",
        "page_limit",
        "bind_addr",
        "snowflake_worker_id",
        "noise",
    ] {
        assert!(out.stdout.contains(changed), "{changed}: {}", out.stdout);
    }
    let config: toml::Table = p.read(".dbx/config.toml").parse().expect("toml");
    assert_eq!(config["port"].as_integer(), Some(7001));
    assert_eq!(config["cache_threshold"].as_integer(), Some(128));
    assert_eq!(config["list_page_size"].as_integer(), Some(50));
    assert_eq!(config["page_limit"].as_integer(), Some(500));
    assert_eq!(config["bind_addr"].as_str(), Some("0.0.0.0"));
    assert_eq!(config["snowflake_worker_id"].as_integer(), Some(7));
    assert_eq!(config["noise"].as_bool(), Some(true));
    assert_eq!(mode(&p.dbx_dir().join("config.toml")), 0o600);

    p.run(&["config", "--no-noise"]).ok();
    let config: toml::Table = p.read(".dbx/config.toml").parse().expect("toml");
    assert_eq!(config["noise"].as_bool(), Some(false));

    let external = tempfile::tempdir().expect("tempdir");
    p.run(&[
        "config",
        "--data-dir",
        &external.path().display().to_string(),
    ])
    .ok();
    let config: toml::Table = p.read(".dbx/config.toml").parse().expect("toml");
    assert_eq!(
        config["data_dir"].as_str(),
        Some(external.path().to_str().expect("utf8"))
    );
}

#[test]
fn config_rejects_out_of_range_values_naming_the_range() {
    let p = Project::initialized();
    let before = p.read(".dbx/config.toml");
    let cases: [(&[&str], &str); 8] = [
        (&["--snowflake-worker-id", "5000"], "0..=1023"),
        (&["--cache-threshold", "0"], "1..=65536"),
        (&["--page-limit", "0"], "1..=100000"),
        (&["--list-page-size", "5000"], "1..=1000"),
        (&["--bind-addr", "localhost:1"], "not an IP address"),
        (&["--data-encryption-key", ""], "non-empty"),
        (
            &["--data-encryption-key", "short"],
            "at least 12 characters",
        ),
        (&["--data-encryption-key", "base64:c2VjcmV0"], "32 bytes"),
    ];
    for (flags, range) in cases {
        let mut args = vec!["config"];
        args.extend_from_slice(flags);
        let out = p.run(&args).fails(2);
        assert!(out.stderr.contains(range), "{flags:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("c2VjcmV0"),
            "key echoed: {}",
            out.stderr
        );
    }
    // clap checks the port range itself.
    let out = p.run(&["config", "--port", "70000"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("1..=65535"), "{}", out.stderr);
    let out = p.run(&["config", "--noise", "--no-noise"]);
    assert_eq!(out.code, 2);
    assert_eq!(p.read(".dbx/config.toml"), before);
}

#[test]
fn token_generate_list_revoke_refresh_bootstrap() {
    let p = Project::initialized();
    let gen = p
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
    for key in [
        "token",
        "id",
        "group",
        "user",
        "actions",
        "resources",
        "expires_at",
    ] {
        assert!(gen.get(key).is_some(), "{key} missing: {gen}");
    }
    assert_eq!(gen["group"], "ops");
    assert_eq!(gen["user"], "alice");
    assert_eq!(
        gen["actions"],
        serde_json::json!(["aggregate.read", "aggregate.append"])
    );
    assert_eq!(gen["resources"], serde_json::json!(["*"]));
    let token = gen["token"].as_str().expect("token").to_owned();
    let id = gen["id"].as_str().expect("id").to_owned();

    let list = p.run(&["token", "list"]).ok();
    assert!(list.stdout.starts_with("ID "), "{}", list.stdout);
    assert!(
        list.stdout.contains(&id)
            && list.stdout.contains("alice")
            && list.stdout.contains("active")
    );
    assert!(!list.stdout.contains(&token), "secrets never listed");

    let out = p
        .run(&["token", "revoke", &token, "--reason", "left the team"])
        .ok();
    assert!(out.stdout.contains(&id), "{}", out.stdout);
    let list = p.run(&["token", "list", "--json"]).ok().json();
    let item = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == id.as_str())
        .expect("listed")
        .clone();
    assert_eq!(item["status"], "revoked");
    assert_eq!(item["revoked_reason"], "left the team");
    p.run(&["token", "revoke", "0000000000000000"]).fails(4);

    // Bad input is refused with the allowed values.
    let out = p
        .run(&[
            "token",
            "generate",
            "--group",
            "ops",
            "--user",
            "bob",
            "--action",
            "aggregate.delete",
        ])
        .fails(1);
    assert!(out.stderr.contains("aggregate.read"), "{}", out.stderr);
    let out = p
        .run(&[
            "token",
            "generate",
            "--group",
            "ops",
            "--user",
            "bob",
            "--action",
            "*",
            "--resource",
            "order:1",
        ])
        .fails(1);
    assert!(
        out.stderr.contains("aggregate:<type>:<id>"),
        "{}",
        out.stderr
    );

    // Refresh of the CLI token rewrites cli.token and revokes the old one.
    let old = p.cli_token();
    let out = p.run(&["token", "refresh"]).ok();
    let fresh = p.cli_token();
    assert_ne!(fresh, old);
    assert!(out.stdout.contains(&fresh), "{}", out.stdout);
    let out = p.run(&["token", "refresh", "--token", &old]).fails(6);
    assert!(out.stderr.contains("dbx token bootstrap"), "{}", out.stderr);

    // Refresh of a token given with --token prints the new one and leaves cli.token alone.
    let other = p
        .run(&[
            "token", "generate", "--group", "ops", "--user", "carol", "--action", "*", "--json",
        ])
        .ok()
        .json();
    let other = other["token"].as_str().expect("token").to_owned();
    let refreshed = p
        .run(&[
            "token", "refresh", "--token", &other, "--ttl", "0", "--json",
        ])
        .ok()
        .json();
    assert!(refreshed["expires_at"].is_null());
    assert_eq!(refreshed["user"], "carol");
    assert_eq!(p.cli_token(), fresh);

    // Bootstrap: --stdout prints only the token; default persists and says so.
    let out = p.run(&["token", "bootstrap", "--stdout"]).ok();
    let printed = out.stdout.trim();
    assert!(
        printed.starts_with("dbx_") && !printed.contains(' '),
        "{}",
        out.stdout
    );
    assert_eq!(p.cli_token(), fresh, "--stdout alone does not persist");
    let out = p.run(&["token", "bootstrap"]).ok();
    assert!(out.stdout.contains("stored in"), "{}", out.stdout);
    assert_ne!(p.cli_token(), fresh);
    let out = p
        .run(&[
            "token",
            "bootstrap",
            "--stdout",
            "--persist",
            "--ttl",
            "10m",
        ])
        .ok();
    assert_eq!(out.stdout.trim(), p.cli_token());
}

#[test]
fn the_migration_guard_refuses_legacy_layouts_with_the_explanation() {
    type MakeLegacy = fn(&Project);
    let cases: [(&str, MakeLegacy); 3] = [
        ("non-default domain", |p| {
            let path = p.dbx_dir().join("config.toml");
            let text = std::fs::read_to_string(&path).expect("read");
            std::fs::write(
                &path,
                text.replace("domain = \"default\"", "domain = \"acme\""),
            )
            .expect("write");
        }),
        ("multi_tenant", |p| {
            let path = p.dbx_dir().join("config.toml");
            let mut text = std::fs::read_to_string(&path).expect("read");
            text.push_str("\n[tenants]\nmulti_tenant = true\n");
            std::fs::write(&path, text).expect("write");
        }),
        ("tenant directories", |p| {
            std::fs::create_dir_all(p.dbx_dir().join("data/tenants/acme")).expect("mkdir");
        }),
    ];
    for (name, make_legacy) in cases {
        let p = Project::initialized();
        make_legacy(&p);
        for args in [
            &["serve", "start", "--foreground"][..],
            &["serve", "start"],
            &["config"],
            &["aggregate", "list"],
        ] {
            let out = p.run(args).fails(1);
            assert!(
                out.stderr.contains("single-tenant"),
                "{name} {args:?}: {}",
                out.stderr
            );
            assert!(
                out.stderr
                    .contains("Export/import the data or run a dedicated migration"),
                "{name}: {}",
                out.stderr
            );
        }
        assert!(
            !p.dbx_dir().join("serve.pid").exists(),
            "{name}: nothing started"
        );
    }
}

#[test]
fn commands_outside_a_workspace_say_to_run_init() {
    let dir = tempfile::tempdir().expect("tempdir");
    if std::path::Path::new("/tmp/.dbx/config.toml").exists() {
        return; // A workspace above the temp dir would be discovered.
    }
    for args in [
        &["config"][..],
        &["serve", "start"],
        &["serve", "status"],
        &["serve", "stop"],
        &["token", "list"],
        &["aggregate", "get", "order", "o-1"],
        &["events"],
        &["schema", "apply", "--file", "/nonexistent/schema.dbx"],
    ] {
        let out = run_in(dir.path(), args);
        assert_ne!(out.code, 0, "{args:?}");
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
        if args[0] != "schema" {
            assert!(
                out.stderr.contains("run `dbx init` first"),
                "{args:?}: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn data_commands_without_a_daemon_say_how_to_start_it() {
    let p = Project::initialized();
    let port = p.read(".dbx/config.toml");
    let port: toml::Table = port.parse().expect("toml");
    let addr = format!("127.0.0.1:{}", port["port"].as_integer().expect("port"));
    for args in [
        &[
            "aggregate",
            "create",
            "order",
            "o-1",
            "--event",
            "order_created",
            "--field",
            "status=open",
        ][..],
        &["aggregate", "apply", "order", "o-1", "order_paid"],
        &["aggregate", "get", "order", "o-1"],
        &["aggregate", "list"],
        &["aggregate", "verify", "order", "o-1"],
        &["events", "order"],
    ] {
        let out = p.run(args).fails(3);
        assert!(
            out.stderr.contains("not running"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(&addr), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("dbx serve start"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = p.run(&["serve", "status"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stdout.contains("not running") && out.stdout.contains("dbx serve start"),
        "{}",
        out.stdout
    );
    let out = p.run(&["serve", "status", "--json"]);
    assert_eq!(out.code, 3);
    assert_eq!(out.json()["running"], false);
    let out = p.run(&["serve", "stop"]).ok();
    assert!(out.stdout.contains("not running"), "{}", out.stdout);
}

#[test]
fn local_input_mistakes_are_one_line_errors() {
    let p = Project::initialized();
    let out = p
        .run(&[
            "aggregate",
            "create",
            "order",
            "o-1",
            "--event",
            "e",
            "--payload",
            "[1]",
        ])
        .fails(2);
    assert!(out.stderr.contains("JSON object"), "{}", out.stderr);
    let out = p
        .run(&[
            "aggregate",
            "create",
            "order",
            "o-1",
            "--event",
            "e",
            "--metadata",
            "{oops",
        ])
        .fails(2);
    assert!(out.stderr.contains("not valid JSON"), "{}", out.stderr);
    let out = p.run(&["aggregate", "list", "--take", "5000"]).fails(2);
    assert!(out.stderr.contains("1..=1000"), "{}", out.stderr);
    let out = p.run(&["events", "--cursor", "abc"]).fails(2);
    assert!(out.stderr.contains("--cursor"), "{}", out.stderr);
    // No token anywhere.
    std::fs::remove_file(p.dbx_dir().join("cli.token")).expect("rm");
    let out = p.run(&["aggregate", "list"]).fails(6);
    assert!(
        out.stderr.contains("EVENTDBX_TOKEN") && out.stderr.contains("dbx token bootstrap"),
        "{}",
        out.stderr
    );
    // A missing schema file.
    let out = p.run(&["schema", "validate"]).fails(4);
    assert!(
        out.stderr.contains("schema.dbx") && out.stderr.contains("--file"),
        "{}",
        out.stderr
    );
}

#[test]
fn old_top_level_commands_point_to_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["start", "stop", "status", "restart", "destroy"] {
        let out = run_in(dir.path(), &[name, "--yes"]).fails(2);
        assert!(
            out.stderr.contains(&format!(
                "`dbx {name}` is no longer supported; use `dbx serve {name}`"
            )),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn help_describes_every_command_and_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[],
            &[
                "init",
                "serve",
                "config",
                "token",
                "schema",
                "aggregate",
                "events",
                "storage",
                "--token",
                "Exit codes",
            ],
        ),
        (&["init"], &["--ttl", "--no-encryption"]),
        (&["storage"], &["rekey"]),
        (
            &["storage", "rekey"],
            &["--new-key", "--generate", "--plaintext"],
        ),
        (
            &["serve"],
            &["start", "stop", "status", "restart", "destroy"],
        ),
        (
            &["serve", "start"],
            &[
                "--foreground",
                "--restrict",
                "--port",
                "--data-dir",
                "EVENTDBX_AUTO_INIT",
            ],
        ),
        (&["serve", "restart"], &["--foreground", "--restrict"]),
        (&["serve", "status"], &["--json"]),
        (&["serve", "destroy"], &["--yes"]),
        (
            &["config"],
            &[
                "--port",
                "--data-dir",
                "--cache-threshold",
                "--data-encryption-key",
                "--list-page-size",
                "--page-limit",
                "--bind-addr",
                "--snowflake-worker-id",
                "--noise",
                "--no-noise",
                "storage rekey",
            ],
        ),
        (
            &["token"],
            &["generate", "list", "revoke", "refresh", "bootstrap"],
        ),
        (
            &["token", "generate"],
            &[
                "--group",
                "--user",
                "--action",
                "--resource",
                "--ttl",
                "--json",
            ],
        ),
        (&["token", "revoke"], &["--reason"]),
        (&["token", "refresh"], &["--token", "--ttl"]),
        (&["token", "bootstrap"], &["--stdout", "--persist", "--ttl"]),
        (&["schema"], &["validate", "show", "apply"]),
        (&["schema", "validate"], &["--file"]),
        (&["schema", "show"], &["--file", "AGGREGATE", "--json"]),
        (&["schema", "apply"], &["--file"]),
        (
            &["aggregate"],
            &["create", "apply", "list", "get", "verify"],
        ),
        (
            &["aggregate", "create"],
            &[
                "--event",
                "--field",
                "--payload",
                "--metadata",
                "--note",
                "--expected-version",
                "--json",
            ],
        ),
        (
            &["aggregate", "apply"],
            &[
                "--field",
                "--payload",
                "--metadata",
                "--note",
                "--expected-version",
                "--json",
            ],
        ),
        (&["aggregate", "list"], &["--cursor", "--take", "--json"]),
        (
            &["aggregate", "get"],
            &["--version", "--include-events", "--json"],
        ),
        (&["aggregate", "verify"], &["--json"]),
        (
            &["events"],
            &["--after-event-id", "--cursor", "--take", "--json"],
        ),
    ];
    for (path, expected) in cases {
        let mut args: Vec<&str> = path.to_vec();
        args.push("--help");
        let out = run_in(dir.path(), &args).ok();
        for needle in *expected {
            assert!(
                out.stdout.contains(needle),
                "`dbx {}` help lacks {needle}:\n{}",
                path.join(" "),
                out.stdout
            );
        }
        // Every flag in the Options section carries a description (on its line, or on the
        // next, more indented one when wrapped).
        let lines: Vec<&str> = out.stdout.lines().collect();
        let start = lines
            .iter()
            .position(|l| *l == "Options:")
            .expect("Options section");
        for (i, line) in lines.iter().enumerate().skip(start + 1) {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim_start();
            if !(trimmed.starts_with('-') && (1..=6).contains(&indent)) {
                continue;
            }
            let same_line = trimmed.split("  ").filter(|s| !s.trim().is_empty()).count() > 1;
            let next_line = lines.get(i + 1).is_some_and(|next| {
                next.len() - next.trim_start().len() > 6 && !next.trim().is_empty()
            });
            assert!(
                same_line || next_line,
                "`dbx {}`: undocumented flag {line:?}",
                path.join(" ")
            );
        }
    }
}

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

#[test]
fn schema_validate_and_show_compile_locally() {
    let p = Project::new();
    std::fs::write(p.path().join("schema.dbx"), QUICK_START_SCHEMA).expect("write");
    let out = p.run(&["schema", "validate"]).ok();
    assert!(
        out.stdout
            .contains("schema.dbx is valid: 1 aggregate (order)"),
        "{}",
        out.stdout
    );

    let all = p.run(&["schema", "show"]).ok();
    let json: serde_json::Value = serde_json::from_str(&all.stdout).expect("pretty JSON");
    assert_eq!(json["aggregates"]["order"]["snapshot_threshold"], 100);
    assert_eq!(
        json["aggregates"]["order"]["fields"]["status"]["type"],
        "text"
    );
    assert!(
        all.stdout.contains("\n  \"aggregates\""),
        "pretty-printed: {}",
        all.stdout
    );
    assert_eq!(
        p.run(&["schema", "show"]).ok().stdout,
        all.stdout,
        "deterministic"
    );
    let compact = p.run(&["schema", "show", "--json"]).ok();
    assert_eq!(compact.stdout.trim().lines().count(), 1);
    assert_eq!(compact.json(), json);

    let order = p.run(&["schema", "show", "order"]).ok();
    let order: serde_json::Value = serde_json::from_str(&order.stdout).expect("JSON");
    assert_eq!(order["name"], "order");
    assert_eq!(order, json["aggregates"]["order"]);
    let out = p.run(&["schema", "show", "invoice"]).fails(4);
    assert!(
        out.stderr.contains("invoice") && out.stderr.contains("defined: order"),
        "{}",
        out.stderr
    );

    // Discovery walks up; --file overrides it.
    let sub = p.path().join("a/b");
    std::fs::create_dir_all(&sub).expect("mkdir");
    run_in(&sub, &["schema", "validate"]).ok();
    std::fs::write(
        sub.join("other.dbx"),
        "aggregate person {\n  event person_created {}\n}\n",
    )
    .expect("write");
    let out = run_in(&sub, &["schema", "show", "--file", "other.dbx", "--json"]).ok();
    assert!(out.json()["aggregates"]["person"].is_object());
}

#[test]
fn schema_errors_point_at_file_line_and_column() {
    let p = Project::new();
    std::fs::write(
        p.path().join("schema.dbx"),
        "aggregate order {\n  field status { type = \"wat\" }\n  event order_created {}\n}\n",
    )
    .expect("write");
    for args in [&["schema", "validate"][..], &["schema", "show"]] {
        let out = p.run(args);
        assert_eq!(out.code, 1, "{args:?}");
        assert!(out.stderr.contains("schema.dbx:2:"), "{}", out.stderr);
        assert!(out.stderr.contains('^'), "caret: {}", out.stderr);
        assert!(out.stderr.contains("unknown type"), "{}", out.stderr);
        let last = out.stderr.trim_end().lines().last().unwrap_or_default();
        assert!(last.starts_with("error: schema.dbx has 1 error"), "{last}");
        assert!(out.stdout.is_empty());
    }
}

// Regression: `dbx schema show | head -1` panicked with "failed printing to stdout: Broken
// pipe" and a backtrace. A closed pipe now ends the command quietly with success.
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut source = String::new();
    for i in 0..400 {
        source.push_str(&format!(
            "aggregate agg_{i} {{\n  field status {{ type = \"text\" }}\n  event created {{ fields = [\"status\"] }}\n}}\n"
        ));
    }
    std::fs::write(dir.path().join("schema.dbx"), source).expect("schema");
    let mut child = common::command(dir.path())
        .args(["schema", "show"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("some output");
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit status {status:?}, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
