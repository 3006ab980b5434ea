//! A trace-shaped workload: Deployments (long-running services) and Jobs (batch work that
//! finishes), with the shape Reiss et al. report for the Google cluster trace ("Heterogeneity
//! and dynamicity of clouds at scale", SoCC 2012):
//!
//! - **job sizes**: most jobs have one or a few tasks, a few have thousands — a Pareto tail
//!   (α = 1.1), capped so one job never holds more than a fiftieth of the pods;
//! - **durations**: most batch tasks are short, with a heavy tail of long ones — log-normal
//!   (σ = 1.2) around a median, capped; services run until deleted;
//! - **requests**: a wide spread of CPU requests, most of them small — log-normal around
//!   200 millicores (σ = 0.9), 10 m to 4 cores — and a memory/CPU ratio that varies by job
//!   (log-normal around 2 MiB per millicore, σ = 0.6);
//! - **priorities**: three bands as in the trace — production (most services), batch and
//!   free (the lowest, for some batch work) — as PriorityClasses;
//! - **arrivals**: a Poisson process over the arrival window.
//!
//! Everything is drawn from one seeded generator: the same [`WorkloadSpec`] yields the same
//! objects, names and arrival times.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::RUN_SECONDS_ANNOTATION;

/// What to generate.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Pods in total (the last job or service is trimmed to hit it exactly).
    pub pods: usize,
    /// The seed.
    pub seed: u64,
    /// The namespace of every object.
    pub namespace: String,
    /// Share of the pods that belong to services (Deployments), 0..=1.
    pub service_share: f64,
    /// Arrivals are spread over this window (0: all at once).
    pub arrival_window: Duration,
    /// Median run time of a batch task, in seconds.
    pub median_task_seconds: f64,
    /// Longest run time of a batch task, in seconds.
    pub max_task_seconds: f64,
    /// `tolerationSeconds` for the `node.kubernetes.io/unreachable` and `not-ready` taints on
    /// every pod, as users set it to fail over faster than the 300 s default.
    pub toleration_seconds: Option<i64>,
    /// The containers' image (informational for hollow nodes).
    pub image: String,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            pods: 1_000,
            seed: 42,
            namespace: "sim".into(),
            service_share: 0.5,
            arrival_window: Duration::ZERO,
            median_task_seconds: 60.0,
            max_task_seconds: 3_600.0,
            toleration_seconds: None,
            image: "registry.k8s.io/pause:3.10".into(),
        }
    }
}

/// A service or a batch job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Deployment: runs until deleted.
    Service,
    /// A Job: its pods finish.
    Batch,
}

/// One object of the workload and when it arrives.
#[derive(Debug, Clone)]
pub struct Item {
    /// Offset from the start of the run.
    pub at: Duration,
    /// Service or batch.
    pub kind: Kind,
    /// The object's name.
    pub name: String,
    /// Pods it creates (replicas, or completions = parallelism).
    pub pods: usize,
    /// CPU request per pod, millicores.
    pub cpu_millis: u32,
    /// Memory request per pod, MiB.
    pub memory_mib: u32,
    /// The PriorityClass.
    pub priority_class: &'static str,
    /// How long each pod runs (batch only).
    pub run_seconds: Option<f64>,
    /// The Deployment or Job, ready to create.
    pub object: Value,
}

/// The generated workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The PriorityClasses the items refer to (create them first).
    pub priority_classes: Vec<Value>,
    /// Items in arrival order.
    pub items: Vec<Item>,
}

impl Workload {
    /// Pods of all items.
    pub fn total_pods(&self) -> usize {
        self.items.iter().map(|i| i.pods).sum()
    }

    /// Total requests (millicores, MiB) of all pods.
    pub fn total_requests(&self) -> (u64, u64) {
        self.items.iter().fold((0, 0), |(c, m), i| {
            (c + i.cpu_millis as u64 * i.pods as u64, m + i.memory_mib as u64 * i.pods as u64)
        })
    }
}

