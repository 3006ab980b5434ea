//! NodePorts: a pod's host ports must be free on the node.
//! <https://kubernetes.io/docs/concepts/configuration/overview/#services>

use crate::cache::NodeInfo;
use crate::pod_info::PodInfo;
use crate::status::Status;

/// Plugin name.
pub const NAME: &str = "NodePorts";
/// Upstream's reason.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// Filter.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    let clash =
        pod.host_ports.iter().any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
    if clash {
        Status::unschedulable(NAME, REASON)
    } else {
        Status::success(NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_info::HostPort;
    use crate::testing::pod;

    fn port(protocol: &str, ip: &str, port: i32) -> HostPort {
        HostPort { protocol: protocol.into(), ip: ip.into(), port }
    }

    #[test]
    fn table() {
        let node = NodeInfo {
            used_ports: vec![port("TCP", "0.0.0.0", 80), port("UDP", "10.0.0.1", 53)],
            ..Default::default()
        };
        let cases = [
            (vec![], true),
            (vec![port("TCP", "0.0.0.0", 80)], false),
            (vec![port("TCP", "10.0.0.2", 80)], false),
            (vec![port("UDP", "0.0.0.0", 80)], true),
            (vec![port("UDP", "10.0.0.1", 53)], false),
            (vec![port("UDP", "10.0.0.2", 53)], true),
            (vec![port("UDP", "0.0.0.0", 53)], false),
            (vec![port("TCP", "0.0.0.0", 8080)], true),
        ];
        for (ports, ok) in cases {
            let mut p = pod("p").info();
            p.host_ports = ports.clone();
            let status = filter(&p, &node);
            assert_eq!(status.is_success(), ok, "{ports:?}");
            if !ok {
                assert_eq!(status.reasons, vec![REASON]);
            }
        }
    }

    #[test]
    fn builder_host_port_defaults_to_tcp_all_addresses() {
        let p = pod("p").host_port(8080).info();
        assert_eq!(p.host_ports, vec![port("TCP", "0.0.0.0", 8080)]);
    }
}
