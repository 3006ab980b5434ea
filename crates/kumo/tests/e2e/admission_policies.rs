//! CEL on writes: ValidatingAdmissionPolicies with their bindings (params from a ConfigMap,
//! Deny and Warn actions) and CustomResourceDefinitions' `x-kubernetes-validations` rules
//! (including a transition rule with `oldSelf`), driven by the real kubectl.

use crate::harness::Cluster;

const POLICIES: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: replica-limit, namespace: default}
data: {maxReplicas: "3"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: max-replicas}
spec:
  failurePolicy: Fail
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  variables:
  - {name: limit, expression: "int(params.data.maxReplicas)"}
  validations:
  - expression: "object.spec.replicas <= variables.limit"
    messageExpression: "'replicas must be no greater than ' + string(variables.limit)"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: max-replicas-default}
spec:
  policyName: max-replicas
  validationActions: [Deny]
  paramRef: {name: replica-limit, namespace: default, parameterNotFoundAction: Deny}
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: default}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: app-label}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}
  matchConditions:
  - {name: not-exempt, expression: "!has(object.metadata.labels) || !('exempt' in object.metadata.labels)"}
  validations:
  - {expression: "has(object.metadata.labels) && 'team' in object.metadata.labels", message: "deployments should carry a team label", reason: Forbidden}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: app-label-warn}
spec:
  policyName: app-label
  validationActions: [Warn]
"#;

#[test]
fn admission_policies_deny_with_params_and_warn() {
    let c = Cluster::start();
    let f = c.file("policies.yaml", POLICIES);
    c.kubectl(&["create", "-f", f.to_str().unwrap()]);
    let vap = c.kubectl(&["get", "validatingadmissionpolicy", "max-replicas"]);
    assert!(vap.contains("PARAMKIND") && vap.contains("v1/ConfigMap"), "{vap}");
    c.kubectl(&["create", "namespace", "other"]);

    // Too many replicas: 422 with upstream's wording, nothing stored.
    let out = c.kubectl_output(&["create", "deployment", "big", "--image=nginx", "--replicas=5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("deployments.apps \"big\" is invalid: : ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-default' denied request: replicas must be no greater than 3"),
        "{err}"
    );
    assert!(c.kubectl_fails(&["get", "deployment", "big"]).contains("NotFound"));
    // Within the limit: stored, with the Warn binding's warning for the missing label.
    let out = c.kubectl_output(&["create", "deployment", "small", "--image=nginx", "--replicas=2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'app-label' with binding 'app-label-warn': deployments should carry a team label"),
        "{err}"
    );
    assert_eq!(c.get_json(&["deployment", "small"])["spec"]["replicas"], 2);
    // Updates are checked too.
    let err =
        c.kubectl_fails(&["patch", "deployment", "small", "-p", r#"{"spec":{"replicas":4}}"#]);
    assert!(err.contains("replicas must be no greater than 3"), "{err}");
    assert_eq!(c.get_json(&["deployment", "small"])["spec"]["replicas"], 2);
    // Raising the param raises the limit at once.
    c.kubectl(&["patch", "configmap", "replica-limit", "-p", r#"{"data":{"maxReplicas":"4"}}"#]);
    c.kubectl(&["patch", "deployment", "small", "-p", r#"{"spec":{"replicas":4}}"#]);
    // The binding selects the default namespace only; a matchCondition exempts labelled ones.
    let out = c.kubectl_output(&[
        "-n",
        "other",
        "create",
        "deployment",
        "big",
        "--image=nginx",
        "--replicas=9",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let labelled = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: quiet, labels: {exempt: \"yes\"}}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: nginx}]}\n";
    let out = c.kubectl_stdin(&["create", "-f", "-"], labelled);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("Warning"), "{err}");
    // Without its param the Deny binding denies (parameterNotFoundAction: Deny).
    c.kubectl(&["delete", "configmap", "replica-limit"]);
    let err = c.kubectl_fails(&["create", "deployment", "tiny", "--image=nginx"]);
    assert!(err.contains("no params found for policy binding"), "{err}");
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: databases.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: databases, singular: database, kind: Database}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.replicas"
              message: "replicas must be at least minReplicas"
            - rule: "!has(self.tier) || self.tier != 'gold' || self.replicas >= 3"
              messageExpression: "'gold needs 3 replicas, not ' + string(self.replicas)"
              fieldPath: ".replicas"
            properties:
              replicas: {type: integer}
              minReplicas: {type: integer}
              tier: {type: string}
              storageClass:
                type: string
                x-kubernetes-validations:
                - {rule: "self == oldSelf", message: "storageClass is immutable"}
"#;

#[test]
fn crd_validation_rules_reject_bad_objects_and_transitions() {
    let c = Cluster::start();
    let f = c.file("crd.yaml", CRD);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/databases.example.com",
        "--timeout=10s",
    ]);
    let db = |replicas: i64, tier: &str, class: &str| {
        format!("apiVersion: example.com/v1\nkind: Database\nmetadata: {{name: db}}\nspec: {{replicas: {replicas}, minReplicas: 2, tier: {tier}, storageClass: {class}}}\n")
    };
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &db(1, "silver", "fast"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("The Database \"db\" is invalid: spec: Invalid value: \"object\": replicas must be at least minReplicas"),
        "{err}"
    );
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &db(2, "gold", "fast"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.replicas: Invalid value: \"object\": gold needs 3 replicas, not 2"),
        "{err}"
    );
    assert!(c.kubectl_fails(&["get", "database", "db"]).contains("NotFound"));
    // A valid object is stored; the transition rule then keeps storageClass as it was.
    c.kubectl_in(&["apply", "-f", "-"], &db(3, "gold", "fast"));
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &db(3, "gold", "slow"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.storageClass: Invalid value: \"string\": storageClass is immutable"),
        "{err}"
    );
    assert_eq!(c.get_json(&["database", "db"])["spec"]["storageClass"], "fast");
    c.kubectl_in(&["apply", "-f", "-"], &db(4, "gold", "fast"));
    assert_eq!(c.get_json(&["database", "db"])["spec"]["replicas"], 4);
}
