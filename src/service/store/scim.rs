//! SCIM Users and Groups in the store: reads, filtered listing, and a write
//! transaction type the SCIM service composes (resource + membership + role +
//! audit in one commit).

use std::collections::HashMap;

use serde_json::{Map, Value};
use sqlx::Row;

use super::scim_query::{Param, Sql, Translator};
use super::{
    Backend, Result, Store, StoreError, WriteTx, args, args::Arg, audit, columns::Columns,
    now_millis, placeholders,
};
use crate::scim::{
    ScimProblem,
    filter::{AttrPath, Filter},
    schema::{ResourceKind, SchemaSet},
};

/// A stored SCIM resource.
#[derive(Debug, Clone)]
pub struct ScimRecord {
    pub pk: i64,
    pub id: String,
    pub kind: ResourceKind,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    pub role: Option<String>,
    pub pending_role: Option<String>,
    /// Attributes as normalised (no `id`, `meta`, `members`, `groups`).
    pub doc: Map<String, Value>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// A user's groups, (id, displayName), when the read that produced the
    /// record fetched them too (listings do); `None` means not fetched.
    pub groups: Option<Vec<(String, String)>>,
}

/// The columns a write sets, derived from a normalised document.
#[derive(Debug, Clone)]
pub struct ResourceWrite<'a> {
    pub id: &'a str,
    pub external_id: Option<&'a str>,
    pub name_key: String,
    pub display_name: Option<&'a str>,
    pub active: bool,
    pub doc: &'a Map<String, Value>,
}

impl<'a> ResourceWrite<'a> {
    pub fn new(kind: ResourceKind, id: &'a str, doc: &'a Map<String, Value>) -> Self {
        let text = |k: &str| doc.get(k).and_then(Value::as_str);
        let name = match kind {
            ResourceKind::User => text("userName"),
            ResourceKind::Group => text("displayName"),
        };
        Self {
            id,
            external_id: text("externalId"),
            name_key: name.unwrap_or_default().to_lowercase(),
            display_name: text("displayName"),
            active: kind == ResourceKind::Group || doc.get("active") != Some(&Value::Bool(false)),
            doc,
        }
    }
}

/// One listing request, already validated.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    /// 1-based.
    pub start_index: i64,
    pub count: i64,
    /// A search across resource types: attributes this type lacks match
    /// nothing instead of being an error.
    pub unknown_attributes_match_nothing: bool,
}

/// A group member as returned in `members`.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    pub kind: ResourceKind,
    pub display: Option<String>,
}

const COLUMNS: &str = "r.pk, r.id, r.kind, r.external_id, r.display_name, r.active, r.role, \
                       r.pending_role, r.doc, r.version, r.created_at, r.updated_at";

fn kind_of(s: &str) -> ResourceKind {
    if s == "Group" {
        ResourceKind::Group
    } else {
        ResourceKind::User
    }
}

fn decode(row: &(impl Columns + ?Sized)) -> Result<ScimRecord> {
    let id = row.text("id")?;
    let kind = row.text("kind")?;
    let doc = row.text("doc")?;
    let doc = match serde_json::from_str(&doc) {
        Ok(Value::Object(m)) => m,
        other => {
            return Err(StoreError::Corrupt {
                kind: "SCIM resource",
                workspace: String::new(),
                name: id,
                message: match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "not a JSON object".into(),
                },
            });
        }
    };
    Ok(ScimRecord {
        pk: row.int("pk")?,
        id,
        kind: kind_of(&kind),
        external_id: row.opt_text("external_id")?,
        display_name: row.opt_text("display_name")?,
        active: row.int("active")? != 0,
        role: row.opt_text("role")?,
        pending_role: row.opt_text("pending_role")?,
        doc,
        version: row.int("version")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        groups: None,
    })
}

/// A listed resource: the record and, for a user, the groups read with it.
fn decode_listed(row: &(impl Columns + ?Sized), kind: ResourceKind) -> Result<ScimRecord> {
    let mut rec = decode(row)?;
    if kind == ResourceKind::User {
        let json = row.text("groups_json")?;
        rec.groups = Some(parse_groups(&json, &rec.id)?);
    }
    Ok(rec)
}

