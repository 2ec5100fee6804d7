//! The SCIM service layer: every Users/Groups operation as a method tests can
//! call without HTTP. Each write is one store transaction covering the resource,
//! its memberships, the roles they drive and the audit entries.

use std::{collections::HashSet, sync::Arc};

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::{
    assignments,
    context::WorkspaceCtx,
    error::ScimError,
    render::{self, Projection, etag, etag_matches},
    roles::{self, RoleResolver, audit_entry},
};
use crate::{
    roles::CompiledMapping,
    scim::{
        ScimProblem,
        eval::element_matches,
        filter, get_ci,
        patch::{self, MemberChange},
        resource,
        schema::{LIST_RESPONSE, ResourceKind, SchemaSet},
    },
    service::{
        metrics::ServiceMetrics,
        session_cache::CheckCache,
        store::{
            ListQuery, NewMember, NewResource, ResourceWrite, ScimRecord, ScimTx, Store,
            StoreError, now_millis, unique_attribute,
        },
    },
};

/// Most resources one list page returns (`filter.maxResults`).
pub const MAX_RESULTS: i64 = 1000;

/// What a SCIM operation came to. The HTTP route, and a bulk response, turn it
/// into a status and headers, as RFC 7644 §3 fixes them.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// POST made the resource: 201, with ETag and Location.
    Created(Resource),
    /// GET, PUT or PATCH: the resource as it is now, 200 with ETag and Location.
    Found(Resource),
    /// A GET whose `If-None-Match` matches: 304 with the ETag, no body.
    NotModified { etag: String },
    /// DELETE: 204, no body.
    Deleted,
    /// A document that is not one resource (a list, a discovery document, a
    /// bulk response): 200.
    Document(Value),
}

/// One resource in an answer, with the headers that name its version and place.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub body: Value,
    pub etag: String,
    pub location: String,
}

impl Outcome {
    pub fn status(&self) -> StatusCode {
        match self {
            Outcome::Created(_) => StatusCode::CREATED,
            Outcome::Found(_) | Outcome::Document(_) => StatusCode::OK,
            Outcome::NotModified { .. } => StatusCode::NOT_MODIFIED,
            Outcome::Deleted => StatusCode::NO_CONTENT,
        }
    }

    /// The resource the answer is about, if it is about one.
    pub fn resource(&self) -> Option<&Resource> {
        match self {
            Outcome::Created(r) | Outcome::Found(r) => Some(r),
            _ => None,
        }
    }
}

/// `If-Match` / `If-None-Match` as the client sent them.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
}

impl Preconditions {
    fn check(&self, version: i64) -> Result<(), ScimError> {
        let current = etag(version);
        match &self.if_match {
            Some(h) if !etag_matches(h, &current) => Err(ScimError::precondition_failed(&current)),
            _ => Ok(()),
        }
    }
}

/// List parameters, from a query string or a `.search` body, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub start_index: Option<String>,
    pub count: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

impl ListParams {
    /// From query parameters; names are case-insensitive.
    pub fn from_query(pairs: &[(String, String)]) -> Self {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        Self {
            filter: get("filter"),
            sort_by: get("sortBy"),
            sort_order: get("sortOrder"),
            start_index: get("startIndex"),
            count: get("count"),
            attributes: get("attributes"),
            excluded_attributes: get("excludedAttributes"),
        }
    }

    /// From a SearchRequest body (RFC 7644 §3.4.3).
    pub fn from_search(body: &Value) -> Result<Self, ScimProblem> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimProblem::invalid_syntax("a search request must be a JSON object"))?;
        let get = |name: &str| -> Result<Option<String>, ScimProblem> {
            match get_ci(obj, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(Value::Array(items)) => Ok(Some(
                    items
                        .iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            ScimProblem::invalid_value(format!("{name} must list strings"))
                        })?
                        .join(","),
                )),
                Some(_) => Err(ScimProblem::invalid_value(format!(
                    "{name} has the wrong type"
                ))),
            }
        };
        Ok(Self {
            filter: get("filter")?,
            sort_by: get("sortBy")?,
            sort_order: get("sortOrder")?,
            start_index: get("startIndex")?,
            count: get("count")?,
            attributes: get("attributes")?,
            excluded_attributes: get("excludedAttributes")?,
        })
    }

    pub fn projection(&self) -> Result<Projection, ScimProblem> {
        Projection::parse(
            self.attributes.as_deref(),
            self.excluded_attributes.as_deref(),
        )
    }

    /// Validates into a store query. `startIndex` below 1 means 1 and `count`
    /// is clamped to `0..=MAX_RESULTS`, as RFC 7644 §3.4.2.4 says.
    fn query(&self) -> Result<ListQuery, ScimProblem> {
        let number = |name: &str, v: &Option<String>, default: i64| -> Result<i64, ScimProblem> {
            match v.as_deref().map(str::trim) {
                None | Some("") => Ok(default),
                Some(s) => s.parse::<i64>().map_err(|_| {
                    ScimProblem::invalid_value(format!("{name} must be an integer, not {s:?}"))
                }),
            }
        };
        let filter = match self.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(f) => Some(filter::parse(f)?),
        };
        let sort_by = match self.sort_by.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => {
                Some(filter::parse_attr_path(s).map_err(|e| ScimProblem::invalid_value(e.0))?)
            }
        };
        let descending = match self.sort_order.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(o) if o.eq_ignore_ascii_case("ascending") => false,
            Some(o) if o.eq_ignore_ascii_case("descending") => true,
            Some(o) => {
                return Err(ScimProblem::invalid_value(format!(
                    "sortOrder must be ascending or descending, not {o:?}"
                )));
            }
        };
        Ok(ListQuery {
            filter,
            sort_by,
            descending,
            start_index: number("startIndex", &self.start_index, 1)?.max(1),
            count: number("count", &self.count, MAX_RESULTS)?.clamp(0, MAX_RESULTS),
            unknown_attributes_match_nothing: false,
        })
    }
}

