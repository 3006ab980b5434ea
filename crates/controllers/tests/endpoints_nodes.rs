//! The endpoints and node lifecycle controllers against the real kumo API server: a Service
//! gets Endpoints and an EndpointSlice for its pods (ready and not ready apart), and a node
//! whose Lease stopped being renewed becomes Ready=Unknown and tainted unreachable, then
//! recovers when the Lease is renewed.
//!
//! The test starts the `kumo` binary as `tests/rollout.rs` does: `$KUMO_BIN`, else
//! `$CARGO_TARGET_DIR/debug/kumo`, else `target/debug/kumo` in the workspace. There is no node
//! agent: the test registers the Node and its Lease and patches pod status itself.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{Timestamp, ToSpan};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

#[path = "support/server.rs"]
mod server;
use server::{kumo_bin, start, Server};

async fn client(server: &Server) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

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

async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let now = Timestamp::now().to_string();
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {"phase": "Running", "podIP": ip, "hostIP": "192.168.0.1",
        "conditions": [{"type": "Ready", "status": status, "lastTransitionTime": now}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("status");
}

fn ips(list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>) -> Vec<String> {
    let mut out: Vec<String> = list.iter().flatten().map(|a| a.ip.clone()).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_endpoints_and_silent_nodes_become_unreachable() {
    let bin = kumo_bin().expect("no kumo binary: set KUMO_BIN or run `cargo build -p kumo` first");
    let server = start(&bin);
    let client = client(&server).await;

    // A Service selecting two pods on port name "http".
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .expect("service");
    let svc = services.create(&PostParams::default(), &svc).await.expect("create service");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["web-a", "web-b"] {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "web:1",
                "ports": [{"name": "http", "containerPort": 8080}]}]}
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod).await.expect("create pod");
    }
    set_status(&pods, "web-a", "10.1.0.1", true).await;
    set_status(&pods, "web-b", "10.1.0.2", true).await;

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = eventually("endpoints with both pods ready", || async {
        let ep = endpoints.get_opt("web").await.ok()??;
        let subsets = ep.subsets.clone()?;
        (subsets.len() == 1 && ips(&subsets[0].addresses) == ["10.1.0.1", "10.1.0.2"]).then_some(ep)
    })
    .await;
    let subset = &ep.subsets.clone().unwrap_or_default()[0];
    let ports = subset.ports.clone().unwrap_or_default();
    assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("http"), 8080));
    assert!(subset.not_ready_addresses.is_none());

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let by_service = ListParams::default().labels("kubernetes.io/service-name=web");
    let slice = eventually("an endpointslice with both pods", || async {
        let list = slices.list(&by_service).await.ok()?;
        let s = list.items.into_iter().next()?;
        (s.endpoints.len() == 2).then_some(s)
    })
    .await;
    assert!(slice.metadata.name.as_deref().is_some_and(|n| n.starts_with("web-")));
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    let owner = slice.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner[0].uid, svc.metadata.uid.clone().unwrap_or_default());
    for e in &slice.endpoints {
        let c = e.conditions.clone().unwrap_or_default();
        assert_eq!((c.ready, c.serving, c.terminating), (Some(true), Some(true), Some(false)));
        assert_eq!(e.node_name.as_deref(), Some("node-1"));
        assert_eq!(e.target_ref.as_ref().and_then(|r| r.kind.as_deref()), Some("Pod"));
    }

    // web-b stops being ready: it moves to notReadyAddresses and its slice endpoint says so.
    set_status(&pods, "web-b", "10.1.0.2", false).await;
    eventually("web-b not ready in endpoints", || async {
        let ep = endpoints.get_opt("web").await.ok()??;
        let s = ep.subsets?.into_iter().next()?;
        (ips(&s.addresses) == ["10.1.0.1"] && ips(&s.not_ready_addresses) == ["10.1.0.2"])
            .then_some(())
    })
    .await;
    eventually("web-b not ready in the slice", || async {
        let list = slices.list(&by_service).await.ok()?;
        let s = list.items.into_iter().next()?;
        let b = s.endpoints.iter().find(|e| e.addresses == ["10.1.0.2"])?;
        (b.conditions.as_ref()?.ready == Some(false)).then_some(())
    })
    .await;

    // A node whose Lease was last renewed 10 minutes ago (grace is 40 s).
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "silent"}
    }))
    .expect("node");
    nodes.create(&PostParams::default(), &node).await.expect("create node");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let long_ago = Timestamp::now() - 600.seconds();
    let lease = Lease {
        metadata: ObjectMeta { name: Some("silent".into()), ..Default::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some("silent".into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(long_ago)),
            ..Default::default()
        }),
    };
    leases.create(&PostParams::default(), &lease).await.expect("create lease");
    let unreachable = |n: &Node| {
        let taints = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let mut effects: Vec<String> = taints
            .into_iter()
            .filter(|t| t.key == "node.kubernetes.io/unreachable")
            .map(|t| t.effect)
            .collect();
        effects.sort();
        effects
    };
    let node = eventually("node Ready=Unknown and tainted", || async {
        let n = nodes.get("silent").await.ok()?;
        let ready = n.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "Unknown" && unreachable(&n).len() == 2).then_some(n)
    })
    .await;
    assert_eq!(unreachable(&node), ["NoExecute", "NoSchedule"]);
    let cond = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap_or_default();
    assert_eq!(cond.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(cond.message.as_deref(), Some("Kubelet stopped posting node status."));

    // The Lease is renewed: the condition and the taints go.
    let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
    leases.patch("silent", &PatchParams::default(), &Patch::Merge(patch)).await.expect("renew");
    eventually("node recovered", || async {
        let n = nodes.get("silent").await.ok()?;
        let unknown = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "Unknown"));
        (!unknown && unreachable(&n).is_empty()).then_some(())
    })
    .await;
}
