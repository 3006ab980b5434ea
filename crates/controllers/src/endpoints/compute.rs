//! What a Service's Endpoints and EndpointSlices should contain, from its pods. Pure.

use crate::pods;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`] (upstream's, so tools that look for it find ours).
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Pod annotation in which kumo's node agent publishes the host ports it allocated.
pub use kumo_api::hostports::ANNOTATION as PORTS_ANNOTATION;

/// A Service port resolved for one pod: name, number, protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResolvedPort {
    /// The Service port's name (empty for a single unnamed port).
    pub name: String,
    /// The port on the pod.
    pub port: i32,
    /// TCP, UDP or SCTP.
    pub protocol: String,
}

/// The allocated host ports a pod's [`PORTS_ANNOTATION`] carries, by
/// `<container>/<containerPort>` (empty without one or when it is not a JSON map of numbers).
pub fn allocated_ports(pod: &Pod) -> BTreeMap<String, u16> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PORTS_ANNOTATION))
        .map(|v| kumo_api::hostports::parse(v))
        .unwrap_or_default()
}

/// The port on `pod` a Service port's `targetPort` means (upstream `podutil.FindPort`), or None
/// when a named port is not found. A name is looked up in the containers' ports; a number is
/// used as is. Either way, when the agent gave that container port a host port
/// ([`PORTS_ANNOTATION`]), the host port is what answers. Absent `targetPort` means the Service
/// port itself.
pub fn resolve_port(pod: &Pod, target: Option<&IntOrString>, service_port: i32) -> Option<i32> {
    let allocated = allocated_ports(pod);
    let container_ports = || {
        pod.spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten().map(move |p| (c.name.as_str(), p)))
    };
    let host_port = |container: &str, port: i32| {
        allocated.get(&kumo_api::hostports::key(container, port)).map(|p| i32::from(*p))
    };
    match target {
        None => Some(service_port),
        Some(IntOrString::Int(n)) => {
            let mapped = container_ports()
                .find(|(_, p)| p.container_port == *n)
                .and_then(|(c, p)| host_port(c, p.container_port));
            Some(mapped.unwrap_or(*n))
        }
        Some(IntOrString::String(s)) => {
            if let Ok(n) = s.parse::<i32>() {
                return resolve_port(pod, Some(&IntOrString::Int(n)), service_port);
            }
            container_ports()
                .find(|(_, p)| p.name.as_deref() == Some(s.as_str()))
                .map(|(c, p)| host_port(c, p.container_port).unwrap_or(p.container_port))
        }
    }
}

/// The address a pod is reached at: `status.podIP`, else `status.hostIP` (kumo's host network
/// mode runs pods on the node's address).
pub fn pod_address(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .or_else(|| status.host_ip.clone().filter(|ip| !ip.is_empty()))
}

/// One pod as an endpoint of the Service.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEndpoint {
    /// Its address.
    pub ip: String,
    /// Ready condition True (or the Service publishes not-ready addresses).
    pub ready: bool,
    /// Ready, whether or not it is terminating.
    pub serving: bool,
    /// Being deleted.
    pub terminating: bool,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// Reference to the pod.
    pub target_ref: ObjectReference,
    /// The Service's ports on this pod, sorted.
    pub ports: Vec<ResolvedPort>,
    /// `spec.hostname`, when the pod's `spec.subdomain` names this Service (StatefulSet pods
    /// behind their headless Service), as upstream sets it for DNS.
    pub hostname: Option<String>,
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Whether the Service gets endpoints from this controller: it has a selector and is not the
/// `default/kubernetes` Service the API server maintains.
pub fn is_managed(svc: &Service) -> bool {
    let is_apiserver = svc.metadata.namespace.as_deref() == Some("default")
        && svc.metadata.name.as_deref() == Some("kubernetes");
    let has_selector =
        svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty());
    !is_apiserver && has_selector
}

/// The Service's pods as endpoints (upstream `ShouldPodBeInEndpoints`): pods in its namespace that
/// match its selector, have an address and have not finished, sorted by address then name.
/// Terminating pods are included (EndpointSlices show them; Endpoints leave them out).
pub fn endpoints_for(svc: &Service, pods_in_ns: &[&Pod]) -> Vec<PodEndpoint> {
    let Some(spec) = svc.spec.as_ref() else { return Vec::new() };
    let Some(sel) = spec.selector.as_ref().filter(|s| !s.is_empty()) else { return Vec::new() };
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ns = svc.metadata.namespace.as_deref();
    let mut out: Vec<PodEndpoint> = pods_in_ns
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|p| {
            let ip = pod_address(p)?;
            let mut ports: Vec<ResolvedPort> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|sp| {
                    Some(ResolvedPort {
                        name: sp.name.clone().unwrap_or_default(),
                        port: resolve_port(p, sp.target_port.as_ref(), sp.port)?,
                        protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    })
                })
                .collect();
            ports.sort();
            let terminating = p.metadata.deletion_timestamp.is_some();
            let serving = publish_not_ready || pods::is_ready(p);
            Some(PodEndpoint {
                ip,
                ready: serving && !terminating,
                serving,
                terminating,
                node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: target_ref(p),
                ports,
                hostname: p
                    .spec
                    .as_ref()
                    .filter(|s| s.subdomain.is_some() && s.subdomain == svc.metadata.name)
                    .and_then(|s| s.hostname.clone())
                    .filter(|h| !h.is_empty()),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.ip, &a.target_ref.name).cmp(&(&b.ip, &b.target_ref.name)));
    out
}

/// The Endpoints subsets (upstream `RepackSubsets`): one subset per distinct port set, ready
/// addresses in `addresses`, not ready ones in `notReadyAddresses`; terminating pods left out
/// (unless the Service publishes not-ready addresses). None when there is no endpoint.
pub fn subsets(eps: &[PodEndpoint], publish_not_ready: bool) -> Option<Vec<EndpointSubset>> {
    let mut groups: BTreeMap<Vec<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for ep in eps.iter().filter(|e| publish_not_ready || !e.terminating) {
        let addr = EndpointAddress {
            ip: ep.ip.clone(),
            node_name: ep.node_name.clone(),
            target_ref: Some(ep.target_ref.clone()),
            hostname: ep.hostname.clone(),
        };
        let (ready, not_ready) = groups.entry(ep.ports.clone()).or_default();
        if ep.serving {
            ready.push(addr);
        } else {
            not_ready.push(addr);
        }
    }
    let out: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .into_iter()
                    .map(|p| EndpointPort {
                        name: (!p.name.is_empty()).then_some(p.name),
                        port: p.port,
                        protocol: Some(p.protocol),
                        app_protocol: None,
                    })
                    .collect()
            }),
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

/// FNV-1a of `s`, 10 lowercase base-36 digits (a stable name suffix).
fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..10)
        .map(|_| {
            let d = digits[(h % 36) as usize] as char;
            h /= 36;
            d
        })
        .collect()
}

fn address_type(ip: &str) -> &'static str {
    if ip.contains(':') {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// The EndpointSlices the Service should have: one per (address type, port set), named
/// `<svc>-<hash of the port set>` so a reconcile from a stale cache never creates a duplicate,
/// labelled with the Service name and our manager, owned by the Service. Without endpoints,
/// one empty IPv4 slice with the Service's ports (as upstream keeps).
pub fn slices(svc: &Service, eps: &[PodEndpoint]) -> Vec<EndpointSlice> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let mut groups: BTreeMap<(&'static str, Vec<ResolvedPort>), Vec<Endpoint>> = BTreeMap::new();
    for ep in eps {
        groups.entry((address_type(&ep.ip), ep.ports.clone())).or_default().push(Endpoint {
            addresses: vec![ep.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(ep.ready),
                serving: Some(ep.serving),
                terminating: Some(ep.terminating),
            }),
            node_name: ep.node_name.clone(),
            target_ref: Some(ep.target_ref.clone()),
            hostname: ep.hostname.clone(),
            ..Default::default()
        });
    }
    if groups.is_empty() {
        groups.insert(("IPv4", Vec::new()), Vec::new());
    }
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let owner = owner_ref(svc);
    let prefix: String = name.chars().take(200).collect();
    groups
        .into_iter()
        .map(|((kind, ports), endpoints)| {
            let key = format!("{kind}/{ports:?}");
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{prefix}-{}", short_hash(&key))),
                    namespace: svc.metadata.namespace.clone(),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                address_type: kind.into(),
                endpoints,
                ports: Some(
                    ports
                        .into_iter()
                        .map(|p| SlicePort {
                            name: Some(p.name),
                            port: Some(p.port),
                            protocol: Some(p.protocol),
                            app_protocol: None,
                        })
                        .collect(),
                ),
            }
        })
        .collect()
}

/// The controller ownerReference to the Service (blocking its foreground deletion).
pub fn owner_ref(svc: &Service) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    crate::claim::owner_reference(
        "v1",
        "Service",
        svc.metadata.name.as_deref().unwrap_or_default(),
        svc.metadata.uid.as_deref().unwrap_or_default(),
    )
}

/// Whether an existing slice already says what `want` says (labels, owners, type, endpoints,
/// ports): if so it is not written.
pub fn slice_unchanged(have: &EndpointSlice, want: &EndpointSlice) -> bool {
    have.metadata.labels == want.metadata.labels
        && have.metadata.owner_references == want.metadata.owner_references
        && have.address_type == want.address_type
        && have.endpoints == want.endpoints
        && have.ports.clone().unwrap_or_default() == want.ports.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::test_support::PodBuilder;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, ServicePort, ServiceSpec};

    fn svc(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("svc-uid".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "web".into())])),
                ports: Some(ports),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn port(name: &str, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: (!name.is_empty()).then(|| name.into()),
            port,
            target_port: target,
            ..Default::default()
        }
    }

    fn with_ip(mut p: Pod, pod_ip: Option<&str>, host_ip: Option<&str>) -> Pod {
        let s = p.status.get_or_insert_with(Default::default);
        s.pod_ip = pod_ip.map(Into::into);
        s.host_ip = host_ip.map(Into::into);
        p
    }

    fn with_ports(mut p: Pod, ports: &[(&str, i32)]) -> Pod {
        p.spec = Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, c)| ContainerPort {
                            name: Some((*n).into()),
                            container_port: *c,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }],
            node_name: Some("n1".into()),
            ..Default::default()
        });
        p
    }

    fn annotated(mut p: Pod, json: &str) -> Pod {
        p.metadata.annotations = Some(BTreeMap::from([(PORTS_ANNOTATION.into(), json.into())]));
        p
    }

    #[test]
    fn target_ports_resolve_by_number_name_and_allocation() {
        let plain = with_ports(PodBuilder::new("a").build(), &[("http", 8080), ("admin", 9000)]);
        let alloc = annotated(plain.clone(), r#"{"c/8080": 31000}"#);
        let int = |n| Some(IntOrString::Int(n));
        let name = |s: &str| Some(IntOrString::String(s.into()));
        let cases: Vec<(&Pod, Option<IntOrString>, Option<i32>)> = vec![
            (&plain, None, Some(80)),
            (&plain, int(8080), Some(8080)),
            (&plain, int(7000), Some(7000)),
            (&plain, name("http"), Some(8080)),
            (&plain, name("admin"), Some(9000)),
            (&plain, name("missing"), None),
            (&plain, name("8081"), Some(8081)),
            (&alloc, name("http"), Some(31000)),
            (&alloc, int(8080), Some(31000)),
            (&alloc, name("admin"), Some(9000)),
        ];
        for (pod, target, want) in cases {
            assert_eq!(resolve_port(pod, target.as_ref(), 80), want, "{target:?}");
        }
        assert!(allocated_ports(&annotated(plain, "not json")).is_empty());
    }

    #[test]
    fn addresses_prefer_pod_ip_then_host_ip() {
        let p = PodBuilder::new("a").build();
        let cases = [
            (Some("10.0.0.1"), Some("192.168.1.1"), Some("10.0.0.1")),
            (None, Some("192.168.1.1"), Some("192.168.1.1")),
            (Some(""), Some("192.168.1.1"), Some("192.168.1.1")),
            (None, None, None),
        ];
        for (pod_ip, host_ip, want) in cases {
            assert_eq!(pod_address(&with_ip(p.clone(), pod_ip, host_ip)).as_deref(), want);
        }
    }

    #[test]
    fn ready_and_not_ready_pods_split_and_others_are_left_out() {
        let s = svc(vec![port("http", 80, Some(IntOrString::String("http".into())))]);
        let ready = |n: &str, ip: &str| {
            with_ip(
                with_ports(
                    PodBuilder::new(n).label("app", "web").ready_at(1).build(),
                    &[("http", 8080)],
                ),
                Some(ip),
                None,
            )
        };
        let a = ready("a", "10.0.0.2");
        let b = with_ip(
            with_ports(PodBuilder::new("b").label("app", "web").build(), &[("http", 8080)]),
            Some("10.0.0.1"),
            None,
        );
        let no_ip = with_ports(PodBuilder::new("c").label("app", "web").build(), &[]);
        let other = ready("d", "10.0.0.9");
        let mut other = other;
        other.metadata.labels = Some(BTreeMap::from([("app".into(), "db".into())]));
        let done = with_ip(
            PodBuilder::new("e").label("app", "web").phase("Failed").build(),
            Some("10.0.0.5"),
            None,
        );
        let mut going = ready("f", "10.0.0.6");
        going.metadata.deletion_timestamp =
            PodBuilder::new("x").deleting().build().metadata.deletion_timestamp;
        let eps = endpoints_for(&s, &[&a, &b, &no_ip, &other, &done, &going]);
        let names: Vec<_> = eps.iter().filter_map(|e| e.target_ref.name.clone()).collect();
        assert_eq!(names, ["b", "a", "f"]);
        let subs = subsets(&eps, false).unwrap_or_default();
        assert_eq!(subs.len(), 1);
        let ips = |v: &Option<Vec<EndpointAddress>>| {
            v.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&subs[0].addresses), ["10.0.0.2"]);
        assert_eq!(ips(&subs[0].not_ready_addresses), ["10.0.0.1"]);
        let ports = subs[0].ports.clone().unwrap_or_default();
        assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("http"), 8080));
        assert_eq!(
            subs[0].addresses.as_ref().map(|a| a[0].node_name.clone()),
            Some(Some("n1".into()))
        );

        let sl = slices(&s, &eps);
        assert_eq!(sl.len(), 1);
        let labels = sl[0].metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(SERVICE_NAME_LABEL).map(String::as_str), Some("web"));
        assert_eq!(labels.get(MANAGED_BY_LABEL).map(String::as_str), Some(MANAGED_BY));
        assert!(sl[0].metadata.name.as_deref().is_some_and(|n| n.starts_with("web-")));
        assert_eq!(sl[0].address_type, "IPv4");
        let conds: Vec<_> = sl[0]
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (e.addresses[0].as_str(), c.ready, c.serving, c.terminating)
            })
            .collect();
        assert_eq!(
            conds,
            [
                ("10.0.0.1", Some(false), Some(false), Some(false)),
                ("10.0.0.2", Some(true), Some(true), Some(false)),
                ("10.0.0.6", Some(false), Some(true), Some(true)),
            ]
        );
        let owner = &sl[0].metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Service", "svc-uid"));
        assert!(slice_unchanged(&sl[0], &slices(&s, &eps)[0]));
    }

    #[test]
    fn different_port_sets_make_different_subsets_and_slices() {
        let s = svc(vec![port("http", 80, Some(IntOrString::String("http".into())))]);
        let a = annotated(
            with_ip(
                with_ports(
                    PodBuilder::new("a").label("app", "web").ready_at(1).build(),
                    &[("http", 80)],
                ),
                None,
                Some("192.168.1.1"),
            ),
            r#"{"c/80": 30001}"#,
        );
        let b = annotated(a.clone(), r#"{"c/80": 30002}"#);
        let eps = endpoints_for(&s, &[&a, &b]);
        assert_eq!(subsets(&eps, false).map(|s| s.len()), Some(2));
        let sl = slices(&s, &eps);
        assert_eq!(sl.len(), 2);
        assert_ne!(sl[0].metadata.name, sl[1].metadata.name);
    }

    #[test]
    fn no_pods_means_no_subsets_and_one_empty_slice() {
        let s = svc(vec![port("", 80, None)]);
        assert_eq!(subsets(&[], false), None);
        let sl = slices(&s, &[]);
        assert_eq!((sl.len(), sl[0].endpoints.len()), (1, 0));
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_pod_ready() {
        let mut s = svc(vec![port("", 80, None)]);
        if let Some(spec) = s.spec.as_mut() {
            spec.publish_not_ready_addresses = Some(true);
        }
        let a = with_ip(PodBuilder::new("a").label("app", "web").build(), Some("10.0.0.1"), None);
        let eps = endpoints_for(&s, &[&a]);
        let subs = subsets(&eps, true).unwrap_or_default();
        assert_eq!(subs[0].addresses.as_ref().map(Vec::len), Some(1));
        assert!(subs[0].not_ready_addresses.is_none());
    }

    #[test]
    fn services_without_selector_and_the_apiserver_service_are_not_managed() {
        let mut s = svc(vec![]);
        assert!(is_managed(&s));
        s.metadata.name = Some("kubernetes".into());
        assert!(!is_managed(&s));
        let mut t = svc(vec![]);
        if let Some(spec) = t.spec.as_mut() {
            spec.selector = None;
        }
        assert!(!is_managed(&t));
        assert!(endpoints_for(&t, &[]).is_empty());
    }

    #[test]
    fn pods_in_the_service_subdomain_carry_their_hostname() {
        let s = svc(vec![port("", 80, None)]);
        let pod = |name: &str, subdomain: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
                "spec": {"hostname": name, "subdomain": subdomain, "containers": []},
                "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
            }))
            .unwrap()
        };
        let (a, b) = (pod("web-0", "web"), pod("other-0", "elsewhere"));
        let eps = endpoints_for(&s, &[&a, &b]);
        let names: Vec<Option<&str>> = eps.iter().map(|e| e.hostname.as_deref()).collect();
        assert_eq!(names, [None, Some("web-0")]);
        let sl = slices(&s, &eps);
        assert!(sl[0].endpoints.iter().any(|e| e.hostname.as_deref() == Some("web-0")));
    }
}
