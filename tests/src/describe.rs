//! The Events of a pod as `kubectl describe pod` prints them (kubectl's `DescribeEvents`:
//! `Type Reason Age From Message`, the age `<last> (x<count> over <first>)` for a repeated
//! Event, `From` the source component or else the reporting controller), from core/v1-shaped
//! Events.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn when(v: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()
}

/// apimachinery's `HumanDuration`, the part a test sees (up to hours).
fn human(d: time::Duration) -> String {
    let s = d.whole_seconds();
    match s {
        ..0 => "0s".to_owned(),
        0..120 => format!("{s}s"),
        120..600 if s % 60 == 0 => format!("{}m", s / 60),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10_800 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

fn since(t: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    t.map_or_else(|| "<unknown>".to_owned(), |t| human(now - t))
}

/// The `Events:` section for these Events (oldest first, as kubectl sorts them).
#[must_use]
pub fn describe_events(events: &[Value], now: OffsetDateTime) -> String {
    let mut rows: Vec<(OffsetDateTime, [String; 5])> = events
        .iter()
        .map(|e| {
            let first_at = when(&e["eventTime"]).or_else(|| when(&e["firstTimestamp"]));
            let first = since(first_at, now);
            let count = e["count"].as_i64().unwrap_or(0);
            let age = if e["series"].is_object() {
                let last = since(when(&e["series"]["lastObservedTime"]), now);
                format!("{last} (x{} over {first})", e["series"]["count"])
            } else if count > 1 {
                let last = since(when(&e["lastTimestamp"]), now);
                format!("{last} (x{count} over {first})")
            } else {
                first
            };
            let text = |v: &Value| v.as_str().unwrap_or_default().trim().to_owned();
            let source = Some(text(&e["source"]["component"]))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| text(&e["reportingComponent"]));
            let at = first_at.unwrap_or(now);
            (
                at,
                [
                    text(&e["type"]),
                    text(&e["reason"]),
                    age,
                    source,
                    text(&e["message"]),
                ],
            )
        })
        .collect();
    if rows.is_empty() {
        return "Events:  <none>\n".to_owned();
    }
    rows.sort_by_key(|(at, _)| *at);
    let header = ["Type", "Reason", "Age", "From", "Message"].map(str::to_owned);
    let rule = ["----", "------", "----", "----", "-------"].map(str::to_owned);
    let table: Vec<[String; 5]> = [header, rule]
        .into_iter()
        .chain(rows.into_iter().map(|(_, r)| r))
        .collect();
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::from("Events:\n");
    for row in &table {
        out.push_str("  ");
        for (i, w) in widths.iter().enumerate() {
            let cell = &row[i];
            out.push_str(cell);
            out.push_str(&" ".repeat(w - cell.chars().count() + 2));
        }
        out.push_str(&row[4]);
        out.push('\n');
    }
    out
}
