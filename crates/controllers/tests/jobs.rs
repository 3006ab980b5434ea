//! The Job and CronJob controllers against the real kumo API server: a Job runs at most
//! `parallelism` pods until `completions` succeeded, a Job whose pods keep failing stops at
//! `backoffLimit`, a suspended CronJob starts nothing, and a Job made from a CronJob's
//! jobTemplate (as `kubectl create job --from=cronjob/x` does) runs and counts as its success.
//!
//! The test starts the `kumo` binary as `tests/rollout.rs` does: `$KUMO_BIN`, else
//! `$CARGO_TARGET_DIR/debug/kumo`, else `target/debug/kumo` in the workspace. There is no node
//! agent: the test plays the kubelet by patching pod status (phase and terminated containers).

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

#[path = "support/server.rs"]
mod server;
use server::{kumo_bin, start};

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn is_active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed")
}

/// Play the kubelet: the pod's only container terminated with `exit_code`.
async fn finish(pods: &Api<Pod>, pod: &Pod, exit_code: i32) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let phase = if exit_code == 0 { "Succeeded" } else { "Failed" };
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    let patch = json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": reason,
            "startedAt": now, "finishedAt": now}}}]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("finish");
}

async fn job_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    pods.list(&lp).await.expect("pods").items
}

fn condition(job: &Job, type_: &str) -> Option<(String, Option<String>)> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    let c = conds.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

fn job(name: &str, completions: i32, parallelism: i32, backoff_limit: i32) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"completions": completions, "parallelism": parallelism,
            "backoffLimit": backoff_limit,
            "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .expect("job")
}

