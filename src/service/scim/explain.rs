//! Why a member has the role and access they have, and which roles wait for
//! approval: the same inputs a recompute reads, decided the same way, with
//! the part of the configuration that decided shown (`idsync admin members
//! explain`, `idsync admin approvals list`).

use super::{approvals, context::WorkspaceCtx, roles::fallback_decision, service::ScimService};
use crate::{
    admin::{AssertedView, MemberExplanation, MemberView, PendingApproval, RoleMappingDoc},
    roles::{CompiledMapping, DecidedBy, Principal},
    scim::schema::ResourceKind,
    service::store::{Assertion, ObjectKind, Result, now_millis, timestamp},
};

impl ScimService {
    /// Explains `member` (already read, as the admin API shows it).
    pub async fn explain(
        &self,
        ctx: &WorkspaceCtx,
        member: MemberView,
    ) -> Result<MemberExplanation> {
        let ws = ctx.name.as_str();
        let groups = self.store.group_names_of_member(ws, &member.id).await?;
        let asserted = self.store.latest_assertion(ws, &member.id).await?;
        let mapping = self.stored_mapping(ws).await?;
        let decision = decide(ctx, mapping.as_ref(), &groups, asserted.as_ref());
        let approvals = self.approvals_naming(ctx, &member).await?;
        let access = match (member.kind.as_str(), &member.access_revoked_at) {
            (_, Some(_)) => "revoked: in none of the access groups",
            _ if ctx.policy.access_groups.is_empty() => "granted (no access groups)",
            ("User", None) => "granted",
            _ => "granted (service accounts are not in access groups)",
        };
        Ok(MemberExplanation {
            member,
            decided_by: decision.by,
            resolved_role: decision.role,
            rule: decision.rule,
            role_mapping: mapping.map(|m| m.name),
            last_sign_in: asserted.map(|a| AssertedView {
                connection: a.connection,
                groups: a.groups,
                claims: a.claims,
            }),
            approvals,
            access: access.to_string(),
        })
    }

    /// The workspace's mapping as stored, read once per answer.
    async fn stored_mapping(&self, workspace: &str) -> Result<Option<StoredMapping>> {
        let stored = self
            .store
            .list_objects(ObjectKind::RoleMapping, Some(workspace))
            .await?;
        Ok(stored.into_iter().next().map(|object| {
            let doc: Option<RoleMappingDoc> = serde_json::from_value(object.body).ok();
            let compiled = doc.as_ref().and_then(|d| CompiledMapping::compile(d).ok());
            StoredMapping {
                name: object.name,
                doc,
                compiled,
            }
        }))
    }

    /// The names of the approvals in force that name `member`.
    async fn approvals_naming(
        &self,
        ctx: &WorkspaceCtx,
        member: &MemberView,
    ) -> Result<Vec<String>> {
        let stored = self
            .store
            .list_objects(ObjectKind::RoleApproval, Some(&ctx.name))
            .await?;
        let now = now_millis();
        Ok(stored
            .iter()
            .filter(|o| {
                approvals::parse(o).is_some_and(|doc| {
                    doc.live_at(now)
                        && (doc.scim_id.as_deref() == Some(member.id.as_str())
                            || doc
                                .email
                                .as_ref()
                                .is_some_and(|e| e.to_lowercase() == member.user_name))
                })
            })
            .map(|o| o.name.clone())
            .collect())
    }

    /// The roles that wait for approval in `ctx`'s workspace, longest
    /// waiting first, each with what asked for it.
    pub async fn pending_approvals(&self, ctx: &WorkspaceCtx) -> Result<Vec<PendingApproval>> {
        let rows = self.store.pending_approvals(&ctx.name).await?;
        let mapping = self.stored_mapping(&ctx.name).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let groups = self.store.group_names_of_member(&ctx.name, &row.id).await?;
            let asserted = match row.kind {
                ResourceKind::User => self.store.latest_assertion(&ctx.name, &row.id).await?,
                _ => None,
            };
            let decided_by = decide(ctx, mapping.as_ref(), &groups, asserted.as_ref()).by;
            out.push(PendingApproval {
                id: row.id,
                kind: row.kind.as_str().to_string(),
                user_name: row.user_name,
                role: row.pending_role,
                current_role: row.role,
                decided_by,
                since: row.pending_since.map(timestamp),
            });
        }
        Ok(out)
    }
}

/// A RoleMapping as stored: its name, its document and the compiled form
/// (either may be missing for one an older version wrote).
struct StoredMapping {
    name: String,
    doc: Option<RoleMappingDoc>,
    compiled: Option<CompiledMapping>,
}

/// What decided a role for these inputs, as `explain` shows it.
struct Decision {
    /// `rules[i]`, `roleMapping.defaultRole`, `workspace.defaultRole`, `fallback`.
    by: String,
    role: Option<String>,
    /// The rule as declared, when one decided.
    rule: Option<serde_json::Value>,
}

fn decide(
    ctx: &WorkspaceCtx,
    mapping: Option<&StoredMapping>,
    groups: &[String],
    asserted: Option<&Assertion>,
) -> Decision {
    let fallback = |compiled: Option<&CompiledMapping>| {
        let (by, role) = fallback_decision(compiled, ctx);
        Decision {
            by,
            role,
            rule: None,
        }
    };
    let Some(stored) = mapping else {
        return fallback(None);
    };
    let Some(compiled) = &stored.compiled else {
        return Decision {
            by: "roleMapping does not compile".into(),
            role: None,
            rule: None,
        };
    };
    let no_claims = Default::default();
    let principal = match asserted {
        Some(a) => Principal::new(groups, &a.claims).through(&a.connection, &a.groups),
        None => Principal::new(groups, &no_claims),
    };
    let resolution = compiled.evaluate(principal);
    let role = resolution.role.map(str::to_string);
    match resolution.decided_by {
        DecidedBy::Rule(i) => Decision {
            by: format!("rules[{i}]"),
            role,
            rule: (stored.doc.as_ref())
                .and_then(|d| d.rules.get(i))
                .and_then(|r| serde_json::to_value(r).ok()),
        },
        DecidedBy::MappingDefault => Decision {
            by: "roleMapping.defaultRole".into(),
            role,
            rule: None,
        },
        DecidedBy::NoMatch => fallback(Some(compiled)),
    }
}
