//! Random bodies through everything a request body meets before the store — protobuf and JSON
//! decoding, the schema walk (pruning, type checks, CRD value checks), defaulting, validation and
//! server-side printing — never panic, whatever the kind.

use kumo_api::resources::{builtin, Resource};
use kumo_apiserver::admission::{check_schema, prepare_create, FieldValidation};
use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "[a-z0-9 ._:/-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("metadata".to_string()),
            Just("spec".to_string()),
            Just("status".to_string()),
            Just("name".to_string()),
            Just("containers".to_string()),
            Just("template".to_string()),
            Just("selector".to_string()),
            Just("labels".to_string()),
            Just("ports".to_string()),
            Just("replicas".to_string()),
            "[a-zA-Z]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn crd_resource() -> Resource {
    let mut r = builtin().into_iter().find(|r| r.kind == "ConfigMap").expect("cm");
    r.group = "example.com".into();
    r.kind = "Widget".into();
    r.plural = "widgets".into();
    r.definition = None;
    r.crd_schema = Some(
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"],
        "properties": {"size": {"type": "integer", "minimum": 1}, "color": {"type": "string", "enum": ["red"], "pattern": "^r"},
                       "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 3}}}}}}),
    );
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn admission_never_panics(body in arb_json(), kind_index in 0usize..64, mode in 0u8..3) {
        let mut all = builtin();
        all.push(crd_resource());
        let r = &all[kind_index % all.len()];
        let mode = [FieldValidation::Strict, FieldValidation::Warn, FieldValidation::Ignore][mode as usize];
        let mut obj = body.clone();
        if check_schema(r, &mut obj, mode).is_ok() {
            prepare_create(r, &mut obj);
            kumo_api::defaults::apply(r, &mut obj);
            let _ = kumo_api::validation::validate(r, &obj, None);
            let _ = kumo_api::validation::validate(r, &obj, Some(&body));
            let _ = kumo_api::printers::cells(r, &obj, chrono::Utc::now());
        }
    }

    #[test]
    fn json_and_yaml_decoding_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<Value>(&bytes);
        let _ = serde_yaml::from_slice::<Value>(&bytes);
    }

    #[test]
    fn protobuf_decoding_never_panics(tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut body = b"k8s\0".to_vec();
        body.extend(tail);
        let _ = kumo_api::protobuf::decode(&body);
    }
}