/// Drive `name` by finishing its active pods with `exit_code` until `done` says the Job is
/// finished; asserts at most `max_active` pods are active at any time.
async fn drive(
    jobs: &Api<Job>,
    pods: &Api<Pod>,
    name: &str,
    exit_code: i32,
    max_active: usize,
    done: impl Fn(&Job) -> bool,
) -> Job {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = jobs.get(name).await.expect("get job");
        if done(&j) {
            return j;
        }
        let list = job_pods(pods, name).await;
        let active: Vec<&Pod> = list.iter().filter(|p| is_active(p)).collect();
        assert!(active.len() <= max_active, "{} active pods > {max_active}", active.len());
        for p in active {
            finish(pods, p, exit_code).await;
        }
        assert!(Instant::now() < deadline, "job {name} did not finish: {:?}", j.status);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_fail_on_backoff_and_cronjobs_own_their_jobs() {
    let bin = kumo_bin().expect("no kumo binary: set KUMO_BIN or run `cargo build -p kumo` first");
    let server = start(&bin);
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");

    // completions 3, parallelism 2: never more than 2 pods at once, then Complete.
    let created = jobs.create(&PostParams::default(), &job("work", 3, 2, 6)).await.expect("job");
    let uid = created.metadata.uid.clone().unwrap_or_default();
    let done = drive(&jobs, &pods, "work", 0, 2, |j| {
        condition(j, "Complete").is_some_and(|(s, _)| s == "True")
    })
    .await;
    let status = done.status.clone().unwrap_or_default();
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.active.unwrap_or(0), 0);
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    assert_eq!(
        condition(&done, "SuccessCriteriaMet"),
        Some(("True".into(), Some("CompletionsReached".into())))
    );
    let all = job_pods(&pods, "work").await;
    assert_eq!(all.len(), 3, "one pod per completion");
    for p in &all {
        let owner = p.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!((owner[0].kind.as_str(), owner[0].uid.as_str()), ("Job", uid.as_str()));
        assert_eq!(owner[0].controller, Some(true));
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("batch.kubernetes.io/controller-uid"), Some(&uid));
        assert!(p.metadata.name.as_deref().is_some_and(|n| n.starts_with("work-")));
    }

    // Indexed, with ttlSecondsAfterFinished 0: one pod per index, then the Job is deleted.
    let mut indexed = job("idx", 2, 2, 6);
    if let Some(spec) = indexed.spec.as_mut() {
        spec.completion_mode = Some("Indexed".into());
        spec.ttl_seconds_after_finished = Some(0);
    }
    jobs.create(&PostParams::default(), &indexed).await.expect("indexed job");
    let mut names: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while names.len() < 2 {
        names =
            job_pods(&pods, "idx").await.iter().filter_map(|p| p.metadata.name.clone()).collect();
        assert!(Instant::now() < deadline, "indexed pods: {names:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    names.sort();
    assert!(names[0].starts_with("idx-0-") && names[1].starts_with("idx-1-"), "{names:?}");
    for p in job_pods(&pods, "idx").await {
        let ann = p.metadata.annotations.clone().unwrap_or_default();
        let index =
            ann.get("batch.kubernetes.io/job-completion-index").cloned().unwrap_or_default();
        assert!(p
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with(&format!("idx-{index}-"))));
        let env = p.spec.clone().unwrap_or_default().containers[0].env.clone().unwrap_or_default();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match jobs.get_opt("idx").await.expect("get idx") {
            None => break,
            Some(j) => {
                let s = j.status.clone().unwrap_or_default();
                if s.completed_indexes.as_deref() == Some("0-1") {
                    assert_eq!(condition(&j, "Complete").map(|c| c.0), Some("True".into()));
                }
            }
        }
        for p in job_pods(&pods, "idx").await.iter().filter(|p| is_active(p)) {
            finish(&pods, p, 0).await;
        }
        assert!(Instant::now() < deadline, "indexed job not completed and deleted");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // backoffLimit 1: the second failed pod fails the Job.
    jobs.create(&PostParams::default(), &job("flaky", 1, 1, 1)).await.expect("job");
    let failed = drive(&jobs, &pods, "flaky", 1, 1, |j| {
        condition(j, "Failed").is_some_and(|(s, _)| s == "True")
    })
    .await;
    let reason = Some("BackoffLimitExceeded".to_string());
    assert_eq!(condition(&failed, "Failed"), Some(("True".into(), reason.clone())));
    assert_eq!(condition(&failed, "FailureTarget"), Some(("True".into(), reason)));
    assert_eq!(failed.status.as_ref().and_then(|s| s.failed), Some(2));
    assert!(failed.status.as_ref().is_some_and(|s| s.completion_time.is_none()));

    // A suspended CronJob starts nothing.
    let cj: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "* * * * *", "suspend": true,
            "jobTemplate": {"metadata": {"labels": {"app": "nightly"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}]}}}}}
    }))
    .expect("cronjob");
    let cj = cronjobs.create(&PostParams::default(), &cj).await.expect("create cronjob");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let owned = jobs.list(&ListParams::default().labels("app=nightly")).await.expect("jobs");
    assert!(owned.items.is_empty(), "a suspended CronJob created {:?}", owned.items.len());

    // `kubectl create job --from=cronjob/nightly`: the template, owned by the CronJob.
    let template = cj.spec.clone().unwrap_or_default().job_template;
    let manual: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "nightly-manual",
            "labels": template.metadata.clone().unwrap_or_default().labels,
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                "name": "nightly", "uid": cj.metadata.uid, "controller": true,
                "blockOwnerDeletion": true}]},
        "spec": template.spec,
    }))
    .expect("manual job");
    jobs.create(&PostParams::default(), &manual).await.expect("create manual job");
    drive(&jobs, &pods, "nightly-manual", 0, 1, |j| {
        condition(j, "Complete").is_some_and(|(s, _)| s == "True")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cj = cronjobs.get("nightly").await.expect("cronjob");
        let s = cj.status.clone().unwrap_or_default();
        if s.last_successful_time.is_some() {
            assert!(s.active.unwrap_or_default().is_empty());
            assert!(s.last_schedule_time.is_none(), "suspended: never scheduled");
            break;
        }
        assert!(Instant::now() < deadline, "lastSuccessfulTime not set: {s:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let pod = job_pods(&pods, "nightly-manual").await;
    assert_eq!(pod.len(), 1);
    let owner = pod[0].metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner[0].name, "nightly-manual");

    // A CronJob that fires (`@every 2s`, so the test need not wait for a minute boundary):
    // a Job `<cronjob>-<minutes>` with the scheduled-timestamp annotation, in status.active;
    // once it completes, it leaves status.active and sets lastSuccessfulTime.
    let cj: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "often"},
        "spec": {"schedule": "@every 2s", "concurrencyPolicy": "Forbid",
            "jobTemplate": {"metadata": {"labels": {"app": "often"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}]}}}}}
    }))
    .expect("cronjob");
    let cj = cronjobs.create(&PostParams::default(), &cj).await.expect("create cronjob");
    let cj_uid = cj.metadata.uid.clone().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = loop {
        let list = jobs.list(&ListParams::default().labels("app=often")).await.expect("jobs");
        if let Some(j) = list.items.into_iter().next() {
            break j;
        }
        assert!(Instant::now() < deadline, "the CronJob started no Job");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let job_name = started.metadata.name.clone().unwrap_or_default();
    let minutes = job_name.strip_prefix("often-").and_then(|m| m.parse::<i64>().ok());
    let now_minutes = k8s_openapi::jiff::Timestamp::now().as_second() / 60;
    assert!(minutes.is_some_and(|m| (now_minutes - 1..=now_minutes).contains(&m)), "{job_name}");
    let ann = started.metadata.annotations.clone().unwrap_or_default();
    assert!(ann.contains_key("batch.kubernetes.io/cronjob-scheduled-timestamp"));
    let owner = started.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!((owner[0].kind.as_str(), owner[0].uid.as_str()), ("CronJob", cj_uid.as_str()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cronjobs.get("often").await.expect("cronjob").status.unwrap_or_default();
        let active = s.active.clone().unwrap_or_default();
        if active.iter().any(|r| r.name.as_deref() == Some(job_name.as_str())) {
            assert!(s.last_schedule_time.is_some());
            break;
        }
        assert!(Instant::now() < deadline, "job not in status.active: {s:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drive(&jobs, &pods, &job_name, 0, 1, |j| {
        condition(j, "Complete").is_some_and(|(s, _)| s == "True")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cronjobs.get("often").await.expect("cronjob").status.unwrap_or_default();
        let active = s.active.clone().unwrap_or_default();
        let listed = active.iter().any(|r| r.name.as_deref() == Some(job_name.as_str()));
        if !listed && s.last_successful_time.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "completed job still active: {s:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cronjobs.delete("often", &Default::default()).await.expect("delete cronjob");
}
