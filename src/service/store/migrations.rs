//! Schema migrations, embedded in the binary and applied on start.
//!
//! The two backends differ only in DDL, so each migration has a SQLite and a
//! PostgreSQL file with the same version.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::Backend;

/// (version, description, SQLite DDL, PostgreSQL DDL)
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "scim",
        include_str!("../../../migrations/sqlite/0002_scim.sql"),
        include_str!("../../../migrations/postgres/0002_scim.sql"),
    ),
    (
        3,
        "signin",
        include_str!("../../../migrations/sqlite/0003_signin.sql"),
        include_str!("../../../migrations/postgres/0003_signin.sql"),
    ),
];

/// Number of migrations this binary applies; `/readyz` checks they are all there.
pub const COUNT: usize = MIGRATIONS.len();

pub fn migrator(backend: Backend) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, sqlite, postgres)| {
            let sql = match backend {
                Backend::Sqlite => sqlite,
                Backend::Postgres => postgres,
            };
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sqlx::SqlSafeStr::into_sql_str(sql),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}
