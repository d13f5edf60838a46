//! `dbx`: the EventDBX command line. It creates workspaces, runs the daemon, manages config
//! and tokens directly in the workspace, and talks to the running daemon over the
//! PostgreSQL wire protocol for everything that reads or writes data. It never opens the
//! store behind the daemon's back.

#[macro_use]
mod output;

mod aggregate;
mod client;
mod config_cmd;
mod daemon;
mod error;
mod schema_cmd;
mod storage_cmd;
mod token_cmd;
mod workspace;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::{CliError, Result};

/// mimalloc instead of glibc malloc: the server's hot paths allocate small, short-lived
/// buffers on two threads pools (tokio workers and the committer), where glibc's arenas spent
/// about 15% of the CPU in `_int_malloc`/`_int_free` under 32 appending clients (perf). Built
/// with mimalloc's `override` feature and exported by `build.rs`, it also serves RocksDB's
/// C++ allocations, so one allocator holds the whole process's heap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AFTER_HELP: &str = "\
Runtime commands use the nearest .dbx/config.toml, walking up from the current directory.
Token for data commands: --token, then $EVENTDBX_TOKEN, then .dbx/cli.token.

Exit codes: 0 success, 1 error, 2 bad usage, 3 daemon not running, 4 not found,
5 verification failed, 6 token rejected or permission denied, 7 write rejected
(version conflict or schema violation).";

/// EventDBX: an event-sourced database that speaks the PostgreSQL wire protocol.
#[derive(Debug, Parser)]
#[command(name = "dbx", version, after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    /// Token to authenticate with (default: $EVENTDBX_TOKEN, then .dbx/cli.token).
    #[arg(long, global = true, value_name = "TOKEN", display_order = 1000)]
    token: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a workspace (.dbx) in the current directory and issue a CLI bootstrap token.
    Init(InitArgs),
    /// Start, stop and inspect the daemon.
    #[command(subcommand)]
    Serve(ServeCommand),
    /// Print the workspace config as TOML (secrets redacted), or update it with flags.
    Config(ConfigArgs),
    /// Issue, list, revoke and refresh tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Validate, preview and apply schema.dbx.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Rewrite the store offline: encrypt it, rotate its key, or decrypt it.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Write and read aggregates.
    #[command(subcommand)]
    Aggregate(AggregateCommand),
    /// List events: all, of one aggregate type, or of one aggregate.
    Events(EventsArgs),
    #[command(hide = true)]
    Start(Removed),
    #[command(hide = true)]
    Stop(Removed),
    #[command(hide = true)]
    Status(Removed),
    #[command(hide = true)]
    Restart(Removed),
    #[command(hide = true)]
    Destroy(Removed),
}

