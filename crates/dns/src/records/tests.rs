//! The resolver driven with plain objects, no sockets.

use super::*;
use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }
}

fn port(name: &str, protocol: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        port,
        ..Default::default()
    }
}

fn service(ns: &str, name: &str, cluster_ip: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `(address, ready, hostname)` endpoints behind `svc` on `ports` (name, port).
fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    eps: &[(&str, Option<bool>, Option<&str>)],
    ports: &[(&str, i32)],
) -> EndpointSlice {
    let mut m = meta(ns, name);
    m.labels = Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into());
    EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: eps
            .iter()
            .map(|(ip, ready, host)| SliceEndpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions { ready: *ready, ..Default::default() }),
                hostname: host.map(str::to_string),
                ..Default::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p)| EndpointPort {
                    name: Some(n.to_string()),
                    port: Some(*p),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

fn zone() -> Records {
    let mut r = Records::new("cluster.local").expect("zone");
    r.apply_service(&service("default", "web", "127.64.0.10", vec![port("http", "TCP", 80)]));
    r.apply_service(&service(
        "db",
        "pg",
        "None",
        vec![port("sql", "TCP", 5432), port("metrics", "TCP", 9187)],
    ));
    r.apply_slice(&slice(
        "db",
        "pg-a",
        "pg",
        &[
            ("10.0.0.1", Some(true), Some("pg-0")),
            ("10.0.0.2", None, Some("pg-1")),
            ("10.0.0.3", Some(false), Some("pg-2")),
        ],
        &[("sql", 31001)],
    ));
    r.apply_slice(&slice("db", "pg-b", "pg", &[("10.0.0.4", Some(true), None)], &[("sql", 31002)]));
    let mut ext = service("default", "search", "", vec![port("https", "TCP", 443)]);
    if let Some(spec) = ext.spec.as_mut() {
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some("search.example.com".into());
        spec.cluster_ip = None;
        spec.cluster_ips = None;
    }
    r.apply_service(&ext);
    r
}

fn addrs(a: &Answer) -> Vec<String> {
    let mut out: Vec<String> = a
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(ip.to_string()),
            RData::AAAA(AAAA(ip)) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn srvs(a: &Answer) -> Vec<String> {
    let mut out: Vec<String> = a
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(format!("{} {} {} {}", s.priority, s.weight, s.port, s.target)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn is_soa_only(a: &Answer) -> bool {
    a.authorities.len() == 1 && matches!(a.authorities[0].data, RData::SOA(_))
}

#[test]
fn cluster_ip_service_answers_its_address() {
    let a = zone().resolve(&name("web.default.svc.cluster.local."), RecordType::A);
    assert_eq!(a.code, ResponseCode::NoError);
    assert!(a.authoritative);
    assert_eq!(addrs(&a), ["127.64.0.10"]);
    assert_eq!(a.answers[0].ttl, TTL);
    assert_eq!(a.answers[0].name, name("web.default.svc.cluster.local."));
}

#[test]
fn names_are_case_insensitive_and_owner_keeps_the_question_spelling() {
    let q = name("WeB.DeFault.SVC.Cluster.Local.");
    let a = zone().resolve(&q, RecordType::A);
    assert_eq!(addrs(&a), ["127.64.0.10"]);
    assert!(a.answers[0].name.eq_case(&q));
}

#[test]
fn headless_answers_ready_endpoints_only() {
    let a = zone().resolve(&name("pg.db.svc.cluster.local."), RecordType::A);
    assert_eq!(a.code, ResponseCode::NoError);
    // 10.0.0.3 is not ready; 10.0.0.2 has no condition, which means ready.
    assert_eq!(addrs(&a), ["10.0.0.1", "10.0.0.2", "10.0.0.4"]);
}

#[test]
fn headless_endpoint_names_by_hostname_and_dashed_address() {
    let z = zone();
    let a = z.resolve(&name("pg-0.pg.db.svc.cluster.local."), RecordType::A);
    assert_eq!(addrs(&a), ["10.0.0.1"]);
    let a = z.resolve(&name("10-0-0-4.pg.db.svc.cluster.local."), RecordType::A);
    assert_eq!(addrs(&a), ["10.0.0.4"]);
    // Not ready: not published.
    let a = z.resolve(&name("pg-2.pg.db.svc.cluster.local."), RecordType::A);
    assert_eq!(a.code, ResponseCode::NXDomain);
    // ClusterIP services have no endpoint names.
    let a = z.resolve(&name("x.web.default.svc.cluster.local."), RecordType::A);
    assert_eq!(a.code, ResponseCode::NXDomain);
}

#[test]
fn srv_for_cluster_ip_port_points_at_the_service() {
    let a = zone().resolve(&name("_http._tcp.web.default.svc.cluster.local."), RecordType::SRV);
    assert_eq!(a.code, ResponseCode::NoError);
    assert_eq!(srvs(&a), ["0 100 80 web.default.svc.cluster.local."]);
    // The target's address comes along.
    assert_eq!(a.additionals.len(), 1);
    // Wrong protocol or port name: no such name.
    for q in
        ["_http._udp.web.default.svc.cluster.local.", "_ftp._tcp.web.default.svc.cluster.local."]
    {
        assert_eq!(zone().resolve(&name(q), RecordType::SRV).code, ResponseCode::NXDomain, "{q}");
    }
}

#[test]
fn srv_for_headless_has_one_record_per_ready_endpoint_with_its_port() {
    let z = zone();
    let a = z.resolve(&name("_sql._tcp.pg.db.svc.cluster.local."), RecordType::SRV);
    assert_eq!(
        srvs(&a),
        [
            "0 100 31001 pg-0.pg.db.svc.cluster.local.",
            "0 100 31001 pg-1.pg.db.svc.cluster.local.",
            "0 100 31002 10-0-0-4.pg.db.svc.cluster.local.",
        ]
    );
    assert_eq!(a.additionals.len(), 3);
    // A service port no endpoint serves: the name exists, with no records.
    let a = z.resolve(&name("_metrics._tcp.pg.db.svc.cluster.local."), RecordType::SRV);
    assert_eq!(a.code, ResponseCode::NoError);
    assert!(a.answers.is_empty() && is_soa_only(&a));
    // SRV at the service name lists every port.
    let a = z.resolve(&name("web.default.svc.cluster.local."), RecordType::SRV);
    assert_eq!(srvs(&a), ["0 100 80 web.default.svc.cluster.local."]);
}

#[test]
fn external_name_is_a_cname() {
    let z = zone();
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let a = z.resolve(&name("search.default.svc.cluster.local."), qtype);
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1, "{qtype}");
        match &a.answers[0].data {
            RData::CNAME(CNAME(target)) => assert_eq!(target, &name("search.example.com.")),
            other => panic!("not a CNAME: {other:?}"),
        }
    }
    let a = z.resolve(&name("_https._tcp.search.default.svc.cluster.local."), RecordType::SRV);
    assert_eq!(srvs(&a), ["0 100 443 search.example.com."]);
}

#[test]
fn unknown_names_in_the_zone_are_nxdomain_with_soa() {
    let z = zone();
    for q in [
        "nope.default.svc.cluster.local.",
        "web.nope.svc.cluster.local.",
        "a.b.c.d.e.f.cluster.local.",
        "nope.cluster.local.",
        "nope.svc.cluster.local.",
    ] {
        let a = z.resolve(&name(q), RecordType::A);
        assert_eq!(a.code, ResponseCode::NXDomain, "{q}");
        assert!(a.authoritative);
        assert!(a.answers.is_empty());
        assert!(is_soa_only(&a), "{q}");
    }
}

#[test]
fn names_outside_the_zone_are_refused() {
    let z = zone();
    for q in ["example.com.", "local.", ".", "web.default.svc.cluster.example."] {
        let a = z.resolve(&name(q), RecordType::A);
        assert_eq!(a.code, ResponseCode::Refused, "{q}");
        assert!(!a.authoritative && a.answers.is_empty() && a.authorities.is_empty());
    }
}

#[test]
fn aaaa_for_an_existing_name_is_nodata() {
    let z = zone();
    for q in [
        "web.default.svc.cluster.local.",
        "pg.db.svc.cluster.local.",
        "pg-0.pg.db.svc.cluster.local.",
    ] {
        let a = z.resolve(&name(q), RecordType::AAAA);
        assert_eq!(a.code, ResponseCode::NoError, "{q}");
        assert!(a.answers.is_empty(), "{q}");
        assert!(is_soa_only(&a), "{q}");
    }
}

#[test]
fn zone_apex_namespace_and_pod_names() {
    let z = zone();
    let a = z.resolve(&name("cluster.local."), RecordType::SOA);
    assert!(matches!(a.answers[0].data, RData::SOA(_)));
    assert_eq!(
        z.resolve(&name("default.svc.cluster.local."), RecordType::A).code,
        ResponseCode::NoError
    );
    let a = z.resolve(&name("10-1-2-3.default.pod.cluster.local."), RecordType::A);
    assert_eq!(addrs(&a), ["10.1.2.3"]);
    let a = z.resolve(&name("dns-version.cluster.local."), RecordType::TXT);
    assert_eq!(a.answers.len(), 1);
}

#[test]
fn updates_and_deletes_follow_the_objects() {
    let mut z = zone();
    let q = name("pg.db.svc.cluster.local.");
    z.remove_slice(&slice("db", "pg-b", "pg", &[], &[]));
    assert_eq!(addrs(&z.resolve(&q, RecordType::A)), ["10.0.0.1", "10.0.0.2"]);
    // A slice moving to another service leaves the first.
    z.apply_slice(&slice("db", "pg-a", "other", &[("10.0.0.9", None, None)], &[]));
    assert!(addrs(&z.resolve(&q, RecordType::A)).is_empty());
    z.remove_service(&service("db", "pg", "None", vec![]));
    assert_eq!(z.resolve(&q, RecordType::A).code, ResponseCode::NXDomain);
    // A re-list replaces everything.
    z.replace_services([&service("db", "pg", "127.64.0.7", vec![])]);
    assert_eq!(addrs(&z.resolve(&q, RecordType::A)), ["127.64.0.7"]);
    assert_eq!(
        z.resolve(&name("web.default.svc.cluster.local."), RecordType::A).code,
        ResponseCode::NXDomain
    );
    z.replace_slices([]);
    assert_eq!(z.len(), (1, 0));
}

#[test]
fn before_the_first_lists_the_zone_answers_servfail() {
    let mut z = zone();
    z.wait_for_sync();
    let q = name("web.default.svc.cluster.local.");
    assert_eq!(z.resolve(&q, RecordType::A).code, ResponseCode::ServFail);
    // Outside the zone is still refused.
    assert_eq!(z.resolve(&name("example.com."), RecordType::A).code, ResponseCode::Refused);
    z.replace_services([&service("default", "web", "127.64.0.10", vec![])]);
    assert_eq!(z.resolve(&q, RecordType::A).code, ResponseCode::ServFail);
    z.replace_slices([]);
    assert_eq!(addrs(&z.resolve(&q, RecordType::A)), ["127.64.0.10"]);
}

#[test]
fn custom_domain_and_bad_domains() {
    let mut z = Records::new("Kumo.Test.").expect("zone");
    z.apply_service(&service("default", "web", "127.64.0.10", vec![]));
    let a = z.resolve(&name("web.default.svc.kumo.test."), RecordType::A);
    assert_eq!(addrs(&a), ["127.64.0.10"]);
    assert_eq!(
        z.resolve(&name("web.default.svc.cluster.local."), RecordType::A).code,
        ResponseCode::Refused
    );
    for bad in ["", ".", "a..b", "a b.c"] {
        assert!(Records::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn host_network_endpoints_sharing_an_address_give_one_a_record() {
    let mut z = Records::new("cluster.local").expect("zone");
    z.apply_service(&service("default", "h", "None", vec![port("http", "TCP", 80)]));
    z.apply_slice(&slice(
        "default",
        "h-1",
        "h",
        &[("192.168.1.5", None, None)],
        &[("http", 30001)],
    ));
    z.apply_slice(&slice(
        "default",
        "h-2",
        "h",
        &[("192.168.1.5", None, None)],
        &[("http", 30002)],
    ));
    let a = z.resolve(&name("h.default.svc.cluster.local."), RecordType::A);
    assert_eq!(addrs(&a), ["192.168.1.5"]);
    let a = z.resolve(&name("_http._tcp.h.default.svc.cluster.local."), RecordType::SRV);
    assert_eq!(
        srvs(&a),
        [
            "0 100 30001 192-168-1-5.h.default.svc.cluster.local.",
            "0 100 30002 192-168-1-5.h.default.svc.cluster.local.",
        ]
    );
    assert_eq!(a.additionals.len(), 1);
}
