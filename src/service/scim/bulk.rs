//! `POST /Bulk` (RFC 7644 §3.7): many operations in one request, with `bulkId`
//! references between them and `failOnErrors`.

use std::collections::HashMap;

use http::StatusCode;
use serde_json::{Value, json};

use super::{
    context::WorkspaceCtx,
    error::ScimError,
    render::Projection,
    service::{Outcome, Preconditions, ScimService},
};
use crate::scim::{
    ScimProblem, get_ci,
    schema::{BULK_RESPONSE, ResourceKind},
};

/// Most operations in one bulk request (advertised in ServiceProviderConfig).
pub const MAX_OPERATIONS: usize = 1000;
/// Largest bulk request body, in bytes (advertised in ServiceProviderConfig).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

struct BulkOp {
    method: String,
    bulk_id: Option<String>,
    path: String,
    data: Option<Value>,
    version: Option<String>,
}

fn parse(body: &Value) -> Result<(Vec<BulkOp>, Option<usize>), ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimProblem::invalid_syntax("a bulk request must be a JSON object"))?;
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimProblem::invalid_syntax("a bulk request needs an Operations array"))?;
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::too_large(format!(
            "{} operations; a bulk request may hold at most {MAX_OPERATIONS}",
            ops.len()
        )));
    }
    let fail_on_errors =
        match get_ci(obj, "failOnErrors") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                ScimProblem::invalid_value("failOnErrors must be a positive integer")
            })? as usize),
        };
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let o = op.as_object().ok_or_else(|| {
            ScimProblem::invalid_syntax(format!("operation {i} is not an object"))
        })?;
        let text = |k: &str| get_ci(o, k).and_then(Value::as_str).map(str::to_string);
        let method = text("method")
            .ok_or_else(|| ScimProblem::invalid_syntax(format!("operation {i} has no method")))?
            .to_ascii_uppercase();
        let path = text("path")
            .ok_or_else(|| ScimProblem::invalid_syntax(format!("operation {i} has no path")))?;
        let bulk_id = text("bulkId");
        if method == "POST" && bulk_id.is_none() {
            return Err(ScimProblem::invalid_syntax(format!(
                "operation {i} (POST) needs a bulkId"
            ))
            .into());
        }
        out.push(BulkOp {
            method,
            bulk_id,
            path,
            data: get_ci(o, "data").cloned(),
            version: text("version"),
        });
    }
    Ok((out, fail_on_errors))
}

/// `bulkId:x` references in a value, resolved. `Err` names an unresolved id.
fn resolve(value: &Value, ids: &HashMap<String, String>) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => match s.strip_prefix("bulkId:") {
            Some(reference) => Value::String(
                ids.get(reference)
                    .cloned()
                    .ok_or_else(|| reference.to_string())?,
            ),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| resolve(i, ids))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v, ids)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// `/Users`, `/Groups/{id}`, `/ServiceAccounts` → kind and id.
fn target(path: &str) -> Result<(ResourceKind, Option<String>), ScimProblem> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let Some(kind) = ResourceKind::from_endpoint(parts.next().unwrap_or_default()) else {
        return Err(ScimProblem::invalid_path(format!(
            "{path} is not /Users, /Groups or /ServiceAccounts"
        )));
    };
    Ok((
        kind,
        parts.next().filter(|s| !s.is_empty()).map(str::to_string),
    ))
}

async fn run_one(
    svc: &ScimService,
    ctx: &WorkspaceCtx,
    op: &BulkOp,
    ids: &HashMap<String, String>,
) -> Result<Outcome, ScimError> {
    let unresolved = |r: String| {
        ScimProblem::invalid_value(format!(
            "bulkId {r} does not name a resource created in this request"
        ))
    };
    let path = resolve(&Value::String(op.path.clone()), ids).map_err(unresolved)?;
    let (kind, id) = target(path.as_str().unwrap_or_default())?;
    let data = match &op.data {
        Some(d) => Some(resolve(d, ids).map_err(unresolved)?),
        None => None,
    };
    let pre = Preconditions {
        if_match: op.version.clone(),
        if_none_match: None,
    };
    let proj = Projection::default();
    let need_data = || {
        data.clone().ok_or_else(|| {
            ScimError::from(ScimProblem::invalid_syntax(format!(
                "{} {} needs data",
                op.method, op.path
            )))
        })
    };
    let need_id = || {
        id.clone().ok_or_else(|| {
            ScimError::from(ScimProblem::invalid_path(format!(
                "{} needs a resource id in its path",
                op.method
            )))
        })
    };
    match op.method.as_str() {
        "POST" if id.is_none() => svc.create(ctx, kind, need_data()?, &proj).await,
        "PUT" => {
            svc.replace(ctx, kind, &need_id()?, need_data()?, &pre, &proj)
                .await
        }
        "PATCH" => {
            svc.patch(ctx, kind, &need_id()?, &need_data()?, &pre, &proj)
                .await
        }
        "DELETE" => svc.delete(ctx, kind, &need_id()?, &pre).await,
        m => Err(ScimError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{m} {} is not a bulk operation", op.path),
        )),
    }
}

