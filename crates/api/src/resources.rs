//! The catalog of resources the API serves: for each, its group, version, kind, plural and
//! singular names, short names, scope, verbs, categories and subresources — what discovery,
//! `kubectl api-resources` and the registry's routing read.
//!
//! Built-in resources are listed in [`builtin`]; custom resources join at run time from their
//! CustomResourceDefinitions (the API server builds a [`Resource`] from each CRD).

use serde_json::Value;

/// One resource (a REST collection) of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// API group; `""` for the core group.
    pub group: String,
    /// Version served (kumo serves one version per group of a kind).
    pub version: String,
    /// Kind of the objects.
    pub kind: String,
    /// Lower-case plural used in URLs (`deployments`).
    pub plural: String,
    /// Lower-case singular (`deployment`).
    pub singular: String,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether the `status` subresource exists.
    pub status: bool,
    /// Whether the `scale` subresource exists, and where it reads replicas.
    pub scale: Option<ScalePaths>,
    /// Name of the schema definition (`io.k8s.api.apps.v1.Deployment`) for built-ins.
    pub definition: Option<String>,
    /// A custom resource's structural schema (`openAPIV3Schema`).
    pub crd_schema: Option<Value>,
    /// A custom resource's additional printer columns.
    pub printer_columns: Vec<Value>,
    /// Verbs served (`create`, `delete`, ...).
    pub verbs: Vec<&'static str>,
    /// Whether objects are reviews: created to ask a question, answered, never stored.
    pub create_only: bool,
}

/// Where the scale subresource finds its numbers (JSON paths as dotted field names).
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    /// `.spec.replicas`.
    pub spec_replicas: String,
    /// `.status.replicas`.
    pub status_replicas: String,
    /// `.status.labelSelector` or `.spec.selector`.
    pub label_selector: Option<String>,
}

impl ScalePaths {
    fn standard() -> Self {
        ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".spec.selector".into()),
        }
    }
}

/// The category of the kinds that extend the API (`kubectl get api-extensions`).
const API_EXTENSIONS: &str = "api-extensions";

/// The verbs of an ordinary read-write collection.
pub const ALL_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