/// What a write did to a user's lifecycle, counted once it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Unchanged,
    Deprovisioned,
    Reactivated,
}

/// SCIM Users and Groups over the store.
#[derive(Clone)]
pub struct ScimService {
    pub(super) store: Store,
    public_url: String,
    pub(super) roles: Arc<RoleResolver>,
    /// Whole-workspace role recomputes after a mapping change.
    recompute: roles::BackgroundRecompute,
    metrics: ServiceMetrics,
    /// This replica's session-check cache, cleared of deprovisioned users.
    pub(super) session_cache: Arc<CheckCache>,
}

/// A new resource id: a random UUID (version 4).
fn new_id() -> Result<String, ScimError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| {
        ScimError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness available; retry later",
        )
    })?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

fn not_found(kind: ResourceKind, id: &str) -> ScimError {
    ScimError::not_found(format!("{} {id} not found", kind.as_str()))
}

fn conflict(kind: ResourceKind, attr: &str, doc: &Map<String, Value>) -> ScimError {
    let value = doc.get(attr).and_then(Value::as_str).unwrap_or_default();
    ScimError::uniqueness(format!(
        "a {} with {attr} {value:?} already exists",
        kind.as_str()
    ))
}

/// The principal a create just wrote, as a read would return it: in no group yet.
fn new_principal_record(
    (pk, kind, id): assignments::Holder<'_>,
    write: &ResourceWrite<'_>,
    decision: roles::RoleDecision,
    doc: &Map<String, Value>,
    now: i64,
) -> ScimRecord {
    ScimRecord {
        pk,
        id: id.to_string(),
        kind,
        external_id: write.external_id.map(str::to_string),
        display_name: write.display_name.map(str::to_string),
        active: write.active,
        role: decision.role,
        pending_role: decision.pending,
        doc: doc.clone(),
        version: 1,
        created_at: now,
        updated_at: now,
        groups: Some(Vec::new()),
    }
}

/// The audit entry of a principal's creation.
fn provisioned_entry(
    ctx: &WorkspaceCtx,
    (kind, id): (ResourceKind, &str),
    write: &ResourceWrite<'_>,
    decision: &roles::RoleDecision,
) -> crate::service::store::AuditEntry {
    let name = kind.name_attr();
    let detail = json!({
        name: write.doc.get(name), "externalId": write.external_id,
        "active": write.active, "role": decision.role, "requestId": ctx.request_id,
    });
    let mut detail = detail;
    if kind == ResourceKind::User && !ctx.policy.access_groups.is_empty() {
        // In no group yet: no access until the IdP adds them to an access group.
        detail["access"] = json!(false);
    }
    let action = format!("{}_provisioned", kind.audit_noun());
    audit_entry(ctx, kind, &action, id, detail)
}

/// A member a client named: its id and the display name it sent, if any.
type NamedMember = (String, Option<String>);

/// Takes `members` out of a normalised group document.
fn take_members(doc: &mut Map<String, Value>) -> Option<Vec<NamedMember>> {
    let members = doc.remove("members")?;
    Some(named_members(&members))
}

