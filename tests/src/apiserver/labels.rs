//! `labelSelector` as the API server reads it (`k8s.io/apimachinery/pkg/labels`): `k=v`,
//! `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

pub type LabelSelector = Vec<Requirement>;

/// The terms of `s`; an error message for what the API server would refuse.
pub fn parse(s: &str) -> Result<LabelSelector, String> {
    let mut terms = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| term(t).ok_or_else(|| format!("unable to parse requirement: {t:?}")))
        .collect()
}

fn term(t: &str) -> Option<Requirement> {
    let set = |rest: &str| -> Option<Vec<String>> {
        let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
        Some(inner.split(',').map(|v| v.trim().to_owned()).collect())
    };
    if let Some((k, v)) = t.split_once("!=") {
        return Some(Requirement::NotIn(k.trim().into(), vec![v.trim().into()]));
    }
    if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
        return Some(Requirement::In(k.trim().into(), vec![v.trim().into()]));
    }
    if let Some((k, rest)) = t.split_once(" notin ") {
        return Some(Requirement::NotIn(k.trim().into(), set(rest)?));
    }
    if let Some((k, rest)) = t.split_once(" in ") {
        return Some(Requirement::In(k.trim().into(), set(rest)?));
    }
    if let Some(k) = t.strip_prefix('!') {
        return Some(Requirement::DoesNotExist(k.trim().into()));
    }
    (!t.contains(' ')).then(|| Requirement::Exists(t.into()))
}

/// Whether the object's `metadata.labels` satisfy every term.
pub fn matches(selector: &LabelSelector, obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    let get = |k: &str| labels[k].as_str();
    selector.iter().all(|r| match r {
        Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|w| w == v)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|w| w == v)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::DoesNotExist(k) => get(k).is_none(),
    })
}
