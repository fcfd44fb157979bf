//! The agent under test: the real `coroner` binary as a child process, standalone, on a free
//! loopback port, writing records to a file of its own that the test tails.
//!
//! [`Agent::start`] returns once `/healthz` answers 200 (every probe attached), so a death
//! the test stages afterwards is seen. [`Agent::stop`] (or drop) sends SIGTERM and checks the
//! contract's shutdown: exit 0 within a few seconds, and a JSON file of whole lines only.

pub mod bare;
pub mod expect;

use std::fs;
use std::io::{Read as _, Seek as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use coroner::record::TerminationRecord;
use serde_json::Value;

use crate::cgroups::unique_hex;
use crate::http::Response;

/// How long the agent may take to attach its probes (a debug build, tests in parallel).
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long SIGTERM → exit may take: detach, flush, close.
const STOP_LIMIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// The `coroner` binary: `CORONER_BIN` (xtask sets the release build), else the workspace's
/// debug build.
#[must_use]
pub fn coroner_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CORONER_BIN") {
        return path.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/coroner")
}

/// One line of `--events-json`: the JSON as written (field names are the contract) and the
/// same record parsed into the agent's type (which proves the times are RFC 3339).
#[derive(Clone, Debug)]
pub struct Record {
    pub json: Value,
    pub record: TerminationRecord,
}

impl Record {
    fn parse(line: &str) -> Result<Self> {
        let json: Value = serde_json::from_str(line)
            .with_context(|| format!("a record line is not JSON: {line}"))?;
        let record = serde_json::from_value(json.clone())
            .with_context(|| format!("a record line is not a record: {line}"))?;
        Ok(Self { json, record })
    }

    /// A field by its contract name; `Value::Null` when absent.
    #[must_use]
    pub fn field(&self, name: &str) -> &Value {
        self.json.get(name).unwrap_or(&Value::Null)
    }

    /// A nested field, e.g. `("oom", "scope")`.
    #[must_use]
    pub fn sub(&self, object: &str, name: &str) -> &Value {
        self.field(object).get(name).unwrap_or(&Value::Null)
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.record.pid
    }

    /// The verdict as written.
    #[must_use]
    pub fn reason(&self) -> &str {
        self.field("reason").as_str().unwrap_or("")
    }

    /// `sigterm_time` in nanoseconds since the epoch.
    #[must_use]
    #[expect(
        clippy::redundant_closure_for_method_calls,
        reason = "naming the method needs the `time` crate"
    )]
    pub fn sigterm_ns(&self) -> Option<i128> {
        self.record.sigterm_time.map(|t| t.unix_timestamp_nanos())
    }

    /// `sigkill_time` in nanoseconds since the epoch.
    #[must_use]
    #[expect(
        clippy::redundant_closure_for_method_calls,
        reason = "naming the method needs the `time` crate"
    )]
    pub fn sigkill_ns(&self) -> Option<i128> {
        self.record.sigkill_time.map(|t| t.unix_timestamp_nanos())
    }
}

/// How to start the agent beyond what [`Agent::start`] does: the Kubernetes side, a node name
/// the test chose (its pods name it), the environment (`KUBECONFIG`), more arguments.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--kube`; `off` when `None`.
    pub kube: Option<String>,
    /// `--node-name`; a fresh `node-<hex>` when `None`.
    pub node: Option<String>,
    /// Set in the agent's environment on top of the test's and the harness's (`RUST_LOG`).
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Appended after the harness's own arguments.
    pub args: Vec<std::ffi::OsString>,
}

/// The running agent. Records are read from its file as they arrive.
pub struct Agent {
    child: Option<Child>,
    dir: PathBuf,
    addr: SocketAddr,
    node: String,
    events: PathBuf,
    /// Bytes of the file already read, and the unfinished last line.
    offset: u64,
    partial: String,
    records: Vec<Record>,
    /// Keep the directory (log, records) for a person: something failed.
    keep: bool,
}

impl Agent {
    /// Starts `coroner --kube off` with a node name of its own and waits until it is ready.
    pub fn start() -> Result<Self> {
        Self::start_with(&Options::default())
    }

    /// Starts `coroner` as `options` say and waits until it is ready.
    pub fn start_with(options: &Options) -> Result<Self> {
        let mut last = None;
        // The free port is chosen by binding and closing it: another process may take it in
        // between, so a bind failure is retried on a new port.
        for _ in 0..3 {
            match Self::try_start(options)? {
                Ok(agent) => return Ok(agent),
                Err(log) if log.contains("Address already in use") => last = Some(log),
                Err(log) => bail!("coroner exited before it was ready:\n{log}"),
            }
        }
        bail!(
            "coroner could not bind a free port:\n{}",
            last.unwrap_or_default()
        )
    }

