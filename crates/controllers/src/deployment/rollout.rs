//! The Deployment decision: how many replicas each ReplicaSet should have now. Pure.
//!
//! A faithful port of upstream's rollout math (`pkg/controller/deployment/{sync,rolling,
//! recreate}.go`, `util/deployment_util.go`); the comments name the Go function each part
//! mirrors. See <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/>.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A ReplicaSet as the rollout math sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rs {
    /// Its name.
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas` (pods that exist).
    pub actual: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// Creation time (seconds); older first breaks ties by name.
    pub created: i64,
    /// `deployment.kubernetes.io/desired-replicas`.
    pub desired_annotation: Option<i32>,
    /// `deployment.kubernetes.io/max-replicas`.
    pub max_annotation: Option<i32>,
}

/// The deployment strategy with its bounds resolved to pod counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Kill all old pods, then create the new ones.
    Recreate,
    /// Replace pods gradually within `max_surge` extra and `max_unavailable` missing pods.
    RollingUpdate {
        /// Pods allowed above `replicas`.
        max_surge: i32,
        /// Pods allowed below `replicas`.
        max_unavailable: i32,
    },
}

/// What the Deployment wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desired {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `spec.strategy`, resolved.
    pub strategy: Strategy,
    /// `spec.paused`: scale, but do not roll out.
    pub paused: bool,
    /// `status.replicas` (the fallback for proportional scaling without annotations).
    pub status_replicas: i32,
}

/// What to do in this reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Create the new ReplicaSet with this many replicas.
    pub create_new: Option<i32>,
    /// Set these ReplicaSets' `spec.replicas`.
    pub scale: Vec<(String, i32)>,
}

/// Resolve an int-or-percent against `total` (upstream `GetScaledValueFromIntOrPercent`).
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').trim().parse().unwrap_or(0);
            let num = pct * i64::from(total);
            let v = if round_up { (num + 99).div_euclid(100) } else { num.div_euclid(100) };
            i32::try_from(v).unwrap_or(0)
        }
    }
}

/// Upstream `ResolveFenceposts`: surge rounds up, unavailable down; both 0 means unavailable 1
/// (a rollout must be able to make progress). Unavailable never exceeds `replicas`.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> Strategy {
    let surge = scaled_value(max_surge, replicas, true).max(0);
    let mut unavailable = scaled_value(max_unavailable, replicas, false).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Strategy::RollingUpdate { max_surge: surge, max_unavailable: unavailable.min(replicas.max(0)) }
}

fn max_surge(d: &Desired) -> i32 {
    match d.strategy {
        Strategy::RollingUpdate { max_surge, .. } => max_surge,
        Strategy::Recreate => 0,
    }
}

/// Upstream `MaxUnavailable`.
pub fn max_unavailable(d: &Desired) -> i32 {
    match d.strategy {
        Strategy::RollingUpdate { max_unavailable, .. } if d.replicas > 0 => {
            max_unavailable.min(d.replicas)
        }
        _ => 0,
    }
}

fn by_age(rss: &[Rs]) -> Vec<Rs> {
    let mut v = rss.to_vec();
    v.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    v
}

fn active(rss: &[Rs]) -> Vec<Rs> {
    rss.iter().filter(|r| r.replicas > 0).cloned().collect()
}

fn sum(rss: &[Rs], f: impl Fn(&Rs) -> i32) -> i32 {
    rss.iter().map(f).sum()
}

/// Upstream `isScalingEvent`: an active ReplicaSet was sized for another `spec.replicas`.
pub fn is_scaling_event(d: &Desired, new: Option<&Rs>, old: &[Rs]) -> bool {
    new.into_iter()
        .chain(old)
        .filter(|r| r.replicas > 0)
        .any(|r| r.desired_annotation.is_some_and(|want| want != d.replicas))
}

/// The top of upstream's `syncDeployment` ladder: paused or scaling → `sync` (scale only);
/// otherwise roll out with the strategy. `new` is the ReplicaSet whose template equals the
/// Deployment's, if it exists.
pub fn plan(d: &Desired, new: Option<&Rs>, old: &[Rs]) -> Plan {
    if d.paused || is_scaling_event(d, new, old) {
        return Plan { create_new: None, scale: scale(d, new, old) };
    }
    match d.strategy {
        Strategy::Recreate => recreate(d, new, old),
        Strategy::RollingUpdate { .. } => rolling(d, new, old),
    }
}

/// Upstream `rolloutRecreate`: old to zero, wait for their pods to go, then the new one up.
fn recreate(d: &Desired, new: Option<&Rs>, old: &[Rs]) -> Plan {
    let scale: Vec<(String, i32)> = active(old).into_iter().map(|r| (r.name, 0)).collect();
    if !scale.is_empty() {
        return Plan { create_new: None, scale };
    }
    if old.iter().any(|r| r.actual > 0) {
        return Plan::default();
    }
    match new {
        None => Plan { create_new: Some(d.replicas), scale: Vec::new() },
        Some(n) if n.replicas != d.replicas => {
            Plan { create_new: None, scale: vec![(n.name.clone(), d.replicas)] }
        }
        Some(_) => Plan::default(),
    }
}

/// Upstream `NewRSNewReplicas` for RollingUpdate.
fn new_rs_new_replicas(d: &Desired, new_replicas: i32, all: &[Rs]) -> i32 {
    let current = sum(all, |r| r.replicas);
    let max_total = d.replicas + max_surge(d);
    if current >= max_total {
        return new_replicas;
    }
    new_replicas + (max_total - current).min(d.replicas - new_replicas)
}

/// Upstream `rolloutRolling`: scale the new ReplicaSet up within maxSurge; if it is already
/// where it may be, scale old ones down within maxUnavailable.
fn rolling(d: &Desired, new: Option<&Rs>, old: &[Rs]) -> Plan {
    let Some(new) = new else {
        let mut all = old.to_vec();
        all.push(Rs::default());
        return Plan { create_new: Some(new_rs_new_replicas(d, 0, &all)), scale: Vec::new() };
    };
    let mut all = old.to_vec();
    all.push(new.clone());
    // reconcileNewReplicaSet
    let target = if new.replicas > d.replicas {
        d.replicas
    } else {
        new_rs_new_replicas(d, new.replicas, &all)
    };
    if target != new.replicas {
        return Plan { create_new: None, scale: vec![(new.name.clone(), target)] };
    }
    Plan { create_new: None, scale: reconcile_old(d, new, old) }
}

/// Upstream `reconcileOldReplicaSets` + `cleanupUnhealthyReplicas` +
/// `scaleDownOldReplicaSetsForRollingUpdate`.
fn reconcile_old(d: &Desired, new: &Rs, old: &[Rs]) -> Vec<(String, i32)> {
    if sum(old, |r| r.replicas) == 0 {
        return Vec::new();
    }
    let all_pods = sum(old, |r| r.replicas) + new.replicas;
    let min_available = d.replicas - max_unavailable(d);
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut olds = by_age(old);
    let mut out: Vec<(String, i32)> = Vec::new();
    // First the unhealthy pods: they count against nobody's availability.
    let mut cleaned = 0;
    for r in olds.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if r.replicas == 0 || r.replicas == r.available {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(r.replicas - r.available);
        r.replicas -= down;
        cleaned += down;
        out.push((r.name.clone(), r.replicas));
    }
    // Then healthy ones, as far as availability allows.
    let available = sum(&olds, |r| r.available) + new.available;
    if available > min_available {
        let total_down = available - min_available;
        let mut done = 0;
        for r in olds.iter_mut() {
            if done >= total_down {
                break;
            }
            if r.replicas == 0 {
                continue;
            }
            let down = r.replicas.min(total_down - done);
            r.replicas -= down;
            done += down;
            out.retain(|(n, _)| n != &r.name);
            out.push((r.name.clone(), r.replicas));
        }
    }
    out
}

/// Upstream `FindActiveOrLatest`.
fn active_or_latest(new: Option<&Rs>, old: &[Rs]) -> Option<Rs> {
    let mut newest_first = by_age(old);
    newest_first.reverse();
    let mut all = newest_first.clone();
    all.extend(new.cloned());
    let act = active(&all);
    match act.len() {
        0 => new.cloned().or_else(|| newest_first.first().cloned()),
        1 => act.first().cloned(),
        _ => None,
    }
}

/// Upstream `getReplicaSetFraction`.
fn fraction(r: &Rs, d: &Desired) -> i32 {
    if d.replicas == 0 {
        return -r.replicas;
    }
    let deployment_replicas = d.replicas + max_surge(d);
    let annotated = r.max_annotation.unwrap_or(d.status_replicas);
    if annotated <= 0 {
        return 0;
    }
    let size = f64::from(r.replicas) * f64::from(deployment_replicas) / f64::from(annotated);
    // Go's math.Round (half away from zero), as upstream's integer.RoundToInt32.
    size.round() as i32 - r.replicas
}

/// Upstream `scale`: one active ReplicaSet takes all; a saturated new one retires the old;
/// otherwise a rolling deployment scales every active ReplicaSet in proportion.
pub fn scale(d: &Desired, new: Option<&Rs>, old: &[Rs]) -> Vec<(String, i32)> {
    if let Some(one) = active_or_latest(new, old) {
        return if one.replicas == d.replicas { Vec::new() } else { vec![(one.name, d.replicas)] };
    }
    let saturated = new.is_some_and(|n| {
        n.replicas == d.replicas
            && n.desired_annotation == Some(d.replicas)
            && n.available == d.replicas
    });
    if saturated {
        return active(old).into_iter().map(|r| (r.name, 0)).collect();
    }
    if d.strategy == Strategy::Recreate {
        return Vec::new();
    }
    let mut all = old.to_vec();
    all.extend(new.cloned());
    let mut all = active(&all);
    let allowed = if d.replicas > 0 { d.replicas + max_surge(d) } else { 0 };
    let to_add = allowed - sum(&all, |r| r.replicas);
    if to_add == 0 {
        return Vec::new();
    }
    // Up: biggest (then newest) first; down: biggest (then oldest) first.
    all.sort_by(|a, b| {
        b.replicas.cmp(&a.replicas).then_with(|| {
            if to_add > 0 {
                b.created.cmp(&a.created)
            } else {
                a.created.cmp(&b.created)
            }
        })
    });
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for r in &all {
        let proportion = if r.replicas == 0 || to_add == added {
            0
        } else if to_add > 0 {
            fraction(r, d).min(to_add - added)
        } else {
            fraction(r, d).max(to_add - added)
        };
        sizes.push((r.name.clone(), r.replicas + proportion));
        added += proportion;
    }
    if let Some(first) = sizes.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
        .into_iter()
        .filter(|(n, s)| all.iter().any(|r| &r.name == n && r.replicas != *s))
        .collect()
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
