//! `GET` over plain HTTP/1.1 (the agent's loopback endpoints) and the Prometheus text it
//! returns, read as `name{labels} value` lines.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// One answer and how long it took from connect to the last byte.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub status: u16,
    pub body: String,
    pub elapsed: Duration,
}

pub fn get(addr: SocketAddr, path: &str) -> Result<Fetched> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading {path}"))?;
    let elapsed = started.elapsed();
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("{path}: no end of headers in {} bytes", raw.len());
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{path}: no status in {head:?}"))?;
    let body = &raw[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Fetched {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        elapsed,
    })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            bail!("a chunk size line without its end");
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("chunk size {size_text:?}"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = raw.get(..size).context("a chunk shorter than its size")?;
        out.extend_from_slice(chunk);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
}

/// A `/metrics` body.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub text: String,
}

impl Exposition {
    fn samples(&self) -> impl Iterator<Item = (&str, f64)> {
        self.text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series, value.trim().parse::<f64>().ok()?))
            })
    }

    /// The sum over every series of `name` whose labels contain `label` (`""`: all).
    #[must_use]
    pub fn sum(&self, name: &str, label: &str) -> f64 {
        self.samples()
            .filter(|(series, _)| {
                let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
                metric == name && labels.contains(label)
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// How many series (sample lines) the exposition has.
    #[must_use]
    pub fn series(&self) -> usize {
        self.samples().count()
    }

    /// Every event dropped anywhere: `coroner_events_lost_total`, all stages.
    #[must_use]
    pub fn lost(&self) -> f64 {
        self.sum("coroner_events_lost_total", "")
    }

    /// `coroner_events_lost_total` by stage.
    #[must_use]
    pub fn lost_by_stage(&self) -> std::collections::BTreeMap<String, f64> {
        self.samples()
            .filter_map(|(series, value)| {
                let labels = series.strip_prefix("coroner_events_lost_total{")?;
                let stage = labels.split("stage=\"").nth(1)?.split('"').next()?;
                Some((stage.to_owned(), value))
            })
            .collect()
    }

    /// What each stage lost since `before`; stages that lost nothing are left out.
    #[must_use]
    pub fn lost_since(&self, before: &Exposition) -> Vec<(String, u64)> {
        let before = before.lost_by_stage();
        self.lost_by_stage()
            .into_iter()
            .map(|(stage, n)| {
                let grown = n - before.get(&stage).copied().unwrap_or(0.0);
                (stage, grown as u64)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Kernel events user space handled.
    #[must_use]
    pub fn events(&self) -> f64 {
        self.sum("coroner_events_total", "")
    }

    /// Records made (every verdict, main processes and children).
    #[must_use]
    pub fn records(&self) -> f64 {
        self.sum("coroner_terminations_total", "")
    }
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "the expected sums are small integers, exact in f64: an epsilon would only hide a wrong sum"
)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_by_name_and_label() {
        let e = Exposition {
            text: "# HELP x\ncoroner_events_lost_total{stage=\"kernel\"} 2\n\
                   coroner_events_lost_total{stage=\"json\"} 1\ncoroner_events_total{kind=\"exit\"} 5\n# EOF\n"
                .into(),
        };
        assert_eq!(e.lost(), 3.0);
        assert_eq!(e.sum("coroner_events_lost_total", "stage=\"json\""), 1.0);
        assert_eq!(e.lost_by_stage().get("kernel"), Some(&2.0));
        assert_eq!(e.events(), 5.0);
        assert_eq!(e.series(), 3);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"5\r\nab").is_err());
    }
}