fn named_members(values: &Value) -> Vec<NamedMember> {
    let text = |o: &Map<String, Value>, key: &str| {
        get_ci(o, key).and_then(Value::as_str).map(str::to_string)
    };
    let one = |v: &Value| match v {
        Value::Object(o) => Some((text(o, "value")?, text(o, "display"))),
        Value::String(s) => Some((s.clone(), None)),
        _ => None,
    };
    match values {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

/// The attributes every resource of a kind must have after any write.
fn check_required(kind: ResourceKind, doc: &Map<String, Value>) -> Result<(), ScimProblem> {
    let required = kind.name_attr();
    match doc.get(required).and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => Ok(()),
        _ => Err(ScimProblem::invalid_value(format!(
            "{required} is required and cannot be removed"
        ))),
    }
}

fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

impl ScimService {
    pub fn new(
        store: Store,
        public_url: &str,
        metrics: ServiceMetrics,
        session_cache: Arc<CheckCache>,
        roles: Arc<RoleResolver>,
    ) -> Self {
        Self {
            store,
            public_url: public_url.trim_end_matches('/').to_string(),
            roles,
            recompute: roles::BackgroundRecompute::default(),
            metrics,
            session_cache,
        }
    }

    /// Recomputes every member's role in the background: the workspace's
    /// RoleMapping or default role changed, and sessions report the role a
    /// member has now.
    pub fn recompute_in_background(&self, workspace: &str) {
        self.recompute.request(self.clone(), workspace.to_string());
    }

    /// Whether a background recompute of `workspace` is still running.
    pub fn recomputing(&self, workspace: &str) -> bool {
        self.recompute.is_running(workspace)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The SCIM base URL of a workspace.
    pub fn base_url(&self, workspace: &str) -> String {
        format!("{}/scim/v2/{workspace}", self.public_url)
    }

    async fn mapping(
        &self,
        ctx: &WorkspaceCtx,
    ) -> Result<Option<std::sync::Arc<CompiledMapping>>, StoreError> {
        self.roles.mapping(&self.store, &ctx.name).await
    }

    async fn render(
        &self,
        ctx: &WorkspaceCtx,
        rec: &ScimRecord,
        proj: &Projection,
    ) -> Result<Value, StoreError> {
        let members = if rec.kind == ResourceKind::Group && proj.wants("members") {
            Some(self.store.scim_members(&ctx.name, rec.pk).await?)
        } else {
            None
        };
        // A listing fetched the user's groups with the user; else ask now.
        let fetched;
        let groups = match (&rec.groups, rec.kind.is_principal() && proj.wants("groups")) {
            (_, false) => None,
            (Some(groups), true) => Some(groups.as_slice()),
            (None, true) => {
                fetched = self.store.scim_groups_of(&ctx.name, &rec.id).await?;
                Some(fetched.as_slice())
            }
        };
        let mut v = render::resource(&self.base_url(&ctx.name), rec, members.as_deref(), groups);
        proj.apply(&ctx.schemas(rec.kind), &mut v);
        Ok(v)
    }

    /// Opens a write transaction on a visible resource, checking `If-Match`.
    async fn open(
        &self,
        ctx: &WorkspaceCtx,
        kind: ResourceKind,
        id: &str,
        pre: &Preconditions,
    ) -> Result<(ScimTx, ScimRecord), ScimError> {
        let mut tx = self.store.scim_write().await?;
        let rec = tx
            .get(&ctx.name, kind, id)
            .await?
            .ok_or_else(|| not_found(kind, id))?;
        pre.check(rec.version)?;
        Ok((tx, rec))
    }

    /// Recomputes the roles of `user_ids`; the workspace's mapping is read only
    /// when some membership changed.
    async fn recompute(
        &self,
        tx: &mut ScimTx,
        ctx: &WorkspaceCtx,
        user_ids: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        if user_ids.is_empty() {
            return Ok(());
        }
        let mapping = self.roles.mapping_in(tx, &ctx.name).await?;
        let standings = roles::recompute(tx, ctx, mapping.as_deref(), user_ids, now).await?;
        self.count_decisions(&ctx.name, &standings);
        Ok(())
    }

    /// Counts the role decisions a recompute made.
    pub(super) fn count_decisions(
        &self,
        workspace: &str,
        standings: &std::collections::HashMap<String, roles::Standing>,
    ) {
        let outcomes = standings.values().map(|s| s.outcome.as_str());
        self.metrics.count_role_decisions(workspace, outcomes);
    }

    /// Reads a resource back for an answer.
    async fn read_back(
        &self,
        ctx: &WorkspaceCtx,
        kind: ResourceKind,
        id: &str,
        proj: &Projection,
    ) -> Result<Resource, ScimError> {
        let rec = self
            .store
            .scim_get(&ctx.name, kind, id)
            .await?
            .ok_or_else(|| not_found(kind, id))?;
        let body = self.render(ctx, &rec, proj).await?;
        Ok(self.resource(ctx, &rec, body))
    }

    fn resource(&self, ctx: &WorkspaceCtx, rec: &ScimRecord, body: Value) -> Resource {
        Resource {
            body,
            etag: etag(rec.version),
            location: format!(
                "{}/{}/{}",
                self.base_url(&ctx.name),
                rec.kind.endpoint(),
                rec.id
            ),
        }
    }

    /// `GET /Users/{id}`.
    pub async fn get(
        &self,
        ctx: &WorkspaceCtx,
        kind: ResourceKind,
        id: &str,
        proj: &Projection,
        pre: &Preconditions,
    ) -> Result<Outcome, ScimError> {
        let found = self.read_back(ctx, kind, id, proj).await?;
        match &pre.if_none_match {
            Some(h) if etag_matches(h, &found.etag) => {
                Ok(Outcome::NotModified { etag: found.etag })
            }
            _ => Ok(Outcome::Found(found)),
        }
    }

    /// `GET /Users?filter=…`, `POST /Users/.search`, and (several kinds) `POST /.search`.
    pub async fn list(
        &self,
        ctx: &WorkspaceCtx,
        kinds: &[ResourceKind],
        params: &ListParams,
    ) -> Result<Outcome, ScimError> {
        let proj = params.projection()?;
        let mut query = params.query()?;
        if kinds.len() > 1 {
            // Each attribute must exist in some type: a typo is still a 400.
            if let Some(f) = &query.filter {
                check_known_somewhere(
                    f,
                    &kinds.iter().map(|k| ctx.schemas(*k)).collect::<Vec<_>>(),
                )?;
            }
            query.unknown_attributes_match_nothing = true;
        }
        let mut total = 0;
        let mut resources = Vec::new();
        let mut first_problem = None;
        let mut answered = 0;
        // Across kinds, pages run over the kinds' results one after the other.
        let mut skip = query.start_index - 1;
        let mut room = query.count;
        for &kind in kinds {
            let set = ctx.schemas(kind);
            let page = ListQuery {
                start_index: skip + 1,
                count: room,
                ..query.clone()
            };
            let (n, records) = match self.store.scim_query(&ctx.name, &set, &page).await? {
                Ok(found) => found,
                Err(p) => {
                    first_problem.get_or_insert(p);
                    continue;
                }
            };
            answered += 1;
            total += n;
            skip = (skip - n).max(0);
            room -= records.len() as i64;
            for rec in &records {
                resources.push(self.render(ctx, rec, &proj).await?);
            }
        }
        if answered == 0
            && let Some(p) = first_problem
        {
            return Err(p.into());
        }
        Ok(Outcome::Document(json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": total,
            "startIndex": query.start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        })))
    }

    /// `POST /Users`, `POST /Groups`.
    pub async fn create(
        &self,
        ctx: &WorkspaceCtx,
        kind: ResourceKind,
        body: Value,
        proj: &Projection,
    ) -> Result<Outcome, ScimError> {
        let set = ctx.schemas(kind);
        let mut doc = resource::normalize(&set, body)?;
        assignments::enforce(ctx, kind, &mut doc, None)?;
        let members = take_members(&mut doc).unwrap_or_default();
        let id = new_id()?;
        let now = now_millis();
        let decision = self.new_user_role(ctx, kind).await?;
        let role = decision
            .as_ref()
            .map_or((None, None), |d| (d.role.as_deref(), d.pending.as_deref()));
        let write = ResourceWrite::new(kind, &id, &doc);
        // A principal's audit entry is known before the insert and goes with
        // it; a group's counts the members added after.
        let provisioned = decision
            .as_ref()
            .map(|d| provisioned_entry(ctx, (kind, &id), &write, d));
        let mut tx = self.store.scim_write().await?;
        // The unique indexes are the uniqueness check: a taken userName or
        // externalId fails the insert, and only this write rolls back.
        let new = NewResource {
            workspace: &ctx.name,
            kind,
            write: &write,
            role,
            now,
        };
        let pk = match tx.insert(&new, provisioned.as_ref()).await {
            Ok(pk) => pk,
            Err(e) => match unique_attribute(&e) {
                Some(attr) => return Err(conflict(kind, attr, &doc)),
                None => return Err(e.into()),
            },
        };
        if kind.is_principal() {
            assignments::created(&mut tx, ctx, (pk, kind, &id), &doc, now).await?;
        }
        if kind == ResourceKind::User && !ctx.policy.grants_access(&[]) {
            tx.set_access(pk, false, now).await?;
        }
        let created = match decision {
            // The stored principal is what was just written, in no group
            // yet: answer from it instead of reading it back.
            Some(decision) => Some(new_principal_record(
                (pk, kind, &id),
                &write,
                decision,
                &doc,
                now,
            )),
            None => {
                self.fill_new_group(&mut tx, ctx, (pk, &id), &doc, &members, now)
                    .await?;
                None
            }
        };
        self.session_cache.forget_all(&tx.commit().await?);
        self.metrics
            .scim_provisioned
            .with_label_values(&[&ctx.name, kind.as_str()])
            .inc();
        match created {
            Some(rec) => {
                // Its groups are known (none): rendering reads nothing.
                let body = self.render(ctx, &rec, proj).await?;
                Ok(Outcome::Created(self.resource(ctx, &rec, body)))
            }
            None => Ok(Outcome::Created(
                self.read_back(ctx, kind, &id, proj).await?,
            )),
        }
    }

    /// A new principal's role, from the mapping (no groups yet), decided
    /// before taking the writer; none for a group.
    async fn new_user_role(
        &self,
        ctx: &WorkspaceCtx,
        kind: ResourceKind,
    ) -> Result<Option<roles::RoleDecision>, ScimError> {
        if kind == ResourceKind::Group {
            return Ok(None);
        }
        let mapping = self.mapping(ctx).await?;
        let decision = roles::decide(mapping.as_deref(), ctx, &[]);
        let outcome = std::iter::once(decision.outcome.as_str());
        self.metrics.count_role_decisions(&ctx.name, outcome);
        Ok(Some(decision))
    }

    /// A group's members, the roles they now get, and its audit entry, in the
    /// transaction that created it.
    async fn fill_new_group(
        &self,
        tx: &mut ScimTx,
        ctx: &WorkspaceCtx,
        (pk, id): (i64, &str),
        doc: &Map<String, Value>,
        members: &[NamedMember],
        now: i64,
    ) -> Result<(), ScimError> {
        let added = self.add_members(tx, ctx, pk, id, members).await?;
        self.recompute(tx, ctx, &added, now).await?;
        let detail = json!({
            "displayName": doc.get("displayName"), "externalId": doc.get("externalId"),
            "members": added.len(), "requestId": ctx.request_id,
        });
        tx.audit(
            &audit_entry(ctx, ResourceKind::Group, "group_created", id, detail),
            now,
        )
        .await?;
        Ok(())
    }

    /// Adds the members that exist in the workspace (unknown ids are ignored, as
    /// RFC 7644 allows, rather than failing the IdP's whole request); returns the
    /// newly added ids.
    async fn add_members(
        &self,
        tx: &mut ScimTx,
        ctx: &WorkspaceCtx,
        group_pk: i64,
        group_id: &str,
        members: &[NamedMember],
    ) -> Result<Vec<String>, StoreError> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let ids = dedup(members.iter().map(|(id, _)| id.clone()).collect());
        let existing = tx.existing(&ctx.name, &ids).await?;
        let known: Vec<NewMember> = members
            .iter()
            .filter(|(id, _)| id.as_str() != group_id)
            .filter_map(|(id, display)| {
                existing.get(id).map(|(kind, name)| NewMember {
                    id: id.clone(),
                    kind: *kind,
                    display: display.clone(),
                    name: name.clone(),
                })
            })
            .collect();
        if known.len() < ids.len() {
            tracing::info!(
                workspace = %ctx.name,
                group = group_id,
                ignored = ids.len() - known.len(),
                "ignoring group members that are not resources of this workspace"
            );
        }
        tx.add_members(group_pk, &known).await
    }

    /// Deprovisioning and reactivation when a principal's `active` flips.
    async fn lifecycle(
        &self,
        tx: &mut ScimTx,
        ctx: &WorkspaceCtx,
        rec: &ScimRecord,
        active: bool,
        via: &str,
        now: i64,
    ) -> Result<Lifecycle, StoreError> {
        let name = rec.kind.name_attr();
        let (kind, noun) = (rec.kind, rec.kind.audit_noun());
        match (rec.active, active) {
            (true, false) => {
                let (sessions, keys) = tx.revoke_credentials(&ctx.name, &rec.id, now).await?;
                let detail = json!({
                    name: rec.doc.get(name), "via": via, "sessionsRevoked": sessions,
                    "keysRevoked": keys, "requestId": ctx.request_id,
                });
                let action = format!("{noun}_deprovisioned");
                tx.audit(&audit_entry(ctx, kind, &action, &rec.id, detail), now)
                    .await?;
                Ok(Lifecycle::Deprovisioned)
            }
            (false, true) => {
                let detail = json!({
                    name: rec.doc.get(name), "via": via, "role": rec.role, "requestId": ctx.request_id,
                });
                let action = format!("{noun}_reactivated");
                tx.audit(&audit_entry(ctx, kind, &action, &rec.id, detail), now)
                    .await?;
                Ok(Lifecycle::Reactivated)
            }
            _ => Ok(Lifecycle::Unchanged),
        }
    }

    /// After a write committed: its lifecycle counted, and the cached
    /// sessions of everyone whose credentials it revoked (deprovisioned, or
    /// out of every access group) dropped here.
    fn committed(
        &self,
        ctx: &WorkspaceCtx,
        kind: ResourceKind,
        lifecycle: Lifecycle,
        revoked: &[(String, String)],
    ) {
        self.session_cache.forget_all(revoked);
        match lifecycle {
            Lifecycle::Deprovisioned => self
                .metrics
                .scim_deprovisioned
                .with_label_values(&[&ctx.name])
                .inc(),
            Lifecycle::Reactivated => self
                .metrics
                .scim_provisioned
                .with_label_values(&[&ctx.name, kind.as_str()])
                .inc(),
            Lifecycle::Unchanged => {}
        }
    }

    /// `PUT /Users/{id}`: replaces every attribute (Okta's update and deactivation).
    pub async fn replace(
        &self,
        ctx: &WorkspaceCtx,
        kind: ResourceKind,
        id: &str,
        body: Value,
        pre: &Preconditions,
        proj: &Projection,
    ) -> Result<Outcome, ScimError> {
        let set = ctx.schemas(kind);
        let mut doc = resource::normalize(&set, body)?;
        let members = match kind {
            ResourceKind::Group => Some(take_members(&mut doc).unwrap_or_default()),
            ResourceKind::User | ResourceKind::ServiceAccount => None,
        };
        let now = now_millis();
        let (mut tx, rec) = self.open(ctx, kind, id, pre).await?;
        assignments::enforce(ctx, kind, &mut doc, Some(&rec.doc))?;
        let write = ResourceWrite::new(kind, &rec.id, &doc);
        let doc_changed = save(&mut tx, ctx, kind, &rec, &write, now).await?;
        let mut affected = Vec::new();
        if kind.is_principal() && assignments::changed(ctx, &rec.doc, &doc) {
            affected.push(rec.id.clone());
        }
        let mut members_changed = false;
        if let Some(wanted) = members {
            let current: Vec<String> = tx.member_ids(rec.pk).await?;
            let wanted_set: HashSet<&String> = wanted.iter().map(|(id, _)| id).collect();
            let current_set: HashSet<&String> = current.iter().collect();
            let gone: Vec<String> = current
                .iter()
                .filter(|m| !wanted_set.contains(m))
                .cloned()
                .collect();
            let new: Vec<NamedMember> = wanted
                .into_iter()
                .filter(|(id, _)| !current_set.contains(id))
                .collect();
            let removed = tx.remove_members(rec.pk, &gone).await?;
            let added = self.add_members(&mut tx, ctx, rec.pk, id, &new).await?;
            members_changed = !removed.is_empty() || !added.is_empty();
            audit_members(&mut tx, ctx, id, (&added, &removed), now).await?;
            affected.extend(removed);
            affected.extend(added);
            if doc_changed && moves_members(ctx, &rec.doc, &doc) {
                affected = current;
                affected.extend(new.into_iter().map(|(id, _)| id));
            }
        }
        let lifecycle = match kind.is_principal() {
            true => {
                self.lifecycle(&mut tx, ctx, &rec, write.active, "PUT", now)
                    .await?
            }
            false => Lifecycle::Unchanged,
        };
        if members_changed && !doc_changed {
            tx.touch(rec.pk, now).await?;
        }
        self.recompute(&mut tx, ctx, &dedup(affected), now).await?;
        if doc_changed && lifecycle == Lifecycle::Unchanged {
            audit_updated(&mut tx, ctx, (kind, id), (&rec.doc, &doc), "PUT", now).await?;
        }
        let revoked = tx.commit().await?;
        self.committed(ctx, kind, lifecycle, &revoked);
        Ok(Outcome::Found(self.read_back(ctx, kind, id, proj).await?))
    }

    /// `PATCH /Users/{id}`: 200 with the resource as `attributes` /
    /// `excludedAttributes` shape it (IdPs that send `excludedAttributes=members`
    /// keep large groups' answers small).
    pub async fn patch(
        &self,
        ctx: &WorkspaceCtx,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        pre: &Preconditions,
        proj: &Projection,
    ) -> Result<Outcome, ScimError> {
        let ops = patch::parse_operations(body)?;
        let set = ctx.schemas(kind);
        let now = now_millis();
        let (mut tx, rec) = self.open(ctx, kind, id, pre).await?;
        let mut doc = rec.doc.clone();
        let changes = patch::apply(&set, &mut doc, &ops)?;
        check_required(kind, &doc)?;
        assignments::enforce(ctx, kind, &mut doc, Some(&rec.doc))?;
        let write = ResourceWrite::new(kind, &rec.id, &doc);
        let doc_changed = save(&mut tx, ctx, kind, &rec, &write, now).await?;
        let (added, removed) = self
            .apply_member_changes(&mut tx, ctx, &set, &rec, changes)
            .await?;
        audit_members(&mut tx, ctx, id, (&added, &removed), now).await?;
        let members_changed = !added.is_empty() || !removed.is_empty();
        let mut affected: Vec<String> = added.into_iter().chain(removed).collect();
        match kind {
            ResourceKind::Group if doc_changed && moves_members(ctx, &rec.doc, &doc) => {
                affected.extend(tx.member_ids(rec.pk).await?);
            }
            _ if kind.is_principal() && assignments::changed(ctx, &rec.doc, &doc) => {
                affected.push(rec.id.clone());
            }
            _ => {}
        }
        if members_changed && !doc_changed {
            tx.touch(rec.pk, now).await?;
        }
        let lifecycle = match kind.is_principal() {
            true => {
                self.lifecycle(&mut tx, ctx, &rec, write.active, "PATCH", now)
                    .await?
            }
            false => Lifecycle::Unchanged,
        };
        self.recompute(&mut tx, ctx, &dedup(affected), now).await?;
        if doc_changed && lifecycle == Lifecycle::Unchanged {
            audit_updated(&mut tx, ctx, (kind, id), (&rec.doc, &doc), "PATCH", now).await?;
        }
        let revoked = tx.commit().await?;
        self.committed(ctx, kind, lifecycle, &revoked);
        Ok(Outcome::Found(self.read_back(ctx, kind, id, proj).await?))
    }

    /// Applies PATCH membership changes row by row; returns the ids added
    /// and the ids removed.
    async fn apply_member_changes(
        &self,
        tx: &mut ScimTx,
        ctx: &WorkspaceCtx,
        set: &SchemaSet,
        rec: &ScimRecord,
        changes: Vec<MemberChange>,
    ) -> Result<(Vec<String>, Vec<String>), ScimError> {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for change in changes {
            let touched = match change {
                MemberChange::Add(values) => {
                    let members: Vec<NamedMember> = values.iter().flat_map(named_members).collect();
                    added.extend(self.add_members(tx, ctx, rec.pk, &rec.id, &members).await?);
                    continue;
                }
                MemberChange::Remove(ids) => tx.remove_members(rec.pk, &ids).await?,
                MemberChange::RemoveMatching(filter) => {
                    let parent = set.resolve(None, "members", None).ok_or_else(|| {
                        ScimProblem::invalid_path("members is not an attribute here")
                    })?;
                    let ids: Vec<String> = tx
                        .member_list(rec.pk)
                        .await?
                        .into_iter()
                        .filter(|(m, k)| {
                            element_matches(
                                set,
                                &parent,
                                &filter,
                                &json!({"value": m, "type": k.as_str()}),
                            )
                        })
                        .map(|(m, _)| m)
                        .collect();
                    tx.remove_members(rec.pk, &ids).await?
                }
                MemberChange::RemoveAll => {
                    let ids: Vec<String> = tx.member_ids(rec.pk).await?;
                    tx.remove_members(rec.pk, &ids).await?
                }
            };
            removed.extend(touched);
        }
        Ok((added, removed))
    }

    /// `DELETE /Users/{id}`: deactivates (or, when the workspace says so,
    /// deletes) the user or service account and revokes every session and
    /// key; deletes a group.
    pub async fn delete(
        &self,
        ctx: &WorkspaceCtx,
        kind: ResourceKind,
        id: &str,
        pre: &Preconditions,
    ) -> Result<Outcome, ScimError> {
        let now = now_millis();
        let (mut tx, rec) = self.open(ctx, kind, id, pre).await?;
        tx.remove_from_all_groups(&ctx.name, id).await?;
        let mut lifecycle = Lifecycle::Unchanged;
        match kind {
            ResourceKind::User | ResourceKind::ServiceAccount => {
                let (sessions, keys) = tx.revoke_credentials(&ctx.name, id, now).await?;
                let hard = ctx.hard_delete();
                if hard {
                    tx.hard_delete(rec.pk).await?;
                } else {
                    tx.mark_deleted(rec.pk, now).await?;
                }
                let name = kind.name_attr();
                let detail = json!({
                    name: rec.doc.get(name), "via": "DELETE", "hardDelete": hard,
                    "sessionsRevoked": sessions, "keysRevoked": keys, "requestId": ctx.request_id,
                });
                let verb = if hard { "deleted" } else { "deprovisioned" };
                let action = format!("{}_{verb}", kind.audit_noun());
                tx.audit(&audit_entry(ctx, kind, &action, id, detail), now)
                    .await?;
                if rec.active {
                    lifecycle = Lifecycle::Deprovisioned;
                }
            }
            ResourceKind::Group => {
                let members: Vec<String> = tx.member_ids(rec.pk).await?;
                tx.hard_delete(rec.pk).await?;
                self.recompute(&mut tx, ctx, &members, now).await?;
                let detail = json!({
                    "displayName": rec.doc.get("displayName"), "members": members.len(),
                    "requestId": ctx.request_id,
                });
                tx.audit(&audit_entry(ctx, kind, "group_deleted", id, detail), now)
                    .await?;
            }
        }
        let revoked = tx.commit().await?;
        self.committed(ctx, kind, lifecycle, &revoked);
        Ok(Outcome::Deleted)
    }
}

