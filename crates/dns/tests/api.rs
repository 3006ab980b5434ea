//! Cluster DNS of a real `kumo up`: Services and EndpointSlices created through the API show up
//! in answers of the DNS server the binary runs (`--dns-addr`), and changes follow.
//!
//! Needs the `kumo` binary (`cargo build -p kumo`; see `crates/controllers/tests/support/server.rs` for where it is
//! looked for). There is no node agent: the test writes the EndpointSlice itself, as a user
//! does for a Service without a selector.

#[path = "support/dns.rs"]
mod dns;
#[path = "../../controllers/tests/support/server.rs"]
mod server;

use dns::{query_tcp, query_udp};
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

async fn client(server: &server::Server) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// What a reply says, in one comparable string list: the rcode, then each answer's data.
fn summary(m: &Message) -> Vec<String> {
    let mut data: Vec<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.to_string(),
            RData::SRV(s) => format!("{} {} {} {}", s.priority, s.weight, s.port, s.target),
            RData::CNAME(c) => format!("CNAME {}", c.0),
            other => format!("{other:?}"),
        })
        .collect();
    data.sort();
    data.insert(0, format!("{:?}", m.metadata.response_code));
    data
}

/// Query over UDP until the reply says `want`, or fail after 30 s; then check TCP agrees.
async fn expect(dns: SocketAddr, name: &str, qtype: RecordType, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = summary(&query_udp(dns, name, qtype).await);
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "{name} {qtype}: got {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(summary(&query_tcp(dns, name, qtype).await), want, "{name} {qtype} over TCP");
}

#[tokio::test]
async fn services_and_endpoint_slices_from_the_api_are_answered() {
    let bin = server::kumo_bin()
        .expect("no kumo binary: set KUMO_BIN or run `cargo build -p kumo` first");
    let server = server::start(&bin);
    let client = client(&server).await;
    let dns = server.dns;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
    let pp = PostParams::default();

    // A ClusterIP Service: its allocated address.
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .expect("service");
    let web = services.create(&pp, &web).await.expect("create web");
    let ip = web.spec.and_then(|s| s.cluster_ip).expect("a clusterIP");
    assert!(ip.starts_with("127."), "{ip} from the loopback range");
    expect(dns, "web.default.svc.cluster.local.", RecordType::A, &["NoError", &ip]).await;
    let srv = "0 100 80 web.default.svc.cluster.local.";
    expect(dns, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV, &["NoError", srv])
        .await;
    expect(dns, "web.default.svc.cluster.local.", RecordType::AAAA, &["NoError"]).await;

    // A headless Service and its slice: ready endpoints only, by hostname.
    let db: Service = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}]}
    }))
    .expect("service");
    services.create(&pp, &db).await.expect("create db");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["127.0.0.2"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["127.0.0.3"], "hostname": "db-1", "conditions": {"ready": false}}
        ],
        "ports": [{"name": "sql", "port": 31000, "protocol": "TCP"}]
    }))
    .expect("slice");
    slices.create(&pp, &slice).await.expect("create slice");
    expect(dns, "db.default.svc.cluster.local.", RecordType::A, &["NoError", "127.0.0.2"]).await;
    let srv0 = "0 100 31000 db-0.db.default.svc.cluster.local.";
    expect(dns, "_sql._tcp.db.default.svc.cluster.local.", RecordType::SRV, &["NoError", srv0])
        .await;
    expect(dns, "db-0.db.default.svc.cluster.local.", RecordType::A, &["NoError", "127.0.0.2"])
        .await;
    expect(dns, "db-1.db.default.svc.cluster.local.", RecordType::A, &["NXDomain"]).await;

    // The second endpoint becomes ready.
    let patch = json!({"endpoints": [
        {"addresses": ["127.0.0.2"], "hostname": "db-0", "conditions": {"ready": true}},
        {"addresses": ["127.0.0.3"], "hostname": "db-1", "conditions": {"ready": true}}
    ]});
    slices.patch("db-1", &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch");
    let both = ["NoError", "127.0.0.2", "127.0.0.3"];
    expect(dns, "db.default.svc.cluster.local.", RecordType::A, &both).await;
    let srv1 = "0 100 31000 db-1.db.default.svc.cluster.local.";
    expect(
        dns,
        "_sql._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
        &["NoError", srv0, srv1],
    )
    .await;

    // ExternalName.
    let ext: Service = serde_json::from_value(json!({
        "metadata": {"name": "search"},
        "spec": {"type": "ExternalName", "externalName": "search.example.com"}
    }))
    .expect("service");
    services.create(&pp, &ext).await.expect("create search");
    let cname = "CNAME search.example.com.";
    expect(dns, "search.default.svc.cluster.local.", RecordType::A, &["NoError", cname]).await;

    // Deleted: gone from DNS; outside the zone: refused.
    services.delete("web", &DeleteParams::default()).await.expect("delete web");
    expect(dns, "web.default.svc.cluster.local.", RecordType::A, &["NXDomain"]).await;
    expect(dns, "kubernetes.io.", RecordType::A, &["Refused"]).await;
    // The API server's own Service.
    let api = ["NoError", "127.64.0.1"];
    expect(dns, "kubernetes.default.svc.cluster.local.", RecordType::A, &api).await;
}

#[tokio::test]
async fn the_cluster_domain_is_a_flag() {
    let bin = server::kumo_bin()
        .expect("no kumo binary: set KUMO_BIN or run `cargo build -p kumo` first");
    let server = server::start_with(&bin, &["--cluster-domain", "kumo.test"]);
    let dns = server.dns;
    let api = ["NoError", "127.64.0.1"];
    expect(dns, "kubernetes.default.svc.kumo.test.", RecordType::A, &api).await;
    expect(dns, "kubernetes.default.svc.cluster.local.", RecordType::A, &["Refused"]).await;
}