/// One JSON array text of the groups `user_id` is a direct member of in
/// `workspace`, `[[id, displayName], …]` in group creation order (SQL
/// expressions for both, so a listing can ask per row).
///
/// `CROSS JOIN` (here and wherever a member's groups are looked up) is
/// SQLite's way to fix the join order: from the member's few rows to their
/// groups by pk. With a plain JOIN and no statistics, SQLite walked every
/// resource of the workspace for each user rendered. PostgreSQL plans a
/// CROSS JOIN with a WHERE like any inner join.
fn groups_json(backend: Backend, user_id: &str, workspace: &str) -> String {
    match backend {
        Backend::Sqlite => format!(
            "(SELECT json_group_array(json_array(id, name)) FROM (\
             SELECT g.id, COALESCE(g.display_name, '') AS name \
             FROM scim_members m CROSS JOIN scim_resources g \
             WHERE g.pk = m.group_pk AND m.member_id = {user_id} AND g.workspace = {workspace} \
             AND g.deleted_at IS NULL ORDER BY g.pk))"
        ),
        Backend::Postgres => format!(
            "(SELECT COALESCE(json_agg(json_build_array(g.id, COALESCE(g.display_name, '')) \
             ORDER BY g.pk), '[]'::json)::text \
             FROM scim_members m CROSS JOIN scim_resources g \
             WHERE g.pk = m.group_pk AND m.member_id = {user_id} AND g.workspace = {workspace} \
             AND g.deleted_at IS NULL)"
        ),
    }
}

fn parse_groups(json: &str, user_id: &str) -> Result<Vec<(String, String)>> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        kind: "User",
        workspace: String::new(),
        name: user_id.to_string(),
        message: format!("group list: {e}"),
    })
}

/// A document as stored. A map of JSON values with string keys always
/// serialises, so there is no error to carry.
fn doc_text(doc: &Map<String, Value>) -> String {
    serde_json::to_string(doc).expect("a JSON object serialises") // string keys, JSON values
}

/// A visible (not deleted) resource: `$1` workspace, `$2` id, `$3` kind.
static VISIBLE_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM scim_resources r \
         WHERE r.workspace = $1 AND r.id = $2 AND r.kind = $3 AND r.deleted_at IS NULL"
    )
});

/// The `scim_values` rows of a document: every scalar, with its lower-cased path,
/// top-level attribute and element index. Columns cover `userName`, `externalId`
/// and a group's `displayName`, so those are skipped.
pub fn value_rows(
    kind: ResourceKind,
    doc: &Map<String, Value>,
) -> Vec<(String, String, i64, String)> {
    let mut rows = Vec::new();
    fn scalar(v: &Value) -> Option<String> {
        crate::scim::eval::scalar_text(v)
    }
    fn push_value(
        rows: &mut Vec<(String, String, i64, String)>,
        attr: &str,
        prefix: &str,
        v: &Value,
    ) {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Object(obj) => {
                            for (k, sv) in obj {
                                if let Some(t) = scalar(sv) {
                                    rows.push((
                                        attr.into(),
                                        format!("{prefix}.{}", k.to_lowercase()),
                                        i as i64,
                                        t,
                                    ));
                                }
                            }
                        }
                        other => {
                            if let Some(t) = scalar(other) {
                                rows.push((attr.into(), prefix.into(), i as i64, t));
                            }
                        }
                    }
                }
            }
            Value::Object(obj) => {
                for (k, sv) in obj {
                    if let Some(t) = scalar(sv) {
                        rows.push((attr.into(), format!("{prefix}.{}", k.to_lowercase()), 0, t));
                    }
                }
            }
            other => {
                if let Some(t) = scalar(other) {
                    rows.push((attr.into(), prefix.into(), 0, t));
                }
            }
        }
    }
    for (key, value) in doc {
        let column_backed = matches!(key.as_str(), "externalId" | "members")
            || (kind == ResourceKind::User && key == "userName")
            || (kind == ResourceKind::Group && key == "displayName");
        if column_backed {
            continue;
        }
        if key.starts_with("urn:") {
            let urn = key.to_lowercase();
            if let Value::Object(ext) = value {
                for (k, v) in ext {
                    let path = format!("{urn}:{}", k.to_lowercase());
                    push_value(&mut rows, &path, &path, v);
                }
            }
            continue;
        }
        let lower = key.to_lowercase();
        push_value(&mut rows, &lower, &lower, value);
    }
    rows
}

