use super::*;
use serde_json::json;

fn svc(ns: &str, name: &str, ports: Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": "127.64.0.9", "selector": {"app": name}, "ports": ports}}))
        .unwrap(),
    )
}

fn inputs() -> Inputs {
    Inputs {
        services: vec![
            svc("shop", "web", json!([{"name": "http", "port": 80}])),
            svc(
                "shop",
                "api",
                json!([{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}]),
            ),
        ],
        gateways: vec![json!({"metadata": {"name": "edge", "namespace": "shop"},
            "spec": {"gatewayClassName": "kumo", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}})],
        ..Default::default()
    }
}

fn first_match<'a>(routes: &'a [Route], host: &str, path: &str) -> Option<&'a Route> {
    routes.iter().find(|r| {
        (r.hosts.is_empty() || r.hosts.iter().any(|h| h.matches(host)))
            && r.matcher.path.as_ref().is_none_or(|p| p.matches(path))
    })
}

#[test]
fn http_routes_follow_gateway_api_precedence() {
    let mut i = inputs();
    i.http_routes = vec![
        json!({"metadata": {"name": "r", "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"parentRefs": [{"name": "edge"}], "hostnames": ["shop.example"],
            "rules": [
                {"backendRefs": [{"name": "web", "port": 80}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                 "backendRefs": [{"name": "api", "port": 8080, "weight": 90}, {"name": "missing", "port": 80, "weight": 10}],
                 "timeouts": {"request": "2s", "backendRequest": "500ms"},
                 "retry": {"attempts": 3, "backoff": "50ms", "codes": [503]}},
                {"matches": [{"path": {"type": "Exact", "value": "/api/exact"}}], "backendRefs": [{"name": "web", "port": 80}]}
            ]}}),
        // Attached to a Gateway that does not exist: not served.
        json!({"metadata": {"name": "orphan", "namespace": "shop"},
        "spec": {"parentRefs": [{"name": "nowhere"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}),
    ];
    let snap = compile(&i);
    assert_eq!(snap.edge.len(), 3, "the orphan route is not attached");
    let r = first_match(&snap.edge, "shop.example", "/api/exact").unwrap();
    assert!(r.rule.id.ends_with("/2"), "Exact beats a longer prefix: {}", r.rule.id);
    let r = first_match(&snap.edge, "shop.example", "/api/items").unwrap();
    assert!(r.rule.id.ends_with("/1"), "{}", r.rule.id);
    assert_eq!(r.rule.timeout, Some(Duration::from_secs(2)));
    assert_eq!(r.rule.retry.attempts, 3);
    assert_eq!(r.rule.retry.per_try_timeout, Some(Duration::from_millis(500)));
    assert_eq!(r.rule.retry.on.codes, vec![503]);
    let Action::Forward(b) = &r.rule.action else { panic!("forward") };
    assert!(matches!(&b[0].target, Backend::Cluster(k) if k.service == "api" && k.port == 8080));
    assert!(matches!(&b[1].target, Backend::Invalid { status: 500, .. }), "missing service → 500");
    let r = first_match(&snap.edge, "shop.example", "/apixyz").unwrap();
    assert!(r.rule.id.ends_with("/0"), "prefixes match whole segments");
    assert!(first_match(&snap.edge, "other.example", "/").is_none());
}

#[test]
fn virtual_services_serve_the_mesh_and_destination_rules_set_policies() {
    let mut i = inputs();
    i.virtual_services = vec![json!({"metadata": {"name": "web", "namespace": "shop"},
        "spec": {"hosts": ["web"], "http": [{
            "match": [{"uri": {"prefix": "/v2"}}],
            "rewrite": {"uri": "/"},
            "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 50}}},
            "retries": {"attempts": 2, "perTryTimeout": "1s", "retryOn": "5xx,connect-failure"},
            "route": [{"destination": {"host": "web.shop.svc.cluster.local"}}]}]}})];
    i.destination_rules = vec![json!({"metadata": {"name": "web", "namespace": "shop"},
        "spec": {"host": "web", "trafficPolicy": {
            "loadBalancer": {"simple": "ROUND_ROBIN"},
            "connectionPool": {"http": {"http2MaxRequests": 10}},
            "outlierDetection": {"consecutive5xxErrors": 3, "baseEjectionTime": "10s", "maxEjectionPercent": 100}}}})];
    i.traffic_policies = vec![json!({"metadata": {"name": "limit", "namespace": "shop"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
                 "rateLimit": {"requests": 10, "unit": "Minute"}}})];
    let snap = compile(&i);
    assert!(snap.edge.is_empty(), "a mesh VirtualService is not on the gateway");
    let routes = &snap.mesh[&ServiceKey { namespace: "shop".into(), name: "web".into() }];
    let rule = &routes[0].rule;
    assert_eq!(rule.fault.as_ref().unwrap().abort, Some((503, 50.0)));
    assert!(rule.retry.on.five_xx && rule.retry.on.connect_failure);
    let key = ClusterKey { namespace: "shop".into(), service: "web".into(), port: 80 };
    let c = &snap.clusters[&key];
    assert!(c.http);
    assert_eq!(c.lb, LbPolicy::RoundRobin);
    assert_eq!(c.pool.max_requests, Some(10));
    assert_eq!(c.outlier.as_ref().unwrap().consecutive_5xx, 3);
    assert_eq!(c.policies, vec!["shop/limit".to_string()]);
    let rate = snap.policies["shop/limit"].rate.as_ref().unwrap();
    assert!((rate.per_second - 10.0 / 60.0).abs() < 1e-9);
}

#[test]
fn http_ports_by_app_protocol_or_name() {
    assert_eq!(is_http_port(Some("http-web"), None), (true, false));
    assert_eq!(is_http_port(Some("grpc-api"), None), (true, true));
    assert_eq!(is_http_port(Some("web"), Some("http")), (true, false));
    assert_eq!(is_http_port(Some("http"), Some("tcp")), (false, false));
    assert_eq!(is_http_port(Some("postgres"), None), (false, false));
}
