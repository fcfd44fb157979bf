//! A Kubernetes API server double: HTTP/1.1 on 127.0.0.1, speaking the protocol as kube-rs
//! uses it — pod lists with `resourceVersion` and `continue` paging, chunked watch streams
//! (ADDED / MODIFIED / DELETED / BOOKMARK / ERROR lines), `410 Gone` for a resourceVersion it
//! no longer has, `ReplicaSet` and `Job` GETs (whole or `as=PartialObjectMetadata`), Event create
//! and merge-patch with the API server's validation, `TokenReview` and `SubjectAccessReview`
//! with the test's tokens and grants (`access_review`). Tests tell it to drop watches, expire
//! them, go down and come back on the same port, and read back what clients sent.

pub mod access_review;
mod event_api;
mod events;
pub mod fixture;
mod http;
mod labels;
pub mod objects;
mod proxy;
mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;

use store::Store;
pub use store::{EventRequest, RequestLog, WatchMsg};

/// State shared by the connections and the test.
#[derive(Debug)]
pub struct Shared {
    store: Mutex<Store>,
    /// Bumped after every change, for [`ApiServer::wait_until`].
    changed: watch::Sender<u64>,
}

impl Shared {
    /// Reads without waking anyone (conditions of `wait_until` read this way).
    fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.store.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut store);
        drop(store);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        out
    }
}

/// The listener's task and the connections' tasks, while up.
#[derive(Debug)]
struct Running {
    accept: JoinSet<()>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

#[derive(Debug)]
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
    kubeconfig: PathBuf,
}

impl ApiServer {
    /// Listening on a free port. Must run in a Tokio runtime.
    pub fn start() -> std::io::Result<Self> {
        let server = Self::start_down()?;
        server.up()?;
        Ok(server)
    }

