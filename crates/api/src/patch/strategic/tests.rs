//! Table tests of strategic merge patch against the built-in schemas.

use super::*;
use crate::schema::Definitions;
use serde_json::json;

fn schema(name: &str) -> Option<SchemaRef<'static>> {
    let s = Definitions::builtin().get(name);
    assert!(s.is_some(), "no definition {name}");
    s
}

const POD: &str = "io.k8s.api.core.v1.Pod";
const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

fn smp(original: Value, patch: Value, kind: Option<&str>) -> Value {
    let schema = kind.and_then(schema);
    match strategic_merge_patch(&original, &patch, schema) {
        Ok(v) => v,
        Err(e) => panic!("patch {patch} on {original} failed: {e}"),
    }
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

#[test]
fn table() {
    struct Case {
        name: &'static str,
        kind: Option<&'static str>,
        original: Value,
        patch: Value,
        want: Value,
    }
    let cases = vec![
        Case {
            name: "maps merge recursively and null deletes",
            kind: Some(POD),
            original: json!({"metadata": {"labels": {"a": "1", "b": "2"}, "name": "p"}}),
            patch: json!({"metadata": {"labels": {"a": null, "c": "3"}, "annotations": {"x": "y"}}}),
            want: json!({"metadata": {"labels": {"b": "2", "c": "3"}, "name": "p", "annotations": {"x": "y"}}}),
        },
        Case {
            name: "null for a missing key is dropped",
            kind: Some(POD),
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"metadata": {"labels": null, "annotations": {"a": null, "b": "1"}}}),
            want: json!({"metadata": {"name": "p", "annotations": {"b": "1"}}}),
        },
        Case {
            name: "containers merge by name, a new one goes first as upstream",
            kind: Some(POD),
            original: pod(
                json!([{"name": "a", "image": "nginx:1", "ports": [{"containerPort": 80}]}, {"name": "b", "image": "redis"}]),
            ),
            patch: json!({"spec": {"containers": [{"name": "b", "image": "redis:7"}, {"name": "c", "image": "busybox"}]}}),
            want: pod(json!([
                {"name": "a", "image": "nginx:1", "ports": [{"containerPort": 80}]},
                {"name": "b", "image": "redis:7"},
                {"name": "c", "image": "busybox"}
            ])),
        },
        Case {
            name: "an added element lands before server-only elements it does not follow",
            kind: Some(POD),
            original: pod(json!([{"name": "a", "image": "x"}])),
            patch: json!({"spec": {"containers": [{"name": "z", "image": "y"}]}}),
            want: pod(json!([{"name": "z", "image": "y"}, {"name": "a", "image": "x"}])),
        },
        Case {
            name: "ports merge by containerPort inside a merged container",
            kind: Some(POD),
            original: pod(
                json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]),
            ),
            patch: json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 443, "name": "https"}]}]}}),
            want: pod(
                json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}]}]),
            ),
        },
        Case {
            name: "finalizers are a union",
            kind: Some(POD),
            original: json!({"metadata": {"finalizers": ["a", "b"]}}),
            patch: json!({"metadata": {"finalizers": ["b", "c"]}}),
            want: json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        },
        Case {
            name: "lists without a strategy are replaced (tolerations, args)",
            kind: Some(POD),
            original: json!({"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "a", "args": ["1", "2"]}]}}),
            patch: json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["3"]}]}}),
            want: json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["3"]}]}}),
        },
        Case {
            name: "$patch: delete removes a list element by merge key",
            kind: Some(POD),
            original: pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            patch: json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
            want: pod(json!([{"name": "a"}, {"name": "c"}])),
        },
        Case {
            name: "$patch: replace as a list element replaces the list",
            kind: Some(POD),
            original: pod(json!([{"name": "a", "image": "1"}, {"name": "b"}])),
            patch: json!({"spec": {"containers": [{"name": "c", "image": "3"}, {"$patch": "replace"}]}}),
            want: pod(json!([{"name": "c", "image": "3"}])),
        },
        Case {
            name: "$patch: replace in a map replaces the map",
            kind: Some(POD),
            original: json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            patch: json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
            want: json!({"metadata": {"labels": {"c": "3"}}}),
        },
        Case {
            name: "$patch: delete in a map empties it",
            kind: Some(POD),
            original: json!({"metadata": {"labels": {"a": "1"}, "name": "p"}}),
            patch: json!({"metadata": {"labels": {"$patch": "delete"}}}),
            want: json!({"metadata": {"labels": {}, "name": "p"}}),
        },
        Case {
            name: "$patch: delete for a map the original lacks stores nothing",
            kind: Some(POD),
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"metadata": {"labels": {"$patch": "delete"}}}),
            want: json!({"metadata": {"name": "p"}}),
        },
        Case {
            name: "$patch: merge in a map is the default",
            kind: Some(POD),
            original: json!({"metadata": {"labels": {"a": "1"}}}),
            patch: json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}}),
            want: json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
        },
        Case {
            name: "$patch: replace at the top replaces the object",
            kind: Some(POD),
            original: json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n"}}),
            patch: json!({"$patch": "replace", "metadata": {"name": "q"}}),
            want: json!({"metadata": {"name": "q"}}),
        },
        Case {
            name: "$retainKeys clears the other keys (Deployment spec.strategy)",
            kind: Some(DEPLOYMENT),
            original: json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
            want: json!({"spec": {"strategy": {"type": "Recreate"}}}),
        },
        Case {
            name: "$retainKeys in a volume element (merge,retainKeys)",
            kind: Some(POD),
            original: json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}}),
            patch: json!({"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "name": "v", "configMap": {"name": "cm"}}]}}),
            want: json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}, {"name": "w", "emptyDir": {}}]}}),
        },
        Case {
            name: "$deleteFromPrimitiveList removes values",
            kind: Some(POD),
            original: json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}}),
            want: json!({"metadata": {"finalizers": ["a", "c"]}}),
        },
        Case {
            name: "$deleteFromPrimitiveList for a missing list is a no-op",
            kind: Some(POD),
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            want: json!({"metadata": {"name": "p"}}),
        },
        Case {
            name: "$setElementOrder orders a primitive list",
            kind: Some(POD),
            original: json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            patch: json!({"metadata": {"$setElementOrder/finalizers": ["c", "d", "a"], "finalizers": ["d"]}}),
            // b is server-only; it was before c in the live list, so it stays before c.
            want: json!({"metadata": {"finalizers": ["b", "c", "d", "a"]}}),
        },
        Case {
            name: "$setElementOrder alone reorders the live list",
            kind: Some(POD),
            original: pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            patch: json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}]}}),
            want: pod(json!([{"name": "c"}, {"name": "b"}, {"name": "a"}])),
        },
        Case {
            name: "$setElementOrder keeps server-only elements where the live list has them",
            kind: Some(POD),
            original: pod(json!([{"name": "a"}, {"name": "sidecar"}, {"name": "b"}])),
            patch: json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
            // sidecar (live 1) goes before b (live 2) but the order list puts b before a.
            want: pod(json!([{"name": "sidecar"}, {"name": "b"}, {"name": "a"}])),
        },
        Case {
            name: "a patch string replaces a list",
            kind: Some(POD),
            original: json!({"metadata": {"finalizers": ["a"]}}),
            patch: json!({"metadata": {"finalizers": "oops"}}),
            want: json!({"metadata": {"finalizers": "oops"}}),
        },
        Case {
            name: "a patch map replaces a string, directives stripped",
            kind: Some(POD),
            original: json!({"spec": "x"}),
            patch: json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}, {"name": "b", "env": [{"name": "E", "value": null}]}], "nodeName": null, "$retainKeys": ["containers", "nodeName"]}}),
            want: json!({"spec": {"containers": [{"name": "b", "env": [{"name": "E"}]}]}}),
        },
        Case {
            name: "PodDisruptionBudget selector has strategy replace",
            kind: Some("io.k8s.api.policy.v1.PodDisruptionBudget"),
            original: json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}}),
            patch: json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
            want: json!({"spec": {"selector": {"matchLabels": {"b": "2"}}, "minAvailable": 1}}),
        },
        Case {
            name: "without a schema lists are replaced",
            kind: None,
            original: json!({"spec": {"containers": [{"name": "a"}], "x": {"y": 1}}}),
            patch: json!({"spec": {"containers": [{"name": "b"}], "x": {"z": 2}}}),
            want: json!({"spec": {"containers": [{"name": "b"}], "x": {"y": 1, "z": 2}}}),
        },
        Case {
            name: "fields unknown to the schema merge like a merge patch",
            kind: Some(POD),
            original: json!({"spec": {"unknownList": [1, 2], "unknown": {"a": 1}}}),
            patch: json!({"spec": {"unknownList": [3], "unknown": {"b": 2}}}),
            want: json!({"spec": {"unknownList": [3], "unknown": {"a": 1, "b": 2}}}),
        },
        Case {
            name: "a null original is an empty object",
            kind: Some(POD),
            original: Value::Null,
            patch: json!({"metadata": {"name": "p", "labels": null}}),
            want: json!({"metadata": {"name": "p"}}),
        },
    ];
    for case in cases {
        let got = smp(case.original.clone(), case.patch.clone(), case.kind);
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn pod_patch_deletes_an_env_var_by_name() {
    let original = pod(json!([{
        "name": "app",
        "image": "app:1",
        "env": [
            {"name": "A", "value": "1"},
            {"name": "DEBUG", "value": "true"},
            {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ]
    }]));
    let patch = json!({"spec": {"containers": [{
        "name": "app",
        "env": [{"name": "DEBUG", "$patch": "delete"}, {"name": "A", "value": "2"}]
    }]}});
    let got = smp(original, patch, Some(POD));
    assert_eq!(
        got["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "2"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])
    );
    assert_eq!(got["spec"]["containers"][0]["image"], "app:1");
}

/// The patch `kubectl apply` computes when the applied Deployment reorders and edits its
/// containers, switches the rollout strategy, removes a label and drops an env var, while the
/// live object carries a sidecar another controller injected.
#[test]
fn kubectl_apply_three_way_patch_on_a_deployment() {
    let live = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {"deployment.kubernetes.io/revision": "3", "kubectl.kubernetes.io/last-applied-configuration": "{…old…}"},
            "finalizers": ["example.com/keep"]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "1"}]},
                        {"name": "istio-proxy", "image": "istio/proxyv2"},
                        {"name": "log", "image": "fluent-bit:2"}
                    ],
                    "volumes": [{"name": "cache", "emptyDir": {}}],
                    "restartPolicy": "Always"
                }
            }
        },
        "status": {"replicas": 2}
    });
    // What `kubectl apply` sends (CreateThreeWayMergePatch with the Deployment's struct tags).
    let patch = json!({
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{…new…}"},
            "labels": {"tier": null}
        },
        "spec": {
            "replicas": 3,
            "strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "log"}, {"name": "web"}, {"name": "metrics"}],
                "containers": [
                    {"name": "web", "image": "nginx:1.27",
                     "$setElementOrder/env": [{"name": "MODE"}, {"name": "LOG_LEVEL"}],
                     "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "DEBUG", "$patch": "delete"}]},
                    {"name": "metrics", "image": "prom/exporter", "ports": [{"containerPort": 9100}]}
                ],
                "$setElementOrder/volumes": [{"name": "cache"}],
                "volumes": [{"$retainKeys": ["name", "persistentVolumeClaim"], "name": "cache",
                             "persistentVolumeClaim": {"claimName": "web-cache"}}]
            }}
        }
    });
    let got = smp(live, patch, Some(DEPLOYMENT));
    assert_eq!(got["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{…new…}"
    );
    assert_eq!(got["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    assert_eq!(got["metadata"]["finalizers"], json!(["example.com/keep"]));
    assert_eq!(got["spec"]["replicas"], 3);
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
    let pod_spec = &got["spec"]["template"]["spec"];
    // The order list wins for the applied containers; the sidecar keeps its live place before
    // `log`, which it preceded in the live list.
    assert_eq!(names(&pod_spec["containers"]), ["istio-proxy", "log", "web", "metrics"]);
    let web = &pod_spec["containers"][2];
    assert_eq!(web["image"], "nginx:1.27");
    assert_eq!(web["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]));
    assert_eq!(
        web["env"],
        json!([{"name": "MODE", "value": "prod"}, {"name": "LOG_LEVEL", "value": "info"}])
    );
    assert_eq!(
        pod_spec["containers"][3],
        json!({"name": "metrics", "image": "prom/exporter", "ports": [{"containerPort": 9100}]})
    );
    assert_eq!(
        pod_spec["volumes"],
        json!([{"name": "cache", "persistentVolumeClaim": {"claimName": "web-cache"}}])
    );
    assert_eq!(pod_spec["restartPolicy"], "Always");
    assert_eq!(got["status"], json!({"replicas": 2}));
    assert!(!got.to_string().contains('$'), "a directive leaked: {got}");
}

#[test]
fn errors() {
    let cases: Vec<(Value, Value, Option<&str>, &str)> = vec![
        (json!({}), json!([1]), Some(POD), "invalid patch: a strategic merge patch must be a JSON object, not a list"),
        (json!({}), json!("x"), None, "invalid patch: a strategic merge patch must be a JSON object, not a string"),
        (json!([1]), json!({}), None, "invalid JSON document: the object to patch must be a JSON object, not list"),
        (json!({"metadata": {}}), json!({"metadata": {"$patch": "bogus"}}), Some(POD), "unknown patch type: bogus in map: {\"$patch\":\"bogus\"}"),
        (json!({}), json!({"$patch": 1}), None, "unknown patch type: 1 in map: {\"$patch\":1}"),
        (
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
            Some(DEPLOYMENT),
            "invalid patch format of retainKeys: $retainKeys must be a list of field names, not \"type\"",
        ),
        (
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}),
            Some(DEPLOYMENT),
            "patch content doesn't match retainKeys list: field \"rollingUpdate\" is not in $retainKeys",
        ),
        (
            pod(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"image": "x"}]}}),
            Some(POD),
            "map: {\"image\":\"x\"} does not contain declared merge key: name",
        ),
        (
            pod(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            Some(POD),
            "map: {\"$patch\":\"delete\"} does not contain declared merge key: name",
        ),
        (
            pod(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
            Some(POD),
            "merging lists cannot yet be specified in the patch",
        ),
        (
            pod(json!([{"name": "a"}])),
            json!({"spec": {"containers": ["a"]}}),
            Some(POD),
            "list element types are not identical: [{\"name\":\"a\"}] and [\"a\"]",
        ),
        (
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
            Some(POD),
            "lists of lists are not supported",
        ),
        (
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            Some(POD),
            "invalid patch format of primitive list: $deleteFromPrimitiveList/finalizers must be a list of the values to delete, not \"a\"",
        ),
        (
            pod(json!([{"name": "a"}])),
            json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
            Some(POD),
            "invalid patch format of setElementOrder list: $setElementOrder/containers must be a list, not {\"name\":\"a\"}",
        ),
        (
            pod(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                            "containers": [{"name": "b", "image": "1"}, {"name": "a", "image": "2"}]}}),
            Some(POD),
            "invalid patch format of setElementOrder list: the order in patch list [{\"name\":\"b\",\"image\":\"1\"},{\"name\":\"a\",\"image\":\"2\"}] doesn't match $setElementOrder list [{\"name\":\"a\"},{\"name\":\"b\"}]",
        ),
        (
            pod(json!([{"name": "a"}])),
            json!({"spec": {"$setElementOrder/containers": ["a"]}}),
            Some(POD),
            "expected a map, but received a string: \"a\"",
        ),
    ];
    for (original, patch, kind, want) in cases {
        let err = strategic_merge_patch(&original, &patch, kind.and_then(schema))
            .expect_err("the patch must fail");
        assert_eq!(err.to_string(), want, "patch {patch}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let mut patch = json!("leaf");
    for _ in 0..400 {
        patch = json!({"a": patch});
    }
    let err = strategic_merge_patch(&patch, &patch, None).expect_err("too deep");
    assert_eq!(err, PatchError::TooDeep(MAX_DEPTH));
    let mut list = json!(1);
    for _ in 0..400 {
        list = json!([list]);
    }
    let patch = json!({"spec": {"tolerations": list}});
    assert!(strategic_merge_patch(&json!({}), &patch, schema(POD)).is_err());
}

#[test]
fn duplicate_merge_keys_do_not_confuse_the_merge() {
    let original =
        pod(json!([{"name": "a", "image": "1"}, {"name": "a", "image": "2"}, {"name": "b"}]));
    let patch = json!({"spec": {"containers": [{"name": "a", "image": "3"}]}});
    let got = smp(original, patch, Some(POD));
    assert_eq!(names(&got["spec"]["containers"]), ["a", "a", "b"]);
    assert_eq!(got["spec"]["containers"][0]["image"], "3");
}

#[test]
fn the_inputs_are_not_modified() {
    let original = pod(json!([{"name": "a"}]));
    let patch = json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}});
    let (o, p) = (original.clone(), patch.clone());
    let _ = strategic_merge_patch(&original, &patch, schema(POD));
    assert_eq!((original, patch), (o, p));
}

#[test]
fn long_lists_merge_without_quadratic_blowup() {
    let n = 20_000;
    let env: Vec<Value> = (0..n).map(|i| json!({"name": format!("V{i}"), "value": "x"})).collect();
    let original = pod(json!([{"name": "app", "env": env}]));
    let patch_env: Vec<Value> = (0..n)
        .rev()
        .map(|i| json!({"name": format!("V{i}"), "value": "y"}))
        .chain((0..10).map(|i| json!({"name": format!("N{i}"), "$patch": "delete"})))
        .collect();
    let patch = json!({"spec": {"containers": [{"name": "app", "env": patch_env}]},
                       "metadata": {"finalizers": (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>()}});
    let started = std::time::Instant::now();
    let got = smp(original, patch, Some(POD));
    assert!(started.elapsed().as_secs() < 20, "took {:?}", started.elapsed());
    let env = got["spec"]["containers"][0]["env"].as_array().map_or(0, Vec::len);
    assert_eq!(env, n);
    assert_eq!(
        got["spec"]["containers"][0]["env"][0],
        json!({"name": format!("V{}", n - 1), "value": "y"})
    );
}
