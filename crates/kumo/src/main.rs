//! The `kumo` binary: `kumo up` runs a single-node cluster (API server over the embedded
//! store, the controllers and the scheduler as its clients, and a node agent) in one process;
//! `kumo agent` runs a node agent alone against a server elsewhere; `kumo shim` is what the
//! process runtime starts for each container (not for people to call); `kumo sim` runs hollow
//! nodes for scale tests.

/// mimalloc: the proxy allocates per request, and glibc malloc was a fifth of its CPU time
/// (ADR 0008). The `system-allocator` feature leaves it out for heap profiling with heaptrack;
/// `jemalloc-profile` swaps in jemalloc for its sampling heap profiler.
#[cfg(not(any(feature = "system-allocator", feature = "jemalloc-profile")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc-profile")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

mod sim;

#[derive(Parser, Debug)]
#[command(name = "kumo", version, about = "A cloud-native microservice platform in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a single-node cluster: API server, embedded store, controllers, scheduler and a
    /// node agent.
    Up(UpArgs),
    /// Run a node agent that joins the cluster at `--server`.
    Agent(AgentArgs),
    /// Simulate many hollow nodes against a running control plane (scale tests).
    Sim(sim::SimArgs),
    /// Hold one container of the process runtime (started by the agent).
    #[command(hide = true)]
    Shim {
        /// The container's directory.
        dir: PathBuf,
    },
}

/// Flags of the node agent, shared by `kumo up` and `kumo agent`.
#[derive(clap::Args, Debug, Clone)]
struct NodeArgs {
    /// The node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's IP: its InternalIP, and the IP of its pods (host network mode).
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// Container runtime: `process` (host processes) or `docker` (the local Docker engine).
    #[arg(long, default_value = "process")]
    runtime: String,
    /// Port of the agent's endpoint (logs, stats) on the node IP; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    agent_port: u16,
    /// Extra node labels, `key=value` (repeatable).
    #[arg(long = "node-label")]
    node_labels: Vec<String>,
    /// How many pods the node takes.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// First delay of the restart back-off after the immediate restart, in seconds.
    #[arg(long, default_value_t = 10.0)]
    crashloop_backoff_initial: f64,
    /// Longest delay of the restart back-off, in seconds.
    #[arg(long, default_value_t = 300.0)]
    crashloop_backoff_max: f64,
    /// Run no node proxy (Service ClusterIPs and NodePorts are then not served on this node;
    /// two clusters on one machine would otherwise both claim the same ClusterIPs).
    #[arg(long)]
    no_proxy: bool,
    /// Address of the proxy's Prometheus metrics (`/metrics`; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    proxy_metrics_addr: SocketAddr,
    /// Write no access log (by default JSON lines in `<data-dir>/proxy/access.log`).
    #[arg(long)]
    no_access_log: bool,
}

/// What the proxy and gateway of a process serve.
struct ProxyPlan {
    /// Serve Service ClusterIPs and NodePorts (the node proxy).
    services: bool,
    /// The bound gateway listener, if any.
    gateway: Option<tokio::net::TcpListener>,
    metrics_addr: SocketAddr,
    access_log: Option<PathBuf>,
}

