//! `kubectl edit` with `EDITOR` set to a script: an edit is stored, and an edit the server
//! refuses is not, while kubectl keeps the edited file and says where (its behaviour when the
//! editor returns the same invalid content again).

use crate::harness::{run_bounded, Cluster};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Run `kubectl edit` with an editor script that runs `sed` with `expr` on the file.
fn edit(c: &Cluster, tmp: &Path, expr: &str, args: &[&str]) -> std::process::Output {
    let script = tmp.join(format!("editor-{}.sh", expr.len()));
    std::fs::write(&script, format!("#!/bin/sh\nsed -i '{expr}' \"$1\"\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut full = vec!["edit"];
    full.extend_from_slice(args);
    let mut cmd = c.kubectl_cmd(&full);
    cmd.env("EDITOR", &script).env_remove("KUBE_EDITOR").env("TMPDIR", tmp);
    run_bounded(cmd, None, Duration::from_secs(60))
}

#[test]
fn kubectl_edit_stores_an_edit_and_keeps_a_refused_one_in_a_file() {
    let c = Cluster::start();
    let tmp = c.dir.path().join("edit-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let f = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {mode: blue, size: \"2\"}\n",
    );
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    let out = edit(&c, &tmp, "s/mode: blue/mode: green/", &["configmap", "cfg"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("configmap/cfg edited"), "{out:?}");
    let cm = c.get_json(&["cm", "cfg", "--show-managed-fields"]);
    assert_eq!(cm["data"]["mode"], "green");
    assert_eq!(cm["data"]["size"], "2");
    // The edit is kubectl-edit's field now.
    let edit_entry = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kubectl-edit")
        .cloned()
        .unwrap_or_default();
    assert!(edit_entry["fieldsV1"]["f:data"]["f:mode"].is_object(), "{cm}");
    // An edit with no change: nothing is written.
    let rv = cm["metadata"]["resourceVersion"].clone();
    let out = edit(&c, &tmp, "s/nothing-here//", &["configmap", "cfg"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Edit cancelled, no changes made."));
    assert_eq!(c.get_json(&["cm", "cfg"])["metadata"]["resourceVersion"], rv);
    // An invalid edit: replicas -1 on a Deployment.
    c.kubectl(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2"]);
    let before = c.get_json(&["deploy", "web"]);
    let out = edit(&c, &tmp, "s/^  replicas: 2$/  replicas: -1/", &["deployment", "web"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("A copy of your changes has been stored to"), "{stderr}");
    let kept = stderr
        .split("A copy of your changes has been stored to \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&kept).unwrap();
    assert!(text.contains("replicas: -1"), "{text}");
    // The file carries the server's reason as a comment at the top, as kubectl shows it.
    assert!(
        text.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{text}"
    );
    let after = c.get_json(&["deploy", "web"]);
    assert_eq!(after["spec"]["replicas"], 2);
    assert_eq!(after["metadata"]["generation"], before["metadata"]["generation"]);
}
