//! The in-memory zone: what the watches have seen of Services and EndpointSlices, and the
//! resolver that turns a question into an [`Answer`] from it alone.
//!
//! Kept apart from sockets and watches so unit tests drive it with plain objects. Names are
//! compared label by label in lower case (DNS is case-insensitive); the owner name of every
//! answer is the question's name as the client spelled it, so resolvers that randomise case
//! (0x20) accept the reply.
//!
//! The schema is CoreDNS's `kubernetes` plugin
//! (<https://github.com/kubernetes/dns/blob/master/docs/specification.md>):
//!
//! ```text
//! <svc>.<ns>.svc.<zone>                  A      ClusterIP, or ready endpoint addresses (headless)
//!                                        CNAME  spec.externalName (ExternalName services)
//! _<port>._<proto>.<svc>.<ns>.svc.<zone> SRV    0 100 <port> <svc>.<ns>.svc.<zone>.
//!                                               (headless: one per ready endpoint and port)
//! <host>.<svc>.<ns>.svc.<zone>           A      a ready endpoint of a headless service, by
//!                                               hostname or dashed address (10-0-0-1)
//! <a-b-c-d>.<ns>.pod.<zone>              A      a.b.c.d (like `pods insecure`)
//! dns-version.<zone>                     TXT    the schema version
//! ```

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// TTL of every record: CoreDNS's default for the kubernetes plugin, short because Services
/// and endpoints change and nothing tells caches when.
pub const TTL: u32 = 5;

/// The label EndpointSlices carry to name their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Version of the DNS schema, answered as TXT at `dns-version.<zone>` (the specification asks
/// for it so clients can tell what they talk to).
const SCHEMA_VERSION: &str = "1.1.0";

/// What a question gets: a response code and the records of each section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// NOERROR, NXDOMAIN, REFUSED (outside the zone) or SERVFAIL (not synced yet).
    pub code: ResponseCode,
    /// Whether we are the authority for the name (everything inside the cluster domain).
    pub authoritative: bool,
    /// Records answering the question.
    pub answers: Vec<Record>,
    /// The zone's SOA on negative answers (NXDOMAIN and NODATA), so caches know how long to
    /// remember them.
    pub authorities: Vec<Record>,
    /// Addresses of SRV targets, saving the client a round trip.
    pub additionals: Vec<Record>,
}

impl Answer {
    fn code(code: ResponseCode, authoritative: bool) -> Self {
        Answer {
            code,
            authoritative,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// A Service as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceEntry {
    kind: Kind,
    ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// ClusterIP, NodePort and LoadBalancer: the virtual IPs (empty until allocated).
    Virtual(Vec<IpAddr>),
    /// `clusterIP: None`: the endpoints are the answer.
    Headless,
    /// A CNAME to this name.
    External(String),
}

/// A named port: `_<name>._<protocol>` in SRV names, both lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Port {
    name: String,
    protocol: String,
    port: u16,
}

/// An EndpointSlice as DNS sees it: only ready endpoints are kept, as only they are answered
/// (the controller already marks every endpoint ready for `publishNotReadyAddresses`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SliceEntry {
    service: String,
    endpoints: Vec<Endpoint>,
    ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    /// The label naming the endpoint under its service: `hostname`, else the dashed address.
    label: String,
    addresses: Vec<IpAddr>,
}

/// Namespace and name.
type Key = (String, String);

/// The cluster zone: Services and EndpointSlices of all namespaces, and the resolver over them.
#[derive(Debug, Clone)]
pub struct Records {
    /// Lower-case labels of the cluster domain, e.g. `["cluster", "local"]`.
    zone: Vec<String>,
    services: BTreeMap<Key, ServiceEntry>,
    slices: HashMap<Key, SliceEntry>,
    /// `(namespace, service)` → names of its slices, so a lookup does not scan every slice.
    by_service: HashMap<Key, BTreeSet<String>>,
    /// Whether the first list of each kind arrived. Until then an unknown name may only be
    /// unknown to us, and NXDOMAIN would be cached by clients, so we answer SERVFAIL.
    services_synced: bool,
    slices_synced: bool,
    /// SOA serial: bumped on every change, as a zone's serial should.
    serial: u32,
}

