//! Label selectors (`matchLabels` + `matchExpressions`) evaluated against an object's labels.
//!
//! Semantics follow `metav1.LabelSelectorAsSelector`: an empty selector matches everything,
//! `In`/`NotIn`/`Exists`/`DoesNotExist` as in
//! <https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#resources-that-support-set-based-requirements>.
//! Controllers never act on an empty selector (the API server's validation rejects one for
//! workloads), see [`is_empty`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// Labels as they appear on an object (`metadata.labels`).
pub type Labels = BTreeMap<String, String>;

/// Whether `labels` satisfy `selector`.
pub fn matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k).is_some_and(|have| have == v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|req| {
            let values = req.values.as_deref().unwrap_or_default();
            let have = labels.get(&req.key);
            match req.operator.as_str() {
                "In" => have.is_some_and(|h| values.contains(h)),
                "NotIn" => have.is_none_or(|h| !values.contains(h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                // An unknown operator selects nothing, as a parse error would upstream.
                _ => false,
            }
        })
}

/// Whether the selector has no requirements at all (it would select every object).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// The selector as a string for a list call's `labelSelector` parameter.
pub fn to_query(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> =
        selector.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default().join(",");
        parts.push(match req.operator.as_str() {
            "In" => format!("{} in ({values})", req.key),
            "NotIn" => format!("{} notin ({values})", req.key),
            "Exists" => req.key.clone(),
            _ => format!("!{}", req.key),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_need_every_pair() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web"), ("tier", "fe")])),
            ..Default::default()
        };
        assert!(matches(&sel, &labels(&[("app", "web"), ("tier", "fe"), ("x", "y")])));
        assert!(!matches(&sel, &labels(&[("app", "web")])));
        assert!(!matches(&sel, &labels(&[("app", "web"), ("tier", "be")])));
    }

    #[test]
    fn match_expressions_follow_set_semantics() {
        let sel = LabelSelector {
            match_expressions: Some(vec![
                req("env", "In", &["prod", "stage"]),
                req("canary", "DoesNotExist", &[]),
                req("zone", "NotIn", &["a"]),
                req("app", "Exists", &[]),
            ]),
            ..Default::default()
        };
        assert!(matches(&sel, &labels(&[("env", "prod"), ("app", "x")])));
        assert!(matches(&sel, &labels(&[("env", "stage"), ("app", "x"), ("zone", "b")])));
        assert!(!matches(&sel, &labels(&[("env", "dev"), ("app", "x")])));
        assert!(!matches(&sel, &labels(&[("env", "prod"), ("app", "x"), ("canary", "1")])));
        assert!(!matches(&sel, &labels(&[("env", "prod"), ("app", "x"), ("zone", "a")])));
        assert!(!matches(&sel, &labels(&[("env", "prod")])));
    }

    #[test]
    fn empty_selector_is_recognised_and_query_is_rendered() {
        assert!(is_empty(&LabelSelector::default()));
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![req("env", "In", &["a", "b"])]),
        };
        assert!(!is_empty(&sel));
        assert_eq!(to_query(&sel), "app=web,env in (a,b)");
    }
}
