//! Validation of the cluster-plumbing kinds: admission policies, bindings and webhook
//! configurations, APIServices, CertificateSigningRequests, flow control, RuntimeClasses,
//! CSI objects, ServiceCIDRs, IPAddresses and events.k8s.io Events — their main fields, with
//! upstream's paths and wording.

use super::json::{arr_at, at, int_at, str_at, str_or_empty};
use super::names::{is_dns1123_label, is_dns1123_subdomain, is_qualified_name};
use super::{go_quote, FieldError};
use crate::cel::Program;
use serde_json::Value;

type Errs = Vec<FieldError>;

fn required(errs: &mut Errs, obj: &Value, path: &[&str]) {
    if str_at(obj, path).is_none_or(str::is_empty)
        && !at(obj, path).is_some_and(|v| v.is_object() || v.is_number())
    {
        errs.push(FieldError::required(path.join("."), ""));
    }
}

fn one_of(errs: &mut Errs, obj: &Value, path: &[&str], allowed: &[&str]) {
    if let Some(v) = str_at(obj, path) {
        if !allowed.contains(&v) {
            errs.push(FieldError::not_supported(path.join("."), v, allowed));
        }
    }
}

/// Validate `obj` of `kind`; kinds this module does not know give no errors.
pub(crate) fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Errs {
    let mut errs = Vec::new();
    match kind {
        "ValidatingAdmissionPolicy" => admission_policy(&mut errs, obj),
        "ValidatingAdmissionPolicyBinding" => policy_binding(&mut errs, obj),
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
            webhooks(&mut errs, obj)
        }
        "APIService" => api_service(&mut errs, obj),
        "CertificateSigningRequest" => csr(&mut errs, obj, old),
        "FlowSchema" => {
            required(&mut errs, obj, &["spec", "priorityLevelConfiguration", "name"]);
            let p = int_at(obj, &["spec", "matchingPrecedence"]).unwrap_or(1000);
            if !(1..=10000).contains(&p) {
                errs.push(FieldError::invalid(
                    "spec.matchingPrecedence",
                    p.to_string(),
                    "must be between 1 and 10000, inclusive",
                ));
            }
            one_of(
                &mut errs,
                obj,
                &["spec", "distinguisherMethod", "type"],
                &["ByUser", "ByNamespace"],
            );
        }
        "PriorityLevelConfiguration" => priority_level(&mut errs, obj),
        "RuntimeClass" => {
            let handler = str_or_empty(obj, &["handler"]);
            if handler.is_empty() {
                errs.push(FieldError::required("handler", ""));
            }
            for m in if handler.is_empty() { vec![] } else { is_dns1123_label(handler) } {
                errs.push(FieldError::invalid("handler", go_quote(handler), m));
            }
        }
        "CSIDriver" => {
            for (i, m) in arr_at(obj, &["spec", "volumeLifecycleModes"]).iter().enumerate() {
                let v = m.as_str().unwrap_or("");
                if !["Persistent", "Ephemeral"].contains(&v) {
                    errs.push(FieldError::not_supported(
                        format!("spec.volumeLifecycleModes[{i}]"),
                        v,
                        &["Ephemeral", "Persistent"],
                    ));
                }
            }
            one_of(
                &mut errs,
                obj,
                &["spec", "fsGroupPolicy"],
                &["File", "None", "ReadWriteOnceWithFSType"],
            );
        }
        "CSINode" => {
            for (i, d) in arr_at(obj, &["spec", "drivers"]).iter().enumerate() {
                for f in ["name", "nodeID"] {
                    if str_or_empty(d, &[f]).is_empty() {
                        errs.push(FieldError::required(format!("spec.drivers[{i}].{f}"), ""));
                    }
                }
            }
        }
        "VolumeAttachment" => {
            required(&mut errs, obj, &["spec", "attacher"]);
            required(&mut errs, obj, &["spec", "nodeName"]);
            let pv =
                at(obj, &["spec", "source", "persistentVolumeName"]).is_some_and(|v| !v.is_null());
            let inline =
                at(obj, &["spec", "source", "inlineVolumeSpec"]).is_some_and(|v| !v.is_null());
            if pv == inline {
                errs.push(FieldError::required(
                    "spec.source",
                    "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
                ));
            }
        }
        "CSIStorageCapacity" => {
            let sc = str_or_empty(obj, &["storageClassName"]);
            if sc.is_empty() {
                errs.push(FieldError::required("storageClassName", ""));
            }
        }
        "ServiceCIDR" => service_cidr(&mut errs, obj),
        "IPAddress" => ip_address(&mut errs, obj),
        "Event" if obj["apiVersion"] == "events.k8s.io/v1" => {
            for f in ["eventTime", "reportingController", "reportingInstance", "action", "reason"] {
                required(&mut errs, obj, &[f]);
            }
            one_of(&mut errs, obj, &["type"], &["Normal", "Warning"]);
        }
        _ => {}
    }
    errs
}