impl Store {
    /// A visible (not deleted) resource by id.
    pub async fn scim_get(
        &self,
        workspace: &str,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<ScimRecord>> {
        // A unique-index probe: a point read.
        self.read_optional(
            &VISIBLE_BY_ID,
            &[workspace.into(), id.into(), kind.as_str().into()],
            |row| decode(row),
        )
        .await
    }

    /// A filtered, sorted page of resources and the total number matching.
    /// `Err(Ok(problem))`-style client mistakes come back as `ScimProblem`.
    pub async fn scim_query(
        &self,
        workspace: &str,
        set: &SchemaSet,
        query: &ListQuery,
    ) -> Result<std::result::Result<(i64, Vec<ScimRecord>), ScimProblem>> {
        let mut sql = Sql::default();
        let ws = sql.bind(Param::Text(workspace.into()));
        let kind = sql.bind(Param::Text(set.kind.as_str().into()));
        let mut t = Translator::new(set, self.backend, sql);
        t.unknown_attributes_match_nothing = query.unknown_attributes_match_nothing;
        let mut condition =
            format!("r.workspace = {ws} AND r.kind = {kind} AND r.deleted_at IS NULL");
        if let Some(filter) = &query.filter {
            match t.condition(filter) {
                Ok(c) => {
                    condition.push_str(" AND ");
                    condition.push_str(&c);
                }
                Err(p) => return Ok(Err(p)),
            }
        }
        // The count statement binds only the filter's parameters.
        let filter_params = t.sql.params.len();
        let order = match &query.sort_by {
            Some(path) => match t.sort_key(path) {
                Ok(key) => {
                    let dir = if query.descending { "DESC" } else { "ASC" };
                    // Missing values last either way, then creation order: stable pages.
                    format!("({key}) IS NULL, {key} {dir}, r.pk")
                }
                Err(p) => return Ok(Err(p)),
            },
            None => "r.pk".to_string(),
        };
        // An equality on an indexed column is answered by an index probe
        // however large the workspace: it is read on this thread.
        let point_lookup = query.filter.as_ref().is_some_and(|f| t.is_point_lookup(f));
        let mut sql = t.sql;
        if query.count == 0 {
            let total = self
                .count_matching(&condition, &sql.params[..filter_params])
                .await?;
            return Ok(Ok((total, Vec::new())));
        }
        // The page first: a page that ends before `count` tells the total
        // (lookups by userName, the commonest query, need no COUNT).
        let limit = sql.bind(Param::Int(query.count));
        let offset = sql.bind(Param::Int(query.start_index - 1));
        // A user's groups come in the same statement: one round trip for the
        // page, not one more per user.
        let groups = match set.kind {
            ResourceKind::User => format!(
                ", {} AS groups_json",
                groups_json(self.backend, "r.id", "r.workspace")
            ),
            ResourceKind::Group => String::new(),
        };
        let page_sql = format!(
            "SELECT {COLUMNS}{groups} FROM scim_resources r WHERE {condition} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
        );
        let args: Vec<Arg> = sql.params.iter().map(Arg::from).collect();
        let decode = |row: &dyn Columns| decode_listed(row, set.kind);
        let records = if point_lookup {
            self.read_all(&page_sql, &args, decode).await?
        } else {
            // A scan can take milliseconds: it runs on the pool's threads.
            args::fetch_sqlx(&self.pool, &page_sql, &args, decode).await?
        };
        let total = if !records.is_empty() && (records.len() as i64) < query.count {
            query.start_index - 1 + records.len() as i64
        } else if records.is_empty() && query.start_index == 1 {
            0
        } else {
            self.count_matching(&condition, &sql.params[..filter_params])
                .await?
        };
        Ok(Ok((total, records)))
    }

    /// How many resources match a listing's condition.
    async fn count_matching(&self, condition: &str, params: &[Param]) -> Result<i64> {
        let count_sql = format!("SELECT COUNT(*) AS n FROM scim_resources r WHERE {condition}");
        let args: Vec<Arg> = params.iter().map(Arg::from).collect();
        let counted = args::fetch_sqlx(&self.pool, &count_sql, &args, |row| row.int("n")).await?;
        Ok(counted.into_iter().next().unwrap_or(0))
    }

    /// A group's members with their display names (the one the IdP sent, else
    /// the member's name kept with the membership: see [`member_name`]),
    /// ordered by id.
    ///
    /// The database aggregates the members into one JSON array: sqlx's SQLite
    /// driver hands every result row from its worker thread over a channel,
    /// and for a 10,000-member group those 10,000 hand-overs were most of an
    /// answer's cost.
    pub async fn scim_members(&self, workspace: &str, group_pk: i64) -> Result<Vec<Member>> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT json_group_array(json_array(member_id, member_type, \
                 COALESCE(display, member_name))) FROM (\
                 SELECT member_id, member_type, display, member_name FROM scim_members \
                 WHERE group_pk = $1 ORDER BY member_id)"
            }
            Backend::Postgres => {
                "SELECT COALESCE(json_agg(json_build_array(member_id, member_type, \
                 COALESCE(display, member_name)) ORDER BY member_id), '[]'::json)::text \
                 FROM scim_members WHERE group_pk = $1"
            }
        };
        let json: String = sqlx::query_scalar(sql)
            .bind(group_pk)
            .fetch_one(&self.pool)
            .await?;
        let rows: Vec<(String, String, Option<String>)> =
            serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                kind: "Group",
                workspace: workspace.to_string(),
                name: group_pk.to_string(),
                message: format!("member list: {e}"),
            })?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, display)| Member {
                id,
                kind: kind_of(&kind),
                display,
            })
            .collect())
    }

    /// The groups a user is a direct member of: (id, displayName).
    pub async fn scim_groups_of(
        &self,
        workspace: &str,
        user_id: &str,
    ) -> Result<Vec<(String, String)>> {
        // The member's rows of the member_id index, each joined to its group
        // by pk: a point read.
        let sql = format!(
            "SELECT {} AS groups_json",
            groups_json(self.backend, "$1", "$2")
        );
        let json = self
            .read_optional(&sql, &[user_id.into(), workspace.into()], |row| {
                row.text("groups_json")
            })
            .await?
            .unwrap_or_else(|| "[]".to_string());
        parse_groups(&json, user_id)
    }

    /// A visible user's role and the role awaiting approval, if any.
    pub async fn scim_user_role(
        &self,
        workspace: &str,
        user_id: &str,
    ) -> Result<Option<(Option<String>, Option<String>)>> {
        // A unique-index probe: a point read.
        self.read_optional(
            "SELECT role, pending_role FROM scim_resources WHERE workspace = $1 AND id = $2 \
             AND kind = 'User' AND deleted_at IS NULL",
            &[workspace.into(), user_id.into()],
            |row| Ok((row.opt_text("role")?, row.opt_text("pending_role")?)),
        )
        .await
    }

    /// Sessions of a user that are neither revoked nor expired.
    pub async fn live_sessions(&self, workspace: &str, user_id: &str) -> Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE workspace = $1 AND user_id = $2 \
             AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(workspace)
        .bind(user_id)
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Records a session (the sign-in flow creates them).
    pub async fn create_session(
        &self,
        id: &str,
        workspace: &str,
        user_id: &str,
        role: Option<&str>,
        expires_at: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "INSERT INTO sessions (id, workspace, user_id, role, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                id.into(),
                workspace.into(),
                user_id.into(),
                role.into(),
                now_millis().into(),
                expires_at.into(),
            ],
        )
        .await?;
        tx.commit().await
    }

    /// The next `limit` users of a workspace after `after_pk`, in pk order:
    /// (pk, id). The role recompute walks a workspace with it.
    pub async fn user_ids_after(
        &self,
        workspace: &str,
        after_pk: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT pk, id FROM scim_resources WHERE workspace = $1 AND kind = 'User' \
             AND pk > $2 AND deleted_at IS NULL ORDER BY pk LIMIT $3",
        )
        .bind(workspace)
        .bind(after_pk)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("pk")?, r.try_get("id")?)))
            .collect()
    }

    /// Begins a SCIM write transaction.
    pub async fn scim_write(&self) -> Result<ScimTx> {
        Ok(ScimTx {
            tx: self.begin_write().await?,
            backend: self.backend,
        })
    }
}

