//! Custom resources: `NAME` plus the CRD version's `additionalPrinterColumns` (or `AGE`),
//! with the simple JSONPath subset CRDs use (`.spec.replicas`, `.items[0].x`,
//! `.status.conditions[?(@.type=="Ready")].status`, `.metadata.labels['app.kubernetes.io/name']`).

use super::{doc, human_duration, name, parse_time};
use crate::resources::Resource;
use crate::validation::json::{as_int, str_at};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

struct Spec {
    column: super::Column,
    path: String,
}

fn specs(resource: &Resource) -> Vec<Spec> {
    let mut out = Vec::new();
    for c in &resource.printer_columns {
        let col_name = str_at(c, &["name"]).unwrap_or("").to_string();
        let path = str_at(c, &["jsonPath"]).unwrap_or("").to_string();
        let description = str_at(c, &["description"])
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!("Custom resource definition column (in JSONPath format): {path}")
            });
        let priority = c.get("priority").and_then(as_int).unwrap_or(0);
        out.push(Spec {
            column: super::Column {
                name: col_name,
                type_: str_at(c, &["type"]).unwrap_or("string").to_string(),
                format: str_at(c, &["format"]).unwrap_or("").to_string(),
                description,
                priority: i32::try_from(priority).unwrap_or(0),
            },
            path,
        });
    }
    if out.is_empty() {
        out.push(Spec {
            column: super::Column {
                name: "Age".into(),
                type_: "date".into(),
                format: String::new(),
                description: doc(META, "creationTimestamp"),
                priority: 0,
            },
            path: ".metadata.creationTimestamp".into(),
        });
    }
    out
}

pub(crate) fn columns(resource: &Resource) -> Vec<super::Column> {
    let mut cols = vec![super::Column {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: doc(META, "name"),
        priority: 0,
    }];
    cols.extend(specs(resource).into_iter().map(|s| s.column));
    cols
}

pub(crate) fn cells(resource: &Resource, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut out = vec![name(obj)];
    for s in specs(resource) {
        let found = eval(obj, &s.path);
        let cell = match found.first() {
            None => Value::Null,
            Some(v) => cell_for(&s.column.type_, v, now),
        };
        out.push(cell);
    }
    out
}

/// A found value as a cell of a column of type `ty` (apiextensions' `cellForJSONValue`).
fn cell_for(ty: &str, v: &Value, now: DateTime<Utc>) -> Value {
    match ty {
        "string" => match v {
            Value::Null => Value::Null,
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
        "integer" => match v {
            Value::Number(n) => n
                .as_i64()
                .map(|i| json!(i))
                .or_else(|| n.as_f64().map(|f| json!(f as i64)))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "number" => match v {
            Value::Number(n) => n.as_f64().map(|f| json!(f)).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "boolean" => match v {
            Value::Bool(b) => json!(b),
            _ => Value::Null,
        },
        "date" => match v {
            Value::String(s) => match parse_time(s) {
                Some(t) => json!(human_duration(now.signed_duration_since(t))),
                None => json!("<invalid>"),
            },
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter { path: Vec<String>, op: String, value: Option<String> },
}

/// Parses the JSONPath subset; `None` for anything beyond it.
fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')).unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let mut field = String::new();
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    field.push(chars[i]);
                    i += 1;
                }
                if field == "*" {
                    steps.push(Step::All);
                } else if !field.is_empty() {
                    steps.push(Step::Field(field));
                }
            }
            '[' => {
                let close =
                    (i..chars.len()).find(|&j| chars[j] == ']' && !inside_quotes(&chars[i..j]))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
                    steps.push(parse_filter(f)?);
                } else if let Some(q) = unquote(inner) {
                    steps.push(Step::Field(q));
                } else {
                    steps.push(Step::Index(inner.parse().ok()?));
                }
                i = close + 1;
            }
            c if c.is_whitespace() => i += 1,
            _ => {
                // A leading bare field (`spec.replicas`).
                let mut field = String::new();
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    field.push(chars[i]);
                    i += 1;
                }
                steps.push(Step::Field(field));
            }
        }
    }
    Some(steps)
}

fn inside_quotes(chars: &[char]) -> bool {
    chars.iter().filter(|c| **c == '\'' || **c == '"').count() % 2 == 1
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return Some(inner.to_string());
        }
    }
    None
}

fn parse_filter(f: &str) -> Option<Step> {
    let f = f.trim();
    for op in ["==", "!=", "<=", ">=", "<", ">"] {
        if let Some((l, r)) = f.split_once(op) {
            let path = filter_path(l.trim())?;
            let r = r.trim();
            let value = unquote(r).unwrap_or_else(|| r.to_string());
            return Some(Step::Filter { path, op: op.to_string(), value: Some(value) });
        }
    }
    Some(Step::Filter { path: filter_path(f)?, op: "exists".into(), value: None })
}

fn filter_path(s: &str) -> Option<Vec<String>> {
    let rest = s.strip_prefix('@')?;
    Some(rest.split('.').filter(|p| !p.is_empty()).map(str::to_string).collect())
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn filter_matches(item: &Value, path: &[String], op: &str, value: Option<&str>) -> bool {
    let mut cur = Some(item);
    for p in path {
        cur = cur.and_then(|c| c.get(p.as_str()));
    }
    let Some(found) = cur else { return false };
    let Some(want) = value else { return true };
    let have = scalar_text(found);
    let num = |s: &str| s.parse::<f64>().ok();
    match op {
        "==" => have == want,
        "!=" => have != want,
        _ => match (num(&have), num(want)) {
            (Some(a), Some(b)) => match op {
                "<" => a < b,
                ">" => a > b,
                "<=" => a <= b,
                ">=" => a >= b,
                _ => false,
            },
            _ => false,
        },
    }
}

/// Every value `path` finds in `obj` (none when the path is outside the subset).
pub(crate) fn eval<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse(path) else { return vec![] };
    let mut cur = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(f) => {
                    if let Some(x) = v.as_object().and_then(|m| m.get(f.as_str())) {
                        next.push(x);
                    }
                }
                Step::Index(i) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter { path, op, value } => {
                    if let Some(a) = v.as_array() {
                        next.extend(
                            a.iter().filter(|it| filter_matches(it, path, op, value.as_deref())),
                        );
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let obj = json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "x"}},
            "spec": {"replicas": 3, "items": [{"a": 1}, {"a": 2}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}
        });
        assert_eq!(eval(&obj, ".spec.replicas"), vec![&json!(3)]);
        assert_eq!(eval(&obj, ".spec.items[1].a"), vec![&json!(2)]);
        assert_eq!(eval(&obj, ".spec.items[*].a").len(), 2);
        assert_eq!(
            eval(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![&json!("True")]
        );
        assert_eq!(eval(&obj, ".metadata.labels['app.kubernetes.io/name']"), vec![&json!("x")]);
        assert_eq!(eval(&obj, ".metadata.labels.app\\.kubernetes\\.io/name"), vec![&json!("x")]);
        assert!(eval(&obj, ".spec.missing").is_empty());
        assert!(eval(&obj, ".spec.items[").is_empty());
    }
}