/// Start the L7 engine with its listeners and the proxy's watches. Returns the task and the
/// addresses of the gateway and the metrics endpoint.
async fn start_proxy(
    plan: ProxyPlan,
    node_ip: std::net::IpAddr,
    client: kube::Client,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, Option<SocketAddr>, SocketAddr)> {
    let engine = kumo_proxy::l7::Engine::new(&kumo_proxy::l7::EngineConfig {
        access_log: plan.access_log.clone(),
        ..Default::default()
    })
    .context("the proxy's access log")?;
    let admin = tokio::net::TcpListener::bind(plan.metrics_addr)
        .await
        .with_context(|| format!("proxy metrics on {}", plan.metrics_addr))?;
    let metrics_addr = admin.local_addr()?;
    let tasks = vec![tokio::spawn(engine.clone().serve_admin(admin))];
    let mut gateway_addr = None;
    if let Some(l) = plan.gateway {
        let addr = l.local_addr()?;
        // A gateway on all addresses is reached at the node's address.
        gateway_addr = Some(if addr.ip().is_unspecified() {
            SocketAddr::new(node_ip, addr.port())
        } else {
            addr
        });
        // One gateway worker per core, each with its own event loop (ADR 0008).
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        engine
            .clone()
            .serve_workers(l.into_std()?, kumo_proxy::l7::ListenerKind::Edge, threads)
            .context("the gateway's worker threads")?;
    }
    let config = kumo_proxy::Config {
        services: plan.services,
        node_ports: true,
        node_ip: Some(node_ip),
        engine,
        gateway_addr,
    };
    let mut stop = stop;
    let task = tokio::spawn(async move {
        kumo_proxy::run(client, config, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
        for t in tasks {
            t.abort();
        }
    });
    Ok((task, gateway_addr, metrics_addr))
}

#[derive(clap::Args, Debug)]
struct AgentArgs {
    /// The API server, `https://HOST:PORT`.
    #[arg(long)]
    server: String,
    /// Bearer token for the API server (the agent's endpoint accepts the same token).
    #[arg(long)]
    token: String,
    /// CA certificate of the API server (PEM); without it the server's certificate is not
    /// checked.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Where the agent keeps logs and container state.
    #[arg(long, default_value = ".kumo-agent")]
    data_dir: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
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
    /// Watch history kept in memory, in MiB (whichever of this and --watch-history is
    /// reached first drops the oldest events; events younger than 75 s are kept past this
    /// budget, not past --watch-history).
    #[arg(long, default_value_t = 128)]
    watch_history_mb: usize,
    /// The embedded store's page cache, in MiB.
    #[arg(long, default_value_t = 64)]
    store_cache_mb: usize,
    /// Requests the API server serves at once, per priority class (node heartbeats and the
    /// in-process control plane have pools of their own; watches are not counted); the rest
    /// wait their turn.
    #[arg(long, default_value_t = kumo_apiserver::priority::DEFAULT_MAX_INFLIGHT)]
    max_requests_inflight: usize,
    /// Run no node agent (a control plane only; nodes join with `kumo agent`).
    #[arg(long)]
    no_agent: bool,
    /// Address of the cluster DNS server, UDP and TCP (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    dns_addr: SocketAddr,
    /// The cluster domain the DNS server answers for (`<svc>.<ns>.svc.<domain>`).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Address of the gateway (the edge listener for Ingress, Gateway API and
    /// VirtualService routes; port 0 picks a free port).
    #[arg(long, default_value = "0.0.0.0:8080")]
    gateway_addr: SocketAddr,
    /// Run no gateway.
    #[arg(long)]
    no_gateway: bool,
    #[command(flatten)]
    node: NodeArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Shim { dir } = &cli.command {
        // No runtime, no logging set-up: the shim is a few threads and must stay small.
        std::process::exit(kumo_agent::shim::main(dir));
    }
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
        Command::Agent(args) => runtime.block_on(agent(args)),
        Command::Sim(args) => runtime.block_on(sim::run(args)),
        Command::Shim { .. } => Ok(()),
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
    let options = kumo_store::StoreOptions {
        history: args.watch_history,
        history_bytes: args.watch_history_mb << 20,
        cache_bytes: args.store_cache_mb << 20,
        ..Default::default()
    };
    let store = kumo_store::EmbeddedStore::open_with(&store_path, options)
        .with_context(|| format!("cannot open the store {}", store_path.display()))?;
    let store: Arc<dyn kumo_store::Store> = Arc::new(store);
    let config = kumo_apiserver::Config {
        data_dir: data_dir.clone(),
        addr: args.api_addr,
        hosts: args.tls_san,
        max_inflight: args.max_requests_inflight,
    };
    let server = kumo_apiserver::start(config, store.clone()).await?;
    let kubeconfig = server.kubeconfig.display().to_string();
    // The controllers, the scheduler, DNS, the proxy and the agent are API clients like any
    // other, with the admin identity; being in this process, they reach the router without a
    // socket (docs/adr/0015).
    let local = kube::Client::new(server.local_transport(), "default");
    let controllers = kumo_controllers::Config {
        node_lifecycle: kumo_controllers::nodelifecycle::NodeLifecycleConfig {
            grace: std::time::Duration::from_secs(args.node_monitor_grace_period),
            eviction_timeout: std::time::Duration::from_secs(
                args.default_unreachable_toleration_seconds,
            ),
        },
    };
    let dns = kumo_dns::Config { listen: args.dns_addr, domain: args.cluster_domain.clone() };
    let dns = kumo_dns::Server::bind(&dns)
        .await
        .with_context(|| format!("cluster DNS on {}", args.dns_addr))?;
    let dns_addr = dns.local_addr();
    let (stop_clients, mut clients) = start_clients(local.clone(), profiles, controllers, dns);
    let node_ip = args.node.node_ip.unwrap_or(server.addr.ip());
    let services = !args.no_agent && !args.node.no_proxy;
    let mut gateway_addr = None;
    let mut metrics_addr = None;
    if services || !args.no_gateway {
        let gateway = if args.no_gateway {
            None
        } else {
            Some(tokio::net::TcpListener::bind(args.gateway_addr).await.with_context(|| {
                format!(
                    "the gateway on {} (choose another with --gateway-addr, or --no-gateway)",
                    args.gateway_addr
                )
            })?)
        };
        let plan = ProxyPlan {
            services,
            gateway,
            metrics_addr: args.node.proxy_metrics_addr,
            access_log: (!args.node.no_access_log)
                .then(|| data_dir.join("proxy").join("access.log")),
        };
        let (task, gw, metrics) =
            start_proxy(plan, node_ip, local.clone(), stop_clients.subscribe()).await?;
        clients.push(task);
        gateway_addr = gw;
        metrics_addr = Some(metrics);
    }
    if !args.no_agent {
        let client = local.clone();
        let config =
            agent_config(&args.node, &data_dir.join("agent"), node_ip, &server.pki.admin_token)
                .await?;
        let mut rx = stop_clients.subscribe();
        clients.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = kumo_agent::run(client, config, stopped).await {
                tracing::error!("node agent: {e:#}");
            }
        }));
    }
    // One line a script can wait for, then what a person needs to know.
    println!("kumo is ready at https://{} ({} ms)", server.addr, started.elapsed().as_millis());
    println!("  export KUBECONFIG={kubeconfig}");
    println!("  kubectl get namespaces");
    println!("  dns: {dns_addr} ({})", args.cluster_domain);
    if let Some(addr) = gateway_addr {
        println!("  gateway: http://{addr}");
    }
    if let Some(addr) = metrics_addr {
        println!("  proxy metrics: http://{addr}/metrics");
    }
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

