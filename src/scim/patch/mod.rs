//! PATCH (RFC 7644 §3.5.2): parsing `Operations` and paths ([`parse`]), and
//! applying them to a resource document in memory: single-valued attributes
//! ([`single`]), multi-valued ones ([`multi`]). Group membership is the
//! exception ([`members`]): it is returned as [`MemberChange`]s for the store to
//! apply row by row, so adding one member to a 10k-member group never rewrites
//! the group.

mod members;
mod multi;
mod parse;
mod single;

use serde_json::{Map, Value};

pub use members::MemberChange;
pub use parse::{MAX_OPERATIONS, Op, Operation, PatchPath, parse_operations, parse_path};

use super::ScimProblem;
use super::filter;
use super::resource::extension_object;
use super::schema::{Mutability, Namespace, Resolved, ResourceKind, SchemaSet};

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

/// One operation on one path: refused when the attribute is read-only,
/// ignored when it is write-only, else handed to the edit for its kind.
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
            return members::member_change(set, &resolved, op, pp, value, members);
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
    match resolved.attr {
        None => {
            single::apply_undeclared(container, &resolved.name, op, value);
            Ok(())
        }
        Some(def) if def.multi => multi::apply(set, container, &resolved, def, op, pp, value),
        Some(def) => single::apply(container, &resolved, def, op, value),
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