/// The priority bands: (class, value, description).
pub const PRIORITY_CLASSES: [(&str, i32, &str); 3] = [
    ("sim-production", 1000, "Long-running production services (trace priorities 9-11)."),
    ("sim-batch", 100, "Batch work (trace priorities 2-8)."),
    ("sim-free", 1, "Best-effort batch work, preempted first (trace priorities 0-1)."),
];

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn log_normal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Tasks in a job: Pareto with α = 1.1 and minimum 1, capped.
fn job_size(rng: &mut StdRng, cap: usize) -> usize {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let x = u.powf(-1.0 / 1.1);
    (x.floor() as usize).clamp(1, cap.max(1))
}

/// Generates the workload `spec` describes.
pub fn generate(spec: &WorkloadSpec) -> Workload {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let service_pods = (spec.pods as f64 * spec.service_share.clamp(0.0, 1.0)).round() as usize;
    let cap = (spec.pods / 50).max(10);
    let mut items = Vec::new();
    for (kind, mut budget) in
        [(Kind::Service, service_pods), (Kind::Batch, spec.pods - service_pods)]
    {
        let mut n = 0;
        while budget > 0 {
            n += 1;
            let pods = job_size(&mut rng, cap).min(budget);
            budget -= pods;
            items.push(item(spec, &mut rng, kind, n, pods));
        }
    }
    // Arrival order is a seeded shuffle of services and jobs; arrival times a Poisson process.
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
    let mean_gap = spec.arrival_window.as_secs_f64() / items.len().max(1) as f64;
    let mut t: f64 = 0.0;
    for it in &mut items {
        it.at = Duration::from_secs_f64(t.min(spec.arrival_window.as_secs_f64()));
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        t += -u.ln() * mean_gap;
    }
    let priority_classes = PRIORITY_CLASSES
        .iter()
        .map(|(name, value, description)| {
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                   "metadata": {"name": name}, "value": value, "description": description})
        })
        .collect();
    Workload { priority_classes, items }
}

