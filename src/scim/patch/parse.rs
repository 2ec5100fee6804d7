//! Reading a PatchOp message and its paths.

use serde_json::{Map, Value};

use super::super::filter::{self, AttrPath, Filter};
use super::super::{ScimProblem, get_ci};

/// Most operations accepted in one PATCH request.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub op: Op,
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// `attrPath`, or `attrPath "[" valFilter "]" ["." subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

/// Reads a PatchOp message. Operation names are case-insensitive (Entra sends
/// `"Replace"`), and so are the member names.
pub fn parse_operations(body: &Value) -> Result<Vec<Operation>, ScimProblem> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimProblem::invalid_syntax("the PATCH body must be a JSON object"))?;
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ScimProblem::invalid_syntax("the PATCH body needs an \"Operations\" list")
        })?;
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimProblem::new(
            "tooMany",
            format!("at most {MAX_OPERATIONS} operations per PATCH"),
        ));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let obj = op.as_object().ok_or_else(|| {
                ScimProblem::invalid_syntax(format!("Operations[{i}] must be an object"))
            })?;
            parse_operation(i, obj)
        })
        .collect()
}

/// Operation `i` of a message.
fn parse_operation(i: usize, obj: &Map<String, Value>) -> Result<Operation, ScimProblem> {
    let name = get_ci(obj, "op")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let op = match name.to_ascii_lowercase().as_str() {
        "add" => Op::Add,
        "remove" => Op::Remove,
        "replace" => Op::Replace,
        _ => {
            return Err(ScimProblem::invalid_syntax(format!(
                "Operations[{i}].op must be add, remove or replace, got {name:?}"
            )));
        }
    };
    let path = match get_ci(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(p.trim().to_string()),
        Some(_) => {
            return Err(ScimProblem::invalid_path(format!(
                "Operations[{i}].path must be a string"
            )));
        }
    };
    let value = get_ci(obj, "value").cloned();
    if op != Op::Remove && value.is_none() {
        return Err(ScimProblem::invalid_value(format!(
            "Operations[{i}] ({name}) needs a value"
        )));
    }
    Ok(Operation { op, path, value })
}

/// The index of the `]` closing a filter that starts after `open`, skipping
/// quoted strings.
fn closing_bracket(path: &str, open: usize) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in path[open + 1..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ']' if !in_string => return Some(open + 1 + i),
            _ => {}
        }
    }
    None
}

/// Parses a PATCH path.
pub fn parse_path(path: &str) -> Result<PatchPath, ScimProblem> {
    let bad = |why: String| ScimProblem::invalid_path(format!("path {path:?}: {why}"));
    let Some(open) = path.find('[') else {
        let attr = filter::parse_attr_path(path).map_err(|e| bad(e.0))?;
        return Ok(PatchPath {
            attr,
            filter: None,
            sub: None,
        });
    };
    let close = closing_bracket(path, open).ok_or_else(|| bad("missing \"]\"".into()))?;
    let attr = filter::parse_attr_path(&path[..open]).map_err(|e| bad(e.0))?;
    if attr.sub.is_some() {
        return Err(bad(
            "a value filter applies to an attribute, not a sub-attribute".into(),
        ));
    }
    let filter = filter::parse_value_filter(&path[open + 1..close]).map_err(|e| bad(e.0))?;
    let rest = &path[close + 1..];
    let sub = if rest.is_empty() {
        None
    } else {
        let name = rest
            .strip_prefix('.')
            .ok_or_else(|| bad(format!("unexpected {rest:?} after \"]\"")))?;
        let p = filter::parse_attr_path(name).map_err(|e| bad(e.0))?;
        if p.urn.is_some() || p.sub.is_some() {
            return Err(bad(format!("{name:?} is not a sub-attribute name")));
        }
        Some(p.attr)
    };
    Ok(PatchPath {
        attr,
        filter: Some(filter),
        sub,
    })
}
