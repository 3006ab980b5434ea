//! Server-side printing: `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` turns an object
//! or a list into a `meta.k8s.io/v1` Table, with the columns `kumo-api`'s printers define.
//! Also the metadata-only views (`PartialObjectMetadata[List]`).

use kumo_api::printers;
use kumo_api::resources::Resource;
use serde_json::{json, Value};

/// What shape the client asked the response in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The objects themselves.
    Object,
    /// A Table.
    Table,
    /// Metadata only.
    PartialMetadata,
}

/// Read the shape from the `Accept` header (first acceptable entry wins, as upstream).
pub fn shape(accept: &str) -> Shape {
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        // meta.k8s.io v1 and v1beta1 Tables are the same shape; kumo answers v1.
        if p.contains("as=Table") && p.contains("g=meta.k8s.io") {
            return Shape::Table;
        }
        if p.contains("as=PartialObjectMetadata") && p.contains("g=meta.k8s.io") {
            return Shape::PartialMetadata;
        }
        if p.starts_with("application/json")
            || p.starts_with("*/*")
            || p.starts_with("application/yaml")
        {
            return Shape::Object;
        }
    }
    Shape::Object
}

/// `includeObject`: what each row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// Nothing.
    None,
    /// Metadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl Include {
    /// From the query parameter.
    pub fn parse(v: Option<&str>) -> Include {
        match v {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// The metadata-only form of an object.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

fn row(r: &Resource, obj: &Value, include: Include, now: chrono::DateTime<chrono::Utc>) -> Value {
    let cells = printers::cells(r, obj, now);
    let mut row = json!({"cells": cells});
    match include {
        Include::None => {}
        Include::Metadata => row["object"] = partial(obj),
        Include::Object => row["object"] = obj.clone(),
    }
    row
}

/// A Table of `items`.
pub fn table(
    r: &Resource,
    items: &[Value],
    include: Include,
    rv: Option<String>,
    cont: Option<String>,
    with_columns: bool,
) -> Value {
    let now = chrono::Utc::now();
    let columns = if with_columns { json!(printers::columns(r)) } else { json!([]) };
    let rows: Vec<Value> = items.iter().map(|o| row(r, o, include, now)).collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv);
    }
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows})
}
