//! A reader of the `OpenMetrics` text exposition, for tests: samples by name and labels, as
//! Prometheus would see them.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub(crate) struct Exposition {
    /// Family name (as in `# TYPE`) → type.
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label key");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

pub(crate) fn parse(text: &str) -> Exposition {
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            types.insert(name.to_owned(), kind.to_owned());
        } else if line.starts_with('#') {
        } else {
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').expect("}"))),
                None => (series, BTreeMap::new()),
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a number"),
            });
        }
    }
    Exposition { types, samples }
}

impl Exposition {
    /// The samples of `name` whose labels include every pair of `labels`.
    pub(crate) fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .collect()
    }

    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(
            found.len(),
            1,
            "exactly one {name}{labels:?}, got {found:?}"
        );
        found[0].value
    }
}
