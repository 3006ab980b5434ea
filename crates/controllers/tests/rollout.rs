//! The controllers against the real kumo API server: a Deployment rolls out, an image change
//! rolls pods within maxUnavailable, and scaling to 0 and back works.
//!
//! The test starts the `kumo` binary (as `crates/kumo/tests/e2e/harness.rs` does). It looks
//! for it at `$KUMO_BIN`, else `$CARGO_TARGET_DIR/debug/kumo`, else `target/debug/kumo` in
//! the workspace; `cargo test --workspace` builds it, and without it the test fails saying so.
//! The controllers under test are the ones `kumo up` runs.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

#[path = "support/server.rs"]
mod server;
use server::{kumo_bin, start};

/// Poll `f` until it returns Some, or fail after 30 s with `what`.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn mark_ready(pods: &Api<Pod>, pod: &Pod) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let patch = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("ready");
}

fn deployment() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "web:1"}]}}}
    }))
    .expect("deployment")
}

fn int(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_updates_within_max_unavailable_and_scales() {
    // `cargo test --workspace` builds the binary; alone, build it first or set KUMO_BIN.
    let bin = kumo_bin().expect("no kumo binary: set KUMO_BIN or run `cargo build -p kumo` first");
    let server = start(&bin);
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    // `kumo up` runs these controllers itself (`kumo_controllers::run`); the test drives them
    // through the API only.

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let d = deployments.create(&PostParams::default(), &deployment()).await.expect("create");
    let d_uid = d.metadata.uid.clone().unwrap_or_default();

    // An RS web-<hash> owned by the Deployment, and 3 pods owned by the RS.
    let rs1 = eventually("first replicaset", || async {
        let list = sets.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|r| r.metadata.name.as_deref().is_some_and(|n| n.starts_with("web-")))
    })
    .await;
    let hash = rs1.metadata.labels.clone().unwrap_or_default()["pod-template-hash"].clone();
    assert_eq!(rs1.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    let owner = rs1.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!((owner[0].uid.as_str(), owner[0].controller), (d_uid.as_str(), Some(true)));
    let rs1_uid = rs1.metadata.uid.clone().unwrap_or_default();
    let first = eventually("3 pods", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        (list.items.len() == 3).then_some(list.items)
    })
    .await;
    for p in &first {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get("pod-template-hash"), Some(&hash));
        let o = p.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(o[0].uid, rs1_uid);
        assert_eq!(o[0].block_owner_deletion, Some(true));
        mark_ready(&pods, p).await;
    }
    eventually("3/3 available", || async {
        let d = deployments.get("web").await.ok()?;
        let s = d.status?;
        (int(s.available_replicas) == 3 && int(s.updated_replicas) == 3).then_some(())
    })
    .await;

    // Change the image: a new RS, and pods replaced without going below 2 available.
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "web:2"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("patch");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = pods.list(&ListParams::default()).await.expect("pods");
        let available = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        assert!(available >= 2, "only {available} ready pods during the rollout");
        assert!(list.items.len() <= 4, "{} pods exceed replicas + maxSurge", list.items.len());
        let d = deployments.get("web").await.expect("get");
        let s = d.status.clone().unwrap_or_default();
        let done = s.observed_generation >= d.metadata.generation
            && int(s.updated_replicas) == 3
            && int(s.replicas) == 3
            && int(s.available_replicas) == 3;
        if done {
            break;
        }
        for p in &list.items {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if labels.get("pod-template-hash") != Some(&hash) && !ready {
                mark_ready(&pods, p).await;
            }
        }
        assert!(Instant::now() < deadline, "rollout did not complete: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = deployments.get("web").await.expect("get");
    let ann = d.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(ann.get("deployment.kubernetes.io/revision").map(String::as_str), Some("2"));
    let rs_count = sets.list(&ListParams::default()).await.expect("rs").items.len();
    assert_eq!(rs_count, 2, "old RS kept at 0 for history");

    // Scale to 0 and back to 2.
    for (replicas, want) in [(0, 0usize), (2, 2)] {
        let patch = json!({"spec": {"replicas": replicas}});
        deployments
            .patch("web", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("scale");
        eventually("scaled pods", || async {
            let list = pods.list(&ListParams::default()).await.ok()?;
            (list.items.len() == want).then_some(())
        })
        .await;
    }
}
