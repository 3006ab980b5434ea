//! RFC 6902 JSON patch over `serde_json::Value`, with RFC 6901 JSON pointers.

use super::{brief, json_equal, kind_name, PatchError};
use serde_json::Value;

/// Applies an RFC 6902 JSON patch to `target`.
///
/// `ops` must be an array of operation objects (`{"op": "add", "path": "/a/b", "value": …}`);
/// the operations `add`, `remove`, `replace`, `move`, `copy` and `test` are supported, with
/// JSON pointers using `~0`/`~1` escapes and `-` for the end of an array. The patch applies all
/// or nothing: on error `target` is left unchanged.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let Value::Array(ops) = ops else {
        return Err(PatchError::InvalidPatch(format!(
            "a JSON patch must be a list of operations, not a {}",
            kind_name(ops)
        )));
    };
    let mut doc = target.clone();
    for (index, op) in ops.iter().enumerate() {
        apply_op(&mut doc, index, op)?;
    }
    *target = doc;
    Ok(())
}

fn bad_op(index: usize, message: impl Into<String>) -> PatchError {
    PatchError::InvalidOperation { index, message: message.into() }
}

fn apply_op(doc: &mut Value, index: usize, op: &Value) -> Result<(), PatchError> {
    let Value::Object(op) = op else {
        return Err(bad_op(index, format!("an operation must be a map, not {}", brief(op))));
    };
    let name = match op.get("op") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(bad_op(index, format!("\"op\" must be a string, not {}", brief(other))))
        }
        None => return Err(bad_op(index, "missing \"op\" field")),
    };
    let pointer_field = |field: &str| -> Result<&str, PatchError> {
        match op.get(field) {
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(other) => Err(bad_op(
                index,
                format!("{field:?} of a {name} operation must be a string, not {}", brief(other)),
            )),
            None => Err(bad_op(index, format!("missing {field:?} field for a {name} operation"))),
        }
    };
    let value_field = || {
        op.get("value")
            .ok_or_else(|| bad_op(index, format!("missing \"value\" field for a {name} operation")))
    };
    match name {
        "add" => {
            let path = pointer_field("path")?;
            add(doc, path, value_field()?.clone())
        }
        "remove" => {
            let path = pointer_field("path")?;
            remove(doc, path).map(drop)
        }
        "replace" => {
            let path = pointer_field("path")?;
            let value = value_field()?.clone();
            let tokens = parse_pointer(path)?;
            match get_mut(doc, &tokens, path)? {
                Some(slot) => {
                    *slot = value;
                    Ok(())
                }
                None => {
                    Err(PatchError::NonexistentTarget { op: "replace", path: path.to_string() })
                }
            }
        }
        "move" => {
            let from = pointer_field("from")?;
            let path = pointer_field("path")?;
            let from_tokens = parse_pointer(from)?;
            let path_tokens = parse_pointer(path)?;
            if from_tokens == path_tokens {
                // Moving a value onto itself still requires it to exist.
                return match get(doc, &from_tokens) {
                    Some(_) => Ok(()),
                    None => Err(PatchError::MissingPath(from.to_string())),
                };
            }
            if path_tokens.len() > from_tokens.len() && path_tokens.starts_with(&from_tokens) {
                return Err(PatchError::MoveIntoChild {
                    from: from.to_string(),
                    path: path.to_string(),
                });
            }
            let value = remove(doc, from).map_err(|e| match e {
                PatchError::NonexistentTarget { .. } => PatchError::MissingPath(from.to_string()),
                e => e,
            })?;
            add(doc, path, value)
        }
        "copy" => {
            let from = pointer_field("from")?;
            let path = pointer_field("path")?;
            let tokens = parse_pointer(from)?;
            let value = get(doc, &tokens)
                .cloned()
                .ok_or_else(|| PatchError::MissingPath(from.to_string()))?;
            add(doc, path, value)
        }
        "test" => {
            let path = pointer_field("path")?;
            let want = value_field()?;
            let tokens = parse_pointer(path)?;
            match get(doc, &tokens) {
                Some(found) if json_equal(found, want) => Ok(()),
                Some(_) => Err(PatchError::TestFailed(path.to_string())),
                // A missing value only equals an explicit null in some implementations; RFC 6902
                // says the target must exist.
                None => Err(PatchError::TestFailed(path.to_string())),
            }
        }
        other => Err(bad_op(
            index,
            format!("unexpected op {other:?}: use add, remove, replace, move, copy or test"),
        )),
    }
}

