//! Applying a Deployment's plan through the API: claims, the new ReplicaSet, scaling,
//! revisions, history cleanup and status. Every write carries the resourceVersion it was
//! computed from, so a decision made on a stale cache is refused (409) and retried.

use super::hash::{self, POD_TEMPLATE_HASH};
use super::status::{self, NewRs};
use super::{
    desired, revision, rollout, view, DESIRED_REPLICAS, MAX_REPLICAS, REVISION, REVISION_HISTORY,
};
use crate::claim;
use crate::replicaset::Error;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::info;

/// Annotations of the Deployment that are not copied to its ReplicaSets (upstream
/// `skipCopyAnnotation`).
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Writes for one Deployment.
pub(super) struct Applier<'a> {
    d: &'a Deployment,
    key: String,
    sets: Api<ReplicaSet>,
    deployments: Api<Deployment>,
}

impl<'a> Applier<'a> {
    pub(super) fn new(client: &kube::Client, d: &'a Deployment) -> Result<Self, Error> {
        let (ns, name) = crate::replicaset::key_of(&d.metadata)?;
        Ok(Applier {
            d,
            key: format!("{ns}/{name}"),
            sets: Api::namespaced(client.clone(), &ns),
            deployments: Api::namespaced(client.clone(), &ns),
        })
    }

