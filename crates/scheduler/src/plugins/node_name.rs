//! NodeName: a pod that names its node (`spec.nodeName`) fits only there.

use crate::cache::NodeInfo;
use crate::pod_info::PodInfo;
use crate::status::Status;

/// Plugin name.
pub const NAME: &str = "NodeName";
/// Upstream's reason.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// Filter.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    match pod.node_name() {
        Some(wanted) if wanted != node.name => Status::unresolvable(NAME, REASON),
        _ => Status::success(NAME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};

    #[test]
    fn table() {
        let n1 = NodeInfo::from_node(&node("n1", "1", "1Gi")).unwrap_or_default();
        for (p, ok) in [
            (pod("a").info(), true),
            (pod("b").node("n1").info(), true),
            (pod("c").node("n2").info(), false),
        ] {
            assert_eq!(filter(&p, &n1).is_success(), ok, "{}", p.key);
        }
        assert_eq!(filter(&pod("c").node("n2").info(), &n1).reasons, vec![REASON]);
    }
}
