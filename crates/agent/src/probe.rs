//! Startup, liveness and readiness probes: `httpGet`, `tcpSocket` and `exec`, with every
//! timing field (`initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`, `successThreshold`,
//! `failureThreshold`) as kubelet applies them.
//!
//! One task per probe of a running container. It reports each failed attempt (for the
//! `Unhealthy` event) and every change of the thresholded result; the pod worker decides what
//! a result means (restart, Ready condition).

use crate::runtime::{ContainerId, PortMapping, Runtime};
use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `startupProbe`: until it succeeds, the others wait; failing it restarts the container.
    Startup,
    /// `livenessProbe`: failing it restarts the container.
    Liveness,
    /// `readinessProbe`: drives the container's `ready`.
    Readiness,
}

impl Kind {
    /// `Liveness`, as kubelet words its events.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// What a probe task tells the pod worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// One attempt failed (kubelet's `Unhealthy` event).
    Failed {
        /// The container.
        container: String,
        /// Its attempt (reports for an older attempt are ignored).
        attempt: u32,
        /// Which probe.
        kind: Kind,
        /// Why.
        message: String,
    },
    /// The result after thresholds changed.
    Result {
        /// The container.
        container: String,
        /// Its attempt.
        attempt: u32,
        /// Which probe.
        kind: Kind,
        /// Success or failure.
        ok: bool,
    },
}

/// Where a probe is aimed.
#[derive(Clone)]
pub struct Target {
    /// The container's name.
    pub container: String,
    /// Its attempt number.
    pub attempt: u32,
    /// Its runtime id (for exec).
    pub id: ContainerId,
    /// The pod IP (in host mode, the node IP).
    pub host: String,
    /// Declared ports with their host ports.
    pub ports: Vec<PortMapping>,
    /// The runtime (for exec).
    pub runtime: Arc<dyn Runtime>,
    /// Shared HTTP client.
    pub http: reqwest::Client,
}

/// An HTTP client as kubelet's prober uses it: no connection reuse, no certificate checks.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::limited(10))
        .user_agent("kube-probe/1.33")
        .build()
        .unwrap_or_default()
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.filter(|s| *s > 0).unwrap_or(default) as u64)
}

/// Run `probe` against `target` until the task is dropped (or, for liveness and startup,
/// until the container is to be restarted). Readiness starts as not ready.
pub async fn run(kind: Kind, probe: Probe, target: Target, tx: mpsc::UnboundedSender<Report>) {
    let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
    let period = secs(probe.period_seconds, 10);
    let timeout = secs(probe.timeout_seconds, 1);
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1) as u32;
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1) as u32;
    tokio::time::sleep(delay).await;
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut state: Option<bool> = None;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let outcome = attempt(&probe, &target, timeout).await;
        let report = |ok| Report::Result {
            container: target.container.clone(),
            attempt: target.attempt,
            kind,
            ok,
        };
        match outcome {
            Ok(()) => {
                failures = 0;
                successes += 1;
                if successes >= success_threshold && state != Some(true) {
                    state = Some(true);
                    if tx.send(report(true)).is_err() {
                        return;
                    }
                    if kind == Kind::Startup {
                        return;
                    }
                }
            }
            Err(message) => {
                successes = 0;
                failures += 1;
                let failed = Report::Failed {
                    container: target.container.clone(),
                    attempt: target.attempt,
                    kind,
                    message,
                };
                if tx.send(failed).is_err() {
                    return;
                }
                if failures >= failure_threshold && state != Some(false) {
                    state = Some(false);
                    if tx.send(report(false)).is_err() {
                        return;
                    }
                    if kind != Kind::Readiness {
                        return;
                    }
                }
            }
        }
    }
}

/// One probe attempt.
pub async fn attempt(probe: &Probe, target: &Target, timeout: Duration) -> Result<(), String> {
    if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, target)?;
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let host =
            http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.host.clone());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let path = if path.starts_with('/') { path } else { format!("/{path}") };
        let url = format!("{scheme}://{}:{port}{path}", bracket(&host));
        let mut req = target.http.get(&url).timeout(timeout);
        for h in http.http_headers.iter().flatten() {
            req = req.header(h.name.as_str(), h.value.as_str());
        }
        return match req.send().await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("HTTP probe failed with statuscode: {code}"))
                }
            }
            Err(e) if e.is_timeout() => Err(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
            Err(e) => Err(format!("Get \"{url}\": {}", root_cause(&e))),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, target)?;
        let host =
            tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.host.clone());
        let addr = format!("{}:{port}", bracket(&host));
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {e}")),
            Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return match target.runtime.exec(&target.id, &command, timeout).await {
            Ok(r) if r.exit_code == 0 => Ok(()),
            Ok(r) => Err(if r.output.trim().is_empty() {
                format!("command {command:?} exited with {}", r.exit_code)
            } else {
                r.output.trim_end().to_string()
            }),
            Err(e) => Err(e.to_string()),
        };
    }
    if probe.grpc.is_some() {
        return Err("grpc probes are not supported by kumo yet".into());
    }
    Err("probe has no handler (httpGet, tcpSocket or exec)".into())
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A probe's port: a number (a declared container port maps to its host port; any other
/// number is used as is) or the name of a declared port.
fn resolve_port(port: &IntOrString, target: &Target) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => {
            let n = u16::try_from(*n).map_err(|_| format!("invalid port {n}"))?;
            Ok(target.ports.iter().find(|p| p.container_port == n).map_or(n, |p| p.host_port))
        }
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<i32>() {
                return resolve_port(&IntOrString::Int(n), target);
            }
            target
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.host_port)
                .ok_or_else(|| format!("port {name:?} is not a declared port of the container"))
        }
    }
}
