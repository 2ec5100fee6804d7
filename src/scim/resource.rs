//! Normalising resources as IdPs send them into the one shape idsync stores:
//! canonical attribute names, booleans that are booleans, read-only and
//! write-only attributes dropped, extension attributes under their schema URN.
//!
//! Leniency here is deliberate and each case comes from a real client: Entra
//! sends `"active": "False"`, Okta sends `groups: []` and a `password`, Google's
//! connectors list SCIM 1.x URNs in `schemas`.

use serde_json::{Map, Value};

use super::ScimProblem;
use super::schema::{
    Attr, AttrType, ENTERPRISE_USER_SCHEMA, Mutability, Namespace, ResourceKind, SchemaSet,
};

/// Coerces a value to an attribute's type. `Ok(None)` means "no value" (null).
pub fn coerce(def: &Attr, value: Value, path: &str) -> Result<Option<Value>, ScimProblem> {
    if value.is_null() {
        return Ok(None);
    }
    if def.multi {
        let items = match value {
            Value::Array(items) => items,
            // A single element where a list belongs: take it as a list of one.
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        let mut seen_primary = false;
        for item in items {
            if let Some(mut v) = coerce_single(def, item, path)? {
                // "primary" true at most once (RFC 7643 §2.4): the first one wins.
                if let Some(obj) = v.as_object_mut()
                    && obj.get("primary") == Some(&Value::Bool(true))
                {
                    if seen_primary {
                        obj.insert("primary".into(), Value::Bool(false));
                    }
                    seen_primary = true;
                }
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        return Ok(Some(Value::Array(out)));
    }
    coerce_single(def, value, path)
}

fn coerce_single(def: &Attr, value: Value, path: &str) -> Result<Option<Value>, ScimProblem> {
    if value.is_null() {
        return Ok(None);
    }
    let wrong = |expected: &str, got: &Value| {
        ScimProblem::invalid_value(format!(
            "{path} must be {expected}, got {}",
            match got {
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "a list",
                Value::Object(_) => "an object",
                Value::Null => "null",
            }
        ))
    };
    Ok(Some(match def.ty {
        AttrType::Boolean => match &value {
            Value::Bool(_) => value,
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            other => return Err(wrong("a boolean", other)),
        },
        AttrType::Complex => {
            let Value::Object(obj) = value else {
                // A bare value for a complex attribute with a `value` is that
                // value: Entra sets `manager` to the manager's id string.
                if def.sub.iter().any(|s| s.name == "value")
                    && matches!(value, Value::String(_) | Value::Number(_))
                {
                    let mut m = Map::new();
                    m.insert("value".into(), value);
                    return Ok(Some(Value::Object(m)));
                }
                return Err(wrong("an object", &value));
            };
            let mut out = Map::new();
            for (k, v) in obj {
                // Microsoft's SCIM reference collection names a member's
                // `display` `displayName`.
                let k = if def.name == "members" && k.eq_ignore_ascii_case("displayName") {
                    "display".to_string()
                } else {
                    k
                };
                let Some(sub) = def.sub.iter().find(|s| s.name.eq_ignore_ascii_case(&k)) else {
                    continue; // unknown sub-attributes are ignored
                };
                if sub.mutability == Mutability::ReadOnly && def.name != "members" {
                    continue;
                }
                if let Some(v) = coerce_single(sub, v, &format!("{path}.{}", sub.name))? {
                    out.insert(sub.name.to_string(), v);
                }
            }
            if out.is_empty() {
                return Ok(None);
            }
            Value::Object(out)
        }
        AttrType::Integer | AttrType::Decimal => match &value {
            Value::Number(_) => value,
            other => return Err(wrong("a number", other)),
        },
        // Strings, references, date-times, binaries. Numbers become their text
        // (directories send employee numbers either way).
        _ => match value {
            Value::String(_) => value,
            Value::Number(n) => Value::String(n.to_string()),
            other => return Err(wrong("a string", &other)),
        },
    }))
}

/// Whether a URN in `schemas` or as a key is one idsync ignores: SCIM 1.x core
/// URNs that Google Workspace's connectors send beside the 2.0 ones.
fn is_legacy_urn(urn: &str) -> bool {
    urn.to_ascii_lowercase().starts_with("urn:scim:schemas:")
}

/// OneLogin's "Enterprise User Schema" template (its SCIM 1.x connector) sends
/// the enterprise attributes under `urn:scim:schemas:extension:enterprise:1.0`,
/// with the manager's id as `managerId`. They are the 2.0 extension's
/// attributes (RFC 7643 §4.3 kept them), so they are stored as those rather
/// than dropped with the other 1.x URNs.
fn legacy_enterprise_extension(
    set: &SchemaSet,
    key: &str,
    value: &Value,
) -> Result<Option<Map<String, Value>>, ScimProblem> {
    const ENTERPRISE_1_0: &str = "urn:scim:schemas:extension:enterprise:1.0";
    if set.kind != ResourceKind::User || !key.eq_ignore_ascii_case(ENTERPRISE_1_0) {
        return Ok(None);
    }
    let mut value = value.clone();
    if let Some(manager) = value
        .as_object_mut()
        .and_then(|ext| {
            let key = ext
                .keys()
                .find(|k| k.eq_ignore_ascii_case("manager"))?
                .clone();
            ext.get_mut(&key)
        })
        .and_then(Value::as_object_mut)
        && let Some(id_key) = manager
            .keys()
            .find(|k| k.eq_ignore_ascii_case("managerId"))
            .cloned()
        && let Some(id) = manager.remove(&id_key)
    {
        manager.entry("value").or_insert(id);
    }
    let ns = Namespace::Extension(ENTERPRISE_USER_SCHEMA);
    Ok(Some(
        normalize_extension(set, &ns, value)?
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default(),
    ))
}

/// Normalises a POST/PUT body. `id`, `meta`, `groups`, `password` and unknown
/// attributes are dropped; extension objects are kept under their canonical URN.
pub fn normalize(set: &SchemaSet, input: Value) -> Result<Map<String, Value>, ScimProblem> {
    let mut out = Map::new();
    collect(set, input, &mut out)?;
    let required = set.kind.name_attr();
    match out.get(required) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(out),
        _ => Err(ScimProblem::invalid_value(format!(
            "{required} is required and must be a non-empty string"
        ))),
    }
}

/// Adds the attributes of the JSON object `input` to `out`, normalised.
fn collect(set: &SchemaSet, input: Value, out: &mut Map<String, Value>) -> Result<(), ScimProblem> {
    let Value::Object(input) = input else {
        return Err(ScimProblem::invalid_syntax(
            "the request body must be a JSON object",
        ));
    };
    for (key, value) in input {
        if key.eq_ignore_ascii_case("schemas") {
            check_schemas(set, &value)?;
        } else if super::filter::is_urn(&key) {
            collect_urn_keyed(set, &key, value, out)?;
        } else if let Some(def) = set.resolve(None, &key, None).and_then(|r| r.attr) {
            // Unknown attributes are ignored, as RFC 7644 §3.3 allows.
            if matches!(def.mutability, Mutability::ReadOnly | Mutability::WriteOnly) {
                continue;
            }
            if let Some(v) = coerce(def, value, def.name)? {
                out.insert(def.name.to_string(), v);
            }
        }
    }
    Ok(())
}

/// An attribute whose key is a schema URN: an extension object, core
/// attributes nested under the core URN, a legacy enterprise extension, or
/// Entra's `urn:…:attribute` for one extension attribute.
fn collect_urn_keyed(
    set: &SchemaSet,
    key: &str,
    value: Value,
    out: &mut Map<String, Value>,
) -> Result<(), ScimProblem> {
    if let Some(ext) = legacy_enterprise_extension(set, key, &value)? {
        // Attributes the request also sends under the 2.0 URN win.
        let urn = ENTERPRISE_USER_SCHEMA.to_string();
        match out.get_mut(&urn) {
            Some(Value::Object(current)) => {
                let mut merged = ext;
                merged.extend(std::mem::take(current));
                *current = merged;
            }
            _ => {
                out.insert(urn, Value::Object(ext));
            }
        }
        return Ok(());
    }
    if is_legacy_urn(key) {
        return Ok(());
    }
    if key.eq_ignore_ascii_case(set.kind.schema()) {
        // Core attributes nested under the core URN: flatten them.
        return collect(set, value, out);
    }
    if let Some(ns) = set.extension(key) {
        if let Some(ext) = normalize_extension(set, &ns, value)? {
            out.insert(ns_urn(&ns).to_string(), ext);
        }
        return Ok(());
    }
    // Entra's dotted URN keys name one extension attribute.
    if let Some((urn, attr)) = key.rsplit_once(':')
        && let Some(ns) = set.extension(urn)
    {
        let ext = extension_object(out, &ns)?;
        return set_extension_attr(set, ext, &ns, attr, value);
    }
    Err(ScimProblem::invalid_value(format!(
        "schema extension {key} is not supported by this workspace (declare it in the Workspace's spec.policy.scimSchemaExtensions)"
    )))
}

fn check_schemas(set: &SchemaSet, value: &Value) -> Result<(), ScimProblem> {
    let Value::Array(list) = value else {
        return Err(ScimProblem::invalid_syntax(
            "schemas must be a list of URNs",
        ));
    };
    for urn in list {
        let Some(urn) = urn.as_str() else {
            return Err(ScimProblem::invalid_syntax(
                "schemas must be a list of URNs",
            ));
        };
        if urn.eq_ignore_ascii_case(set.kind.schema())
            || is_legacy_urn(urn)
            || set.extension(urn).is_some()
        {
            continue;
        }
        return Err(ScimProblem::invalid_value(format!(
            "schema {urn} is not supported for {} resources (declare extensions in the Workspace's spec.policy.scimSchemaExtensions)",
            set.kind.as_str()
        )));
    }
    Ok(())
}

pub fn ns_urn(ns: &Namespace) -> &str {
    match ns {
        Namespace::Core => "",
        Namespace::Extension(u) => u,
        Namespace::Declared(u) => u,
    }
}

/// The resource's object for extension `ns`, created when missing.
pub fn extension_object<'m>(
    doc: &'m mut Map<String, Value>,
    ns: &Namespace,
) -> Result<&'m mut Map<String, Value>, ScimProblem> {
    let urn = ns_urn(ns);
    doc.entry(urn.to_string())
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| ScimProblem::invalid_value(format!("{urn} must be an object")))
}

