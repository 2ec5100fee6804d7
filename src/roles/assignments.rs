//! Role assignments: `{type, value}` pairs the IdP sets on users and groups
//! over SCIM (`roles`), checked against the types a workspace declares, and a
//! member's effective set: their own plus every group's, the highest value per
//! type. Pure: the SCIM service checks writes with it and the store keeps what
//! it computes.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use crate::admin::Assignment;
use crate::api::{AssignmentHolder, RoleAssignments};

/// Why a write's `roles` was refused (a SCIM `invalidValue`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("roles type {kind:?} is not declared for this workspace; declared: {declared}")]
    UnknownType { kind: String, declared: String },
    #[error("roles value {value:?} is not allowed for type {kind:?}; allowed: {allowed}")]
    UnknownValue {
        kind: String,
        value: String,
        allowed: String,
    },
    #[error("a roles entry needs a string type and value")]
    Malformed,
}

impl RoleAssignments {
    /// The values of `kind` in precedence order (highest first), if declared.
    fn values_of(&self, kind: &str) -> Option<&[String]> {
        self.types
            .iter()
            .find(|t| match (&t.name, &t.prefix) {
                (Some(name), _) => name == kind,
                (None, Some(prefix)) => kind.len() > prefix.len() && kind.starts_with(prefix),
                (None, None) => false,
            })
            .map(|t| t.values.as_slice())
    }

    /// Whether SCIM may set assignments on this kind of resource.
    pub fn managed_on(&self, holder: AssignmentHolder) -> bool {
        self.managed_on
            .as_ref()
            .is_none_or(|holders| holders.contains(&holder))
    }

