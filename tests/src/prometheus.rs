//! A real Prometheus (Debian's package, as `cargo xtask test` installs it) scraping one target
//! every second from a data directory of its own, asked through its HTTP API; and `promtool`.
//!
//! Missing tools are an error, never a skip: the suite promises these checks ran.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::cgroups::unique_hex;
use crate::http::{self, Response};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// Prometheus 2.42 on a debug test machine is ready in about a second; the TSDB may replay.
const READY_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// Fails with what to do when `path` (Prometheus or promtool) is not installed.
pub fn require(path: &str) -> Result<()> {
    if Path::new(path).exists() {
        return Ok(());
    }
    bail!(
        "{path} is missing: install Debian's `prometheus` package (`apt-get install -y prometheus`), \
         which `cargo xtask test` does when it is missing; this end-to-end test does not skip"
    )
}

/// One series of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One series of a range query: its values by Unix time.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub values: Vec<(f64, f64)>,
}

/// Prometheus as a child process, killed on drop.
pub struct Prometheus {
    child: Option<Child>,
    dir: PathBuf,
    addr: SocketAddr,
    keep: bool,
}

impl Prometheus {
    /// Scrapes `target`'s `/metrics` every second as job `job`; returns once `/-/ready`.
    pub fn start(job: &str, target: SocketAddr) -> Result<Self> {
        Self::start_jobs(&[(job, target)])
    }

    /// Scrapes each `(job, target)`'s `/metrics` every second; returns once `/-/ready`.
    pub fn start_jobs(jobs: &[(&str, SocketAddr)]) -> Result<Self> {
        require(PROMETHEUS)?;
        let mut last = String::new();
        // A free port is found by binding and closing it; someone may take it in between.
        for _ in 0..3 {
            match Self::try_start(jobs)? {
                Ok(prometheus) => return Ok(prometheus),
                Err(log) if log.contains("address already in use") => last = log,
                Err(log) => bail!("prometheus exited before it was ready:\n{log}"),
            }
        }
        bail!("prometheus could not bind a free port:\n{last}")
    }

