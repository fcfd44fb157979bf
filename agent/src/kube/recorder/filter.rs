//! Which deaths get a Kubernetes Event: the types the operator wants (`--events`) and the
//! namespaces (`--namespaces`, `--exclude-namespaces`). Records and metrics are not filtered
//! here: only a pod's own opt-out (`coroner.io/ignore`) removes those.

use std::collections::BTreeSet;

/// `--events`: which deaths are worth an Event on their pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EventTypes {
    /// Abnormal deaths (`Warning` Events) and crash loops; a `Completed` death is not news.
    #[default]
    Warning,
    /// Also a `Normal` Event for each `Completed` death.
    All,
    /// No Events at all (records and metrics are unchanged).
    Off,
}

impl EventTypes {
    /// Whether a death of this kind gets an Event of its own (a crash loop's Event is always a
    /// Warning: it comes with anything but `Off`).
    #[must_use]
    pub fn posts(self, warning: bool) -> bool {
        match self {
            Self::Warning => warning,
            Self::All => true,
            Self::Off => false,
        }
    }
}

/// The namespaces whose pods get Events: those listed (all when none is), minus the excluded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceFilter {
    only: BTreeSet<String>,
    except: BTreeSet<String>,
}

impl NamespaceFilter {
    /// Empty names (a trailing comma in a flag) are ignored.
    #[must_use]
    pub fn new(
        only: impl IntoIterator<Item = String>,
        except: impl IntoIterator<Item = String>,
    ) -> Self {
        let names = |list: &mut dyn Iterator<Item = String>| -> BTreeSet<String> {
            list.map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect()
        };
        Self {
            only: names(&mut only.into_iter()),
            except: names(&mut except.into_iter()),
        }
    }

    #[must_use]
    pub fn admits(&self, namespace: &str) -> bool {
        (self.only.is_empty() || self.only.contains(namespace)) && !self.except.contains(namespace)
    }

    /// Every namespace passes: nothing to check per death.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.only.is_empty() && self.except.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(only: &[&str], except: &[&str]) -> NamespaceFilter {
        let own = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        NamespaceFilter::new(own(only), own(except))
    }

    #[test]
    fn warnings_only_by_default() {
        let types = EventTypes::default();
        assert!(types.posts(true));
        assert!(!types.posts(false));
        assert!(EventTypes::All.posts(false));
        assert!(!EventTypes::Off.posts(true));
    }

    #[test]
    fn no_list_admits_every_namespace() {
        let open = filter(&[], &[]);
        assert!(open.is_open());
        assert!(open.admits("shop") && open.admits("kube-system"));
    }

    #[test]
    fn a_list_admits_only_its_namespaces_and_exclusion_wins() {
        let f = filter(&["shop", "pay", ""], &["pay"]);
        assert!(!f.is_open());
        assert!(f.admits("shop"));
        assert!(!f.admits("pay"), "excluded beats listed");
        assert!(!f.admits("kube-system"), "not listed");
        let f = filter(&[], &["kube-system", " "]);
        assert!(f.admits("shop"));
        assert!(!f.admits("kube-system"));
    }
}
