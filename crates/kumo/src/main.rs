//! The `kumo` binary: `kumo up` runs a single-node control plane (API server over the embedded
//! store, and the workload controllers as its clients) in one process. Later commands
//! (`server`, `agent`, `sim`) join as their rooms land.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(name = "kumo", version, about = "A cloud-native microservice platform in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a single-node cluster: API server and embedded store.
    Up(UpArgs),
}

#[derive(clap::Args, Debug)]
struct UpArgs {
    /// Where the store, credentials and kubeconfig live.
    #[arg(long, default_value = ".kumo")]
    data_dir: PathBuf,
    /// Address of the HTTPS API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    api_addr: SocketAddr,
    /// Extra host names or IPs for the API server's certificate (repeatable).
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// Scheduler configuration (YAML, in the spirit of KubeSchedulerConfiguration: profiles,
    /// scoring strategy spread/binpack, weights, percentageOfNodesToScore).
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// How long a node may go without renewing its Lease before it is marked NotReady/Unknown
    /// and tainted unreachable, in seconds.
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// How long pods stay on an unreachable node when they do not tolerate it themselves,
    /// in seconds.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: u64,
    /// Watch history kept in memory, in events (older resourceVersions get 410 Gone).
    #[arg(long, default_value_t = 50_000)]
    watch_history: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUMO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Up(args) => runtime.block_on(up(args)),
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Configuration is read and checked before anything starts.
    let profiles = match &args.scheduler_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read scheduler config {}", path.display()))?;
            kumo_scheduler::profile::parse_config(&text)
                .with_context(|| format!("scheduler config {}", path.display()))?
        }
        None => vec![kumo_scheduler::profile::Profile::default()],
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let store_path = data_dir.join("store.redb");
    let options = kumo_store::StoreOptions { history: args.watch_history, ..Default::default() };
    let store = kumo_store::EmbeddedStore::open_with(&store_path, options)
        .with_context(|| format!("cannot open the store {}", store_path.display()))?;
    let store: Arc<dyn kumo_store::Store> = Arc::new(store);
    let config = kumo_apiserver::Config {
        data_dir: data_dir.clone(),
        addr: args.api_addr,
        hosts: args.tls_san,
    };
    let server = kumo_apiserver::start(config, store.clone()).await?;
    let kubeconfig = server.kubeconfig.display().to_string();
    // The controllers and the scheduler are API clients like any other, over loopback TLS
    // with the admin identity.
    let controllers = kumo_controllers::Config {
        node_lifecycle: kumo_controllers::nodelifecycle::NodeLifecycleConfig {
            grace: std::time::Duration::from_secs(args.node_monitor_grace_period),
            eviction_timeout: std::time::Duration::from_secs(
                args.default_unreachable_toleration_seconds,
            ),
        },
    };
    let (stop_clients, clients) = start_clients(&server.kubeconfig, profiles, controllers).await?;
    // One line a script can wait for, then what a person needs to know.
    println!("kumo is ready at https://{} ({} ms)", server.addr, started.elapsed().as_millis());
    println!("  export KUBECONFIG={kubeconfig}");
    println!("  kubectl get namespaces");
    println!("Press Ctrl-C to stop; data stays in {}", data_dir.display());
    wait_for_signal().await;
    eprintln!("kumo: shutting down");
    let _ = stop_clients.send(true);
    for task in clients {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    server.shutdown().await;
    drop(store);
    Ok(())
}

async fn start_clients(
    kubeconfig: &std::path::Path,
    profiles: Vec<kumo_scheduler::profile::Profile>,
    controllers: kumo_controllers::Config,
) -> anyhow::Result<(tokio::sync::watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let controllers =
        tokio::spawn(kumo_controllers::run_with(client.clone(), controllers, stopped(rx.clone())));
    let scheduler = tokio::spawn(kumo_scheduler::runner::run(client, profiles, stopped(rx)));
    Ok((tx, vec![controllers, scheduler]))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
