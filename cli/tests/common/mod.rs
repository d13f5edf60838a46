//! Helpers for the end-to-end tests: run the built `dbx` binary in a temporary directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built binary.
pub fn dbx_path() -> &'static str {
    env!("CARGO_BIN_EXE_dbx")
}

/// What one run printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the exit code is 0.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the exit code is `code` and stderr holds one `error:` line.
    pub fn fails(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.starts_with("error: "),
            "stderr: {}",
            self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "one line expected: {}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("{ "),
            "{}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// A command for the binary in `dir`, with the CLI's environment variables cleared.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(dbx_path());
    cmd.current_dir(dir)
        .env_remove("EVENTDBX_TOKEN")
        .env_remove("EVENTDBX_AUTO_INIT")
        .env_remove("EVENTDBX_BIND_ADDR")
        .env_remove("EVENTDBX_PORT")
        .stdin(Stdio::null());
    cmd
}

pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    Run::from(command(dir).args(args).output().expect("run dbx"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A temporary project directory; stops its daemon (if any) when dropped.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// `dbx init` plus a free port, so tests can run in parallel.
    pub fn initialized() -> Self {
        let project = Self::new();
        project.run(&["init"]).ok();
        project
            .run(&["config", "--port", &free_port().to_string()])
            .ok();
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn dbx_dir(&self) -> PathBuf {
        self.path().join(".dbx")
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_in(self.path(), args)
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = command(self.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.args(args).output().expect("run dbx"))
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path().join(relative)).unwrap_or_default()
    }

    pub fn cli_token(&self) -> String {
        self.read(".dbx/cli.token").trim().to_owned()
    }

    pub fn status_json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.read(".dbx/serve.json")).ok()
    }

    /// Waits until the daemon has written serve.json (for foreground starts).
    pub fn wait_for_status(&self, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status_json() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not write serve.json in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let pid_file = self.dbx_dir().join("serve.pid");
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            let _ = command(self.path()).args(["serve", "stop"]).output();
            // Last resort if the graceful stop failed.
            if std::fs::metadata(&pid_file).is_ok() {
                let _ = Command::new("kill").args(["-9", text.trim()]).output();
            }
        }
    }
}

/// Whether /proc says `pid` is a live (non-zombie) process.
pub fn pid_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
