//! The DNS server on real sockets (127.0.0.1, a free port): queries over UDP and TCP, a large
//! headless answer truncated over UDP and whole over TCP, garbage that must not stop the
//! server, and a clean shutdown. The zone is filled by hand; `tests/api.rs` fills it from a
//! real API server.

#[path = "support/dns.rs"]
mod dns;

use dns::{query_tcp, query_udp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kumo_dns::{Config, Server};
use serde_json::json;
use std::time::Duration;

fn service(name: &str, cluster_ip: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .expect("service")
}

fn slice(svc: &str, n: usize) -> EndpointSlice {
    let endpoints: Vec<_> = (0..n)
        .map(|i| {
            json!({"addresses": [format!("10.1.{}.{}", i / 200, i % 200)],
                        "conditions": {"ready": true}})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": format!("{svc}-x"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }))
    .expect("slice")
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let server = Server::bind(&Config::default()).await.expect("bind");
    let addr = server.local_addr();
    assert!(addr.port() != 0);
    {
        let records = server.records();
        let mut zone = records.write().expect("lock");
        zone.apply_service(&service("web", "127.64.0.10"));
        zone.apply_service(&service("many", "None"));
        zone.apply_slice(&slice("many", 300));
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));

    for reply in [
        query_udp(addr, "web.default.svc.cluster.local.", RecordType::A).await,
        query_tcp(addr, "web.default.svc.cluster.local.", RecordType::A).await,
    ] {
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        let ips: Vec<_> = reply.answers.iter().map(|r| r.data.clone()).collect();
        assert_eq!(ips, [RData::A(A("127.64.0.10".parse().expect("ip")))]);
    }
    let reply = query_udp(addr, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(reply.answers.len(), 1);
    let reply = query_udp(addr, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(reply.authorities.len(), 1);
    let reply = query_tcp(addr, "example.com.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);

    // 300 endpoints: truncated over UDP, whole over TCP.
    let reply = query_udp(addr, "many.default.svc.cluster.local.", RecordType::A).await;
    assert!(reply.metadata.truncation);
    let reply = query_tcp(addr, "many.default.svc.cluster.local.", RecordType::A).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 300);
    let reply =
        query_tcp(addr, "_http._tcp.many.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(reply.answers.len(), 300);
    assert_eq!(reply.additionals.len(), 300);

    // Garbage over both transports; the server keeps answering.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    for junk in [&b""[..], b"\x00", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0"] {
        udp.send_to(junk, addr).await.expect("send");
    }
    {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        tcp.write_all(b"\x00\x05hello\xff\xff\x00").await.expect("write");
    }
    let reply = query_udp(addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.answers.len(), 1);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops").expect("task");
}

#[tokio::test]
async fn a_taken_port_is_an_error() {
    let first = Server::bind(&Config::default()).await.expect("bind");
    let config = Config { listen: first.local_addr(), domain: "cluster.local".into() };
    assert!(Server::bind(&config).await.is_err());
    let bad = Config { domain: "a..b".into(), ..Config::default() };
    assert!(Server::bind(&bad).await.is_err());
}