/// A write transaction over SCIM resources. Dropped without `commit`, it rolls back.
pub struct ScimTx {
    tx: WriteTx,
    backend: Backend,
}

impl ScimTx {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn get(
        &mut self,
        workspace: &str,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<ScimRecord>> {
        self.tx
            .fetch_optional(
                &VISIBLE_BY_ID,
                &[workspace.into(), id.into(), kind.as_str().into()],
                |row| decode(row),
            )
            .await
    }

    /// Which unique attribute another visible resource already holds, if any.
    pub async fn conflict(
        &mut self,
        workspace: &str,
        kind: ResourceKind,
        write: &ResourceWrite<'_>,
        except_pk: Option<i64>,
    ) -> Result<Option<&'static str>> {
        let except = except_pk.unwrap_or(-1);
        if kind == ResourceKind::User {
            let taken = self
                .tx
                .fetch_optional(
                    "SELECT pk FROM scim_resources WHERE workspace = $1 AND kind = 'User' \
                     AND name_key = $2 AND deleted_at IS NULL AND pk <> $3",
                    &[workspace.into(), (&write.name_key).into(), except.into()],
                    |row| row.int("pk"),
                )
                .await?;
            if taken.is_some() {
                return Ok(Some("userName"));
            }
        }
        if let Some(external_id) = write.external_id {
            let taken = self
                .tx
                .fetch_optional(
                    "SELECT pk FROM scim_resources WHERE workspace = $1 AND kind = $2 \
                     AND external_id = $3 AND deleted_at IS NULL AND pk <> $4",
                    &[
                        workspace.into(),
                        kind.as_str().into(),
                        external_id.into(),
                        except.into(),
                    ],
                    |row| row.int("pk"),
                )
                .await?;
            if taken.is_some() {
                return Ok(Some("externalId"));
            }
        }
        Ok(None)
    }

