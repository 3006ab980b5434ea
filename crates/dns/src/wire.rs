//! From request bytes to response bytes: parse, check, resolve, encode, truncate.
//!
//! Transport-free so the fuzz test can throw arbitrary bytes at it. Every input either gets a
//! well-formed reply or none: packets too short to carry an ID, and packets that are
//! themselves responses (answering those could loop two servers into each other), are dropped;
//! anything else unparsable gets FORMERR.

use crate::records::Records;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;

/// The largest UDP reply we send when the client advertises more (EDNS). 1232 bytes avoids IP
/// fragmentation on any path (DNS Flag Day 2020), and clients that need more retry over TCP.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The transport a request came over, which bounds the reply's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or what the client's EDNS OPT allows (up to [`MAX_UDP_PAYLOAD`]).
    Udp,
    /// 65535 bytes (the two-byte length prefix).
    Tcp,
}

/// The reply to one request packet, or None when it gets no reply.
pub fn respond(records: &Records, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return None;
    }
    let request = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => return Some(formerr(packet)),
    };
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        response.set_edns(edns);
    }
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
    } else if request.queries.len() != 1 {
        // Nobody sends several questions in one message (RFC 9619); one or none is malformed.
        response.metadata.response_code = ResponseCode::FormErr;
    } else {
        let query = &request.queries[0];
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            response.metadata.response_code = ResponseCode::Refused;
        } else {
            let answer = records.resolve(query.name(), query.query_type());
            response.metadata.response_code = answer.code;
            response.metadata.authoritative = answer.authoritative;
            response.answers = answer.answers;
            response.authorities = answer.authorities;
            response.additionals = answer.additionals;
        }
    }
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(
            request.edns.as_ref().map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        ),
    };
    let bytes = match response.to_vec() {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(error = %e, "cannot encode a DNS response");
            return servfail(response);
        }
    };
    if bytes.len() <= limit {
        return Some(bytes);
    }
    // Too big for the transport: an empty answer with TC set makes the client retry over TCP.
    response.answers.clear();
    response.authorities.clear();
    response.additionals.clear();
    response.metadata.truncation = true;
    response.to_vec().ok()
}

fn servfail(mut response: Message) -> Option<Vec<u8>> {
    response.answers.clear();
    response.authorities.clear();
    response.additionals.clear();
    response.metadata.response_code = ResponseCode::ServFail;
    response.to_vec().ok()
}

/// A bare FORMERR header for a packet we could not parse: its ID and opcode, QR set, RD
/// copied, no sections (we could not read them).
fn formerr(packet: &[u8]) -> Vec<u8> {
    let opcode_and_rd = packet[2] & 0x79;
    let mut out = vec![0u8; 12];
    out[0] = packet[0];
    out[1] = packet[1];
    out[2] = 0x80 | opcode_and_rd;
    out[3] = ResponseCode::FormErr.low();
    out
}

