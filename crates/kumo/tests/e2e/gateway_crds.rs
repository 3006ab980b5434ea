//! Built-in CRDs: a fresh cluster serves the Gateway API, Istio networking/security and kumo's
//! TrafficPolicy without installing anything; realistic manifests apply cleanly and print with
//! their columns; invalid objects get a 422 naming the field; restarts keep one copy of each CRD.

use crate::harness::Cluster;
use serde_json::Value;

/// The kinds a gateway user applies (examples of `shared/reference/dataplane.md` §2 and §3, plus
/// a JWT policy with an inline JWKS, an authorization policy and a traffic policy).
const MANIFEST: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: kumo}
spec:
  controllerName: kumo.dev/gateway
  description: kumo's gateway
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge-gw, namespace: default}
spec:
  gatewayClassName: kumo
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - name: https
    protocol: HTTPS
    port: 443
    hostname: "*.example.com"
    tls: {mode: Terminate, certificateRefs: [{kind: Secret, name: shop-cert}]}
    allowedRoutes: {namespaces: {from: All}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: default
spec:
  parentRefs:
  - name: edge-gw
  hostnames: ["shop.example.com"]
  rules:
  - name: api-canary
    matches:
    - path: {type: PathPrefix, value: /api}
      headers:
      - {name: x-canary, value: "true"}
    - path: {type: PathPrefix, value: /api}
      queryParams:
      - {name: canary, value: "1"}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-route, value: api}]
        remove: ["x-debug"]
    - type: RequestMirror
      requestMirror:
        backendRef: {name: api-shadow, port: 8080}
        percent: 10
    backendRefs:
    - {name: api-v1, port: 8080, weight: 90}
    - {name: api-v2, port: 8080, weight: 10}
    timeouts:
      request: 10s
      backendRequest: 2s
    retry:
      attempts: 2
      backoff: 100ms
      codes: [502, 503, 504]
  - name: legacy-redirect
    matches:
    - path: {type: PathPrefix, value: /old}
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        statusCode: 301
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
  - name: rewrite
    matches:
    - path: {type: PathPrefix, value: /v2}
    filters:
    - type: URLRewrite
      urlRewrite:
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /}
    backendRefs:
    - {name: api-v2, port: 8080}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: routes-to-shop, namespace: default}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: web}]
  to: [{group: "", kind: Service}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.prod.svc.cluster.local]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
      uri: {prefix: /ratings}
    fault:
      delay: {percentage: {value: 0.1}, fixedDelay: 5s}
      abort: {percentage: {value: 0.1}, httpStatus: 400}
    route:
    - destination: {host: ratings.prod.svc.cluster.local, subset: v2}
  - route:
    - {destination: {host: ratings.prod.svc.cluster.local, subset: v1}, weight: 90}
    - {destination: {host: ratings.prod.svc.cluster.local, subset: v2}, weight: 10}
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure,refused-stream"}
    headers:
      request: {set: {x-route: ratings}}
      response: {remove: [x-internal]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings.prod.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms}
      http: {http2MaxRequests: 1000, maxRequestsPerConnection: 10, h2UpgradePolicy: UPGRADE}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 50}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ratings-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  jwtRules:
  - issuer: https://issuer.example.com
    audiences: [ratings]
    jwks: '{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB"}]}'
    fromHeaders: [{name: Authorization, prefix: "Bearer "}]
    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/bookinfo-reviews"], notNamespaces: [untrusted]}
    to:
    - operation: {methods: [GET], paths: ["/ratings/*"], notPorts: ["9090"]}
    when:
    - {key: "request.auth.claims[iss]", values: ["https://issuer.example.com"]}
---
apiVersion: kumo.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: api-limits, namespace: default}
spec:
  targetRefs:
  - {group: "", kind: Service, name: api}
  - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: shop}
  rateLimit:
    requests: 100
    unit: Second
    burst: 200
    key: {type: Header, header: x-user}
  loadShedding:
    maxConcurrentRequests: 50
    retryAfterSeconds: 1
"#;

const BUILTIN: [&str; 10] = [
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "gateways.networking.istio.io",
    "requestauthentications.security.istio.io",
    "authorizationpolicies.security.istio.io",
    "trafficpolicies.kumo.dev",
];

/// The table of one kind in the output of a multi-kind `kubectl get`, by its header's first
/// columns and a row's name.
fn header_and_row<'a>(out: &'a str, name: &str, header_has: &str) -> (&'a str, &'a str) {
    let lines: Vec<&str> = out.lines().collect();
    let h = lines
        .iter()
        .position(|l| l.starts_with("NAME") && l.contains(header_has))
        .unwrap_or_else(|| panic!("no table with {header_has} in:\n{out}"));
    let row = lines[h + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("NAME"))
        .find(|l| l.split_whitespace().next().is_some_and(|n| n.ends_with(name)))
        .unwrap_or_else(|| panic!("no row {name} under {header_has} in:\n{out}"));
    (lines[h], row)
}

