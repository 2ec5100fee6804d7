//! Stored resources as SCIM JSON: `schemas`, `id`, `meta`, memberships, and the
//! `attributes` / `excludedAttributes` projection.

use serde_json::{Map, Value, json};

use crate::{
    scim::{
        ScimProblem,
        filter::{AttrPath, parse_attr_path},
        schema::SchemaSet,
    },
    service::store::{Member, ScimRecord, format_millis},
};

/// The weak ETag of a resource version (RFC 7644 §3.14).
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Whether an `If-Match` / `If-None-Match` header value names `current`.
pub fn etag_matches(header: &str, current: &str) -> bool {
    let strip = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    let current = strip(current);
    header
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == current)
}

/// Which attributes a request asked for.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    include: Vec<AttrPath>,
    exclude: Vec<AttrPath>,
}

fn parse_list(list: Option<&str>) -> Result<Vec<AttrPath>, ScimProblem> {
    list.into_iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_attr_path(s).map_err(|e| ScimProblem::invalid_path(e.0)))
        .collect()
}

impl Projection {
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Result<Self, ScimProblem> {
        Ok(Self {
            include: parse_list(attributes)?,
            exclude: parse_list(excluded)?,
        })
    }

    /// Whether the answer will contain top-level attribute `name` (so memberships,
    /// which cost a query, are loaded only when they are shown).
    pub fn wants(&self, name: &str) -> bool {
        let hit = |p: &AttrPath| p.urn.is_none() && p.attr.eq_ignore_ascii_case(name);
        if !self.include.is_empty() {
            return self.include.iter().any(hit);
        }
        !self.exclude.iter().any(|p| hit(p) && p.sub.is_none())
    }

    /// Applies the projection to a rendered resource. `id`, `schemas` and `meta`
    /// are always returned (`returned: always`).
    pub fn apply(&self, set: &SchemaSet, resource: &mut Value) {
        let Some(obj) = resource.as_object_mut() else {
            return;
        };
        if !self.include.is_empty() {
            let mut kept = Map::new();
            for key in ["schemas", "id", "meta"] {
                if let Some(v) = obj.remove(key) {
                    kept.insert(key.into(), v);
                }
            }
            for path in &self.include {
                copy_path(set, obj, &mut kept, path);
            }
            *obj = kept;
        }
        for path in &self.exclude {
            remove_path(set, obj, path);
        }
    }
}

fn is_always(key: &str) -> bool {
    matches!(key, "schemas" | "id" | "meta")
}

/// The object holding `path`'s attribute (the resource, or an extension object)
/// and that attribute's key, as stored.
fn locate(
    set: &SchemaSet,
    obj: &Map<String, Value>,
    path: &AttrPath,
) -> Option<(Option<String>, String)> {
    let container = match &path.urn {
        Some(urn) if !urn.eq_ignore_ascii_case(set.kind.schema()) => {
            Some(obj.keys().find(|k| k.eq_ignore_ascii_case(urn))?.clone())
        }
        _ => None,
    };
    let holder = match &container {
        Some(c) => obj.get(c)?.as_object()?,
        None => obj,
    };
    let key = holder
        .keys()
        .find(|k| k.eq_ignore_ascii_case(&path.attr))?
        .clone();
    Some((container, key))
}

fn copy_path(
    set: &SchemaSet,
    from: &Map<String, Value>,
    to: &mut Map<String, Value>,
    path: &AttrPath,
) {
    // `attributes=urn:…:enterprise:2.0:User` asks for the whole extension.
    if path.urn.is_none() && path.attr.to_ascii_lowercase().starts_with("urn:") {
        if let Some((k, v)) = from
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&path.attr))
        {
            to.insert(k.clone(), v.clone());
        }
        return;
    }
    let Some((container, key)) = locate(set, from, path) else {
        return;
    };
    let source = match &container {
        Some(c) => from.get(c).and_then(Value::as_object),
        None => Some(from),
    };
    let Some(value) = source.and_then(|s| s.get(&key)) else {
        return;
    };
    let value = match &path.sub {
        None => value.clone(),
        Some(sub) => match value {
            Value::Object(o) => Value::Object(pick(o, sub)),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .filter_map(Value::as_object)
                    .map(|o| Value::Object(pick(o, sub)))
                    .collect(),
            ),
            other => other.clone(),
        },
    };
    let target = match container {
        Some(c) => match to.entry(c).or_insert_with(|| Value::Object(Map::new())) {
            Value::Object(o) => o,
            _ => return,
        },
        None => to,
    };
    match (target.get_mut(&key), value) {
        // `name.givenName` and `name.familyName` both asked for: merge.
        (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
        (_, value) => {
            target.insert(key, value);
        }
    }
}

