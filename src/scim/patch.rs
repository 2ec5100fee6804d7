//! PATCH (RFC 7644 §3.5.2): parsing `Operations` and paths, and applying them to
//! a resource document in memory. Group membership is the exception: it is
//! returned as [`MemberChange`]s for the store to apply row by row, so adding one
//! member to a 10k-member group never rewrites the group.

use serde_json::{Map, Value};

use super::eval::{check_value_filter, element_matches, equalities, scalar_text};
use super::filter::{self, AttrPath, CompValue, CompareOp, Filter};
use super::resource::{coerce, extension_object};
use super::schema::{Attr, Mutability, Namespace, Resolved, ResourceKind, SchemaSet};
use super::{ScimProblem, get_ci};

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

/// A change to a group's members.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberChange {
    /// Add these members (`{"value": id, "type"?: …}` objects); existing ones stay.
    Add(Vec<Value>),
    /// Remove these member ids.
    Remove(Vec<String>),
    /// Remove the members an element filter selects (`members[type eq "Group"]`).
    RemoveMatching(Filter),
    RemoveAll,
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
        })
        .collect()
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
    // Find the "]" closing the filter, skipping quoted strings.
    let mut close = None;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in path[open + 1..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ']' if !in_string => {
                close = Some(open + 1 + i);
                break;
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| bad("missing \"]\"".into()))?;
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

/// Applies `ops` to `doc` in order. Member changes of a Group come back for the
/// store; everything else is edited in `doc`.
pub fn apply(
    set: &SchemaSet,
    doc: &mut Map<String, Value>,
    ops: &[Operation],
) -> Result<Vec<MemberChange>, ScimProblem> {
    let mut members = Vec::new();
    for op in ops {
        match &op.path {
            Some(path) if filter::is_urn(path) && set.extension(path).is_some() => {
                apply_to_extension(set, doc, op, path, &mut members)?;
            }
            Some(path) => {
                let pp = parse_path(path)?;
                apply_one(set, doc, op.op, &pp, op.value.clone(), true, &mut members)?;
            }
            None => {
                if op.op == Op::Remove {
                    return Err(ScimProblem::no_target("remove needs a path"));
                }
                let Some(Value::Object(values)) = &op.value else {
                    return Err(ScimProblem::invalid_value(
                        "an operation without a path needs an object of attributes as its value",
                    ));
                };
                apply_pathless(set, doc, op.op, values, &mut members)?;
            }
        }
    }
    Ok(members)
}

/// An operation whose path is a whole extension (`urn:…:enterprise:2.0:User`):
/// `remove` drops the extension; `add`/`replace` take an object of its
/// attributes and merge them, as for any complex attribute (RFC 7644 §3.5.2.1/3).
fn apply_to_extension(
    set: &SchemaSet,
    doc: &mut Map<String, Value>,
    op: &Operation,
    urn: &str,
    members: &mut Vec<MemberChange>,
) -> Result<(), ScimProblem> {
    if op.op == Op::Remove {
        doc.retain(|k, _| !k.eq_ignore_ascii_case(urn));
        return Ok(());
    }
    let Some(value @ Value::Object(_)) = &op.value else {
        return Err(ScimProblem::invalid_value(format!(
            "{urn} takes an object of its attributes as the value"
        )));
    };
    let wrapped = Map::from_iter([(urn.to_string(), value.clone())]);
    apply_pathless(set, doc, op.op, &wrapped, members)
}

/// A path-less add/replace: each key of the value is a path (`displayName`,
/// Entra's `name.givenName` and `urn:…:enterprise:2.0:User:employeeNumber`), or an
/// extension URN whose object holds attributes.
fn apply_pathless(
    set: &SchemaSet,
    doc: &mut Map<String, Value>,
    op: Op,
    values: &Map<String, Value>,
    members: &mut Vec<MemberChange>,
) -> Result<(), ScimProblem> {
    for (key, value) in values {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let is_urn = filter::is_urn(key);
        if is_urn && let Value::Object(inner) = value {
            if key.eq_ignore_ascii_case(set.kind.schema()) {
                apply_pathless(set, doc, op, inner, members)?;
                continue;
            }
            if set.extension(key).is_some() {
                // Clients serialising the extension as a model (scim2-cli)
                // put its `schemas` inside it: not an attribute, skipped.
                for (attr, v) in inner
                    .iter()
                    .filter(|(a, _)| !a.eq_ignore_ascii_case("schemas"))
                {
                    let pp = parse_path(&format!("{key}:{attr}"))?;
                    apply_one(set, doc, op, &pp, Some(v.clone()), false, members)?;
                }
                continue;
            }
        }
        let pp = parse_path(key)?;
        apply_one(set, doc, op, &pp, Some(value.clone()), false, members)?;
    }
    Ok(())
}

fn resolve(set: &SchemaSet, pp: &PatchPath) -> Result<Resolved, ScimProblem> {
    set.resolve(
        pp.attr.urn.as_deref(),
        &pp.attr.attr,
        pp.attr.sub.as_deref(),
    )
    .ok_or_else(|| {
        ScimProblem::invalid_path(format!(
            "{} is not an attribute of {} resources",
            pp.attr,
            set.kind.as_str()
        ))
    })
}

#[allow(clippy::too_many_arguments)]
fn apply_one(
    set: &SchemaSet,
    doc: &mut Map<String, Value>,
    op: Op,
    pp: &PatchPath,
    value: Option<Value>,
    explicit: bool,
    members: &mut Vec<MemberChange>,
) -> Result<(), ScimProblem> {
    let resolved = resolve(set, pp)?;
    if let Some(def) = resolved.attr {
        if def.mutability == Mutability::ReadOnly
            || resolved
                .leaf()
                .is_some_and(|l| l.mutability == Mutability::ReadOnly)
        {
            return if explicit {
                Err(ScimProblem::mutability(format!("{} is read-only", pp.attr)))
            } else {
                Ok(()) // read-only attributes in a value object are ignored, like in PUT
            };
        }
        if def.mutability == Mutability::WriteOnly {
            return Ok(()); // passwords are accepted and dropped: idsync stores none
        }
        if set.kind == ResourceKind::Group && def.name == "members" {
            return member_change(set, &resolved, op, pp, value, members);
        }
    }
    if pp.filter.is_some() && !resolved.multi() {
        return Err(ScimProblem::invalid_path(format!(
            "{} is not multi-valued and cannot take a value filter",
            pp.attr
        )));
    }
    let container: &mut Map<String, Value> = match &resolved.namespace {
        Namespace::Core => doc,
        ns => extension_object(doc, ns)?,
    };
    let Some(def) = resolved.attr else {
        // An attribute of a declared extension: stored as given.
        let key = existing_key(container, &resolved.name);
        match (op, value) {
            (Op::Remove, _) | (_, None) | (_, Some(Value::Null)) => {
                container.remove(&key);
            }
            (_, Some(v)) => {
                container.insert(key, v);
            }
        }
        return Ok(());
    };
    let name = def.name;
    if def.multi {
        return apply_multi(set, container, &resolved, def, op, pp, value);
    }
    match (&resolved.sub, op) {
        (Some((sub, _)), Op::Remove) => {
            if let Some(Value::Object(obj)) = container.get_mut(name) {
                obj.remove(sub);
                if obj.is_empty() {
                    container.remove(name);
                }
            }
        }
        (Some((sub, Some(sub_def))), _) => {
            let v = value
                .map(|v| coerce(sub_def, v, &format!("{name}.{sub}")))
                .transpose()?
                .flatten();
            let obj = container
                .entry(name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(obj) = obj.as_object_mut() {
                match v {
                    Some(v) => obj.insert(sub.clone(), v),
                    None => obj.remove(sub),
                };
            }
        }
        (Some((_, None)), _) => {}
        (None, Op::Remove) => {
            container.remove(name);
        }
        (None, _) => match value.map(|v| coerce(def, v, name)).transpose()?.flatten() {
            // Complex single-valued attributes merge (RFC 7644 §3.5.2.1/3).
            Some(Value::Object(new)) => match container.get_mut(name) {
                Some(Value::Object(old)) => old.extend(new),
                _ => {
                    container.insert(name.to_string(), Value::Object(new));
                }
            },
            Some(v) => {
                container.insert(name.to_string(), v);
            }
            None => {
                container.remove(name);
            }
        },
    }
    Ok(())
}

fn existing_key(container: &Map<String, Value>, name: &str) -> String {
    container
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

fn apply_multi(
    set: &SchemaSet,
    container: &mut Map<String, Value>,
    resolved: &Resolved,
    def: &'static Attr,
    op: Op,
    pp: &PatchPath,
    value: Option<Value>,
) -> Result<(), ScimProblem> {
    let name = def.name;
    let mut items: Vec<Value> = match container.remove(name) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    // The sub-attribute being edited: `emails[…].value` or `emails.value`.
    let sub_name = pp
        .sub
        .clone()
        .or_else(|| resolved.sub.as_ref().map(|(s, _)| s.clone()));
    let sub_def = match &sub_name {
        Some(s) => Some(
            def.sub
                .iter()
                .find(|d| d.name.eq_ignore_ascii_case(s))
                .ok_or_else(|| {
                    ScimProblem::invalid_path(format!("{name} has no sub-attribute {s}"))
                })?,
        ),
        None => None,
    };
    let selected: Vec<usize> = match &pp.filter {
        Some(f) => {
            check_value_filter(set, resolved, f).map_err(ScimProblem::invalid_path)?;
            (0..items.len())
                .filter(|&i| element_matches(set, resolved, f, &items[i]))
                .collect()
        }
        None => (0..items.len()).collect(),
    };
    let mut primary_at = None;
    match (op, sub_def) {
        (Op::Remove, Some(sd)) => {
            for &i in &selected {
                if let Some(obj) = items[i].as_object_mut() {
                    obj.remove(sd.name);
                }
            }
        }
        (Op::Remove, None) if pp.filter.is_some() => {
            let mut i = 0;
            items.retain(|_| {
                let keep = !selected.contains(&i);
                i += 1;
                keep
            });
        }
        (Op::Remove, None) => match value.map(|v| coerce(def, v, name)).transpose()?.flatten() {
            // `remove` with a value list removes those elements (Entra's dialect).
            Some(Value::Array(gone)) => {
                let sub = set.resolve_sub(resolved, "value");
                let exact = sub.as_ref().is_some_and(Resolved::case_exact);
                items.retain(|item| {
                    !gone.iter().any(|g| {
                        match (
                            item.get("value").and_then(scalar_text),
                            g.get("value").and_then(scalar_text),
                        ) {
                            (Some(a), Some(b)) => {
                                super::eval::compare(&a, CompareOp::Eq, &b, exact)
                            }
                            _ => item == g,
                        }
                    })
                });
            }
            _ => items.clear(),
        },
        (_, Some(sd)) => {
            let v = value
                .map(|v| coerce(sd, v, &format!("{name}.{}", sd.name)))
                .transpose()?
                .flatten();
            if selected.is_empty() {
                let mut elem = element_from_filter(pp.filter.as_ref(), def, &pp.attr)?;
                if let Some(v) = v {
                    elem.insert(sd.name.to_string(), v);
                }
                items.push(Value::Object(elem));
                if sd.name == "primary" {
                    primary_at = Some(items.len() - 1);
                }
            } else {
                for &i in &selected {
                    if let Some(obj) = items[i].as_object_mut() {
                        match &v {
                            Some(v) => obj.insert(sd.name.to_string(), v.clone()),
                            None => obj.remove(sd.name),
                        };
                    }
                    if sd.name == "primary" && v == Some(Value::Bool(true)) {
                        primary_at = Some(i);
                    }
                }
            }
        }
        (Op::Replace, None) if pp.filter.is_none() => {
            items = match value.map(|v| coerce(def, v, name)).transpose()?.flatten() {
                Some(Value::Array(new)) => new,
                _ => Vec::new(),
            };
        }
        (Op::Add, None) if pp.filter.is_none() => {
            if let Some(Value::Array(new)) =
                value.map(|v| coerce(def, v, name)).transpose()?.flatten()
            {
                for item in new {
                    let is_primary = item.get("primary") == Some(&Value::Bool(true));
                    let existing = items.iter().position(|i| same_element(i, &item));
                    let at = match existing {
                        Some(at) => {
                            items[at] = item;
                            at
                        }
                        None => {
                            items.push(item);
                            items.len() - 1
                        }
                    };
                    if is_primary {
                        primary_at = Some(at);
                    }
                }
            }
        }
        // add/replace of whole elements selected by a filter.
        (_, None) => {
            let new = match value.map(|v| coerce(def, v, name)).transpose()?.flatten() {
                Some(Value::Array(mut new)) if new.len() == 1 => new.remove(0),
                Some(Value::Array(_)) | None => {
                    return Err(ScimProblem::invalid_value(format!(
                        "{} needs one element as its value",
                        pp.attr
                    )));
                }
                Some(other) => other,
            };
            if selected.is_empty() {
                let mut elem = element_from_filter(pp.filter.as_ref(), def, &pp.attr)?;
                if let Value::Object(new) = new {
                    elem.extend(new);
                }
                items.push(Value::Object(elem));
            } else {
                for &i in &selected {
                    match (op, &mut items[i], &new) {
                        (Op::Add, Value::Object(old), Value::Object(new)) => {
                            old.extend(new.clone())
                        }
                        (_, slot, _) => *slot = new.clone(),
                    }
                }
            }
        }
    }
    if let Some(at) = primary_at.or_else(|| {
        items
            .iter()
            .rposition(|i| i.get("primary") == Some(&Value::Bool(true)))
    }) {
        // At most one primary: the one just set wins.
        for (i, item) in items.iter_mut().enumerate() {
            if i != at
                && let Some(obj) = item.as_object_mut()
                && obj.get("primary") == Some(&Value::Bool(true))
            {
                obj.insert("primary".into(), Value::Bool(false));
            }
        }
    }
    items.retain(|i| !matches!(i, Value::Object(o) if o.is_empty()));
    if !items.is_empty() {
        container.insert(name.to_string(), Value::Array(items));
    }
    Ok(())
}

/// Two elements of a multi-valued attribute are the same when their `value`
/// (and `type`, when both have one) agree.
fn same_element(a: &Value, b: &Value) -> bool {
    let v = |x: &Value, k: &str| x.get(k).and_then(scalar_text);
    match (v(a, "value"), v(b, "value")) {
        (Some(x), Some(y)) => x == y && v(a, "type") == v(b, "type"),
        _ => a == b,
    }
}

/// The element a filter of equalities names (`emails[type eq "work"]`), for an
/// add/replace that targets an element not there yet. Entra relies on this.
fn element_from_filter(
    filter: Option<&Filter>,
    def: &Attr,
    attr: &AttrPath,
) -> Result<Map<String, Value>, ScimProblem> {
    let Some(filter) = filter else {
        return Ok(Map::new());
    };
    let eqs = equalities(filter).ok_or_else(|| {
        ScimProblem::no_target(format!("no element of {attr} matches the filter"))
    })?;
    let mut elem = Map::new();
    for (k, v) in eqs {
        let name = def
            .sub
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(&k))
            .map_or(k, |d| d.name.to_string());
        elem.insert(name, v);
    }
    Ok(elem)
}

fn member_change(
    set: &SchemaSet,
    resolved: &Resolved,
    op: Op,
    pp: &PatchPath,
    value: Option<Value>,
    out: &mut Vec<MemberChange>,
) -> Result<(), ScimProblem> {
    let def = resolved
        .attr
        .ok_or_else(|| ScimProblem::invalid_path("members"))?;
    if let Some(f) = &pp.filter {
        check_value_filter(set, resolved, f).map_err(ScimProblem::invalid_path)?;
    }
    let list = |value: Option<Value>| -> Result<Vec<Value>, ScimProblem> {
        Ok(
            match value
                .map(|v| coerce(def, v, "members"))
                .transpose()?
                .flatten()
            {
                Some(Value::Array(items)) => items
                    .into_iter()
                    .filter(|i| i.get("value").and_then(Value::as_str).is_some())
                    .collect(),
                _ => Vec::new(),
            },
        )
    };
    let removal = |f: &Filter| match member_ids(f) {
        Some(ids) => MemberChange::Remove(ids),
        None => MemberChange::RemoveMatching(f.clone()),
    };
    if pp.sub.is_some() || resolved.sub.is_some() {
        return Err(ScimProblem::invalid_path(
            "members' sub-attributes are immutable; add or remove whole members",
        ));
    }
    match (op, &pp.filter) {
        (Op::Add, None) => out.push(MemberChange::Add(list(value)?)),
        (Op::Add, Some(_)) => {
            return Err(ScimProblem::invalid_path(
                "add to members takes the path \"members\", without a filter",
            ));
        }
        (Op::Remove, Some(f)) => out.push(removal(f)),
        (Op::Remove, None) => match value {
            // Entra: remove with path "members" and a list of values.
            Some(v) if !v.is_null() => {
                let ids = list(Some(v))?
                    .iter()
                    .filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_string))
                    .collect();
                out.push(MemberChange::Remove(ids));
            }
            _ => out.push(MemberChange::RemoveAll),
        },
        (Op::Replace, None) => {
            out.push(MemberChange::RemoveAll);
            out.push(MemberChange::Add(list(value)?));
        }
        (Op::Replace, Some(f)) => {
            out.push(removal(f));
            out.push(MemberChange::Add(list(value)?));
        }
    }
    Ok(())
}

