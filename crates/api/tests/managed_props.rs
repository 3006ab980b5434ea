//! Server-side apply properties over random configurations of a Deployment: applying the same
//! configuration twice is a no-op, and managedFields never names a field the object lacks.

use kumo_api::managed::{self, fieldset::value_at};
use kumo_api::schema::Definitions;
use proptest::prelude::*;
use serde_json::{json, Value};

fn config() -> impl Strategy<Value = Value> {
    (
        prop::option::of(0i64..10),
        prop::collection::btree_map("[a-c]", "[x-z]", 0..3),
        prop::collection::vec(
            ("[a-d]", prop::option::of("img[0-3]"), prop::option::of(1i64..4)),
            0..3,
        ),
    )
        .prop_map(|(replicas, labels, containers)| {
            let mut spec = json!({"template": {"spec": {"containers": []}}});
            if let Some(r) = replicas {
                spec["replicas"] = json!(r);
            }
            let mut seen = std::collections::BTreeSet::new();
            for (name, image, port) in containers {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let mut c = json!({"name": name});
                if let Some(i) = image {
                    c["image"] = json!(i);
                }
                if let Some(p) = port {
                    c["ports"] = json!([{"containerPort": p}]);
                }
                if let Some(a) = spec["template"]["spec"]["containers"].as_array_mut() {
                    a.push(c);
                }
            }
            let mut meta = json!({"name": "web"});
            if !labels.is_empty() {
                meta["labels"] = json!(labels);
            }
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec})
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn apply_twice_is_a_noop_and_owned_fields_exist(a in config(), b in config(), force in any::<bool>()) {
        let schema = Definitions::builtin().get("io.k8s.api.apps.v1.Deployment");
        let first = managed::apply(schema, None, &a, "alice", "apps/v1", false, true, "t").expect("create");
        let again = managed::apply(schema, Some(&first), &a, "alice", "apps/v1", false, true, "t").expect("same");
        prop_assert_eq!(&again, &first);
        if let Ok(second) = managed::apply(schema, Some(&first), &b, "bob", "apps/v1", force, true, "t") {
            let repeat = managed::apply(schema, Some(&second), &b, "bob", "apps/v1", false, true, "t").expect("same");
            prop_assert_eq!(&repeat, &second);
            for e in managed::entries(&second) {
                for path in e.fields.paths() {
                    prop_assert!(value_at(&second, &path).is_some(), "{} owns a missing field {:?}", e.manager, path);
                }
            }
        }
    }
}
