//! After the protocol: the workspace's policy decides whether an authenticated
//! person gets in (domains, SCIM-before-SSO, just-in-time provisioning), the
//! RoleMapping decides their role, and a session is opened.

use std::{sync::Arc, time::Duration};

use serde_json::{Map, Value, json};

use super::{
    ConnectionCtx, Identity, SignedIn, SsoService,
    error::{Reason, SignInError},
    policy,
};
use crate::{
    api::Protocol,
    roles::CompiledMapping,
    scim::schema::ResourceKind,
    service::{
        scim::{context::WorkspaceCtx, roles::recompute, service::ScimService},
        store::{Assertion, AuditEntry, SessionRecord, UserMatch, now_millis},
    },
};

/// How often a just-in-time provisioning that lost a race looks for the winner
/// (50 ms apart).
const JIT_RACE_LOOKUPS: usize = 40;

impl SsoService {
    /// Applies the workspace's policy to an authenticated person and opens a session.
    pub(super) async fn admit(
        &self,
        scim: &ScimService,
        ctx: &ConnectionCtx,
        protocol: Protocol,
        identity: &Identity,
        return_to: String,
    ) -> Result<SignedIn, SignInError> {
        let ws = &ctx.workspace_doc;
        if !policy::domain_allowed(ws, &ctx.doc, &identity.email) {
            return Err(SignInError::new(
                Reason::DomainNotAllowed,
                format!(
                    "{} is outside the connection's domains",
                    policy::email_domain(&identity.email).unwrap_or_default()
                ),
            ));
        }
        let user_id = match self.bound_user(ctx, identity).await? {
            Some(id) => id,
            None => {
                let (id, relinked) = self.user_by_email(scim, ctx, identity).await?;
                if let Some(subject) = &identity.subject {
                    self.store
                        .link_identity(
                            &ctx.workspace,
                            &ctx.name,
                            subject,
                            &id,
                            relinked.as_ref(),
                            now_millis(),
                        )
                        .await?;
                }
                id
            }
        };
        let role = self.resolve_role(ctx, identity, &user_id).await?;
        let now = now_millis();
        let lifetime = policy::session_lifetime(ws, role.as_deref());
        let minted = self
            .sessions
            .mint(now)
            .await?
            .ok_or_else(|| SignInError::new(Reason::Unavailable, "no randomness available"))?;
        let session = SessionRecord {
            workspace: ctx.workspace.clone(),
            user_id: user_id.clone(),
            user_name: identity.email.to_lowercase(),
            role: role.clone(),
            assignments: None,
            connection: Some(ctx.name.clone()),
            created_at: now,
            expires_at: now + lifetime.as_millis() as i64,
        };
        let entry = AuditEntry {
            workspace: Some(ctx.workspace.clone()),
            actor: format!("sso:{}", ctx.name),
            action: "sign_in".into(),
            kind: Some("User".into()),
            name: Some(user_id),
            detail: Some(json!({
                "protocol": protocol.as_str(), "connection": ctx.name, "email": identity.email,
                "role": role, "sessionExpiresAt": crate::service::store::format_millis(session.expires_at),
            })),
        };
        self.store
            .insert_session(&minted.id, &session, &entry)
            .await?;
        Ok(SignedIn {
            cookie: minted.cookie,
            max_age: lifetime,
            return_to,
            session,
        })
    }

    /// The user this connection's subject is bound to, if it is bound; an
    /// error when that user may not sign in.
    async fn bound_user(
        &self,
        ctx: &ConnectionCtx,
        identity: &Identity,
    ) -> Result<Option<String>, SignInError> {
        let Some(subject) = &identity.subject else {
            return Ok(None);
        };
        match self
            .store
            .user_by_link(&ctx.workspace, &ctx.name, subject)
            .await?
        {
            Some(user) if user.active && !user.deleted => Ok(Some(user.id)),
            Some(_) => Err(SignInError::new(
                Reason::Deprovisioned,
                "the user is deactivated in the workspace",
            )),
            None => Ok(None),
        }
    }

    /// The user an email signs in as (creating one just in time when the
    /// policy allows). A user already bound to another subject of this
    /// connection is not taken over, unless the workspace allows relinking;
    /// then the audit entry of the relink comes back with the user.
    async fn user_by_email(
        &self,
        scim: &ScimService,
        ctx: &ConnectionCtx,
        identity: &Identity,
    ) -> Result<(String, Option<AuditEntry>), SignInError> {
        let ws = &ctx.workspace_doc;
        let id = match self
            .store
            .find_user_by_email(&ctx.workspace, &identity.email)
            .await?
        {
            UserMatch::Found { id, active: true } => id,
            UserMatch::Found { active: false, .. } | UserMatch::Deleted => {
                return Err(SignInError::new(
                    Reason::Deprovisioned,
                    "the user is deactivated in the workspace",
                ));
            }
            UserMatch::Ambiguous => {
                return Err(SignInError::new(
                    Reason::AmbiguousUser,
                    "several users carry this email",
                ));
            }
            UserMatch::NotFound if policy::requires_scim(ws) => {
                return Err(SignInError::new(
                    Reason::NotProvisioned,
                    "requireScimProvisioning is set and SCIM has not provisioned this person",
                ));
            }
            UserMatch::NotFound if !policy::jit_allowed(ws) => {
                return Err(SignInError::new(
                    Reason::JitDisabled,
                    "jitProvisioning is off and the person is not provisioned",
                ));
            }
            UserMatch::NotFound => {
                let id = self.provision_just_in_time(scim, ctx, identity).await?;
                return Ok((id, None));
            }
        };
        let bound = self
            .store
            .linked_subject(&ctx.workspace, &id, &ctx.name)
            .await?;
        match (bound, &identity.subject) {
            (Some(bound), Some(subject)) if &bound != subject => {
                let relink = ws
                    .policy
                    .as_ref()
                    .is_some_and(|p| p.allow_relinking == Some(true));
                if !relink {
                    return Err(SignInError::new(
                        Reason::SubjectMismatch,
                        "the email belongs to a user bound to another subject of this connection",
                    ));
                }
                let entry = AuditEntry {
                    workspace: Some(ctx.workspace.clone()),
                    actor: format!("sso:{}", ctx.name),
                    action: "subject_relinked".into(),
                    kind: Some("User".into()),
                    name: Some(id.clone()),
                    detail: Some(json!({"connection": ctx.name})),
                };
                Ok((id, Some(entry)))
            }
            _ => Ok((id, None)),
        }
    }

