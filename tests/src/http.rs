//! The suite's one HTTP client (tests and benchmark): one exchange per connection
//! (`Connection: close`), so an answer ends when the server closes; a chunked body (what an
//! HTTP/1.1 scraper such as Prometheus gets from the streamed `/metrics`) is joined.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

const CONNECT_LIMIT: Duration = Duration::from_secs(2);
/// A `/metrics` of 100k series takes seconds on a loaded 2-core machine.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// An HTTP answer: status, body, and how long it took from connect to the last byte.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub elapsed: Duration,
}

/// `GET path` on `addr`, as an HTTP/1.1 scraper asks.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response> {
    let answer = exchange_bytes(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .with_context(|| format!("GET {path}"))?;
    let chunked = answer.head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(&answer.body).with_context(|| format!("GET {path}"))?
    } else {
        answer.body
    };
    Ok(Response {
        status: answer.status,
        body: String::from_utf8(body).context("HTTP body is not UTF-8")?,
        elapsed: answer.elapsed,
    })
}

/// Sends `raw` as is (a request of the caller's making, any method) and reads the answer;
/// the body as it came on the wire.
pub fn exchange(addr: SocketAddr, raw: &str) -> Result<Response> {
    let answer = exchange_bytes(addr, raw)?;
    Ok(Response {
        status: answer.status,
        body: String::from_utf8(answer.body).context("HTTP body is not UTF-8")?,
        elapsed: answer.elapsed,
    })
}

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
    elapsed: Duration,
}

fn exchange_bytes(addr: SocketAddr, raw: &str) -> Result<Answer> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_LIMIT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(READ_LIMIT))?;
    stream.write_all(raw.as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let elapsed = started.elapsed();
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no end of head in {} bytes", answer.len());
    };
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok(Answer {
        status,
        head,
        body: answer[split + 4..].to_vec(),
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

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"5\r\nab").is_err());
    }
}
