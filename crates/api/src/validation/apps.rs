//! Workload controllers (Deployment, ReplicaSet, StatefulSet, DaemonSet,
//! ReplicationController), batch (Job, CronJob), and the HPA and PDB rules.

use super::json::{arr_at, as_int, at, int_at, obj_at, str_at, string_map};
use super::meta::validate_labels;
use super::names::is_valid_path_segment_name;
use super::pod::{validate_pod_template, validate_pod_template_with};
use super::{go_quote, go_string_map, render_value, FieldError};
use serde_json::Value;

pub(crate) fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => validate_apps(kind, obj, old),
        "ReplicationController" => validate_rc(obj),
        "Job" => validate_job(obj, old),
        "CronJob" => validate_cronjob(obj),
        "HorizontalPodAutoscaler" => validate_hpa(obj),
        "PodDisruptionBudget" => validate_pdb(obj),
        _ => vec![],
    }
}

fn nonnegative(obj: &Value, path: &[&str], field: &str, errs: &mut Vec<FieldError>) {
    if let Some(v) = at(obj, path).filter(|v| !v.is_null()) {
        match as_int(v) {
            Some(n) if n >= 0 => {}
            _ => errs.push(FieldError::invalid(
                field,
                render_value(v),
                "must be greater than or equal to 0",
            )),
        }
    }
}

