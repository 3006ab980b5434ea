//! The generic registry: one code path that creates, reads, lists, updates, patches and deletes
//! objects of every kind, against the [`Store`]. Per-kind behaviour comes from `kumo-api`
//! (defaulting, validation) and from the few hooks in [`crate::hooks`].
//!
//! Writes are optimistic: read, compute the new object, write with the read revision as the
//! precondition; a lost race is retried for patches (the client did not pin a version) and is a
//! 409 Conflict for updates that carried a `resourceVersion`.

use crate::admission::{self, FieldValidation};
use crate::catalog::Catalog;
use crate::error::{ApiError, ApiResult, Details};
use crate::hooks;
use crate::object;
use crate::policy;
use kumo_api::managed;
use kumo_api::resources::Resource;
use kumo_api::selector::{FieldSelector, LabelSelector};
use kumo_store::{RangeRequest, Store, StoreError};
use serde_json::{json, Value};
use std::sync::Arc;

mod apply;

/// Options every write takes.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// `dryRun=All`: run everything, store nothing.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `fieldManager` (or the client's user agent).
    pub field_manager: String,
    /// `force` (server-side apply takes conflicting fields).
    pub force: bool,
    /// Set inside the registry when server-side apply has already recorded managedFields.
    pub applied: bool,
    /// Who writes (admission policies see it as `request.userInfo`).
    pub user: Option<crate::auth::User>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            dry_run: false,
            field_validation: FieldValidation::Warn,
            field_manager: "unknown".into(),
            force: false,
            applied: false,
            user: None,
        }
    }
}

/// A write's result: the object and any warnings for the client.
#[derive(Debug)]
pub struct Written {
    /// The object as stored (or as it would be, for a dry run).
    pub object: Value,
    /// `Warning` headers to send.
    pub warnings: Vec<String>,
}

/// List options.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Page size (0 = all).
    pub limit: usize,
    /// Continue token from a previous page.
    pub continue_token: Option<String>,
}

/// What a list read besides its items.
#[derive(Debug)]
pub struct ListMeta {
    /// The revision the list reflects.
    pub revision: i64,
    /// Token for the next page.
    pub continue_token: Option<String>,
    /// Items left after this page, when known.
    pub remaining: Option<u64>,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    /// Matching objects.
    pub items: Vec<Value>,
    /// The revision the list reflects.
    pub revision: i64,
    /// Token for the next page.
    pub continue_token: Option<String>,
    /// Items left after this page, when known.
    pub remaining: Option<u64>,
}

/// The kinds of patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902.
    Json,
    /// RFC 7386.
    Merge,
    /// Kubernetes strategic merge patch.
    Strategic,
    /// Server-side apply.
    Apply,
}

/// Delete options (from the body or the query).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy`: Orphan, Background, Foreground.
    pub propagation: Option<String>,
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// What a delete did.
#[derive(Debug)]
pub enum Deleted {
    /// The object is gone; here is its last state.
    Gone(Value),
    /// The object is marked for deletion and waits on finalizers or a grace period.
    Pending(Value),
}

/// The registry over one store.
#[derive(Clone)]
pub struct Registry {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The catalog of served resources.
    pub catalog: Catalog,
    /// Wakes the background reconcilers of derived objects (APIServices, aggregated roles).
    pub triggers: Arc<crate::bootstrap::Triggers>,
    /// Watch event lines rendered once for every plain watcher.
    pub rendered: Arc<crate::watch::rendered::RenderedEvents>,
    /// Which objects name which owner (the garbage collector's lookups).
    pub owners: Arc<crate::owners::OwnerIndex>,
}

