//! Filtered, sorted pages of resources (`GET /Users?filter=…`, `.search`).

use super::super::scim_query::{Param, Sql, Translator};
use super::super::{Backend, Result, Store, args, args::Arg, columns::Columns};
use super::records::{COLUMNS, ScimRecord, decode_listed, groups_json};
use crate::scim::{
    ScimProblem,
    filter::{AttrPath, Filter},
    schema::SchemaSet,
};

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

impl Store {
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
        // With `ORDER BY r.pk LIMIT n`, PostgreSQL walks the workspace in pk
        // order (index `scim_resources_in_order`) testing every row against
        // the equality: 2 ms of database CPU per `userName eq` at 10,000
        // users. An expression it cannot read off an index makes it probe the
        // equality's index and sort the row or two it finds.
        let order = match (point_lookup, self.backend, query.sort_by.is_none()) {
            (true, Backend::Postgres, true) => "r.pk + 0".to_string(),
            _ => order,
        };
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
        let groups = match set.kind.is_principal() {
            true => format!(
                ", {} AS groups_json",
                groups_json(self.backend, "r.id", "r.workspace")
            ),
            false => String::new(),
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
}
