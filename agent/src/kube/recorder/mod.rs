//! Kubernetes Events on the pod: the poster task behind a bounded queue, one Event per death
//! in an Event series with a rate limit, the crash-loop Event that replaces them while a
//! container loops, the note texts, and the operator's filters.

mod crashloop;
mod crashloop_line;
mod crashloop_post;
mod filter;
pub mod message;
mod poster;
mod ratelimit;
mod series;

pub use crashloop::{LOOP_REASON, LoopOptions};
pub(super) use crashloop_line::LoopSample;
pub use filter::{EventTypes, NamespaceFilter};
pub use poster::{ACTION, EventOptions};
pub(super) use poster::{Command, log_unlabelled, pod_reference, run as post};
pub use ratelimit::Rate;
pub(super) use series::Death;