const MAX_RETRIES: usize = 16;

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>, catalog: Catalog) -> Self {
        Registry {
            store,
            catalog,
            triggers: Default::default(),
            rendered: Arc::default(),
            owners: Arc::default(),
        }
    }

    /// Read one object.
    pub async fn get(&self, r: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        let kv =
            self.store.get(&r.key(ns, name)).await?.ok_or_else(|| {
                ApiError::not_found(&r.group_resource(), &r.group, &r.plural, name)
            })?;
        decode(r, &kv)
    }

    /// List objects, filtered and paginated.
    pub async fn list(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListPage> {
        let mut items = Vec::new();
        let meta = self
            .list_each(r, ns, opts, |obj| {
                items.push(obj);
                Ok(())
            })
            .await?;
        Ok(ListPage {
            items,
            revision: meta.revision,
            continue_token: meta.continue_token,
            remaining: meta.remaining,
        })
    }

    /// List objects, handing each match to `each` as it is decoded, so a caller that encodes
    /// them (the list endpoint) never holds the whole list as decoded objects: at 9,000 pods
    /// those trees were most of the control plane's peak memory.
    pub async fn list_each(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
        mut each: impl FnMut(Value) -> ApiResult<()> + Send,
    ) -> ApiResult<ListMeta> {
        let prefix = list_prefix(r, ns);
        let mut start_after = None;
        let mut pinned_rev = None;
        if let Some(token) = &opts.continue_token {
            let (rev, key) = decode_continue(token)?;
            if !key.starts_with(&prefix) {
                return Err(ApiError::BadRequest("continue key is not valid for this list".into()));
            }
            start_after = Some(key);
            pinned_rev = Some(rev);
        }
        let filtering = !opts.labels.is_empty() || !opts.fields.is_empty();
        let mut count = 0;
        // A page read in several chunks (a selector that skips most keys) is as of its first
        // chunk: a watch from a later chunk's revision could miss changes to what the earlier
        // chunks returned. Continued pages keep the first page's revision the same way.
        let mut revision = pinned_rev;
        loop {
            // Fetch a little more than asked when filtering, to fill the page in few rounds.
            let want = if opts.limit == 0 {
                0
            } else if filtering {
                (opts.limit - count).max(256)
            } else {
                opts.limit - count
            };
            let page = self
                .store
                .range(RangeRequest {
                    prefix: prefix.clone(),
                    start_after: start_after.clone(),
                    limit: want,
                })
                .await?;
            let revision = *revision.get_or_insert(page.revision);
            let page_last = page.kvs.last().map(|kv| kv.key.clone());
            let mut last_key = None;
            let mut filled = false;
            // Consumed as it goes: each stored value is freed once its object is handed on.
            for kv in page.kvs {
                let item = list_item(r, opts, &kv)?;
                last_key = Some(kv.key);
                if let Some(obj) = item {
                    each(obj)?;
                    count += 1;
                }
                if opts.limit > 0 && count >= opts.limit {
                    filled = true;
                    break;
                }
            }
            let more_in_store = page.more || (filled && last_key != page_last);
            if filled || !page.more {
                let continue_token = if more_in_store {
                    last_key.map(|k| encode_continue(revision, &k))
                } else {
                    None
                };
                let remaining =
                    if continue_token.is_some() && !filtering { page.remaining } else { None };
                return Ok(ListMeta { revision, continue_token, remaining });
            }
            start_after = last_key;
        }
    }

    /// A whole list (no `limit`, no `continue`) from one snapshot of the store, read in chunks
    /// as the caller takes them: the snapshot's revision, and the stored values chunk by chunk
    /// (each goes through [`list_item`]). A list of every pod then holds a few chunks, not
    /// all of them and their encoding at once.
    pub async fn list_chunks(
        &self,
        r: &Resource,
        ns: Option<&str>,
    ) -> ApiResult<kumo_store::RangeChunks> {
        let req = RangeRequest { prefix: list_prefix(r, ns), start_after: None, limit: 0 };
        Ok(self.store.range_chunks(req, LIST_CHUNK).await?)
    }

    /// Create an object in namespace `ns` (from the URL).
    pub async fn create(
        &self,
        r: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        check_type_meta(r, &mut obj)?;
        let ns = self.check_namespace(r, ns, &mut obj).await?;
        let mut generate = None;
        if object::name(&obj).is_empty() {
            generate = obj["metadata"]["generateName"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            if let Some(prefix) = &generate {
                object::meta_mut(&mut obj).insert("name".into(), generated_name(prefix));
            }
        }
        let mut warnings = admission::check_schema(r, &mut obj, opts.field_validation)?;
        admission::prepare_create(r, &mut obj);
        kumo_api::defaults::apply(r, &mut obj);
        hooks::before_create(self, r, &mut obj).await?;
        admission::limitrange::default(self, r, &mut obj).await?;
        let errors = kumo_api::validation::validate(r, &obj, None);
        let name = object::name(&obj).to_string();
        if !errors.is_empty() {
            return Err(ApiError::invalid(&r.group, &r.kind, &name, errors));
        }
        hooks::validate(self, r, &obj, None).await?;
        let admission = policy::Admission {
            resource: r,
            operation: "CREATE",
            subresource: "",
            object: Some(&obj),
            old_object: None,
            user: opts.user.as_ref(),
            dry_run: opts.dry_run,
        };
        warnings.extend(policy::admit(self, &admission).await?);
        admission::limitrange::validate(self, r, &obj).await?;
        if !opts.applied {
            let now = object::now_rfc3339();
            let schema = admission::root_schema(r);
            managed::record_update(
                schema,
                None,
                &mut obj,
                &opts.field_manager,
                &r.api_version(),
                "",
                r.status,
                &now,
            );
        }
        // A generated name that is taken is generated again, up to GENERATE_NAME_RETRIES times
        // (upstream's RetryGenerateName, GA in 1.32): five random characters collide by the
        // birthday bound (a 50% chance within ~5,000 pods of one Job), and most clients
        // do not retry a 409 themselves.
        let mut retries = if generate.is_some() { GENERATE_NAME_RETRIES } else { 0 };
        let mut name = name;
        let taken = |obj: &mut Value, name: &mut String, retries: &mut usize| {
            let Some(prefix) = generate.as_deref().filter(|_| *retries > 0) else {
                return Err(already_exists(r, name));
            };
            *retries -= 1;
            let fresh = generated_name(prefix);
            *name = fresh.as_str().unwrap_or_default().to_string();
            object::meta_mut(obj).insert("name".into(), fresh);
            Ok(())
        };
        let kv = loop {
            let key = r.key(ns.as_deref(), &name);
            if self.store.get(&key).await?.is_some() {
                taken(&mut obj, &mut name, &mut retries)?;
                continue;
            }
            if opts.dry_run {
                admission::quota::admit(self, r, &obj, true).await?;
                return Ok(Written { object: obj, warnings });
            }
            // Quota last, just before the write: only a request that will be stored is charged.
            let charge = admission::quota::admit(self, r, &obj, false).await?;
            match self.store.create(&key, stored(r, &obj)).await {
                Ok(kv) => break kv,
                Err(e) => {
                    admission::quota::release(self, &charge).await;
                    match e {
                        StoreError::AlreadyExists(_) => taken(&mut obj, &mut name, &mut retries)?,
                        other => return Err(other.into()),
                    }
                }
            }
        };
        object::set_resource_version(&mut obj, kv.mod_revision);
        hooks::after_write(self, r, &obj).await;
        Ok(Written { object: obj, warnings })
    }

    /// Replace an object (PUT), on the main resource or its `status` subresource.
    pub async fn update(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        sub: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        check_type_meta(r, &mut obj)?;
        if object::name(&obj) != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object::name(&obj)
            )));
        }
        if r.namespaced {
            self.check_namespace_matches(ns, &mut obj)?;
        }
        let key = r.key(ns, name);
        let pinned = match obj["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
            Some(rv) => Some(rv.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("invalid resourceVersion {rv:?}: must be an integer"))
            })?),
            None => None,
        };
        for _ in 0..MAX_RETRIES {
            let current = self.store.get(&key).await?.ok_or_else(|| {
                ApiError::not_found(&r.group_resource(), &r.group, &r.plural, name)
            })?;
            let old = decode(r, &current)?;
            // A given resourceVersion is a precondition; none means "whatever is current",
            // so a write lost to a concurrent one is retried (upstream's GuaranteedUpdate).
            if pinned.is_some_and(|rv| rv != current.mod_revision) {
                return Err(ApiError::stale(&r.group_resource(), &r.group, &r.plural, name));
            }
            let attempt = self
                .finish_update(r, ns, name, obj.clone(), &old, current.mod_revision, sub, opts)
                .await;
            match attempt {
                Err(ApiError::Conflict(..)) if pinned.is_none() => continue,
                other => return other,
            }
        }
        Err(ApiError::Conflict(
            format!("too many concurrent writes to {} \"{name}\"; try again", r.group_resource()),
            Some(Details::new(&r.group, &r.plural, name)),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_update(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        old: &Value,
        expected: i64,
        sub: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let mut warnings = admission::check_schema(r, &mut obj, opts.field_validation)?;
        admission::prepare_update(r, &mut obj, old, sub == Some("status"));
        hooks::before_update(r, &mut obj, old);
        kumo_api::defaults::apply(r, &mut obj);
        let errors = kumo_api::validation::validate(r, &obj, Some(old));
        if !errors.is_empty() {
            return Err(ApiError::invalid(&r.group, &r.kind, name, errors));
        }
        hooks::validate(self, r, &obj, Some(old)).await?;
        let admission = policy::Admission {
            resource: r,
            operation: "UPDATE",
            subresource: sub.unwrap_or(""),
            object: Some(&obj),
            old_object: Some(old),
            user: opts.user.as_ref(),
            dry_run: opts.dry_run,
        };
        warnings.extend(policy::admit(self, &admission).await?);
        if !opts.applied {
            let now = object::now_rfc3339();
            let schema = admission::root_schema(r);
            let subresource = sub.unwrap_or("");
            managed::record_update(
                schema,
                Some(old),
                &mut obj,
                &opts.field_manager,
                &r.api_version(),
                subresource,
                r.status,
                &now,
            );
        }
        let key = r.key(ns, name);
        if opts.dry_run {
            return Ok(Written { object: obj, warnings });
        }
        // A write that changes nothing is not a write: same resourceVersion, no watch event.
        if unchanged(old, &obj) {
            return Ok(Written { object: old.clone(), warnings });
        }
        // Removing the last finalizer of an object being deleted completes its deletion.
        if object::is_deleting(&obj)
            && object::finalizers(&obj).is_empty()
            && !hooks::holds_deletion(r, &obj)
        {
            let kv = self
                .store
                .delete(&key, Some(expected))
                .await
                .map_err(|e| self.write_error(r, name, e))?;
            object::set_resource_version(&mut obj, kv.mod_revision);
            hooks::after_delete(self, r, &obj).await;
            return Ok(Written { object: obj, warnings });
        }
        let kv = self
            .store
            .update(&key, stored(r, &obj), Some(expected))
            .await
            .map_err(|e| self.write_error(r, name, e))?;
        object::set_resource_version(&mut obj, kv.mod_revision);
        hooks::after_write(self, r, &obj).await;
        Ok(Written { object: obj, warnings })
    }

    fn write_error(&self, r: &Resource, name: &str, e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } => {
                ApiError::stale(&r.group_resource(), &r.group, &r.plural, name)
            }
            StoreError::NotFound(_) => {
                ApiError::not_found(&r.group_resource(), &r.group, &r.plural, name)
            }
            other => other.into(),
        }
    }

    /// Patch an object (or its status subresource).
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        kind: PatchType,
        patch: &Value,
        sub: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let key = r.key(ns, name);
        if kind == PatchType::Strategic && r.definition.is_none() {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch is not supported for custom resources such as {})",
                r.group_resource()
            )));
        }
        let pinned = patch["metadata"]["resourceVersion"].as_str().map(str::to_string);
        for _ in 0..MAX_RETRIES {
            let Some(current) = self.store.get(&key).await? else {
                if kind == PatchType::Apply {
                    // Server-side apply creates what does not exist.
                    let mut config = patch.clone();
                    object::meta_mut(&mut config).insert("name".into(), Value::String(name.into()));
                    let obj = self.server_side_apply(r, None, &config, opts)?;
                    let applied = WriteOptions { applied: true, ..opts.clone() };
                    return self.create(r, ns, obj, &applied).await;
                }
                return Err(ApiError::not_found(&r.group_resource(), &r.group, &r.plural, name));
            };
            let old = decode(r, &current)?;
            if let Some(rv) = &pinned {
                if *rv != current.mod_revision.to_string() {
                    return Err(ApiError::stale(&r.group_resource(), &r.group, &r.plural, name));
                }
            }
            let mut patched = if kind == PatchType::Apply {
                self.server_side_apply(r, Some(&old), patch, opts)?
            } else {
                apply_patch(r, &old, kind, patch)?
            };
            let opts = &WriteOptions { applied: kind == PatchType::Apply, ..opts.clone() };
            check_type_meta(r, &mut patched)?;
            if object::name(&patched) != name {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    object::name(&patched)
                )));
            }
            if r.namespaced {
                self.check_namespace_matches(ns, &mut patched)?;
            }
            match self
                .finish_update(r, ns, name, patched, &old, current.mod_revision, sub, opts)
                .await
            {
                Err(ApiError::Conflict(..)) if pinned.is_none() => continue,
                other => return other,
            }
        }
        Err(ApiError::Conflict(
            format!("too many concurrent writes to {} \"{name}\"; try again", r.group_resource()),
            Some(Details::new(&r.group, &r.plural, name)),
        ))
    }

    /// Delete an object.
    pub async fn delete(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let key = r.key(ns, name);
        for _ in 0..MAX_RETRIES {
            let current = self.store.get(&key).await?.ok_or_else(|| {
                ApiError::not_found(&r.group_resource(), &r.group, &r.plural, name)
            })?;
            let mut obj = decode(r, &current)?;
            if let Some(uid) = &opts.uid {
                if obj["metadata"]["uid"].as_str() != Some(uid) {
                    return Err(ApiError::Conflict(
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", obj["metadata"]["uid"].as_str().unwrap_or("")),
                        Some(Details::new(&r.group, &r.plural, name)),
                    ));
                }
            }
            if let Some(rv) = &opts.resource_version {
                if *rv != current.mod_revision.to_string() {
                    return Err(ApiError::Conflict(
                        format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", current.mod_revision),
                        Some(Details::new(&r.group, &r.plural, name)),
                    ));
                }
            }
            let plan = hooks::deletion_plan(r, &obj, opts);
            if !plan.immediate {
                let meta = object::meta_mut(&mut obj);
                if !meta.contains_key("deletionTimestamp") {
                    meta.insert(
                        "deletionTimestamp".into(),
                        Value::String(plan.deletion_timestamp.clone()),
                    );
                    meta.insert(
                        "deletionGracePeriodSeconds".into(),
                        Value::from(plan.grace_seconds),
                    );
                }
                let mut fins = object::finalizers(&obj);
                for f in &plan.add_finalizers {
                    if !fins.contains(f) {
                        fins.push(f.clone());
                    }
                }
                if plan.remove_orphan_foreground {
                    fins.retain(|f| f != "orphan" && f != "foregroundDeletion");
                    fins.extend(plan.add_finalizers.iter().cloned());
                }
                if !fins.is_empty() {
                    object::meta_mut(&mut obj).insert("finalizers".into(), json!(fins));
                }
                hooks::on_mark_deleted(r, &mut obj);
                if opts.dry_run {
                    return Ok(Deleted::Pending(obj));
                }
                match self.store.update(&key, stored(r, &obj), Some(current.mod_revision)).await {
                    Ok(kv) => {
                        object::set_resource_version(&mut obj, kv.mod_revision);
                        hooks::after_write(self, r, &obj).await;
                        return Ok(Deleted::Pending(obj));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(self.write_error(r, name, e)),
                }
            }
            if opts.dry_run {
                return Ok(Deleted::Gone(obj));
            }
            match self.store.delete(&key, Some(current.mod_revision)).await {
                Ok(kv) => {
                    object::set_resource_version(&mut obj, kv.mod_revision);
                    hooks::after_delete(self, r, &obj).await;
                    return Ok(Deleted::Gone(obj));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(self.write_error(r, name, e)),
            }
        }
        Err(ApiError::Conflict(
            format!("too many concurrent writes to {} \"{name}\"; try again", r.group_resource()),
            Some(Details::new(&r.group, &r.plural, name)),
        ))
    }

    async fn check_namespace(
        &self,
        r: &Resource,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<Option<String>> {
        if !r.namespaced {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("namespace");
            }
            return Ok(None);
        }
        let ns = self.check_namespace_matches(ns, obj)?;
        let ns_res = self.catalog.snapshot().find("", "v1", "namespaces").cloned();
        if let Some(ns_res) = ns_res {
            match self.store.get(&ns_res.key(None, &ns)).await? {
                None => {
                    return Err(ApiError::NotFound(
                        format!("namespaces \"{ns}\" not found"),
                        Some(Details::new("", "namespaces", &ns)),
                    ))
                }
                Some(kv) => {
                    let nsobj: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
                    if object::is_deleting(&nsobj) {
                        return Err(ApiError::Forbidden(
                            format!(
                                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                                r.group_resource(),
                                object::name(obj)
                            ),
                            Some(Details::new(&r.group, &r.plural, object::name(obj))),
                        ));
                    }
                }
            }
        }
        Ok(Some(ns))
    }

    fn check_namespace_matches(&self, ns: Option<&str>, obj: &mut Value) -> ApiResult<String> {
        let url_ns = ns.unwrap_or("default");
        match object::namespace(obj) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != url_ns => Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            )),
            _ => {
                object::meta_mut(obj).insert("namespace".into(), Value::String(url_ns.into()));
                Ok(url_ns.to_string())
            }
        }
    }
}