impl Records {
    /// An empty zone for `domain` (e.g. `cluster.local`), ready to answer.
    pub fn new(domain: &str) -> anyhow::Result<Self> {
        let zone: Vec<String> =
            domain.trim_end_matches('.').split('.').map(|l| l.to_ascii_lowercase()).collect();
        let valid = |l: &String| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !zone.iter().all(valid) {
            anyhow::bail!("invalid cluster domain {domain:?}");
        }
        Name::from_labels(zone.iter().map(String::as_str))
            .map_err(|e| anyhow::anyhow!("invalid cluster domain {domain:?}: {e}"))?;
        Ok(Records {
            zone,
            services: BTreeMap::new(),
            slices: HashMap::new(),
            by_service: HashMap::new(),
            services_synced: true,
            slices_synced: true,
            serial: 1,
        })
    }

    /// Answer SERVFAIL inside the zone until [`Records::replace_services`] and
    /// [`Records::replace_slices`] have each been called once (the watches' first lists).
    pub fn wait_for_sync(&mut self) {
        self.services_synced = false;
        self.slices_synced = false;
    }

    /// Whether both first lists have arrived.
    pub fn synced(&self) -> bool {
        self.services_synced && self.slices_synced
    }

    /// Number of Services and EndpointSlices known.
    pub fn len(&self) -> (usize, usize) {
        (self.services.len(), self.slices.len())
    }

    fn bump(&mut self) {
        self.serial = self.serial.wrapping_add(1);
    }

    /// Add or update a Service.
    pub fn apply_service(&mut self, svc: &Service) {
        if let Some((key, entry)) = service_entry(svc) {
            self.services.insert(key, entry);
            self.bump();
        }
    }

    /// Forget a Service.
    pub fn remove_service(&mut self, svc: &Service) {
        if let Some(key) = key_of(&svc.metadata) {
            self.services.remove(&key);
            self.bump();
        }
    }

