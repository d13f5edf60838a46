//! `dbx serve`: the daemon in the foreground, the background launcher, and the pid/status
//! files (`.dbx/serve.pid`, `.dbx/serve.json`, `.dbx/serve.log`) the other commands read.

use std::io::{IsTerminal, Read, Seek, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eventdbx::config::{Workspace, MIGRATION_ADVICE};
use eventdbx::server::{RestrictMode, Server, ServerOptions};
use serde::{Deserialize, Serialize};

use crate::error::{exit, io_error, CliError, Result};
use crate::output::{fields, human_duration};
use crate::workspace::{absolute, current_dir, discover, discover_or_auto_init};

const PID_FILE: &str = "serve.pid";
const STATUS_FILE: &str = "serve.json";
const LOG_FILE: &str = "serve.log";
/// How long a background start waits for the daemon to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `serve stop` waits for in-flight work to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// What the running daemon records about itself in `.dbx/serve.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub addr: String,
    /// RFC 3339.
    pub started_at: String,
    pub version: String,
    pub restrict: String,
}

/// Options shared by `serve start` and `serve restart`.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub foreground: bool,
    pub restrict: Option<String>,
    pub port: Option<u16>,
    pub data_dir: Option<PathBuf>,
}

/// mimalloc settings for the daemon, each unless the user set it (mimalloc reads them from
/// the environment when the process starts, hence here and not in the daemon's code). The
/// whole process, RocksDB included, allocates from mimalloc (see `cli/build.rs`); with its
/// defaults, memory freed after a burst (a bulk load's statements, compaction buffers) stays
/// resident for a second and sits in transparent huge pages that a few live bytes keep whole.
/// Measured with a 3M-event bulk load and the pgbench loads after it: peak RSS 320 MiB and
/// 200 MiB during the loads with the defaults, 228 MiB and 152 MiB with these two; append and
/// read rates unchanged within noise. `scripts/serve` and the Docker image set the same.
const DAEMON_ALLOCATOR_ENV: [(&str, &str); 2] = [
    // Return freed pages to the OS after 10 ms instead of 1 s.
    ("MIMALLOC_PURGE_DELAY", "10"),
    // No transparent huge pages: RSS then tracks the memory actually in use.
    ("MIMALLOC_ALLOW_THP", "0"),
];

fn pid_path(ws: &Workspace) -> PathBuf {
    ws.dir.join(PID_FILE)
}
fn status_path(ws: &Workspace) -> PathBuf {
    ws.dir.join(STATUS_FILE)
}
pub fn log_path(ws: &Workspace) -> PathBuf {
    ws.dir.join(LOG_FILE)
}

/// Whether `pid` is a live `dbx serve` process (a zombie or a recycled pid is not).
fn alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    if Path::new("/proc/self").exists() {
        match std::fs::read(format!("/proc/{pid}/cmdline")) {
            Ok(cmdline) => cmdline.split(|b| *b == 0).any(|arg| arg == b"serve"),
            Err(_) => false,
        }
    } else {
        // kill(pid, 0): no signal sent, only the existence check.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
    }
}