fn match_resources(errs: &mut Errs, m: &Value, path: &str, need_rules: bool) {
    let rules = arr_at(m, &["resourceRules"]);
    if need_rules && rules.is_empty() {
        errs.push(FieldError::required(format!("{path}.resourceRules"), ""));
    }
    for (i, r) in rules.iter().enumerate() {
        for f in ["apiGroups", "apiVersions", "operations", "resources"] {
            if arr_at(r, &[f]).is_empty() {
                errs.push(FieldError::required(format!("{path}.resourceRules[{i}].{f}"), ""));
            }
        }
        for (j, op) in arr_at(r, &["operations"]).iter().enumerate() {
            let op = op.as_str().unwrap_or("");
            let allowed = ["*", "CREATE", "UPDATE", "DELETE", "CONNECT"];
            if !allowed.contains(&op) {
                errs.push(FieldError::not_supported(
                    format!("{path}.resourceRules[{i}].operations[{j}]"),
                    op,
                    &allowed,
                ));
            }
        }
    }
    one_of(errs, m, &["matchPolicy"], &["Equivalent", "Exact"]);
}

fn expression(errs: &mut Errs, v: &Value, path: String) {
    let expr = str_or_empty(v, &["expression"]);
    if expr.trim().is_empty() {
        errs.push(FieldError::required(path, ""));
    } else if let Err(e) = Program::compile(expr) {
        errs.push(FieldError::invalid(path, go_quote(expr), e.to_string()));
    }
}

fn admission_policy(errs: &mut Errs, obj: &Value) {
    let spec = &obj["spec"];
    match spec.get("matchConstraints").filter(|m| m.is_object()) {
        Some(m) => match_resources(errs, m, "spec.matchConstraints", true),
        None => errs.push(FieldError::required("spec.matchConstraints", "")),
    }
    let validations = arr_at(spec, &["validations"]);
    if validations.is_empty() && arr_at(spec, &["auditAnnotations"]).is_empty() {
        errs.push(FieldError::required(
            "spec.validations",
            "validations or auditAnnotations must contain at least one item",
        ));
    }
    for (i, v) in validations.iter().enumerate() {
        expression(errs, v, format!("spec.validations[{i}].expression"));
        if let Some(m) = str_at(v, &["messageExpression"]) {
            if let Err(e) = Program::compile(m) {
                errs.push(FieldError::invalid(
                    format!("spec.validations[{i}].messageExpression"),
                    go_quote(m),
                    e.to_string(),
                ));
            }
        }
        let reasons = ["Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge"];
        one_of(errs, v, &["reason"], &reasons);
    }
    for (i, v) in arr_at(spec, &["variables"]).iter().enumerate() {
        if str_or_empty(v, &["name"]).is_empty() {
            errs.push(FieldError::required(format!("spec.variables[{i}].name"), ""));
        }
        expression(errs, v, format!("spec.variables[{i}].expression"));
    }
    for (i, c) in arr_at(spec, &["matchConditions"]).iter().enumerate() {
        let name = str_or_empty(c, &["name"]);
        for m in is_qualified_name(name) {
            errs.push(FieldError::invalid(
                format!("spec.matchConditions[{i}].name"),
                go_quote(name),
                m,
            ));
        }
        expression(errs, c, format!("spec.matchConditions[{i}].expression"));
    }
    one_of(errs, obj, &["spec", "failurePolicy"], &["Fail", "Ignore"]);
    if let Some(pk) = spec.get("paramKind").filter(|p| p.is_object()) {
        for f in ["apiVersion", "kind"] {
            if str_or_empty(pk, &[f]).is_empty() {
                errs.push(FieldError::required(format!("spec.paramKind.{f}"), ""));
            }
        }
    }
}