/// Whether `new` is `old` again, ignoring resourceVersion and managedFields timestamps.
fn unchanged(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
                for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                    e.remove("time");
                }
            }
        }
        v
    };
    strip(old) == strip(new)
}

/// How many times a create with `generateName` picks another name when the one it drew is
/// taken (upstream retries seven times).
const GENERATE_NAME_RETRIES: usize = 7;

/// `prefix` and five random characters, as upstream's `SimpleNameGenerator`.
fn generated_name(prefix: &str) -> Value {
    Value::String(format!("{prefix}{}", object::random_suffix(5)))
}

fn already_exists(r: &Resource, name: &str) -> ApiError {
    ApiError::AlreadyExists(
        format!("{} \"{name}\" already exists", r.group_resource()),
        Details::new(&r.group, &r.plural, name),
    )
}

fn is_events_v1(r: &Resource) -> bool {
    r.group == "events.k8s.io" && r.plural == "events"
}

/// The bytes stored for `obj`: events.k8s.io Events are stored as core Events.
fn stored(r: &Resource, obj: &Value) -> Vec<u8> {
    if is_events_v1(r) {
        return object::to_bytes(&kumo_api::events::to_core(obj));
    }
    object::to_bytes(obj)
}

/// How many stored values [`Registry::list_chunks`] reads at a time: a few MB of pods.
const LIST_CHUNK: usize = 1_024;

