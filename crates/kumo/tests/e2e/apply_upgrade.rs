//! Moving between client-side and server-side apply with the real kubectl, as upstream v1.33
//! does it: kubectl migrates the `kubectl-client-side-apply` managedFields entry into its own
//! Apply entry (a JSON patch on managedFields, which the server takes as given), the server
//! lets kubectl's apply take fields its earlier client-side applies set, and keeps the
//! `last-applied-configuration` annotation in step, so going back to client-side apply works.

use crate::harness::Cluster;
use serde_json::Value;

const ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn deploy(replicas: u32, labels: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {{{labels}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - {{name: app, image: nginx:1.25}}\n")
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e.get("subresource").is_none())
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["operation"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn last_applied(obj: &Value) -> Value {
    serde_json::from_str(obj["metadata"]["annotations"][ANNOTATION].as_str().unwrap()).unwrap()
}

#[test]
fn client_side_then_server_side_then_client_side_apply() {
    let c = Cluster::start();
    let f = c.file("web.yaml", &deploy(2, "app: web, extra: yes-please"));
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    let d = c.get_json(&["deploy", "web", "--show-managed-fields"]);
    assert!(managers(&d).contains(&("kubectl-client-side-apply".into(), "Update".into())));
    assert_eq!(last_applied(&d)["metadata"]["labels"]["extra"], "yes-please");
    // Server-side now, with a config that drops a label and changes replicas (a field the
    // client-side manager owns): no conflict, and the dropped label goes.
    let f = c.file("web.yaml", &deploy(3, "app: web"));
    let out = c.kubectl(&["apply", "--server-side", "-f", f.to_str().unwrap()]);
    assert!(out.contains("serverside-applied"), "{out}");
    let d = c.get_json(&["deploy", "web", "--show-managed-fields"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["labels"], serde_json::json!({"app": "web"}), "{d}");
    let m = managers(&d);
    assert!(m.contains(&("kubectl".into(), "Apply".into())), "{m:?}");
    assert!(!m.iter().any(|(name, _)| name == "kubectl-client-side-apply"), "{m:?}");
    // The annotation follows the server-side apply.
    let last = last_applied(&d);
    assert_eq!(last["spec"]["replicas"], 3);
    assert!(last["metadata"]["labels"].get("extra").is_none(), "{last}");
    // Applying the same again changes nothing.
    let rv = d["metadata"]["resourceVersion"].clone();
    c.kubectl(&["apply", "--server-side", "-f", f.to_str().unwrap()]);
    assert_eq!(c.get_json(&["deploy", "web"])["metadata"]["resourceVersion"], rv);
    // Another manager still conflicts on kubectl's fields.
    let other = c.file(
        "other.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 5}\n",
    );
    let err = c.kubectl_fails(&[
        "apply",
        "--server-side",
        "--field-manager=someone",
        "-f",
        other.to_str().unwrap(),
    ]);
    assert!(err.contains("conflict with \"kubectl\""), "{err}");
    // Back to client-side apply: the annotation the server kept lets kubectl's three-way patch
    // remove a label that the last (server-side) apply had and this config drops.
    let f = c.file("web.yaml", &deploy(3, "app: web, team: a"));
    c.kubectl(&["apply", "--server-side", "-f", f.to_str().unwrap()]);
    assert_eq!(c.get_json(&["deploy", "web"])["metadata"]["labels"]["team"], "a");
    let f = c.file("web.yaml", &deploy(4, "app: web"));
    let out = c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    assert!(out.contains("configured"), "{out}");
    let d = c.get_json(&["deploy", "web", "--show-managed-fields"]);
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["labels"], serde_json::json!({"app": "web"}), "{d}");
    assert_eq!(last_applied(&d)["spec"]["replicas"], 4);
    assert!(managers(&d).contains(&("kubectl-client-side-apply".into(), "Update".into())));
}

#[test]
fn client_side_apply_over_a_server_side_applied_object() {
    let c = Cluster::start();
    let f = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: \"1\", b: \"2\"}\n",
    );
    c.kubectl(&["apply", "--server-side", "-f", f.to_str().unwrap()]);
    let cm = c.get_json(&["cm", "cfg"]);
    // No annotation is made up for an object only ever applied server-side.
    assert!(cm["metadata"].get("annotations").is_none(), "{cm}");
    // Client-side apply warns about the missing annotation (as upstream) and patches.
    let f = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: \"1\", b: \"3\"}\n",
    );
    let out = c.kubectl_output(&["apply", "-f", f.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing the kubectl.kubernetes.io/last-applied-configuration annotation"),
        "{stderr}"
    );
    let cm = c.get_json(&["cm", "cfg", "--show-managed-fields"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "b": "3"}));
    assert_eq!(last_applied(&cm)["data"]["b"], "3");
    // From here client-side apply removes what its config drops.
    let f = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: \"1\"}\n",
    );
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(c.get_json(&["cm", "cfg"])["data"], serde_json::json!({"a": "1"}));
    // And server-side again, by kubectl: the annotation now exists, so the server updates it.
    let f = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: \"9\"}\n",
    );
    c.kubectl(&["apply", "--server-side", "-f", f.to_str().unwrap()]);
    let cm = c.get_json(&["cm", "cfg"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "9"}));
    assert_eq!(last_applied(&cm)["data"], serde_json::json!({"a": "9"}));
}
