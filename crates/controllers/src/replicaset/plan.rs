//! The ReplicaSet decision: which pods to adopt, release, create and delete. Pure.

use crate::claim::{self, Claim};
use crate::pods;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

/// Upstream's `BurstReplicas`: at most this many creates or deletes per reconcile.
pub const BURST_REPLICAS: usize = 500;

/// What one reconcile of a ReplicaSet should do.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Orphans that match: take them.
    pub adopt: Vec<&'a Pod>,
    /// Owned pods that stopped matching: let them go.
    pub release: Vec<&'a Pod>,
    /// Active pods the ReplicaSet owns after adoption/release (they make its status).
    pub owned: Vec<&'a Pod>,
    /// How many pods to create from the template.
    pub create: usize,
    /// Pods to delete, least valuable first.
    pub delete: Vec<&'a Pod>,
}

/// Decide for `rs` given every pod in its namespace. `satisfied` is false while earlier creates
/// or deletes have not been observed yet: then claims still happen but the replica count is left
/// alone (upstream `rsNeedsSync`).
pub fn plan<'a>(rs: &ReplicaSet, pods_in_ns: &[&'a Pod], satisfied: bool) -> Plan<'a> {
    let mut out = Plan::default();
    let Some(spec) = rs.spec.as_ref() else { return out };
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    for &pod in pods_in_ns {
        if !pods::is_active(pod) {
            continue;
        }
        match claim::decide(uid, &spec.selector, deleting, &pod.metadata) {
            Claim::Keep => out.owned.push(pod),
            Claim::Adopt => {
                out.adopt.push(pod);
                out.owned.push(pod);
            }
            Claim::Release => out.release.push(pod),
            Claim::Ignore => {}
        }
    }
    if !satisfied || deleting {
        return out;
    }
    let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let have = out.owned.len();
    if have < want {
        out.create = (want - have).min(BURST_REPLICAS);
    } else if have > want {
        let mut victims = out.owned.clone();
        victims.sort_by(|a, b| pods::deletion_order(a, b));
        victims.truncate((have - want).min(BURST_REPLICAS));
        out.delete = victims;
    }
    out
}

/// Slow start (upstream `slowStartBatch`): create in batches of 1, 2, 4, … and stop at the first
/// batch with an error, so a broken template costs one failed request, not hundreds.
pub fn slow_start_batches(total: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut size) = (total, 1usize);
    while left > 0 {
        let n = size.min(left);
        out.push(n);
        left -= n;
        size *= 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::test_support::PodBuilder;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use std::collections::BTreeMap;

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                uid: Some("rs-uid".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                    ..Default::default()
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter().filter_map(|p| p.metadata.name.clone()).collect()
    }

    #[test]
    fn creates_the_missing_pods() {
        let a = PodBuilder::new("a").label("app", "web").owner("rs-uid").build();
        let p = plan(&rs(3), &[&a], true);
        assert_eq!(p.create, 2);
        assert!(p.delete.is_empty());
        assert_eq!(names(&p.owned), ["a"]);
    }

    #[test]
    fn adopts_orphans_and_releases_strays_before_counting() {
        let orphan = PodBuilder::new("orphan").label("app", "web").build();
        let stray = PodBuilder::new("stray").label("app", "db").owner("rs-uid").build();
        let other = PodBuilder::new("other").label("app", "web").owner("someone").build();
        let p = plan(&rs(1), &[&orphan, &stray, &other], true);
        assert_eq!(names(&p.adopt), ["orphan"]);
        assert_eq!(names(&p.release), ["stray"]);
        assert_eq!(names(&p.owned), ["orphan"]);
        assert_eq!((p.create, p.delete.len()), (0, 0));
    }

    #[test]
    fn deletes_the_least_valuable_extras() {
        let ready =
            PodBuilder::new("ready").label("app", "web").owner("rs-uid").node("n").ready_at(5);
        let pending = PodBuilder::new("pending").label("app", "web").owner("rs-uid").node("n");
        let unscheduled = PodBuilder::new("unscheduled").label("app", "web").owner("rs-uid");
        let (a, b, c) = (ready.build(), pending.build(), unscheduled.build());
        let p = plan(&rs(1), &[&a, &b, &c], true);
        assert_eq!(names(&p.delete), ["unscheduled", "pending"]);
    }

    #[test]
    fn finished_and_terminating_pods_do_not_count() {
        let done = PodBuilder::new("done").label("app", "web").owner("rs-uid").phase("Succeeded");
        let going = PodBuilder::new("going").label("app", "web").owner("rs-uid").deleting();
        let (a, b) = (done.build(), going.build());
        assert_eq!(plan(&rs(2), &[&a, &b], true).create, 2);
    }

    #[test]
    fn unmet_expectations_hold_the_replica_count() {
        let p = plan(&rs(3), &[], false);
        assert_eq!((p.create, p.delete.len()), (0, 0));
    }

    #[test]
    fn burst_and_slow_start_bound_the_work() {
        assert_eq!(plan(&rs(10_000), &[], true).create, BURST_REPLICAS);
        assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
        assert!(slow_start_batches(0).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn owned_after_plan_equals_replicas(replicas in 0i32..20, owned in 0usize..30) {
            let pods: Vec<Pod> = (0..owned)
                .map(|i| PodBuilder::new(&format!("p{i}")).label("app", "web").owner("rs-uid").build())
                .collect();
            let refs: Vec<&Pod> = pods.iter().collect();
            let p = plan(&rs(replicas), &refs, true);
            let after = p.owned.len() + p.create - p.delete.len();
            proptest::prop_assert_eq!(after, replicas as usize);
        }
    }
}
