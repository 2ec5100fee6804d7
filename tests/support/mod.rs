//! Shared helpers for integration tests: a real PostgreSQL server, and the identity
//! service started in-process on 127.0.0.1.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod cluster;
pub mod postgres;
pub mod process;
pub mod replicas;
pub mod scim;
pub mod signin;
pub mod stub;
pub mod tcp_proxy;
pub mod webhooks;

use std::path::{Path, PathBuf};

use idsync::admin::AdminClient;
use idsync::service::{self, RunningService, ServeConfig};

/// The admin token tests use (long enough for the service's minimum).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A database for one test: a SQLite file in a temporary directory, or a fresh
/// database on the test binary's PostgreSQL server.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(db: Db) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("idsync.db").display()),
            Db::Postgres => postgres::shared().fresh_database().await,
        };
        Self { url, dir }
    }

    /// The SQLite file and its WAL, for tests that read the raw bytes.
    pub fn sqlite_files(&self) -> Vec<PathBuf> {
        ["idsync.db", "idsync.db-wal", "idsync.db-shm"]
            .iter()
            .map(|f| self.dir.path().join(f))
            .filter(|p| p.exists())
            .collect()
    }
}

/// Starts the identity service on a free port over `url`.
pub async fn start_service(url: &str) -> RunningService {
    start_service_with(url, |_| {}).await
}

/// The same, with settings changed by `configure` first.
pub async fn start_service_with(
    url: &str,
    configure: impl FnOnce(&mut ServeConfig),
) -> RunningService {
    let mut config = ServeConfig::new(
        "127.0.0.1:0".parse().expect("valid address"),
        url,
        ADMIN_TOKEN,
        "https://idsync.example.test",
    );
    configure(&mut config);
    service::start(config)
        .await
        .expect("identity service starts")
}

pub fn base_url(service: &RunningService) -> String {
    format!("http://{}", service.addr)
}

pub fn client(service: &RunningService) -> AdminClient {
    AdminClient::new(&base_url(service), ADMIN_TOKEN, None)
        .expect("client")
        .with_actor("test")
}

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Generates a test for each database from one async test body taking a `Db`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::Db::Postgres).await
                }
            )*
        }
    };
}