/// Whether a parsed reply is a response to a query (for tests and clients).
pub fn is_response(m: &Message) -> bool {
    m.metadata.message_type == MessageType::Response
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};
    use k8s_openapi::api::core::v1::{Service, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rand::{Rng, RngCore, SeedableRng};

    /// Headless services `big` (100 ready endpoints) and `mid` (50).
    fn records() -> Records {
        let mut r = Records::new("cluster.local").expect("zone");
        for (svc, n) in [("big", 100), ("mid", 50)] {
            let meta = |name: &str| ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                labels: Some([("kubernetes.io/service-name".to_string(), svc.to_string())].into()),
                ..Default::default()
            };
            r.apply_service(&Service {
                metadata: meta(svc),
                spec: Some(ServiceSpec { cluster_ip: Some("None".into()), ..Default::default() }),
                ..Default::default()
            });
            r.apply_slice(&EndpointSlice {
                metadata: meta(&format!("{svc}-1")),
                address_type: "IPv4".into(),
                endpoints: (0..n)
                    .map(|i| Endpoint {
                        addresses: vec![format!("10.0.1.{i}")],
                        ..Default::default()
                    })
                    .collect(),
                ports: None,
            });
        }
        r
    }

    fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().expect("encode")
    }

    fn parse(bytes: Option<Vec<u8>>) -> Message {
        Message::from_vec(&bytes.expect("a reply")).expect("a parsable reply")
    }

    #[test]
    fn big_answers_are_truncated_over_udp_and_whole_over_tcp() {
        let r = records();
        let q = query("big.default.svc.cluster.local.", RecordType::A, None);
        let udp = parse(respond(&r, &q, Transport::Udp));
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        assert!(is_response(&udp));
        let tcp = parse(respond(&r, &q, Transport::Tcp));
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 100);
        assert!(tcp.metadata.authoritative && tcp.metadata.recursion_desired);
        // 50 records: too many for 512 bytes, whole with EDNS (with an OPT in the reply).
        let q = query("mid.default.svc.cluster.local.", RecordType::A, None);
        assert!(parse(respond(&r, &q, Transport::Udp)).metadata.truncation);
        let q = query("mid.default.svc.cluster.local.", RecordType::A, Some(4096));
        let udp = parse(respond(&r, &q, Transport::Udp));
        assert!(!udp.metadata.truncation);
        assert_eq!(udp.answers.len(), 50);
        assert_eq!(udp.edns.as_ref().map(Edns::max_payload), Some(MAX_UDP_PAYLOAD));
        // 100 records do not fit our UDP cap even with EDNS.
        let q = query("big.default.svc.cluster.local.", RecordType::A, Some(4096));
        assert!(parse(respond(&r, &q, Transport::Udp)).metadata.truncation);
    }

    #[test]
    fn garbage_gets_formerr_and_responses_get_nothing() {
        let r = records();
        let reply =
            respond(&r, &[0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff], Transport::Udp);
        let m = parse(reply);
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(m.metadata.recursion_desired);
        assert!(respond(&r, &[1, 2, 3], Transport::Udp).is_none());
        let mut q = query("x.cluster.local.", RecordType::A, None);
        q[2] |= 0x80;
        assert!(respond(&r, &q, Transport::Udp).is_none());
    }

    #[test]
    fn other_opcodes_and_classes_are_not_served() {
        let r = records();
        let mut m = Message::query();
        m.metadata.op_code = OpCode::Status;
        let reply = parse(respond(&r, &m.to_vec().expect("encode"), Transport::Udp));
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
        let mut m = Message::query();
        let mut q = Query::query(Name::from_ascii("version.bind.").expect("name"), RecordType::TXT);
        q.set_query_class(DNSClass::CH);
        m.add_query(q);
        let reply = parse(respond(&r, &m.to_vec().expect("encode"), Transport::Udp));
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        let m = Message::query();
        let reply = parse(respond(&r, &m.to_vec().expect("encode"), Transport::Udp));
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }

    /// Random packets, and valid queries with random bytes flipped, never panic, and whatever
    /// comes back parses.
    #[test]
    fn random_bytes_never_panic() {
        let r = records();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let valid = query("_http._tcp.big.default.svc.cluster.local.", RecordType::SRV, Some(1232));
        for i in 0..100_000 {
            let packet = if i % 2 == 0 {
                let len = rng.random_range(0..600);
                let mut p = vec![0u8; len];
                rng.fill_bytes(&mut p);
                p
            } else {
                let mut p = valid.clone();
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..p.len());
                    p[at] = rng.random();
                }
                p.truncate(rng.random_range(0..=p.len()));
                p
            };
            for transport in [Transport::Udp, Transport::Tcp] {
                if let Some(reply) = respond(&r, &packet, transport) {
                    let m = Message::from_vec(&reply).expect("replies parse");
                    assert!(is_response(&m));
                    if transport == Transport::Udp {
                        assert!(reply.len() <= usize::from(MAX_UDP_PAYLOAD));
                    }
                }
            }
        }
    }
}
