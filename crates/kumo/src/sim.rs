//! `kumo sim`: hollow nodes against a running control plane (the `kumo-sim` crate), with the
//! flags that shape them and a trigger for node failure at scale (SIGUSR1 or `--fail-after`).

use anyhow::Context;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Kubeconfig of the control plane (e.g. `<data-dir>/kubeconfig.yaml` of `kumo up`).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// How many hollow nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Node names are `<prefix><index>`.
    #[arg(long, default_value = "hollow-")]
    node_prefix: String,
    /// CPU capacity of each node.
    #[arg(long, default_value = "32")]
    cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "128Gi")]
    memory: String,
    /// Pods each node takes.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Extra node label `key=value` (repeatable).
    #[arg(long = "node-label")]
    node_labels: Vec<String>,
    /// Node taint `key[=value]:Effect` (repeatable).
    #[arg(long = "taint")]
    taints: Vec<String>,
    /// Spread the nodes over this many zones (`topology.kubernetes.io/zone`); 0 for none.
    #[arg(long, default_value_t = 3)]
    zones: usize,
    /// Seconds from a pod's binding to its Running and Ready status.
    #[arg(long, default_value_t = 0.5)]
    startup_delay: f64,
    /// Seconds a Job pod runs unless annotated `sim.kumo.dev/run-seconds`.
    #[arg(long, default_value_t = 10.0)]
    job_duration: f64,
    /// Share of completing pods that fail (exit code 1), 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Longest seconds a graceful deletion takes (the pod's grace period if shorter).
    #[arg(long, default_value_t = 0.2)]
    delete_delay: f64,
    /// Seconds between two Lease renewals of one node (renewals of all nodes are spread
    /// evenly over this period).
    #[arg(long, default_value_t = 10.0)]
    lease_period: f64,
    /// API requests in flight at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seed of the failure draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of the nodes that stop (no Lease renewals, pods abandoned) on SIGUSR1 or after
    /// `--fail-after`.
    #[arg(long, default_value_t = 0.1)]
    fail_fraction: f64,
    /// Stop `--fail-fraction` of the nodes this many seconds after registration.
    #[arg(long)]
    fail_after: Option<f64>,
}

fn secs(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("--{flag}: {value}"))
}

fn config(args: &SimArgs) -> anyhow::Result<kumo_sim::hollow::HollowConfig> {
    let mut labels = Vec::new();
    for l in &args.node_labels {
        let (k, v) =
            l.split_once('=').with_context(|| format!("--node-label {l:?}: expected key=value"))?;
        labels.push((k.to_string(), v.to_string()));
    }
    let taints = args
        .taints
        .iter()
        .map(|t| t.parse().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !(0.0..=1.0).contains(&args.fail_fraction) {
        anyhow::bail!("--fail-fraction {}: expected 0 to 1", args.fail_fraction);
    }
    Ok(kumo_sim::hollow::HollowConfig {
        nodes: args.nodes,
        prefix: args.node_prefix.clone(),
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        max_pods: args.max_pods,
        labels,
        taints,
        zones: args.zones,
        startup_delay: secs(args.startup_delay, "startup-delay")?,
        job_duration: secs(args.job_duration, "job-duration")?,
        failure_rate: args.failure_rate,
        delete_delay: secs(args.delete_delay, "delete-delay")?,
        lease_period: secs(args.lease_period, "lease-period")?,
        concurrency: args.concurrency,
        seed: args.seed,
    })
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    let fail_after = args.fail_after.map(|s| secs(s, "fail-after")).transpose()?;
    let fleet = kumo_sim::hollow::Fleet::new(config)?;
    let client = crate::client_from(&args.kubeconfig)
        .await
        .with_context(|| format!("--kubeconfig {}", args.kubeconfig.display()))?;
    let started = std::time::Instant::now();
    let (registered_tx, registered_rx) = tokio::sync::oneshot::channel::<()>();
    let hollow = kumo_sim::hollow::run(
        client,
        fleet.clone(),
        move || {
            let _ = registered_tx.send(());
        },
        crate::wait_for_signal(),
    );
    let to_stop = (fleet.nodes.len() as f64 * args.fail_fraction).round() as usize;
    let control = {
        let fleet = fleet.clone();
        async move {
            if registered_rx.await.is_err() {
                return;
            }
            // One line a script can wait for.
            println!(
                "kumo sim: {} hollow nodes registered ({} ms)",
                fleet.nodes.len(),
                started.elapsed().as_millis()
            );
            let mut usr1 =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
            let mut fail_at = fail_after.map(|d| tokio::time::Instant::now() + d);
            let mut report = tokio::time::interval(Duration::from_secs(10));
            loop {
                let stop = tokio::select! {
                    Some(_) = async { usr1.as_mut()?.recv().await } => true,
                    _ = tokio::time::sleep_until(fail_at.unwrap_or_else(tokio::time::Instant::now)), if fail_at.is_some() => {
                        // One timed failure per run.
                        fail_at = None;
                        true
                    }
                    _ = report.tick() => false,
                };
                if stop {
                    let names = fleet.stop_nodes(to_stop);
                    println!(
                        "kumo sim: stopped {} nodes ({} .. {}); {} alive",
                        names.len(),
                        names.first().map(String::as_str).unwrap_or("-"),
                        names.last().map(String::as_str).unwrap_or("-"),
                        fleet.alive_count()
                    );
                    continue;
                }
                let s = &fleet.stats;
                eprintln!(
                    "kumo sim: started {} completed {} deleted {} renewals {} errors {}",
                    s.started.load(Ordering::Relaxed),
                    s.completed.load(Ordering::Relaxed),
                    s.deleted.load(Ordering::Relaxed),
                    s.renewals.load(Ordering::Relaxed),
                    s.errors.load(Ordering::Relaxed)
                );
            }
        }
    };
    tokio::select! {
        result = hollow => result?,
        _ = control => {}
    }
    eprintln!("kumo sim: stopping");
    Ok(())
}