fn policy_binding(errs: &mut Errs, obj: &Value) {
    let spec = &obj["spec"];
    if str_or_empty(spec, &["policyName"]).is_empty() {
        errs.push(FieldError::required("spec.policyName", ""));
    }
    let actions: Vec<&str> =
        arr_at(spec, &["validationActions"]).iter().filter_map(Value::as_str).collect();
    if actions.is_empty() {
        errs.push(FieldError::required(
            "spec.validationActions",
            "at least one validation action is required",
        ));
    }
    for (i, a) in actions.iter().enumerate() {
        if !["Deny", "Warn", "Audit"].contains(a) {
            errs.push(FieldError::not_supported(
                format!("spec.validationActions[{i}]"),
                a,
                &["Audit", "Deny", "Warn"],
            ));
        } else if actions[..i].contains(a) {
            errs.push(FieldError::duplicate(format!("spec.validationActions[{i}]"), go_quote(a)));
        }
    }
    if actions.contains(&"Deny") && actions.contains(&"Warn") {
        errs.push(FieldError::invalid("spec.validationActions", format!("{actions:?}"), "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)"));
    }
    if let Some(p) = spec.get("paramRef").filter(|p| p.is_object()) {
        let named = !str_or_empty(p, &["name"]).is_empty();
        let selected = p.get("selector").is_some_and(|s| !s.is_null());
        if named == selected {
            errs.push(FieldError::forbidden(
                "spec.paramRef.name",
                "one of name or selector must be specified",
            ));
        }
        match str_at(p, &["parameterNotFoundAction"]) {
            None => errs.push(FieldError::required("spec.paramRef.parameterNotFoundAction", "")),
            Some(a) if !["Allow", "Deny"].contains(&a) => errs.push(FieldError::not_supported(
                "spec.paramRef.parameterNotFoundAction",
                a,
                &["Allow", "Deny"],
            )),
            _ => {}
        }
    }
    if let Some(m) = spec.get("matchResources").filter(|m| m.is_object()) {
        match_resources(errs, m, "spec.matchResources", false);
    }
}

fn webhooks(errs: &mut Errs, obj: &Value) {
    let mut names: Vec<&str> = Vec::new();
    for (i, h) in arr_at(obj, &["webhooks"]).iter().enumerate() {
        let p = format!("webhooks[{i}]");
        let name = str_or_empty(h, &["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else if names.contains(&name) {
            errs.push(FieldError::duplicate(format!("{p}.name"), go_quote(name)));
        } else if name.split('.').count() < 3 {
            errs.push(FieldError::invalid(
                format!("{p}.name"),
                go_quote(name),
                "should be a domain with at least three segments separated by dots",
            ));
        }
        names.push(name);
        match str_at(h, &["sideEffects"]) {
            None => errs.push(FieldError::required(
                format!("{p}.sideEffects"),
                "must specify one of None, NoneOnDryRun",
            )),
            Some(s) if !["None", "NoneOnDryRun"].contains(&s) => errs.push(
                FieldError::not_supported(format!("{p}.sideEffects"), s, &["None", "NoneOnDryRun"]),
            ),
            _ => {}
        }
        if arr_at(h, &["admissionReviewVersions"]).is_empty() {
            errs.push(FieldError::required(
                format!("{p}.admissionReviewVersions"),
                "must specify one of v1, v1beta1",
            ));
        }
        let url = at(h, &["clientConfig", "url"]).is_some_and(|v| !v.is_null());
        let svc = at(h, &["clientConfig", "service"]).is_some_and(|v| !v.is_null());
        if url == svc {
            errs.push(FieldError::required(
                format!("{p}.clientConfig"),
                "exactly one of url or service is required",
            ));
        }
        one_of(errs, h, &["failurePolicy"], &["Fail", "Ignore"]);
        if let Some(t) = int_at(h, &["timeoutSeconds"]) {
            if !(1..=30).contains(&t) {
                errs.push(FieldError::invalid(
                    format!("{p}.timeoutSeconds"),
                    t.to_string(),
                    "the timeout value must be between 1 and 30 seconds",
                ));
            }
        }
    }
}

fn api_service(errs: &mut Errs, obj: &Value) {
    let spec = &obj["spec"];
    let version = str_or_empty(spec, &["version"]);
    let group = str_or_empty(spec, &["group"]);
    if version.is_empty() {
        errs.push(FieldError::required("spec.version", ""));
    }
    let name = str_or_empty(obj, &["metadata", "name"]);
    if !version.is_empty() && name != format!("{version}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            go_quote(name),
            format!("must be {version}.{group}"),
        ));
    }
    let gp = int_at(spec, &["groupPriorityMinimum"]).unwrap_or(0);
    if !(1..=20000).contains(&gp) {
        errs.push(FieldError::invalid(
            "spec.groupPriorityMinimum",
            gp.to_string(),
            "must be positive and less than 20000",
        ));
    }
    let vp = int_at(spec, &["versionPriority"]).unwrap_or(0);
    if !(1..=1000).contains(&vp) {
        errs.push(FieldError::invalid(
            "spec.versionPriority",
            vp.to_string(),
            "must be positive and less than 1000",
        ));
    }
}

