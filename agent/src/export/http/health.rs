//! `/livez`, `/readyz` and the legacy `/healthz`: what the kubelet's probes ask.
//!
//! Liveness is "restarting would help": a loop of the pipeline that stopped beating (a thread
//! stuck or gone) is the one thing a restart fixes. Readiness is "records are being made":
//! started (the required probes attached, the pipeline running) and not shutting down. A
//! missing optional probe is neither: the agent runs degraded, says so in both bodies and in
//! `coroner_probe_attached`, and is never restarted for it — on a node without tracefs a
//! restart would fail the same way, every minute. Always open: the kubelet sends no token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::task::AbortHandle;

use super::HttpState;

/// A loop that has not beaten for this long is taken as stuck. The kernel stage beats once a
/// second (its housekeeping); its longest wait is a 100 ms park.
pub const STALE_AFTER: Duration = Duration::from_secs(20);

/// One loop's proof of life. Clones share one value.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    name: &'static str,
    since: Instant,
    /// Milliseconds from `since` to the last beat, plus one (0: never beat).
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    pub fn beat(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms.saturating_add(1), Ordering::Relaxed);
    }

    /// How long ago the last beat was; `None` before the first.
    fn silent_for(&self, now: Instant) -> Option<Duration> {
        let last = self.last_ms.load(Ordering::Relaxed).checked_sub(1)?;
        let at = self.since + Duration::from_millis(last);
        Some(now.saturating_duration_since(at))
    }
}

/// Whether the agent is ready, degraded, alive. Clones share one value.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// `None` when ready, else why not.
    not_ready: Arc<RwLock<Option<String>>>,
    /// What works less well than it could while ready.
    degraded: Arc<RwLock<Option<String>>>,
    /// The loops `/livez` watches once they have beaten once.
    loops: Arc<RwLock<Vec<Heartbeat>>>,
    /// The tasks `/livez` watches: none may end before shutdown.
    tasks: Arc<RwLock<Vec<(&'static str, AbortHandle)>>>,
    stale_after: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::not_ready("starting")
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(PoisonError::into_inner).clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(PoisonError::into_inner) = value;
}

impl Readiness {
    #[must_use]
    pub fn not_ready(reason: impl Into<String>) -> Self {
        Self::with_stale_after(reason, STALE_AFTER)
    }

    /// [`Readiness::not_ready`] with another limit for a silent loop (tests).
    #[must_use]
    pub fn with_stale_after(reason: impl Into<String>, stale_after: Duration) -> Self {
        Self {
            not_ready: Arc::new(RwLock::new(Some(reason.into()))),
            degraded: Arc::new(RwLock::new(None)),
            loops: Arc::new(RwLock::new(Vec::new())),
            tasks: Arc::new(RwLock::new(Vec::new())),
            stale_after,
        }
    }

    pub fn set_degraded(&self, reason: impl Into<String>) {
        write(&self.degraded, Some(reason.into()));
    }

    /// Why the agent runs degraded, if it does.
    #[must_use]
    pub fn degraded(&self) -> Option<String> {
        read(&self.degraded)
    }

    pub fn set_ready(&self) {
        write(&self.not_ready, None);
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        write(&self.not_ready, Some(reason.into()));
    }

    /// `Err(reason)` while not ready (starting, shutting down, or a loop stuck).
    pub fn check(&self) -> Result<(), String> {
        if let Some(reason) = read(&self.not_ready) {
            return Err(reason);
        }
        self.check_live()
    }

    /// A heartbeat for the loop `name`, watched by `/livez` from its first beat on (a loop
    /// that never started is readiness's business: the agent is still starting).
    #[must_use]
    pub fn heartbeat(&self, name: &'static str) -> Heartbeat {
        let heartbeat = Heartbeat {
            name,
            since: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        };
        self.loops
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(heartbeat.clone());
        heartbeat
    }

    /// Watches a task that runs for the whole life of the agent: its end (a panic) is a
    /// liveness failure.
    pub fn watch_task(&self, name: &'static str, task: AbortHandle) {
        self.tasks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, task));
    }

    /// `Err(reason)` when a loop has been silent for longer than the limit or a watched task
    /// ended.
    pub fn check_live(&self) -> Result<(), String> {
        let now = Instant::now();
        let mut stuck: Vec<String> = read(&self.loops)
            .iter()
            .filter_map(|h| {
                let silent = h.silent_for(now)?;
                (silent > self.stale_after)
                    .then(|| format!("{} silent for {}s", h.name, silent.as_secs()))
            })
            .collect();
        stuck.extend(
            read(&self.tasks)
                .iter()
                .filter(|(_, task)| task.is_finished())
                .map(|(name, _)| format!("{name} ended")),
        );
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(format!("loop stuck: {}", stuck.join(", ")))
        }
    }
}

/// 200 while every loop beats, degraded or not; 503 with the stuck loop otherwise.
pub async fn livez(State(state): State<HttpState>) -> Response {
    match state.readiness.check_live() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not live: {reason}\n"),
        )
            .into_response(),
    }
}

/// 200 (`ok`, or `ok, degraded: …`) while records are being made; 503 with the reason
/// otherwise. `/healthz` is the same answer under its old name.
pub async fn readyz(State(state): State<HttpState>) -> Response {
    match state.readiness.check() {
        Ok(()) => match state.readiness.degraded() {
            None => (StatusCode::OK, "ok\n").into_response(),
            Some(why) => (StatusCode::OK, format!("ok, degraded: {why}\n")).into_response(),
        },
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}
