//! One way to read, wherever the read runs: on the store's handle (the pool,
//! or SQLite point reads) or inside a write transaction, which must see its
//! own writes. A read written against [`Read`] is written once for both, as
//! kanidm's `BackendTransaction` does for its read and write transactions.

use super::{Result, Store, WriteTx, args::Arg, columns::Columns, placeholders};

/// Runs a statement and decodes the rows it returns.
pub(super) trait Read {
    async fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl FnMut(&dyn Columns) -> Result<T>,
    ) -> Result<Vec<T>>;
}

/// Reads on the handle are reads an index bounds (see `Store::read_all`).
impl Read for &Store {
    async fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl FnMut(&dyn Columns) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.read_all(sql, args, decode).await
    }
}

impl Read for WriteTx {
    async fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl FnMut(&dyn Columns) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.fetch_all(sql, args, decode).await
    }
}

/// The first row a statement returns, if any.
pub(super) async fn first_row<T>(
    reader: &mut impl Read,
    sql: &str,
    args: &[Arg<'_>],
    decode: impl FnMut(&dyn Columns) -> Result<T>,
) -> Result<Option<T>> {
    Ok(reader.rows(sql, args, decode).await?.into_iter().next())
}

/// Ids per statement when a statement lists them: far below SQLite's and
/// PostgreSQL's parameter limits, and short enough to plan quickly.
pub(super) const IDS_PER_STATEMENT: usize = 500;

/// Runs a statement over `ids`, [`IDS_PER_STATEMENT`] at a time: `$1` is
/// `first`, and `sql` gets the placeholders of one chunk (`$2, $3, …`) for
/// its `IN (…)`. Returns every chunk's rows.
pub(super) async fn rows_for_ids<T>(
    reader: &mut impl Read,
    first: Arg<'_>,
    ids: &[String],
    sql: impl Fn(&str) -> String,
    mut decode: impl FnMut(&dyn Columns) -> Result<T>,
) -> Result<Vec<T>> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        // Only placeholders are formatted in; values are bound.
        let statement = sql(&placeholders(2, chunk.len()));
        let args = super::args::with_ids(first, chunk);
        rows.extend(reader.rows(&statement, &args, &mut decode).await?);
    }
    Ok(rows)
}
