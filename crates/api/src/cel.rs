//! # CEL: the expression language of admission policies and CRD validation rules
//!
//! Kubernetes evaluates [CEL](https://kubernetes.io/docs/reference/using-api/cel/) in two
//! places kumo serves: ValidatingAdmissionPolicies (`object`, `oldObject`, `request`,
//! `params`, `namespaceObject`, `variables`) and the `x-kubernetes-validations` rules of
//! CustomResourceDefinitions (`self`, `oldSelf`). This module compiles and evaluates such
//! expressions with the `cel` crate (ADR 0012) over JSON objects: [`Program`] is one compiled
//! expression, [`Activation`] the variables it sees, [`to_cel`] turns JSON into CEL values.
//! [`rules`] applies a CRD's rules to an object.
//!
//! The environment is CEL's standard library plus the `strings`, `lists` and `math`
//! extensions. Kubernetes' own libraries (`quantity()`, `url()`, `isSorted()`, `authorizer`,
//! …) are not there: an expression that calls them fails to evaluate, which a policy reports
//! through its `failurePolicy` and a CRD rule as an invalid object, never as an accept.
//!
//! ```
//! use kumo_api::cel::{Activation, Program};
//! let p = Program::compile("self.replicas <= 5").unwrap();
//! let mut vars = Activation::default();
//! vars.bind_json("self", &serde_json::json!({"replicas": 7}));
//! assert_eq!(p.eval_bool(&vars).unwrap(), false);
//! ```

pub mod policy;
pub mod rules;

use cel::objects::{Key, Map};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Errors compiling or evaluating an expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CelError {
    /// The expression does not parse.
    #[error("compilation failed: {0}")]
    Compile(String),
    /// The expression failed while running (a missing field, a type mismatch, …).
    #[error("{0}")]
    Eval(String),
    /// The expression ran but did not give the type asked for.
    #[error("expected a {want} result, got {got}")]
    Type {
        /// What the caller needed (`bool`, `string`).
        want: &'static str,
        /// What the expression gave.
        got: String,
    },
}

/// The shared environment: the standard library and the extensions Kubernetes enables.
fn env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        // The extensions cannot conflict with the standard library; if one ever did, the
        // expressions that use it fail to evaluate rather than the server failing to start.
        for ext in [cel::extensions::strings, cel::extensions::lists, cel::extensions::math] {
            let _ = env.add_extension(ext);
        }
        Arc::new(env)
    })
}

/// One compiled expression.
#[derive(Debug)]
pub struct Program {
    source: String,
    program: cel::Program,
}

/// The variables an expression sees.
#[derive(Debug, Default, Clone)]
pub struct Activation {
    vars: Vec<(String, cel::Value)>,
}

impl Activation {
    /// Bind `name` to a CEL value.
    pub fn bind(&mut self, name: &str, value: cel::Value) {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value));
    }

    /// Bind `name` to a JSON value (see [`to_cel`]).
    pub fn bind_json(&mut self, name: &str, value: &Value) {
        self.bind(name, to_cel(value));
    }

    /// The value bound to `name`.
    pub fn get(&self, name: &str) -> Option<&cel::Value> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl Program {
    /// Compile `source`.
    pub fn compile(source: &str) -> Result<Program, CelError> {
        let program = env().compile(source).map_err(|e| CelError::Compile(e.to_string()))?;
        Ok(Program { source: source.to_string(), program })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression mentions the variable `name` (`oldSelf` makes a transition rule).
    pub fn references(&self, name: &str) -> bool {
        self.program.references().has_variable(name)
    }

    /// Evaluate with `vars`.
    pub fn eval(&self, vars: &Activation) -> Result<cel::Value, CelError> {
        let mut ctx = cel::Context::with_env(env().clone());
        for (name, value) in &vars.vars {
            ctx.add_variable_from_value(name.clone(), value.clone());
        }
        self.program.execute(&ctx).map_err(|e| CelError::Eval(e.to_string()))
    }

    /// Evaluate an expression that must give a boolean.
    pub fn eval_bool(&self, vars: &Activation) -> Result<bool, CelError> {
        match self.eval(vars)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(CelError::Type { want: "bool", got: type_name(&other) }),
        }
    }

    /// Evaluate an expression that must give a string (`messageExpression`).
    pub fn eval_string(&self, vars: &Activation) -> Result<String, CelError> {
        match self.eval(vars)? {
            cel::Value::String(s) => Ok(s.to_string()),
            other => Err(CelError::Type { want: "string", got: type_name(&other) }),
        }
    }
}

