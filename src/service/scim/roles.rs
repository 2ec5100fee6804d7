//! Group membership drives roles: the workspace's RoleMapping turns the groups
//! the IdP pushed into a role, recomputed whenever a member's groups change.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde_json::json;

use super::{approvals::Approvals, context::WorkspaceCtx, service::ScimService};
use crate::{
    admin::RoleMappingDoc,
    roles::{CompiledMapping, DecidedBy, Principal},
    scim::schema::ResourceKind,
    service::store::{AuditEntry, ObjectKind, Result, ScimTx, Store, UserRow},
};

/// Compiled role mappings by workspace, recompiled only when the stored
/// mapping's fingerprint changes.
#[derive(Debug, Default)]
pub struct RoleResolver {
    cache: Mutex<HashMap<String, (String, Arc<CompiledMapping>)>>,
}

/// A person's role and, when the role they would get needs approval, that role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDecision {
    pub role: Option<String>,
    pub pending: Option<String>,
    pub outcome: Outcome,
}

/// How a decision came out, for `idsync_role_decisions_total`: the members
/// no rule matches are the ones a mapping may be missing a rule for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A mapping rule gave the role (it may still wait for approval).
    RuleMatched,
    /// No rule matched: a declared default (the mapping's or the
    /// workspace's) or the documented fallback applied.
    DefaultApplied,
    /// The person holds no role.
    NoRole,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::RuleMatched => "rule_matched",
            Outcome::DefaultApplied => "default_applied",
            Outcome::NoRole => "no_role",
        }
    }
}

impl RoleResolver {
    /// The workspace's mapping, if any. The admin API refuses a second one;
    /// a database written before that rule may hold several, and then the
    /// first by name decides, as it always did.
    pub async fn mapping(
        &self,
        store: &Store,
        workspace: &str,
    ) -> Result<Option<Arc<CompiledMapping>>> {
        let objects = store
            .list_objects(ObjectKind::RoleMapping, Some(workspace))
            .await?;
        Ok(self.compiled(workspace, objects.into_iter().next()))
    }

    /// The same, read through the write `tx` holds: a write never waits for
    /// a second connection while it holds row locks (on PostgreSQL, writes
    /// queued on the same rows would take every pooled connection, and the
    /// one holding the locks would wait out the pool's timeout).
    pub async fn mapping_in(
        &self,
        tx: &mut ScimTx,
        workspace: &str,
    ) -> Result<Option<Arc<CompiledMapping>>> {
        let objects = tx.objects_in(ObjectKind::RoleMapping, workspace).await?;
        Ok(self.compiled(workspace, objects.into_iter().next()))
    }

    /// `object` compiled, from the cache while its fingerprint is the same.
    fn compiled(
        &self,
        workspace: &str,
        object: Option<crate::service::store::StoredObject>,
    ) -> Option<Arc<CompiledMapping>> {
        let object = object?;
        // The lock guards a map lookup, never an await; a poisoned lock only means
        // another thread panicked mid-insert, and the map is still usable.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((fingerprint, compiled)) = cache.get(workspace)
            && *fingerprint == object.fingerprint
        {
            return Some(compiled.clone());
        }
        let compiled = match serde_json::from_value::<RoleMappingDoc>(object.body)
            .map_err(|e| e.to_string())
            .and_then(|doc| CompiledMapping::compile(&doc).map_err(|e| e.to_string()))
        {
            Ok(c) => Arc::new(c),
            Err(message) => {
                // The admin API validates mappings before storing them; this is a
                // mapping written by an older version. Keep roles as they are.
                tracing::error!(workspace, mapping = %object.name, %message, "stored role mapping does not compile");
                return None;
            }
        };
        cache.insert(
            workspace.to_string(),
            (object.fingerprint, compiled.clone()),
        );
        Some(compiled)
    }
}

/// The documented default role: what a person gets when no rule matches and
/// neither the mapping nor the workspace declares a default.
pub const DEFAULT_ROLE: &str = "member";

