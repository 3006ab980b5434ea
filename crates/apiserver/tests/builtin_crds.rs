//! The built-in CRDs through the real registry over a `MemStore`: start-up installs them once
//! and keeps them current, their schemas survive the CRD's own admission unpruned, and objects
//! of their kinds get the schema's defaults and 422s that name the field.

use kumo_apiserver::builtin_crds::{self, DIGEST_ANNOTATION};
use kumo_apiserver::catalog::Catalog;
use kumo_apiserver::error::ApiError;
use kumo_apiserver::hooks;
use kumo_apiserver::registry::{Registry, WriteOptions};
use kumo_store::MemStore;
use serde_json::{json, Value};
use std::sync::Arc;

async fn registry() -> Registry {
    let reg = Registry::new(Arc::new(MemStore::new()), Catalog::new());
    hooks::load_crds(&reg).await;
    builtin_crds::install(&reg).await;
    let ns = reg.catalog.snapshot().find("", "v1", "namespaces").cloned().expect("namespaces");
    let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    reg.create(&ns, None, obj, &WriteOptions::default()).await.expect("namespace");
    reg
}

async fn stored_crds(reg: &Registry) -> Vec<Value> {
    let crd = reg
        .catalog
        .snapshot()
        .by_kind("apiextensions.k8s.io", "CustomResourceDefinition")
        .cloned()
        .expect("crd resource");
    let page = reg
        .store
        .range(kumo_store::RangeRequest { prefix: crd.key_prefix(), ..Default::default() })
        .await
        .expect("range");
    page.kvs.iter().map(|kv| serde_json::from_slice(&kv.value).expect("json")).collect()
}

async fn create(reg: &Registry, group: &str, plural: &str, obj: Value) -> Result<Value, ApiError> {
    let r = reg
        .catalog
        .snapshot()
        .resources
        .iter()
        .find(|r| r.group == group && r.plural == plural)
        .cloned()
        .unwrap_or_else(|| panic!("{plural}.{group} is not served"));
    let ns = r.namespaced.then_some("default");
    reg.create(&r, ns, obj, &WriteOptions::default()).await.map(|w| w.object)
}

#[tokio::test]
async fn start_up_installs_each_definition_once_and_keeps_it_current() {
    let reg = registry().await;
    let first = stored_crds(&reg).await;
    let definitions = builtin_crds::definitions().expect("definitions");
    assert_eq!(first.len(), definitions.len());
    for def in &definitions {
        let name = &def["metadata"]["name"];
        let got = first.iter().find(|c| &c["metadata"]["name"] == name).expect("stored");
        assert_eq!(got["spec"]["versions"], def["spec"]["versions"], "{name}: schema pruned");
        assert_eq!(got["status"]["conditions"][1]["type"], "Established");
    }
    // A second start changes nothing.
    builtin_crds::install(&reg).await;
    let again = stored_crds(&reg).await;
    assert_eq!(first, again);
    // A definition stored by an older kumo is replaced; one installed by hand is left alone.
    let crd = reg
        .catalog
        .snapshot()
        .by_kind("apiextensions.k8s.io", "CustomResourceDefinition")
        .cloned()
        .expect("crd resource");
    let opts = WriteOptions::default();
    let mut old = first[0].clone();
    old["metadata"]["annotations"][DIGEST_ANNOTATION] = json!("old");
    old["spec"]["names"]["shortNames"] = json!(["old"]);
    let old_name = old["metadata"]["name"].as_str().expect("name").to_string();
    reg.update(&crd, None, &old_name, old, None, &opts).await.expect("age it");
    let mut mine = first[1].clone();
    let mine_name = mine["metadata"]["name"].as_str().expect("name").to_string();
    mine["metadata"]["annotations"] = json!({});
    mine["spec"]["names"]["shortNames"] = json!(["mine"]);
    reg.update(&crd, None, &mine_name, mine, None, &opts).await.expect("take it over");
    builtin_crds::install(&reg).await;
    let after = stored_crds(&reg).await;
    let find = |n: &str| after.iter().find(|c| c["metadata"]["name"] == n).expect("stored").clone();
    assert_eq!(find(&old_name)["spec"], first[0]["spec"]);
    assert_eq!(find(&mine_name)["spec"]["names"]["shortNames"], json!(["mine"]));
    assert_eq!(after.len(), first.len());
}

