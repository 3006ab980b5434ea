//! `kumo-bench apply` (`bench/apply`): what field tracking costs. Server-side apply of a 2.3 KB
//! Deployment against plain create (POST) and update (PUT) of the same object, with 1 and 16
//! clients, against a release `kumo up`: throughput and p50/p99 latency per operation, and
//! the ratio of plain to apply throughput.
//!
//! Every operation writes: updates and applies change an annotation each time (a no-op apply
//! stores nothing and would flatter the figure). Each client works on its own objects, so no
//! operation waits on another's conflict. The Deployments have 0 replicas: the controllers see
//! every write (as in a cluster) but start no pods.

use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A Deployment of about 2.3 KB of JSON: labels, annotations, and two containers with
/// environment, ports, probes and resources, as real manifests carry.
pub fn deployment(name: &str, generation: usize) -> Value {
    let env: Vec<Value> = (0..24)
        .map(|i| json!({"name": format!("SETTING_{i:02}"), "value": format!("value-{i:02}-abcdefgh")}))
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default",
            "labels": {"app": name, "tier": "backend", "team": "payments", "version": "v1"},
            "annotations": {"bench/generation": generation.to_string(), "owner": "payments@example.com"}},
        "spec": {"replicas": 0, "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name, "tier": "backend", "team": "payments", "version": "v1"}},
                "spec": {"containers": [
                    {"name": "app", "image": "registry.example.com/payments/api:1.42.0",
                     "args": ["--port=8080", "--log-level=info", "--metrics"],
                     "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
                     "env": env,
                     "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
                     "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
                     "livenessProbe": {"httpGet": {"path": "/live", "port": "http"}, "periodSeconds": 10}},
                    {"name": "sidecar", "image": "registry.example.com/infra/proxy:2.1.0",
                     "ports": [{"name": "admin", "containerPort": 15000}],
                     "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]}}}})
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Create,
    ApplyCreate,
    Update,
    Apply,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Create => "create (POST)",
            Op::ApplyCreate => "server-side apply, creating",
            Op::Update => "update (PUT)",
            Op::Apply => "server-side apply, updating",
        }
    }
}

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn one(http: &reqwest::Client, base: &str, op: Op, name: &str, n: usize) -> Result<()> {
    let coll = format!("{base}/apis/apps/v1/namespaces/default/deployments");
    let body = deployment(name, n);
    let resp = match op {
        Op::Create => http.post(&coll).json(&body).send().await?,
        Op::Update => http.put(format!("{coll}/{name}")).json(&body).send().await?,
        Op::ApplyCreate | Op::Apply => {
            http.patch(format!("{coll}/{name}?fieldManager=bench&force=true"))
                .header("Content-Type", "application/apply-patch+yaml")
                .body(serde_json::to_vec(&body)?)
                .send()
                .await?
        }
    };
    let code = resp.status().as_u16();
    if !(200..300).contains(&code) {
        bail!("{op:?} {name}: {code} {}", resp.text().await.unwrap_or_default());
    }
    Ok(())
}

/// `ops` operations of one kind spread over `clients` clients; client `c` works on the
/// objects `<prefix>-<c>-*` (creates: a new one each time; updates: one object each).
async fn run(
    http: &reqwest::Client,
    base: &str,
    op: Op,
    prefix: &str,
    clients: usize,
    ops: usize,
) -> Result<Run> {
    let per_client = ops / clients;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, prefix) = (http.clone(), base.to_string(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let name = match op {
                    Op::Create | Op::ApplyCreate => format!("{prefix}-{c}-{i}"),
                    Op::Update | Op::Apply => format!("{prefix}-{c}-0"),
                };
                let t = Instant::now();
                one(&http, &base, op, &name, i + 1).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = t0.elapsed();
    lat.sort();
    Ok(Run {
        per_second: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: super::percentile(&lat, 0.5),
        p99: super::percentile(&lat, 0.99),
    })
}

/// Run the apply benchmark and print its table.
pub async fn main(args: &[String]) -> Result<()> {
    let mut ops_per_run = 2000;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ops" => ops_per_run = it.next().and_then(|v| v.parse().ok()).unwrap_or(ops_per_run),
            other => bail!("unknown option {other:?} (use --ops N)"),
        }
    }
    let size = serde_json::to_vec(&deployment("web-0-0", 1))?.len();
    let dir = tempfile::tempdir()?;
    let (k, _) = super::start(dir.path())?;
    let http = super::client(&k)?;
    let base = format!("https://{}", k.addr);
    let mut rows = Vec::new();
    for clients in [1usize, 16] {
        let ops = if clients == 1 { ops_per_run / 4 } else { ops_per_run };
        let mut results = Vec::new();
        // Creates first: the update runs then work on objects that exist.
        for (op, prefix) in [
            (Op::Create, format!("plain{clients}")),
            (Op::ApplyCreate, format!("applied{clients}")),
            (Op::Update, format!("plain{clients}")),
            (Op::Apply, format!("applied{clients}")),
        ] {
            let r = run(&http, &base, op, &prefix, clients, ops).await?;
            results.push((op, r));
        }
        let rate =
            |op: Op| results.iter().find(|(o, _)| *o == op).map_or(0.0, |(_, r)| r.per_second);
        let create_ratio = rate(Op::Create) / rate(Op::ApplyCreate).max(f64::MIN_POSITIVE);
        let update_ratio = rate(Op::Update) / rate(Op::Apply).max(f64::MIN_POSITIVE);
        for (op, r) in results {
            rows.push(vec![
                op.label().to_string(),
                clients.to_string(),
                format!("{:.0}", r.per_second),
                super::ms(r.p50),
                super::ms(r.p99),
            ]);
        }
        rows.push(vec![
            format!(
                "plain / apply throughput: create {create_ratio:.2}×, update {update_ratio:.2}×"
            ),
            clients.to_string(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    drop(k);
    println!("Deployment of {size} bytes (JSON); {ops_per_run} operations per 16-client run, a quarter per 1-client run");
    let heads = ["operation", "clients", "ops/s", "p50", "p99"];
    let widths: Vec<usize> = (0..heads.len())
        .map(|i| rows.iter().map(|r| r[i].len()).chain([heads[i].len()]).max().unwrap_or(8))
        .collect();
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", parts.join("  "));
    };
    line(heads.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
    Ok(())
}