/// `member`, or, for a mapping whose hierarchy has no `member`, its lowest role
/// (the least a declared hierarchy grants).
fn fallback_role(mapping: Option<&CompiledMapping>) -> Option<String> {
    match mapping.map(CompiledMapping::roles) {
        Some(roles) if !roles.iter().any(|r| r == DEFAULT_ROLE) => roles.last().cloned(),
        _ => Some(DEFAULT_ROLE.to_string()),
    }
}

/// Where the role comes from when no mapping rule decides: (what decided,
/// the role) for `idsync admin members explain`.
pub fn fallback_decision(
    mapping: Option<&CompiledMapping>,
    ctx: &WorkspaceCtx,
) -> (String, Option<String>) {
    match &ctx.default_role {
        Some(role) => ("workspace.defaultRole".into(), Some(role.clone())),
        None => ("fallback".into(), fallback_role(mapping)),
    }
}

/// The role a new principal with `groups` (from the directory) gets: no
/// approval can name one before it exists.
pub fn decide(
    mapping: Option<&CompiledMapping>,
    ctx: &WorkspaceCtx,
    groups: &[String],
) -> RoleDecision {
    decide_for(
        mapping,
        ctx,
        Principal::new(groups, &Default::default()),
        |_| false,
    )
}

/// The role a person gets from what is known of them (the directory's groups,
/// and at sign-in what the IdP asserted), given which roles that need
/// approval they are approved for.
pub fn decide_for(
    mapping: Option<&CompiledMapping>,
    ctx: &WorkspaceCtx,
    principal: Principal<'_>,
    approved: impl Fn(&str) -> bool,
) -> RoleDecision {
    let evaluated = mapping.and_then(|m| {
        let resolution = m.evaluate(principal);
        let matched = matches!(resolution.decided_by, DecidedBy::Rule(_));
        resolution.role.map(|role| (role.to_string(), matched))
    });
    let matched = evaluated.as_ref().is_some_and(|(_, matched)| *matched);
    let resolved = evaluated
        .map(|(role, _)| role)
        .or_else(|| ctx.default_role.clone())
        .or_else(|| fallback_role(mapping));
    let outcome = |role: &Option<String>| match (role, matched) {
        (None, _) => Outcome::NoRole,
        (Some(_), true) => Outcome::RuleMatched,
        (Some(_), false) => Outcome::DefaultApplied,
    };
    let held_back = |role: &str| {
        ctx.policy.approval_required_roles.iter().any(|r| r == role) && !approved(role)
    };
    match resolved {
        // A role that needs an approval the person lacks waits for one; they
        // get the next lower role that is not held back meanwhile.
        Some(role) if held_back(&role) => {
            let lower = mapping.and_then(|m| {
                let roles = m.roles();
                let rank = m.rank(&role)?;
                roles[rank + 1..].iter().find(|r| !held_back(r)).cloned()
            });
            RoleDecision {
                outcome: outcome(&lower),
                role: lower,
                pending: Some(role),
            }
        }
        role => RoleDecision {
            outcome: outcome(&role),
            role,
            pending: None,
        },
    }
}

/// Users recomputed per transaction when a whole workspace is.
const RECOMPUTE_BATCH: i64 = 1000;

/// Recomputes every principal of a workspace (its RoleMapping or default
/// role changed), a batch per transaction so that SCIM writes and sign-ins go
/// on in between. Answers how many principals were looked at.
pub async fn recompute_workspace(scim: &ScimService, workspace: &str) -> Result<usize> {
    let Some(mut ctx) = WorkspaceCtx::load(&scim.store, workspace).await? else {
        return Ok(0);
    };
    ctx.actor = Some("role-recompute".into());
    let mapping = scim.roles.mapping(&scim.store, workspace).await?;
    let mut seen = 0;
    for kind in [ResourceKind::User, ResourceKind::ServiceAccount] {
        seen += recompute_kind(scim, &ctx, mapping.as_deref(), kind).await?;
    }
    Ok(seen)
}