/// The pid of the workspace's live daemon, if any.
pub fn running_pid(ws: &Workspace) -> Option<u32> {
    let text = std::fs::read_to_string(pid_path(ws)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// The daemon's resident memory in bytes (VmRSS), where `/proc` says.
fn resident_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The live daemon's status record, if it is running and has written one.
pub fn running_status(ws: &Workspace) -> Option<DaemonStatus> {
    let pid = running_pid(ws)?;
    read_status(ws).filter(|s| s.pid == pid)
}

fn read_status(ws: &Workspace) -> Option<DaemonStatus> {
    let text = std::fs::read_to_string(status_path(ws)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Where a client should connect: the running daemon's recorded address, else the config's;
/// an unspecified bind address (0.0.0.0, ::) becomes loopback.
pub fn client_addr(ws: &Workspace) -> SocketAddr {
    let recorded = running_status(ws).and_then(|s| s.addr.parse::<SocketAddr>().ok());
    let addr = recorded.unwrap_or_else(|| {
        let ip = ws
            .config
            .bind_addr
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        SocketAddr::new(ip, ws.config.port)
    });
    connectable(addr)
}

fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

fn remove_runtime_files(ws: &Workspace, pid: u32) {
    let recorded = std::fs::read_to_string(pid_path(ws))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok());
    if recorded == Some(pid) || recorded.is_none() {
        let _ = std::fs::remove_file(pid_path(ws));
        let _ = std::fs::remove_file(status_path(ws));
    }
}

fn parse_restrict(text: Option<&str>) -> Result<RestrictMode> {
    match text {
        None => Ok(RestrictMode::default()),
        Some(t) => RestrictMode::parse(t).ok_or_else(|| {
            CliError::usage(format!(
                "unknown restrict mode {t:?}; use off, default or strict"
            ))
        }),
    }
}

fn already_running(ws: &Workspace, pid: u32) -> CliError {
    let addr = read_status(ws)
        .filter(|s| s.pid == pid)
        .map(|s| s.addr)
        .unwrap_or_else(|| "an unknown address".into());
    CliError::general(format!(
        "EventDBX is already running (pid {pid}) on {addr}; use `dbx serve stop` first"
    ))
}

/// Applies `--port` / `--data-dir` to this run only.
fn apply_overrides(ws: &mut Workspace, options: &StartOptions) -> Result<()> {
    if let Some(port) = options.port {
        ws.config.port = port;
    }
    if let Some(dir) = &options.data_dir {
        ws.config.data_dir = absolute(dir)?;
        let data = ws.data_dir();
        for legacy in ["tenants", "domains"] {
            if data.join(legacy).is_dir() {
                return Err(CliError::general(format!(
                    "{} holds extra tenant/domain directories (`{legacy}/`). {MIGRATION_ADVICE}",
                    data.display()
                )));
            }
        }
    }
    ws.config.validate()?;
    Ok(())
}

/// `dbx serve start`.
pub fn start(options: &StartOptions) -> Result<()> {
    let restrict = parse_restrict(options.restrict.as_deref())?;
    if options.foreground {
        run_foreground(options, restrict)
    } else {
        start_background(options, restrict)
    }
}

/// Runs the server in this process until SIGTERM or Ctrl-C.
fn run_foreground(options: &StartOptions, restrict: RestrictMode) -> Result<()> {
    let cwd = current_dir()?;
    let mut ws = discover_or_auto_init(&cwd)?;
    if let Some(pid) = running_pid(&ws).filter(|p| *p != std::process::id()) {
        return Err(already_running(&ws, pid));
    }
    apply_overrides(&mut ws, options)?;
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| io_error("cannot start the async runtime", e))?;
    runtime.block_on(serve(ws, restrict))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVENTDBX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn serve(ws: Workspace, restrict: RestrictMode) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a SIGTERM that arrives during start-up still shuts down cleanly.
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| io_error("cannot install the SIGTERM handler", e))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| io_error("cannot install the SIGINT handler", e))?;
    let server = Server::start(ServerOptions {
        workspace: ws.clone(),
        restrict,
        listen: None,
    })
    .await
    .map_err(|e| start_error(&ws, &e.to_string()))?;
    let addr = server
        .local_addr()
        .map_err(|e| io_error("cannot read the listening address", e))?;
    let pid = std::process::id();
    let status = DaemonStatus {
        pid,
        addr: addr.to_string(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        version: env!("CARGO_PKG_VERSION").into(),
        restrict: restrict.as_str().into(),
    };
    let status_json = serde_json::to_vec_pretty(&status)
        .map_err(|e| CliError::general(format!("cannot encode the status file: {e}")))?;
    // The pid file first: whoever sees serve.json can rely on serve.pid.
    eventdbx::config::write_private_file(&pid_path(&ws), format!("{pid}\n").as_bytes())
        .map_err(|e| io_error(format!("cannot write {}", pid_path(&ws).display()), e))?;
    eventdbx::config::write_private_file(&status_path(&ws), &status_json)
        .map_err(|e| io_error(format!("cannot write {}", status_path(&ws).display()), e))?;
    outln!(
        "EventDBX listening on {addr} (restrict: {})",
        restrict.as_str()
    );
    let _ = std::io::stdout().flush();
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutdown requested; finishing in-flight work");
    };
    let result = server.run_until(shutdown).await;
    remove_runtime_files(&ws, pid);
    match result {
        Ok(()) => {
            outln!("EventDBX stopped");
            Ok(())
        }
        Err(e) => Err(CliError::general(format!(
            "EventDBX stopped with an error: {e}"
        ))),
    }
}

fn start_error(ws: &Workspace, message: &str) -> CliError {
    let hint = if message.contains("Address already in use") || message.contains("cannot listen") {
        format!(
            "; another program may hold the port: choose another with `dbx config --port N` (now {})",
            ws.config.port
        )
    } else if message.contains("LOCK") || message.contains("lock") {
        "; another process holds the store open (is another daemon using this data directory?)"
            .into()
    } else {
        String::new()
    };
    CliError::general(format!("cannot start EventDBX: {message}{hint}"))
}