fn item(spec: &WorkloadSpec, rng: &mut StdRng, kind: Kind, n: usize, pods: usize) -> Item {
    let cpu_millis = log_normal(rng, 200.0, 0.9).clamp(10.0, 4_000.0).round() as u32;
    let memory_mib =
        (cpu_millis as f64 * log_normal(rng, 2.0, 0.6)).clamp(16.0, 65_536.0).round() as u32;
    let band: f64 = rng.random();
    let (name, priority_class, run_seconds) = match kind {
        Kind::Service => {
            let class = if band < 0.8 { "sim-production" } else { "sim-batch" };
            (format!("svc-{n:05}"), class, None)
        }
        Kind::Batch => {
            let class = if band < 0.75 { "sim-batch" } else { "sim-free" };
            let run = log_normal(rng, spec.median_task_seconds, 1.2)
                .clamp(1.0, spec.max_task_seconds.max(1.0));
            (format!("job-{n:05}"), class, Some((run * 10.0).round() / 10.0))
        }
    };
    let size = if cpu_millis >= 1_000 || pods >= 100 { "large" } else { "small" };
    let tier = if kind == Kind::Service { "service" } else { "batch" };
    let mut pod_spec = json!({
        "priorityClassName": priority_class,
        "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "main", "image": spec.image,
                        "resources": {"requests": {"cpu": format!("{cpu_millis}m"),
                                                   "memory": format!("{memory_mib}Mi")}}}],
    });
    if let Some(seconds) = spec.toleration_seconds {
        pod_spec["tolerations"] = json!([
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": seconds},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": seconds},
        ]);
    }
    let labels = json!({"app": name, "tier": tier, "size": size});
    let meta = json!({"name": name, "namespace": spec.namespace, "labels": labels});
    let object = match kind {
        Kind::Service => json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": pods, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
        }),
        Kind::Batch => {
            pod_spec["restartPolicy"] = json!("Never");
            let run = run_seconds.unwrap_or_default().to_string();
            json!({
                "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                // Failures are part of the mix: allow a fifth of the tasks to fail before the
                // job as a whole fails.
                "spec": {"completions": pods, "parallelism": pods, "backoffLimit": (pods / 5).max(6),
                         "template": {"metadata": {"labels": labels,
                                                   "annotations": {RUN_SECONDS_ANNOTATION: run}},
                                      "spec": pod_spec}},
            })
        }
    };
    Item {
        at: Duration::ZERO,
        kind,
        name,
        pods,
        cpu_millis,
        memory_mib,
        priority_class,
        run_seconds,
        object,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_workload_other_seed_other_workload() {
        let spec = WorkloadSpec { pods: 5_000, ..Default::default() };
        let a = generate(&spec);
        let b = generate(&spec);
        assert_eq!(a.items.len(), b.items.len());
        for (x, y) in a.items.iter().zip(&b.items) {
            assert_eq!(x.object, y.object);
            assert_eq!(x.at, y.at);
        }
        let c = generate(&WorkloadSpec { seed: 43, ..spec });
        assert_ne!(
            a.items.iter().map(|i| i.pods).collect::<Vec<_>>(),
            c.items.iter().map(|i| i.pods).collect::<Vec<_>>()
        );
    }

    #[test]
    fn exact_pod_count_and_share() {
        let spec = WorkloadSpec { pods: 30_000, service_share: 0.4, ..Default::default() };
        let w = generate(&spec);
        assert_eq!(w.total_pods(), 30_000);
        let services: usize =
            w.items.iter().filter(|i| i.kind == Kind::Service).map(|i| i.pods).sum();
        assert_eq!(services, 12_000);
    }

    #[test]
    fn trace_shape_many_small_few_large() {
        let w = generate(&WorkloadSpec { pods: 100_000, ..Default::default() });
        let n = w.items.len() as f64;
        // Most jobs are tiny, a few are huge.
        let single = w.items.iter().filter(|i| i.pods == 1).count() as f64;
        assert!(single / n > 0.4, "single-task share {}", single / n);
        let biggest = w.items.iter().map(|i| i.pods).max().unwrap_or(0);
        assert!(biggest >= 500, "largest job {biggest}");
        // Most requests are small, with a wide spread.
        let mut cpu: Vec<u32> = w.items.iter().map(|i| i.cpu_millis).collect();
        cpu.sort_unstable();
        let p50 = cpu[cpu.len() / 2];
        let p99 = cpu[cpu.len() * 99 / 100];
        assert!((120..=330).contains(&p50), "cpu p50 {p50}");
        assert!(p99 >= 5 * p50, "cpu p99 {p99} vs p50 {p50}");
        // Batch durations: most short, a heavy tail.
        let mut runs: Vec<f64> = w.items.iter().filter_map(|i| i.run_seconds).collect();
        runs.sort_by(f64::total_cmp);
        let median = runs[runs.len() / 2];
        let p99 = runs[runs.len() * 99 / 100];
        assert!(median < 120.0 && p99 > 8.0 * median, "median {median} p99 {p99}");
        // All three priority bands occur.
        for (class, _, _) in PRIORITY_CLASSES {
            assert!(w.items.iter().any(|i| i.priority_class == class), "{class}");
        }
    }

    #[test]
    fn arrivals_are_ordered_within_the_window() {
        let spec = WorkloadSpec {
            pods: 2_000,
            arrival_window: Duration::from_secs(60),
            ..Default::default()
        };
        let w = generate(&spec);
        assert!(w.items.windows(2).all(|p| p[0].at <= p[1].at));
        assert!(w.items.iter().all(|i| i.at <= Duration::from_secs(60)));
        assert!(w.items.last().is_some_and(|i| i.at > Duration::from_secs(30)));
    }

    #[test]
    fn tolerations_only_when_asked() {
        let plain = generate(&WorkloadSpec { pods: 10, ..Default::default() });
        let spec = &plain.items[0].object["spec"]["template"]["spec"];
        assert!(spec.get("tolerations").is_none());
        let fast =
            generate(&WorkloadSpec { pods: 10, toleration_seconds: Some(5), ..Default::default() });
        let tol = &fast.items[0].object["spec"]["template"]["spec"]["tolerations"];
        assert_eq!(tol[0]["tolerationSeconds"], 5);
        assert_eq!(tol[0]["key"], "node.kubernetes.io/unreachable");
    }
}
