//! Values bound to a statement's `$N` placeholders, and the statement run
//! with them, for either driver: sqlx (the pool, PostgreSQL) or rusqlite
//! (SQLite's writer and point reads), so each statement is written once.

use super::{Result, columns::Columns, scim_query::Param};

/// A query on either database, with its arguments bound as it is built.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// One bound value. The store only stores text and integers; a NULL keeps
/// its type, which PostgreSQL checks against the column's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Arg<'a> {
    Text(&'a str),
    Int(i64),
    NullText,
    NullInt,
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(s)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Text(s)
    }
}

impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Arg::Int(n)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Arg::NullText, Arg::Text)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().into()
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Arg::NullInt, Arg::Int)
    }
}

impl<'a> From<&'a Param> for Arg<'a> {
    fn from(p: &'a Param) -> Self {
        match p {
            Param::Text(s) => Arg::Text(s),
            Param::Int(n) => Arg::Int(*n),
        }
    }
}

/// `first`, then each of `ids`: a statement's `$1` and its `IN ($2, …)` list.
pub(super) fn with_ids<'a>(first: Arg<'a>, ids: &'a [String]) -> Vec<Arg<'a>> {
    std::iter::once(first)
        .chain(ids.iter().map(Arg::from))
        .collect()
}

/// Runs a statement on a sqlx connection or pool and decodes every row.
pub(super) async fn fetch_sqlx<'e, T>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    sql: &str,
    args: &[Arg<'_>],
    mut decode: impl FnMut(&dyn Columns) -> Result<T>,
) -> Result<Vec<T>> {
    bind_sqlx(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(executor)
        .await?
        .iter()
        .map(|row| decode(row))
        .collect()
}

/// Runs a statement on a rusqlite connection (its cached prepared
/// statement) and decodes every row.
pub(super) fn fetch_rusqlite<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
    mut decode: impl FnMut(&dyn Columns) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind_rusqlite(&mut stmt, args)?;
    let mut rows = stmt.raw_query();
    let mut decoded = Vec::new();
    while let Some(row) = rows.next()? {
        decoded.push(decode(row)?);
    }
    Ok(decoded)
}

/// Binds `args` to a sqlx query, in order.
pub(super) fn bind_sqlx<'q>(mut q: AnyQuery<'q>, args: &[Arg<'q>]) -> AnyQuery<'q> {
    for arg in args {
        q = match *arg {
            Arg::Text(s) => q.bind(s),
            Arg::Int(n) => q.bind(n),
            Arg::NullText => q.bind(None::<&str>),
            Arg::NullInt => q.bind(None::<i64>),
        };
    }
    q
}

/// Binds `args` to `$1`, `$2`, … of a rusqlite statement, by name: the
/// store's SQL numbers its placeholders, and a number need not appear in
/// order (or at all) in the text.
pub(super) fn bind_rusqlite(
    stmt: &mut rusqlite::Statement<'_>,
    args: &[Arg<'_>],
) -> rusqlite::Result<()> {
    use std::fmt::Write as _;
    let mut name = String::with_capacity(4);
    for (i, arg) in args.iter().enumerate() {
        name.clear();
        // Writing into a String cannot fail.
        let _ = write!(name, "${}", i + 1);
        let Some(index) = stmt.parameter_index(&name)? else {
            continue;
        };
        match *arg {
            Arg::Text(s) => stmt.raw_bind_parameter(index, s)?,
            Arg::Int(n) => stmt.raw_bind_parameter(index, n)?,
            Arg::NullText | Arg::NullInt => {
                stmt.raw_bind_parameter(index, rusqlite::types::Null)?
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_by_placeholder_number_whatever_the_order_in_the_text() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("SELECT $2, $1, $3, $12").unwrap();
        let args: Vec<Arg> = vec![
            "first".into(),
            Arg::Int(2),
            None::<&str>.into(),
            Arg::NullInt,
            Arg::NullInt,
            Arg::NullInt,
            Arg::NullInt,
            Arg::NullInt,
            Arg::NullInt,
            Arg::NullInt,
            Arg::NullInt,
            Arg::Int(12),
        ];
        bind_rusqlite(&mut stmt, &args).unwrap();
        let mut rows = stmt.raw_query();
        let row = rows.next().unwrap().unwrap();
        assert_eq!(row.get::<_, i64>(0).unwrap(), 2);
        assert_eq!(row.get::<_, String>(1).unwrap(), "first");
        assert_eq!(row.get::<_, Option<String>>(2).unwrap(), None);
        assert_eq!(row.get::<_, i64>(3).unwrap(), 12);
    }
}