fn csr(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let request = str_or_empty(obj, &["spec", "request"]);
    let pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, request)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    if !pem.contains("-----BEGIN CERTIFICATE REQUEST-----") {
        errs.push(FieldError::invalid(
            "spec.request",
            "[]byte(nil)",
            "PEM block type must be CERTIFICATE REQUEST",
        ));
    }
    let signer = str_or_empty(obj, &["spec", "signerName"]);
    if signer.is_empty() {
        errs.push(FieldError::required("spec.signerName", ""));
    } else {
        let (domain, path) = signer.split_once('/').unwrap_or((signer, ""));
        if path.is_empty() || !is_dns1123_subdomain(domain).is_empty() {
            errs.push(FieldError::invalid(
                "spec.signerName",
                go_quote(signer),
                "must be a fully qualified domain and path of the form 'example.com/signer-name'",
            ));
        }
    }
    if let Some(s) = int_at(obj, &["spec", "expirationSeconds"]) {
        if s < 600 {
            errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                s.to_string(),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    if let Some(old) = old {
        if old["spec"] != obj["spec"] {
            errs.push(FieldError::forbidden("spec", "field is immutable"));
        }
    }
}

fn priority_level(errs: &mut Errs, obj: &Value) {
    let spec = &obj["spec"];
    match str_at(spec, &["type"]) {
        Some("Limited") => {
            if !spec["limited"].is_object() {
                errs.push(FieldError::required(
                    "spec.limited",
                    "must not be empty when type is Limited",
                ));
            }
            let t = str_or_empty(spec, &["limited", "limitResponse", "type"]);
            if !t.is_empty() && t != "Queue" && t != "Reject" {
                errs.push(FieldError::not_supported(
                    "spec.limited.limitResponse.type",
                    t,
                    &["Queue", "Reject"],
                ));
            }
        }
        Some("Exempt") => {
            if spec["limited"].is_object() {
                errs.push(FieldError::forbidden(
                    "spec.limited",
                    "must be nil if the type is not Limited",
                ));
            }
        }
        Some(other) => {
            errs.push(FieldError::not_supported("spec.type", other, &["Exempt", "Limited"]))
        }
        None => errs.push(FieldError::required("spec.type", "")),
    }
}

fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn service_cidr(errs: &mut Errs, obj: &Value) {
    let cidrs = arr_at(obj, &["spec", "cidrs"]);
    if cidrs.is_empty() {
        errs.push(FieldError::required("spec.cidrs", ""));
    }
    if cidrs.len() > 2 {
        errs.push(FieldError::too_many("spec.cidrs", cidrs.len(), 2));
    }
    for (i, c) in cidrs.iter().enumerate() {
        let s = c.as_str().unwrap_or("");
        if parse_cidr(s).is_none() {
            errs.push(FieldError::invalid(
                format!("spec.cidrs[{i}]"),
                go_quote(s),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
}

fn ip_address(errs: &mut Errs, obj: &Value) {
    let name = str_or_empty(obj, &["metadata", "name"]);
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.to_string() == name => {}
        Ok(ip) => errs.push(FieldError::invalid(
            "metadata.name",
            go_quote(name),
            format!("must be in canonical form (\"{ip}\")"),
        )),
        Err(_) => errs.push(FieldError::invalid(
            "metadata.name",
            go_quote(name),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )),
    }
    if !obj["spec"]["parentRef"].is_object() {
        errs.push(FieldError::required("spec.parentRef", ""));
    } else {
        for f in ["resource", "name"] {
            required(errs, obj, &["spec", "parentRef", f]);
        }
    }
}