#[test]
fn a_fresh_cluster_serves_gateway_istio_and_traffic_policy_kinds() {
    let c = Cluster::start();
    let resources = c.kubectl(&["api-resources", "-o", "name"]);
    for want in BUILTIN {
        assert!(resources.lines().any(|l| l == want), "{want} not in api-resources:\n{resources}");
    }
    let wide = c.kubectl(&["api-resources", "--api-group=networking.istio.io"]);
    assert!(wide.contains("vs") && wide.contains("dr"), "{wide}");
    let f = c.file("gateway.yaml", MANIFEST);
    let out = c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    for created in [
        "gatewayclass.gateway.networking.k8s.io/kumo created",
        "gateway.gateway.networking.k8s.io/edge-gw created",
        "httproute.gateway.networking.k8s.io/shop created",
        "referencegrant.gateway.networking.k8s.io/routes-to-shop created",
        "virtualservice.networking.istio.io/ratings created",
        "destinationrule.networking.istio.io/ratings created",
        "gateway.networking.istio.io/ratings-gateway created",
        "requestauthentication.security.istio.io/jwt created",
        "authorizationpolicy.security.istio.io/ratings-viewer created",
        "trafficpolicy.kumo.dev/api-limits created",
    ] {
        assert!(out.contains(created), "{created} missing from:\n{out}");
    }
    // Applying the same manifest again stores nothing new: the defaults the server added do not
    // fight the manifest. (kubectl still says "configured" where a list holds defaults, because
    // a JSON merge patch replaces whole lists; upstream does the same.)
    let versions = |c: &Cluster| {
        let list = c.get_json(&["-f", f.to_str().unwrap()]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items.iter().map(|i| i["metadata"]["resourceVersion"].clone()).collect::<Vec<Value>>()
    };
    let first = versions(&c);
    assert_eq!(first.len(), 10);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(versions(&c), first);

    let table = c.kubectl(&["get", "httproute,vs,dr,tp"]);
    let (h, row) = header_and_row(&table, "shop", "HOSTNAMES");
    assert!(h.contains("AGE"), "{h}");
    assert!(row.contains(r#"["shop.example.com"]"#), "{row}");
    let (h, row) = header_and_row(&table, "ratings", "GATEWAYS");
    assert!(h.contains("HOSTS") && h.contains("AGE"), "{h}");
    assert!(row.contains(r#"["ratings.prod.svc.cluster.local"]"#), "{row}");
    let (_, row) = header_and_row(&table, "ratings", "HOST ");
    assert!(row.contains("ratings.prod.svc.cluster.local"), "{row}");
    let (h, row) = header_and_row(&table, "api-limits", "TARGET");
    assert!(h.contains("RATE") && h.contains("CONCURRENCY"), "{h}");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..6], ["Service", "api", "100", "Second", "50"], "{row}");
    let gateways = c.kubectl(&["get", "gtw"]);
    let (h, row) = header_and_row(&gateways, "edge-gw", "CLASS");
    assert!(h.contains("ADDRESS") && h.contains("PROGRAMMED"), "{h}");
    assert!(row.contains("kumo"), "{row}");
    let classes = c.kubectl(&["get", "gatewayclass", "-o", "wide"]);
    let (h, row) = header_and_row(&classes, "kumo", "CONTROLLER");
    assert!(h.contains("DESCRIPTION"), "{h}");
    assert!(row.contains("kumo.dev/gateway") && row.contains("kumo's gateway"), "{row}");
    let policies = c.kubectl(&["get", "authorizationpolicies"]);
    assert!(header_and_row(&policies, "ratings-viewer", "ACTION").1.contains("ALLOW"));
    // The category names the group's kinds, and `all` does not include them.
    let istio = c.kubectl(&["get", "istio-io", "-o", "name"]);
    assert!(istio.contains("virtualservice.networking.istio.io/ratings"), "{istio}");
    assert!(istio.contains("authorizationpolicy.security.istio.io/ratings-viewer"), "{istio}");
    let all = c.kubectl(&["get", "all", "-o", "name"]);
    assert!(!all.contains("httproute") && !all.contains("virtualservice"), "{all}");

    // Defaults as upstream sets them, and every given field read back.
    let route = c.get_json(&["httproute", "shop"]);
    let rule = &route["spec"]["rules"][0];
    assert_eq!(route["spec"]["parentRefs"][0]["kind"], "Gateway");
    assert_eq!(rule["matches"][0]["headers"][0]["type"], "Exact");
    assert_eq!(rule["backendRefs"][0]["kind"], "Service");
    assert_eq!(rule["retry"]["codes"], serde_json::json!([502, 503, 504]));
    assert_eq!(route["spec"]["rules"][1]["filters"][0]["requestRedirect"]["statusCode"], 301);
    let ra = c.get_json(&["requestauthentication", "jwt"]);
    assert!(ra["spec"]["jwtRules"][0]["jwks"].as_str().is_some_and(|j| j.contains("\"kty\"")));
    let dr = c.get_json(&["dr", "ratings"]);
    assert_eq!(dr["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"], 7);
    assert_eq!(dr["spec"]["subsets"][1]["trafficPolicy"]["loadBalancer"]["simple"], "ROUND_ROBIN");
    // Served at every version, from one stored object.
    let old = c.get_json(&["virtualservices.v1alpha3.networking.istio.io", "ratings"]);
    assert_eq!(old["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(old["spec"]["http"][1]["route"][0]["weight"], 90);

    let explain = c.kubectl(&["explain", "httproute.spec.rules.matches"]);
    for field in ["path", "headers", "queryParams", "method"] {
        assert!(explain.contains(field), "{field} missing from explain:\n{explain}");
    }
    let explain = c.kubectl(&["explain", "trafficpolicy.spec.rateLimit.key"]);
    assert!(explain.contains("ClientIP"), "{explain}");
}

/// Apply `yaml` expecting a 422 whose message names `field`; returns kubectl's stderr.
fn refused(c: &Cluster, name: &str, yaml: &str, field: &str) -> String {
    let f = c.file(&format!("{name}.yaml"), yaml);
    let err = c.kubectl_fails(&["create", "-f", f.to_str().unwrap(), "-v=6"]);
    assert!(err.contains("422"), "{name}: no 422 in:\n{err}");
    assert!(
        err.contains("is invalid") && err.contains(field),
        "{name}: {field} not named in:\n{err}"
    );
    err
}

#[test]
fn invalid_routes_and_policies_are_refused_with_422_naming_the_field() {
    let c = Cluster::start();
    let route = |name: &str, rule: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\n\
             spec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - {rule}\n"
        )
    };
    let err = refused(
        &c,
        "prefix",
        &route("prefix", "matches: [{path: {type: Prefix, value: /api}}]"),
        "spec.rules[0].matches[0].path.type",
    );
    assert!(
        err.contains(r#"Unsupported value: "Prefix""#) && err.contains(r#""PathPrefix""#),
        "{err}"
    );
    refused(
        &c,
        "weight",
        &route("weight", "backendRefs: [{name: api, port: 80, weight: -1}]"),
        "spec.rules[0].backendRefs[0].weight",
    );
    let err = refused(
        &c,
        "timeout",
        &route("timeout", "timeouts: {request: 10 seconds}"),
        "spec.rules[0].timeouts.request",
    );
    assert!(err.contains(r#""10 seconds""#), "{err}");
    refused(
        &c,
        "dr",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: nohost}\n\
         spec:\n  subsets: [{name: v1, labels: {version: v1}}]\n",
        "spec.host: Required value",
    );
    let err = refused(
        &c,
        "tp",
        "apiVersion: kumo.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: empty}\n\
         spec:\n  targetRefs: [{kind: Service, name: api}]\n",
        "spec",
    );
    assert!(err.contains("at least one of rateLimit or loadShedding is required"), "{err}");
    let err = refused(
        &c,
        "tp-header",
        "apiVersion: kumo.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: header}\n\
         spec:\n  targetRefs: [{kind: Service, name: api}]\n  rateLimit: {requests: 5, key: {type: Header}}\n",
        "spec.rateLimit.key.header",
    );
    assert!(err.contains("Required value"), "{err}");
    refused(
        &c,
        "fault",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: fault}\n\
         spec:\n  hosts: [r]\n  http:\n  - fault: {abort: {httpStatus: 503, percentage: {value: 150}}}\n    \
         route: [{destination: {host: r}}]\n",
        "spec.http[0].fault.abort.percentage.value",
    );
    // Nothing was stored.
    let left = c.kubectl(&["get", "httproute,dr,tp,vs", "-o", "name"]);
    assert!(left.trim().is_empty(), "{left}");
}

fn builtin_crds(c: &Cluster) -> Vec<(String, String)> {
    let list = c.get_json(&["crd"]);
    let mut out: Vec<(String, String)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i: &Value| {
            let meta = &i["metadata"];
            (
                meta["name"].as_str().unwrap_or_default().to_string(),
                meta["resourceVersion"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_restart_keeps_one_copy_of_each_built_in_crd_and_the_objects() {
    let mut c = Cluster::start();
    let before = builtin_crds(&c);
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    let mut want: Vec<&str> = BUILTIN.to_vec();
    want.sort();
    assert_eq!(names, want);
    let f = c.file("gateway.yaml", MANIFEST);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    c.restart();
    c.restart();
    let after = builtin_crds(&c);
    assert_eq!(before, after, "the CRDs were rewritten or duplicated by a restart");
    let log = c.log_text();
    assert!(!log.contains("not installed"), "start-up complained:\n{log}");
    let routes = c.kubectl(&["get", "httproute", "shop", "-o", "name"]);
    assert_eq!(routes.trim(), "httproute.gateway.networking.k8s.io/shop");
    let tp = c.get_json(&["tp", "api-limits"]);
    assert_eq!(tp["spec"]["rateLimit"]["key"]["header"], "x-user");
}
