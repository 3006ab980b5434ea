//! Events about claims, written as `persistentvolume-controller`. The binder looks at every
//! claim every few seconds; a repeat of the same reason and message bumps the first event's
//! `count` (at most every [`REPEAT`]) instead of creating another, as client-go's recorder
//! aggregates, so `kubectl describe pvc` shows `(x5 over 1m)`.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shortest time between two writes of the same event.
pub const REPEAT: Duration = Duration::from_secs(15);

/// Claim uid, reason and message: what makes two events the same.
type Key = (String, String, String);

struct Seen {
    name: String,
    count: i32,
    at: Instant,
}

/// Writes claim events; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    seen: Arc<Mutex<HashMap<Key, Seen>>>,
}

impl Recorder {
    /// A recorder writing through `client`.
    pub fn new(client: kube::Client) -> Recorder {
        Recorder { client, seen: Arc::default() }
    }

    /// Record `reason`/`message` about `claim` (a Warning or a Normal event).
    pub fn claim(&self, claim: &Value, warning: bool, reason: &str, message: &str) {
        let str_at = |p: &str| claim.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        let (ns, name, uid) =
            (str_at("/metadata/namespace"), str_at("/metadata/name"), str_at("/metadata/uid"));
        let key = (uid.clone(), reason.to_string(), message.to_string());
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let previous = {
            let Ok(mut seen) = self.seen.lock() else { return };
            match seen.get_mut(&key) {
                Some(s) if s.at.elapsed() < REPEAT => return,
                Some(s) => {
                    s.count += 1;
                    s.at = Instant::now();
                    Some((s.name.clone(), s.count))
                }
                None => {
                    let event_name = format!("{name}.{:x}", now.0.as_nanosecond());
                    seen.insert(key, Seen { name: event_name, count: 1, at: Instant::now() });
                    None
                }
            }
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", now.0.as_nanosecond())),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                name: Some(name),
                namespace: Some(ns),
                uid: Some(uid),
                resource_version: claim
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            source: Some(EventSource { component: Some(super::COMPONENT.into()), host: None }),
            reporting_component: Some(super::COMPONENT.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            ..Default::default()
        };
        let seen = self.seen.clone();
        tokio::spawn(async move {
            let result = match previous {
                Some((existing, count)) => {
                    let patch = json!({"count": count, "lastTimestamp": now});
                    match api.patch(&existing, &PatchParams::default(), &Patch::Merge(&patch)).await
                    {
                        Err(kube::Error::Api(e)) if e.code == 404 => {
                            // Expired or deleted: start a new one under this name.
                            let mut fresh = event;
                            fresh.metadata.name = Some(existing);
                            api.create(&PostParams::default(), &fresh).await.map(|_| ())
                        }
                        other => other.map(|_| ()),
                    }
                }
                None => api.create(&PostParams::default(), &event).await.map(|_| ()),
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "claim event not written");
                if let Ok(mut seen) = seen.lock() {
                    seen.retain(|_, s| s.at.elapsed() < REPEAT);
                }
            }
        });
    }
}