    fn err(&self, action: &'static str) -> impl FnOnce(kube::Error) -> Error + '_ {
        move |source| Error::Api { key: self.key.clone(), action, source }
    }

    fn owner(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        let name = self.d.metadata.name.clone().unwrap_or_default();
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        claim::owner_reference("apps/v1", "Deployment", &name, &uid)
    }

    async fn patch_rs(
        &self,
        rs: &ReplicaSet,
        patch: serde_json::Value,
    ) -> Result<ReplicaSet, Error> {
        let name = rs.metadata.name.clone().unwrap_or_default();
        self.sets
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(self.err("patch replicaset"))
    }

    /// Adopt orphans, release strays.
    pub(super) async fn claims(
        &self,
        adopt: &[ReplicaSet],
        release: &[ReplicaSet],
    ) -> Result<(), Error> {
        for rs in adopt {
            self.patch_rs(rs, claim::adopt_patch(&rs.metadata, self.owner())).await?;
        }
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        for rs in release {
            self.patch_rs(rs, claim::release_patch(&rs.metadata, &uid)).await?;
        }
        Ok(())
    }

    fn replica_annotations(&self, plan_desired: &rollout::Desired) -> serde_json::Value {
        let surge = match plan_desired.strategy {
            rollout::Strategy::RollingUpdate { max_surge, .. } => max_surge,
            rollout::Strategy::Recreate => 0,
        };
        json!({
            DESIRED_REPLICAS: plan_desired.replicas.to_string(),
            MAX_REPLICAS: (plan_desired.replicas + surge).to_string(),
        })
    }

    /// The new ReplicaSet for the current template (upstream `getNewReplicaSet`).
    fn new_replica_set(
        &self,
        replicas: i32,
        revision: i64,
        annotations: serde_json::Value,
    ) -> ReplicaSet {
        let spec = self.d.spec.clone().unwrap_or_default();
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = hash::pod_template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut ann: BTreeMap<String, String> = self
            .d
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ann.insert(REVISION.into(), revision.to_string());
        if let serde_json::Value::Object(m) = annotations {
            ann.extend(m.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string()))));
        }
        let name = self.d.metadata.name.clone().unwrap_or_default();
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{name}-{hash}")),
                namespace: self.d.metadata.namespace.clone(),
                labels: meta.labels.clone(),
                annotations: Some(ann),
                owner_references: Some(vec![self.owner()]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        }
    }

    async fn create_new(&self, rs: ReplicaSet) -> Result<ReplicaSet, Error> {
        match self.sets.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                info!(replicaset = ?created.metadata.name, "created new replicaset");
                Ok(created)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Ours already (our cache lags)? Then it is the new one. Otherwise a hash
                // collision: bump collisionCount so the next hash differs (upstream does too).
                let name = rs.metadata.name.clone().unwrap_or_default();
                let existing = self.sets.get(&name).await.map_err(self.err("get replicaset"))?;
                let ours = claim::controller_of(&existing.metadata).map(|r| r.uid.clone())
                    == self.d.metadata.uid;
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .zip(rs.spec.as_ref().and_then(|s| s.template.as_ref()))
                    .is_some_and(|(a, b)| hash::equal_ignore_hash(a, b));
                if ours && same {
                    return Ok(existing);
                }
                let count = self.d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0) + 1;
                let dname = self.d.metadata.name.clone().unwrap_or_default();
                let patch = json!({"status": {"collisionCount": count}});
                self.deployments
                    .patch_status(&dname, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(self.err("bump collision count"))?;
                Err(Error::Api {
                    key: self.key.clone(),
                    action: "create replicaset (hash collision)",
                    source: kube::Error::Api(s),
                })
            }
            Err(e) => Err(self.err("create replicaset")(e)),
        }
    }

    /// Plan and apply; then history cleanup and status.
    pub(super) async fn sync(
        &self,
        owned: Vec<ReplicaSet>,
        new_idx: Option<usize>,
    ) -> Result<Action, Error> {
        let want = desired(self.d);
        let spec = self.d.spec.clone().unwrap_or_default();
        let mut old = owned;
        let mut new = new_idx.map(|i| old.remove(i));
        let new_revision = old.iter().map(revision).max().unwrap_or(0) + 1;
        let mut note = NewRs::Missing;
        if let Some(n) = new.as_mut() {
            note = NewRs::Found(n.metadata.name.clone().unwrap_or_default());
            let rev = revision(n);
            let min_ready = n.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if rev < new_revision || min_ready != spec.min_ready_seconds {
                // Rolling back to an older template reuses its ReplicaSet with a new revision.
                let mut ann = json!({REVISION: new_revision.to_string()});
                if rev > 0 && rev < new_revision {
                    ann[REVISION_HISTORY] = json!(rev.to_string());
                }
                let patch = json!({"metadata": {"resourceVersion": n.metadata.resource_version, "annotations": ann}, "spec": {"minReadySeconds": spec.min_ready_seconds}});
                *n = self.patch_rs(n, patch).await?;
            }
        }
        let old_views: Vec<rollout::Rs> = old.iter().map(view).collect();
        let plan = rollout::plan(&want, new.as_ref().map(view).as_ref(), &old_views);
        let annotations = self.replica_annotations(&want);
        if let Some(replicas) = plan.create_new {
            let created = self
                .create_new(self.new_replica_set(replicas, new_revision, annotations.clone()))
                .await?;
            note = NewRs::Created(created.metadata.name.clone().unwrap_or_default());
            new = Some(created);
        }
        for (name, size) in &plan.scale {
            let target = new
                .iter_mut()
                .chain(old.iter_mut())
                .find(|r| r.metadata.name.as_ref() == Some(name));
            if let Some(rs) = target {
                let patch = json!({"metadata": {"resourceVersion": rs.metadata.resource_version, "annotations": annotations}, "spec": {"replicas": size}});
                *rs = self.patch_rs(rs, patch).await?;
                info!(replicaset = %name, replicas = size, "scaled replicaset");
            }
        }
        let mut current = self.d.clone();
        if let Some(n) = &new {
            let rev = revision(n).to_string();
            if current.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)) != Some(&rev) {
                // No resourceVersion precondition: the annotation is idempotent, and a
                // reconcile that runs on a cached Deployment a write behind would otherwise
                // conflict until the cache caught up (a 409 storm at scale).
                let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
                let dname = current.metadata.name.clone().unwrap_or_default();
                current = self
                    .deployments
                    .patch(&dname, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(self.err("set revision"))?;
                // Keep the status we compute tied to the generation we acted on.
                current.metadata.generation = self.d.metadata.generation;
            }
        }
        let all: Vec<&ReplicaSet> = new.iter().chain(old.iter()).collect();
        let max_unavailable = rollout::max_unavailable(&want);
        let now = Timestamp::now();
        let (status, wait) =
            status::compute(&current, &all, new.as_ref(), &note, max_unavailable, Time(now));
        let complete = status.updated_replicas == Some(want.replicas)
            && status.replicas == Some(want.replicas)
            && status.available_replicas == Some(want.replicas);
        if complete || want.paused {
            self.cleanup(&old, spec.revision_history_limit.unwrap_or(10)).await?;
        }
        if current.status.as_ref() != Some(&status) {
            let dname = current.metadata.name.clone().unwrap_or_default();
            let patch = crate::status_patch(&current.metadata, &status);
            self.deployments
                .patch_status(&dname, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(self.err("update status"))?;
        }
        Ok(match wait {
            Some(secs) => Action::requeue(Duration::from_secs(secs.unsigned_abs().max(1))),
            None => Action::requeue(super::RESYNC),
        })
    }

    /// Upstream `cleanupDeployment`: delete the oldest zero-sized ReplicaSets beyond
    /// `revisionHistoryLimit`.
    async fn cleanup(&self, old: &[ReplicaSet], limit: i32) -> Result<(), Error> {
        let mut alive: Vec<&ReplicaSet> =
            old.iter().filter(|r| r.metadata.deletion_timestamp.is_none()).collect();
        let excess = alive.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        alive.sort_by_key(|r| revision(r));
        for rs in alive.into_iter().take(excess) {
            let st = rs.status.clone().unwrap_or_default();
            let observed =
                st.observed_generation.unwrap_or(0) >= rs.metadata.generation.unwrap_or(0);
            if st.replicas != 0
                || rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) != 0
                || !observed
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            match self.sets.delete(&name, &DeleteParams::background()).await {
                Ok(_) => info!(replicaset = %name, "deleted old replicaset beyond history limit"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(self.err("delete old replicaset")(e)),
            }
        }
        Ok(())
    }
}