    /// With a port of its own, but not listening yet: the API server is down.
    pub fn start_down() -> std::io::Result<Self> {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = probe.local_addr()?;
        drop(probe);
        let kubeconfig = std::env::temp_dir().join(format!(
            "coroner-apiserver-{}-{}.kubeconfig",
            std::process::id(),
            addr.port()
        ));
        std::fs::write(&kubeconfig, kubeconfig_yaml(&format!("http://{addr}")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                // A real API server's resourceVersions are etcd revisions, never "0" (which a
                // watch reads as "from any state", skipping the history).
                store: Mutex::new(Store {
                    rv: 100,
                    compacted: 100,
                    ..Store::default()
                }),
                changed: watch::Sender::new(0),
            }),
            addr,
            running: Mutex::new(None),
            kubeconfig,
        })
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig file whose current context points here (plain HTTP, no credentials).
    #[must_use]
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Starts listening again on the same port.
    pub fn up(&self) -> std::io::Result<()> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.is_some() {
            return Ok(());
        }
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(self.addr)?;
        let listener = socket.listen(1024)?;
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let mut tasks = JoinSet::new();
        let shared = Arc::clone(&self.shared);
        let conns = Arc::clone(&connections);
        tasks.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                let mut conns = conns.lock().unwrap_or_else(PoisonError::into_inner);
                while conns.try_join_next().is_some() {}
                conns.spawn(async move {
                    let service = service_fn(move |req| http::handle(Arc::clone(&shared), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *running = Some(Running {
            accept: tasks,
            connections,
        });
        Ok(())
    }

    /// Closes the listener and every connection, watches included, at once; returns when the
    /// port is closed.
    pub async fn down(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(Running {
            mut accept,
            connections,
        }) = running
        {
            accept.shutdown().await;
            let mut connections =
                std::mem::take(&mut *connections.lock().unwrap_or_else(PoisonError::into_inner));
            connections.shutdown().await;
        }
        self.shared.with(|s| {
            s.watchers.clear();
            s.event_watchers.clear();
        });
    }

    /// Adds or replaces a pod (any `k8s_openapi` object that serialises as one).
    pub fn put_pod(&self, pod: &impl Serialize) -> Value {
        let obj = serde_json::to_value(pod).expect("a k8s-openapi object serialises");
        self.shared.with(|s| s.put_pod(obj))
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.shared.with(|s| s.delete_pod(namespace, name))
    }

    pub fn put_replicaset(&self, rs: &impl Serialize) {
        self.put_other(rs, |s| &mut s.replicasets);
    }

    pub fn put_job(&self, job: &impl Serialize) {
        self.put_other(job, |s| &mut s.jobs);
    }

    pub fn put_deployment(&self, deployment: &impl Serialize) {
        self.put_other(deployment, |s| &mut s.deployments);
    }

    /// Requests whose path contains `path_part` are answered `403 Forbidden` with `message`
    /// (e.g. `pods "x" is forbidden: User "u" cannot get resource "pods/proxy" …`), as RBAC
    /// answers a caller without the permission.
    pub fn forbid(&self, path_part: &str, message: &str) {
        self.shared
            .with(|s| s.forbidden.push((path_part.to_owned(), message.to_owned())));
    }

    /// Takes back every [`Self::forbid`].
    pub fn allow_all(&self) {
        self.shared.with(|s| s.forbidden.clear());
    }

    fn put_other(
        &self,
        obj: &impl Serialize,
        map: impl FnOnce(&mut Store) -> &mut std::collections::HashMap<(String, String), Value>,
    ) {
        let mut obj = serde_json::to_value(obj).expect("a k8s-openapi object serialises");
        self.shared.with(|s| {
            let rv = s.next_rv();
            obj["metadata"]["resourceVersion"] = serde_json::json!(rv.to_string());
            map(s).insert(http::object_key(&obj), obj);
        });
    }

    /// Cuts every open watch mid-stream (the connection closes without the final chunk).
    pub fn drop_watches(&self) {
        self.shared.with(|s| s.close_watches(|| WatchMsg::Abort));
    }

    /// Forgets the history and tells every open watch `410 Gone` (an ERROR event with a 410
    /// Status, then the end of the stream), as after an etcd compaction.
    pub fn expire_watches(&self) {
        self.shared.with(|s| {
            s.compact();
            let gone = serde_json::json!({"type": "ERROR", "object": store::status(
                410, "Expired", "too old resource version")});
            s.close_watches(|| WatchMsg::Line(store::line(&gone)));
        });
    }

    /// Forgets the history: a watch resumed from an older resourceVersion gets `410 Gone`.
    pub fn compact(&self) {
        self.shared.with(Store::compact);
    }

    /// The next list page asked for with a `continue` token is `410 Gone`.
    pub fn expire_next_continue(&self) {
        self.shared.with(|s| s.expire_next_continue = true);
    }

    /// A BOOKMARK at the current resourceVersion to watches that allowed them.
    pub fn bookmark(&self) {
        self.shared.with(Store::bookmark);
    }

    /// Sends `line` as it is (plus a newline) to every open watch, without storing anything:
    /// a malformed or hostile watch event.
    pub fn inject_watch_line(&self, line: &[u8]) {
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        let bytes = bytes::Bytes::from(bytes);
        self.shared.with(|s| {
            s.watchers
                .retain(|w| w.tx.send(WatchMsg::Line(bytes.clone())).is_ok());
        });
    }

    /// Pod lists and watches answer `code` (with a `Status` body) while `Some`.
    pub fn fail_pods(&self, code: Option<u16>) {
        self.shared.with(|s| s.fail_pods = code);
    }

    /// Pod lists and watches are answered only after `delay` while `Some`.
    pub fn delay_pods(&self, delay: Option<Duration>) {
        self.shared.with(|s| s.delay_pods = delay);
    }

    /// Stores an Event the way another component (the kubelet's recorder) creates it, through
    /// either API: a core/v1 or an events.k8s.io/v1 object, namespace and name in its
    /// metadata. Watches of Events see it.
    pub fn publish_event(&self, event: &Value) -> Value {
        let key = http::object_key(event);
        let mut event = event.clone();
        event["metadata"]["namespace"] = serde_json::json!(key.0);
        self.shared.with(|s| s.put_event(key, event))
    }

    /// Open Event watches (core/v1 and events.k8s.io/v1).
    #[must_use]
    pub fn open_event_watches(&self) -> usize {
        self.shared.read(|s| {
            s.event_watchers
                .iter()
                .filter(|w| !w.tx.is_closed())
                .count()
        })
    }

    /// Forgets every stored Event, as the API server does after `--event-ttl`.
    pub fn expire_events(&self) {
        self.shared.with(|s| s.events.clear());
    }

    /// Event requests answer 500 while set.
    pub fn fail_events(&self, fail: bool) {
        self.shared.with(|s| s.fail_events = fail);
    }

    #[must_use]
    pub fn requests(&self) -> Vec<RequestLog> {
        self.shared.read(|s| s.requests.clone())
    }

    /// Requests with this method whose path starts with `prefix`.
    #[must_use]
    pub fn count_requests(&self, method: &str, prefix: &str) -> usize {
        self.shared.read(|s| {
            s.requests
                .iter()
                .filter(|r| r.method == method && r.path.starts_with(prefix))
                .count()
        })
    }

    /// Event requests that succeeded, in order.
    #[must_use]
    pub fn event_requests(&self) -> Vec<EventRequest> {
        self.shared.read(|s| s.event_requests.clone())
    }

    /// Stored Events as core/v1 serves them (whichever API wrote them): what `kubectl
    /// describe` reads.
    #[must_use]
    pub fn core_events(&self) -> Vec<Value> {
        self.shared.read(|s| {
            s.events
                .values()
                .map(|e| event_api::shaped(e, false))
                .collect()
        })
    }

    /// Stored Events as they are now (after patches).
    #[must_use]
    pub fn events(&self) -> Vec<Value> {
        self.shared.read(|s| s.events.values().cloned().collect())
    }

    #[must_use]
    pub fn open_watches(&self) -> usize {
        self.shared.read(Store::open_watches)
    }

    /// Waits (up to `timeout`) until `cond` holds of the double's state; woken by each change
    /// (requests included), no polling.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&ApiServer) -> bool,
    ) -> bool {
        let mut changes = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if cond(self) {
                return true;
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(deadline) => return cond(self),
            }
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn kubeconfig_yaml(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: double
  cluster:
    server: {server}
contexts:
- name: double
  context:
    cluster: double
    user: double
current-context: double
users:
- name: double
  user: {{}}
"
    )
}
