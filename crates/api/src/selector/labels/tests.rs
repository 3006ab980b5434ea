//! Table tests of label selector parsing, printing and matching.

use super::*;
use serde_json::json;

fn parse(s: &str) -> LabelSelector {
    match LabelSelector::parse(s) {
        Ok(sel) => sel,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

#[test]
fn parse_and_print() {
    let cases = [
        ("", ""),
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("a", "a"),
        ("!a", "!a"),
        (" a = b , c ", "a=b,c"),
        ("x in (c,b,a,b)", "x in (a,b,c)"),
        ("x notin (z)", "x notin (z)"),
        ("x in ()", "x in ()"),
        ("x in (,a)", "x in (,a)"),
        ("x in (a,)", "x in (,a)"),
        ("x in (a,,b)", "x in (,a,b)"),
        ("a=", "a="),
        ("a=,b", "a=,b"),
        ("z=1,a=2,m", "a=2,m,z=1"),
        ("a>1,b<-0", "a>1,b<-0"),
        ("in in (in,notin)", "in in (in,notin)"),
        ("example.com/app=web", "example.com/app=web"),
        ("a=b,c!=d,e in (x,y),f notin (z),g,!h", "a=b,c!=d,e in (x,y),f notin (z),g,!h"),
    ];
    for (input, want) in cases {
        let sel = match LabelSelector::parse(input) {
            Ok(s) => s,
            Err(e) if input == "a>1,b<-0" => {
                // `-0` is not a label value.
                assert!(e.to_string().contains("values[0]"), "{e}");
                continue;
            }
            Err(e) => panic!("{input:?}: {e}"),
        };
        assert_eq!(sel.to_string(), want, "{input:?}");
        assert_eq!(parse(&sel.to_string()), sel, "{input:?} round trip");
    }
    assert!(parse("").is_empty());
    assert!(!parse("a").is_empty());
}

#[test]
fn parse_errors() {
    let cases = [
        ("a=b,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("=b", "found '=', expected: !, identifier, or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("a (b)", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"),
        ("a==(b)", "unable to parse requirement: found '(', expected: identifier"),
        ("a>b", "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        (
            "a-=b",
            "unable to parse requirement: key: Invalid value: \"a-\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        (
            "Example.com/a=b",
            "unable to parse requirement: key: Invalid value: \"Example.com/a\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        ("a/b/c", "unable to parse requirement: key: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
        ("/a", "unable to parse requirement: key: Invalid value: \"/a\": prefix part must be non-empty"),
        (
            "a=b_",
            "unable to parse requirement: values[0]: Invalid value: \"b_\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
    ];
    for (input, want) in cases {
        let err = LabelSelector::parse(input).expect_err(input);
        assert_eq!(err.to_string(), want, "{input:?}");
    }
    let long = format!("a={}", "v".repeat(64));
    let err = LabelSelector::parse(&long).expect_err("too long");
    assert!(err.to_string().contains("must be no more than 63 characters"), "{err}");
}

#[test]
fn matching() {
    let labels = json!({"app": "web", "tier": "frontend", "replicas": "3", "empty": ""});
    let labels = labels.as_object();
    let cases = [
        ("", true),
        ("app=web", true),
        ("app==web", true),
        ("app=db", false),
        ("app!=db", true),
        ("missing!=x", true),
        ("missing=x", false),
        ("app in (web,db)", true),
        ("app notin (web,db)", false),
        ("missing notin (x)", true),
        ("missing in (x)", false),
        ("app", true),
        ("missing", false),
        ("!missing", true),
        ("!app", false),
        ("replicas>2", true),
        ("replicas>3", false),
        ("replicas<4", true),
        ("app>1", false),
        ("missing<1", false),
        ("empty=", true),
        ("empty in ()", true),
        ("missing=", false),
        ("app=web,tier=frontend", true),
        ("app=web,tier=backend", false),
    ];
    for (input, want) in cases {
        assert_eq!(parse(input).matches(labels), want, "{input:?}");
    }
    assert!(parse("!a").matches(None));
    assert!(!parse("a").matches(None));
    assert!(parse("").matches(None));
}

#[test]
fn from_object() {
    let cases = [
        (json!(null), ""),
        (json!({}), ""),
        (json!({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2"),
        (
            json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "ready", "operator": "Exists", "values": []}
            ]}),
            "app=web,!canary,env notin (dev),ready,tier in (api,web)",
        ),
        (json!({"matchLabels": null, "matchExpressions": null}), ""),
    ];
    for (obj, want) in cases {
        let sel = match LabelSelector::from_object(&obj) {
            Ok(s) => s,
            Err(e) => panic!("{obj}: {e}"),
        };
        assert_eq!(sel.to_string(), want, "{obj}");
        let reparsed = parse(&sel.to_string());
        assert_eq!(reparsed.to_string(), want);
    }
    let sel = LabelSelector::from_object(&json!({"matchLabels": {"app": "web"}})).expect("valid");
    assert_eq!(sel, parse("app=web"));
    assert!(sel.matches(json!({"app": "web", "x": "y"}).as_object()));
    assert!(!sel.matches(json!({"app": "db"}).as_object()));
}

#[test]
fn from_object_errors() {
    let cases = [
        (json!("app=web"), "invalid label selector: a label selector must be a map, not \"app=web\""),
        (json!({"matchLabels": ["a"]}), "invalid label selector: matchLabels must be a map, not [\"a\"]"),
        (json!({"matchLabels": {"a": 1}}), "invalid label selector: matchLabels[\"a\"] must be a string, not 1"),
        (json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}), "invalid label selector: \"Gt\" is not a valid label selector operator"),
        (json!({"matchExpressions": [{"key": "a", "operator": "In"}]}), "invalid label selector: values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"),
        (json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}), "invalid label selector: values: Invalid value: [\"x\"]: values set must be empty for exists and does not exist"),
        (json!({"matchExpressions": [{"operator": "Exists"}]}), "invalid label selector: matchExpressions[0].key must be a string"),
        (json!({"matchExpressions": {"key": "a"}}), "invalid label selector: matchExpressions must be a list, not {\"key\":\"a\"}"),
        (json!({"matchLabels": {"a b": "c"}}), "invalid label selector: key: Invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
    ];
    for (obj, want) in cases {
        let err = LabelSelector::from_object(&obj).expect_err("must fail");
        assert_eq!(err.to_string(), want, "{obj}");
    }
}
