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
    (
        5,
        "scim_member_names",
        include_str!("../../../migrations/sqlite/0005_scim_member_names.sql"),
        include_str!("../../../migrations/postgres/0005_scim_member_names.sql"),
    ),
    (
        6,
        "identity_links",
        include_str!("../../../migrations/sqlite/0006_identity_links.sql"),
        include_str!("../../../migrations/postgres/0006_identity_links.sql"),
    ),
    (
        7,
        "workspace_claims",
        include_str!("../../../migrations/sqlite/0007_workspace_claims.sql"),
        include_str!("../../../migrations/postgres/0007_workspace_claims.sql"),
    ),
    (
        8,
        "role_assignments",
        include_str!("../../../migrations/sqlite/0008_role_assignments.sql"),
        include_str!("../../../migrations/postgres/0008_role_assignments.sql"),
    ),
    (
        9,
        "api_keys",
        include_str!("../../../migrations/sqlite/0009_api_keys.sql"),
        include_str!("../../../migrations/postgres/0009_api_keys.sql"),
    ),
    (
        10,
        "signin_assertions",
        include_str!("../../../migrations/sqlite/0010_signin_assertions.sql"),
        include_str!("../../../migrations/postgres/0010_signin_assertions.sql"),
    ),
    (
        11,
        "scim_basic_auth",
        include_str!("../../../migrations/sqlite/0011_scim_basic_auth.sql"),
        include_str!("../../../migrations/postgres/0011_scim_basic_auth.sql"),
    ),
    (
        12,
        "access_groups",
        include_str!("../../../migrations/sqlite/0012_access_groups.sql"),
        include_str!("../../../migrations/postgres/0012_access_groups.sql"),
    ),
    (
        13,
        "role_approvals",
        include_str!("../../../migrations/sqlite/0013_role_approvals.sql"),
        include_str!("../../../migrations/postgres/0013_role_approvals.sql"),
    ),
    (
        14,
        "events",
        include_str!("../../../migrations/sqlite/0014_events.sql"),
        include_str!("../../../migrations/postgres/0014_events.sql"),
    ),
    (
        15,
        "webhook_deliveries",
        include_str!("../../../migrations/sqlite/0015_webhook_deliveries.sql"),
        include_str!("../../../migrations/postgres/0015_webhook_deliveries.sql"),
    ),
    (
        16,
        "webhook_replays",
        include_str!("../../../migrations/sqlite/0016_webhook_replays.sql"),
        include_str!("../../../migrations/postgres/0016_webhook_replays.sql"),
    ),
    (
        17,
        "certificate_warnings",
        include_str!("../../../migrations/sqlite/0017_certificate_warnings.sql"),
        include_str!("../../../migrations/postgres/0017_certificate_warnings.sql"),
    ),
];

/// Number of migrations this binary applies; `/readyz` checks they are all there.
pub const COUNT: usize = MIGRATIONS.len();

pub fn migrator(backend: Backend) -> Migrator {
    migrator_through(backend, i64::MAX)
}

/// The migrations up to and including `last`.
fn migrator_through(backend: Backend, last: i64) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .filter(|(version, ..)| *version <= last)
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
    use sqlx::Executor;

    /// Memberships made before the member names were kept get them when the
    /// migration runs: the displayName, else the userName, else a group's
    /// displayName.
    #[tokio::test]
    async fn existing_memberships_get_their_member_names() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let backend = super::Backend::Sqlite;
        super::migrator_through(backend, 4)
            .run(&pool)
            .await
            .unwrap();
        pool.execute(
            "INSERT INTO scim_resources (pk, workspace, kind, id, name_key, display_name, active, doc, version, created_at, updated_at) VALUES \
             (1, 'acme', 'User', 'u1', 'ada@acme.com', NULL, 1, '{\"userName\":\"Ada@acme.com\"}', 1, 0, 0), \
             (2, 'acme', 'User', 'u2', 'bo@acme.com', 'Bo', 1, '{\"userName\":\"bo@acme.com\",\"displayName\":\"Bo\"}', 1, 0, 0), \
             (3, 'acme', 'Group', 'g1', 'g', 'G', 1, '{\"displayName\":\"G\"}', 1, 0, 0), \
             (4, 'acme', 'Group', 'g2', 'inner', 'Inner', 1, '{\"displayName\":\"Inner\"}', 1, 0, 0), \
             (5, 'other', 'User', 'u3', 'x@other.com', 'Elsewhere', 1, '{}', 1, 0, 0); \
             INSERT INTO scim_members (group_pk, member_id, member_type, display) VALUES \
             (3, 'u1', 'User', NULL), (3, 'u2', 'User', 'Sent'), (3, 'g2', 'Group', NULL), \
             (3, 'u3', 'User', NULL)",
        )
        .await
        .unwrap();
        super::migrator(backend).run(&pool).await.unwrap();
        let names: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT member_id, member_name FROM scim_members ORDER BY member_id")
                .fetch_all(&pool)
                .await
                .unwrap();
        let names: Vec<(&str, Option<&str>)> = names
            .iter()
            .map(|(id, n)| (id.as_str(), n.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("g2", Some("Inner")),
                ("u1", Some("Ada@acme.com")),
                ("u2", Some("Bo")),
                // Not a resource of the group's workspace: no name.
                ("u3", None),
            ]
        );
    }

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
