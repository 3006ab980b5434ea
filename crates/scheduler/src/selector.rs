//! Matching labels against label selectors (pods) and node selector terms (nodes).
//!
//! Semantics follow upstream: an empty `LabelSelector` matches everything, a missing one
//! (`None`) matches nothing in affinity terms; a `NodeSelectorTerm` with no requirements
//! matches nothing; terms are ORed, requirements inside a term are ANDed. An unknown operator
//! or a malformed `Gt`/`Lt` value makes the requirement fail instead of panicking.
//! <https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors>

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object, as the API returns them.
pub type Labels = BTreeMap<String, String>;

/// Does `selector` match `labels`? (`matchLabels` and `matchExpressions`, ANDed.)
pub fn label_selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let labels_ok = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|req| {
            requirement_matches(
                &req.operator,
                &req.key,
                req.values.as_deref().unwrap_or(&[]),
                labels,
            )
        })
}

/// Does a node with `labels` and `name` match any of `terms`? (`matchFields` supports
/// `metadata.name`, the only field upstream allows.)
pub fn node_selector_terms_match(terms: &[NodeSelectorTerm], labels: &Labels, name: &str) -> bool {
    terms.iter().any(|term| node_selector_term_matches(term, labels, name))
}

/// Does one term match? A term without any requirement matches nothing.
pub fn node_selector_term_matches(term: &NodeSelectorTerm, labels: &Labels, name: &str) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|req| node_requirement_matches(req, labels))
        && fields.iter().all(|req| {
            req.key == "metadata.name" && {
                let field = Labels::from([(req.key.clone(), name.to_string())]);
                node_requirement_matches(req, &field)
            }
        })
}

fn node_requirement_matches(req: &NodeSelectorRequirement, labels: &Labels) -> bool {
    requirement_matches(&req.operator, &req.key, req.values.as_deref().unwrap_or(&[]), labels)
}

/// `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`.
fn requirement_matches(operator: &str, key: &str, values: &[String], labels: &Labels) -> bool {
    let value = labels.get(key);
    match operator {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| values.iter().all(|x| x != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            // Exactly one integer value is required; anything else never matches.
            let (Some(label), [bound]) = (value, values) else {
                return false;
            };
            match (label.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(l), Ok(b)) if operator == "Gt" => l > b,
                (Ok(l), Ok(b)) => l < b,
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn node_requirements_table() {
        let node = labels(&[("zone", "a"), ("cores", "8")]);
        let cases = [
            (req("zone", "In", &["a", "b"]), true),
            (req("zone", "In", &["b"]), false),
            (req("zone", "NotIn", &["b"]), true),
            (req("zone", "NotIn", &["a"]), false),
            (req("gpu", "NotIn", &["x"]), true),
            (req("zone", "Exists", &[]), true),
            (req("gpu", "Exists", &[]), false),
            (req("gpu", "DoesNotExist", &[]), true),
            (req("zone", "DoesNotExist", &[]), false),
            (req("cores", "Gt", &["4"]), true),
            (req("cores", "Gt", &["8"]), false),
            (req("cores", "Lt", &["16"]), true),
            (req("zone", "Gt", &["1"]), false),
            (req("cores", "Gt", &["x"]), false),
            (req("cores", "Gt", &["1", "2"]), false),
            (req("zone", "Bogus", &["a"]), false),
        ];
        for (requirement, want) in cases {
            assert_eq!(node_requirement_matches(&requirement, &node), want, "{requirement:?}");
        }
    }

    #[test]
    fn empty_term_matches_nothing_and_fields_match_name() {
        let node = labels(&[]);
        assert!(!node_selector_term_matches(&NodeSelectorTerm::default(), &node, "n1"));
        let by_name = NodeSelectorTerm {
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
            ..Default::default()
        };
        assert!(node_selector_term_matches(&by_name, &node, "n1"));
        assert!(!node_selector_term_matches(&by_name, &node, "n2"));
    }

    #[test]
    fn label_selector_ands_labels_and_expressions() {
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let mut selector =
            LabelSelector { match_labels: Some(labels(&[("app", "web")])), ..Default::default() };
        assert!(label_selector_matches(&selector, &pod));
        selector.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "NotIn".into(),
            values: Some(vec!["front".into()]),
        }]);
        assert!(!label_selector_matches(&selector, &pod));
        assert!(label_selector_matches(&LabelSelector::default(), &pod));
    }
}
