//! The disruption controller: keeps each PodDisruptionBudget's status (expected, healthy and
//! desired pods, disruptions allowed) current, from the pods it selects. The arithmetic is
//! `kumo_api::disruption`, which the API server's eviction subresource shares.
//! <https://kubernetes.io/docs/concepts/workloads/pods/disruptions/>

use crate::pod_index::SharedPods;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// Errors of the disruption controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("poddisruptionbudget {key}: {action} failed")]
    Api {
        /// `namespace/name`.
        key: String,
        /// What we were doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

/// Run the disruption controller until `shutdown` completes.
pub async fn run(
    client: Client,
    shared: SharedPods,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    controller
        // A pod change may change any budget of its namespace.
        .watches_shared_stream(shared.subscribe(), move |pod| {
            let ns = pod.metadata.namespace.clone();
            budgets
                .state()
                .iter()
                .filter(|b| b.metadata.namespace == ns)
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |_, err, _| {
                warn!(error = %err, "disruption reconcile failed");
                Action::requeue(Duration::from_secs(1))
            },
            Arc::new(client),
        )
        .for_each(|res| crate::log_outcome(res, "disruption reconcile"))
        .await;
}

/// Recompute one budget's status.
pub async fn reconcile(
    pdb: Arc<PodDisruptionBudget>,
    client: Arc<Client>,
) -> Result<Action, Error> {
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let err = |action: &'static str| {
        let key = format!("{ns}/{name}");
        move |source| Error::Api { key, action, source }
    };
    let pods: Api<Pod> = Api::namespaced((*client).clone(), &ns);
    let listed = pods.list(&ListParams::default()).await.map_err(err("list pods"))?;
    let pod_values: Vec<serde_json::Value> =
        listed.items.iter().filter_map(|p| serde_json::to_value(p).ok()).collect();
    let pdb_value = serde_json::to_value(pdb.as_ref()).unwrap_or_default();
    let budget = kumo_api::disruption::budget(&pdb_value, &pod_values);
    let mut status = budget.status_json(pdb.metadata.generation.unwrap_or(0));
    let allowed = budget.disruptions_allowed > 0;
    status["conditions"] = json!([{
        "type": "DisruptionAllowed",
        "status": if allowed { "True" } else { "False" },
        "reason": if allowed { "SufficientPods" } else { "InsufficientPods" },
        "message": "",
        "observedGeneration": pdb.metadata.generation.unwrap_or(0),
        "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
    }]);
    let current = serde_json::to_value(&pdb.status).unwrap_or_default();
    let same = [
        "expectedPods",
        "currentHealthy",
        "desiredHealthy",
        "disruptionsAllowed",
        "observedGeneration",
    ]
    .iter()
    .all(|k| current[k] == status[k]);
    if !same {
        let budgets: Api<PodDisruptionBudget> = Api::namespaced((*client).clone(), &ns);
        budgets
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
            .await
            .map_err(err("status"))?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}
