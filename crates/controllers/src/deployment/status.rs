//! Deployment status and its Available/Progressing conditions. Pure.
//!
//! Mirrors upstream `calculateStatus`, `syncRolloutStatus` and `checkPausedConditions`; the
//! reasons are the ones `kubectl rollout status` and users' tooling look for
//! (<https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#deployment-status>).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Condition reasons, as upstream spells them.
pub mod reason {
    /// A new ReplicaSet was created for the current template.
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    /// An existing ReplicaSet matches the current template.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// The rollout made progress.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// The rollout is complete.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// No progress within `progressDeadlineSeconds`.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// Enough pods are available.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Too few pods are available.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
    /// `spec.paused` was set.
    pub const PAUSED: &str = "DeploymentPaused";
    /// `spec.paused` was cleared.
    pub const RESUMED: &str = "DeploymentResumed";
}

/// Something this reconcile did about the new ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewRs {
    /// Created now, with this name.
    Created(String),
    /// Already there, with this name.
    Found(String),
    /// None exists (paused, or Recreate still draining).
    Missing,
}

fn cond(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &Time,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// Upstream `SetDeploymentCondition`: same status and reason → keep the old one; same status
/// → keep its transition time.
pub fn set_condition(conds: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(old) = conds.iter().find(|o| o.type_ == c.type_) {
        if old.status == c.status && old.reason == c.reason {
            return;
        }
        if old.status == c.status {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    conds.retain(|o| o.type_ != c.type_);
    conds.push(c);
}

fn sum(rss: &[&ReplicaSet], f: impl Fn(&ReplicaSet) -> i32) -> i32 {
    rss.iter().map(|r| f(r)).sum()
}

/// Compute the status. `all` are the owned ReplicaSets as they are after this reconcile's
/// writes; `max_unavailable` is resolved. Returns the status and, while a rollout is in
/// progress, the seconds until its progress deadline (for a timed requeue).
pub fn compute(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    note: &NewRs,
    max_unavailable: i32,
    now: Time,
) -> (DeploymentStatus, Option<i64>) {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let old = d.status.clone().unwrap_or_default();
    let st = |r: &ReplicaSet| r.status.clone().unwrap_or_default();
    let available = sum(all, |r| st(r).available_replicas.unwrap_or(0));
    let total_spec = sum(all, |r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(sum(all, |r| st(r).replicas)),
        updated_replicas: Some(new.map_or(0, |r| st(r).replicas)),
        ready_replicas: Some(sum(all, |r| st(r).ready_replicas.unwrap_or(0))),
        available_replicas: Some(available),
        unavailable_replicas: Some((total_spec - available).max(0)),
        collision_count: old.collision_count,
        conditions: None,
        terminating_replicas: old.terminating_replicas,
    };
    let mut conds = old.conditions.clone().unwrap_or_default();
    if available >= replicas - max_unavailable {
        let msg = "Deployment has minimum availability.".to_string();
        set_condition(&mut conds, cond("Available", "True", reason::MIN_AVAILABLE, msg, &now));
    } else {
        let msg = "Deployment does not have minimum availability.".to_string();
        set_condition(&mut conds, cond("Available", "False", reason::MIN_UNAVAILABLE, msg, &now));
    }
    let deadline = spec.progress_deadline_seconds.filter(|s| *s != i32::MAX);
    let mut wait = None;
    let current = old.conditions.iter().flatten().find(|c| c.type_ == "Progressing").cloned();
    let paused = spec.paused.unwrap_or(false);
    match (&current, paused) {
        (c, true) if c.as_ref().and_then(|c| c.reason.as_deref()) != Some(reason::PAUSED) => {
            let c =
                cond("Progressing", "Unknown", reason::PAUSED, "Deployment is paused".into(), &now);
            set_condition(&mut conds, c);
        }
        (Some(c), false) if c.reason.as_deref() == Some(reason::PAUSED) => {
            let c = cond(
                "Progressing",
                "Unknown",
                reason::RESUMED,
                "Deployment is resumed".into(),
                &now,
            );
            set_condition(&mut conds, c);
        }
        _ => {}
    }
    if let (Some(deadline), false) = (deadline, paused) {
        let rs_name = new.and_then(|r| r.metadata.name.clone()).unwrap_or_default();
        match note {
            NewRs::Created(n) => set_condition(
                &mut conds,
                cond(
                    "Progressing",
                    "True",
                    reason::NEW_RS_CREATED,
                    format!("Created new replica set {n:?}"),
                    &now,
                ),
            ),
            NewRs::Found(n) if current.is_none() => set_condition(
                &mut conds,
                cond(
                    "Progressing",
                    "True",
                    reason::FOUND_NEW_RS,
                    format!("Found new replica set {n:?}"),
                    &now,
                ),
            ),
            _ => {}
        }
        let complete_before = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(reason::NEW_RS_AVAILABLE));
        let complete = status.updated_replicas == Some(replicas)
            && status.replicas == Some(replicas)
            && status.available_replicas == Some(replicas)
            && status.observed_generation >= d.metadata.generation;
        let old_pods =
            |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
        let progressing = status.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
            || old_pods(&status) < old_pods(&old)
            || status.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
            || available > old.available_replicas.unwrap_or(0);
        if !complete_before {
            if complete {
                let msg = format!("ReplicaSet {rs_name:?} has successfully progressed.");
                set_condition(
                    &mut conds,
                    cond("Progressing", "True", reason::NEW_RS_AVAILABLE, msg, &now),
                );
            } else if progressing {
                let msg = format!("ReplicaSet {rs_name:?} is progressing.");
                let mut c = cond("Progressing", "True", reason::RS_UPDATED, msg, &now);
                if let Some(cur) = conds.iter().find(|c| c.type_ == "Progressing") {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                }
                conds.retain(|c| c.type_ != "Progressing");
                conds.push(c);
            } else if let Some(cur) = conds.iter().find(|c| c.type_ == "Progressing").cloned() {
                let from = cur.last_update_time.as_ref().map_or(0, |t| t.0.as_second());
                let left = from + i64::from(deadline) - now.0.as_second();
                if cur.reason.as_deref() == Some(reason::TIMED_OUT) {
                } else if left < 0 {
                    let msg = format!("ReplicaSet {rs_name:?} has timed out progressing.");
                    set_condition(
                        &mut conds,
                        cond("Progressing", "False", reason::TIMED_OUT, msg, &now),
                    );
                } else {
                    wait = Some(left + 1);
                }
            }
        }
    } else if deadline.is_none() {
        conds.retain(|c| c.type_ != "Progressing");
    }
    status.conditions = (!conds.is_empty()).then_some(conds);
    (status, wait)
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