    /// Inserts a new resource (a user with the role decided before the
    /// write), its searchable values and, when given, its audit entry;
    /// returns the resource's pk. A taken `userName` or `externalId` fails on
    /// the unique indexes before anything is written.
    pub async fn insert(
        &mut self,
        new: &NewResource<'_>,
        audit_entry: Option<&audit::AuditEntry>,
    ) -> Result<i64> {
        let w = new.write;
        let doc = doc_text(w.doc);
        let pk = self
            .tx
            .fetch_one(
                "INSERT INTO scim_resources (workspace, kind, id, external_id, name_key, \
                 display_name, active, role, pending_role, doc, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11) RETURNING pk",
                &[
                    new.workspace.into(),
                    new.kind.as_str().into(),
                    w.id.into(),
                    w.external_id.into(),
                    (&w.name_key).into(),
                    w.display_name.into(),
                    (w.active as i64).into(),
                    new.role.0.into(),
                    new.role.1.into(),
                    doc.as_str().into(),
                    new.now.into(),
                ],
                |row| row.int("pk"),
            )
            .await?;
        self.write_values(pk, new.kind, w.doc, false).await?;
        if let Some(entry) = audit_entry {
            self.audit(entry, new.now).await?;
        }
        Ok(pk)
    }

    /// Rewrites a resource's attributes; returns the new version.
    pub async fn update(
        &mut self,
        pk: i64,
        kind: ResourceKind,
        w: &ResourceWrite<'_>,
        now: i64,
    ) -> Result<i64> {
        let doc = doc_text(w.doc);
        let version = self
            .tx
            .fetch_one(
                "UPDATE scim_resources SET external_id = $1, name_key = $2, display_name = $3, \
                 active = $4, doc = $5, version = version + 1, updated_at = $6 WHERE pk = $7 \
                 RETURNING version",
                &[
                    w.external_id.into(),
                    (&w.name_key).into(),
                    w.display_name.into(),
                    (w.active as i64).into(),
                    doc.as_str().into(),
                    now.into(),
                    pk.into(),
                ],
                |row| row.int("version"),
            )
            .await?;
        self.write_values(pk, kind, w.doc, true).await?;
        // Groups this resource is a member of show its new name.
        self.tx
            .execute(
                "UPDATE scim_members SET member_name = $2 \
                 WHERE member_id = $1 AND member_name IS DISTINCT FROM $2",
                &[w.id.into(), member_name(w).into()],
            )
            .await?;
        Ok(version)
    }

