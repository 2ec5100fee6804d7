//! Edits of multi-valued attributes (`emails`, `emails.value`,
//! `emails[type eq "work"].value`): which elements a path selects, and what an
//! add, remove or replace does to them. At most one element stays primary.

use serde_json::{Map, Value};

use super::super::ScimProblem;
use super::super::eval::{self, check_value_filter, element_matches, equalities, scalar_text};
use super::super::filter::{AttrPath, CompareOp, Filter};
use super::super::resource::coerce;
use super::super::schema::{Attr, Resolved, SchemaSet};
use super::{Op, PatchPath};

/// One operation on a multi-valued attribute `def` of `container`.
pub(super) fn apply(
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
    let sub_def = sub_attribute(def, pp, resolved)?;
    let selected = select(set, resolved, pp.filter.as_ref(), &items)?;
    let whole = |value: Option<Value>| {
        value
            .map(|v| coerce(def, v, name))
            .transpose()
            .map(Option::flatten)
    };
    let filtered = pp.filter.is_some();
    let primary_at = match (op, sub_def) {
        (Op::Remove, Some(sd)) => {
            for &i in &selected {
                if let Some(obj) = items[i].as_object_mut() {
                    obj.remove(sd.name);
                }
            }
            None
        }
        (Op::Remove, None) if filtered => {
            let mut i = 0;
            items.retain(|_| {
                let keep = !selected.contains(&i);
                i += 1;
                keep
            });
            None
        }
        (Op::Remove, None) => {
            remove_listed(set, resolved, &mut items, whole(value)?);
            None
        }
        (_, Some(sd)) => {
            let v = value
                .map(|v| coerce(sd, v, &format!("{name}.{}", sd.name)))
                .transpose()?
                .flatten();
            set_sub(&mut items, &selected, sd, v, pp, def)?
        }
        (Op::Replace, None) if !filtered => {
            items = match whole(value)? {
                Some(Value::Array(new)) => new,
                _ => Vec::new(),
            };
            None
        }
        (Op::Add, None) if !filtered => add_elements(&mut items, whole(value)?),
        (_, None) => {
            edit_selected(&mut items, &selected, op, whole(value)?, pp, def)?;
            None
        }
    };
    keep_one_primary(&mut items, primary_at);
    items.retain(|i| !matches!(i, Value::Object(o) if o.is_empty()));
    if !items.is_empty() {
        container.insert(name.to_string(), Value::Array(items));
    }
    Ok(())
}

/// The sub-attribute being edited: `emails[…].value` or `emails.value`.
fn sub_attribute(
    def: &'static Attr,
    pp: &PatchPath,
    resolved: &Resolved,
) -> Result<Option<&'static Attr>, ScimProblem> {
    let sub_name = pp
        .sub
        .clone()
        .or_else(|| resolved.sub.as_ref().map(|(s, _)| s.clone()));
    let Some(s) = sub_name else {
        return Ok(None);
    };
    def.sub
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(&s))
        .map(Some)
        .ok_or_else(|| ScimProblem::invalid_path(format!("{} has no sub-attribute {s}", def.name)))
}

/// The indices of the elements a value filter selects (all without one).
fn select(
    set: &SchemaSet,
    resolved: &Resolved,
    filter: Option<&Filter>,
    items: &[Value],
) -> Result<Vec<usize>, ScimProblem> {
    let Some(f) = filter else {
        return Ok((0..items.len()).collect());
    };
    check_value_filter(set, resolved, f).map_err(ScimProblem::invalid_path)?;
    Ok((0..items.len())
        .filter(|&i| element_matches(set, resolved, f, &items[i]))
        .collect())
}

/// `remove` with a value list removes those elements (Entra's dialect); with
/// nothing, every element.
fn remove_listed(
    set: &SchemaSet,
    resolved: &Resolved,
    items: &mut Vec<Value>,
    value: Option<Value>,
) {
    let Some(Value::Array(gone)) = value else {
        items.clear();
        return;
    };
    let exact = set
        .resolve_sub(resolved, "value")
        .as_ref()
        .is_some_and(Resolved::case_exact);
    let value_of = |v: &Value| v.get("value").and_then(scalar_text);
    items.retain(|item| {
        !gone.iter().any(|g| match (value_of(item), value_of(g)) {
            (Some(a), Some(b)) => eval::compare(&a, CompareOp::Eq, &b, exact),
            _ => item == g,
        })
    });
}

/// Sets (or, with no value, removes) sub-attribute `sd` of the selected
/// elements; with none selected, adds the element the filter names. Answers
/// the element made primary, if any.
fn set_sub(
    items: &mut Vec<Value>,
    selected: &[usize],
    sd: &'static Attr,
    v: Option<Value>,
    pp: &PatchPath,
    def: &Attr,
) -> Result<Option<usize>, ScimProblem> {
    if selected.is_empty() {
        let mut elem = element_from_filter(pp.filter.as_ref(), def, &pp.attr)?;
        if let Some(v) = v {
            elem.insert(sd.name.to_string(), v);
        }
        items.push(Value::Object(elem));
        return Ok((sd.name == "primary").then(|| items.len() - 1));
    }
    let mut primary_at = None;
    for &i in selected {
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
    Ok(primary_at)
}

/// `add` of whole elements: a new one is appended, an existing one (same
/// value and type) replaced. Answers the element made primary, if any.
fn add_elements(items: &mut Vec<Value>, value: Option<Value>) -> Option<usize> {
    let Some(Value::Array(new)) = value else {
        return None;
    };
    let mut primary_at = None;
    for item in new {
        let is_primary = item.get("primary") == Some(&Value::Bool(true));
        let at = match items.iter().position(|i| same_element(i, &item)) {
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
    primary_at
}

/// `add`/`replace` of whole elements a filter selects: `add` merges into
/// them, `replace` replaces them; with none selected, adds the element the
/// filter names.
fn edit_selected(
    items: &mut Vec<Value>,
    selected: &[usize],
    op: Op,
    value: Option<Value>,
    pp: &PatchPath,
    def: &Attr,
) -> Result<(), ScimProblem> {
    let new = match value {
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
        return Ok(());
    }
    for &i in selected {
        match (op, &mut items[i], &new) {
            (Op::Add, Value::Object(old), Value::Object(new)) => old.extend(new.clone()),
            (_, slot, _) => *slot = new.clone(),
        }
    }
    Ok(())
}

/// At most one primary: the one just set wins, else the last one.
fn keep_one_primary(items: &mut [Value], just_set: Option<usize>) {
    let is_primary = |i: &Value| i.get("primary") == Some(&Value::Bool(true));
    let Some(at) = just_set.or_else(|| items.iter().rposition(is_primary)) else {
        return;
    };
    for (i, item) in items.iter_mut().enumerate() {
        if i != at
            && let Some(obj) = item.as_object_mut()
            && obj.get("primary") == Some(&Value::Bool(true))
        {
            obj.insert("primary".into(), Value::Bool(false));
        }
    }
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
