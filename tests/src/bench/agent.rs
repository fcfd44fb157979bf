//! The agent under measurement: the release `coroner` as a child of the bench, on a free
//! loopback port, writing records to a file in the bench's directory. Dropping it stops it
//! (SIGTERM, then SIGKILL); it also dies with the bench (`PR_SET_PDEATHSIG`).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::procfs::{self, ProcSample};
use coroner_tests::exposition::Exposition;
use coroner_tests::http::{self, Response};

const READY_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// How the agent is started.
#[derive(Clone, Debug, Default)]
pub struct AgentConfig {
    /// `--kube on` with this kubeconfig (the API server double); `None`: `--kube off`.
    pub kubeconfig: Option<PathBuf>,
    pub node: Option<String>,
    /// Further flags, after the bench's own (e.g. `--exec-failures off`).
    pub extra_args: Vec<String>,
}

pub struct Agent {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub events: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    /// Starts the agent and returns once `/healthz` answers 200: every probe attached.
    pub fn start(bin: &Path, dir: &Path, name: &str, config: &AgentConfig) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("a free port")?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let events = dir.join(format!("{name}.events.json"));
        let log = dir.join(format!("{name}.log"));
        let _ = fs::remove_file(&events);
        let log_file =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", &addr.to_string(), "--events-json"])
            .arg(&events);
        match &config.kubeconfig {
            Some(kubeconfig) => {
                cmd.args(["--kube", "on"]).env("KUBECONFIG", kubeconfig);
            }
            None => {
                cmd.args(["--kube", "off"]);
            }
        }
        if let Some(node) = &config.node {
            cmd.args(["--node-name", node]);
        }
        cmd.args(&config.extra_args);
        cmd.env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        // SAFETY: prctl(2) only, async-signal-safe: the agent must not outlive the bench.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut agent = Self {
            child: Some(child),
            addr,
            events,
            log,
        };
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(status) = agent
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                agent.child = None;
                bail!(
                    "coroner exited before it was ready ({status}):\n{}",
                    agent.log_tail()
                );
            }
            if http::get(addr, "/healthz").is_ok_and(|r| r.status == 200) {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                bail!(
                    "coroner's /healthz not 200 after {READY_LIMIT:?}:\n{}",
                    agent.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn fetch_metrics(&self) -> Result<Response> {
        let fetched = http::get(self.addr, "/metrics")?;
        if fetched.status != 200 {
            bail!("/metrics answered {}", fetched.status);
        }
        Ok(fetched)
    }

    pub fn metrics(&self) -> Result<Exposition> {
        Ok(Exposition {
            text: self.fetch_metrics()?.body,
        })
    }

    pub fn sample(&self) -> Result<ProcSample> {
        procfs::sample(self.pid())
    }

    /// Waits until the records stop growing (and the 1 s housekeeping that publishes the
    /// kernel's counters has run), so that a loss counted late is still seen.
    pub fn settle(&self, limit: Duration) -> Result<Exposition> {
        let deadline = Instant::now() + limit;
        std::thread::sleep(Duration::from_millis(1_100));
        let mut last = self.metrics()?;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.metrics()?;
            // Counters are integers carried as f64.
            let still = now.records() as u64 == last.records() as u64
                && now.events() as u64 == last.events() as u64;
            last = now;
            if still || Instant::now() > deadline {
                return Ok(last);
            }
        }
    }

    /// SIGTERM, and SIGKILL if it does not exit in time. Returns whether it exited by itself.
    pub fn stop(mut self) -> bool {
        self.shut_down()
    }

    fn shut_down(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shut_down();
    }
}
