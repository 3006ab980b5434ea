//! Durability: every write the server acknowledged survives a SIGKILL.

use crate::api_errors::{client, url};
use crate::harness::Cluster;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_sigkill() {
    let mut c = Cluster::start();
    let http = client(&c, true);
    let cms = url(&c, "/api/v1/namespaces/default/configmaps");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..16 {
        let (http, cms, acked, stop) = (http.clone(), cms.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("w{w}-{i}");
                i += 1;
                let body = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name},"data":{"v":"x".repeat(1000)}});
                match http.post(&cms).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 201 => acked.lock().unwrap().push(name),
                    Ok(_) | Err(_) => {}
                }
            }
        }));
    }
    // Let writes flow, then kill the server in the middle of them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killer = tokio::task::spawn_blocking(move || {
        c.kill();
        c
    });
    let mut c = killer.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "too few writes acknowledged to prove anything: {}", acked.len());
    let c = tokio::task::spawn_blocking(move || {
        c.restart();
        c
    })
    .await
    .unwrap();
    let http = client(&c, true);
    let list: serde_json::Value = http
        .get(url(&c, "/api/v1/namespaces/default/configmaps"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: std::collections::HashSet<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(n.as_str())).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!("{} acknowledged writes, all present after SIGKILL", acked.len());
}
