//! The environment of a container, built as kubelet builds it: Service links
//! (`<SVC>_SERVICE_HOST`, `_PORT`, docker-style `<SVC>_PORT_…`), then `envFrom` in order, then
//! `env` in order with `$(VAR)` references to what came before, values from ConfigMaps, Secrets,
//! the downward API (`fieldRef`) and the container's resources (`resourceFieldRef`). kumo adds
//! the host ports it chose: `PORT` (the container's first port) and `KUMO_PORT_<NAME>`.
//!
//! Everything here is pure: the caller fetches the ConfigMaps, Secrets and Services first.

use crate::runtime::PortMapping;
use k8s_openapi::api::core::v1::{Container, Pod, Service};
use kumo_api::quantity;
use std::collections::{BTreeMap, HashMap};

/// The objects a container's environment reads, fetched by the caller: `None` for one that
/// does not exist.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// ConfigMaps by name: `data` and `binaryData` decoded as UTF-8.
    pub config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    /// Secrets by name: decoded `data`.
    pub secrets: HashMap<String, Option<BTreeMap<String, String>>>,
    /// Services of the pod's namespace, for Service links.
    pub services: Vec<Service>,
}

/// Everything else a container's environment needs.
pub struct Inputs<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The container.
    pub container: &'a Container,
    /// The node's IP (host IP, and pod IP in host network mode).
    pub node_ip: &'a str,
    /// The container's ports and the host ports they got.
    pub ports: &'a [PortMapping],
    /// Node allocatable CPU (millicores) and memory (bytes): a `resourceFieldRef` to a limit
    /// that is not set reads these, as in Kubernetes.
    pub allocatable: (i64, i64),
    /// `PATH` when the container does not set one.
    pub default_path: &'a str,
}

/// A container whose environment cannot be made (`CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Names of the ConfigMaps and Secrets a container reads (env, envFrom).
pub fn references(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// The container's environment, in order (a later duplicate replaces an earlier one).
pub fn build(inputs: &Inputs<'_>, sources: &Sources) -> Result<Vec<(String, String)>, EnvError> {
    let mut env = Env::default();
    env.set("PATH", inputs.default_path.to_string());
    let hostname = inputs
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| inputs.pod.metadata.name.clone())
        .unwrap_or_default();
    env.set("HOSTNAME", hostname);
    if let Some(first) = inputs.ports.first() {
        env.set("PORT", first.host_port.to_string());
    }
    for p in inputs.ports {
        if let Some(name) = &p.name {
            env.set(&format!("KUMO_PORT_{}", env_name(name)), p.host_port.to_string());
        }
        env.set(&format!("KUMO_PORT_{}", p.container_port), p.host_port.to_string());
    }
    let links = inputs.pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    for svc in &sources.services {
        let is_kubernetes = svc.metadata.name.as_deref() == Some("kubernetes")
            && svc.metadata.namespace.as_deref() == Some("default");
        if links || is_kubernetes {
            service_link(&mut env, svc);
        }
    }
    for from in inputs.container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional, what, name) = if let Some(r) = &from.config_map_ref {
            let data = sources.config_maps.get(&r.name).cloned().flatten();
            (data, r.optional.unwrap_or(false), "configmap", &r.name)
        } else if let Some(r) = &from.secret_ref {
            let data = sources.secrets.get(&r.name).cloned().flatten();
            (data, r.optional.unwrap_or(false), "secret", &r.name)
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    let key = format!("{prefix}{k}");
                    // Keys that are not valid variable names are skipped, as upstream does
                    // (it reports them in an event).
                    if valid_env_name(&key) {
                        env.set(&key, v);
                    }
                }
            }
            None if optional => {}
            None => return Err(EnvError(format!("{what} \"{name}\" not found"))),
        }
    }
    for var in inputs.container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or(""), &env.map),
            Some(from) => {
                if let Some(r) = &from.config_map_key_ref {
                    let data = sources.config_maps.get(&r.name).cloned().flatten();
                    match key_of(data, &r.key, r.optional, "configmap", &r.name)? {
                        Some(v) => v,
                        None => continue,
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let data = sources.secrets.get(&r.name).cloned().flatten();
                    match key_of(data, &r.key, r.optional, "secret", &r.name)? {
                        Some(v) => v,
                        None => continue,
                    }
                } else if let Some(f) = &from.field_ref {
                    field_ref(inputs, &f.field_path)?
                } else if let Some(r) = &from.resource_field_ref {
                    resource_field_ref(inputs, r)?
                } else {
                    String::new()
                }
            }
        };
        env.set(&var.name, value);
    }
    Ok(env.list)
}

/// An ordered environment where setting a name again replaces its value in place.
#[derive(Default)]
struct Env {
    list: Vec<(String, String)>,
    map: HashMap<String, String>,
}

impl Env {
    fn set(&mut self, name: &str, value: String) {
        if self.map.insert(name.to_string(), value.clone()).is_some() {
            self.list.retain(|(k, _)| k != name);
        }
        self.list.push((name.to_string(), value));
    }
}