/// The store prefix a list of `r` in `ns` reads.
fn list_prefix(r: &Resource, ns: Option<&str>) -> String {
    match ns {
        Some(ns) if r.namespaced => format!("{}{ns}/", r.key_prefix()),
        _ => r.key_prefix(),
    }
}

/// What a list returns for the stored `kv`: the object, when it matches `opts`' selectors.
/// Labels are read off the stored bytes first, so most misses are not decoded.
pub fn list_item(
    r: &Resource,
    opts: &ListOptions,
    kv: &kumo_store::KeyValue,
) -> ApiResult<Option<Value>> {
    if !opts.labels.is_empty() {
        if let Some(labels) = object::peek_labels(&kv.value) {
            if !opts.labels.matches(labels.as_ref()) {
                return Ok(None);
            }
        }
    }
    let obj = decode(r, kv)?;
    Ok((opts.labels.matches(object::labels(&obj)) && opts.fields.matches(&obj)).then_some(obj))
}

/// Decode a stored object for the version `r` serves.
pub fn decode(r: &Resource, kv: &kumo_store::KeyValue) -> ApiResult<Value> {
    let mut obj = object::from_kv(kv)
        .ok_or_else(|| ApiError::Internal(format!("stored object {} is not valid JSON", kv.key)))?;
    if is_events_v1(r) {
        obj = kumo_api::events::to_events_v1(&obj);
    }
    // Custom resources share storage across versions; the object reports the version asked for.
    obj["apiVersion"] = Value::String(r.api_version());
    obj["kind"] = Value::String(r.kind.clone());
    Ok(obj)
}