#[tokio::test]
async fn an_http_route_gets_upstream_defaults() {
    let reg = registry().await;
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {"parentRefs": [{"name": "gw"}],
                 "rules": [{"matches": [{"headers": [{"name": "x-a", "value": "1"}]}],
                            "backendRefs": [{"name": "svc", "port": 80}]},
                           {"backendRefs": [{"name": "svc2", "port": 80}],
                            "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]}]}});
    let err = create(&reg, "gateway.networking.k8s.io", "httproutes", route.clone())
        .await
        .expect_err("a redirect with backends");
    assert!(err.to_string().contains("spec.rules[1]: Invalid value"), "{err}");
    let mut ok = route;
    ok["spec"]["rules"][1].as_object_mut().expect("rule").remove("backendRefs");
    let got = create(&reg, "gateway.networking.k8s.io", "httproutes", ok).await.expect("created");
    let spec = &got["spec"];
    assert_eq!(spec["parentRefs"][0]["group"], "gateway.networking.k8s.io");
    assert_eq!(spec["parentRefs"][0]["kind"], "Gateway");
    let rule = &spec["rules"][0];
    assert_eq!(rule["matches"][0]["path"], json!({"type": "PathPrefix", "value": "/"}));
    assert_eq!(rule["matches"][0]["headers"][0]["type"], "Exact");
    assert_eq!(rule["backendRefs"][0]["weight"], 1);
    assert_eq!(rule["backendRefs"][0]["kind"], "Service");
    assert_eq!(rule["backendRefs"][0]["group"], "");
    assert_eq!(spec["rules"][1]["filters"][0]["requestRedirect"]["statusCode"], 302);
    assert_eq!(
        spec["rules"][1]["matches"],
        json!([{"path": {"type": "PathPrefix", "value": "/"}}])
    );
}

#[tokio::test]
async fn invalid_objects_are_refused_naming_the_field() {
    let reg = registry().await;
    let cases = [
        ("gateway.networking.k8s.io", "httproutes",
         json!({"kind": "HTTPRoute", "apiVersion": "gateway.networking.k8s.io/v1", "metadata": {"name": "a"},
                "spec": {"rules": [{"matches": [{"path": {"type": "Prefix", "value": "/"}}]}]}}),
         "spec.rules[0].matches[0].path.type: Unsupported value: \"Prefix\""),
        ("gateway.networking.k8s.io", "httproutes",
         json!({"kind": "HTTPRoute", "apiVersion": "gateway.networking.k8s.io/v1", "metadata": {"name": "b"},
                "spec": {"rules": [{"backendRefs": [{"name": "s", "port": 80, "weight": -1}]}]}}),
         "spec.rules[0].backendRefs[0].weight: Invalid value: -1"),
        ("gateway.networking.k8s.io", "httproutes",
         json!({"kind": "HTTPRoute", "apiVersion": "gateway.networking.k8s.io/v1", "metadata": {"name": "c"},
                "spec": {"rules": [{"timeouts": {"request": "10 seconds"}}]}}),
         "spec.rules[0].timeouts.request: Invalid value: \"10 seconds\""),
        ("networking.istio.io", "destinationrules",
         json!({"kind": "DestinationRule", "apiVersion": "networking.istio.io/v1", "metadata": {"name": "d"},
                "spec": {"subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}),
         "spec.host: Required value"),
        ("networking.istio.io", "virtualservices",
         json!({"kind": "VirtualService", "apiVersion": "networking.istio.io/v1", "metadata": {"name": "e"},
                "spec": {"hosts": ["r"], "http": [{"fault": {"abort": {"httpStatus": 500, "percentage": {"value": 150}}},
                                                   "route": [{"destination": {"host": "r"}}]}]}}),
         "spec.http[0].fault.abort.percentage.value: Invalid value: 150"),
        ("networking.istio.io", "virtualservices",
         json!({"kind": "VirtualService", "apiVersion": "networking.istio.io/v1", "metadata": {"name": "f"},
                "spec": {"http": [{"match": [{"uri": {"exact": "/a", "prefix": "/b"}}]}]}}),
         "spec.http[0].match[0].uri: Too many: 2"),
        ("kumo.dev", "trafficpolicies",
         json!({"kind": "TrafficPolicy", "apiVersion": "kumo.dev/v1alpha1", "metadata": {"name": "g"},
                "spec": {"targetRefs": [{"kind": "Service", "name": "api"}]}}),
         "spec: Invalid value: \"object\": at least one of rateLimit or loadShedding is required"),
        ("security.istio.io", "authorizationpolicies",
         json!({"kind": "AuthorizationPolicy", "apiVersion": "security.istio.io/v1", "metadata": {"name": "h"},
                "spec": {"action": "PERMIT"}}),
         "spec.action: Unsupported value: \"PERMIT\""),
    ];
    for (group, plural, obj, want) in cases {
        let err = create(&reg, group, plural, obj).await.expect_err(want);
        assert_eq!(err.code().as_u16(), 422, "{err}");
        assert!(err.to_string().contains(want), "want {want:?} in {err}");
    }
}

#[tokio::test]
async fn a_traffic_policy_gets_its_defaults() {
    let reg = registry().await;
    let tp = json!({"apiVersion": "kumo.dev/v1alpha1", "kind": "TrafficPolicy", "metadata": {"name": "t"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "api"}],
                 "rateLimit": {"requests": 100, "burst": 200},
                 "loadShedding": {"maxConcurrentRequests": 50}}});
    let got = create(&reg, "kumo.dev", "trafficpolicies", tp).await.expect("created");
    assert_eq!(got["spec"]["rateLimit"]["unit"], "Second");
    assert_eq!(got["spec"]["rateLimit"]["key"], json!({"type": "Global"}));
    assert_eq!(got["spec"]["loadShedding"]["retryAfterSeconds"], 1);
}
