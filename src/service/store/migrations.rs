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
    (
        4,
        "saml_signing_keys",
        include_str!("../../../migrations/sqlite/0004_saml_signing_keys.sql"),
        include_str!("../../../migrations/postgres/0004_saml_signing_keys.sql"),
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

#[cfg(test)]
mod tests {
    /// A migration file not listed above would silently never run.
    #[test]
    fn every_migration_file_is_embedded_for_both_backends() {
        for backend in ["sqlite", "postgres"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let listed: Vec<String> = super::MIGRATIONS
                .iter()
                .map(|(v, d, _, _)| format!("{v:04}_{d}.sql"))
                .collect();
            assert_eq!(files, listed, "{backend}");
        }
    }
}
