//! `generateName` through the real registry over a `MemStore`: a drawn name that is taken is
//! drawn again (upstream's RetryGenerateName), so many creates from one prefix all succeed.

use kumo_apiserver::catalog::Catalog;
use kumo_apiserver::registry::{Registry, WriteOptions};
use kumo_store::MemStore;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;

#[tokio::test]
async fn fifteen_thousand_creates_from_one_prefix_all_succeed() {
    let reg = Registry::new(Arc::new(MemStore::new()), Catalog::new());
    let snapshot = reg.catalog.snapshot();
    let namespaces = snapshot.find("", "v1", "namespaces").cloned().expect("namespaces");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    reg.create(&namespaces, None, ns, &WriteOptions::default()).await.expect("namespace");
    let maps = snapshot.find("", "v1", "configmaps").cloned().expect("configmaps");
    // Five characters from 27 give 14.3 million names: 15,000 draws collide at least once with
    // probability 1 - e^(-15000²/(2·27⁵)) > 0.999, so without retries this fails.
    let mut names = HashSet::new();
    for i in 0..15_000 {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "job-"}});
        let written = reg
            .create(&maps, Some("default"), obj, &WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("create {i}: {e:?}"));
        let name = written.object["metadata"]["name"].as_str().expect("name").to_string();
        assert!(name.starts_with("job-") && name.len() == 9, "{name}");
        assert!(names.insert(name), "a name was handed out twice");
    }
}

#[tokio::test]
async fn a_taken_explicit_name_is_still_a_conflict() {
    let reg = Registry::new(Arc::new(MemStore::new()), Catalog::new());
    let snapshot = reg.catalog.snapshot();
    let namespaces = snapshot.find("", "v1", "namespaces").cloned().expect("namespaces");
    let obj = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "a", "generateName": "ignored-"}});
    reg.create(&namespaces, None, obj.clone(), &WriteOptions::default()).await.expect("first");
    let err = reg.create(&namespaces, None, obj, &WriteOptions::default()).await.err();
    let err = err.expect("second create of the same name must fail");
    assert_eq!(err.status()["code"], 409, "{:?}", err.status());
}