/// A client with the identity of a kubeconfig file.
async fn client_from(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// The agent's settings from its flags.
async fn agent_config(
    args: &NodeArgs,
    root: &std::path::Path,
    ip: std::net::IpAddr,
    token: &str,
) -> anyhow::Result<kumo_agent::Config> {
    std::fs::create_dir_all(root)
        .with_context(|| format!("cannot create agent dir {}", root.display()))?;
    let root = root.canonicalize()?;
    let runtime: Arc<dyn kumo_agent::runtime::Runtime> = match args.runtime.as_str() {
        "process" => {
            let exe = std::env::current_exe().context("cannot find the kumo binary for shims")?;
            Arc::new(kumo_agent::runtime::process::ProcessRuntime::new(
                root.clone(),
                vec![exe.display().to_string(), "shim".into()],
            )?)
        }
        "docker" => Arc::new(
            kumo_agent::runtime::docker::DockerRuntime::connect()
                .await
                .context("--runtime docker: cannot reach the Docker engine")?,
        ),
        other => anyhow::bail!("unknown runtime {other:?}: use process or docker"),
    };
    let mut labels = Vec::new();
    for l in &args.node_labels {
        let (k, v) =
            l.split_once('=').with_context(|| format!("node label {l:?}: expected key=value"))?;
        labels.push((k.to_string(), v.to_string()));
    }
    let secs = |s: f64, flag: &str| {
        std::time::Duration::try_from_secs_f64(s).with_context(|| format!("--{flag}: {s}"))
    };
    let node_name = match &args.node_name {
        Some(n) => n.clone(),
        None => nix_hostname()?,
    };
    Ok(kumo_agent::Config {
        node_name,
        node_ip: ip.to_string(),
        root,
        runtime,
        listen: SocketAddr::new(ip, args.agent_port),
        token: token.to_string(),
        labels,
        max_pods: args.max_pods,
        backoff: (
            secs(args.crashloop_backoff_initial, "crashloop-backoff-initial")?,
            secs(args.crashloop_backoff_max, "crashloop-backoff-max")?,
        ),
    })
}

fn nix_hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read the host name; pass --node-name")?;
    // Node names are DNS subdomains.
    Ok(name.trim().to_lowercase())
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let url: http::Uri =
        args.server.parse().with_context(|| format!("--server {}", args.server))?;
    let host = url.host().context("--server has no host")?.trim_matches(['[', ']']).to_string();
    let port = url.port_u16().unwrap_or(443);
    let ip = match args.node.node_ip {
        Some(ip) => ip,
        None => {
            // The address this host uses to reach the server is the one the server reaches
            // back.
            let target = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .context("cannot resolve the server's host")?;
            let probe =
                std::net::UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
            probe.connect(target)?;
            probe.local_addr()?.ip()
        }
    };
    let cluster = match &args.ca_file {
        Some(ca) => {
            let pem = std::fs::read(ca).with_context(|| format!("--ca-file {}", ca.display()))?;
            use base64::Engine;
            let data = base64::engine::general_purpose::STANDARD.encode(pem);
            format!("certificate-authority-data: {data}")
        }
        None => {
            eprintln!("kumo agent: no --ca-file, the server's certificate is not checked");
            "insecure-skip-tls-verify: true".into()
        }
    };
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kumo\n  cluster:\n    server: {}\n    {cluster}\nusers:\n- name: agent\n  user:\n    token: {}\ncontexts:\n- name: kumo\n  context:\n    cluster: kumo\n    user: agent\ncurrent-context: kumo\n",
        args.server, args.token
    );
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let config = agent_config(&args.node, &args.data_dir, ip, &args.token).await?;
    println!("kumo agent: node {} ({}) joining {}", config.node_name, config.node_ip, args.server);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut proxy = None;
    if !args.node.no_proxy {
        let plan = ProxyPlan {
            services: true,
            gateway: None,
            metrics_addr: args.node.proxy_metrics_addr,
            access_log: (!args.node.no_access_log)
                .then(|| args.data_dir.join("proxy").join("access.log")),
        };
        let (task, _, metrics) = start_proxy(plan, ip, client.clone(), stopped).await?;
        println!("kumo agent: proxy metrics on http://{metrics}/metrics");
        proxy = Some(task);
    }
    let result = kumo_agent::run(client, config, wait_for_signal()).await;
    let _ = stop.send(true);
    if let Some(p) = proxy {
        let _ = p.await;
    }
    result
}

fn start_clients(
    client: kube::Client,
    profiles: Vec<kumo_scheduler::profile::Profile>,
    controllers: kumo_controllers::Config,
    dns: kumo_dns::Server,
) -> (tokio::sync::watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let controllers =
        tokio::spawn(kumo_controllers::run_with(client.clone(), controllers, stopped(rx.clone())));
    let scheduler =
        tokio::spawn(kumo_scheduler::runner::run(client.clone(), profiles, stopped(rx.clone())));
    // Cluster DNS is one more API client: it watches Services and EndpointSlices.
    let dns = tokio::spawn(dns.run(client, stopped(rx)));
    (tx, vec![controllers, scheduler, dns])
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