/// [`recompute_workspace`] over the principals of one kind.
async fn recompute_kind(
    scim: &ScimService,
    ctx: &WorkspaceCtx,
    mapping: Option<&CompiledMapping>,
    kind: ResourceKind,
) -> Result<usize> {
    let workspace = ctx.name.as_str();
    let (mut after, mut seen) = (0, 0);
    loop {
        let batch = scim
            .store
            .ids_after(workspace, kind, after, RECOMPUTE_BATCH)
            .await?;
        let Some((last, _)) = batch.last() else {
            return Ok(seen);
        };
        after = *last;
        seen += batch.len();
        let ids: Vec<String> = batch.into_iter().map(|(_, id)| id).collect();
        let mut tx = scim.store.scim_write().await?;
        let now = super::super::store::now_millis();
        let standings = recompute(&mut tx, ctx, mapping, &ids, now).await?;
        if ctx.policy.role_assignments.is_none() {
            // The workspace stopped declaring assignments: none are in force.
            tx.clear_assignments(workspace, &ids).await?;
        }
        scim.session_cache.forget_all(&tx.commit().await?);
        scim.count_decisions(workspace, &standings);
    }
}

/// Runs [`recompute_workspace`] in the background, one run per workspace at a
/// time: a change that arrives during a run makes one more run after it.
#[derive(Clone, Default)]
pub struct BackgroundRecompute {
    /// Workspaces with a run going, and whether another is owed.
    running: Arc<Mutex<HashMap<String, bool>>>,
}

impl BackgroundRecompute {
    pub fn request(&self, scim: ScimService, workspace: String) {
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(again) = running.get_mut(&workspace) {
                *again = true;
                return;
            }
            running.insert(workspace.clone(), false);
        }
        let running = self.running.clone();
        tokio::spawn(async move {
            loop {
                let started = std::time::Instant::now();
                match recompute_workspace(&scim, &workspace).await {
                    Ok(users) => tracing::info!(
                        %workspace, users, took_ms = started.elapsed().as_millis() as u64,
                        "roles recomputed after a mapping change"
                    ),
                    Err(e) => tracing::warn!(%workspace, error = %e, "role recompute failed"),
                }
                let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
                match running.get_mut(&workspace) {
                    Some(again) if *again => *again = false,
                    _ => {
                        running.remove(&workspace);
                        return;
                    }
                }
            }
        });
    }

    /// Whether a run is going for `workspace` (tests wait on it).
    pub fn is_running(&self, workspace: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(workspace)
    }
}

/// Where a principal stands after a recompute: what the product sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub role: Option<String>,
    pub pending: Option<String>,
    pub outcome: Outcome,
    /// In one of the workspace's access groups (always, without any).
    pub has_access: bool,
}

