//! Group membership edits: returned as [`MemberChange`]s for the store to apply
//! row by row, never edited in the group document.

use serde_json::Value;

use super::super::ScimProblem;
use super::super::eval::check_value_filter;
use super::super::filter::{CompValue, CompareOp, Filter};
use super::super::resource::coerce;
use super::super::schema::{Resolved, SchemaSet};
use super::{Op, PatchPath};

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

/// An operation on `members`, as the changes it makes.
pub(super) fn member_change(
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
