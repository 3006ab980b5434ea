//! Events about pods, as kubelet reports them (`Pulled`, `Created`, `Started`, `Killing`,
//! `BackOff`, `Unhealthy`, `Failed`, …). One task writes them in order; a repeat of the same
//! reason and message for the same object bumps `count` and `lastTimestamp` of the first
//! event instead of creating another, as client-go's recorder aggregates.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use tokio::sync::mpsc;

/// What an event is about.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// UID of the pod.
    pub uid: String,
    /// `spec.containers{name}` or empty for the pod itself.
    pub field_path: String,
}

struct Item {
    subject: Subject,
    warning: bool,
    reason: String,
    message: String,
}

/// Sends events; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Item>,
}

impl Recorder {
    /// A recorder writing as `kubelet` on `node`; the writer task ends with the last clone.
    pub fn new(client: kube::Client, node: String) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(client, node, rx));
        Recorder { tx }
    }

    /// A `Normal` event.
    pub fn normal(&self, subject: &Subject, reason: &str, message: String) {
        self.send(subject, false, reason, message);
    }

    /// A `Warning` event.
    pub fn warning(&self, subject: &Subject, reason: &str, message: String) {
        self.send(subject, true, reason, message);
    }

    fn send(&self, subject: &Subject, warning: bool, reason: &str, message: String) {
        let _ = self.tx.send(Item {
            subject: subject.clone(),
            warning,
            reason: reason.to_string(),
            message,
        });
    }
}

/// (namespace, uid, field path, reason, message): what makes two events the same.
type Key = (String, String, String, String, String);

async fn write(client: kube::Client, node: String, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut seen: HashMap<Key, (String, i32)> = HashMap::new();
    while let Some(item) = rx.recv().await {
        let s = &item.subject;
        let api: Api<Event> = Api::namespaced(client.clone(), &s.namespace);
        let now = chrono::Utc::now();
        let key = (
            s.namespace.clone(),
            s.uid.clone(),
            s.field_path.clone(),
            item.reason.clone(),
            item.message.clone(),
        );
        if let Some((name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = json!({"count": *count, "lastTimestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
            if api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                continue;
            }
        }
        let name = format!("{}.{:x}", s.name, now.timestamp_nanos_opt().unwrap_or_default());
        let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut involved = json!({"kind": "Pod", "apiVersion": "v1", "namespace": s.namespace,
                                  "name": s.name, "uid": s.uid});
        if !s.field_path.is_empty() {
            involved["fieldPath"] = json!(s.field_path);
        }
        let event = json!({
            "metadata": {"name": name, "namespace": s.namespace},
            "involvedObject": involved,
            "reason": item.reason,
            "message": item.message,
            "type": if item.warning { "Warning" } else { "Normal" },
            "source": {"component": "kubelet", "host": node},
            "reportingComponent": "kubelet",
            "reportingInstance": node,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        });
        let Ok(event) = serde_json::from_value::<Event>(event) else { continue };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if seen.len() > 4096 {
                    seen.clear();
                }
                seen.insert(key, (name, 1));
            }
            Err(e) => {
                tracing::debug!("event {} for pod {}/{}: {e}", item.reason, s.namespace, s.name)
            }
        }
    }
}