    async fn write_values(
        &mut self,
        pk: i64,
        kind: ResourceKind,
        doc: &Map<String, Value>,
        replace: bool,
    ) -> Result<()> {
        if replace {
            self.tx
                .execute(
                    "DELETE FROM scim_values WHERE resource_pk = $1",
                    &[pk.into()],
                )
                .await?;
        }
        let rows = value_rows(kind, doc);
        // Multi-row inserts, 100 rows (600 parameters) at a time.
        for chunk in rows.chunks(100) {
            let lowered: Vec<String> = chunk.iter().map(|row| row.3.to_lowercase()).collect();
            let tuples: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(6 * i + 1, 6)))
                .collect();
            // Only placeholders are formatted in; values are bound.
            let sql = format!(
                "INSERT INTO scim_values (resource_pk, attr, path, elem, v_text, v_lower) VALUES {}",
                tuples.join(", ")
            );
            let mut args = Vec::with_capacity(6 * chunk.len());
            for ((attr, path, elem, text), lower) in chunk.iter().zip(&lowered) {
                args.extend::<[Arg; 6]>([
                    pk.into(),
                    attr.into(),
                    path.into(),
                    (*elem).into(),
                    text.into(),
                    lower.into(),
                ]);
            }
            self.tx.execute(&sql, &args).await?;
        }
        Ok(())
    }

    /// Bumps a resource's version (membership changed); returns the new version.
    pub async fn touch(&mut self, pk: i64, now: i64) -> Result<i64> {
        self.tx
            .fetch_one(
                "UPDATE scim_resources SET version = version + 1, updated_at = $1 WHERE pk = $2 \
                 RETURNING version",
                &[now.into(), pk.into()],
                |row| row.int("version"),
            )
            .await
    }

    /// Soft delete: hidden from SCIM, kept (deactivated, with its role) for the audit trail.
    pub async fn mark_deleted(&mut self, pk: i64, now: i64) -> Result<()> {
        self.tx
            .execute(
                "UPDATE scim_resources SET deleted_at = $1, active = 0, updated_at = $1 WHERE pk = $2",
                &[now.into(), pk.into()],
            )
            .await?;
        Ok(())
    }

    pub async fn hard_delete(&mut self, pk: i64) -> Result<()> {
        self.tx
            .execute("DELETE FROM scim_resources WHERE pk = $1", &[pk.into()])
            .await?;
        Ok(())
    }

    /// Of `ids`, those that are visible resources of the workspace, with
    /// their kind and the name a group shows for them (see [`member_name`]).
    pub async fn existing(
        &mut self,
        workspace: &str,
        ids: &[String],
    ) -> Result<HashMap<String, (ResourceKind, Option<String>)>> {
        let name = match self.backend {
            Backend::Sqlite => "COALESCE(display_name, json_extract(doc, '$.userName'))",
            Backend::Postgres => "COALESCE(display_name, doc::jsonb ->> 'userName')",
        };
        let mut found = HashMap::new();
        for chunk in ids.chunks(MEMBER_CHUNK) {
            let sql = format!(
                "SELECT id, kind, {name} AS member_name FROM scim_resources \
                 WHERE workspace = $1 AND deleted_at IS NULL AND id IN ({})",
                placeholders(2, chunk.len())
            );
            let args = args::with_ids(workspace.into(), chunk);
            // Only placeholders are formatted in; values are bound.
            let rows = self
                .tx
                .fetch_all(&sql, &args, |row| {
                    Ok((
                        row.text("id")?,
                        (kind_of(&row.text("kind")?), row.opt_text("member_name")?),
                    ))
                })
                .await?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// Adds members (ignoring ones already there). Returns the ids newly
    /// added. One statement per 500 members.
    pub async fn add_members(
        &mut self,
        group_pk: i64,
        members: &[NewMember],
    ) -> Result<Vec<String>> {
        let mut added = Vec::new();
        for chunk in members.chunks(MEMBER_CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("($1, {})", placeholders(4 * i + 2, 4)))
                .collect();
            // Only placeholders are formatted in; values are bound.
            let sql = format!(
                "INSERT INTO scim_members (group_pk, member_id, member_type, display, member_name) \
                 VALUES {} ON CONFLICT DO NOTHING RETURNING member_id",
                rows.join(", ")
            );
            let mut args = Vec::with_capacity(1 + 4 * chunk.len());
            args.push(group_pk.into());
            for m in chunk {
                args.extend::<[Arg; 4]>([
                    (&m.id).into(),
                    m.kind.as_str().into(),
                    (&m.display).into(),
                    (&m.name).into(),
                ]);
            }
            added.extend(
                self.tx
                    .fetch_all(&sql, &args, |row| row.text("member_id"))
                    .await?,
            );
        }
        Ok(added)
    }

    /// Removes members; returns the ids that were members.
    pub async fn remove_members(&mut self, group_pk: i64, ids: &[String]) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for chunk in ids.chunks(MEMBER_CHUNK) {
            // Only placeholders are formatted in; values are bound.
            let sql = format!(
                "DELETE FROM scim_members WHERE group_pk = $1 AND member_id IN ({}) RETURNING member_id",
                placeholders(2, chunk.len())
            );
            let args = args::with_ids(group_pk.into(), chunk);
            removed.extend(
                self.tx
                    .fetch_all(&sql, &args, |row| row.text("member_id"))
                    .await?,
            );
        }
        Ok(removed)
    }

    /// Every member of a group: (id, type).
    pub async fn member_list(&mut self, group_pk: i64) -> Result<Vec<(String, ResourceKind)>> {
        self.tx
            .fetch_all(
                "SELECT member_id, member_type FROM scim_members WHERE group_pk = $1",
                &[group_pk.into()],
                |row| Ok((row.text("member_id")?, kind_of(&row.text("member_type")?))),
            )
            .await
    }

    /// The ids of a group's members.
    pub async fn member_ids(&mut self, group_pk: i64) -> Result<Vec<String>> {
        Ok(self
            .member_list(group_pk)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Takes a resource out of every group of the workspace; returns the groups' pks.
    pub async fn remove_from_all_groups(
        &mut self,
        workspace: &str,
        member_id: &str,
    ) -> Result<Vec<i64>> {
        let pks = self
            .tx
            .fetch_all(
                "SELECT m.group_pk FROM scim_members m CROSS JOIN scim_resources g \
                 WHERE g.pk = m.group_pk AND m.member_id = $1 AND g.workspace = $2",
                &[member_id.into(), workspace.into()],
                |row| row.int("group_pk"),
            )
            .await?;
        for pk in &pks {
            self.tx
                .execute(
                    "DELETE FROM scim_members WHERE group_pk = $1 AND member_id = $2",
                    &[(*pk).into(), member_id.into()],
                )
                .await?;
        }
        Ok(pks)
    }

    /// The names a role mapping sees for the groups of each of `user_ids` that
    /// is in a group: every group's displayName and, when set, its externalId
    /// (the IdP's group object id).
    pub async fn group_names_of(
        &mut self,
        workspace: &str,
        user_ids: &[String],
    ) -> Result<HashMap<String, Vec<String>>> {
        let mut names: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in user_ids.chunks(MEMBER_CHUNK) {
            let sql = format!(
                // CROSS JOIN keeps SQLite's planner starting from the members' rows
                // (indexed by member_id) instead of walking every group.
                "SELECT m.member_id, g.display_name, g.external_id FROM scim_members m \
                 CROSS JOIN scim_resources g \
                 WHERE g.pk = m.group_pk AND m.member_id IN ({}) AND g.workspace = $1 \
                 AND g.deleted_at IS NULL",
                placeholders(2, chunk.len())
            );
            let args = args::with_ids(workspace.into(), chunk);
            let rows = self
                .tx
                .fetch_all(&sql, &args, |row| {
                    Ok((
                        row.text("member_id")?,
                        row.opt_text("display_name")?,
                        row.opt_text("external_id")?,
                    ))
                })
                .await?;
            for (member, display_name, external_id) in rows {
                let entry = names.entry(member).or_default();
                entry.extend(display_name);
                entry.extend(external_id);
            }
        }
        Ok(names)
    }

    /// (pk, role, pending role) of each of `user_ids` that is a live user.
    pub async fn user_roles(
        &mut self,
        workspace: &str,
        user_ids: &[String],
    ) -> Result<HashMap<String, (i64, Option<String>, Option<String>)>> {
        let mut found = HashMap::new();
        for chunk in user_ids.chunks(MEMBER_CHUNK) {
            // The kind is checked here, not in SQL: with `kind = 'User'` beside an
            // IN list, SQLite (no statistics) preferred the (workspace, kind, …)
            // index and walked every user of the workspace per statement.
            let sql = format!(
                "SELECT id, kind, pk, role, pending_role FROM scim_resources WHERE workspace = $1 \
                 AND id IN ({}) AND deleted_at IS NULL",
                placeholders(2, chunk.len())
            );
            let args = args::with_ids(workspace.into(), chunk);
            let rows = self
                .tx
                .fetch_all(&sql, &args, |row| {
                    let user = row.text("kind")? == ResourceKind::User.as_str();
                    Ok(user.then_some((
                        row.text("id")?,
                        (
                            row.int("pk")?,
                            row.opt_text("role")?,
                            row.opt_text("pending_role")?,
                        ),
                    )))
                })
                .await?;
            found.extend(rows.into_iter().flatten());
        }
        Ok(found)
    }

    pub async fn set_role(
        &mut self,
        pk: i64,
        role: Option<&str>,
        pending: Option<&str>,
    ) -> Result<()> {
        self.tx
            .execute(
                "UPDATE scim_resources SET role = $1, pending_role = $2 WHERE pk = $3",
                &[role.into(), pending.into(), pk.into()],
            )
            .await?;
        Ok(())
    }

    /// Revokes every live session of a user; returns how many.
    pub async fn revoke_sessions(
        &mut self,
        workspace: &str,
        user_id: &str,
        now: i64,
    ) -> Result<u64> {
        self.tx
            .execute(
                "UPDATE sessions SET revoked_at = $1 WHERE workspace = $2 AND user_id = $3 \
                 AND revoked_at IS NULL",
                &[now.into(), workspace.into(), user_id.into()],
            )
            .await
    }

    pub async fn audit(&mut self, entry: &audit::AuditEntry, now: i64) -> Result<()> {
        audit::insert(&mut self.tx, entry, now).await
    }
}

/// A resource to insert: where, what, with which role (and role awaiting
/// approval), when.
pub struct NewResource<'a> {
    pub workspace: &'a str,
    pub kind: ResourceKind,
    pub write: &'a ResourceWrite<'a>,
    pub role: (Option<&'a str>, Option<&'a str>),
    pub now: i64,
}

