//! Field selectors: `field=value`, `field==value` and `field!=value` terms joined by commas.

use super::{field_value, SelectorError};
use serde_json::Value;
use std::fmt;

/// The comparison of one field selector term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Equals,
    NotEquals,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Term {
    field: String,
    op: Op,
    value: String,
}

/// A parsed field selector: every term must hold for an object to match. The empty selector
/// matches everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector {
    terms: Vec<Term>,
}

impl FieldSelector {
    /// Parses a field selector such as `metadata.name=x,status.phase!=Running`.
    ///
    /// `==` is the same as `=`. In values, `\,`, `\=` and `\\` stand for `,`, `=` and `\`; an
    /// unescaped `,` or `=` in a value, or any other escape, is an error. The field names are
    /// not checked here: the server checks them against the fields the kind supports.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in split_terms(s) {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, rhs)) = split_term(part) else {
                return Err(SelectorError::FieldTerm {
                    selector: s.to_string(),
                    term: part.to_string(),
                });
            };
            terms.push(Term { field: field.to_string(), op, value: unescape_value(rhs)? });
        }
        // The terms are a conjunction; a canonical order makes equal selectors compare equal.
        terms.sort();
        Ok(FieldSelector { terms })
    }

    /// Whether `obj` satisfies every term, reading each field with [`field_value`].
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let v = field_value(obj, &t.field);
            match t.op {
                Op::Equals => v == t.value,
                Op::NotEquals => v != t.value,
            }
        })
    }

    /// The field paths the selector uses, in order, possibly repeated.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|t| t.field.as_str())
    }

    /// Whether the selector has no terms (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical form, `field=value,field!=value`, with values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match t.op {
                Op::Equals => "=",
                Op::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", t.field, escape_value(&t.value))?;
        }
        Ok(())
    }
}

/// Splits on commas not escaped by a backslash; the backslashes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator (`!=`, `==`, `=`, tried in that order at each place).
fn split_term(term: &str) -> Option<(&str, Op, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (token, op) in [("!=", Op::NotEquals), ("==", Op::Equals), ("=", Op::Equals)] {
            if let Some(rhs) = rest.strip_prefix(token) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(SelectorError::InvalidEscape(format!("\\{c}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::UnescapedChar(c)),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::InvalidEscape("\\".into()));
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> FieldSelector {
        match FieldSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    #[test]
    fn parse_and_print() {
        let cases = [
            ("", ""),
            ("metadata.name=x", "metadata.name=x"),
            ("metadata.name==x", "metadata.name=x"),
            ("status.phase!=Running,metadata.name=x", "metadata.name=x,status.phase!=Running"),
            ("spec.nodeName=", "spec.nodeName="),
            ("a=b,,c=d", "a=b,c=d"),
            ("metadata.name=a\\,b\\=c\\\\d", "metadata.name=a\\,b\\=c\\\\d"),
            ("x=a b", "x=a b"),
            ("=x", "=x"),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).to_string(), want, "{input:?}");
        }
        assert_eq!(parse("metadata.name=a\\,b").terms[0].value, "a,b");
    }

    #[test]
    fn parse_errors() {
        let cases = [
            (
                "metadata.name",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            ("a=b=c", "invalid field selector: unescaped character in value: ="),
            ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
            ("a=b\\x", "invalid field selector: invalid escape sequence: \\x"),
            ("a!==b", "invalid field selector: unescaped character in value: ="),
        ];
        for (input, want) in cases {
            let err = FieldSelector::parse(input).expect_err(input);
            assert_eq!(err.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn matching() {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "prod"}, "spec": {"nodeName": "n1"},
                         "status": {"phase": "Running"}});
        let cases = [
            ("", true),
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name=web-2", false),
            ("metadata.name!=web-2", true),
            ("status.phase!=Running", false),
            ("metadata.name=web-1,metadata.namespace=prod", true),
            ("metadata.name=web-1,metadata.namespace=dev", false),
            ("spec.nodeName=", false),
            ("spec.schedulerName=", true),
            ("spec.schedulerName!=", false),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).matches(&pod), want, "{input:?}");
        }
    }

    #[test]
    fn fields_and_emptiness() {
        let sel = parse("status.phase=Running,metadata.name=x");
        assert_eq!(sel.fields().collect::<Vec<_>>(), ["metadata.name", "status.phase"]);
        assert!(!sel.is_empty());
        assert!(parse("").is_empty());
        assert!(parse(",").is_empty());
    }
}