    /// Replace every Service with `list` (a watch's re-list).
    pub fn replace_services<'a>(&mut self, list: impl IntoIterator<Item = &'a Service>) {
        self.services = list.into_iter().filter_map(service_entry).collect();
        self.services_synced = true;
        self.bump();
    }

    /// Add or update an EndpointSlice.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        if let Some((key, entry)) = slice_entry(slice) {
            self.unindex(&key);
            self.index(&key, &entry);
            self.slices.insert(key, entry);
            self.bump();
        }
    }

    /// Forget an EndpointSlice.
    pub fn remove_slice(&mut self, slice: &EndpointSlice) {
        if let Some(key) = key_of(&slice.metadata) {
            self.unindex(&key);
            self.slices.remove(&key);
            self.bump();
        }
    }

    /// Replace every EndpointSlice with `list` (a watch's re-list).
    pub fn replace_slices<'a>(&mut self, list: impl IntoIterator<Item = &'a EndpointSlice>) {
        self.slices.clear();
        self.by_service.clear();
        for (key, entry) in list.into_iter().filter_map(slice_entry) {
            self.index(&key, &entry);
            self.slices.insert(key, entry);
        }
        self.slices_synced = true;
        self.bump();
    }

    fn index(&mut self, key: &Key, entry: &SliceEntry) {
        self.by_service
            .entry((key.0.clone(), entry.service.clone()))
            .or_default()
            .insert(key.1.clone());
    }

    fn unindex(&mut self, key: &Key) {
        if let Some(old) = self.slices.get(key) {
            let svc_key = (key.0.clone(), old.service.clone());
            if let Some(set) = self.by_service.get_mut(&svc_key) {
                set.remove(&key.1);
                if set.is_empty() {
                    self.by_service.remove(&svc_key);
                }
            }
        }
    }

    /// The slices of one service.
    fn slices_of<'a>(&'a self, ns: &'a str, svc: &str) -> impl Iterator<Item = &'a SliceEntry> {
        self.by_service
            .get(&(ns.to_string(), svc.to_string()))
            .into_iter()
            .flatten()
            .filter_map(move |name| self.slices.get(&(ns.to_string(), name.clone())))
    }

    fn zone_name(&self) -> Name {
        // Checked in `new`; the root is a harmless fallback that cannot happen.
        Name::from_labels(self.zone.iter().map(String::as_str)).unwrap_or_else(|_| Name::root())
    }

    /// `labels` + the zone, as an absolute name; None when not a valid name.
    fn name_in_zone(&self, labels: &[&str]) -> Option<Name> {
        Name::from_labels(labels.iter().copied().chain(self.zone.iter().map(String::as_str))).ok()
    }

    fn soa(&self) -> Record {
        let zone = self.zone_name();
        let mname = self.name_in_zone(&["ns", "dns"]).unwrap_or_else(|| zone.clone());
        let rname = self.name_in_zone(&["hostmaster"]).unwrap_or_else(|| zone.clone());
        // Refresh/retry/expire as CoreDNS; minimum (negative caching) = TTL.
        let soa = SOA::new(mname, rname, self.serial, 7200, 1800, 86400, TTL);
        Record::from_rdata(zone, TTL, RData::SOA(soa))
    }

    /// Answer `qtype` for `qname`.
    pub fn resolve(&self, qname: &Name, qtype: RecordType) -> Answer {
        // Labels in lower case, most specific first; a label that is not UTF-8 cannot be one
        // of ours, but may still be inside the zone (NXDOMAIN), so keep it lossily.
        let labels: Vec<String> =
            qname.iter().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).collect();
        let Some(prefix_len) = labels.len().checked_sub(self.zone.len()) else {
            return Answer::code(ResponseCode::Refused, false);
        };
        if labels[prefix_len..] != self.zone[..] {
            // Not ours, and we do not recurse.
            return Answer::code(ResponseCode::Refused, false);
        }
        if !self.synced() {
            return Answer::code(ResponseCode::ServFail, false);
        }
        let prefix: Vec<&str> = labels[..prefix_len].iter().map(String::as_str).collect();
        let mut answer = Answer::code(ResponseCode::NoError, true);
        match self.lookup(&prefix, qname, qtype, &mut answer) {
            Found::Yes => {
                if answer.answers.is_empty() {
                    answer.authorities.push(self.soa());
                }
            }
            Found::No => {
                answer.code = ResponseCode::NXDomain;
                answer.answers.clear();
                answer.additionals.clear();
                answer.authorities.push(self.soa());
            }
        }
        answer
    }

    /// Fill `answer` for the name made of `prefix` + zone; whether that name exists.
    fn lookup(&self, prefix: &[&str], qname: &Name, qtype: RecordType, out: &mut Answer) -> Found {
        let owner = qname.clone();
        match prefix {
            [] => {
                if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                    out.answers.push(self.soa());
                }
                Found::Yes
            }
            ["dns-version"] => {
                if matches!(qtype, RecordType::TXT | RecordType::ANY) {
                    let txt = TXT::new(vec![SCHEMA_VERSION.to_string()]);
                    out.answers.push(Record::from_rdata(owner, TTL, RData::TXT(txt)));
                }
                Found::Yes
            }
            ["svc"] | ["pod"] => Found::Yes,
            [ns, "svc"] => Found::from(self.namespace_has_services(ns)),
            [dashed, _ns, "pod"] => match undash(dashed) {
                Some(ip) => {
                    push_addresses(out, &owner, qtype, [ip]);
                    Found::Yes
                }
                None => Found::No,
            },
            [svc, ns, "svc"] => self.service(ns, svc, &owner, qtype, out),
            [proto, svc, ns, "svc"] if proto.starts_with('_') => {
                let Some(entry) = self.services.get(&key(ns, svc)) else { return Found::No };
                let has = self.ports_of(ns, svc, entry).any(|p| is_label(proto, &p.protocol));
                Found::from(has)
            }
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                self.port(ns, svc, &port[1..], &proto[1..], &owner, qtype, out)
            }
            [host, svc, ns, "svc"] => self.endpoint(ns, svc, host, &owner, qtype, out),
            _ => Found::No,
        }
    }

    fn namespace_has_services(&self, ns: &str) -> bool {
        self.services.range(key(ns, "")..).next().is_some_and(|((n, _), _)| n == ns)
    }

    /// Every port a service's SRV names may use: its own, and for headless services also
    /// those of its slices (the endpoint ports clients connect to).
    fn ports_of<'a>(
        &'a self,
        ns: &'a str,
        svc: &str,
        entry: &'a ServiceEntry,
    ) -> impl Iterator<Item = &'a Port> {
        let slices = match entry.kind {
            Kind::Headless => Some(self.slices_of(ns, svc)),
            _ => None,
        };
        entry.ports.iter().chain(slices.into_iter().flatten().flat_map(|s| s.ports.iter()))
    }

    /// Ready endpoints of a headless service, each with the ports of its slice.
    fn endpoints<'a>(
        &'a self,
        ns: &'a str,
        svc: &str,
    ) -> impl Iterator<Item = (&'a Endpoint, &'a [Port])> {
        self.slices_of(ns, svc).flat_map(|s| s.endpoints.iter().map(|e| (e, s.ports.as_slice())))
    }

    fn service(
        &self,
        ns: &str,
        svc: &str,
        owner: &Name,
        qtype: RecordType,
        out: &mut Answer,
    ) -> Found {
        let Some(entry) = self.services.get(&key(ns, svc)) else { return Found::No };
        match &entry.kind {
            Kind::External(target) => {
                // A CNAME owns its name: it answers every type.
                if let Ok(target) = absolute(target) {
                    out.answers.push(Record::from_rdata(
                        owner.clone(),
                        TTL,
                        RData::CNAME(CNAME(target)),
                    ));
                }
            }
            Kind::Virtual(ips) => {
                push_addresses(out, owner, qtype, ips.iter().copied());
                if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    for p in &entry.ports {
                        self.push_service_srv(out, owner, ns, svc, p.port);
                    }
                }
            }
            Kind::Headless => {
                let mut seen = BTreeSet::new();
                let addrs = self
                    .endpoints(ns, svc)
                    .flat_map(|(e, _)| e.addresses.iter().copied())
                    // Host-network pods share the node's address: one record per address.
                    .filter(|ip| seen.insert(*ip))
                    .collect::<Vec<_>>();
                push_addresses(out, owner, qtype, addrs);
                if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    for (e, ports) in self.endpoints(ns, svc) {
                        for p in ports {
                            self.push_endpoint_srv(out, owner, ns, svc, e, p.port);
                        }
                    }
                }
            }
        }
        Found::Yes
    }

    #[allow(clippy::too_many_arguments)]
    fn port(
        &self,
        ns: &str,
        svc: &str,
        port: &str,
        proto: &str,
        owner: &Name,
        qtype: RecordType,
        out: &mut Answer,
    ) -> Found {
        let Some(entry) = self.services.get(&key(ns, svc)) else { return Found::No };
        let matches = |p: &&Port| p.name == port && p.protocol == proto;
        match &entry.kind {
            Kind::Headless => {
                let mut found = entry.ports.iter().any(|p| matches(&p));
                for (e, ports) in self.endpoints(ns, svc) {
                    for p in ports.iter().filter(matches) {
                        found = true;
                        if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                            self.push_endpoint_srv(out, owner, ns, svc, e, p.port);
                        }
                    }
                }
                Found::from(found)
            }
            Kind::Virtual(ips) => {
                let Some(p) = entry.ports.iter().find(matches) else { return Found::No };
                if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    self.push_service_srv(out, owner, ns, svc, p.port);
                }
                // As CoreDNS: the port name also resolves to the service address.
                push_addresses(out, owner, qtype, ips.iter().copied());
                Found::Yes
            }
            Kind::External(target) => {
                let Some(p) = entry.ports.iter().find(matches) else { return Found::No };
                if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    if let Ok(target) = absolute(target) {
                        let srv = SRV::new(0, 100, p.port, target);
                        out.answers.push(Record::from_rdata(owner.clone(), TTL, RData::SRV(srv)));
                    }
                }
                Found::Yes
            }
        }
    }

    fn endpoint(
        &self,
        ns: &str,
        svc: &str,
        host: &str,
        owner: &Name,
        qtype: RecordType,
        out: &mut Answer,
    ) -> Found {
        let Some(entry) = self.services.get(&key(ns, svc)) else { return Found::No };
        if entry.kind != Kind::Headless {
            return Found::No;
        }
        let mut seen = BTreeSet::new();
        let addrs: Vec<IpAddr> = self
            .endpoints(ns, svc)
            .filter(|(e, _)| e.label == host)
            .flat_map(|(e, _)| e.addresses.iter().copied())
            .filter(|ip| seen.insert(*ip))
            .collect();
        if addrs.is_empty() {
            return Found::No;
        }
        push_addresses(out, owner, qtype, addrs);
        Found::Yes
    }

    fn push_service_srv(&self, out: &mut Answer, owner: &Name, ns: &str, svc: &str, port: u16) {
        let Some(target) = self.name_in_zone(&[svc, ns, "svc"]) else { return };
        let srv = SRV::new(0, 100, port, target.clone());
        out.answers.push(Record::from_rdata(owner.clone(), TTL, RData::SRV(srv)));
        if let Some(Kind::Virtual(ips)) = self.services.get(&key(ns, svc)).map(|e| &e.kind) {
            push_additional(out, &target, ips);
        }
    }

    fn push_endpoint_srv(
        &self,
        out: &mut Answer,
        owner: &Name,
        ns: &str,
        svc: &str,
        e: &Endpoint,
        port: u16,
    ) {
        let Some(target) = self.name_in_zone(&[&e.label, svc, ns, "svc"]) else { return };
        let srv = SRV::new(0, 100, port, target.clone());
        let record = Record::from_rdata(owner.clone(), TTL, RData::SRV(srv));
        // Host-network pods of one slice share address and port; one SRV says it all.
        if !out.answers.contains(&record) {
            out.answers.push(record);
        }
        push_additional(out, &target, &e.addresses);
    }
}

