//! PodDisruptionBudget arithmetic: how many of a budget's pods are healthy, how many must be,
//! and how many voluntary disruptions (evictions) are allowed now.
//! <https://kubernetes.io/docs/concepts/workloads/pods/disruptions/#pod-disruption-budgets>
//!
//! Expected pods are the pods the budget selects (upstream derives the count from the owning
//! controllers' scale; for pods owned by the built-in workload controllers the two agree once
//! the controller has caught up).

use crate::selector::LabelSelector;
use serde_json::{json, Value};

/// A budget's numbers, as `status` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Pods the budget covers.
    pub expected_pods: i64,
    /// Of those, Ready and not being deleted.
    pub current_healthy: i64,
    /// How many must stay healthy.
    pub desired_healthy: i64,
    /// Evictions allowed now.
    pub disruptions_allowed: i64,
}

impl Budget {
    /// The `status` fields of a PodDisruptionBudget.
    pub fn status_json(&self, observed_generation: i64) -> Value {
        json!({
            "observedGeneration": observed_generation,
            "expectedPods": self.expected_pods,
            "currentHealthy": self.current_healthy,
            "desiredHealthy": self.desired_healthy,
            "disruptionsAllowed": self.disruptions_allowed,
        })
    }
}

/// Whether the budget's selector selects `pod` (an empty or missing selector selects none, as
/// in policy/v1... except `{}`, which selects every pod in the namespace).
pub fn selects(pdb: &Value, pod: &Value) -> bool {
    if pdb["metadata"]["namespace"] != pod["metadata"]["namespace"] {
        return false;
    }
    let sel = &pdb["spec"]["selector"];
    if sel.is_null() {
        return false;
    }
    LabelSelector::from_object(sel)
        .map(|s| s.matches(pod["metadata"]["labels"].as_object()))
        .unwrap_or(false)
}

fn healthy(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// `IntOrString` against a total: ints as they are, percentages rounded up (as upstream).
fn scaled(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((pct * total + 99) / 100)
        }
        _ => None,
    }
}

/// The budget over `pods` (all pods of the namespace; the selector picks).
pub fn budget(pdb: &Value, pods: &[Value]) -> Budget {
    let chosen: Vec<&Value> = pods.iter().filter(|p| selects(pdb, p)).collect();
    let expected = chosen.len() as i64;
    let current = chosen.iter().filter(|p| healthy(p)).count() as i64;
    let spec = &pdb["spec"];
    let desired = if let Some(min) = scaled(&spec["minAvailable"], expected) {
        min
    } else if let Some(max) = scaled(&spec["maxUnavailable"], expected) {
        (expected - max).max(0)
    } else {
        // Neither set: policy/v1 defaults to minAvailable 1.
        1
    };
    Budget {
        expected_pods: expected,
        current_healthy: current,
        desired_healthy: desired,
        disruptions_allowed: (current - desired).max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
               "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn min_available_and_max_unavailable() {
        let pods = vec![pod("a", true), pod("b", true), pod("c", false)];
        let pdb = |spec: Value| json!({"metadata": {"namespace": "default"}, "spec": spec});
        let b = budget(
            &pdb(json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}})),
            &pods,
        );
        assert_eq!(
            b,
            Budget {
                expected_pods: 3,
                current_healthy: 2,
                desired_healthy: 2,
                disruptions_allowed: 0
            }
        );
        let b = budget(
            &pdb(json!({"maxUnavailable": "34%", "selector": {"matchLabels": {"app": "web"}}})),
            &pods,
        );
        // 34% of 3 rounds up to 2 unavailable: 1 must stay healthy, 1 disruption allowed.
        assert_eq!(b.desired_healthy, 1);
        assert_eq!(b.disruptions_allowed, 1);
        let none = budget(
            &pdb(json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}})),
            &pods,
        );
        assert_eq!(none.expected_pods, 0);
        assert_eq!(none.disruptions_allowed, 0);
    }
}
