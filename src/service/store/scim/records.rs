//! SCIM resources as rows: the record a read returns, the columns a write
//! sets, and the reads by id (on the pool or inside a write transaction).

use serde_json::{Map, Value};
use sqlx::Row;

use super::super::{
    Backend, Result, Store, StoreError,
    columns::Columns,
    reader::{Read, first_row},
};
use crate::scim::schema::ResourceKind;

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
        let name = text(kind.name_attr());
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

pub(super) const COLUMNS: &str = "r.pk, r.id, r.kind, r.external_id, r.display_name, r.active, r.role, \
                       r.pending_role, r.doc, r.version, r.created_at, r.updated_at";

/// The principal kind a stored `kind` names; `None` for a group.
pub(in crate::service::store) fn kind_of_principal(s: &str) -> Option<ResourceKind> {
    ResourceKind::parse(s).filter(|k| k.is_principal())
}

pub(in crate::service::store) fn kind_of(s: &str) -> ResourceKind {
    // Only the service writes the column, with `ResourceKind::as_str`.
    ResourceKind::parse(s).unwrap_or(ResourceKind::User)
}

pub(super) fn decode(row: &(impl Columns + ?Sized)) -> Result<ScimRecord> {
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
pub(super) fn decode_listed(
    row: &(impl Columns + ?Sized),
    kind: ResourceKind,
) -> Result<ScimRecord> {
    let mut rec = decode(row)?;
    if kind.is_principal() {
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
pub(super) fn groups_json(backend: Backend, user_id: &str, workspace: &str) -> String {
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

pub(super) fn parse_groups(json: &str, user_id: &str) -> Result<Vec<(String, String)>> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        kind: "User",
        workspace: String::new(),
        name: user_id.to_string(),
        message: format!("group list: {e}"),
    })
}

/// A document as stored. A map of JSON values with string keys always
/// serialises, so there is no error to carry.
pub(super) fn doc_text(doc: &Map<String, Value>) -> String {
    serde_json::to_string(doc).expect("a JSON object serialises") // string keys, JSON values
}

/// A visible (not deleted) resource: `$1` workspace, `$2` id, `$3` kind.
static VISIBLE_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM scim_resources r \
         WHERE r.workspace = $1 AND r.id = $2 AND r.kind = $3 AND r.deleted_at IS NULL"
    )
});

/// A visible resource by id, through `reader`: the pool, or a write
/// transaction that must see its own writes.
pub(in crate::service::store) async fn get(
    reader: &mut impl Read,
    workspace: &str,
    kind: ResourceKind,
    id: &str,
) -> Result<Option<ScimRecord>> {
    // A unique-index probe: a point read.
    let args = [workspace.into(), id.into(), kind.as_str().into()];
    first_row(reader, &VISIBLE_BY_ID, &args, |row| decode(row)).await
}

/// A member as the admin API shows them (see `Store::member`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub id: String,
    /// `User` or `ServiceAccount`.
    pub kind: ResourceKind,
    /// The lower-cased userName (a service account's displayName).
    pub user_name: String,
    pub active: bool,
    pub role: Option<String>,
    pub pending_role: Option<String>,
    /// Effective assignments as stored (JSON).
    pub assignments: Option<String>,
    /// When the member lost access for being in none of the workspace's
    /// access groups.
    pub access_revoked_at: Option<i64>,
}

impl Store {
    /// A principal (user or service account) that is not deleted, by SCIM
    /// id, or a user by userName (case-insensitively).
    pub async fn member(&self, workspace: &str, who: &str) -> Result<Option<MemberRow>> {
        let name_key = who.to_lowercase();
        // Unique-index probes (id, a user's name_key): a point read.
        self.read_optional(
            "SELECT id, kind, name_key, active, role, pending_role, assignments, \
             access_revoked_at FROM scim_resources WHERE workspace = $1 AND deleted_at IS NULL \
             AND kind <> 'Group' AND (id = $2 OR (kind = 'User' AND name_key = $3))",
            &[workspace.into(), who.into(), name_key.as_str().into()],
            |row| {
                Ok(MemberRow {
                    id: row.text("id")?,
                    kind: kind_of(&row.text("kind")?),
                    user_name: row.text("name_key")?,
                    active: row.int("active")? != 0,
                    role: row.opt_text("role")?,
                    pending_role: row.opt_text("pending_role")?,
                    assignments: row.opt_text("assignments")?,
                    access_revoked_at: row.opt_int("access_revoked_at")?,
                })
            },
        )
        .await
    }

    /// A visible (not deleted) resource by id.
    pub async fn scim_get(
        &self,
        workspace: &str,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<ScimRecord>> {
        get(&mut &*self, workspace, kind, id).await
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

    /// The next `limit` resources of `kind` in a workspace after `after_pk`,
    /// in pk order: (pk, id). The role recompute walks a workspace's
    /// principals with it, one kind after the other (each walk is a range of
    /// the (workspace, kind, pk) index).
    pub async fn ids_after(
        &self,
        workspace: &str,
        kind: ResourceKind,
        after_pk: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT pk, id FROM scim_resources WHERE workspace = $1 AND kind = $2 \
             AND pk > $3 AND deleted_at IS NULL ORDER BY pk LIMIT $4",
        )
        .bind(workspace)
        .bind(kind.as_str())
        .bind(after_pk)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("pk")?, r.try_get("id")?)))
            .collect()
    }
}
