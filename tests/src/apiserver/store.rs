//! The double's objects, their resourceVersions, the watch history and open watches, and a log
//! of what clients asked for.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What an open watch stream is told to do.
#[derive(Debug)]
pub enum WatchMsg {
    /// One JSON line.
    Line(Bytes),
    /// Cut the connection mid-stream (no terminating chunk).
    Abort,
    /// End the stream cleanly, as a server-side timeout does.
    End,
}

/// `fieldSelector` terms: (field, wanted equal?, value).
pub type Selector = Vec<(String, bool, String)>;

pub const SUPPORTED_FIELDS: [&str; 4] = [
    "spec.nodeName",
    "metadata.name",
    "metadata.namespace",
    "status.phase",
];

pub fn parse_selector(s: &str) -> Result<Selector, String> {
    let mut terms = Vec::new();
    for term in s.split(',').filter(|t| !t.is_empty()) {
        let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = term.split_once("==") {
            (f, true, v)
        } else if let Some((f, v)) = term.split_once('=') {
            (f, true, v)
        } else {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{term}'"
            ));
        };
        if !SUPPORTED_FIELDS.contains(&field) {
            return Err(format!("field label not supported: {field}"));
        }
        terms.push((field.to_owned(), eq, value.to_owned()));
    }
    Ok(terms)
}

pub fn matches(selector: &Selector, namespace: Option<&str>, obj: &Value) -> bool {
    if namespace.is_some_and(|ns| obj["metadata"]["namespace"].as_str() != Some(ns)) {
        return false;
    }
    selector.iter().all(|(field, eq, value)| {
        let mut v = obj;
        for part in field.split('.') {
            v = &v[part];
        }
        (v.as_str().unwrap_or_default() == value) == *eq
    })
}

#[derive(Debug)]
pub struct Watcher {
    pub namespace: Option<String>,
    pub selector: Selector,
    pub bookmarks: bool,
    pub tx: mpsc::UnboundedSender<WatchMsg>,
}

/// A change of a pod: (resourceVersion, before, after).
pub type Change = (u64, Option<Value>, Option<Value>);

/// One request a client made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLog {
    pub method: String,
    pub path: String,
    pub query: String,
}

/// An Event request the double answered with success.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRequest {
    pub method: String,
    pub namespace: String,
    pub name: String,
    /// The body as sent (a whole Event for POST, a merge patch for PATCH).
    pub body: Value,
    /// Through events.k8s.io/v1 (else core/v1).
    pub new_api: bool,
    /// When the double answered it.
    pub at: std::time::Instant,
}

#[derive(Debug, Default)]
pub struct Store {
    pub rv: u64,
    pub pods: BTreeMap<(String, String), Value>,
    pub history: VecDeque<Change>,
    /// Changes up to here are forgotten: resuming a watch before it is `410 Gone`.
    pub compacted: u64,
    pub replicasets: HashMap<(String, String), Value>,
    pub jobs: HashMap<(String, String), Value>,
    pub deployments: HashMap<(String, String), Value>,
    /// Requests whose path contains the first string are answered 403 with the second as the
    /// message, as RBAC answers them.
    pub forbidden: Vec<(String, String)>,
    pub watchers: Vec<Watcher>,
    /// Stored Events (events.k8s.io/v1 and core/v1 alike), as they are after patches.
    pub events: BTreeMap<(String, String), Value>,
    /// Changes of Events, for watches resumed from a resourceVersion.
    pub event_history: VecDeque<Change>,
    pub event_watchers: Vec<super::event_api::EventWatcher>,
    pub event_requests: Vec<EventRequest>,
    pub requests: Vec<RequestLog>,
    /// List pages still to serve: token → (resourceVersion of the list, items left).
    pub continues: HashMap<String, (u64, Vec<Value>)>,
    pub next_continue: u64,
    pub fail_events: bool,
    /// The next request with a `continue` token gets `410 Gone` (as after a compaction).
    pub expire_next_continue: bool,
    /// Pod lists and watches are answered with this status (a `Status` body) while set.
    pub fail_pods: Option<u16>,
    /// Pod lists and watches wait this long before they are answered, while set.
    pub delay_pods: Option<std::time::Duration>,
    /// Tokens, grants and the `TokenReview`s and `SubjectAccessReview`s answered.
    pub access: super::access_review::AccessReviews,
}

