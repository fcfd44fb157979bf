//! A `coroner` started by hand, for what [`Agent`](super::Agent) does not offer: an
//! `--events-json` of the test's choosing, capabilities taken away before exec, raw HTTP
//! requests. It listens on a free loopback port, and SIGTERM stops it on drop.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::coroner_bin;
use crate::cgroups::unique_hex;
use crate::http::{self, Response};

const READY_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// Runs in the child between fork and exec: only async-signal-safe calls.
pub type PreExec = fn() -> std::io::Result<()>;

pub struct Bare {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: PathBuf,
}

/// How a start went: `/healthz` answered (200, or 503 with the reason), or the agent exited.
pub enum Started {
    Answering(Bare),
    Exited { status: String, log: String },
}

impl Bare {
    /// `coroner --kube off --listen 127.0.0.1:<free> <args>`, waiting until `/healthz`
    /// answers at all (the caller checks what it says) or the agent exits.
    pub fn start(args: &[&str], pre_exec: Option<PreExec>) -> Result<Started> {
        let dir = std::env::temp_dir().join(format!("coroner-bare-{}", unique_hex(12)));
        fs::create_dir_all(&dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = fs::File::create(dir.join("agent.log"))?;
        let mut cmd = Command::new(coroner_bin());
        cmd.args(["--kube", "off", "--listen", &addr.to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(pre_exec) = pre_exec {
            // SAFETY: the callers' functions make only async-signal-safe calls (prctl).
            unsafe { cmd.pre_exec(pre_exec) };
        }
        let child = cmd.spawn().context("starting coroner")?;
        let mut bare = Self {
            child: Some(child),
            addr,
            dir,
        };
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(status) = bare
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bare.child = None;
                return Ok(Started::Exited {
                    status: status.to_string(),
                    log: bare.log(),
                });
            }
            if bare.get("/healthz").is_ok() {
                return Ok(Started::Answering(bare));
            }
            if Instant::now() > deadline {
                bail!("/healthz silent after {READY_LIMIT:?}:\n{}", bare.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Bare::start`] that must reach `/healthz` 200 (the required probes attached).
    pub fn start_ready(args: &[&str]) -> Result<Self> {
        match Self::start(args, None)? {
            Started::Exited { status, log } => bail!("coroner exited ({status}):\n{log}"),
            Started::Answering(bare) => {
                let health = bare.get("/healthz")?;
                if health.status != 200 {
                    bail!(
                        "/healthz {}: {}\n{}",
                        health.status,
                        health.body,
                        bare.log()
                    );
                }
                Ok(bare)
            }
        }
    }

    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// `GET path` on the agent's listener.
    pub fn get(&self, path: &str) -> Result<Response> {
        http::get(self.addr, path)
    }

    /// SIGTERM; the agent must exit 0 within a few seconds.
    pub fn stop(mut self) -> Result<()> {
        self.shut_down()
    }

    /// Sends `signal` and returns how the agent exited; `None` when it had not within
    /// [`STOP_LIMIT`] (then it is killed). The log stays for the caller's messages.
    #[must_use]
    pub fn signal(mut self, signal: i32) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on the child this test started and has not reaped.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn shut_down(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on the child this test started and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("coroner exited with {status}:\n{}", self.log());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "coroner ignored SIGTERM for {STOP_LIMIT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let result = self.shut_down();
        if std::thread::panicking() || result.is_err() {
            eprintln!("coroner's log is kept in {}", self.dir.display());
            if let Err(e) = result
                && !std::thread::panicking()
            {
                panic!("stopping coroner: {e:#}");
            }
            return;
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