/// Writes a resource's new attributes when they differ from the stored ones,
/// refusing a userName or externalId another resource holds. Returns whether
/// anything was written.
async fn save(
    tx: &mut ScimTx,
    ctx: &WorkspaceCtx,
    kind: ResourceKind,
    rec: &ScimRecord,
    write: &ResourceWrite<'_>,
    now: i64,
) -> Result<bool, ScimError> {
    if *write.doc == rec.doc {
        return Ok(false);
    }
    if let Some(attr) = tx.conflict(&ctx.name, kind, write, Some(rec.pk)).await? {
        return Err(conflict(kind, attr, write.doc));
    }
    tx.update(rec.pk, kind, write, now).await?;
    Ok(true)
}

/// One `user_updated` / `group_updated` entry, naming the top-level
/// attributes (and extension schemas) that changed.
async fn audit_updated(
    tx: &mut ScimTx,
    ctx: &WorkspaceCtx,
    (kind, id): (ResourceKind, &str),
    (before, after): (&Map<String, Value>, &Map<String, Value>),
    via: &str,
    now: i64,
) -> Result<(), StoreError> {
    let action = format!("{}_updated", kind.audit_noun());
    let changed: std::collections::BTreeSet<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    let detail = json!({"via": via, "changed": changed, "requestId": ctx.request_id});
    tx.audit(&audit_entry(ctx, kind, &action, id, detail), now)
        .await
}

