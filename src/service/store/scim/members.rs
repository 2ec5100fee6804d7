//! Group memberships: who is in a group, which groups a user is in, and the
//! names a role mapping sees for them.

use std::collections::HashMap;

use serde_json::Value;

use super::super::{
    Backend, Result, Store, StoreError,
    args::Arg,
    placeholders,
    reader::{IDS_PER_STATEMENT, Read, rows_for_ids},
};
use super::records::{ResourceWrite, kind_of};
use super::write::ScimTx;
use crate::scim::schema::ResourceKind;

/// A group member as returned in `members`.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    pub kind: ResourceKind,
    pub display: Option<String>,
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

/// The names a role mapping sees for the groups of each of `user_ids` that is
/// in a group: every group's displayName and, when set, its externalId (the
/// IdP's group object id).
pub(in crate::service::store) async fn group_names_of(
    reader: &mut impl Read,
    workspace: &str,
    user_ids: &[String],
) -> Result<HashMap<String, Vec<String>>> {
    let sql = |ids: &str| {
        // CROSS JOIN keeps SQLite's planner starting from the members' rows
        // (indexed by member_id) instead of walking every group.
        format!(
            "SELECT m.member_id, g.display_name, g.external_id FROM scim_members m \
             CROSS JOIN scim_resources g \
             WHERE g.pk = m.group_pk AND m.member_id IN ({ids}) AND g.workspace = $1 \
             AND g.deleted_at IS NULL"
        )
    };
    let rows = rows_for_ids(reader, workspace.into(), user_ids, sql, |row| {
        Ok((
            row.text("member_id")?,
            row.opt_text("display_name")?,
            row.opt_text("external_id")?,
        ))
    })
    .await?;
    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    for (member, display_name, external_id) in rows {
        let entry = names.entry(member).or_default();
        entry.extend(display_name);
        entry.extend(external_id);
    }
    Ok(names)
}

impl Store {
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
}

impl ScimTx {
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
        let sql = |ids: &str| {
            format!(
                "SELECT id, kind, {name} AS member_name FROM scim_resources \
                 WHERE workspace = $1 AND deleted_at IS NULL AND id IN ({ids})"
            )
        };
        let rows = rows_for_ids(&mut self.tx, workspace.into(), ids, sql, |row| {
            Ok((
                row.text("id")?,
                (kind_of(&row.text("kind")?), row.opt_text("member_name")?),
            ))
        })
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Adds members (ignoring ones already there). Returns the ids newly
    /// added. One statement per 500 members.
    pub async fn add_members(
        &mut self,
        group_pk: i64,
        members: &[NewMember],
    ) -> Result<Vec<String>> {
        let mut added = Vec::new();
        for chunk in members.chunks(IDS_PER_STATEMENT) {
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
        let sql = |ids: &str| {
            format!(
                "DELETE FROM scim_members WHERE group_pk = $1 AND member_id IN ({ids}) \
                 RETURNING member_id"
            )
        };
        rows_for_ids(&mut self.tx, group_pk.into(), ids, sql, |row| {
            row.text("member_id")
        })
        .await
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

    /// See [`group_names_of`].
    pub async fn group_names_of(
        &mut self,
        workspace: &str,
        user_ids: &[String],
    ) -> Result<HashMap<String, Vec<String>>> {
        group_names_of(&mut self.tx, workspace, user_ids).await
    }

    /// The documents of the live groups each of `user_ids` is in (for the
    /// role assignments the groups give), by member.
    pub async fn group_docs_of(
        &mut self,
        workspace: &str,
        user_ids: &[String],
    ) -> Result<HashMap<String, Vec<String>>> {
        let sql = |ids: &str| {
            format!(
                "SELECT m.member_id, g.doc FROM scim_members m CROSS JOIN scim_resources g \
                 WHERE g.pk = m.group_pk AND m.member_id IN ({ids}) AND g.workspace = $1 \
                 AND g.deleted_at IS NULL"
            )
        };
        let rows = rows_for_ids(&mut self.tx, workspace.into(), user_ids, sql, |row| {
            Ok((row.text("member_id")?, row.text("doc")?))
        })
        .await?;
        let mut docs: HashMap<String, Vec<String>> = HashMap::new();
        for (member, doc) in rows {
            docs.entry(member).or_default().push(doc);
        }
        Ok(docs)
    }
}
