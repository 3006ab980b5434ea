//! # Printers: the columns `kubectl get` shows
//!
//! kubectl asks the server for a `Table` (`Accept: application/json;as=Table;g=meta.k8s.io`)
//! and prints what comes back. This room produces the column definitions ([`columns`]) and
//! the cells of one object ([`cells`]) exactly as Kubernetes v1.33's server-side printers do
//! (`pkg/printers/internalversion`): the same column names, order, types and priorities
//! (priority 1 columns are the ones `-o wide` adds) and the same cell text — the pod STATUS
//! logic, `RESTARTS` like `3 (5m ago)`, `PORT(S)` like `80:30080/TCP`, ages like `3m20s`.
//! The server always prints the wide cells; kubectl hides them unless `-o wide`.
//!
//! Kinds upstream prints with the default table convertor (Role, ClusterRole, LimitRange,
//! CustomResourceDefinition) show `NAME` and `CREATED AT` (an RFC 3339 time). Custom
//! resources show `NAME` plus their CRD's `additionalPrinterColumns` (or `AGE` when there are
//! none); their `date` columns are turned into ages by the server, as apiextensions does.
//!
//! Layout: `columns` holds the per-kind column definitions, `builtin` the per-kind cells
//! (with `format` for the shared formatting and the more involved rows), `pod` the pod row, `custom` the
//! custom resource columns and their JSONPath evaluation.

mod builtin;
mod cluster;
mod columns;
mod custom;
mod format;
mod pod;

use crate::resources::Resource;
use crate::validation::json::str_at;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// One column of a server-side `Table` (`metav1.TableColumnDefinition`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Column {
    /// Column title (kubectl upper-cases it: `Nominated Node` → `NOMINATED NODE`).
    pub name: String,
    /// OpenAPI type of the cells: `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `name` for the column holding the object's name, else empty.
    pub format: String,
    /// What the column shows.
    pub description: String,
    /// 0 for the default columns, more for those only `-o wide` shows.
    pub priority: i32,
}

/// The columns of `resource`'s table, the name column included.
pub fn columns(resource: &Resource) -> Vec<Column> {
    if is_custom(resource) {
        return custom::columns(resource);
    }
    builtin::columns(&resource.kind)
}

/// The cells of one object's row, in the order of [`columns`] (wide cells included).
/// `now` is the time ages are measured against.
pub fn cells(resource: &Resource, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut out = if is_custom(resource) {
        custom::cells(resource, obj, now)
    } else {
        builtin::cells(&resource.kind, obj, now)
    };
    // Never hand out a row that disagrees with the header.
    let n = columns(resource).len();
    out.resize(n, Value::Null);
    out
}

fn is_custom(resource: &Resource) -> bool {
    resource.crd_schema.is_some() || resource.definition.is_none()
}

/// A duration as apimachinery's `duration.HumanDuration` prints it: about 2-3 significant
/// figures (`45s`, `3m20s`, `15m`, `5h3m`, `2d3h`, `400d`, `3y20d`), `0s` for tiny negative
/// skews, `<invalid>` for durations below -1s.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{}h", hours / 24, h) };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses an RFC 3339 timestamp (what `metav1.Time` serializes to).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// The age of a timestamp (upstream's `translateTimestampSince`): `<unknown>` when unset.
pub(crate) fn since(ts: Option<&str>, now: DateTime<Utc>) -> String {
    match ts.filter(|s| !s.is_empty()).and_then(parse_time) {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".into(),
    }
}

/// The object's age (`metadata.creationTimestamp`).
pub(crate) fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    Value::String(since(str_at(obj, &["metadata", "creationTimestamp"]), now))
}

/// The object's name.
pub(crate) fn name(obj: &Value) -> Value {
    Value::String(str_at(obj, &["metadata", "name"]).unwrap_or("").to_string())
}

/// The description of a field from the built-in schema definitions (what upstream takes from
/// the Go types' `SwaggerDoc`).
pub(crate) fn doc(definition: &str, property: &str) -> String {
    let full = if definition.starts_with("io.k8s.") {
        definition.to_string()
    } else {
        format!("io.k8s.api.{definition}")
    };
    crate::schema::Definitions::builtin()
        .get(&full)
        .and_then(|d| d.raw().get("properties"))
        .and_then(|p| p.get(property))
        .and_then(|p| p.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn human_duration_matches_upstream() {
        let cases = [
            (Duration::seconds(-5), "<invalid>"),
            (Duration::milliseconds(-1500), "0s"),
            (Duration::seconds(0), "0s"),
            (Duration::seconds(5), "5s"),
            (Duration::seconds(119), "119s"),
            (Duration::seconds(120), "2m"),
            (Duration::seconds(200), "3m20s"),
            (Duration::minutes(10), "10m"),
            (Duration::minutes(179), "179m"),
            (Duration::minutes(180), "3h"),
            (Duration::minutes(303), "5h3m"),
            (Duration::hours(8), "8h"),
            (Duration::hours(47), "47h"),
            (Duration::hours(51), "2d3h"),
            (Duration::hours(72), "3d"),
            (Duration::days(8), "8d"),
            (Duration::days(729), "729d"),
            (Duration::days(730), "2y"),
            (Duration::days(750), "2y20d"),
            (Duration::days(365 * 8), "8y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }
}
