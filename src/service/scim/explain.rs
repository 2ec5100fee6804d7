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
        let (decided_by, resolved_role, rule, role_mapping) =
            self.decision(ctx, &groups, asserted.as_ref()).await?;
        let approvals = self.approvals_naming(ctx, &member).await?;
        let access = match (member.kind.as_str(), &member.access_revoked_at) {
            (_, Some(_)) => "revoked: in none of the access groups",
            _ if ctx.policy.access_groups.is_empty() => "granted (no access groups)",
            ("User", None) => "granted",
            _ => "granted (service accounts are not in access groups)",
        };
        Ok(MemberExplanation {
            member,
            decided_by,
            resolved_role,
            rule,
            role_mapping,
            last_sign_in: asserted.map(|a| AssertedView {
                connection: a.connection,
                groups: a.groups,
                claims: a.claims,
            }),
            approvals,
            access: access.to_string(),
        })
    }

    /// What decides for these inputs: (decided by, role, the rule as
    /// declared, the mapping's name).
    async fn decision(
        &self,
        ctx: &WorkspaceCtx,
        groups: &[String],
        asserted: Option<&Assertion>,
    ) -> Result<(
        String,
        Option<String>,
        Option<serde_json::Value>,
        Option<String>,
    )> {
        let ws = ctx.name.as_str();
        let stored = self
            .store
            .list_objects(ObjectKind::RoleMapping, Some(ws))
            .await?;
        let Some(object) = stored.into_iter().next() else {
            let (by, role) = fallback_decision(None, ctx);
            return Ok((by, role, None, None));
        };
        let doc: Option<RoleMappingDoc> = serde_json::from_value(object.body).ok();
        let compiled = doc.as_ref().and_then(|d| CompiledMapping::compile(d).ok());
        let Some(mapping) = compiled else {
            return Ok((
                "roleMapping does not compile".into(),
                None,
                None,
                Some(object.name),
            ));
        };
        let no_claims = Default::default();
        let principal = match asserted {
            Some(a) => Principal::new(groups, &a.claims).through(&a.connection, &a.groups),
            None => Principal::new(groups, &no_claims),
        };
        let resolution = mapping.evaluate(principal);
        let (by, role, rule) = match resolution.decided_by {
            DecidedBy::Rule(i) => {
                let rule =
                    doc.and_then(|d| d.rules.get(i).and_then(|r| serde_json::to_value(r).ok()));
                (
                    format!("rules[{i}]"),
                    resolution.role.map(str::to_string),
                    rule,
                )
            }
            DecidedBy::MappingDefault => (
                "roleMapping.defaultRole".to_string(),
                resolution.role.map(str::to_string),
                None,
            ),
            DecidedBy::NoMatch => {
                let (by, role) = fallback_decision(Some(&mapping), ctx);
                (by, role, None)
            }
        };
        Ok((by, role, rule, Some(object.name)))
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
        let emails = self.store.emails_of(&ctx.name, &member.id).await?;
        Ok(stored
            .iter()
            .filter(|o| {
                approvals::parse(o).is_some_and(|doc| {
                    doc.live_at(now)
                        && (doc.scim_id.as_deref() == Some(member.id.as_str())
                            || doc.email.as_ref().is_some_and(|e| {
                                let e = e.to_lowercase();
                                e == member.user_name || emails.contains(&e)
                            }))
                })
            })
            .map(|o| o.name.clone())
            .collect())
    }

    /// The roles that wait for approval in `ctx`'s workspace, longest
    /// waiting first, each with what asked for it.
    pub async fn pending_approvals(&self, ctx: &WorkspaceCtx) -> Result<Vec<PendingApproval>> {
        let rows = self.store.pending_approvals(&ctx.name).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let groups = self.store.group_names_of_member(&ctx.name, &row.id).await?;
            let asserted = match row.kind {
                ResourceKind::User => self.store.latest_assertion(&ctx.name, &row.id).await?,
                _ => None,
            };
            let (decided_by, ..) = self.decision(ctx, &groups, asserted.as_ref()).await?;
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
