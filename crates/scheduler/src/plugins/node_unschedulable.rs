//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take no new pods, unless the pod
//! tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::NodeInfo;
use crate::plugins::taint_toleration::tolerates;
use crate::pod_info::PodInfo;
use crate::status::Status;

/// Plugin name.
pub const NAME: &str = "NodeUnschedulable";
/// Upstream's reason.
pub const REASON: &str = "node(s) were unschedulable";

/// Filter.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    if !node.unschedulable {
        return Status::success(NAME);
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if tolerates(pod, &taint) {
        Status::success(NAME)
    } else {
        Status::unresolvable(NAME, REASON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pod, toleration, NodeBuilder};

    #[test]
    fn table() {
        let cordoned =
            NodeInfo::from_node(&NodeBuilder::new("n").unschedulable().build()).unwrap_or_default();
        let open = NodeInfo::from_node(&NodeBuilder::new("m").build()).unwrap_or_default();
        let tolerant = pod("t")
            .toleration(toleration("node.kubernetes.io/unschedulable", "Exists", "", "NoSchedule"))
            .info();
        assert!(!filter(&pod("p").info(), &cordoned).is_success());
        assert!(filter(&pod("p").info(), &open).is_success());
        assert!(filter(&tolerant, &cordoned).is_success());
    }
}
