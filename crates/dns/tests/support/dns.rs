//! A minimal DNS client for the tests: one query over UDP or TCP, built and parsed with
//! hickory-proto, failing the test on timeout or a reply that does not match.

#![allow(dead_code)]

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn request(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m
}

fn check(req: &Message, bytes: &[u8]) -> Message {
    let reply = Message::from_vec(bytes).expect("reply parses");
    assert_eq!(reply.metadata.id, req.metadata.id, "reply to our query");
    assert_eq!(reply.queries, req.queries, "question echoed");
    reply
}

pub async fn query_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let req = request(name, qtype);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.send_to(&req.to_vec().expect("encode"), server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("udp reply within 5 s")
        .expect("recv");
    check(&req, &buf[..n])
}

pub async fn query_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let req = request(name, qtype);
    let bytes = req.to_vec().expect("encode");
    let mut stream = tokio::net::TcpStream::connect(server).await.expect("connect");
    let len = u16::try_from(bytes.len()).expect("small query");
    stream.write_all(&len.to_be_bytes()).await.expect("write");
    stream.write_all(&bytes).await.expect("write");
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        let len = stream.read_u16().await.expect("length");
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.expect("reply");
        buf
    })
    .await
    .expect("tcp reply within 5 s");
    check(&req, &reply)
}
