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

fn assert_owned_fields_exist(obj: &Value) -> Result<(), TestCaseError> {
    for e in managed::entries(obj) {
        for path in e.fields.paths() {
            prop_assert!(
                value_at(obj, &path).is_some(),
                "{} owns a missing field {:?} in {}",
                e.manager,
                path,
                obj
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    /// One manager moving from configuration `a` to `b` (fields added, changed and dropped):
    /// `b` again changes nothing, and every owned field exists after each step.
    #[test]
    fn one_manager_moving_between_configs_converges(a in config(), b in config()) {
        let schema = Definitions::builtin().get("io.k8s.api.apps.v1.Deployment");
        let first = managed::apply(schema, None, &a, "alice", "apps/v1", false, true, "t").expect("create");
        assert_owned_fields_exist(&first)?;
        let moved = managed::apply(schema, Some(&first), &b, "alice", "apps/v1", false, true, "t").expect("own fields never conflict");
        assert_owned_fields_exist(&moved)?;
        let again = managed::apply(schema, Some(&moved), &b, "alice", "apps/v1", false, true, "t").expect("same");
        prop_assert_eq!(&again, &moved);
        // Everything `b` sets is in the object with b's value.
        let applied = managed::owned_fields(&b, schema, "", true);
        for path in applied.paths() {
            let v = value_at(&b, &path);
            if v.is_some_and(|v| !v.is_object()) {
                prop_assert_eq!(value_at(&moved, &path), v);
            }
        }
    }

    /// The client-side to server-side path: an object client-side applied from `a`, then
    /// server-side applied by kubectl from `b` (conflicts the annotation explains are taken),
    /// then `b` again: a no-op, with every owned field present.
    #[test]
    fn kubectl_server_side_apply_after_client_side_apply_converges(a in config(), b in config()) {
        use kumo_api::managed::lastapplied;
        let schema = Definitions::builtin().get("io.k8s.api.apps.v1.Deployment");
        let mut live = a.clone();
        lastapplied::update_annotation(&mut live, &a);
        managed::record_update(schema, None, &mut live, "kubectl-client-side-apply", "apps/v1", "", true, "t");
        let applied = match managed::apply(schema, Some(&live), &b, "kubectl", "apps/v1", false, true, "t") {
            Ok(v) => v,
            Err(conflicts) => {
                let allowed = lastapplied::allowed_fields(schema, &live, "apps/v1", true).expect("annotation");
                prop_assert!(lastapplied::remaining(&conflicts, &allowed).is_empty(), "only the user's own fields conflict");
                managed::apply(schema, Some(&live), &b, "kubectl", "apps/v1", true, true, "t").expect("forced")
            }
        };
        let mut applied = applied;
        lastapplied::update_annotation(&mut applied, &b);
        assert_owned_fields_exist(&applied)?;
        let mut again = managed::apply(schema, Some(&applied), &b, "kubectl", "apps/v1", false, true, "t").expect("same");
        lastapplied::update_annotation(&mut again, &b);
        prop_assert_eq!(&again, &applied);
    }
}