/// History kept for resuming watches; older changes are compacted away like etcd's.
const HISTORY: usize = 10_000;

impl Store {
    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores `obj` (uid and resourceVersion filled in) and tells the watches.
    pub fn put_pod(&mut self, mut obj: Value) -> Value {
        let rv = self.next_rv();
        let key = key_of(&obj);
        let before = self.pods.get(&key).cloned();
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        if meta["uid"].is_null() {
            meta["uid"] = json!(format!("uid-{}-{}", key.0, key.1));
        }
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = json!("2026-11-22T12:00:00Z");
        }
        self.pods.insert(key, obj.clone());
        self.record((rv, before, Some(obj.clone())));
        obj
    }

    pub fn delete_pod(&mut self, namespace: &str, name: &str) -> Option<Value> {
        let mut obj = self.pods.remove(&(namespace.to_owned(), name.to_owned()))?;
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record((rv, Some(obj.clone()), None));
        Some(obj)
    }

    fn record(&mut self, change: Change) {
        self.watchers.retain(|w| match watch_line(w, &change) {
            Some(line) => w.tx.send(WatchMsg::Line(line)).is_ok(),
            None => !w.tx.is_closed(),
        });
        self.history.push_back(change);
        while self.history.len() > HISTORY {
            if let Some((rv, ..)) = self.history.pop_front() {
                self.compacted = rv;
            }
        }
    }

    /// Stores an Event (its resourceVersion filled in) and tells the Event watches.
    pub fn put_event(&mut self, key: (String, String), mut event: Value) -> Value {
        let rv = self.next_rv();
        event["metadata"]["resourceVersion"] = json!(rv.to_string());
        let before = self.events.insert(key, event.clone());
        self.event_watchers.retain(|w| {
            match super::event_api::watch_line(w, before.as_ref(), Some(&event)) {
                Some(line) => w.tx.send(WatchMsg::Line(line)).is_ok(),
                None => !w.tx.is_closed(),
            }
        });
        self.event_history
            .push_back((rv, before, Some(event.clone())));
        while self.event_history.len() > HISTORY {
            self.event_history.pop_front();
        }
        event
    }

    /// Forgets the history: a watch resuming from an older resourceVersion gets `410 Gone`.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn bookmark(&mut self) {
        let line = line(&json!({
            "type": "BOOKMARK",
            "object": {"kind": "Pod", "apiVersion": "v1",
                       "metadata": {"resourceVersion": self.rv.to_string()}},
        }));
        self.watchers
            .retain(|w| !w.bookmarks || w.tx.send(WatchMsg::Line(line.clone())).is_ok());
    }

    /// Sends `msg` to every open watch and forgets them.
    pub fn close_watches(&mut self, msg: impl Fn() -> WatchMsg) {
        for w in self.watchers.drain(..) {
            let _ = w.tx.send(msg());
        }
    }

    pub fn open_watches(&self) -> usize {
        self.watchers.iter().filter(|w| !w.tx.is_closed()).count()
    }
}

pub fn key_of(obj: &Value) -> (String, String) {
    let meta = &obj["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("default").to_owned(),
        meta["name"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The line a watch sees for a change: an object that starts matching its selector is ADDED,
/// one that stops matching is DELETED, as the API server does.
pub fn watch_line(w: &Watcher, (_, before, after): &Change) -> Option<Bytes> {
    let was = before
        .as_ref()
        .is_some_and(|o| matches(&w.selector, w.namespace.as_deref(), o));
    let is = after
        .as_ref()
        .is_some_and(|o| matches(&w.selector, w.namespace.as_deref(), o));
    let (kind, obj) = match (was, is) {
        (false, true) => ("ADDED", after),
        (true, true) => ("MODIFIED", after),
        (true, false) => ("DELETED", if after.is_some() { after } else { before }),
        (false, false) => return None,
    };
    Some(line(&json!({"type": kind, "object": obj})))
}

pub fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// A `Status` object as the API server writes it.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}
