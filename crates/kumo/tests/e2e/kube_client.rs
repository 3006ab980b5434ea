//! The `kube` crate as a client: list, watch resumed from a resourceVersion, and a conflict on
//! a stale update.

use crate::harness::Cluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use std::collections::BTreeMap;

fn cm(name: &str, v: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(BTreeMap::from([("v".to_string(), v.to_string())])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_crate_lists_watches_from_a_revision_and_sees_conflicts() {
    let c = Cluster::start();
    let kubeconfig = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let pp = PostParams::default();
    let a = api.create(&pp, &cm("a", "1")).await.unwrap();
    api.create(&pp, &cm("b", "1")).await.unwrap();
    let list = api.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = list.items.iter().filter_map(|i| i.metadata.name.clone()).collect();
    assert!(names.contains(&"a".to_string()) && names.contains(&"b".to_string()), "{names:?}");
    let rv = list.metadata.resource_version.clone().unwrap();
    // Changes after the list...
    let mut a2 = api.get("a").await.unwrap();
    a2.data = Some(BTreeMap::from([("v".to_string(), "2".to_string())]));
    api.replace("a", &pp, &a2).await.unwrap();
    api.create(&pp, &cm("c", "1")).await.unwrap();
    // ...are exactly what a watch from the list's revision delivers.
    let mut stream = api.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    let mut seen = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev.unwrap() {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, vec!["MODIFIED a", "ADDED c"]);
    // The object read before the update is stale now.
    let err = api.replace("a", &pp, &a).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_crate_server_side_apply_creates_updates_and_keeps_list_keys() {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::discovery::ApiResource;
    let c = Cluster::start();
    let crd = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"gadgets.example.com"},
      "spec":{"group":"example.com","scope":"Namespaced","names":{"plural":"gadgets","kind":"Gadget"},
      "versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{
        "spec":{"type":"object","properties":{"ports":{"type":"array","x-kubernetes-list-type":"map","x-kubernetes-list-map-keys":["name"],
          "items":{"type":"object","required":["name"],"properties":{"name":{"type":"string"},"port":{"type":"integer"}}}}}}}}}}]}}"#;
    c.kubectl_in(&["apply", "-f", "-"], crd);
    let kubeconfig = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    let a = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
        "spec": {"ports": [{"name": "http", "port": 80}]}});
    let created = api.patch("g", &PatchParams::apply("alice"), &Patch::Apply(&a)).await.unwrap();
    assert_eq!(created.data["spec"]["ports"][0]["port"], 80);
    // Bob adds another item of the map-list: both items stay, each owned by its manager.
    let b = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
        "spec": {"ports": [{"name": "metrics", "port": 9090}]}});
    let merged = api.patch("g", &PatchParams::apply("bob"), &Patch::Apply(&b)).await.unwrap();
    let names: Vec<&str> = merged.data["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["http", "metrics"]);
    let managed = merged.metadata.managed_fields.unwrap();
    assert_eq!(managed.len(), 2);
    // Bob changing alice's port conflicts.
    let steal = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
        "spec": {"ports": [{"name": "http", "port": 81}]}});
    let err = api.patch("g", &PatchParams::apply("bob"), &Patch::Apply(&steal)).await.unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 409),
        other => panic!("expected a conflict, got {other:?}"),
    }
}