/// Starts `dbx serve start --foreground` detached, then waits until it accepts connections.
fn start_background(options: &StartOptions, restrict: RestrictMode) -> Result<()> {
    let cwd = current_dir()?;
    let ws = discover_or_auto_init(&cwd)?;
    if let Some(pid) = running_pid(&ws) {
        return Err(already_running(&ws, pid));
    }
    // Check the overrides here, so a bad value fails before anything is spawned.
    let mut checked = ws.clone();
    apply_overrides(&mut checked, options)?;
    let _ = std::fs::remove_file(pid_path(&ws));
    let _ = std::fs::remove_file(status_path(&ws));

    let log = log_path(&ws);
    let mut log_file = open_log(&log)?;
    let log_start = log_file.seek(std::io::SeekFrom::End(0)).unwrap_or(0);
    let _ = writeln!(
        log_file,
        "--- {} dbx serve start (restrict: {})",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        restrict.as_str()
    );
    let stderr_file = log_file
        .try_clone()
        .map_err(|e| io_error(format!("cannot open {}", log.display()), e))?;
    let exe = std::env::current_exe().map_err(|e| io_error("cannot find the dbx executable", e))?;
    let mut command = std::process::Command::new(exe);
    command.args([
        "serve",
        "start",
        "--foreground",
        "--restrict",
        restrict.as_str(),
    ]);
    if let Some(port) = options.port {
        command.args(["--port", &port.to_string()]);
    }
    if let Some(dir) = &options.data_dir {
        command.arg("--data-dir").arg(absolute(dir)?);
    }
    for (name, value) in DAEMON_ALLOCATOR_ENV {
        if std::env::var_os(name).is_none() {
            command.env(name, value);
        }
    }
    // Run from the directory holding .dbx so the daemon discovers this same workspace.
    let root = ws
        .dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cwd.clone());
    {
        use std::os::unix::process::CommandExt;
        command
            .current_dir(&root)
            .stdin(std::process::Stdio::null())
            .stdout(log_file)
            .stderr(stderr_file)
            .process_group(0);
    }
    let mut child = command
        .spawn()
        .map_err(|e| io_error("cannot start the daemon process", e))?;
    let pid = child.id();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(exit_status)) = child.try_wait() {
            let reason = last_error_line(&log, log_start)
                .unwrap_or_else(|| format!("the daemon exited ({exit_status})"));
            return Err(CliError::general(format!(
                "EventDBX failed to start: {reason} (log: {})",
                log.display()
            )));
        }
        if let Some(status) = read_status(&ws).filter(|s| s.pid == pid) {
            if let Ok(addr) = status.addr.parse::<SocketAddr>() {
                if TcpStream::connect_timeout(&connectable(addr), Duration::from_millis(200))
                    .is_ok()
                {
                    outln!(
                        "EventDBX started in the background (pid {pid}), listening on {} (restrict: {})",
                        status.addr, status.restrict
                    );
                    outln!("log: {}", log.display());
                    outln!("stop it with `dbx serve stop`");
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(CliError::general(format!(
                "EventDBX (pid {pid}) did not accept connections within {} s; it may still be starting: check `dbx serve status` and {}",
                START_TIMEOUT.as_secs(),
                log.display()
            )));
        }
        std::thread::sleep(POLL);
    }
}

fn open_log(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(format!("cannot open {}", path.display()), e))
}