/// A removed top-level command: any arguments are accepted and ignored.
#[derive(Debug, Args)]
struct Removed {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Lifetime of the bootstrap token: seconds, or a number with m, h, d or w (10m, 24h,
    /// 10d, 2w); 0 never expires.
    #[arg(long, value_name = "TTL", default_value = workspace::DEFAULT_BOOTSTRAP_TTL)]
    ttl: String,
    /// Store data unencrypted. By default init generates a data key (.dbx/keys/data.key,
    /// mode 0600) and every event, state and snapshot is encrypted at rest.
    #[arg(long)]
    no_encryption: bool,
}

#[derive(Debug, Args, Clone)]
struct StartArgs {
    /// Run in this process (logs to the terminal) instead of as a background daemon.
    #[arg(long)]
    foreground: bool,
    /// Schema enforcement: off (none), default (types with a schema are enforced) or strict
    /// (writes to types without a schema are rejected). `restart` keeps the previous mode
    /// unless given.
    #[arg(long, value_name = "MODE", value_parser = ["off", "default", "strict"])]
    restrict: Option<String>,
    /// Listen on this port for this run only (the config keeps its port).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Use this data directory for this run only (relative to the current directory).
    #[arg(long, value_name = "PATH")]
    data_dir: Option<PathBuf>,
}

impl StartArgs {
    fn options(&self) -> daemon::StartOptions {
        daemon::StartOptions {
            foreground: self.foreground,
            restrict: self.restrict.clone(),
            port: self.port,
            data_dir: self.data_dir.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum ServeCommand {
    /// Start the daemon: in the background (pid in .dbx/serve.pid, log in .dbx/serve.log),
    /// or with --foreground in this process. With EVENTDBX_AUTO_INIT=1 and no workspace, one
    /// is created in the current directory first.
    Start(StartArgs),
    /// Stop the daemon gracefully (in-flight writes finish; waits up to 30 s).
    Stop,
    /// Show whether the daemon runs: pid, address, uptime, version, restrict mode, counts.
    /// Exit code 3 when it is not running.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop the daemon if it runs, then start it.
    Restart(StartArgs),
    /// Stop the daemon and delete the .dbx workspace. A data_dir outside .dbx is kept.
    Destroy {
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Args)]
#[command(
    after_help = "With no flags, prints the config. Changes apply to the daemon at its next start \
(`dbx serve restart`). Schema enforcement is a `dbx serve start --restrict` flag, not config."
)]
struct ConfigArgs {
    /// PostgreSQL-protocol port (1..=65535).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Data directory (stored as an absolute path; relative paths are taken from the current
    /// directory).
    #[arg(long, value_name = "PATH")]
    data_dir: Option<PathBuf>,
    /// Cache memory in MiB (1..=65536): RocksDB's block cache, the kept aggregate records,
    /// and the opened tail and history of events.
    #[arg(long, value_name = "MIB")]
    cache_threshold: Option<u64>,
    /// Data encryption key (encryption at rest): file:PATH (a key file), base64:KEY (32
    /// bytes), or a passphrase of 12+ characters (argon2id). Stored in config.toml (mode
    /// 0600), never printed. An existing store must open with it: re-encrypting data is
    /// `dbx storage rekey`.
    #[arg(long, value_name = "KEY")]
    data_encryption_key: Option<String>,
    /// Default page size of listings (1..=page limit).
    #[arg(long, value_name = "N")]
    list_page_size: Option<usize>,
    /// Largest page any listing returns (1..=100000).
    #[arg(long, value_name = "N")]
    page_limit: Option<usize>,
    /// IP address to listen on (127.0.0.1 = this machine only, 0.0.0.0 = every interface).
    #[arg(long, value_name = "IP")]
    bind_addr: Option<String>,
    /// Snowflake worker id for event ids (0..=1023).
    #[arg(long, value_name = "ID")]
    snowflake_worker_id: Option<u16>,
    /// Require TLS for every client that is not on this machine.
    #[arg(long, conflicts_with = "no_noise")]
    noise: bool,
    /// Accept unencrypted connections from other machines.
    #[arg(long)]
    no_noise: bool,
}

#[derive(Debug, Subcommand)]
enum StorageCommand {
    /// Rewrite every record of the store under a new data key (or none), with the daemon
    /// stopped: encrypts a plaintext store, rotates the key of an encrypted one, or (with
    /// --plaintext) decrypts it. The old store is deleted and config.toml updated. Default
    /// target: the configured key when the store is still plaintext, else a new key file.
    Rekey {
        /// The new key: file:PATH, base64:KEY or a passphrase (as for `dbx config`).
        #[arg(long, value_name = "KEY", conflicts_with_all = ["plaintext", "generate"])]
        new_key: Option<String>,
        /// Generate a new random key file under .dbx/keys/ (the default for an encrypted
        /// store).
        #[arg(long, conflicts_with = "plaintext")]
        generate: bool,
        /// Store the data unencrypted from now on.
        #[arg(long)]
        plaintext: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Issue a token for a group and user with the given actions.
    Generate {
        /// Group the token belongs to (recorded on every event it writes).
        #[arg(long, value_name = "GROUP")]
        group: String,
        /// User the token belongs to (recorded on every event it writes).
        #[arg(long, value_name = "USER")]
        user: String,
        /// Allowed action, repeatable: aggregate.read, aggregate.append, aggregate.create,
        /// outbox.read, schema.read, schema.write, token.manage, <area>.* or *.
        #[arg(long = "action", value_name = "ACTION", required = true)]
        actions: Vec<String>,
        /// Resource glob, repeatable: * or aggregate:<type>:<id> (e.g. aggregate:order:*).
        /// Default: *.
        #[arg(long = "resource", value_name = "RESOURCE")]
        resources: Vec<String>,
        /// Lifetime: seconds or 10m, 24h, 10d, 2w; 0 never expires.
        #[arg(long, value_name = "TTL", default_value = "24h")]
        ttl: String,
        /// Print JSON: {"token", "id", "group", "user", "actions", "resources", "expires_at"}.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets): id, group, user, actions, resources, status, expiry.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id or by the full token; it stops working immediately.
    Revoke {
        /// Token id (as in `dbx token list`) or the full token.
        #[arg(value_name = "TOKEN|ID")]
        token_or_id: String,
        /// Why it was revoked (kept in the registry).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace a token with a new one (same grants) and revoke the old one. The token is
    /// --token, else $EVENTDBX_TOKEN, else .dbx/cli.token (which is then rewritten).
    Refresh {
        /// Lifetime of the new token (default: the old token's lifetime); 0 never expires.
        #[arg(long, value_name = "TTL")]
        ttl: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Issue a new admin token (all actions, all resources).
    Bootstrap {
        /// Print the token on stdout (alone, for scripts).
        #[arg(long)]
        stdout: bool,
        /// Write the token to .dbx/cli.token (the default when --stdout is not given).
        #[arg(long)]
        persist: bool,
        /// Lifetime: seconds or 10m, 24h, 10d, 2w; 0 never expires.
        #[arg(long, value_name = "TTL", default_value = workspace::DEFAULT_BOOTSTRAP_TTL)]
        ttl: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct SchemaFile {
    /// Schema source to use instead of the nearest schema.dbx in the current directory tree.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Check schema.dbx and report errors and warnings with file:line:column.
    Validate {
        #[command(flatten)]
        file: SchemaFile,
    },
    /// Print the compiled runtime schema (deterministic pretty JSON), or one aggregate's.
    Show {
        /// Only this aggregate.
        #[arg(value_name = "AGGREGATE")]
        aggregate: Option<String>,
        #[command(flatten)]
        file: SchemaFile,
        /// Print compact JSON on one line.
        #[arg(long)]
        json: bool,
    },
    /// Send schema.dbx to the running daemon, which compiles and applies it.
    Apply {
        #[command(flatten)]
        file: SchemaFile,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Clone)]
struct WriteArgs {
    /// Payload field KEY=VALUE, repeatable. Typed by the applied schema (an integer field
    /// gets a JSON number); without a schema, numbers, true, false and null are JSON values
    /// and anything else is a string.
    #[arg(long = "field", value_name = "KEY=VALUE")]
    fields: Vec<String>,
    /// Payload as a JSON object; --field values are merged into it and win.
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// Event metadata as a JSON object (default {}).
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// Note stored with the event (up to 128 characters).
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
    /// Reject the write unless the aggregate is at version N (create defaults to 0: the
    /// aggregate must not exist yet).
    #[arg(long, value_name = "N")]
    expected_version: Option<u64>,
    /// Print the stored event as JSON.
    #[arg(long)]
    json: bool,
}

impl WriteArgs {
    fn options(&self) -> aggregate::WriteOptions {
        aggregate::WriteOptions {
            fields: self.fields.clone(),
            payload: self.payload.clone(),
            metadata: self.metadata.clone(),
            note: self.note.clone(),
            expected_version: self.expected_version,
            json: self.json,
        }
    }
}

#[derive(Debug, Subcommand)]
enum AggregateCommand {
    /// Create an aggregate with its first event.
    Create {
        /// Aggregate type (e.g. order).
        #[arg(value_name = "TYPE")]
        aggregate_type: String,
        /// Aggregate id (e.g. order-42).
        #[arg(value_name = "ID")]
        aggregate_id: String,
        /// Event type of the first event (e.g. order_created).
        #[arg(long, value_name = "EVENT")]
        event: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Append an event to an aggregate.
    Apply {
        /// Aggregate type.
        #[arg(value_name = "TYPE")]
        aggregate_type: String,
        /// Aggregate id.
        #[arg(value_name = "ID")]
        aggregate_id: String,
        /// Event type (e.g. order_paid).
        #[arg(value_name = "EVENT")]
        event: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// List aggregates, of one type or of all types, one page at a time.
    List {
        /// Only this aggregate type.
        #[arg(value_name = "TYPE")]
        aggregate_type: Option<String>,
        /// Continue after this cursor (printed as `next cursor` by the previous page).
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
        /// Page size (default: list_page_size from the config).
        #[arg(long, value_name = "N")]
        take: Option<u64>,
        /// Print JSON: {"items": [...], "next_cursor": ...}.
        #[arg(long)]
        json: bool,
    },
    /// Show an aggregate's current state (or its state at --version N).
    Get {
        /// Aggregate type.
        #[arg(value_name = "TYPE")]
        aggregate_type: String,
        /// Aggregate id.
        #[arg(value_name = "ID")]
        aggregate_id: String,
        /// The state as of this version.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        /// Also list the aggregate's events.
        #[arg(long)]
        include_events: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recompute an aggregate's Merkle root from its events and compare it with the stored
    /// one. Exit code 5 on a mismatch.
    Verify {
        /// Aggregate type.
        #[arg(value_name = "TYPE")]
        aggregate_type: String,
        /// Aggregate id.
        #[arg(value_name = "ID")]
        aggregate_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct EventsArgs {
    /// Only events of this aggregate type.
    #[arg(value_name = "TYPE")]
    aggregate_type: Option<String>,
    /// Only events of this aggregate (needs TYPE).
    #[arg(value_name = "ID", requires = "aggregate_type")]
    aggregate_id: Option<String>,
    /// Start after this event id (exclusive).
    #[arg(long, value_name = "N", conflicts_with = "cursor")]
    after_event_id: Option<u64>,
    /// Continue after this cursor (printed as `next cursor`: the last event id, or the last
    /// version for one aggregate).
    #[arg(long, value_name = "CURSOR")]
    cursor: Option<String>,
    /// Page size (default: list_page_size from the config).
    #[arg(long, value_name = "N")]
    take: Option<u64>,
    /// Print JSON: {"items": [...], "next_cursor": ...}.
    #[arg(long)]
    json: bool,
}

fn main() {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_owned());
        eprintln!("error: internal error in dbx ({message}); please report it");
    }));
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", err.message);
            err.code
        }
    };
    std::process::exit(code);
}

fn removed(name: &str) -> Result<i32> {
    Err(CliError::usage(format!(
        "`dbx {name}` is no longer supported; use `dbx serve {name}`"
    )))
}

fn run(cli: Cli) -> Result<i32> {
    let token = cli.token.as_deref();
    match cli.command {
        Command::Init(args) => init(&args.ttl, args.no_encryption).map(|_| 0),
        Command::Serve(command) => match command {
            ServeCommand::Start(args) => daemon::start(&args.options()).map(|_| 0),
            ServeCommand::Stop => daemon::stop().map(|_| 0),
            ServeCommand::Status { json } => daemon::status(token, json),
            ServeCommand::Restart(args) => daemon::restart(&args.options()).map(|_| 0),
            ServeCommand::Destroy { yes } => daemon::destroy(yes).map(|_| 0),
        },
        Command::Config(args) => config_cmd::run(config_cmd::ConfigUpdate {
            port: args.port,
            data_dir: args.data_dir,
            cache_threshold: args.cache_threshold,
            data_encryption_key: args.data_encryption_key,
            list_page_size: args.list_page_size,
            page_limit: args.page_limit,
            bind_addr: args.bind_addr,
            snowflake_worker_id: args.snowflake_worker_id,
            noise: args.noise,
            no_noise: args.no_noise,
        })
        .map(|_| 0),
        Command::Token(command) => match command {
            TokenCommand::Generate {
                group,
                user,
                actions,
                resources,
                ttl,
                json,
            } => token_cmd::generate(group, user, actions, resources, &ttl, json),
            TokenCommand::List { json } => token_cmd::list(json),
            TokenCommand::Revoke {
                token_or_id,
                reason,
                json,
            } => token_cmd::revoke(&token_or_id, reason, json),
            TokenCommand::Refresh { ttl, json } => token_cmd::refresh(token, ttl.as_deref(), json),
            TokenCommand::Bootstrap {
                stdout,
                persist,
                ttl,
                json,
            } => token_cmd::bootstrap(stdout, persist, &ttl, json),
        }
        .map(|_| 0),
        Command::Storage(StorageCommand::Rekey {
            new_key,
            generate,
            plaintext,
        }) => storage_cmd::rekey(storage_cmd::Target::from_flags(
            new_key, generate, plaintext,
        ))
        .map(|_| 0),
        Command::Schema(command) => match command {
            SchemaCommand::Validate { file } => schema_cmd::validate(file.file.as_deref()),
            SchemaCommand::Show {
                aggregate,
                file,
                json,
            } => schema_cmd::show(file.file.as_deref(), aggregate.as_deref(), json),
            SchemaCommand::Apply { file, json } => {
                schema_cmd::apply(token, file.file.as_deref(), json)
            }
        },
        Command::Aggregate(command) => match command {
            AggregateCommand::Create {
                aggregate_type,
                aggregate_id,
                event,
                write,
            } => aggregate::write(
                token,
                aggregate::WriteKind::Create,
                &aggregate_type,
                &aggregate_id,
                &event,
                &write.options(),
            )
            .map(|_| 0),
            AggregateCommand::Apply {
                aggregate_type,
                aggregate_id,
                event,
                write,
            } => aggregate::write(
                token,
                aggregate::WriteKind::Apply,
                &aggregate_type,
                &aggregate_id,
                &event,
                &write.options(),
            )
            .map(|_| 0),
            AggregateCommand::List {
                aggregate_type,
                cursor,
                take,
                json,
            } => aggregate::list(
                token,
                aggregate_type.as_deref(),
                cursor.as_deref(),
                take,
                json,
            )
            .map(|_| 0),
            AggregateCommand::Get {
                aggregate_type,
                aggregate_id,
                version,
                include_events,
                json,
            } => aggregate::get(
                token,
                &aggregate_type,
                &aggregate_id,
                version,
                include_events,
                json,
            )
            .map(|_| 0),
            AggregateCommand::Verify {
                aggregate_type,
                aggregate_id,
                json,
            } => aggregate::verify(token, &aggregate_type, &aggregate_id, json),
        },
        Command::Events(args) => aggregate::events(
            token,
            args.aggregate_type.as_deref(),
            args.aggregate_id.as_deref(),
            args.after_event_id,
            args.cursor.as_deref(),
            args.take,
            args.json,
        )
        .map(|_| 0),
        Command::Start(_) => removed("start"),
        Command::Stop(_) => removed("stop"),
        Command::Status(_) => removed("status"),
        Command::Restart(_) => removed("restart"),
        Command::Destroy(_) => removed("destroy"),
    }
}

fn init(ttl: &str, no_encryption: bool) -> Result<()> {
    let cwd = workspace::current_dir()?;
    let seed = workspace::InitSeed {
        no_encryption,
        ..workspace::InitSeed::default()
    };
    match workspace::init(&cwd, ttl, &seed)? {
        workspace::InitOutcome::AlreadyExists(dir) => {
            outln!(
                "an EventDBX workspace already exists at {}; nothing was changed",
                dir.display()
            );
        }
        workspace::InitOutcome::Created {
            dir,
            token,
            record_expiry,
        } => {
            outln!("Initialized an EventDBX workspace in {}", dir.display());
            if no_encryption {
                outln!("Data is stored unencrypted (--no-encryption).");
            } else {
                outln!(
                    "Data is encrypted at rest with the key in {} (mode 0600): back it up apart from the data; without it the data cannot be read.",
                    dir.join(eventdbx::config::DATA_KEY_FILE).display()
                );
            }
            outln!(
                "CLI bootstrap token ({}):",
                workspace::expiry_phrase(record_expiry)
            );
            outln!("{token}");
            outln!(
                "It is stored in {} (mode 0600) and dbx commands use it automatically.",
                dir.join(eventdbx::config::CLI_TOKEN_FILE).display()
            );
            outln!("Next: start the daemon with `dbx serve start`.");
        }
    }
    Ok(())
}
