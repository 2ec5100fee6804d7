//! A real PostgreSQL server for the test binary, started from the Debian
//! `postgresql` package's binaries on 127.0.0.1 with its data in a temporary
//! directory. It stops by itself when the test process exits: a watchdog shell
//! beside it polls for the test process and shuts the server down.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use sqlx::Connection;

pub struct Postgres {
    pub port: u16,
    pub dir: PathBuf,
    next_db: AtomicUsize,
    _watchdog: std::sync::Mutex<std::process::Child>,
}

static SHARED: OnceLock<Postgres> = OnceLock::new();

/// The test binary's server, started on first use.
pub fn shared() -> &'static Postgres {
    SHARED.get_or_init(Postgres::start)
}

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .find(|d| d.join("postgres").exists())
        .expect("PostgreSQL server binaries not found under /usr/lib/postgresql: install the Debian package `postgresql` (.ci/run does)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a shell command as the `postgres` user when we are root (PostgreSQL refuses
/// to run as root), or as ourselves otherwise.
fn shell(script: &str) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "bash", "-c", script]);
        c
    } else {
        let mut c = Command::new("bash");
        c.args(["-c", script]);
        c
    };
    cmd.stdin(Stdio::null());
    cmd
}

impl Postgres {
    fn start() -> Self {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("idsync-test-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create PostgreSQL directory");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the PostgreSQL directory failed");
        }
        let port = free_port();
        let data = dir.join("data");
        let init = shell(&format!(
            "{bin}/initdb -D {data} -U idsync --auth=trust --no-sync >{dir}/initdb.log 2>&1",
            bin = bin.display(),
            data = data.display(),
            dir = dir.display()
        ))
        .status()
        .expect("run initdb");
        assert!(
            init.success(),
            "initdb failed; see {}/initdb.log",
            dir.display()
        );

        let owner = std::process::id();
        // fsync off: the data is thrown away after the run.
        let script = format!(
            "{bin}/postgres -D {data} -h 127.0.0.1 -p {port} -k {dir} -c fsync=off -c max_connections=300 >{dir}/postgres.log 2>&1 & pg=$!; \
             while [ -d /proc/{owner} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done; kill -INT $pg 2>/dev/null; wait; rm -rf {dir}",
            bin = bin.display(),
            data = data.display(),
            dir = dir.display(),
        );
        // Kept, never waited on: it outlives the tests and exits with them.
        let watchdog = shell(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");

        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start; see {}/postgres.log",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            port,
            dir,
            next_db: AtomicUsize::new(0),
            _watchdog: std::sync::Mutex::new(watchdog),
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://idsync@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn fresh_database(&self) -> String {
        let name = format!("t{}", self.next_db.fetch_add(1, Ordering::SeqCst));
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = loop {
            match sqlx::PgConnection::connect(&self.url("postgres")).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("connecting to the test PostgreSQL: {e}"),
            }
        };
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        self.url(&name)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
