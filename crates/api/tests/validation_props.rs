//! Property: defaulting, validation and printing never panic, whatever the JSON.

use chrono::Utc;
use kumo_api::resources::builtin;
use kumo_api::{defaults, printers, validation};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "metadata",
        "name",
        "spec",
        "status",
        "containers",
        "template",
        "selector",
        "ports",
        "labels",
        "port",
        "type",
        "data",
        "image",
        "replicas",
        "conditions",
        "matchLabels",
        "initContainers",
        "containerStatuses",
        "state",
        "waiting",
        "reason",
        "versions",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9./:_ -]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn no_panics(obj in json(), old in json()) {
        for r in builtin() {
            let mut v = obj.clone();
            defaults::apply(&r, &mut v);
            let _ = validation::validate(&r, &v, Some(&old));
            prop_assert_eq!(printers::cells(&r, &v, Utc::now()).len(), printers::columns(&r).len());
        }
    }
}