fn pick(o: &Map<String, Value>, sub: &str) -> Map<String, Value> {
    o.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(sub))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn remove_path(set: &SchemaSet, obj: &mut Map<String, Value>, path: &AttrPath) {
    if path.urn.is_none() && path.attr.to_ascii_lowercase().starts_with("urn:") {
        obj.retain(|k, _| !k.eq_ignore_ascii_case(&path.attr));
        return;
    }
    let Some((container, key)) = locate(set, obj, path) else {
        return;
    };
    if container.is_none() && is_always(&key) {
        return;
    }
    let holder = match &container {
        Some(c) => match obj.get_mut(c) {
            Some(Value::Object(o)) => o,
            _ => return,
        },
        None => obj,
    };
    match &path.sub {
        None => {
            holder.remove(&key);
        }
        Some(sub) => match holder.get_mut(&key) {
            Some(Value::Object(o)) => o.retain(|k, _| !k.eq_ignore_ascii_case(sub)),
            Some(Value::Array(items)) => {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    item.retain(|k, _| !k.eq_ignore_ascii_case(sub));
                }
            }
            _ => {}
        },
    }
}

/// A resource as SCIM JSON. `members` (groups) and `groups` (users) are given
/// when the answer shows them.
pub fn resource(
    base_url: &str,
    rec: &ScimRecord,
    members: Option<&[Member]>,
    groups: Option<&[(String, String)]>,
) -> Value {
    let location = format!("{base_url}/{}/{}", rec.kind.endpoint(), rec.id);
    let mut schemas = vec![Value::from(rec.kind.schema())];
    let mut out = Map::new();
    for (k, v) in &rec.doc {
        if k.starts_with("urn:") {
            schemas.push(Value::from(k.clone()));
        }
        out.insert(k.clone(), v.clone());
    }
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), rec.id.clone().into());
    if rec.kind.is_principal() {
        // The stored flag wins over the document (DELETE deactivates without
        // editing it); a user whose `active` was never sent or was removed by
        // a PATCH shows none, and counts as active.
        if !rec.active || out.contains_key("active") {
            out.insert("active".into(), rec.active.into());
        }
        if let Some(groups) = groups {
            let list: Vec<Value> = groups
                .iter()
                .map(|(id, display)| {
                    json!({
                        "value": id, "display": display, "type": "direct",
                        "$ref": format!("{base_url}/Groups/{id}"),
                    })
                })
                .collect();
            out.insert("groups".into(), Value::Array(list));
        }
    }
    if let Some(members) = members {
        let list: Vec<Value> = members
            .iter()
            .map(|m| {
                let mut v = json!({
                    "value": m.id, "type": m.kind.as_str(),
                    "$ref": format!("{base_url}/{}/{}", m.kind.endpoint(), m.id),
                });
                if let Some(d) = &m.display {
                    v["display"] = d.clone().into();
                }
                v
            })
            .collect();
        out.insert("members".into(), Value::Array(list));
    }
    out.insert(
        "meta".into(),
        json!({
            "resourceType": rec.kind.as_str(),
            "created": format_millis(rec.created_at),
            "lastModified": format_millis(rec.updated_at),
            "location": location,
            "version": etag(rec.version),
        }),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::ResourceKind;

    fn user() -> Value {
        json!({
            "schemas": ["x"], "id": "1", "meta": {"version": "W/\"1\""},
            "userName": "ada", "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7", "department": "R&D"},
        })
    }

    #[test]
    fn attributes_keep_only_what_was_asked_and_what_is_always_returned() {
        let set = SchemaSet::new(ResourceKind::User, vec![]);
        let p = Projection::parse(
            Some("USERNAME,name.givenName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"),
            None,
        )
        .unwrap();
        let mut v = user();
        p.apply(&set, &mut v);
        assert_eq!(
            v,
            json!({
                "schemas": ["x"], "id": "1", "meta": {"version": "W/\"1\""},
                "userName": "ada", "name": {"givenName": "Ada"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"},
            })
        );
        assert!(!p.wants("groups"));
    }

    #[test]
    fn excluded_attributes_drop_but_never_id() {
        let set = SchemaSet::new(ResourceKind::User, vec![]);
        let p = Projection::parse(None, Some("emails,id,name.familyName")).unwrap();
        let mut v = user();
        p.apply(&set, &mut v);
        assert!(v.get("emails").is_none());
        assert_eq!(v["id"], "1");
        assert_eq!(v["name"], json!({"givenName": "Ada"}));
        assert!(p.wants("groups"));
        assert!(
            !Projection::parse(None, Some("members"))
                .unwrap()
                .wants("members")
        );
    }

    #[test]
    fn etags_match_weak_strong_and_star() {
        assert!(etag_matches("W/\"3\"", &etag(3)));
        assert!(etag_matches("\"3\"", &etag(3)));
        assert!(etag_matches("W/\"1\", W/\"3\"", &etag(3)));
        assert!(etag_matches("*", &etag(3)));
        assert!(!etag_matches("W/\"2\"", &etag(3)));
    }
}