/// A member to add to a group.
pub struct NewMember {
    pub id: String,
    pub kind: ResourceKind,
    /// The display the IdP sent with the member, if any.
    pub display: Option<String>,
    /// The name the group shows when the IdP sent none (see [`member_name`]).
    pub name: Option<String>,
}

/// The name a group shows for a member the IdP sent without a display: its
/// displayName, else its userName (a group has no userName). Stored with
/// each membership, and rewritten when the member is renamed.
pub fn member_name<'a>(w: &'a ResourceWrite<'_>) -> Option<&'a str> {
    w.display_name
        .or_else(|| w.doc.get("userName").and_then(Value::as_str))
}

/// Ids per statement when a statement lists them (3 bound values per member
/// stays far below SQLite's and PostgreSQL's parameter limits).
const MEMBER_CHUNK: usize = 500;

/// The names a role mapping sees for a user's groups: every group's
/// displayName and, when set, its externalId (the IdP's group object id).
pub(super) async fn group_names<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    workspace: &str,
    user_id: &str,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        // CROSS JOIN keeps SQLite's planner starting from the member's rows
        // (indexed by member_id) instead of walking every group.
        "SELECT g.display_name, g.external_id FROM scim_members m CROSS JOIN scim_resources g \
         WHERE g.pk = m.group_pk AND m.member_id = $1 AND g.workspace = $2 AND g.deleted_at IS NULL",
    )
    .bind(user_id)
    .bind(workspace)
    .fetch_all(executor)
    .await?;
    let mut names = Vec::new();
    for r in rows {
        names.extend(r.try_get::<Option<String>, _>("display_name")?);
        names.extend(r.try_get::<Option<String>, _>("external_id")?);
    }
    Ok(names)
}

