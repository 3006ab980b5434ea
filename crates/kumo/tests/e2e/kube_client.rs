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