fn key_of(
    data: Option<BTreeMap<String, String>>,
    key: &str,
    optional: Option<bool>,
    what: &str,
    name: &str,
) -> Result<Option<String>, EnvError> {
    let optional = optional.unwrap_or(false);
    match data {
        None if optional => Ok(None),
        None => Err(EnvError(format!("{what} \"{name}\" not found"))),
        Some(d) => match d.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(EnvError(format!("couldn't find key {key} in {what} {name}"))),
        },
    }
}

pub(crate) fn field_ref(inputs: &Inputs<'_>, path: &str) -> Result<String, EnvError> {
    let meta = &inputs.pod.metadata;
    let spec = inputs.pod.spec.as_ref();
    let bracket = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")?;
        Some(rest.to_string())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => {
            spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default()
        }
        "status.hostIP" | "status.podIP" | "status.hostIPs" | "status.podIPs" => {
            inputs.node_ip.to_string()
        }
        "metadata.labels" | "metadata.annotations" => {
            let map = if path == "metadata.labels" { &meta.labels } else { &meta.annotations };
            map.iter().flatten().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")
        }
        _ => {
            if let Some(k) = bracket("metadata.labels") {
                meta.labels.as_ref().and_then(|l| l.get(&k).cloned()).unwrap_or_default()
            } else if let Some(k) = bracket("metadata.annotations") {
                meta.annotations.as_ref().and_then(|a| a.get(&k).cloned()).unwrap_or_default()
            } else {
                return Err(EnvError(format!("unsupported fieldRef fieldPath {path:?}")));
            }
        }
    };
    Ok(value)
}

pub(crate) fn resource_field_ref(
    inputs: &Inputs<'_>,
    r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
) -> Result<String, EnvError> {
    // A reference may name another container of the pod.
    let container = match r.container_name.as_deref() {
        Some(name) if !name.is_empty() && name != inputs.container.name => inputs
            .pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| c.name == name)
            .ok_or_else(|| EnvError(format!("resourceFieldRef: no container {name:?}")))?,
        _ => inputs.container,
    };
    let resources = container.resources.as_ref();
    let get = |kind: &str, key: &str| -> Option<String> {
        let map = if kind == "limits" {
            resources.and_then(|r| r.limits.as_ref())
        } else {
            resources.and_then(|r| r.requests.as_ref())
        };
        map.and_then(|m| m.get(key)).map(|q| q.0.clone())
    };
    let (kind, key) = r
        .resource
        .split_once('.')
        .ok_or_else(|| EnvError(format!("unsupported resource {:?}", r.resource)))?;
    let divisor = r.divisor.as_ref().map(|d| d.0.as_str()).unwrap_or("1");
    let bad = |e: quantity::QuantityError| EnvError(e.to_string());
    let (alloc_cpu, alloc_mem) = inputs.allocatable;
    match key {
        "cpu" => {
            // An unset limit reads node allocatable; an unset request reads 0 → at least 1.
            let milli = match get(kind, "cpu")
                .or_else(|| get("limits", "cpu").filter(|_| kind == "requests"))
            {
                Some(q) => quantity::parse_milli(&q).map_err(bad)?,
                None if kind == "limits" => alloc_cpu,
                None => 0,
            };
            let div = quantity::parse_milli(divisor).map_err(bad)?.max(1);
            Ok(((milli + div - 1) / div).max(1).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match get(kind, key)
                .or_else(|| get("limits", key).filter(|_| kind == "requests"))
            {
                Some(q) => quantity::parse_value(&q).map_err(bad)?,
                None if kind == "limits" && key == "memory" => alloc_mem,
                None => 0,
            };
            let div = quantity::parse_value(divisor).map_err(bad)?.max(1);
            Ok(((bytes + div - 1) / div).to_string())
        }
        _ => Err(EnvError(format!("unsupported resource {:?}", r.resource))),
    }
}

/// kubelet's Service links for one Service with a cluster IP.
fn service_link(env: &mut Env, svc: &Service) {
    let Some(spec) = &svc.spec else { return };
    let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") else {
        return;
    };
    let name = env_name(svc.metadata.name.as_deref().unwrap_or_default());
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else { return };
    env.set(&format!("{name}_SERVICE_HOST"), ip.to_string());
    env.set(&format!("{name}_SERVICE_PORT"), first.port.to_string());
    for p in ports {
        if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
            env.set(&format!("{name}_SERVICE_PORT_{}", env_name(pn)), p.port.to_string());
        }
    }
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.clone().unwrap_or_else(|| "TCP".into())
    };
    env.set(
        &format!("{name}_PORT"),
        format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
    );
    for p in ports {
        let pr = proto(p);
        let base = format!("{name}_PORT_{}_{}", p.port, pr.to_uppercase());
        env.set(&base, format!("{}://{ip}:{}", pr.to_lowercase(), p.port));
        env.set(&format!("{base}_PROTO"), pr.to_lowercase());
        env.set(&format!("{base}_PORT"), p.port.to_string());
        env.set(&format!("{base}_ADDR"), ip.to_string());
    }
}