    fn try_start(jobs: &[(&str, SocketAddr)]) -> Result<std::result::Result<Self, String>> {
        let dir = std::env::temp_dir().join(format!("coroner-prometheus-{}", unique_hex(12)));
        fs::create_dir_all(dir.join("data")).with_context(|| format!("mkdir {}", dir.display()))?;
        let config = dir.join("prometheus.yml");
        let mut yaml = String::from(
            "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
",
        );
        for (job, target) in jobs {
            let _ = write!(
                yaml,
                "  - job_name: {job}
    static_configs:
      - targets: ['{target}']
"
            );
        }
        fs::write(&config, yaml).context("writing prometheus.yml")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = fs::File::create(dir.join("prometheus.log")).context("creating its log")?;
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {PROMETHEUS}"))?;
        let mut prometheus = Self {
            child: Some(child),
            dir,
            addr,
            keep: false,
        };
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(status) = prometheus
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                prometheus.child = None;
                let log = format!("{status}\n{}", prometheus.log_tail());
                return Ok(Err(log));
            }
            if http::get(addr, "/-/ready").is_ok_and(|r| r.status == 200) {
                return Ok(Ok(prometheus));
            }
            if Instant::now() > deadline {
                prometheus.keep = true;
                bail!(
                    "prometheus not ready after {READY_LIMIT:?}:\n{}",
                    prometheus.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last lines of Prometheus' log, for failure messages.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `GET /api/v1/query?query=…`: the instant vector now.
    pub fn query(&self, promql: &str) -> Result<Vec<Sample>> {
        self.instant(promql, "")
    }

    /// The instant vector at `time` (Unix seconds).
    pub fn query_at(&self, promql: &str, time: f64) -> Result<Vec<Sample>> {
        self.instant(promql, &format!("&time={time:.3}"))
    }

    fn instant(&self, promql: &str, time: &str) -> Result<Vec<Sample>> {
        let path = format!("/api/v1/query?query={}{time}", percent_encode(promql));
        let answer = self.api(promql, &path, "vector")?;
        answer["data"]["result"]
            .as_array()
            .with_context(|| format!("{promql}: no result in {answer}"))?
            .iter()
            .map(|s| sample(promql, s))
            .collect()
    }

    /// `GET /api/v1/query_range`: every series of `promql` evaluated from `start` to `end`
    /// (Unix seconds) every `step` seconds.
    pub fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>> {
        let path = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            percent_encode(promql)
        );
        let answer = self.api(promql, &path, "matrix")?;
        let series = answer["data"]["result"]
            .as_array()
            .with_context(|| format!("{promql}: no result in {answer}"))?;
        series
            .iter()
            .map(|s| {
                let labels = labels(promql, s)?;
                let values = s["values"]
                    .as_array()
                    .with_context(|| format!("{promql}: a series without values: {s}"))?
                    .iter()
                    .map(|point| point_of(promql, point))
                    .collect::<Result<_>>()?;
                Ok(Series { labels, values })
            })
            .collect()
    }

    /// One API answer, `success` with a result of `result_type`.
    fn api(&self, promql: &str, path: &str, result_type: &str) -> Result<Value> {
        let Response { status, body, .. } = http::get(self.addr, path)?;
        let answer: Value = serde_json::from_str(&body)
            .with_context(|| format!("{promql}: answer is not JSON ({status}): {body}"))?;
        if status != 200 || answer["status"] != "success" {
            bail!("{promql}: {status} {answer}");
        }
        if answer["data"]["resultType"] != result_type {
            bail!("{promql}: not a {result_type}: {answer}");
        }
        Ok(answer)
    }

    /// Queries `promql` until `ok` holds of the answer; fails after `limit` with the last one.
    pub fn wait_for(
        &mut self,
        promql: &str,
        limit: Duration,
        ok: impl Fn(&[Sample]) -> bool,
    ) -> Result<Vec<Sample>> {
        let deadline = Instant::now() + limit;
        loop {
            let last = self.query(promql);
            if let Ok(samples) = &last
                && ok(samples)
            {
                return Ok(samples.clone());
            }
            if Instant::now() > deadline {
                self.keep = true;
                bail!(
                    "{promql}: not as expected within {limit:?}; last answer {last:?}\nprometheus log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on the Prometheus this guard started and has not reaped.
        unsafe { libc::kill(child.id().cast_signed(), libc::SIGTERM) };
        let deadline = Instant::now() + STOP_LIMIT;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("prometheus did not exit within {STOP_LIMIT:?} of SIGTERM");
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let stopped = self.stop();
        if std::thread::panicking() || self.keep || stopped.is_err() {
            eprintln!("prometheus's files are kept in {}", self.dir.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn labels(promql: &str, series: &Value) -> Result<BTreeMap<String, String>> {
    Ok(series["metric"]
        .as_object()
        .with_context(|| format!("{promql}: a series without labels: {series}"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect())
}

/// `[unix time, "value"]`: the value is a string, as in every Prometheus answer.
fn point_of(promql: &str, point: &Value) -> Result<(f64, f64)> {
    let time = point[0].as_f64();
    let value = point[1].as_str().and_then(|v| v.parse().ok());
    time.zip(value)
        .with_context(|| format!("{promql}: not a [time, value] point: {point}"))
}

fn sample(promql: &str, series: &Value) -> Result<Sample> {
    let labels = labels(promql, series)?;
    let (_, value) = point_of(promql, &series["value"])?;
    Ok(Sample { labels, value })
}

/// RFC 3986: everything but the unreserved characters is escaped.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What `promtool check metrics` said of an exposition.
#[derive(Clone, Debug)]
pub struct Lint {
    pub success: bool,
    /// Its stdout and stderr: the problems it found, one a line.
    pub output: String,
}

/// `promtool check metrics < exposition`.
pub fn check_metrics(exposition: &str) -> Result<Lint> {
    require(PROMTOOL)?;
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {PROMTOOL}"))?;
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(exposition.as_bytes())
        .context("writing to promtool")?;
    let out = child.wait_with_output().context("waiting for promtool")?;
    Ok(Lint {
        success: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}
