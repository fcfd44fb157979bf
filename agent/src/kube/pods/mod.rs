//! Pod metadata: the node-scoped pod watch, the pods decoded into the narrow [`PodView`] (once,
//! by the watch), the index by pod uid and container id that lookups read, and the workload
//! behind a pod. The kubelet's publications (`kubelet/`) and the Event recorder (`recorder/`)
//! read the same index.

mod index;
mod lenient;
#[cfg(any(test, feature = "fuzzing"))]
pub mod object_checks;
mod owner;
mod shared;
mod view;
mod watch;

pub(super) use index::{Found, IndexLimits, PodFacts};
pub use owner::{OwnerLimits, OwnerSource};
pub(super) use owner::{OwnerResolver, Workload};
pub(super) use shared::Shared;
pub(super) use view::ContainerSeen;
pub use view::{ContainerKind, IGNORE_ANNOTATION, strip_runtime_prefix};
pub(super) use watch::run as watch;