fn type_name(v: &cel::Value) -> String {
    format!("{:?}", v.type_of()).to_lowercase()
}

/// A JSON value as CEL sees it: objects become maps with string keys, integers `int`
/// (unsigned ones beyond `int`'s range `uint`), other numbers `double`.
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<Key, cel::Value> =
                m.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect();
            cel::Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// A CEL map of string keys to values (the shape of `variables` and `request`).
pub fn map_of(entries: Vec<(String, cel::Value)>) -> cel::Value {
    let map: HashMap<Key, cel::Value> =
        entries.into_iter().map(|(k, v)| (Key::String(Arc::new(k)), v)).collect();
    cel::Value::Map(Map { map: Arc::new(map) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expr: &str, vars: &[(&str, Value)]) -> Result<cel::Value, CelError> {
        let mut a = Activation::default();
        for (n, v) in vars {
            a.bind_json(n, v);
        }
        Program::compile(expr)?.eval(&a)
    }

    #[test]
    fn json_objects_bind_as_maps_with_fields() {
        let obj = json!({"spec": {"replicas": 3, "name": "web", "tags": ["a", "b"], "ratio": 0.5}});
        let vars = [("object", obj)];
        assert_eq!(eval("object.spec.replicas + 1", &vars), Ok(cel::Value::Int(4)));
        assert_eq!(eval("object.spec.name.startsWith('w')", &vars), Ok(cel::Value::Bool(true)));
        assert_eq!(eval("size(object.spec.tags)", &vars), Ok(cel::Value::Int(2)));
        assert_eq!(
            eval("object.spec.tags.all(t, t.size() == 1)", &vars),
            Ok(cel::Value::Bool(true))
        );
        assert_eq!(eval("object.spec.ratio < 1.0", &vars), Ok(cel::Value::Bool(true)));
        assert_eq!(eval("has(object.spec.missing)", &vars), Ok(cel::Value::Bool(false)));
        assert!(eval("object.spec.missing > 1", &vars).is_err(), "a missing field is an error");
    }

    #[test]
    fn strings_and_conversions_of_the_kubernetes_environment() {
        let vars = [("params", json!({"data": {"max": "5"}}))];
        assert_eq!(eval("int(params.data.max) == 5", &vars), Ok(cel::Value::Bool(true)));
        assert_eq!(eval("'Web'.lowerAscii()", &[]), Ok(cel::Value::from("web")));
        assert_eq!(eval("'a-b'.split('-').size()", &[]), Ok(cel::Value::Int(2)));
        assert_eq!(eval("'abc'.matches('^a.c$')", &[]), Ok(cel::Value::Bool(true)));
        assert_eq!(eval("string(3) + 'x'", &[]), Ok(cel::Value::from("3x")));
    }

    #[test]
    fn results_of_the_wrong_type_and_bad_syntax_are_errors() {
        let p = Program::compile("1 + 1").expect("compiles");
        assert!(matches!(p.eval_bool(&Activation::default()), Err(CelError::Type { .. })));
        assert!(matches!(Program::compile("1 +"), Err(CelError::Compile(_))));
        let p = Program::compile("oldSelf == self").expect("compiles");
        assert!(p.references("oldSelf") && !p.references("object"));
    }
}