/// Splits an RFC 6901 pointer into unescaped reference tokens.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, PatchError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(PatchError::InvalidPointer {
            pointer: pointer.to_string(),
            message: "a pointer must be empty or start with '/'".into(),
        });
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(PatchError::InvalidPointer {
                                pointer: pointer.to_string(),
                                message: "'~' must be followed by '0' or '1'".into(),
                            })
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// An array index token: decimal digits without leading zeros.
fn array_index(token: &str) -> Option<usize> {
    if token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_digit())
        || (token.len() > 1 && token.starts_with('0'))
    {
        return None;
    }
    token.parse().ok()
}

fn get<'v>(doc: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    let mut cur = doc;
    for token in tokens {
        cur = match cur {
            Value::Object(m) => m.get(token)?,
            Value::Array(a) => a.get(array_index(token)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The value at `tokens`, `None` if the last step is missing; an error if a parent is missing.
fn get_mut<'v>(
    doc: &'v mut Value,
    tokens: &[String],
    path: &str,
) -> Result<Option<&'v mut Value>, PatchError> {
    let Some((last, parents)) = tokens.split_last() else { return Ok(Some(doc)) };
    let parent = parent_mut(doc, parents, path)?;
    Ok(match parent {
        Value::Object(m) => m.get_mut(last),
        Value::Array(a) => match array_index(last) {
            Some(i) => a.get_mut(i),
            None => None,
        },
        _ => None,
    })
}

fn parent_mut<'v>(
    doc: &'v mut Value,
    parents: &[String],
    path: &str,
) -> Result<&'v mut Value, PatchError> {
    let mut cur = doc;
    for token in parents {
        let next = match cur {
            Value::Object(m) => m.get_mut(token),
            Value::Array(a) => match array_index(token) {
                Some(i) => a.get_mut(i),
                None => None,
            },
            _ => None,
        };
        cur = next.ok_or_else(|| PatchError::MissingPath(path.to_string()))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let tokens = parse_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i = array_index(last).ok_or_else(|| PatchError::InvalidPointer {
                pointer: path.to_string(),
                message: format!("{last:?} is not an array index"),
            })?;
            if i > a.len() {
                return Err(PatchError::IndexOutOfBounds { path: path.to_string(), len: a.len() });
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(PatchError::MissingPath(path.to_string())),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let tokens = parse_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Err(PatchError::InvalidPointer {
            pointer: path.to_string(),
            message: "the whole document cannot be removed".into(),
        });
    };
    let missing = || PatchError::NonexistentTarget { op: "remove", path: path.to_string() };
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => m.shift_remove(last).ok_or_else(missing),
        Value::Array(a) => match array_index(last) {
            Some(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc6902_appendix_a_successes() {
        let cases = [
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux"}]),
                json!({"foo":"bar","baz":"qux"}),
            ),
            (
                json!({"foo":["bar","baz"]}),
                json!([{"op":"add","path":"/foo/1","value":"qux"}]),
                json!({"foo":["bar","qux","baz"]}),
            ),
            (
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"remove","path":"/baz"}]),
                json!({"foo":"bar"}),
            ),
            (
                json!({"foo":["bar","qux","baz"]}),
                json!([{"op":"remove","path":"/foo/1"}]),
                json!({"foo":["bar","baz"]}),
            ),
            (
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"replace","path":"/baz","value":"boo"}]),
                json!({"baz":"boo","foo":"bar"}),
            ),
            (
                json!({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}),
                json!([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]),
                json!({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}),
            ),
            (
                json!({"foo":["all","grass","cows","eat"]}),
                json!([{"op":"move","from":"/foo/1","path":"/foo/3"}]),
                json!({"foo":["all","cows","eat","grass"]}),
            ),
            (
                json!({"baz":"qux","foo":["a",2,"c"]}),
                json!([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]),
                json!({"baz":"qux","foo":["a",2,"c"]}),
            ),
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/child","value":{"grandchild":{}}}]),
                json!({"foo":"bar","child":{"grandchild":{}}}),
            ),
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux","xyz":123}]),
                json!({"foo":"bar","baz":"qux"}),
            ),
            (
                json!({"foo":["bar"]}),
                json!([{"op":"add","path":"/foo/-","value":["abc","def"]}]),
                json!({"foo":["bar",["abc","def"]]}),
            ),
            (
                json!({"/":9,"~1":10}),
                json!([{"op":"test","path":"/~01","value":10}]),
                json!({"/":9,"~1":10}),
            ),
            (
                json!({"a/b":1,"m~n":2}),
                json!([{"op":"replace","path":"/a~1b","value":3},{"op":"remove","path":"/m~0n"}]),
                json!({"a/b":3}),
            ),
            (json!({"foo":1}), json!([{"op":"add","path":"","value":[1]}]), json!([1])),
            (
                json!({"a":{"b":1}}),
                json!([{"op":"copy","from":"/a","path":"/c"},{"op":"replace","path":"/c/b","value":2}]),
                json!({"a":{"b":1},"c":{"b":2}}),
            ),
            (json!({"n":1}), json!([{"op":"test","path":"/n","value":1.0}]), json!({"n":1})),
            (json!({"a":1}), json!([]), json!({"a":1})),
        ];
        for (doc, ops, want) in cases {
            let mut got = doc.clone();
            let res = json_patch(&mut got, &ops);
            assert_eq!(res, Ok(()), "doc {doc} ops {ops}");
            assert_eq!(got, want, "doc {doc} ops {ops}");
        }
    }

    #[test]
    fn failures_leave_the_document_unchanged() {
        let doc = json!({"foo":"bar","list":[1,2]});
        let cases = [
            (json!([{"op":"add","path":"/baz/bat","value":"qux"}]), "doc is missing path: /baz/bat"),
            (json!([{"op":"test","path":"/foo","value":"baz"}]), "testing value /foo failed"),
            (json!([{"op":"remove","path":"/nope"}]), "unable to remove nonexistent key or index: /nope: missing value"),
            (json!([{"op":"replace","path":"/nope","value":1}]), "unable to replace nonexistent key or index: /nope: missing value"),
            (json!([{"op":"add","path":"/list/3","value":1}]), "index out of bounds at /list/3: the array has 2 elements"),
            (json!([{"op":"add","path":"/list/01","value":1}]), "invalid JSON pointer \"/list/01\": \"01\" is not an array index"),
            (json!([{"op":"remove","path":"/list/-"}]), "unable to remove nonexistent key or index: /list/-: missing value"),
            (json!([{"op":"add","path":"foo","value":1}]), "invalid JSON pointer \"foo\": a pointer must be empty or start with '/'"),
            (json!([{"op":"add","path":"/a~2","value":1}]), "invalid JSON pointer \"/a~2\": '~' must be followed by '0' or '1'"),
            (json!([{"op":"add","path":"/x"}]), "invalid JSON patch operation 0: missing \"value\" field for a add operation"),
            (json!([{"op":"jump","path":"/x"}]), "invalid JSON patch operation 0: unexpected op \"jump\": use add, remove, replace, move, copy or test"),
            (json!([{"path":"/x"}]), "invalid JSON patch operation 0: missing \"op\" field"),
            (json!(["add"]), "invalid JSON patch operation 0: an operation must be a map, not \"add\""),
            (json!([{"op":"move","from":"/list","path":"/list/0"}]), "unable to move /list into its own child /list/0"),
            (json!([{"op":"copy","from":"/nope","path":"/x"}]), "doc is missing path: /nope"),
            (json!([{"op":"add","path":"/foo/x","value":1}]), "doc is missing path: /foo/x"),
            (json!({"op":"add"}), "invalid patch: a JSON patch must be a list of operations, not a map"),
            // All or nothing: the first operation succeeds, the second fails.
            (json!([{"op":"add","path":"/new","value":1},{"op":"remove","path":"/gone"}]), "unable to remove nonexistent key or index: /gone: missing value"),
        ];
        for (ops, want) in cases {
            let mut got = doc.clone();
            let err = json_patch(&mut got, &ops).expect_err("must fail");
            assert_eq!(err.to_string(), want, "ops {ops}");
            assert_eq!(got, doc, "ops {ops} changed the document");
        }
    }
}
