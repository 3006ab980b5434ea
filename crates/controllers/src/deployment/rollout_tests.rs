//! Table tests of the rollout math, and a simulated rollout that checks the surge and
//! availability bounds at every step.

use super::*;

fn rs(name: &str, replicas: i32, available: i32, created: i64) -> Rs {
    Rs {
        name: name.into(),
        replicas,
        actual: replicas,
        available,
        created,
        desired_annotation: None,
        max_annotation: None,
    }
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

fn rolling(replicas: i32) -> Desired {
    Desired {
        replicas,
        strategy: resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), replicas),
        paused: false,
        status_replicas: replicas,
    }
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    let cases = [
        (4, "25%", "25%", 1, 1),
        (10, "25%", "25%", 3, 2),
        (1, "25%", "25%", 1, 0),
        (3, "0%", "0%", 0, 1),
        (5, "50%", "100%", 3, 5),
    ];
    for (replicas, surge, unavailable, want_surge, want_unavailable) in cases {
        assert_eq!(
            resolve_fenceposts(Some(&pct(surge)), Some(&pct(unavailable)), replicas),
            Strategy::RollingUpdate { max_surge: want_surge, max_unavailable: want_unavailable },
            "{replicas} {surge} {unavailable}"
        );
    }
    let ints = resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(0)), 4);
    assert_eq!(ints, Strategy::RollingUpdate { max_surge: 2, max_unavailable: 0 });
}

#[test]
fn rolling_steps_on_four_replicas() {
    let d = rolling(4);
    let old = rs("old", 4, 4, 1);
    // No new RS yet: create it with the surge.
    assert_eq!(plan(&d, None, std::slice::from_ref(&old)).create_new, Some(1));
    // New RS (not available yet) at the surge: scale old down by maxUnavailable.
    let new = rs("new", 1, 0, 2);
    assert_eq!(plan(&d, Some(&new), std::slice::from_ref(&old)).scale, [("old".to_string(), 3)]);
    // Old at 3: there is room to surge the new one again.
    let old = rs("old", 3, 3, 1);
    assert_eq!(plan(&d, Some(&new), std::slice::from_ref(&old)).scale, [("new".to_string(), 2)]);
    // New at 2, none available: 5 pods, 3 available = minimum; nothing may go.
    let new = rs("new", 2, 0, 2);
    assert_eq!(plan(&d, Some(&new), std::slice::from_ref(&old)), Plan::default());
}

#[test]
fn rolling_steps_on_ten_replicas() {
    let d = rolling(10);
    let old = rs("old", 10, 10, 1);
    assert_eq!(plan(&d, None, std::slice::from_ref(&old)).create_new, Some(3));
    let new = rs("new", 3, 0, 2);
    assert_eq!(plan(&d, Some(&new), std::slice::from_ref(&old)).scale, [("old".to_string(), 8)]);
    let old = rs("old", 8, 8, 1);
    assert_eq!(plan(&d, Some(&new), std::slice::from_ref(&old)).scale, [("new".to_string(), 5)]);
}

#[test]
fn unhealthy_old_pods_are_removed_first() {
    let d = rolling(4);
    let older = rs("older", 2, 0, 1);
    let old = rs("old", 2, 2, 2);
    let new = rs("new", 1, 0, 3);
    // 5 pods, min available 3, new unavailable 1 → may scale down 1; the unhealthy RS pays.
    let p = plan(&d, Some(&new), &[old, older]);
    assert_eq!(p.scale, [("older".to_string(), 1)]);
}

