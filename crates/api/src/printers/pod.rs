//! The pod row: READY, the STATUS reason (init progress, waiting and terminated reasons,
//! `Completed`, `Terminating`, ...), RESTARTS with the time of the last restart, and the
//! wide IP / NODE / NOMINATED NODE / READINESS GATES cells.

use super::{age, name, parse_time, since};
use crate::validation::json::{arr_at, at, int_at, str_at};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

fn restartable_init(spec_inits: &[Value], container_name: &str) -> bool {
    spec_inits.iter().any(|c| {
        str_at(c, &["name"]) == Some(container_name)
            && str_at(c, &["restartPolicy"]) == Some("Always")
    })
}

fn condition_true(pod: &Value, ty: &str) -> bool {
    arr_at(pod, &["status", "conditions"])
        .iter()
        .any(|c| str_at(c, &["type"]) == Some(ty) && str_at(c, &["status"]) == Some("True"))
}

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn last_terminated(status: &Value) -> Option<DateTime<Utc>> {
    str_at(status, &["lastState", "terminated", "finishedAt"]).and_then(parse_time)
}

/// The cells of a Pod row.
pub(crate) fn cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec_inits = arr_at(pod, &["spec", "initContainers"]);
    let mut total = arr_at(pod, &["spec", "containers"]).len();
    total += spec_inits.iter().filter(|c| str_at(c, &["restartPolicy"]) == Some("Always")).count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut sidecar_last_restart: Option<DateTime<Utc>> = None;

    let phase = str_at(pod, &["status", "phase"]).unwrap_or("");
    let mut reason = phase.to_string();
    if let Some(r) = str_at(pod, &["status", "reason"]).filter(|r| !r.is_empty()) {
        reason = r.to_string();
    }
    if arr_at(pod, &["status", "conditions"]).iter().any(|c| {
        str_at(c, &["type"]) == Some("PodScheduled")
            && str_at(c, &["reason"]) == Some("SchedulingGated")
    }) {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, cs) in arr_at(pod, &["status", "initContainerStatuses"]).iter().enumerate() {
        let cname = str_at(cs, &["name"]).unwrap_or("");
        let count = int_at(cs, &["restartCount"]).unwrap_or(0);
        restarts += count;
        last_restart = later(last_restart, last_terminated(cs));
        let sidecar = restartable_init(spec_inits, cname);
        if sidecar {
            sidecar_restarts += count;
            sidecar_last_restart = later(sidecar_last_restart, last_terminated(cs));
        }
        let terminated = at(cs, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting_reason = str_at(cs, &["state", "waiting", "reason"]).unwrap_or("");
        let exit = terminated.and_then(|t| int_at(t, &["exitCode"])).unwrap_or(0);
        if terminated.is_some() && exit == 0 {
            continue;
        }
        if sidecar && at(cs, &["started"]).and_then(Value::as_bool) == Some(true) {
            if at(cs, &["ready"]).and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let r = str_at(t, &["reason"]).unwrap_or("");
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else {
                match int_at(t, &["signal"]).filter(|s| *s != 0) {
                    Some(sig) => format!("Init:Signal:{sig}"),
                    None => format!("Init:ExitCode:{exit}"),
                }
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{}/{}", i, spec_inits.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for cs in arr_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int_at(cs, &["restartCount"]).unwrap_or(0);
            last_restart = later(last_restart, last_terminated(cs));
            let waiting = str_at(cs, &["state", "waiting", "reason"]).unwrap_or("");
            let terminated = at(cs, &["state", "terminated"]).filter(|t| t.is_object());
            let term_reason = terminated.and_then(|t| str_at(t, &["reason"])).unwrap_or("");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                if !term_reason.is_empty() {
                    reason = term_reason.to_string();
                } else {
                    reason = match int_at(t, &["signal"]).filter(|s| *s != 0) {
                        Some(sig) => format!("Signal:{sig}"),
                        None => format!("ExitCode:{}", int_at(t, &["exitCode"]).unwrap_or(0)),
                    };
                }
            } else if at(cs, &["ready"]).and_then(Value::as_bool) == Some(true)
                && at(cs, &["state", "running"]).is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason =
                if condition_true(pod, "Ready") { "Running".into() } else { "NotReady".into() };
        }
    }

    let deleting = str_at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|s| !s.is_empty());
    if deleting && str_at(pod, &["status", "reason"]) == Some("NodeLost") {
        reason = "Unknown".into();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".into();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", since(Some(&t.to_rfc3339()), now))
        }
        _ => restarts.to_string(),
    };

    let pod_ip = arr_at(pod, &["status", "podIPs"])
        .first()
        .and_then(|p| str_at(p, &["ip"]))
        .or_else(|| str_at(pod, &["status", "podIP"]))
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let node = str_at(pod, &["spec", "nodeName"]).filter(|s| !s.is_empty()).unwrap_or("<none>");
    let nominated =
        str_at(pod, &["status", "nominatedNodeName"]).filter(|s| !s.is_empty()).unwrap_or("<none>");
    let gates = arr_at(pod, &["spec", "readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conds = arr_at(pod, &["status", "conditions"]);
        let true_count = gates
            .iter()
            .filter(|g| {
                let ty = str_at(g, &["conditionType"]).unwrap_or("");
                conds
                    .iter()
                    .find(|c| str_at(c, &["type"]) == Some(ty))
                    .is_some_and(|c| str_at(c, &["status"]) == Some("True"))
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        age(pod, now),
        json!(pod_ip),
        json!(node),
        json!(nominated),
        json!(gates_cell),
    ]
}