    fn declared(&self) -> String {
        self.types
            .iter()
            .map(|t| match (&t.name, &t.prefix) {
                (Some(name), _) => name.clone(),
                (None, Some(prefix)) => format!("{prefix}*"),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks and tidies a document's `roles`: an entry with a null or missing
    /// value is dropped (that is how "Not Mapped" and a PATCH to null take an
    /// assignment away), a type given twice keeps its last entry, and every
    /// other entry must be a declared type with one of its values.
    pub fn check(&self, doc: &mut Map<String, Value>) -> Result<(), AssignmentError> {
        let Some(Value::Array(entries)) = doc.get("roles") else {
            return Ok(());
        };
        let mut kept: BTreeMap<String, Value> = BTreeMap::new();
        for entry in entries {
            let Value::Object(fields) = entry else {
                return Err(AssignmentError::Malformed);
            };
            let kind = match fields.get("type") {
                Some(Value::String(kind)) => kind,
                _ => return Err(AssignmentError::Malformed),
            };
            let value = match fields.get("value") {
                None | Some(Value::Null) => {
                    kept.remove(kind);
                    continue;
                }
                Some(Value::String(value)) => value,
                Some(_) => return Err(AssignmentError::Malformed),
            };
            let allowed = self
                .values_of(kind)
                .ok_or_else(|| AssignmentError::UnknownType {
                    kind: quoted(kind),
                    declared: self.declared(),
                })?;
            if !allowed.contains(value) {
                return Err(AssignmentError::UnknownValue {
                    kind: quoted(kind),
                    value: quoted(value),
                    allowed: allowed.join(", "),
                });
            }
            kept.insert(kind.clone(), entry.clone());
        }
        if kept.is_empty() {
            doc.remove("roles");
        } else {
            doc.insert("roles".into(), Value::Array(kept.into_values().collect()));
        }
        Ok(())
    }

    /// A member's effective assignments from their own and their groups':
    /// per type the highest value any of them has, by the declared order.
    /// Values no longer declared count for nothing.
    pub fn effective<'a>(
        &self,
        sources: impl IntoIterator<Item = &'a [Assignment]>,
    ) -> Vec<Assignment> {
        let mut best: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for assignment in sources.into_iter().flatten() {
            let Some(values) = self.values_of(&assignment.kind) else {
                continue;
            };
            let Some(rank) = values.iter().position(|v| *v == assignment.value) else {
                continue;
            };
            let entry = best
                .entry(assignment.kind.as_str())
                .or_insert((rank, &assignment.value));
            if rank < entry.0 {
                *entry = (rank, &assignment.value);
            }
        }
        best.into_iter()
            .map(|(kind, (_, value))| Assignment {
                kind: kind.to_string(),
                value: value.to_string(),
            })
            .collect()
    }
}

/// What a client sent, for an error message: at most 64 characters, so a
/// megabyte-long type is not echoed back.
fn quoted(sent: &str) -> String {
    sent.chars().take(64).collect()
}

/// The assignments a stored document carries (entries without a string type
/// and value are not assignments).
pub fn of_doc(doc: &Map<String, Value>) -> Vec<Assignment> {
    let Some(Value::Array(entries)) = doc.get("roles") else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            Some(Assignment {
                kind: e.get("type")?.as_str()?.to_string(),
                value: e.get("value")?.as_str()?.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Tecton's scheme.
    fn tecton() -> RoleAssignments {
        serde_json::from_value(json!({
            "types": [
                {"name": "account_type", "values": ["admin"]},
                {"name": "all_workspaces", "values": ["owner", "editor", "consumer", "operator", "viewer"]},
                {"prefix": "workspace_", "values": ["owner", "editor", "consumer", "operator", "viewer"]},
                {"prefix": "secret_scope_", "values": ["secret_scope_manager", "secret_scope_writer", "secret_scope_reader"]},
            ],
            "managedOn": ["users"],
        }))
        .expect("a RoleAssignments")
    }

    fn doc(roles: Value) -> Map<String, Value> {
        let Value::Object(doc) = json!({"userName": "a@b.c", "roles": roles}) else {
            unreachable!("a JSON object literal")
        };
        doc
    }

    fn a(kind: &str, value: &str) -> Assignment {
        Assignment {
            kind: kind.into(),
            value: value.into(),
        }
    }

    #[test]
    fn declared_types_and_families_accept_their_values_only() {
        let policy = tecton();
        let mut ok = doc(json!([
            {"type": "account_type", "value": "admin"},
            {"type": "workspace_prod", "value": "editor"},
            {"type": "secret_scope_payments", "value": "secret_scope_reader"},
        ]));
        policy.check(&mut ok).expect("all declared");
        assert_eq!(of_doc(&ok).len(), 3);

        let unknown = policy.check(&mut doc(
            json!([{"type": "favourite_colour", "value": "blue"}]),
        ));
        assert!(
            matches!(&unknown, Err(AssignmentError::UnknownType { declared, .. }) if declared.contains("workspace_*")),
            "{unknown:?}"
        );
        let bad_value = policy.check(&mut doc(
            json!([{"type": "workspace_prod", "value": "god"}]),
        ));
        let message = bad_value.expect_err("not a declared value").to_string();
        assert!(message.contains("owner, editor, consumer"), "{message}");
        let long = "x".repeat(100_000);
        let echoed = policy.check(&mut doc(json!([{"type": long, "value": "a"}])));
        assert!(echoed.expect_err("undeclared").to_string().len() < 400);
        // The bare prefix names no workspace.
        assert!(
            policy
                .check(&mut doc(json!([{"type": "workspace_", "value": "owner"}])))
                .is_err()
        );
    }

    #[test]
    fn entries_that_are_not_type_and_value_strings_are_refused() {
        let policy = tecton();
        for bad in [
            json!(["workspace_prod"]),
            json!([{"value": "owner"}]),
            json!([{"type": 7, "value": "owner"}]),
            json!([{"type": "workspace_prod", "value": ["owner"]}]),
        ] {
            let refused = policy.check(&mut doc(bad.clone()));
            assert_eq!(refused, Err(AssignmentError::Malformed), "{bad}");
        }
    }

    #[test]
    fn a_null_value_takes_an_assignment_away_and_the_last_of_a_type_wins() {
        let policy = tecton();
        let mut d = doc(json!([
            {"type": "workspace_prod", "value": "viewer"},
            {"type": "account_type", "value": "admin"},
            {"type": "workspace_prod", "value": "owner"},
            {"type": "account_type", "value": null},
        ]));
        policy.check(&mut d).expect("valid");
        assert_eq!(of_doc(&d), vec![a("workspace_prod", "owner")]);
        let mut gone = doc(json!([{"type": "account_type"}]));
        policy.check(&mut gone).expect("valid");
        assert!(!gone.contains_key("roles"), "{gone:?}");
    }

    #[test]
    fn effective_assignments_take_the_highest_value_of_each_type() {
        let policy = tecton();
        let own = vec![a("workspace_prod", "viewer"), a("account_type", "admin")];
        let group_a = vec![a("workspace_prod", "editor"), a("workspace_dev", "viewer")];
        let group_b = vec![a("workspace_prod", "consumer"), a("retired_type", "x")];
        let effective = policy.effective([own.as_slice(), &group_a, &group_b]);
        assert_eq!(
            effective,
            vec![
                a("account_type", "admin"),
                a("workspace_dev", "viewer"),
                a("workspace_prod", "editor"),
            ]
        );
    }

    #[test]
    fn groups_can_be_left_out_of_scim_management() {
        let policy = tecton();
        assert!(policy.managed_on(AssignmentHolder::Users));
        assert!(!policy.managed_on(AssignmentHolder::Groups));
        let everything = RoleAssignments {
            managed_on: None,
            ..tecton()
        };
        assert!(everything.managed_on(AssignmentHolder::Groups));
    }
}
