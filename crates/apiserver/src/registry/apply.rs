//! Server-side apply in the registry: the structured merge of `kumo_api::managed`, and
//! its interplay with client-side apply's annotation for the `kubectl` manager
//! (`kumo_api::managed::lastapplied`).

use super::{Registry, WriteOptions};
use crate::admission;
use crate::error::{ApiError, ApiResult};
use crate::object;
use kumo_api::managed::{self, lastapplied};
use kumo_api::resources::Resource;
use serde_json::Value;

impl Registry {
    /// Merge `config` (applied by `opts.field_manager`) into `live` (None: a create).
    pub(super) fn server_side_apply(
        &self,
        r: &Resource,
        live: Option<&Value>,
        config: &Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        if config["apiVersion"].as_str().is_none_or(str::is_empty)
            || config["kind"].as_str().is_none_or(str::is_empty)
        {
            return Err(ApiError::BadRequest(
                "an applied configuration must set apiVersion and kind".into(),
            ));
        }
        let now = object::now_rfc3339();
        let schema = admission::root_schema(r);
        let api_version = r.api_version();
        let apply = |force: bool| {
            managed::apply(
                schema,
                live,
                config,
                &opts.field_manager,
                &api_version,
                force,
                r.status,
                &now,
            )
        };
        let manager = opts.field_manager.as_str();
        let mut merged = match apply(opts.force) {
            Ok(merged) => merged,
            // kubectl's own earlier client-side applies are not conflicts (upstream's
            // lastAppliedManager): what the annotation set, and still holds, may be taken.
            Err(conflicts) if manager == lastapplied::MANAGER => {
                let allowed = live
                    .and_then(|l| lastapplied::allowed_fields(schema, l, &api_version, r.status));
                let left = match &allowed {
                    Some(a) => lastapplied::remaining(&conflicts, a),
                    None => conflicts,
                };
                if !left.is_empty() {
                    return Err(ApiError::apply_conflict(
                        &r.group,
                        &r.plural,
                        object::name(config),
                        left,
                    ));
                }
                apply(true).map_err(|c| {
                    ApiError::apply_conflict(&r.group, &r.plural, object::name(config), c)
                })?
            }
            Err(conflicts) => {
                return Err(ApiError::apply_conflict(
                    &r.group,
                    &r.plural,
                    object::name(config),
                    conflicts,
                ))
            }
        };
        // Keep client-side apply's annotation in step (upstream's lastAppliedUpdater), so a
        // later `kubectl apply` without --server-side diffs against what was last applied.
        if lastapplied::keeps_annotation(manager, live) {
            lastapplied::update_annotation(&mut merged, config);
        }
        Ok(merged)
    }
}