fn normalize_extension(
    set: &SchemaSet,
    ns: &Namespace,
    value: Value,
) -> Result<Option<Value>, ScimProblem> {
    let Value::Object(obj) = value else {
        return Err(ScimProblem::invalid_value(format!(
            "{} must be an object",
            ns_urn(ns)
        )));
    };
    let mut out = Map::new();
    for (k, v) in obj {
        set_extension_attr(set, &mut out, ns, &k, v)?;
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// Sets one extension attribute (`employeeNumber` or `manager.value`) in the
/// extension object `target`.
fn set_extension_attr(
    set: &SchemaSet,
    target: &mut Map<String, Value>,
    ns: &Namespace,
    attr: &str,
    value: Value,
) -> Result<(), ScimProblem> {
    let (name, sub) = match attr.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (attr, None),
    };
    let urn = ns_urn(ns).to_string();
    let Some(resolved) = set.resolve(Some(&urn), name, sub) else {
        return Ok(()); // unknown attribute of a known extension: ignored
    };
    let container = target;
    match (resolved.attr, &resolved.sub) {
        (Some(def), None) => {
            if def.mutability == Mutability::ReadOnly {
                return Ok(());
            }
            match coerce(def, value, def.name)? {
                Some(v) => {
                    container.insert(def.name.to_string(), v);
                }
                None => {
                    container.remove(def.name);
                }
            }
        }
        (Some(def), Some((sub_name, Some(sub_def)))) => {
            let obj = container
                .entry(def.name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let (Some(obj), Some(v)) = (obj.as_object_mut(), coerce(sub_def, value, sub_name)?) {
                obj.insert(sub_name.clone(), v);
            }
        }
        // Declared extensions: stored as given.
        _ => {
            let key = match &resolved.sub {
                Some((s, _)) => format!("{}.{s}", resolved.name),
                None => resolved.name.clone(),
            };
            if value.is_null() {
                container.remove(&key);
            } else {
                container.insert(key, value);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::ENTERPRISE_USER_SCHEMA;
    use serde_json::json;

    fn users() -> SchemaSet {
        SchemaSet::new(ResourceKind::User, vec![])
    }

    #[test]
    fn core_attributes_nested_under_the_core_urn_join_the_top_level_ones() {
        let doc = normalize(
            &users(),
            json!({
                "userName": "ada@example.com",
                "urn:ietf:params:scim:schemas:core:2.0:User": {"displayName": "Ada"},
            }),
        )
        .expect("userName is at the top level");
        assert_eq!(
            Value::Object(doc),
            json!({"userName": "ada@example.com", "displayName": "Ada"})
        );
    }

    #[test]
    fn canonicalises_names_and_coerces_entra_booleans() {
        let doc = normalize(
            &users(),
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:scim:schemas:core:1.0"],
                "UserName": "Ada@Example.com",
                "ACTIVE": "False",
                "emails": [{"Value": "ada@example.com", "type": "work", "primary": "true"}],
                "name": {"givenName": "Ada", "FamilyName": "Lovelace"},
                "id": "client-chosen", "groups": [], "password": "hunter2",
                "meta": {"created": "2020-01-01T00:00:00Z"},
                "unknownThing": 1,
            }),
        )
        .unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({
                "userName": "Ada@Example.com",
                "active": false,
                "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
                "name": {"givenName": "Ada", "familyName": "Lovelace"},
            })
        );
    }

    #[test]
    fn keeps_extensions_under_their_urn() {
        let doc = normalize(
            &users(),
            json!({
                "userName": "a",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                    "EmployeeNumber": 42, "manager": {"value": "m1", "displayName": "ro"}
                }
            }),
        )
        .unwrap();
        assert_eq!(
            doc[ENTERPRISE_USER_SCHEMA],
            json!({"employeeNumber": "42", "manager": {"value": "m1"}})
        );
    }

    #[test]
    fn onelogin_scim_1_0_templates_are_understood() {
        // OneLogin's documented "Enterprise User Schema" template, filled in.
        let doc = normalize(
            &users(),
            json!({
                "schemas": ["urn:scim:schemas:core:1.0", "urn:scim:schemas:extension:enterprise:1.0"],
                "userName": "ada@example.com",
                "name": {"familyName": "Lovelace", "givenName": "Ada", "formatted": "Ada Lovelace"},
                "emails": {"value": "ada@example.com", "type": "work", "primary": true},
                "title": "Engineer",
                "urn:scim:schemas:extension:enterprise:1.0": {
                    "department": "R&D",
                    "manager": {"managerId": "m-1", "displayName": "Grace Hopper"}
                }
            }),
        )
        .unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({
                "userName": "ada@example.com",
                "name": {"familyName": "Lovelace", "givenName": "Ada", "formatted": "Ada Lovelace"},
                "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
                "title": "Engineer",
                ENTERPRISE_USER_SCHEMA: {"department": "R&D", "manager": {"value": "m-1"}}
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_store() {
        for (body, why) in [
            (json!([]), "JSON object"),
            (json!({"displayName": "x"}), "userName is required"),
            (
                json!({"userName": "a", "active": "maybe"}),
                "active must be a boolean",
            ),
            (
                json!({"userName": "a", "schemas": ["urn:x:y"]}),
                "not supported",
            ),
            (
                json!({"userName": "a", "urn:x:ext": {"a": 1}}),
                "scimSchemaExtensions",
            ),
            (
                json!({"userName": "a", "name": "Ada"}),
                "name must be an object",
            ),
        ] {
            let e = normalize(&users(), body.clone()).expect_err(&body.to_string());
            assert!(e.detail.contains(why), "{body}: {e}");
        }
    }
}
