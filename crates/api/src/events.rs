//! # events.k8s.io/v1 Events: the core Event under other field names
//!
//! Kubernetes stores one kind of Event and serves it twice: as core `v1` Event and as
//! `events.k8s.io/v1` Event, whose fields are renamed (`involvedObject` → `regarding`,
//! `message` → `note`, `source` → `deprecatedSource`, …). kumo does the same: events are
//! stored in the core shape, and [`to_events_v1`] / [`to_core`] convert at the edges, so an
//! event written through either API is read through both.

use serde_json::{Map, Value};

/// (core name, events.k8s.io/v1 name) of every renamed field.
const RENAMED: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: &Value, from_core: bool, api_version: &str) -> Value {
    let Some(m) = obj.as_object() else { return obj.clone() };
    let mut out = Map::new();
    for (k, v) in m {
        let renamed = RENAMED.iter().find_map(|(core, v1)| {
            let (from, to) = if from_core { (core, v1) } else { (v1, core) };
            (k == from).then_some(*to)
        });
        out.insert(renamed.unwrap_or(k).to_string(), v.clone());
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    Value::Object(out)
}

/// A stored (core) Event as `events.k8s.io/v1` shows it.
pub fn to_events_v1(core: &Value) -> Value {
    rename(core, true, "events.k8s.io/v1")
}

/// An `events.k8s.io/v1` Event in the core shape it is stored in.
pub fn to_core(v1: &Value) -> Value {
    rename(v1, false, "v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_renamed_both_ways() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "Started",
            "count": 2, "reportingComponent": "kubelet", "reportingInstance": "n1"});
        let v1 = to_events_v1(&core);
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["note"], "hi");
        assert_eq!(v1["deprecatedCount"], 2);
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["reason"], "Started");
        assert!(v1.get("message").is_none());
        assert_eq!(to_core(&v1), core);
    }
}
