//! In-memory evaluation of a value filter against one element of a multi-valued
//! attribute (`emails[type eq "work"]` in a PATCH path). Resource-level filters
//! run in SQL (`service::store::scim_query`); this is the same semantics for the
//! elements a PATCH edits.

use serde_json::Value;

use super::filter::{AttrPath, CompValue, CompareOp, Filter};
use super::schema::{Resolved, SchemaSet};

/// The text of a scalar JSON value as filters compare it.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Compares `actual` with `expected` under `op`; `case_exact` false lower-cases
/// both sides first.
pub fn compare(actual: &str, op: CompareOp, expected: &str, case_exact: bool) -> bool {
    let (a, e) = if case_exact {
        (actual.to_string(), expected.to_string())
    } else {
        (actual.to_lowercase(), expected.to_lowercase())
    };
    match op {
        CompareOp::Eq => a == e,
        CompareOp::Ne => a != e,
        CompareOp::Co => a.contains(&e),
        CompareOp::Sw => a.starts_with(&e),
        CompareOp::Ew => a.ends_with(&e),
        CompareOp::Gt => a > e,
        CompareOp::Ge => a >= e,
        CompareOp::Lt => a < e,
        CompareOp::Le => a <= e,
    }
}

fn field<'v>(elem: &'v Value, name: &str) -> Option<&'v Value> {
    super::get_ci(elem.as_object()?, name)
}

fn sub_of<'a>(
    set: &SchemaSet,
    parent: &Resolved,
    path: &'a AttrPath,
) -> Option<(Resolved, &'a str)> {
    if path.urn.is_some() || path.sub.is_some() {
        return None;
    }
    set.resolve_sub(parent, &path.attr)
        .map(|r| (r, path.attr.as_str()))
}

/// Checks that every path in a value filter names a sub-attribute of `parent`.
pub fn check_value_filter(
    set: &SchemaSet,
    parent: &Resolved,
    filter: &Filter,
) -> Result<(), String> {
    match filter {
        Filter::Compare { path, .. } | Filter::Present(path) => sub_of(set, parent, path)
            .map(|_| ())
            .ok_or_else(|| format!("{path} is not a sub-attribute of {}", parent.name)),
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_value_filter(set, parent, a)?;
            check_value_filter(set, parent, b)
        }
        Filter::Not(a) => check_value_filter(set, parent, a),
        Filter::ValuePath { .. } => Err("a value filter cannot nest another".into()),
    }
}

/// Whether `elem` (one element of the multi-valued `parent`) satisfies `filter`.
/// Unknown sub-attributes never match; [`check_value_filter`] refuses them first.
pub fn element_matches(set: &SchemaSet, parent: &Resolved, filter: &Filter, elem: &Value) -> bool {
    match filter {
        Filter::And(a, b) => {
            element_matches(set, parent, a, elem) && element_matches(set, parent, b, elem)
        }
        Filter::Or(a, b) => {
            element_matches(set, parent, a, elem) || element_matches(set, parent, b, elem)
        }
        Filter::Not(a) => !element_matches(set, parent, a, elem),
        Filter::Present(path) => {
            let Some((_, name)) = sub_of(set, parent, path) else {
                return false;
            };
            matches!(field(elem, name), Some(v) if !v.is_null() && v != &Value::String(String::new()))
        }
        Filter::Compare { path, op, value } => {
            let Some((resolved, name)) = sub_of(set, parent, path) else {
                return false;
            };
            let actual = field(elem, name).and_then(scalar_text);
            match (value, actual) {
                (CompValue::Null, actual) => (*op == CompareOp::Eq) == actual.is_none(),
                (expected, Some(actual)) => {
                    let expected = expected.as_text().unwrap_or_default();
                    compare(&actual, *op, &expected, resolved.case_exact())
                }
                (_, None) => *op == CompareOp::Ne,
            }
        }
        Filter::ValuePath { .. } => false,
    }
}

/// The `attr eq value` pairs a filter pins down when it is a conjunction of
/// equalities (`type eq "work"`), so a PATCH can create the element it names.
pub fn equalities(filter: &Filter) -> Option<Vec<(String, Value)>> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.urn.is_none() && path.sub.is_none() => {
            let v = match value {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => return None,
            };
            Some(vec![(path.attr.clone(), v)])
        }
        Filter::And(a, b) => {
            let mut all = equalities(a)?;
            all.extend(equalities(b)?);
            Some(all)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::{filter::parse, schema::ResourceKind};
    use serde_json::json;

    #[test]
    fn value_filters_match_elements_case_insensitively_unless_case_exact() {
        let set = SchemaSet::new(ResourceKind::User, vec![]);
        let emails = set.resolve(None, "emails", None).unwrap();
        let f = parse(r#"type eq "WORK" and value co "@Example.com""#).unwrap();
        assert!(element_matches(
            &set,
            &emails,
            &f,
            &json!({"type": "work", "value": "a@example.com"})
        ));
        assert!(!element_matches(
            &set,
            &emails,
            &f,
            &json!({"type": "home", "value": "a@example.com"})
        ));
        let groups = SchemaSet::new(ResourceKind::Group, vec![]);
        let members = groups.resolve(None, "members", None).unwrap();
        let f = parse(r#"value eq "ABC""#).unwrap();
        assert!(!element_matches(
            &groups,
            &members,
            &f,
            &json!({"value": "abc"})
        ));
        assert!(element_matches(
            &groups,
            &members,
            &f,
            &json!({"value": "ABC"})
        ));
    }
}
