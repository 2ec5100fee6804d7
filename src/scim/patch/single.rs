//! Edits of single-valued attributes, and of attributes of declared extensions
//! idsync has no definition for.

use serde_json::{Map, Value};

use super::super::ScimProblem;
use super::super::resource::coerce;
use super::super::schema::{Attr, Resolved};
use super::Op;

/// An add, remove or replace of a single-valued attribute (`displayName`,
/// `name`, `name.givenName`).
pub(super) fn apply(
    container: &mut Map<String, Value>,
    resolved: &Resolved,
    def: &'static Attr,
    op: Op,
    value: Option<Value>,
) -> Result<(), ScimProblem> {
    let name = def.name;
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

/// An attribute of a declared extension without a definition: stored as given.
pub(super) fn apply_undeclared(
    container: &mut Map<String, Value>,
    name: &str,
    op: Op,
    value: Option<Value>,
) {
    let key = container
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string());
    match (op, value) {
        (Op::Remove, _) | (_, None) | (_, Some(Value::Null)) => {
            container.remove(&key);
        }
        (_, Some(v)) => {
            container.insert(key, v);
        }
    }
}