/// Which bulkIds a value refers to.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            if let Some(r) = s.strip_prefix("bulkId:") {
                out.push(r.to_string());
            }
        }
        Value::Array(items) => items.iter().for_each(|i| references(i, out)),
        Value::Object(o) => o.values().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// Runs a bulk request. Operations run in order, except that one referring to a
/// bulkId a later POST defines waits for it; what cannot resolve fails alone.
pub async fn run(
    svc: &ScimService,
    ctx: &WorkspaceCtx,
    body: &Value,
) -> Result<Outcome, ScimError> {
    let (ops, fail_on_errors) = parse(body)?;
    let defined: HashMap<&str, usize> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some((o.bulk_id.as_deref()?, i)))
        .collect();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut results: Vec<Option<Value>> = vec![None; ops.len()];
    let mut errors = 0usize;
    let mut pending: Vec<usize> = (0..ops.len()).collect();
    'passes: while !pending.is_empty() {
        let mut waiting = Vec::new();
        for &i in &pending {
            // Wait for a reference a not-yet-run operation will define.
            let waits = references_of(&ops[i]).iter().any(|r| {
                !ids.contains_key(r)
                    && defined
                        .get(r.as_str())
                        .is_some_and(|&j| results[j].is_none() && j != i)
            });
            if waits {
                waiting.push(i);
                continue;
            }
            let outcome = run_one(svc, ctx, &ops[i], &ids).await;
            errors += usize::from(outcome.is_err());
            results[i] = Some(operation_result(&ops[i], outcome, &mut ids));
            if fail_on_errors.is_some_and(|n| errors >= n) {
                break 'passes;
            }
        }
        if waiting.len() == pending.len() {
            // Nothing ran: only circular references are left.
            for &i in &waiting {
                let e = ScimError::from(ScimProblem::invalid_value("circular bulkId references"));
                results[i] = Some(operation_result(&ops[i], Err(e), &mut ids));
            }
            break;
        }
        pending = waiting;
    }
    Ok(Outcome::Document(json!({
        "schemas": [BULK_RESPONSE],
        "Operations": results.into_iter().flatten().collect::<Vec<_>>(),
    })))
}

/// The bulkIds an operation's path and data refer to.
fn references_of(op: &BulkOp) -> Vec<String> {
    let mut refs = Vec::new();
    references(&Value::String(op.path.clone()), &mut refs);
    if let Some(d) = &op.data {
        references(d, &mut refs);
    }
    refs
}

/// One operation's entry in the bulk response (RFC 7644 §3.7.3). A resource it
/// made is remembered under its bulkId, for the operations that refer to it.
fn operation_result(
    op: &BulkOp,
    outcome: Result<Outcome, ScimError>,
    ids: &mut HashMap<String, String>,
) -> Value {
    let mut result = json!({"method": op.method});
    if let Some(b) = &op.bulk_id {
        result["bulkId"] = b.clone().into();
    }
    match outcome {
        Ok(outcome) => {
            result["status"] = outcome.status().as_u16().to_string().into();
            if let Some(resource) = outcome.resource() {
                if let (Some(b), Some(id)) = (&op.bulk_id, resource.body["id"].as_str()) {
                    ids.insert(b.clone(), id.to_string());
                }
                result["location"] = resource.location.clone().into();
                result["version"] = resource.etag.clone().into();
            }
        }
        Err(e) => {
            result["status"] = e.status.as_u16().to_string().into();
            result["response"] = e.body();
        }
    }
    result
}
