//! Small helpers over objects as JSON: metadata access, timestamps, names, encoding to and from
//! the store (the stored bytes never carry `resourceVersion`; it is the store's revision).

use kumo_store::KeyValue;
use serde_json::{Map, Value};

/// `metadata.name`.
pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

/// `metadata.namespace`.
pub fn namespace(obj: &Value) -> Option<&str> {
    obj["metadata"]["namespace"].as_str()
}

/// `metadata.labels` as a map.
pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    obj["metadata"]["labels"].as_object()
}

/// `metadata`, created if missing or not an object.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let meta = &mut obj["metadata"];
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("metadata was made an object above"),
    }
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// The current time as Kubernetes writes it (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Decode a stored value and stamp its revision as `resourceVersion`.
pub fn from_kv(kv: &KeyValue) -> Option<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value).ok()?;
    set_resource_version(&mut obj, kv.mod_revision);
    Some(obj)
}

/// The labels of a stored object, read without decoding the rest of it: a list with a label
/// selector rejects most objects on this alone, at a fraction of a whole decode's cost.
/// `None` when the bytes are not a JSON object (the caller decodes them and reports that).
pub fn peek_labels(bytes: &[u8]) -> Option<Option<Map<String, Value>>> {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        metadata: PeekMeta,
    }
    #[derive(serde::Deserialize, Default)]
    struct PeekMeta {
        #[serde(default)]
        labels: Option<Map<String, Value>>,
    }
    serde_json::from_slice::<Peek>(bytes).ok().map(|p| p.metadata.labels)
}

/// Set `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, rev: i64) {
    meta_mut(obj).insert("resourceVersion".into(), Value::String(rev.to_string()));
}

/// Encode for the store: the object without `resourceVersion` (skipped while writing, so no
/// copy of the object is made on every write).
pub fn to_bytes(obj: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&WithoutResourceVersion(obj)).unwrap_or_default();
    // These bytes live on in the store's watch history, whose byte budget counts their
    // length; the buffer grew by doubling, so up to half of it would be spare capacity.
    bytes.shrink_to_fit();
    bytes
}

struct WithoutResourceVersion<'a>(&'a Value);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(top) = self.0 else { return self.0.serialize(s) };
        let mut map = s.serialize_map(Some(top.len()))?;
        for (k, v) in top {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    let kept = meta.iter().filter(|(mk, _)| *mk != "resourceVersion");
                    map.serialize_entry(k, &MapOf(kept))?;
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

/// Serializes the entries an iterator yields as a JSON object.
struct MapOf<I>(I);

impl<'a, I: Iterator<Item = (&'a String, &'a Value)> + Clone> serde::Serialize for MapOf<I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.clone())
    }
}

/// A random suffix as `generateName` uses (consonants and digits that spell no words).
pub fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_labels_reads_only_the_labels() {
        let with = br#"{"kind":"Pod","spec":{"containers":[{"name":"a"}]},"metadata":{"name":"p","labels":{"app":"web"}}}"#;
        let labels = peek_labels(with).expect("an object").expect("labels");
        assert_eq!(labels.get("app"), Some(&Value::String("web".into())));
        assert_eq!(peek_labels(br#"{"metadata":{"name":"p"}}"#), Some(None));
        assert_eq!(peek_labels(br#"{"kind":"Pod"}"#), Some(None));
        assert_eq!(peek_labels(b"not json"), None);
    }

    #[test]
    fn to_bytes_leaves_out_the_resource_version_only() {
        let obj = serde_json::json!({"kind": "Pod", "metadata": {"name": "p",
            "resourceVersion": "7", "labels": {"a": "b"}}, "spec": {"x": [1, 2]}});
        let back: Value = serde_json::from_slice(&to_bytes(&obj)).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"kind": "Pod", "metadata": {"name": "p",
            "labels": {"a": "b"}}, "spec": {"x": [1, 2]}})
        );
        assert_eq!(to_bytes(&serde_json::json!([1])), b"[1]");
    }
}
