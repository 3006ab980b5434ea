//! The hollow nodes' pods: one watch of every bound pod, one timer heap, one request pool.
//!
//! A pod bound to a live hollow node goes `Running` and `Ready` after the start-up delay; a
//! pod that completes (owned by a Job, or annotated with [`crate::RUN_SECONDS_ANNOTATION`])
//! goes `Succeeded` after its duration — or `Failed` (exit code 1) at the failure rate, or is
//! restarted in place under `restartPolicy: OnFailure` — and a pod being deleted is removed
//! from the API (`gracePeriodSeconds: 0`, uid precondition) after the shorter of its grace
//! period and the configured deletion delay, as the agent does once its containers stopped.
//! Pods of stopped nodes are left alone.
//!
//! The pod type is a small local view ([`PodView`]): only the fields a node needs are
//! decoded from each watch event, which keeps one watch of 300,000 pods cheap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::object::Object;
use kube::runtime::{watcher, WatchStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Fleet;
use crate::RUN_SECONDS_ANNOTATION;

/// The part of a pod's spec a hollow node reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView {
    /// The node the pod is bound to.
    #[serde(default)]
    pub node_name: Option<String>,
    /// `Always`, `OnFailure` or `Never`.
    #[serde(default)]
    pub restart_policy: Option<String>,
    /// Containers: names and images.
    #[serde(default)]
    pub containers: Vec<ContainerView>,
}

/// A container's name and image.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerView {
    /// Container name.
    pub name: String,
    /// Image.
    #[serde(default)]
    pub image: Option<String>,
}

/// The part of a pod's status a hollow node reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatusView {
    /// The phase.
    #[serde(default)]
    pub phase: Option<String>,
    /// Conditions, kept whole so others' conditions (PodScheduled…) are written back as is.
    #[serde(default)]
    pub conditions: Vec<Value>,
}

/// A pod as a hollow node sees it.
pub type PodView = Object<SpecView, StatusView>;

/// What a hollow node does to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Report it Running and Ready.
    Start,
    /// Report it finished: `Succeeded`, or `Failed` when `failed`; with `OnFailure`, a failure
    /// restarts the container instead (`restarts` so far).
    Finish {
        /// Did it fail?
        failed: bool,
        /// Restarts so far.
        restarts: u32,
    },
    /// Finish its deletion.
    Delete,
}

/// Where a pod is in its hollow life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Starting,
    Running,
    Done,
    Deleting,
}

struct Due {
    at: Instant,
    seq: u64,
    step: Step,
    pod: Arc<PodView>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Outcome {
    step: Step,
    pod: Arc<PodView>,
    /// Ok, or whether a retry may help.
    result: Result<(), bool>,
}

fn uid(pod: &PodView) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// How long `pod` runs before it completes, if it completes at all.
pub fn run_time(pod: &PodView, default_job: Duration) -> Option<Duration> {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RUN_SECONDS_ANNOTATION))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let job = pod
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "Job" && r.controller == Some(true)));
    annotated.or(job.then_some(default_job))
}

fn now_secs() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The pod's conditions with ours (`mine`) replacing those of the same types.
fn conditions(pod: &PodView, mine: Vec<Value>) -> Vec<Value> {
    let types: Vec<String> =
        mine.iter().filter_map(|c| c["type"].as_str().map(String::from)).collect();
    let mut all = mine;
    for c in pod.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default() {
        if !c["type"].as_str().is_some_and(|t| types.iter().any(|m| m == t)) {
            all.push(c.clone());
        }
    }
    all
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, now: &str) -> Value {
    let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" },
                       "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// The status of `pod` running on a node at `ip`, its containers restarted `restarts` times.
pub fn running_status(pod: &PodView, ip: &str, restarts: u32) -> Value {
    let now = now_secs();
    let containers: Vec<Value> = pod
        .spec
        .containers
        .iter()
        .map(|c| {
            let mut s = json!({
                "name": c.name, "image": c.image, "imageID": "",
                "containerID": format!("sim://{}/{}", uid(pod), c.name),
                "ready": true, "started": true, "restartCount": restarts,
                "state": {"running": {"startedAt": now}},
            });
            if restarts > 0 {
                s["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error",
                                        "startedAt": now, "finishedAt": now}});
            }
            s
        })
        .collect();
    let mine = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"]
        .iter()
        .map(|t| condition(t, true, None, &now))
        .collect();
    json!({
        "phase": "Running",
        "conditions": conditions(pod, mine),
        "hostIP": ip, "hostIPs": [{"ip": ip}], "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": now,
        "containerStatuses": containers,
    })
}