/// Go's `%#v` of a `metav1.LabelSelector`, as upstream prints immutable selectors.
pub(crate) fn go_label_selector(sel: Option<&Value>) -> String {
    let labels = match sel.and_then(|s| at(s, &["matchLabels"])) {
        Some(v) if v.is_object() => go_string_map(Some(v)),
        _ => "map[string]string(nil)".into(),
    };
    let exprs = sel.map(|s| arr_at(s, &["matchExpressions"])).unwrap_or(&[]);
    let exprs = if exprs.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = exprs
            .iter()
            .map(|e| {
                let values = arr_at(e, &["values"]);
                let values = if values.is_empty() {
                    "[]string(nil)".to_string()
                } else {
                    let v: Vec<String> =
                        values.iter().map(|x| go_quote(x.as_str().unwrap_or(""))).collect();
                    format!("[]string{{{}}}", v.join(", "))
                };
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                    go_quote(str_at(e, &["key"]).unwrap_or("")),
                    go_quote(str_at(e, &["operator"]).unwrap_or("")),
                    values
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// Whether a LabelSelector (`matchLabels` + `matchExpressions`) selects `labels`.
pub(crate) fn selector_matches(sel: &Value, labels: Option<&Value>) -> bool {
    let labels = string_map(labels);
    let get = |k: &str| labels.iter().find(|(lk, _)| lk == k).map(|(_, v)| v.as_str());
    for (k, v) in string_map(at(sel, &["matchLabels"])) {
        if get(&k) != Some(v.as_str()) {
            return false;
        }
    }
    for e in arr_at(sel, &["matchExpressions"]) {
        let key = str_at(e, &["key"]).unwrap_or("");
        let values: Vec<&str> = arr_at(e, &["values"]).iter().filter_map(Value::as_str).collect();
        let ok = match str_at(e, &["operator"]).unwrap_or("") {
            "In" => get(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => get(key).is_some(),
            "DoesNotExist" => get(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The shape of a LabelSelector at `path`.
fn validate_label_selector(sel: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = validate_labels(at(sel, &["matchLabels"]), &format!("{path}.matchLabels"));
    for (i, e) in arr_at(sel, &["matchExpressions"]).iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = arr_at(e, &["values"]);
        match str_at(e, &["operator"]).unwrap_or("") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{p}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{p}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(
                format!("{p}.operator"),
                go_quote(op),
                "not a valid selector operator",
            )),
        }
        let key = str_at(e, &["key"]).unwrap_or("");
        for msg in super::names::is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{p}.key"), go_quote(key), msg));
        }
    }
    errs
}

fn is_empty_selector(sel: &Value) -> bool {
    obj_at(sel, &["matchLabels"]).is_none_or(|m| m.is_empty())
        && arr_at(sel, &["matchExpressions"]).is_empty()
}

fn validate_apps(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    nonnegative(obj, &["spec", "replicas"], "spec.replicas", &mut errs);
    nonnegative(obj, &["spec", "minReadySeconds"], "spec.minReadySeconds", &mut errs);
    nonnegative(obj, &["spec", "revisionHistoryLimit"], "spec.revisionHistoryLimit", &mut errs);
    let template = at(obj, &["spec", "template"]);
    match at(obj, &["spec", "selector"]).filter(|s| s.is_object()) {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            errs.extend(validate_label_selector(sel, "spec.selector"));
            if is_empty_selector(sel) {
                let what = match kind {
                    "StatefulSet" => "statefulset",
                    "DaemonSet" => "daemonset",
                    _ => "deployment",
                };
                errs.push(FieldError::invalid(
                    "spec.selector",
                    go_label_selector(Some(sel)),
                    format!("empty selector is invalid for {what}"),
                ));
            } else if let Some(t) = template {
                let labels = at(t, &["metadata", "labels"]);
                if !selector_matches(sel, labels) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    // A StatefulSet's pods also get a volume per claim template.
    let claims: Vec<String> = arr_at(obj, &["spec", "volumeClaimTemplates"])
        .iter()
        .filter_map(|c| str_at(c, &["metadata", "name"]).map(String::from))
        .collect();
    errs.extend(validate_pod_template_with(template, "spec.template", &claims));
    if let Some(t) = template {
        if let Some(policy) = str_at(t, &["spec", "restartPolicy"]).filter(|p| *p != "Always") {
            errs.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                policy,
                &["Always"],
            ));
        }
        if kind != "StatefulSet"
            && at(t, &["spec", "activeDeadlineSeconds"]).is_some_and(|v| !v.is_null())
        {
            errs.push(FieldError::forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in ReplicaSet is not Supported",
            ));
        }
    }
    match kind {
        "Deployment" => errs.extend(validate_deployment_strategy(obj)),
        "StatefulSet" => {
            if let Some(p) = str_at(obj, &["spec", "podManagementPolicy"]).filter(|p| !p.is_empty())
            {
                if p != "OrderedReady" && p != "Parallel" {
                    errs.push(FieldError::not_supported(
                        "spec.podManagementPolicy",
                        p,
                        &["OrderedReady", "Parallel"],
                    ));
                }
            }
            if let Some(t) =
                str_at(obj, &["spec", "updateStrategy", "type"]).filter(|t| !t.is_empty())
            {
                if t != "RollingUpdate" && t != "OnDelete" {
                    errs.push(FieldError::not_supported(
                        "spec.updateStrategy.type",
                        t,
                        &["OnDelete", "RollingUpdate"],
                    ));
                }
            }
        }
        "DaemonSet" => {
            if let Some(t) =
                str_at(obj, &["spec", "updateStrategy", "type"]).filter(|t| !t.is_empty())
            {
                if t != "RollingUpdate" && t != "OnDelete" {
                    errs.push(FieldError::not_supported(
                        "spec.updateStrategy.type",
                        t,
                        &["OnDelete", "RollingUpdate"],
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        let new_sel = at(obj, &["spec", "selector"]);
        let old_sel = at(old, &["spec", "selector"]);
        if old_sel.is_some() && new_sel != old_sel {
            errs.push(FieldError::invalid(
                "spec.selector",
                go_label_selector(new_sel),
                "field is immutable",
            ));
        }
        if kind == "StatefulSet" {
            let strip = |v: &Value| -> Value {
                let mut spec = at(v, &["spec"]).cloned().unwrap_or(Value::Null);
                if let Some(m) = spec.as_object_mut() {
                    for k in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(k);
                    }
                }
                spec
            };
            if strip(obj) != strip(old) {
                errs.push(FieldError::forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
    }
    errs
}

fn int_or_percent_zero(v: Option<&Value>) -> bool {
    match v {
        Some(Value::String(s)) => s.trim_end_matches('%').parse::<i64>().ok() == Some(0),
        Some(other) => as_int(other) == Some(0),
        None => false,
    }
}

fn validate_deployment_strategy(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ty = str_at(obj, &["spec", "strategy", "type"]).unwrap_or("");
    match ty {
        "" | "RollingUpdate" => {
            let ru = at(obj, &["spec", "strategy", "rollingUpdate"]);
            let mu = ru.and_then(|r| at(r, &["maxUnavailable"]));
            let ms = ru.and_then(|r| at(r, &["maxSurge"]));
            if int_or_percent_zero(mu) && int_or_percent_zero(ms) {
                errs.push(FieldError::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    mu.map(render_value).unwrap_or_default(),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        "Recreate" => {
            if at(obj, &["spec", "strategy", "rollingUpdate"]).is_some_and(|v| !v.is_null()) {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    if let (Some(pd), min) = (
        int_at(obj, &["spec", "progressDeadlineSeconds"]),
        int_at(obj, &["spec", "minReadySeconds"]).unwrap_or(0),
    ) {
        if pd <= min {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                pd.to_string(),
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

fn validate_rc(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    nonnegative(obj, &["spec", "replicas"], "spec.replicas", &mut errs);
    let selector = at(obj, &["spec", "selector"]);
    if obj_at(obj, &["spec", "selector"]).is_none_or(|m| m.is_empty()) {
        errs.push(FieldError::required("spec.selector", ""));
    }
    let template = at(obj, &["spec", "template"]);
    if let (Some(sel), Some(t)) = (selector, template) {
        let labels = at(t, &["metadata", "labels"]);
        let want = string_map(Some(sel));
        let have = string_map(labels);
        if !want.is_empty() && !want.iter().all(|p| have.contains(p)) {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                go_string_map(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    errs.extend(validate_pod_template(template, "spec.template"));
    if let Some(policy) =
        template.and_then(|t| str_at(t, &["spec", "restartPolicy"])).filter(|p| *p != "Always")
    {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    errs
}

/// The JobSpec rules at `path` (a Job's `spec`, or a CronJob's `spec.jobTemplate.spec`).
fn validate_job_spec(spec: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Null;
    let spec = spec.unwrap_or(&empty);
    for f in ["parallelism", "completions", "backoffLimit"] {
        nonnegative(spec, &[f], &format!("{path}.{f}"), &mut errs);
    }
    if let Some(v) = at(spec, &["activeDeadlineSeconds"]).filter(|v| !v.is_null()) {
        if as_int(v).is_none_or(|n| n <= 0) {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                render_value(v),
                "must be greater than 0",
            ));
        }
    }
    if let Some(mode) = str_at(spec, &["completionMode"]).filter(|m| !m.is_empty()) {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                format!("{path}.completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
    }
    let template = at(spec, &["template"]);
    if let (Some(sel), Some(t)) = (at(spec, &["selector"]).filter(|s| s.is_object()), template) {
        errs.extend(validate_label_selector(sel, &format!("{path}.selector")));
        let labels = at(t, &["metadata", "labels"]);
        if !is_empty_selector(sel) && !selector_matches(sel, labels) {
            errs.push(FieldError::invalid(
                format!("{path}.template.metadata.labels"),
                go_string_map(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    errs.extend(validate_pod_template(template, &format!("{path}.template")));
    if let Some(t) = template {
        let policy = str_at(t, &["spec", "restartPolicy"]).unwrap_or("");
        if policy != "OnFailure" && policy != "Never" {
            errs.push(FieldError::not_supported(
                format!("{path}.template.spec.restartPolicy"),
                policy,
                &["OnFailure", "Never"],
            ));
        }
    }
    errs
}

fn validate_job(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = validate_job_spec(at(obj, &["spec"]), "spec");
    if let Some(old) = old {
        let new_t = at(obj, &["spec", "template"]);
        let old_t = at(old, &["spec", "template"]);
        // A suspended job that never started may change its scheduling directives; the rest
        // of the template is fixed.
        let strip = |t: Option<&Value>| -> Value {
            let mut t = t.cloned().unwrap_or(Value::Null);
            if old_never_started(old) {
                if let Some(spec) = t.get_mut("spec").and_then(Value::as_object_mut) {
                    for k in ["nodeSelector", "affinity", "tolerations", "schedulingGates"] {
                        spec.remove(k);
                    }
                }
                if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("labels");
                    meta.remove("annotations");
                }
            }
            t
        };
        if old_t.is_some() && strip(new_t) != strip(old_t) {
            errs.push(FieldError::invalid(
                "spec.template",
                new_t.map(|v| v.to_string()).unwrap_or_else(|| "null".into()),
                "field is immutable",
            ));
        }
        for f in ["selector", "completionMode"] {
            let (n, o) = (at(obj, &["spec", f]), at(old, &["spec", f]));
            if o.is_some() && n != o {
                let shown = if f == "selector" {
                    go_label_selector(n)
                } else {
                    n.map(render_value).unwrap_or_else(|| "null".into())
                };
                errs.push(FieldError::invalid(format!("spec.{f}"), shown, "field is immutable"));
            }
        }
    }
    errs
}

fn old_never_started(old: &Value) -> bool {
    at(old, &["spec", "suspend"]).and_then(Value::as_bool) == Some(true)
        && at(old, &["status", "startTime"]).is_none_or(Value::is_null)
}

fn validate_cronjob(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let schedule = str_at(obj, &["spec", "schedule"]).unwrap_or("");
    if schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else {
        if schedule.contains("TZ") {
            errs.push(FieldError::invalid(
                "spec.schedule",
                go_quote(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
        if let Err(msg) = super::cron::parse_cron(schedule) {
            errs.push(FieldError::invalid("spec.schedule", go_quote(schedule), msg));
        }
    }
    if let Some(p) = str_at(obj, &["spec", "concurrencyPolicy"]).filter(|p| !p.is_empty()) {
        if !["Allow", "Forbid", "Replace"].contains(&p) {
            errs.push(FieldError::not_supported(
                "spec.concurrencyPolicy",
                p,
                &["Allow", "Forbid", "Replace"],
            ));
        }
    }
    for f in ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        nonnegative(obj, &["spec", f], &format!("spec.{f}"), &mut errs);
    }
    errs.extend(validate_job_spec(
        at(obj, &["spec", "jobTemplate", "spec"]),
        "spec.jobTemplate.spec",
    ));
    errs
}

fn validate_hpa(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let kind = str_at(obj, &["spec", "scaleTargetRef", "kind"]).unwrap_or("");
    let name = str_at(obj, &["spec", "scaleTargetRef", "name"]).unwrap_or("");
    if kind.is_empty() {
        errs.push(FieldError::required("spec.scaleTargetRef.kind", ""));
    } else {
        for msg in is_valid_path_segment_name(kind) {
            errs.push(FieldError::invalid("spec.scaleTargetRef.kind", go_quote(kind), msg));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::required("spec.scaleTargetRef.name", ""));
    } else {
        for msg in is_valid_path_segment_name(name) {
            errs.push(FieldError::invalid("spec.scaleTargetRef.name", go_quote(name), msg));
        }
    }
    let min = int_at(obj, &["spec", "minReplicas"]);
    if let Some(m) = min.filter(|m| *m < 1) {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            m.to_string(),
            "must be greater than or equal to 1",
        ));
    }
    let max = int_at(obj, &["spec", "maxReplicas"]).unwrap_or(0);
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            max.to_string(),
            "must be greater than 0",
        ));
    }
    if let Some(m) = min {
        if max < m {
            errs.push(FieldError::invalid(
                "spec.maxReplicas",
                max.to_string(),
                "must be greater than or equal to `minReplicas`",
            ));
        }
    }
    errs
}

fn validate_pdb(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let min = at(obj, &["spec", "minAvailable"]).filter(|v| !v.is_null());
    let max = at(obj, &["spec", "maxUnavailable"]).filter(|v| !v.is_null());
    if let (Some(m), Some(_)) = (min, max) {
        errs.push(FieldError::invalid(
            "spec.minAvailable",
            render_value(m),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if let Some(sel) = at(obj, &["spec", "selector"]).filter(|s| s.is_object()) {
        errs.extend(validate_label_selector(sel, "spec.selector"));
    }
    errs
}