impl Resource {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group`, or `plural` for the core group (the key of RBAC and of error messages).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The store key prefix of this resource's objects: `/registry/<group>/<plural>/`.
    pub fn key_prefix(&self) -> String {
        // events.k8s.io/v1 Event is a view of the core Event, stored once as upstream does.
        if self.group.is_empty() || self.group == "events.k8s.io" && self.plural == "events" {
            format!("/registry/core/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{}/{}", self.key_prefix(), ns, name),
            _ => format!("{}{}", self.key_prefix(), name),
        }
    }
}

struct B(Resource);

impl B {
    fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> B {
        let definition = definition_name(group, version, kind);
        B(Resource {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            short_names: vec![],
            namespaced,
            categories: vec![],
            status: false,
            scale: None,
            definition: Some(definition),
            crd_schema: None,
            printer_columns: vec![],
            verbs: ALL_VERBS.to_vec(),
            create_only: false,
        })
    }
    fn short(mut self, names: &[&str]) -> B {
        self.0.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
    fn all(mut self) -> B {
        self.0.categories = vec!["all".into()];
        self
    }
    fn status(mut self) -> B {
        self.0.status = true;
        self
    }
    fn scale(mut self) -> B {
        self.0.scale = Some(ScalePaths::standard());
        self
    }
    fn categories(mut self, names: &[&str]) -> B {
        self.0.categories = names.iter().map(|s| s.to_string()).collect();
        self
    }
    fn verbs(mut self, verbs: &[&'static str]) -> B {
        self.0.verbs = verbs.to_vec();
        self
    }
    /// A review: created to ask a question, answered in its status, never stored.
    fn review(mut self) -> B {
        self.0.verbs = vec!["create"];
        self.0.create_only = true;
        self
    }
}

/// The OpenAPI definition name of a built-in kind.
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let pkg = match group {
        "" => "core".to_string(),
        "apiextensions.k8s.io" => {
            return format!(
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{kind}"
            )
        }
        "apiregistration.k8s.io" => {
            return format!("io.k8s.kube-aggregator.pkg.apis.apiregistration.{version}.{kind}")
        }
        "flowcontrol.apiserver.k8s.io" => "flowcontrol".to_string(),
        g => g.trim_end_matches(".k8s.io").replace(".authorization", "").to_string(),
    };
    let pkg = match pkg.as_str() {
        "rbac" => "rbac".to_string(),
        p => p.to_string(),
    };
    format!("io.k8s.api.{pkg}.{version}.{kind}")
}

/// Every built-in resource kumo serves.
pub fn builtin() -> Vec<Resource> {
    let crd_verbs = ALL_VERBS;
    vec![
        B::new("", "v1", "Namespace", "namespaces", false)
            .short(&["ns"])
            .status()
            .verbs(&["create", "delete", "get", "list", "patch", "update", "watch"]),
        B::new("", "v1", "Node", "nodes", false).short(&["no"]).status(),
        B::new("", "v1", "Pod", "pods", true).short(&["po"]).all().status(),
        B::new("", "v1", "Service", "services", true).short(&["svc"]).all().status().verbs(&[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]),
        // `bindings` is the old way to bind a pod (POST only); `pods/binding` is the new one.
        B::new("", "v1", "Binding", "bindings", true).verbs(&["create"]),
        B::new("", "v1", "ComponentStatus", "componentstatuses", false)
            .short(&["cs"])
            .verbs(&["get", "list"]),
        B::new("", "v1", "Endpoints", "endpoints", true).short(&["ep"]),
        B::new("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        B::new("", "v1", "Secret", "secrets", true),
        B::new("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        B::new("", "v1", "Event", "events", true).short(&["ev"]),
        B::new("", "v1", "ReplicationController", "replicationcontrollers", true)
            .short(&["rc"])
            .all()
            .status()
            .scale(),
        B::new("", "v1", "PersistentVolume", "persistentvolumes", false).short(&["pv"]).status(),
        B::new("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true)
            .short(&["pvc"])
            .status(),
        B::new("", "v1", "LimitRange", "limitranges", true).short(&["limits"]),
        B::new("", "v1", "PodTemplate", "podtemplates", true),
        B::new("", "v1", "ResourceQuota", "resourcequotas", true).short(&["quota"]).status(),
        B::new("apiregistration.k8s.io", "v1", "APIService", "apiservices", false)
            .categories(&[API_EXTENSIONS])
            .status(),
        B::new("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true),
        // events.k8s.io Events are core Events seen through another schema: same storage.
        B::new("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
        B::new("coordination.k8s.io", "v1", "Lease", "leases", true),
        B::new("apps", "v1", "Deployment", "deployments", true)
            .short(&["deploy"])
            .all()
            .status()
            .scale(),
        B::new("apps", "v1", "ReplicaSet", "replicasets", true)
            .short(&["rs"])
            .all()
            .status()
            .scale(),
        B::new("apps", "v1", "StatefulSet", "statefulsets", true)
            .short(&["sts"])
            .all()
            .status()
            .scale(),
        B::new("apps", "v1", "DaemonSet", "daemonsets", true).short(&["ds"]).all().status(),
        B::new("apps", "v1", "ControllerRevision", "controllerrevisions", true),
        B::new("batch", "v1", "Job", "jobs", true).all().status(),
        B::new("batch", "v1", "CronJob", "cronjobs", true).short(&["cj"]).all().status(),
        B::new("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true)
            .short(&["hpa"])
            .all()
            .status(),
        B::new("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true)
            .short(&["pdb"])
            .status(),
        B::new("networking.k8s.io", "v1", "Ingress", "ingresses", true).short(&["ing"]).status(),
        B::new("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false),
        B::new("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true)
            .short(&["netpol"]),
        B::new("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", false).short(&["pc"]),
        B::new("storage.k8s.io", "v1", "StorageClass", "storageclasses", false).short(&["sc"]),
        B::new("storage.k8s.io", "v1", "CSIDriver", "csidrivers", false),
        B::new("storage.k8s.io", "v1", "CSINode", "csinodes", false),
        B::new("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", true),
        B::new("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", false).status(),
        B::new("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", false).status(),
        B::new("networking.k8s.io", "v1", "IPAddress", "ipaddresses", false).short(&["ip"]),
        B::new("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", false),
        B::new(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            false,
        )
        .short(&["csr"])
        .status(),
        B::new("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", false).status(),
        B::new(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            false,
        )
        .status(),
        B::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            false,
        )
        .categories(&[API_EXTENSIONS])
        .status(),
        B::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            false,
        )
        .categories(&[API_EXTENSIONS]),
        B::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
        )
        .categories(&[API_EXTENSIONS]),
        B::new(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
        )
        .categories(&[API_EXTENSIONS]),
        B::new("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        B::new("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false),
        B::new("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true),
        B::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        B::new(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .categories(&[API_EXTENSIONS])
        .status()
        .verbs(crd_verbs),
        B::new("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", false)
            .review(),
        B::new("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", false).review(),
        B::new(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
        )
        .review(),
        B::new("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", false)
            .review(),
        B::new(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        )
        .review(),
        B::new(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            false,
        )
        .review(),
    ]
    .into_iter()
    .map(|b| b.0)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Definitions;

    #[test]
    fn every_builtin_has_a_schema() {
        let defs = Definitions::builtin();
        for r in builtin() {
            let name = r.definition.clone().expect("definition");
            assert!(defs.get(&name).is_some(), "no schema {name} for {}", r.kind);
        }
    }

    #[test]
    fn keys_follow_the_registry_layout() {
        let all = builtin();
        let deploy = all.iter().find(|r| r.plural == "deployments").expect("deployments");
        assert_eq!(deploy.key(Some("default"), "web"), "/registry/apps/deployments/default/web");
        let ns = all.iter().find(|r| r.plural == "namespaces").expect("namespaces");
        assert_eq!(ns.key(None, "kube-system"), "/registry/core/namespaces/kube-system");
    }
}