/// Recomputes the roles and access of `user_ids` from their current groups
/// (and what their latest sign-in asserted), writing and auditing each
/// change in `tx`; answers where each principal found stands now.
pub async fn recompute(
    tx: &mut ScimTx,
    ctx: &WorkspaceCtx,
    mapping: Option<&CompiledMapping>,
    user_ids: &[String],
    now: i64,
) -> Result<HashMap<String, Standing>> {
    // Read every user's role and (when a mapping or access groups look at
    // them) groups in a few statements, not two per user.
    let assignments = ctx.policy.role_assignments.as_ref();
    let users = tx
        .user_rows(&ctx.name, user_ids, assignments.is_some())
        .await?;
    let groups_of = match mapping.is_some() || !ctx.policy.access_groups.is_empty() {
        true => tx.group_names_of(&ctx.name, user_ids).await?,
        false => Default::default(),
    };
    // With a mapping, what each one's latest sign-in asserted: a
    // claim-derived role survives a SCIM change.
    let asserted = match mapping {
        Some(_) => tx.latest_assertions(&ctx.name, user_ids).await?,
        None => Default::default(),
    };
    let approvals = Approvals::load(tx, ctx, now).await?;
    let mut standings = HashMap::with_capacity(users.len());
    for user_id in user_ids {
        let Some(user) = users.get(user_id) else {
            continue; // a group member that is a group, or gone
        };
        let groups = groups_of
            .get(user_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let no_claims = Default::default();
        let principal = match asserted.get(user_id) {
            Some(a) => Principal::new(groups, &a.claims).through(&a.connection, &a.groups),
            None => Principal::new(groups, &no_claims),
        };
        let decision = decide_for(mapping, ctx, principal, |role| {
            approvals.approves(user_id, role)
        });
        store_role(tx, ctx, user_id, user, &decision, now).await?;
        let has_access = user.kind != ResourceKind::User || ctx.policy.grants_access(groups);
        store_access(tx, ctx, user_id, user, (has_access, &decision.role), now).await?;
        standings.insert(
            user_id.clone(),
            Standing {
                role: decision.role,
                pending: decision.pending,
                outcome: decision.outcome,
                has_access,
            },
        );
    }
    // Assignments are a second, independent output of the same read.
    if let Some(policy) = assignments {
        super::assignments::recompute(tx, ctx, policy, &users, now).await?;
    }
    Ok(standings)
}

/// Writes a changed role decision, with its audit entries.
async fn store_role(
    tx: &mut ScimTx,
    ctx: &WorkspaceCtx,
    user_id: &str,
    user: &UserRow,
    decision: &RoleDecision,
    now: i64,
) -> Result<()> {
    let (role, pending) = (&user.role, &user.pending);
    if decision.role == *role && decision.pending == *pending {
        return Ok(());
    }
    // A request waits since it was first made, not since the last recompute.
    let since = match user.pending_since {
        Some(since) if decision.pending == *pending => since,
        _ => now,
    };
    let waiting = decision.pending.as_deref().map(|p| (p, since));
    tx.set_role(user.pk, decision.role.as_deref(), waiting)
        .await?;
    if decision.role != *role {
        let detail = json!({"from": role, "to": decision.role, "requestId": ctx.request_id});
        let entry = audit_entry(ctx, user.kind, "role_changed", user_id, detail);
        tx.audit(&entry, now).await?;
    }
    if decision.pending.is_some() && decision.pending != *pending {
        let detail = json!({"role": decision.pending, "requestId": ctx.request_id});
        let entry = audit_entry(ctx, user.kind, "role_approval_requested", user_id, detail);
        tx.audit(&entry, now).await?;
    }
    Ok(())
}

/// Writes a change of access: losing it revokes every session and key in
/// the same write; regaining it restores the person with `role`.
async fn store_access(
    tx: &mut ScimTx,
    ctx: &WorkspaceCtx,
    user_id: &str,
    user: &UserRow,
    (has_access, role): (bool, &Option<String>),
    now: i64,
) -> Result<()> {
    if has_access == user.has_access {
        return Ok(());
    }
    tx.set_access(user.pk, has_access, now).await?;
    let (action, detail) = if has_access {
        let detail = json!({"role": role, "requestId": ctx.request_id});
        ("user_access_granted", detail)
    } else {
        let (sessions, keys) = tx.revoke_credentials(&ctx.name, user_id, now).await?;
        let detail = json!({
            "reason": "not_in_access_group", "sessionsRevoked": sessions,
            "keysRevoked": keys, "requestId": ctx.request_id,
        });
        ("user_access_revoked", detail)
    };
    tx.audit(&audit_entry(ctx, user.kind, action, user_id, detail), now)
        .await
}

/// An audit entry about the resource `id` of `kind`.
pub(super) fn audit_entry(
    ctx: &WorkspaceCtx,
    kind: ResourceKind,
    action: &str,
    id: &str,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        workspace: Some(ctx.name.clone()),
        actor: ctx.actor(),
        action: action.to_string(),
        kind: Some(kind.as_str().to_string()),
        name: Some(id.to_string()),
        detail: Some(detail),
    }
}