/// What a unique-index violation says (the message, and the constraint's
/// name where the driver gives it); `None` for any other error.
fn unique_violation(e: &StoreError) -> Option<String> {
    match e {
        StoreError::Database(sqlx::Error::Database(d))
            if d.kind() == sqlx::error::ErrorKind::UniqueViolation =>
        {
            Some(format!(
                "{} {}",
                d.message(),
                d.constraint().unwrap_or_default()
            ))
        }
        // The SQLite writer (rusqlite).
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, message))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Some(message.clone().unwrap_or_default())
        }
        _ => None,
    }
}

/// Whether a store error is a unique-index violation (two writers raced past the
/// conflict check on PostgreSQL).
pub fn is_unique_violation(e: &StoreError) -> bool {
    unique_violation(e).is_some()
}

/// Which SCIM attribute a unique-index violation on `scim_resources` is about:
/// SQLite names the columns (`… scim_resources.name_key`), PostgreSQL the index
/// (`scim_users_unique_name`, `scim_resources_unique_external_id`).
pub fn unique_attribute(e: &StoreError) -> Option<&'static str> {
    let said = unique_violation(e)?;
    if said.contains("name_key") || said.contains("scim_users_unique_name") {
        Some("userName")
    } else if said.contains("external_id") {
        Some("externalId")
    } else {
        None
    }
}
