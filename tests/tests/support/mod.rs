//! A `coroner` started by hand, for what the harness (`coroner_tests::agent`) does not offer:
//! an `--events-json` of the test's choosing, capabilities taken away before exec, raw HTTP
//! requests. It listens on a free loopback port, and SIGTERM stops it on drop.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use coroner_tests::agent::coroner_bin;
use coroner_tests::cgroups::unique_hex;

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
            .env("NO_COLOR", "1")
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

    /// [`Bare::start`] that must reach `/healthz` 200 (every probe attached).
    pub fn start_ready(args: &[&str]) -> Result<Self> {
        match Self::start(args, None)? {
            Started::Exited { status, log } => bail!("coroner exited ({status}):\n{log}"),
            Started::Answering(bare) => {
                let health = bare.get("/healthz")?;
                if health.0 != 200 {
                    bail!("/healthz {}: {}\n{}", health.0, health.1, bare.log());
                }
                Ok(bare)
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// `GET path` → (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        self.request(&format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.addr
        ))
    }

    /// Sends `raw` as is (HTTP/1.0, so the answer ends with the connection) → (status, body).
    pub fn request(&self, raw: &str) -> Result<(u16, String)> {
        request(self.addr, raw)
    }

    /// SIGTERM; the agent must exit 0 within a few seconds.
    pub fn stop(mut self) -> Result<()> {
        self.shut_down()
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

/// One raw HTTP/1.0 exchange with `addr` → (status, body).
pub fn request(addr: SocketAddr, raw: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(raw.as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of head in {answer:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The value of the first series of `name` in an exposition that carries every one of
/// `labels`.
pub fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (family, inner) = match series.split_once('{') {
                Some((family, rest)) => (family, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let has = |(k, v): &(&str, &str)| inner.split(',').any(|p| p == format!("{k}=\"{v}\""));
            (family == name && labels.iter().all(has))
                .then(|| value.parse().ok())
                .flatten()
        })
}

/// `coroner_events_lost_total{stage}` in an exposition; panics when the series is missing
/// (every stage has one from the start).
pub fn lost(body: &str, stage: &str) -> u64 {
    metric(body, "coroner_events_lost_total", &[("stage", stage)])
        .unwrap_or_else(|| panic!("no coroner_events_lost_total{{stage=\"{stage}\"}} in\n{body}"))
        as u64
}