    /// Creates the user SCIM has not, through the SCIM service so the record is
    /// the same shape an IdP would have pushed.
    async fn provision_just_in_time(
        &self,
        scim: &ScimService,
        ctx: &ConnectionCtx,
        identity: &Identity,
    ) -> Result<String, SignInError> {
        let scim_ctx = self.scim_ctx(ctx).await?;
        let mut name = Map::new();
        if let Some(g) = &identity.given_name {
            name.insert("givenName".into(), g.clone().into());
        }
        if let Some(f) = &identity.family_name {
            name.insert("familyName".into(), f.clone().into());
        }
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": identity.email,
            "emails": [{"value": identity.email, "type": "work", "primary": true}],
            "active": true,
        });
        if !name.is_empty() {
            body["name"] = Value::Object(name);
        }
        let answer = match scim
            .create(&scim_ctx, ResourceKind::User, body, &Default::default())
            .await
        {
            Ok(answer) => answer,
            // Two first sign-ins of one person raced (or SCIM created them in
            // between): the user exists now, so sign in as them.
            // The other write may not be committed yet (SQLite batches
            // commits), so look for it for a moment.
            Err(e) if e.status == http::StatusCode::CONFLICT => {
                for _ in 0..JIT_RACE_LOOKUPS {
                    match self
                        .store
                        .find_user_by_email(&ctx.workspace, &identity.email)
                        .await?
                    {
                        UserMatch::Found { id, active: true } => return Ok(id),
                        UserMatch::NotFound => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        _ => break,
                    }
                }
                return Err(SignInError::new(
                    Reason::Deprovisioned,
                    "another provisioning of this person won, and it is not an active user",
                ));
            }
            Err(e) => {
                return Err(SignInError::new(
                    Reason::Unavailable,
                    format!("just-in-time provisioning failed: {}", e.detail),
                ));
            }
        };
        answer
            .resource()
            .and_then(|r| r.body["id"].as_str())
            .map(str::to_string)
            .ok_or_else(|| SignInError::new(Reason::Unavailable, "created user has no id"))
    }

    async fn scim_ctx(&self, ctx: &ConnectionCtx) -> Result<WorkspaceCtx, SignInError> {
        let mut scim_ctx = WorkspaceCtx::load(&self.store, &ctx.workspace)
            .await?
            .ok_or_else(|| SignInError::new(Reason::UnknownConnection, "no such workspace"))?;
        scim_ctx.actor = Some(format!("sso:{}", ctx.name));
        Ok(scim_ctx)
    }

    /// The role from the RoleMapping over the IdP's groups and claims plus the
    /// groups SCIM pushed, decided, stored and audited by the same recompute a
    /// SCIM change runs (a role that needs approval waits for it); refused
    /// when the person is in none of the workspace's access groups.
    async fn resolve_role(
        &self,
        ctx: &ConnectionCtx,
        identity: &Identity,
        user_id: &str,
    ) -> Result<Option<String>, SignInError> {
        let mapping: Option<Arc<CompiledMapping>> =
            self.roles.mapping(&self.store, &ctx.workspace).await?;
        let scim_ctx = self.scim_ctx(ctx).await?;
        // What this connection asserted, kept (bounded) for the recomputes
        // SCIM changes make until the next sign-in; the role is decided on
        // what is kept, so both decide alike.
        let asserted = Assertion::bounded(&ctx.name, &identity.groups, &identity.claims);
        let now = now_millis();
        let ids = [user_id.to_string()];
        let mut tx = self.store.scim_write().await?;
        tx.record_assertion(&ctx.workspace, user_id, &asserted, now)
            .await?;
        let mut standings = recompute(&mut tx, &scim_ctx, mapping.as_deref(), &ids, now).await?;
        self.sessions.forget_revoked(&tx.commit().await?);
        let outcomes = standings.values().map(|s| s.outcome.as_str());
        self.metrics.count_role_decisions(&ctx.workspace, outcomes);
        let standing = standings.remove(user_id).ok_or_else(|| {
            SignInError::new(Reason::Deprovisioned, "the user is gone from the workspace")
        })?;
        if !standing.has_access {
            return Err(SignInError::new(
                Reason::NotInAccessGroup,
                "the user is in none of the workspace's access groups",
            ));
        }
        Ok(standing.role)
    }
}