/// Most member ids one membership entry lists (it always has the count).
const MEMBERS_LISTED: usize = 1000;

/// A request's membership changes of a group: one `group_members_added` and
/// one `group_members_removed` entry at most, whatever the number of
/// operations.
async fn audit_members(
    tx: &mut ScimTx,
    ctx: &WorkspaceCtx,
    group: &str,
    (added, removed): (&[String], &[String]),
    now: i64,
) -> Result<(), StoreError> {
    for (action, ids) in [
        ("group_members_added", added),
        ("group_members_removed", removed),
    ] {
        if ids.is_empty() {
            continue;
        }
        let listed = &ids[..ids.len().min(MEMBERS_LISTED)];
        let detail = json!({"members": listed, "count": ids.len(), "requestId": ctx.request_id});
        let entry = audit_entry(ctx, ResourceKind::Group, action, group, detail);
        tx.audit(&entry, now).await?;
    }
    Ok(())
}

/// Refuses a filter naming an attribute none of `sets` has.
fn check_known_somewhere(f: &filter::Filter, sets: &[SchemaSet]) -> Result<(), ScimProblem> {
    use filter::Filter as F;
    match f {
        F::And(a, b) | F::Or(a, b) => {
            check_known_somewhere(a, sets)?;
            check_known_somewhere(b, sets)
        }
        F::Not(a) => check_known_somewhere(a, sets),
        F::Present(p) | F::Compare { path: p, .. } | F::ValuePath { attr: p, .. } => {
            if sets.iter().any(|s| {
                s.resolve(p.urn.as_deref(), &p.attr, p.sub.as_deref())
                    .is_some()
            }) {
                Ok(())
            } else {
                Err(ScimProblem::invalid_filter(format!(
                    "{p} is not an attribute of any resource type"
                )))
            }
        }
    }
}

/// Whether a group's change moves its members' roles or assignments: its
/// names (which role mappings match on) or the assignments it gives.
fn moves_members(
    ctx: &WorkspaceCtx,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> bool {
    before.get("displayName") != after.get("displayName")
        || before.get("externalId") != after.get("externalId")
        || assignments::changed(ctx, before, after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_are_clamped_as_the_rfc_allows() {
        let p = ListParams::from_query(&[
            ("StartIndex".into(), "0".into()),
            ("COUNT".into(), "5000".into()),
        ]);
        let q = p.query().unwrap();
        assert_eq!((q.start_index, q.count), (1, MAX_RESULTS));
        let q = ListParams::from_query(&[("count".into(), "-3".into())])
            .query()
            .unwrap();
        assert_eq!(q.count, 0);
        let e = ListParams::from_query(&[("count".into(), "ten".into())])
            .query()
            .unwrap_err();
        assert_eq!(e.scim_type, "invalidValue");
        let e = ListParams::from_query(&[("filter".into(), "userName eq".into())])
            .query()
            .unwrap_err();
        assert_eq!(e.scim_type, "invalidFilter");
    }

    #[test]
    fn ids_are_version_4_uuids() {
        let id = new_id().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_id().unwrap());
    }
}
