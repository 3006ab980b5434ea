//! Real-world manifests written by others (`shared/conformance/manifests`): each is accepted by
//! `kubectl apply` and reads back with every field it was given.

use crate::harness::{conformance_dir, Cluster};
use serde_json::Value;
use std::path::Path;

/// Every field of `want` is in `got` with the same value (lists element by element).
fn contains(want: &Value, got: &Value, path: &str, diffs: &mut Vec<String>) {
    match (want, got) {
        (Value::Null, _) => {}
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                if path.is_empty() && k == "status" {
                    continue; // the status subresource owns status
                }
                match g.get(k) {
                    Some(gv) => contains(wv, gv, &format!("{path}.{k}"), diffs),
                    None if wv.is_null() || wv.as_object().is_some_and(|o| o.is_empty()) => {}
                    None => diffs.push(format!("{path}.{k} missing")),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if w.len() != g.len() {
                diffs.push(format!("{path}: {} items, want {}", g.len(), w.len()));
                return;
            }
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                contains(wv, gv, &format!("{path}[{i}]"), diffs);
            }
        }
        (w, g) if w == g => {}
        (Value::Number(w), Value::Number(g)) if w.as_f64() == g.as_f64() => {}
        (w, g) => diffs.push(format!("{path}: got {g}, want {w}")),
    }
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| v.is_object() && v.get("kind").is_some())
        .collect()
}

fn check_read_back(c: &Cluster, wanted: Vec<Value>, get_args: &[&str], label: &str) {
    let mut args = vec!["get"];
    args.extend_from_slice(get_args);
    args.extend_from_slice(&["-o", "json"]);
    let got: Value = serde_json::from_str(&c.kubectl(&args)).expect("json");
    let items = got["items"].as_array().cloned().unwrap_or_else(|| vec![got.clone()]);
    let mut diffs = Vec::new();
    for want in &wanted {
        let name = &want["metadata"]["name"];
        let kind = &want["kind"];
        match items.iter().find(|i| &i["metadata"]["name"] == name && &i["kind"] == kind) {
            Some(item) => contains(
                want,
                item,
                &format!("{label}:{}/{}", kind.as_str().unwrap_or(""), name.as_str().unwrap_or("")),
                &mut diffs,
            ),
            None => diffs.push(format!("{label}: {kind}/{name} not read back")),
        }
    }
    assert!(diffs.is_empty(), "fields not read back as given:\n{}", diffs.join("\n"));
}

/// A namespace per file: the apps reuse names (two `frontend` Deployments with different
/// selectors), which one namespace cannot hold on any cluster.
fn namespace_for(path: &Path) -> String {
    // Files that name their namespace keep it.
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if let Some(ns) =
        docs(&text).iter().find_map(|d| d["metadata"]["namespace"].as_str().map(str::to_string))
    {
        return ns;
    }
    let stem = path.file_stem().unwrap().to_string_lossy().to_lowercase();
    let ns: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    ns.chars().take(60).collect::<String>().trim_matches('-').to_string()
}

fn apply_file(c: &Cluster, path: &Path, ns: &str) {
    let p = path.to_str().unwrap();
    let out = c.kubectl_output(&["apply", "-n", ns, "-f", p]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("Too long: may not be more than 262144 bytes") {
        // As on a real cluster: the last-applied annotation of a CRD this large exceeds the
        // annotation limit, and the project's documented way is server-side apply.
        c.kubectl(&["apply", "--server-side", "-n", ns, "-f", p]);
        return;
    }
    assert!(out.status.success(), "kubectl apply -f {p} failed:\n{stderr}");
    assert!(!stderr.to_lowercase().contains("warning"), "kubectl apply -f {p} warned:\n{stderr}");
}

#[test]
fn every_conformance_manifest_is_accepted_and_reads_back() {
    let c = Cluster::start();
    let root = conformance_dir();
    let mut crds: Vec<_> = std::fs::read_dir(root.join("crds"))
        .expect("crds dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    crds.sort();
    // kumo serves the Gateway API and Istio kinds its gateway reads as built-in CRDs (a fresh
    // cluster has exactly those). Upstream's definitions of the same names are not applied
    // over them, so the manifests below are validated by kumo's own schemas; every other CRD
    // in the files is applied as it is.
    let builtin = c.kubectl(&["get", "crd", "-o", "jsonpath={.items[*].metadata.name}"]);
    let builtin: Vec<&str> = builtin.split_whitespace().collect();
    assert!(builtin.contains(&"httproutes.gateway.networking.k8s.io"), "{builtin:?}");
    let mut applied = Vec::new();
    for f in &crds {
        let text = std::fs::read_to_string(f).unwrap();
        let (skipped, rest): (Vec<Value>, Vec<Value>) = docs(&text)
            .into_iter()
            .partition(|d| d["metadata"]["name"].as_str().is_some_and(|n| builtin.contains(&n)));
        let file = if skipped.is_empty() {
            f.clone()
        } else if rest.is_empty() {
            continue;
        } else {
            let yaml: Vec<String> =
                rest.iter().map(|d| serde_yaml::to_string(d).unwrap()).collect();
            c.file(
                &format!("crds/{}", f.file_name().unwrap().to_string_lossy()),
                &yaml.join("---\n"),
            )
        };
        apply_file(&c, &file, "default");
        applied.push((file, rest));
    }
    c.kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=30s"]);
    for (f, wanted) in applied {
        check_read_back(&c, wanted, &["-f", f.to_str().unwrap()], &f.display().to_string());
    }
    let mut files = Vec::new();
    for dir in ["online-boutique", "istio-bookinfo", "k8s-examples", "k8s-website"] {
        for e in std::fs::read_dir(root.join(dir)).expect("dir").flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in &files {
        let ns = namespace_for(f);
        if !c.kubectl_output(&["get", "namespace", &ns]).status.success() {
            c.kubectl(&["create", "namespace", &ns]);
        }
        apply_file(&c, f, &ns);
    }
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let ns = namespace_for(f);
        check_read_back(
            &c,
            docs(&text),
            &["-n", &ns, "-f", f.to_str().unwrap()],
            &f.display().to_string(),
        );
    }
    let kdir = root.join("online-boutique/kustomize");
    let k = kdir.to_str().unwrap();
    c.kubectl(&["create", "namespace", "boutique-kustomize"]);
    let out = c.kubectl(&["apply", "-n", "boutique-kustomize", "-k", k]);
    assert!(out.contains("deployment.apps/frontend"), "{out}");
    let built = c.kubectl(&["kustomize", k]);
    check_read_back(
        &c,
        docs(&built),
        &["-n", "boutique-kustomize", "-k", k],
        "online-boutique/kustomize",
    );
}