/// The status of `pod` whose containers all exited (code 1 when `failed`).
pub fn finished_status(pod: &PodView, ip: &str, failed: bool, restarts: u32) -> Value {
    let now = now_secs();
    let (code, reason) = if failed { (1, "Error") } else { (0, "Completed") };
    let containers: Vec<Value> = pod
        .spec
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image, "imageID": "",
                "containerID": format!("sim://{}/{}", uid(pod), c.name),
                "ready": false, "started": false, "restartCount": restarts,
                "state": {"terminated": {"exitCode": code, "reason": reason,
                                         "startedAt": now, "finishedAt": now}},
            })
        })
        .collect();
    let mine = vec![
        condition("PodReadyToStartContainers", false, None, &now),
        condition("Initialized", true, Some("PodCompleted"), &now),
        condition("Ready", false, Some("PodCompleted"), &now),
        condition("ContainersReady", false, Some("PodCompleted"), &now),
    ];
    json!({
        "phase": if failed { "Failed" } else { "Succeeded" },
        "conditions": conditions(pod, mine),
        "hostIP": ip, "hostIPs": [{"ip": ip}], "podIP": ip, "podIPs": [{"ip": ip}],
        "containerStatuses": containers,
    })
}

/// The pods' state machine and timers; [`run`] feeds it.
struct Lifecycle {
    fleet: Arc<Fleet>,
    stages: HashMap<String, Stage>,
    heap: BinaryHeap<Reverse<Due>>,
    seq: u64,
    rng: StdRng,
}

impl Lifecycle {
    fn at(&mut self, after: Duration, step: Step, pod: Arc<PodView>) {
        self.seq += 1;
        self.heap.push(Reverse(Due { at: Instant::now() + after, seq: self.seq, step, pod }));
    }

    fn finish_later(&mut self, pod: Arc<PodView>, restarts: u32) {
        if let Some(run) = run_time(&pod, self.fleet.config.job_duration) {
            let failed = self.rng.random_bool(self.fleet.config.failure_rate);
            self.at(run, Step::Finish { failed, restarts }, pod);
        }
    }

    /// A pod was added or changed.
    fn on_pod(&mut self, pod: PodView) {
        let node = pod.spec.node_name.as_deref().unwrap_or("");
        if !self.fleet.is_alive(node) {
            return;
        }
        let id = uid(&pod).to_string();
        let stage = self.stages.get(&id).copied();
        let pod = Arc::new(pod);
        if pod.metadata.deletion_timestamp.is_some() {
            if stage != Some(Stage::Deleting) {
                self.stages.insert(id, Stage::Deleting);
                let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0);
                let delay = Duration::from_secs(grace as u64).min(self.fleet.config.delete_delay);
                self.at(delay, Step::Delete, pod);
            }
            return;
        }
        if stage.is_some() {
            return;
        }
        match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded" | "Failed") => {
                self.stages.insert(id, Stage::Done);
            }
            // Running before this simulator saw it (a restart of the simulator): adopt it.
            Some("Running") => {
                self.stages.insert(id, Stage::Running);
                self.finish_later(pod, 0);
            }
            _ => {
                self.stages.insert(id, Stage::Starting);
                self.at(self.fleet.config.startup_delay, Step::Start, pod);
            }
        }
    }

    /// Should this due step still run?
    fn still_wanted(&self, due: &Due) -> bool {
        let stage = self.stages.get(uid(&due.pod)).copied();
        let alive = self.fleet.is_alive(due.pod.spec.node_name.as_deref().unwrap_or(""));
        alive
            && match due.step {
                Step::Start => stage == Some(Stage::Starting),
                Step::Finish { .. } => stage == Some(Stage::Running),
                Step::Delete => stage == Some(Stage::Deleting),
            }
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        let id = uid(&outcome.pod).to_string();
        match outcome.result {
            Ok(()) => match outcome.step {
                Step::Start => {
                    if self.stages.get(&id) == Some(&Stage::Starting) {
                        self.stages.insert(id, Stage::Running);
                        self.fleet.stats.started.fetch_add(1, Ordering::Relaxed);
                        self.finish_later(outcome.pod, 0);
                    }
                }
                Step::Finish { failed, restarts } => {
                    let restarted =
                        failed && outcome.pod.spec.restart_policy.as_deref() == Some("OnFailure");
                    if restarted {
                        self.finish_later(outcome.pod, restarts + 1);
                    } else if self.stages.get(&id) == Some(&Stage::Running) {
                        self.stages.insert(id, Stage::Done);
                        self.fleet.stats.completed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Step::Delete => {
                    self.fleet.stats.deleted.fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(retry) => {
                self.fleet.stats.errors.fetch_add(1, Ordering::Relaxed);
                if retry {
                    self.at(Duration::from_secs(1), outcome.step, outcome.pod);
                }
            }
        }
    }
}

/// Sends one step's request.
async fn perform(
    client: kube::Client,
    fleet: Arc<Fleet>,
    step: Step,
    pod: Arc<PodView>,
) -> Outcome {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ip = pod
        .spec
        .node_name
        .as_deref()
        .and_then(|n| fleet.node(n))
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    let api: Api<PodView> = Api::namespaced_with(client, &ns, &ApiResource::erase::<Pod>(&()));
    let patch = |status: Value| json!({"status": status});
    let result = match step {
        Step::Start => {
            let body = patch(running_status(&pod, &ip, 0));
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)).await.map(|_| ())
        }
        Step::Finish { failed, restarts } => {
            let body = if failed && pod.spec.restart_policy.as_deref() == Some("OnFailure") {
                patch(running_status(&pod, &ip, restarts + 1))
            } else {
                patch(finished_status(&pod, &ip, failed, restarts))
            };
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)).await.map(|_| ())
        }
        Step::Delete => {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            api.delete(&name, &dp).await.map(|_| ())
        }
    };
    let result = match result {
        Ok(()) => Ok(()),
        // Gone already, or replaced by a pod of the same name: nothing left to do.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "hollow pod request failed");
            Err(true)
        }
    };
    Outcome { step, pod, result }
}

