//! Property tests of the patch functions and the selector parsers: they never panic on any
//! input, and they agree with each other where their semantics coincide.

use kumo_api::patch::{json_patch, merge_patch, strategic_merge_patch};
use kumo_api::schema::Definitions;
use kumo_api::selector::{FieldSelector, LabelSelector};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Keys that reach the interesting paths: Pod fields with merge strategies, and directives.
const KEYS: &[&str] = &[
    "a",
    "b",
    "name",
    "image",
    "metadata",
    "labels",
    "finalizers",
    "spec",
    "containers",
    "env",
    "volumes",
    "ports",
    "containerPort",
    "strategy",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/finalizers",
    "$deleteFromPrimitiveList/finalizers",
    "replace",
    "delete",
    "merge",
];

fn leaf(nulls: bool) -> BoxedStrategy<Value> {
    let scalars = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-3i64..100).prop_map(Value::from),
        prop_oneof![Just(0.5f64), Just(1.0f64), Just(-2.25f64)].prop_map(Value::from),
        prop::sample::select(KEYS).prop_map(Value::from),
        "[a-z]{0,3}".prop_map(Value::String),
    ];
    if nulls {
        prop_oneof![1 => Just(Value::Null), 6 => scalars].boxed()
    } else {
        scalars.boxed()
    }
}

/// Any JSON value; `nulls` allows `null`s, `lists` allows lists, `dollar` allows `$` keys.
fn json(nulls: bool, lists: bool, dollar: bool) -> BoxedStrategy<Value> {
    let keys: Vec<&'static str> =
        KEYS.iter().copied().filter(|k| dollar || !k.starts_with('$')).collect();
    leaf(nulls)
        .prop_recursive(5, 48, 5, move |inner| {
            let map =
                prop::collection::vec((prop::sample::select(keys.clone()), inner.clone()), 0..5)
                    .prop_map(|kvs| {
                        Value::Object(kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                    });
            if lists {
                prop_oneof![map, prop::collection::vec(inner, 0..5).prop_map(Value::Array)].boxed()
            } else {
                map.boxed()
            }
        })
        .boxed()
}

/// A JSON object whose members are drawn like [`json`].
fn object(nulls: bool, lists: bool, dollar: bool) -> BoxedStrategy<Value> {
    prop::collection::vec((prop::sample::select(KEYS), json(nulls, lists, dollar)), 0..5)
        .prop_map(move |kvs| {
            Value::Object(
                kvs.into_iter()
                    .filter(|(k, _)| dollar || !k.starts_with('$'))
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>(),
            )
        })
        .boxed()
}

/// JSON patch operations with plausible pointers, and occasionally nonsense.
fn ops() -> BoxedStrategy<Value> {
    let pointer = prop::collection::vec(
        prop_oneof![
            prop::sample::select(KEYS).prop_map(str::to_string),
            "[0-3-]",
            "~[0-2]",
            "[a-z]{0,2}"
        ],
        0..4,
    )
    .prop_map(|parts| parts.iter().map(|p| format!("/{p}")).collect::<String>());
    let op = (
        prop::sample::select(&["add", "remove", "replace", "move", "copy", "test", "bogus"][..]),
        pointer.clone(),
        pointer,
        json(true, true, true),
    )
        .prop_map(|(op, path, from, value)| {
            serde_json::json!({"op": op, "path": path, "from": from, "value": value})
        });
    prop_oneof![
        8 => prop::collection::vec(op, 0..6).prop_map(Value::Array),
        1 => json(true, true, true),
    ]
    .boxed()
}

fn has_directive_key(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            k == "$patch"
                || k == "$retainKeys"
                || k.starts_with("$setElementOrder/")
                || k.starts_with("$deleteFromPrimitiveList/")
                || has_directive_key(v)
        }),
        Value::Array(a) => a.iter().any(has_directive_key),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn merge_patch_never_panics(mut target in json(true, true, true), patch in json(true, true, true)) {
        merge_patch(&mut target, &patch);
    }

    #[test]
    fn json_patch_never_panics_and_is_all_or_nothing(target in json(true, true, true), ops in ops()) {
        let mut doc = target.clone();
        if json_patch(&mut doc, &ops).is_err() {
            prop_assert_eq!(doc, target);
        }
    }

    #[test]
    fn strategic_merge_patch_never_panics(
        original in prop_oneof![object(true, true, true), json(true, true, true)],
        patch in prop_oneof![object(true, true, true), json(true, true, true)],
    ) {
        let pod = Definitions::builtin().get("io.k8s.api.core.v1.Pod");
        let deployment = Definitions::builtin().get("io.k8s.api.apps.v1.Deployment");
        let _ = strategic_merge_patch(&original, &patch, pod);
        let _ = strategic_merge_patch(&original, &patch, deployment);
        let _ = strategic_merge_patch(&original, &patch, None);
        // The same shapes nested where the Pod schema merges lists.
        let spec_original =
            serde_json::json!({"spec": original, "metadata": {"finalizers": patch.clone()}});
        let spec_patch = serde_json::json!({"spec": patch, "metadata": {"finalizers": ["x"]}});
        let _ = strategic_merge_patch(&spec_original, &spec_patch, pod);
    }

    #[test]
    fn strategic_results_hold_no_directives(
        original in object(false, true, false),
        patch in object(true, true, true),
    ) {
        let pod = Definitions::builtin().get("io.k8s.api.core.v1.Pod");
        for schema in [pod, None] {
            if let Ok(v) = strategic_merge_patch(&original, &patch, schema) {
                prop_assert!(!has_directive_key(&v), "directive left in {}", v);
            }
        }
    }

    #[test]
    fn merge_patch_with_itself_is_identity(x in object(false, true, true)) {
        let mut y = x.clone();
        merge_patch(&mut y, &x);
        prop_assert_eq!(y, x);
    }

    #[test]
    fn strategic_without_schema_equals_merge_patch_for_maps(
        original in object(true, false, false),
        patch in object(true, false, false),
    ) {
        let mut want = original.clone();
        merge_patch(&mut want, &patch);
        let got = strategic_merge_patch(&original, &patch, None);
        prop_assert_eq!(got, Ok(want));
    }

    #[test]
    fn label_selector_parse_never_panics(s in "\\PC{0,40}") {
        let _ = LabelSelector::parse(&s);
    }

    #[test]
    fn label_selector_display_round_trips(
        s in "[a-c!=(), <>]{0,12}|[a-z0-9./_-]{0,8}( ?(=|==|!=|in|notin|<|>) ?)[a-z0-9(),_.-]{0,10}"
    ) {
        if let Ok(sel) = LabelSelector::parse(&s) {
            let printed = sel.to_string();
            let reparsed = LabelSelector::parse(&printed);
            prop_assert_eq!(reparsed, Ok(sel), "{:?} printed as {:?}", s, printed);
        }
    }

    #[test]
    fn field_selector_parse_never_panics(s in "\\PC{0,40}") {
        let _ = FieldSelector::parse(&s);
    }

    #[test]
    fn field_selector_display_round_trips(s in "[a-c.=!,\\\\ ]{0,16}") {
        if let Ok(sel) = FieldSelector::parse(&s) {
            let printed = sel.to_string();
            let reparsed = FieldSelector::parse(&printed);
            prop_assert_eq!(reparsed, Ok(sel), "{:?} printed as {:?}", s, printed);
        }
    }
}