/// `my-svc` → `MY_SVC`.
pub fn env_name(name: &str) -> String {
    name.to_uppercase().replace(['-', '.'], "_")
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined reference is
/// left as written, and `$$` escapes a `$`.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(close) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + close];
                        match vars.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + close]),
                        }
                        i += 3 + close;
                        continue;
                    }
                }
                _ => {}
            }
        }
        // Push the whole UTF-8 character at i.
        let ch = input[i..].chars().next().unwrap_or('\u{FFFD}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Expand `$(VAR)` in a container's command or args with its final environment.
pub fn expand_all(items: &[String], env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    items.iter().map(|s| expand(s, &vars)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(container: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [container]}
        }))
        .unwrap()
    }

    fn run(
        p: &Pod,
        sources: &Sources,
        ports: &[PortMapping],
    ) -> Result<Vec<(String, String)>, EnvError> {
        let c = &p.spec.as_ref().unwrap().containers[0];
        let inputs = Inputs {
            pod: p,
            container: c,
            node_ip: "10.0.0.5",
            ports,
            allocatable: (2000, 8 << 30),
            default_path: "/usr/bin:/bin",
        };
        build(&inputs, sources)
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let vars: HashMap<_, _> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
        assert_eq!(expand("é$(A", &vars), "é$(A");
    }

    #[test]
    fn values_come_from_every_kind_of_source() {
        let p = pod(json!({
            "name": "c", "image": "x",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "missing", "optional": true}}],
            "env": [
                {"name": "GREETING", "value": "hi $(CFG_LEVEL) on $(PORT)"},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}
            ],
            "resources": {"limits": {"memory": "64Mi"}}
        }));
        let mut s = Sources::default();
        s.config_maps.insert(
            "cfg".into(),
            Some([("LEVEL".into(), "debug".into()), ("bad key".into(), "x".into())].into()),
        );
        s.secrets.insert("db".into(), Some([("pw".into(), "s3cret".into())].into()));
        s.secrets.insert("missing".into(), None);
        let ports = [PortMapping {
            name: Some("http-api".into()),
            container_port: 8080,
            host_port: 31000,
            protocol: "TCP".into(),
        }];
        let env = run(&p, &s, &ports).unwrap();
        assert_eq!(get(&env, "CFG_LEVEL"), Some("debug"));
        assert_eq!(get(&env, "CFG_bad key"), None);
        assert_eq!(get(&env, "GREETING"), Some("hi debug on 31000"));
        assert_eq!(get(&env, "PASSWORD"), Some("s3cret"));
        assert_eq!(get(&env, "POD"), Some("web-1"));
        assert_eq!(get(&env, "APP"), Some("web"));
        assert_eq!(get(&env, "IP"), Some("10.0.0.5"));
        assert_eq!(get(&env, "MEM"), Some("64"));
        assert_eq!(
            get(&env, "CPU"),
            Some("2"),
            "unset limit reads allocatable, in cores rounded up"
        );
        assert_eq!(get(&env, "KUMO_PORT_HTTP_API"), Some("31000"));
        assert_eq!(get(&env, "KUMO_PORT_8080"), Some("31000"));
    }

    #[test]
    fn a_missing_object_or_key_is_a_config_error() {
        let p = pod(json!({"name": "c", "image": "x", "env": [
            {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}));
        let err = run(&p, &Sources::default(), &[]).unwrap_err();
        assert_eq!(err.0, "configmap \"cfg\" not found");
        let mut s = Sources::default();
        s.config_maps.insert("cfg".into(), Some(BTreeMap::new()));
        assert_eq!(run(&p, &s, &[]).unwrap_err().0, "couldn't find key k in configmap cfg");
        assert_eq!(references(&p.spec.as_ref().unwrap().containers[0]).0, vec!["cfg".to_string()]);
    }

    #[test]
    fn service_links_look_like_docker_links() {
        let p = pod(json!({"name": "c", "image": "x"}));
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "redis-primary", "namespace": "shop"},
            "spec": {"clusterIP": "127.64.0.9", "ports": [{"name": "redis", "port": 6379}]}
        }))
        .unwrap();
        let s = Sources { services: vec![svc], ..Default::default() };
        let env = run(&p, &s, &[]).unwrap();
        assert_eq!(get(&env, "REDIS_PRIMARY_SERVICE_HOST"), Some("127.64.0.9"));
        assert_eq!(get(&env, "REDIS_PRIMARY_SERVICE_PORT"), Some("6379"));
        assert_eq!(get(&env, "REDIS_PRIMARY_SERVICE_PORT_REDIS"), Some("6379"));
        assert_eq!(get(&env, "REDIS_PRIMARY_PORT"), Some("tcp://127.64.0.9:6379"));
        assert_eq!(get(&env, "REDIS_PRIMARY_PORT_6379_TCP_ADDR"), Some("127.64.0.9"));
    }
}