/// Whether a name exists (NOERROR, maybe with no data) or not (NXDOMAIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Yes,
    No,
}

impl From<bool> for Found {
    fn from(b: bool) -> Self {
        if b {
            Found::Yes
        } else {
            Found::No
        }
    }
}

fn key(ns: &str, name: &str) -> Key {
    (ns.to_string(), name.to_string())
}

/// `_tcp` names protocol `tcp`.
fn is_label(label: &str, protocol: &str) -> bool {
    label.strip_prefix('_') == Some(protocol)
}

/// A or AAAA records (whichever `qtype` asks for) for `ips` at `owner`.
fn push_addresses(
    out: &mut Answer,
    owner: &Name,
    qtype: RecordType,
    ips: impl IntoIterator<Item = IpAddr>,
) {
    for ip in ips {
        let data = match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
            _ => continue,
        };
        out.answers.push(Record::from_rdata(owner.clone(), TTL, data));
    }
}

/// Address records of an SRV target in the additional section, once each.
fn push_additional(out: &mut Answer, target: &Name, ips: &[IpAddr]) {
    for ip in ips {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        };
        let record = Record::from_rdata(target.clone(), TTL, data);
        if !out.additionals.contains(&record) {
            out.additionals.push(record);
        }
    }
}

/// An external name as an absolute DNS name (`spec.externalName` has no trailing dot).
fn absolute(name: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut n = Name::from_ascii(name)?;
    n.set_fqdn(true);
    Ok(n)
}