/// The last `error: …` line the daemon logged since `offset` (without the prefix).
fn last_error_line(log: &Path, offset: u64) -> Option<String> {
    let mut file = std::fs::File::open(log).ok()?;
    file.seek(std::io::SeekFrom::Start(offset)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .or_else(|| lines.last().copied())
        .map(str::to_owned)
}

/// What stopping found.
#[derive(Debug)]
pub enum Stopped {
    NotRunning,
    Stopped { pid: u32, took: Duration },
}

/// Sends SIGTERM and waits for the daemon to finish in-flight work and exit.
pub fn stop_daemon(ws: &Workspace) -> Result<Stopped> {
    let Some(pid) = running_pid(ws) else {
        // A crashed daemon may have left its files behind.
        let _ = std::fs::remove_file(pid_path(ws));
        let _ = std::fs::remove_file(status_path(ws));
        return Ok(Stopped::NotRunning);
    };
    let started = Instant::now();
    let target = nix::unistd::Pid::from_raw(pid as i32);
    match nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => {
            return Err(CliError::general(format!(
                "cannot signal the daemon (pid {pid}): {e}"
            )))
        }
    }
    while alive(pid) {
        if started.elapsed() >= STOP_TIMEOUT {
            return Err(CliError::general(format!(
                "EventDBX (pid {pid}) did not stop within {} s; it may still be finishing work: run `dbx serve stop` again, or `kill -9 {pid}` as a last resort",
                STOP_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
    remove_runtime_files(ws, pid);
    Ok(Stopped::Stopped {
        pid,
        took: started.elapsed(),
    })
}

/// `dbx serve stop`.
pub fn stop() -> Result<()> {
    let ws = discover()?;
    match stop_daemon(&ws)? {
        Stopped::NotRunning => outln!(
            "EventDBX is not running (workspace {}); nothing to stop",
            ws.dir.display()
        ),
        Stopped::Stopped { pid, took } => {
            outln!("EventDBX stopped (pid {pid}, {:.1} s)", took.as_secs_f64())
        }
    }
    Ok(())
}

/// `dbx serve restart`: stop if running, then start (keeping the previous restrict mode
/// unless one is given).
pub fn restart(options: &StartOptions) -> Result<()> {
    let ws = discover()?;
    let previous = running_status(&ws).map(|s| s.restrict);
    let mut options = options.clone();
    if options.restrict.is_none() {
        options.restrict = previous;
    }
    parse_restrict(options.restrict.as_deref())?;
    match stop_daemon(&ws)? {
        Stopped::NotRunning => outln!("EventDBX was not running; starting it"),
        Stopped::Stopped { pid, .. } => outln!("EventDBX stopped (pid {pid})"),
    }
    let _ = std::io::stdout().flush();
    start(&options)
}

/// `dbx serve status`: returns the exit code (0 running, 3 not running).
pub fn status(token_flag: Option<&str>, json: bool) -> Result<i32> {
    let ws = discover()?;
    let Some(status) = running_status(&ws) else {
        if json {
            outln!(
                "{}",
                serde_json::json!({"running": false, "workspace": ws.dir.display().to_string()})
            );
        } else {
            outln!(
                "EventDBX is not running (workspace {}); start it with `dbx serve start`",
                ws.dir.display()
            );
        }
        return Ok(exit::NOT_RUNNING);
    };
    let uptime = chrono::DateTime::parse_from_rfc3339(&status.started_at)
        .ok()
        .map(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .num_seconds()
                .max(0) as u64
        });
    let counts = crate::client::server_counts(&ws, token_flag);
    let resident = resident_bytes(status.pid);
    if json {
        let mut out = serde_json::json!({
            "running": true,
            "pid": status.pid,
            "addr": status.addr,
            "started_at": status.started_at,
            "uptime_seconds": uptime,
            "version": status.version,
            "restrict": status.restrict,
            "workspace": ws.dir.display().to_string(),
            "resident_bytes": resident,
        });
        if let (Ok((events, aggregates)), Some(map)) = (&counts, out.as_object_mut()) {
            let number = |text: &String| {
                text.trim()
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| serde_json::Value::String(text.clone()))
            };
            map.insert("event_count".into(), number(events));
            map.insert("aggregate_count".into(), number(aggregates));
        }
        outln!("{out}");
        return Ok(0);
    }
    let mut pairs = vec![
        ("pid", status.pid.to_string()),
        ("address", status.addr.clone()),
        (
            "uptime",
            uptime.map(human_duration).unwrap_or_else(|| "-".into()),
        ),
        ("started", status.started_at.clone()),
        ("version", status.version.clone()),
        ("restrict", status.restrict.clone()),
        ("workspace", ws.dir.display().to_string()),
        (
            "memory",
            resident
                .map(|bytes| format!("{} MiB resident", bytes / (1024 * 1024)))
                .unwrap_or_else(|| "-".into()),
        ),
    ];
    match counts {
        Ok((events, aggregates)) => {
            pairs.push(("events", events));
            pairs.push(("aggregates", aggregates));
        }
        Err(e) => pairs.push(("counts", format!("unavailable: {}", e.message))),
    }
    outln!("EventDBX is running");
    out!("{}", fields(&pairs));
    Ok(0)
}

/// `dbx serve destroy`.
pub fn destroy(yes: bool) -> Result<()> {
    let ws = discover()?;
    let data_dir = ws.data_dir();
    let data_outside = !is_within(&data_dir, &ws.dir);
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(format!(
                "refusing to destroy {} without confirmation; pass --yes",
                ws.dir.display()
            )));
        }
        let what = if data_outside {
            format!(
                "{} (config, keys, tokens; the external data directory {} is kept)",
                ws.dir.display(),
                data_dir.display()
            )
        } else {
            format!("{} (config, keys, tokens and all data)", ws.dir.display())
        };
        eprint!("This permanently deletes {what}. Type 'yes' to continue: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| io_error("cannot read the confirmation", e))?;
        if answer.trim() != "yes" {
            return Err(CliError::general("aborted; nothing was removed"));
        }
    }
    if let Stopped::Stopped { pid, .. } = stop_daemon(&ws)? {
        outln!("EventDBX stopped (pid {pid})");
    }
    std::fs::remove_dir_all(&ws.dir)
        .map_err(|e| io_error(format!("cannot remove {}", ws.dir.display()), e))?;
    outln!("removed the workspace {}", ws.dir.display());
    if data_outside {
        outln!(
            "the data directory {} is outside the workspace and was left in place; delete it yourself if you no longer need it",
            data_dir.display()
        );
    }
    Ok(())
}

fn is_within(path: &Path, dir: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    canon(path).starts_with(canon(dir))
}