/// Plays the node agent's part for every pod bound to a live node of `fleet`, forever.
pub async fn run(client: kube::Client, fleet: Arc<Fleet>) {
    let api: Api<PodView> = Api::all_with(client.clone(), &ApiResource::erase::<Pod>(&()));
    let events =
        watcher(api, watcher::Config::default().fields("spec.nodeName!=")).default_backoff();
    tokio::pin!(events);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
    let mut life = Lifecycle {
        rng: StdRng::seed_from_u64(fleet.config.seed),
        fleet: fleet.clone(),
        stages: HashMap::new(),
        heap: BinaryHeap::new(),
        seq: 0,
    };
    let mut ready: VecDeque<Due> = VecDeque::new();
    loop {
        let next = life.heap.peek().map(|Reverse(d)| d.at);
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => life.on_pod(pod),
                Some(Ok(watcher::Event::Delete(pod))) => {
                    life.stages.remove(uid(&pod));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "hollow nodes' pod watch"),
                None => return,
            },
            Some(outcome) = done_rx.recv() => life.on_outcome(outcome),
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
            permit = fleet.pool.clone().acquire_owned(), if !ready.is_empty() => {
                let Ok(permit) = permit else { return };
                if let Some(due) = ready.pop_front() {
                    spawn_step(&client, &fleet, &done_tx, due, permit);
                }
            }
        }
        let now = Instant::now();
        while life.heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(due)) = life.heap.pop() {
                if life.still_wanted(&due) {
                    ready.push_back(due);
                }
            }
        }
        while !ready.is_empty() {
            let Ok(permit) = fleet.pool.clone().try_acquire_owned() else { break };
            if let Some(due) = ready.pop_front() {
                spawn_step(&client, &fleet, &done_tx, due, permit);
            }
        }
    }
}

fn spawn_step(
    client: &kube::Client,
    fleet: &Arc<Fleet>,
    done: &mpsc::UnboundedSender<Outcome>,
    due: Due,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let (client, fleet, done) = (client.clone(), fleet.clone(), done.clone());
    tokio::spawn(async move {
        let outcome = perform(client, fleet, due.step, due.pod).await;
        drop(permit);
        let _ = done.send(outcome);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: Value) -> PodView {
        serde_json::from_value(value).expect("pod view")
    }

    #[test]
    fn job_pods_and_annotated_pods_complete_others_run() {
        let job = pod(json!({"metadata": {"name": "j-1", "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u", "controller": true}]},
            "spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(run_time(&job, Duration::from_secs(7)), Some(Duration::from_secs(7)));
        let annotated =
            pod(json!({"metadata": {"name": "a", "annotations": {RUN_SECONDS_ANNOTATION: "2.5"}},
            "spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(run_time(&annotated, Duration::from_secs(7)), Some(Duration::from_millis(2500)));
        let service =
            pod(json!({"metadata": {"name": "s"}, "spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(run_time(&service, Duration::from_secs(7)), None);
        let bad =
            pod(json!({"metadata": {"name": "b", "annotations": {RUN_SECONDS_ANNOTATION: "-1"}},
            "spec": {"containers": []}}));
        assert_eq!(run_time(&bad, Duration::from_secs(7)), None);
    }

    #[test]
    fn running_status_keeps_pod_scheduled_and_reports_every_container() {
        let p = pod(json!({"metadata": {"name": "p", "uid": "u1"},
            "spec": {"nodeName": "n", "containers": [{"name": "a", "image": "x"}, {"name": "b"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}));
        let s = running_status(&p, "10.0.0.1", 0);
        assert_eq!(s["phase"], "Running");
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert!(types.contains(&"PodScheduled") && types.contains(&"Ready"));
        assert_eq!(s["containerStatuses"].as_array().map(Vec::len), Some(2));
        assert_eq!(s["podIP"], "10.0.0.1");
        let f = finished_status(&p, "10.0.0.1", true, 0);
        assert_eq!(f["phase"], "Failed");
        assert_eq!(f["containerStatuses"][0]["state"]["terminated"]["exitCode"], 1);
        let ready = f["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Ready")
            .cloned()
            .expect("ready");
        assert_eq!(ready["status"], "False");
    }
}