    /// `Ok(Err(log))`: the agent exited before it was ready.
    fn try_start(options: &Options) -> Result<std::result::Result<Self, String>> {
        let bin = coroner_bin();
        if !bin.exists() {
            bail!(
                "{} is missing: run `cargo build -p coroner` or set CORONER_BIN",
                bin.display()
            );
        }
        let dir = std::env::temp_dir().join(format!("coroner-it-{}", unique_hex(12)));
        fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let node = options
            .node
            .clone()
            .unwrap_or_else(|| format!("node-{}", unique_hex(8)));
        let events = dir.join("events.json");
        let log = fs::File::create(dir.join("agent.log")).context("creating the agent's log")?;
        let child = Command::new(&bin)
            .args([
                "--kube",
                options.kube.as_deref().unwrap_or("off"),
                "--listen",
                &addr.to_string(),
                "--node-name",
                &node,
                "--events-json",
            ])
            .arg(&events)
            .args(&options.args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut agent = Self {
            child: Some(child),
            dir,
            addr,
            node,
            events,
            offset: 0,
            partial: String::new(),
            records: Vec::new(),
            keep: false,
        };
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(status) = agent
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                agent.child = None;
                return Ok(Err(format!("{status}\n{}", agent.log_tail())));
            }
            if agent.get("/healthz").is_ok_and(|r| r.status == 200) {
                return Ok(Ok(agent));
            }
            if Instant::now() > deadline {
                bail!(
                    "/healthz not 200 after {READY_LIMIT:?}:\n{}",
                    agent.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    #[must_use]
    pub fn node(&self) -> &str {
        &self.node
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines of the agent's stderr and stdout, for failure messages.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Reads what the agent appended since the last call; returns every record so far.
    pub fn records(&mut self) -> Result<&[Record]> {
        self.read_new()?;
        Ok(&self.records)
    }

    fn read_new(&mut self) -> Result<()> {
        let Ok(mut file) = fs::File::open(&self.events) else {
            // The agent creates it at start; before that there is nothing to read.
            return Ok(());
        };
        file.seek(std::io::SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        self.partial
            .push_str(&String::from_utf8(bytes).context("the record file is not UTF-8")?);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = line.trim_end_matches('\n');
            if !line.is_empty() {
                self.records.push(Record::parse(line)?);
            }
        }
        Ok(())
    }

    /// Waits until a record satisfies `matches`, polling the file; fails after `limit` with
    /// what was seen and the agent's log.
    pub fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        matches: impl Fn(&Record) -> bool,
    ) -> Result<Record> {
        let deadline = Instant::now() + limit;
        loop {
            self.read_new()?;
            if let Some(found) = self.records.iter().find(|r| matches(r)) {
                return Ok(found.clone());
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .records
                    .iter()
                    .map(|r| {
                        format!(
                            "pid {} {:?} {}",
                            r.record.pid, r.record.reason, r.record.cgroup
                        )
                    })
                    .collect();
                bail!(
                    "no record for {what} within {limit:?}; saw {} records: {seen:#?}\nagent log:\n{}",
                    seen.len(),
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The record of process `pid`, waiting for it.
    pub fn wait_for_pid(&mut self, pid: u32, limit: Duration) -> Result<Record> {
        self.wait_for(&format!("pid {pid}"), limit, |r| r.record.pid == pid)
    }

    /// `GET path` on the agent's listener.
    pub fn get(&self, path: &str) -> Result<Response> {
        crate::http::get(self.addr, path)
    }

    /// SIGTERM, then: exit 0 within [`STOP_LIMIT`], every line of the file whole and a record.
    /// Returns every record the agent wrote.
    pub fn stop(self) -> Result<Vec<Record>> {
        self.stop_with(libc::SIGTERM)
    }

    /// [`Agent::stop`] with another signal (the contract names SIGTERM and SIGINT).
    pub fn stop_with(mut self, signal: i32) -> Result<Vec<Record>> {
        self.shut_down(signal)?;
        Ok(std::mem::take(&mut self.records))
    }

    fn shut_down(&mut self, signal: i32) -> Result<()> {
        let result = self.try_shut_down(signal);
        self.keep |= result.is_err();
        result
    }

    fn try_shut_down(&mut self, signal: i32) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on the agent this harness started (and has not reaped).
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = wait_until(&mut child, STOP_LIMIT)?;
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "coroner did not exit within {STOP_LIMIT:?} of signal {signal}:\n{}",
                self.log_tail()
            );
        };
        if !status.success() {
            bail!(
                "coroner exited with {status} after signal {signal}:\n{}",
                self.log_tail()
            );
        }
        self.read_new()?;
        if !self.partial.is_empty() {
            bail!("the record file ends in a partial line: {:?}", self.partial);
        }
        Ok(())
    }
}

fn wait_until(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let result = self.shut_down(libc::SIGTERM);
        if std::thread::panicking() || self.keep {
            // Keep the evidence of a failed test.
            eprintln!("coroner's files are kept in {}", self.dir.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.dir);
        if let Err(e) = result {
            panic!("stopping coroner: {e:#}");
        }
    }
}