/// Drive a whole rollout; pods of a scaled-up RS become available one step later.
fn simulate(d: &Desired, mut old: Vec<Rs>) -> usize {
    let (surge, unavailable) = match d.strategy {
        Strategy::RollingUpdate { max_surge, max_unavailable } => (max_surge, max_unavailable),
        Strategy::Recreate => (0, d.replicas),
    };
    let mut new: Option<Rs> = None;
    for step in 0..100 {
        let p = plan(d, new.as_ref(), &old);
        // Availability catches up with the previous step's sizes.
        for r in old.iter_mut().chain(new.iter_mut()) {
            r.available = r.replicas;
            r.actual = r.replicas;
        }
        if let Some(n) = p.create_new {
            new = Some(Rs { name: "new".into(), replicas: n, created: 99, ..Default::default() });
        }
        for (name, size) in &p.scale {
            for r in old.iter_mut().chain(new.iter_mut()) {
                if &r.name == name {
                    r.replicas = *size;
                    r.available = r.available.min(*size);
                    r.actual = r.actual.min(*size);
                }
            }
        }
        let all: Vec<&Rs> = old.iter().chain(new.iter()).collect();
        let total: i32 = all.iter().map(|r| r.replicas).sum();
        let available: i32 = all.iter().map(|r| r.available).sum();
        assert!(total <= d.replicas + surge, "step {step}: {total} pods > {}", d.replicas + surge);
        assert!(available >= d.replicas - unavailable, "step {step}: only {available} available");
        let done = new.as_ref().is_some_and(|n| n.replicas == d.replicas)
            && old.iter().all(|r| r.replicas == 0);
        if done && p == Plan::default() {
            return step;
        }
    }
    panic!("rollout did not finish in 100 steps");
}

#[test]
fn simulated_rollouts_respect_surge_and_unavailability_and_finish() {
    for replicas in [1, 2, 3, 4, 5, 10, 17] {
        simulate(&rolling(replicas), vec![rs("old", replicas, replicas, 1)]);
    }
    let strict = Desired {
        replicas: 3,
        strategy: resolve_fenceposts(Some(&IntOrString::Int(1)), Some(&IntOrString::Int(0)), 3),
        paused: false,
        status_replicas: 3,
    };
    simulate(&strict, vec![rs("old", 3, 3, 1)]);
}

#[test]
fn recreate_kills_old_then_waits_then_creates() {
    let d =
        Desired { replicas: 3, strategy: Strategy::Recreate, paused: false, status_replicas: 3 };
    let old = rs("old", 3, 3, 1);
    assert_eq!(plan(&d, None, std::slice::from_ref(&old)).scale, [("old".to_string(), 0)]);
    let draining = Rs { replicas: 0, actual: 2, ..old.clone() };
    assert_eq!(plan(&d, None, std::slice::from_ref(&draining)), Plan::default());
    let gone = Rs { replicas: 0, actual: 0, ..old };
    assert_eq!(plan(&d, None, std::slice::from_ref(&gone)).create_new, Some(3));
    let new = rs("new", 0, 0, 2);
    assert_eq!(plan(&d, Some(&new), &[gone]).scale, [("new".to_string(), 3)]);
}

#[test]
fn paused_deployments_scale_but_do_not_roll_out() {
    let mut d = rolling(4);
    d.paused = true;
    let old = Rs { desired_annotation: Some(4), ..rs("old", 4, 4, 1) };
    assert_eq!(plan(&d, None, std::slice::from_ref(&old)), Plan::default());
    d.replicas = 6;
    assert_eq!(plan(&d, None, &[old]).scale, [("old".to_string(), 6)]);
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    // The documented example: 10 replicas, maxSurge 3, maxUnavailable 2, a rollout stuck with
    // 8 old and 5 new pods; scaling to 15 adds 3 to the old and 2 to the new ReplicaSet.
    let strategy = Strategy::RollingUpdate { max_surge: 3, max_unavailable: 2 };
    let d = Desired { replicas: 15, strategy, paused: false, status_replicas: 13 };
    let annotate = |r: Rs| Rs { desired_annotation: Some(10), max_annotation: Some(13), ..r };
    let old = annotate(rs("old", 8, 8, 1));
    let new = annotate(rs("new", 5, 0, 2));
    assert!(is_scaling_event(&d, Some(&new), std::slice::from_ref(&old)));
    let mut p = plan(&d, Some(&new), &[old]).scale;
    p.sort();
    assert_eq!(p, [("new".to_string(), 7), ("old".to_string(), 11)]);
}

#[test]
fn scaling_to_zero_and_back_uses_the_latest_replicaset() {
    let d = Desired { replicas: 0, ..rolling(3) };
    let new = Rs { desired_annotation: Some(3), ..rs("new", 3, 3, 2) };
    assert_eq!(plan(&d, Some(&new), &[]).scale, [("new".to_string(), 0)]);
    let d = rolling(2);
    let zero = Rs { desired_annotation: Some(0), ..rs("new", 0, 0, 2) };
    assert_eq!(plan(&d, Some(&zero), &[]).scale, [("new".to_string(), 2)]);
}