/// `10-0-0-1` → 10.0.0.1; IPv6 as CoreDNS writes it, `::` dashed (`fd00--1`).
fn undash(label: &str) -> Option<IpAddr> {
    if let Ok(ip) = label.replace('-', ".").parse::<std::net::Ipv4Addr>() {
        return Some(IpAddr::V4(ip));
    }
    label.replace('-', ":").parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// 10.0.0.1 → `10-0-0-1`, the label of an endpoint without a hostname.
fn dash(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((
        meta.namespace.as_deref()?.to_ascii_lowercase(),
        meta.name.as_deref()?.to_ascii_lowercase(),
    ))
}

fn port_of(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<Port> {
    // Unnamed ports have no SRV name.
    let name = name.filter(|n| !n.is_empty())?.to_ascii_lowercase();
    let protocol = protocol.unwrap_or("TCP").to_ascii_lowercase();
    let port = u16::try_from(port?).ok()?;
    Some(Port { name, protocol, port })
}

fn service_entry(svc: &Service) -> Option<(Key, ServiceEntry)> {
    let key = key_of(&svc.metadata)?;
    let spec = svc.spec.as_ref()?;
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| port_of(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
        .collect();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        Kind::External(spec.external_name.clone().unwrap_or_default())
    } else {
        let ips: Vec<&String> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().collect(),
            _ => spec.cluster_ip.iter().collect(),
        };
        if ips.iter().any(|ip| ip.as_str() == "None") {
            Kind::Headless
        } else {
            Kind::Virtual(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
        }
    };
    Some((key, ServiceEntry { kind, ports }))
}

fn slice_entry(slice: &EndpointSlice) -> Option<(Key, SliceEntry)> {
    let key = key_of(&slice.metadata)?;
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.to_ascii_lowercase();
    if slice.address_type == "FQDN" {
        // Deprecated and not answerable as addresses.
        return None;
    }
    let endpoints = slice
        .endpoints
        .iter()
        // Ready unset means ready (the API's documented default).
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| {
            let addresses: Vec<IpAddr> =
                e.addresses.iter().filter_map(|a| a.parse().ok()).collect();
            let first = *addresses.first()?;
            let label = match e.hostname.as_deref() {
                Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
                _ => dash(first),
            };
            Some(Endpoint { label, addresses })
        })
        .collect();
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| port_of(p.name.as_deref(), p.protocol.as_deref(), p.port))
        .collect();
    Some((key, SliceEntry { service, endpoints, ports }))
}

#[cfg(test)]
mod tests;