/// `kind` and `apiVersion` must name this resource if given; they are filled in if not.
fn check_type_meta(r: &Resource, obj: &mut Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::BadRequest(
            "the body of the request must be a JSON or YAML object".into(),
        ));
    }
    if let Some(v) = obj["apiVersion"].as_str().filter(|s| !s.is_empty()) {
        let (g, _) = v.rsplit_once('/').unwrap_or(("", v));
        if g != r.group {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                r.api_version()
            )));
        }
    }
    if let Some(k) = obj["kind"].as_str().filter(|s| !s.is_empty()) {
        if k != r.kind {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                r.kind
            )));
        }
    }
    obj["apiVersion"] = Value::String(r.api_version());
    obj["kind"] = Value::String(r.kind.clone());
    Ok(())
}

fn apply_patch(r: &Resource, old: &Value, kind: PatchType, patch: &Value) -> ApiResult<Value> {
    use kumo_api::patch;
    let bad =
        |e: patch::PatchError| ApiError::BadRequest(format!("the patch could not be applied: {e}"));
    match kind {
        PatchType::Json => {
            let mut out = old.clone();
            patch::json_patch(&mut out, patch).map_err(bad)?;
            Ok(out)
        }
        PatchType::Merge | PatchType::Apply => {
            // (Apply is handled by `server_side_apply`; merge semantics are its fallback shape.)
            if !patch.is_object() {
                return Err(ApiError::BadRequest("the patch must be a JSON object".into()));
            }
            let mut out = old.clone();
            patch::merge_patch(&mut out, patch);
            Ok(out)
        }
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest("the patch must be a JSON object".into()));
            }
            patch::strategic_merge_patch(old, patch, admission::root_schema(r)).map_err(bad)
        }
    }
}

fn encode_continue(rev: i64, key: &str) -> String {
    use base64::Engine;
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    use base64::Engine;
    let bad =
        || ApiError::BadRequest("continue key is not valid: ask for the first page again".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    match (v["rv"].as_i64(), v["start"].as_str()) {
        (Some(rv), Some(start)) => Ok((rv, start.to_string())),
        _ => Err(bad()),
    }
}