/// `value eq "a" or value eq "b"` → the ids, so the store can delete by key.
fn member_ids(f: &Filter) -> Option<Vec<String>> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(v),
        } if path.urn.is_none()
            && path.sub.is_none()
            && path.attr.eq_ignore_ascii_case("value") =>
        {
            Some(vec![v.clone()])
        }
        Filter::Or(a, b) => {
            let mut ids = member_ids(a)?;
            ids.extend(member_ids(b)?);
            Some(ids)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::ENTERPRISE_USER_SCHEMA;
    use serde_json::json;

    fn users() -> SchemaSet {
        SchemaSet::new(ResourceKind::User, vec![])
    }

    fn patch(
        set: &SchemaSet,
        doc: Value,
        body: Value,
    ) -> Result<(Value, Vec<MemberChange>), ScimProblem> {
        let Value::Object(mut doc) = doc else {
            panic!()
        };
        let ops = parse_operations(&body)?;
        let m = apply(set, &mut doc, &ops)?;
        Ok((Value::Object(doc), m))
    }

    fn ops(list: Value) -> Value {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list})
    }

    #[test]
    fn entra_capitalised_ops_string_booleans_and_dotted_keys() {
        let (doc, _) = patch(
            &users(),
            json!({"userName": "a", "active": true}),
            ops(json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "replace", "value": {
                    "name.givenName": "Ada",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "7",
                    "displayName": "Ada L"
                }},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": "boss"}},
            ])),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({
                "userName": "a", "active": false, "name": {"givenName": "Ada"}, "displayName": "Ada L",
                ENTERPRISE_USER_SCHEMA: {"employeeNumber": "7", "manager": {"value": "boss"}}
            })
        );
    }

    #[test]
    fn a_whole_extension_as_the_path_merges_its_attributes_or_removes_it() {
        let start = json!({"userName": "a", ENTERPRISE_USER_SCHEMA: {"employeeNumber": "7", "department": "R&D"}});
        let (doc, _) = patch(&users(), start.clone(), ops(json!([
            {"op": "replace", "path": "URN:ietf:params:scim:schemas:extension:enterprise:2.0:User",
             "value": {"department": "Ops", "costCenter": "42"}},
        ])))
        .unwrap();
        assert_eq!(
            doc[ENTERPRISE_USER_SCHEMA],
            json!({"employeeNumber": "7", "department": "Ops", "costCenter": "42"})
        );
        let (doc, _) = patch(
            &users(),
            start.clone(),
            ops(json!([
                {"op": "remove", "path": ENTERPRISE_USER_SCHEMA},
            ])),
        )
        .unwrap();
        assert_eq!(doc, json!({"userName": "a"}));
        let e = patch(
            &users(),
            start,
            ops(json!([
                {"op": "add", "path": ENTERPRISE_USER_SCHEMA, "value": "7"},
            ])),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, "invalidValue", "{e:?}");
    }

    #[test]
    fn value_filtered_paths_edit_create_and_remove_elements() {
        let start = json!({"userName": "a", "emails": [
            {"value": "a@work.com", "type": "work", "primary": true},
            {"value": "a@home.com", "type": "home"}
        ]});
        let (doc, _) = patch(&users(), start.clone(), ops(json!([
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@work.com"},
            {"op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"},
            {"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true},
        ])))
        .unwrap();
        assert_eq!(
            doc["emails"],
            json!([
                {"value": "new@work.com", "type": "work", "primary": false},
                {"value": "a@home.com", "type": "home", "primary": true}
            ])
        );
        assert_eq!(
            doc["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555"}])
        );
        let (doc, _) = patch(
            &users(),
            start,
            ops(json!([
                {"op": "remove", "path": "emails[type eq \"work\"]"}
            ])),
        )
        .unwrap();
        assert_eq!(
            doc["emails"],
            json!([{"value": "a@home.com", "type": "home"}])
        );
    }

    #[test]
    fn group_membership_comes_back_as_member_changes() {
        let groups = SchemaSet::new(ResourceKind::Group, vec![]);
        let (doc, changes) = patch(
            &groups,
            json!({"displayName": "eng"}),
            ops(json!([
                {"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]},
                {"op": "remove", "path": "members[value eq \"u3\"]"},
                {"op": "Remove", "path": "members", "value": [{"value": "u4"}]},
                {"op": "replace", "value": {"displayName": "engineering", "id": "ignored"}},
                {"op": "replace", "path": "members", "value": []},
            ])),
        )
        .unwrap();
        assert_eq!(doc, json!({"displayName": "engineering"}));
        assert_eq!(
            changes,
            vec![
                MemberChange::Add(vec![json!({"value": "u1"}), json!({"value": "u2"})]),
                MemberChange::Remove(vec!["u3".into()]),
                MemberChange::Remove(vec!["u4".into()]),
                MemberChange::RemoveAll,
                MemberChange::Add(vec![]),
            ]
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        for (body, scim_type) in [
            (
                json!({"Operations": [{"op": "move", "path": "a"}]}),
                "invalidSyntax",
            ),
            (json!({"Operations": [{"op": "remove"}]}), "noTarget"),
            (
                json!({"Operations": [{"op": "replace", "path": "id", "value": "x"}]}),
                "mutability",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "nosuch", "value": "x"}]}),
                "invalidPath",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}]}),
                "invalidPath",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "userName[type eq \"a\"]", "value": "x"}]}),
                "invalidPath",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "emails[type ne \"a\"].value", "value": "x"}]}),
                "noTarget",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "active", "value": "perhaps"}]}),
                "invalidValue",
            ),
            (json!({"Ops": []}), "invalidSyntax"),
        ] {
            let e = patch(&users(), json!({"userName": "a"}), body.clone())
                .expect_err(&body.to_string());
            assert_eq!(e.scim_type, scim_type, "{body}: {e}");
        }
    }
}
