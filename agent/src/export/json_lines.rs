//! `--events-json`: one termination record per line, on stdout or appended to a file.
//!
//! Records are serialised first and written whole lines at a time (a batch in one `write`
//! when the output takes it), then flushed: a signal between two writes never leaves half a
//! line for the log pipeline.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::record::TerminationRecord;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot open {path} for --events-json")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot serialise the termination record")]
    Serialize(#[from] serde_json::Error),
    #[error("cannot write the termination record to {target}")]
    Write {
        target: String,
        #[source]
        source: io::Error,
    },
}

enum Sink {
    Stdout,
    File(File),
}

/// The `--events-json` output.
pub struct JsonLines {
    sink: Sink,
    /// What was asked for (`-` or the path), for errors and logs.
    target: String,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl JsonLines {
    /// `-` is stdout; anything else is a file opened for appending, created when missing.
    pub fn open(spec: &str) -> Result<Self, ExportError> {
        let sink = if spec == "-" {
            Sink::Stdout
        } else {
            // O_APPEND: every write lands at the end even if another writer (or a log shipper
            // truncating the file) moved it, and a whole-line write is never interleaved.
            // Readable too: the last byte is checked for a torn line (`end_a_torn_line`).
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(spec)
                .map_err(|source| ExportError::Open {
                    path: PathBuf::from(spec),
                    source,
                })?;
            end_a_torn_line(&file).map_err(|source| ExportError::Open {
                path: PathBuf::from(spec),
                source,
            })?;
            Sink::File(file)
        };
        Ok(Self {
            sink,
            target: spec.to_owned(),
        })
    }

    /// Where records go: `-` or the path.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Writes `records`, one line each, with as few writes as the output takes (one, unless
    /// it is short), then flushes. Returns how many records did not make it whole (a record
    /// that cannot be serialised, or lines a failed write cut or never reached) and the
    /// first error, for the caller to count at stage `json`. Lines before a failure stay
    /// whole: a torn last line is ended by the next [`Self::open`].
    pub fn write_batch<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a TerminationRecord>,
    ) -> (usize, Option<ExportError>) {
        let mut buffer = Vec::new();
        let mut line_ends = Vec::new();
        let (mut lost, mut first_error) = (0, None);
        for record in records {
            match serde_json::to_writer(&mut buffer, record) {
                Ok(()) => {
                    buffer.push(b'\n');
                    line_ends.push(buffer.len());
                }
                Err(e) => {
                    buffer.truncate(line_ends.last().copied().unwrap_or(0));
                    lost += 1;
                    first_error.get_or_insert(ExportError::Serialize(e));
                }
            }
        }
        if buffer.is_empty() {
            return (lost, first_error);
        }
        let mut written = 0;
        let result = match &mut self.sink {
            Sink::Stdout => write_counting(&mut io::stdout().lock(), &buffer, &mut written),
            Sink::File(file) => write_counting(file, &buffer, &mut written),
        };
        if let Err(source) = result {
            lost += line_ends.iter().filter(|&&end| end > written).count();
            first_error.get_or_insert(ExportError::Write {
                target: self.target.clone(),
                source,
            });
        }
        (lost, first_error)
    }

    /// [`Self::write_batch`] of one record.
    pub fn write(&mut self, record: &TerminationRecord) -> Result<(), ExportError> {
        match self.write_batch([record]) {
            (_, Some(error)) => Err(error),
            (_, None) => Ok(()),
        }
    }
}

/// `write_all` that says how far it got, then a flush.
fn write_counting(out: &mut impl Write, mut bytes: &[u8], written: &mut usize) -> io::Result<()> {
    while !bytes.is_empty() {
        match out.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *written += n;
                bytes = &bytes[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.flush()
}

/// A file whose last line has no end — a writer killed mid-write, a full disk, a power cut —
/// gets its newline now, so the first record of this run starts a line of its own instead
/// of being glued to the torn one (which stays, unparseable, for a person to see).
fn end_a_torn_line(file: &File) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let len = file.metadata()?.len();
    if len == 0 || !file.metadata()?.is_file() {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] != b'\n' {
        (&*file).write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;

    use super::*;
    use crate::export::recent::tests::record;
    use crate::record::{ExecFailure, Reason};

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("coroner-json-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    fn lines(path: &std::path::Path) -> Vec<TerminationRecord> {
        let file = File::open(path).expect("open output");
        io::BufReader::new(file)
            .lines()
            .map(|l| serde_json::from_str(&l.expect("read line")).expect("every line parses"))
            .collect()
    }

    #[test]
    fn writes_one_parsable_line_per_record_and_appends_on_reopen() {
        let path = temp_path("append.jsonl");
        let spec = path.to_str().expect("utf-8 temp path");
        let mut first = record(Some("ns"), Some("web"), 10);
        first.reason = Reason::CommandNotFound;
        first.exec_failure = Some(ExecFailure {
            path: "/bin/nope \"quoted\"\nnewline".into(),
            errno: "ENOENT".into(),
            pid: 11,
        });
        {
            let mut out = JsonLines::open(spec).expect("open creates the file");
            out.write(&first).expect("write");
            out.write(&record(None, None, 20)).expect("write");
        }
        // Reopening must append, not truncate.
        let mut out = JsonLines::open(spec).expect("reopen");
        out.write(&record(Some("ns"), Some("db"), 30))
            .expect("write");

        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with('\n'), "the last line is whole");
        assert_eq!(text.lines().count(), 3);
        let records = lines(&path);
        assert_eq!(
            records.iter().map(|r| r.pid).collect::<Vec<_>>(),
            [10, 20, 30]
        );
        assert_eq!(records[0], first);
        let raw: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(raw["reason"], "CommandNotFound");
        assert_eq!(raw["exec_failure"]["errno"], "ENOENT");
        assert!(raw["namespace"].is_string());
        let second: serde_json::Value =
            serde_json::from_str(text.lines().nth(1).expect("a line")).expect("json");
        assert!(
            second["namespace"].is_null(),
            "unknown metadata is null in JSON"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_unopenable_path_is_an_error_not_a_panic() {
        let err = JsonLines::open("/proc/definitely/not/here.jsonl").expect_err("must fail");
        assert!(matches!(err, ExportError::Open { .. }));
        assert!(err.to_string().contains("/proc/definitely/not/here.jsonl"));
    }

    #[test]
    fn a_failing_write_is_reported() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let mut out = JsonLines::open("/dev/full").expect("open /dev/full");
        let err = out
            .write(&record(Some("ns"), Some("p"), 1))
            .expect_err("ENOSPC");
        assert!(matches!(err, ExportError::Write { .. }));
    }

    #[test]
    fn stdout_is_dash() {
        let out = JsonLines::open("-").expect("stdout");
        assert_eq!(out.target(), "-");
        assert!(matches!(out.sink, Sink::Stdout));
    }
}
