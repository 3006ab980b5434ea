//! LimitRanger and ResourceQuota admission through the real registry over a `MemStore`:
//! upstream's messages as 403s, and a quota that many concurrent creates never overrun, with
//! every charge but none twice when two quotas limit the same creates.

use kumo_apiserver::catalog::Catalog;
use kumo_apiserver::error::ApiError;
use kumo_apiserver::registry::{Registry, WriteOptions};
use kumo_store::MemStore;
use serde_json::{json, Value};
use std::sync::Arc;

async fn registry() -> Registry {
    let reg = Registry::new(Arc::new(MemStore::new()), Catalog::new());
    let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    create(&reg, "namespaces", obj).await.expect("namespace");
    reg
}

async fn create(reg: &Registry, plural: &str, obj: Value) -> Result<Value, ApiError> {
    let r = reg.catalog.snapshot().find("", "v1", plural).cloned().expect("resource");
    let ns = r.namespaced.then_some("default");
    reg.create(&r, ns, obj, &WriteOptions::default()).await.map(|w| w.object)
}

async fn get(reg: &Registry, plural: &str, name: &str) -> Value {
    let r = reg.catalog.snapshot().find("", "v1", plural).cloned().expect("resource");
    reg.get(&r, Some("default"), name).await.expect("get")
}

fn pod(name: &str, resources: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "app", "image": "nginx", "resources": resources}]}})
}

#[tokio::test]
async fn limit_ranges_refuse_with_upstreams_message() {
    let reg = registry().await;
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "l"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}});
    create(&reg, "limitranges", lr).await.expect("limit range");
    let err = create(&reg, "pods", pod("x", json!({"limits": {"cpu": "2"}}))).await.unwrap_err();
    assert_eq!(err.code().as_u16(), 403);
    assert_eq!(
        err.to_string(),
        "pods \"x\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
    );
    // The default limit of a Container item defaults to its max (LimitRange defaulting), so a
    // pod without limits gets 1 CPU and passes.
    let ok = create(&reg, "pods", pod("y", json!({}))).await.expect("defaulted");
    assert_eq!(ok["spec"]["containers"][0]["resources"]["limits"]["cpu"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_take_exactly_what_two_quotas_allow() {
    let reg = registry().await;
    for (name, hard) in
        [("five", json!({"configmaps": "5"})), ("count", json!({"count/configmaps": "100"}))]
    {
        let q = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": {"hard": hard}});
        create(&reg, "resourcequotas", q).await.expect("quota");
    }
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let reg = reg.clone();
            tokio::spawn(async move {
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i}")}});
                create(&reg, "configmaps", cm).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code().as_u16(), 403, "{e}");
                assert!(e.to_string().contains("exceeded quota: five, requested: configmaps=1, used: configmaps=5, limited: configmaps=5"), "{e}");
            }
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(get(&reg, "resourcequotas", "five").await["status"]["used"]["configmaps"], "5");
    // The second quota was charged once per stored ConfigMap, never twice.
    assert_eq!(
        get(&reg, "resourcequotas", "count").await["status"]["used"]["count/configmaps"],
        "5"
    );
}
