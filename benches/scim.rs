//! SCIM benchmark: the identity service on SQLite, 64 concurrent keep-alive
//! clients on loopback, on whatever cores the machine has. The clients are a
//! minimal HTTP/1.1 loop (`benches/common/http_load.rs`, as wrk would be), so
//! they take as little of those cores as they can; every server gets the same.
//!
//! 1. user creates/s (POST /Users), with p50/p99 latency;
//! 2. filtered `userName eq` lookups/s, and pages of 100 users;
//! 3. PATCH add-member/s on a group that already has 10,000 members (answer
//!    without members, as `excludedAttributes=members` asks, and with them);
//! 4. time to provision 100,000 users and 10,000 groups of 10 members;
//! 5. peers from PyPI through the same creates and lookups, with the ratios:
//!    `scim2-server` (in memory) and `django-scim2` (SQLite), both served by
//!    gunicorn on 127.0.0.1 from the virtualenv `scripts/test.sh` keeps
//!    (`IDSYNC_PY_VENV`); see `benches/peers/`. Each is stopped when done.
//!
//! Run with `cargo bench --bench scim`. `IDSYNC_BENCH_USERS` scales step 4 down;
//! `IDSYNC_BENCH_PEER_USERS` (default 10,000, as step 1) and
//! `IDSYNC_BENCH_PEER_LOOKUPS` (default 2,000) size the peers' runs, and
//! `IDSYNC_BENCH_PEERS=0` skips them. Prints numbers; asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/http_load.rs"]
mod http_load;

#[path = "common/scim_load.rs"]
mod scim_load;

/// The allocator `idsync serve` runs with (src/main.rs), so the numbers are
/// the shipped binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::Method;
use scim_load::{CLIENTS, Request, Target, creates, drive, lookups, user};
use serde_json::{Value, json};
use support::{Db, cluster::free_port, process::OwnedProcess, repo_root, scim::ScimFixture};

async fn ids_of(f: &ScimFixture, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut start = 1;
    while ids.len() < n {
        let r = f
            .get(&format!("/Users?attributes=id&sortBy=userName&startIndex={start}&count=1000&filter=userName%20sw%20%22{prefix}%22"))
            .await;
        let page = r.body["Resources"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        start += page.len();
        ids.extend(
            page.iter()
                .filter_map(|u| u["id"].as_str().map(str::to_string)),
        );
    }
    ids.truncate(n);
    ids
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The load average, to read the numbers by (other builds may share the cores).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn bench() {
    let scale = env_number("IDSYNC_BENCH_USERS", 100_000);
    println!(
        "SCIM benchmark: SQLite, {CLIENTS} concurrent keep-alive clients, {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let f = Arc::new(ScimFixture::start(Db::Sqlite, json!({})).await);
    let idsync = Target::of(&f);

    // 1. Creates.
    let commits = || {
        f.service
            .state
            .scim
            .store()
            .committed_batches()
            .unwrap_or(0)
    };
    let commits_before = commits();
    let mut created = creates(&idsync, "POST /Users (create)", 10_000).await;
    created.print();
    println!(
        "{:<48} {:>8.1} creates per commit (group commit)",
        "",
        created.count as f64 / (commits() - commits_before).max(1) as f64
    );

    // 2. Lookups by userName.
    let mut looked_up = lookups(
        &idsync,
        "GET /Users?filter=userName eq (lookup)",
        40_000,
        10_000,
    )
    .await;
    looked_up.print();

    // 2b. Pages of 100 users, as Okta and Entra list them (each user with
    // its groups).
    let mut paged = drive(
        &idsync,
        "GET /Users?startIndex=…&count=100 (page)",
        2_000,
        |i| {
            Request::new(
                Method::GET,
                format!("/Users?startIndex={}&count=100", 1 + (i * 100) % 9_900),
                None,
            )
        },
    )
    .await;
    paged.print();

    // 3. PATCH add-member on a 10k-member group.
    let members = ids_of(&f, "c", 10_000).await;
    let first: Vec<Value> = members
        .iter()
        .take(9_000)
        .map(|id| json!({"value": id}))
        .collect();
    let group = f
        .post(
            "/Groups",
            json!({"displayName": "Everyone", "members": first}),
        )
        .await
        .body["id"]
        .as_str()
        .expect("group created")
        .to_string();
    let rest = Arc::new(members[9_000..].to_vec());
    let (g, r) = (group.clone(), rest.clone());
    let mut run = drive(
        &idsync,
        "PATCH add-member, 9-10k group, no members back",
        500,
        move |i| {
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": r[i]}]}]});
            Request::new(
                Method::PATCH,
                format!("/Groups/{g}?excludedAttributes=members"),
                Some(body),
            )
        },
    )
    .await;
    run.print();
    let (g, r) = (group.clone(), rest.clone());
    let mut run = drive(
        &idsync,
        "PATCH add-member, 10k group, whole group back",
        200,
        move |i| {
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": r[500 + i]}]}]});
            Request::new(Method::PATCH, format!("/Groups/{g}"), Some(body))
        },
    )
    .await;
    run.print();

    // 4. Provisioning a directory from scratch, as an IdP's first sync does.
    let groups = scale / 10;
    let started = Instant::now();
    let mut users = drive(&idsync, &format!("provision: {scale} users"), scale, |i| {
        Request::new(Method::POST, "/Users", Some(user(&format!("p{i:07}"))))
    })
    .await;
    users.print();
    let ids = Arc::new(ids_of(&f, "p", scale).await);
    let mut run = drive(
        &idsync,
        &format!("provision: {groups} groups of 10"),
        groups,
        move |i| {
            let members: Vec<Value> = ids[i * 10..(i * 10 + 10).min(ids.len())]
                .iter()
                .map(|id| json!({"value": id}))
                .collect();
            Request::new(
                Method::POST,
                "/Groups",
                Some(json!({"displayName": format!("g{i}"), "members": members})),
            )
        },
    )
    .await;
    run.print();
    println!(
        "{:<48} {:>8.1} s (target < 60 s for 100k + 10k)",
        "provision: total",
        started.elapsed().as_secs_f64()
    );
    drop(idsync);
    match Arc::try_unwrap(f) {
        Ok(f) => f.stop().await,
        Err(_) => eprintln!("fixture still shared; leaving it to the process exit"),
    }
    println!("load average {}", load_average());

    // 5. Peers, through the same creates and lookups.
    if env_number("IDSYNC_BENCH_PEERS", 1) == 0 {
        return;
    }
    let peer_users = env_number("IDSYNC_BENCH_PEER_USERS", 10_000).max(1);
    let peer_lookups = env_number("IDSYNC_BENCH_PEER_LOOKUPS", 2_000);
    for kind in [PeerKind::Scim2Server, PeerKind::DjangoScim2] {
        let peer = match Peer::start(kind).await {
            Ok(peer) => peer,
            Err(why) => {
                println!("{}: not run: {why}", kind.name());
                continue;
            }
        };
        let mut c = creates(
            &peer.target,
            &format!("{}: POST /Users (create)", kind.name()),
            peer_users,
        )
        .await;
        c.print();
        let mut l = lookups(
            &peer.target,
            &format!("{}: userName eq (lookup)", kind.name()),
            peer_lookups,
            peer_users,
        )
        .await;
        l.print();
        println!(
            "idsync / {}: creates {:.1}x, lookups {:.1}x (load average {})",
            kind.name(),
            created.rate() / c.rate(),
            looked_up.rate() / l.rate(),
            load_average()
        );
        peer.stop().await;
    }
}

#[derive(Debug, Clone, Copy)]
enum PeerKind {
    Scim2Server,
    DjangoScim2,
}

impl PeerKind {
    fn name(self) -> &'static str {
        match self {
            PeerKind::Scim2Server => "scim2-server",
            PeerKind::DjangoScim2 => "django-scim2",
        }
    }
}

/// A peer SCIM server under gunicorn on 127.0.0.1, stopped on `stop` or drop.
struct Peer {
    process: OwnedProcess,
    target: Target,
    _dir: tempfile::TempDir,
}

impl Peer {
    async fn start(kind: PeerKind) -> Result<Self, String> {
        let venv = std::env::var_os("IDSYNC_PY_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/idsync/venv")
            });
        let python = venv.join("bin/python");
        let gunicorn = venv.join("bin/gunicorn");
        let module = match kind {
            PeerKind::Scim2Server => "scim2_server",
            PeerKind::DjangoScim2 => "django_scim",
        };
        let installed = std::process::Command::new(&python)
            .args(["-c", &format!("import {module}, gunicorn")])
            .output()
            .map_err(|e| format!("no Python at {}: {e}", python.display()))?;
        if !installed.status.success() {
            return Err(format!(
                "{module} or gunicorn is not installed in {} (scripts/test.sh installs \
                 tests/clients/requirements.txt there): {}",
                venv.display(),
                String::from_utf8_lossy(&installed.stderr).trim()
            ));
        }
        let peers = repo_root().join("benches/peers");
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let token = hex_token();
        let db = dir.path().join("peer.sqlite3");
        let envs = [
            ("BENCH_SCIM_TOKEN", token.clone()),
            ("BENCH_DJANGO_DB", db.display().to_string()),
        ];
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let (args, base): (Vec<&str>, String) = match kind {
            // In memory: one process, so every request sees the same storage.
            PeerKind::Scim2Server => (
                vec![
                    "--workers",
                    "1",
                    "--threads",
                    "16",
                    "scim2_server_app:application",
                ],
                format!("http://{bind}/v2"),
            ),
            PeerKind::DjangoScim2 => {
                let migrated = std::process::Command::new(&python)
                    .args(["manage.py", "migrate", "-v0"])
                    .current_dir(&peers)
                    .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
                    .output()
                    .map_err(|e| e.to_string())?;
                if !migrated.status.success() {
                    return Err(format!(
                        "manage.py migrate failed: {}",
                        String::from_utf8_lossy(&migrated.stderr).trim()
                    ));
                }
                (
                    vec![
                        "--workers",
                        "4",
                        "--threads",
                        "4",
                        "django_peer.wsgi:application",
                    ],
                    format!("http://{bind}/scim/v2"),
                )
            }
        };
        let mut argv = vec![
            "--bind",
            &bind,
            "--chdir",
            peers.to_str().ok_or("the repository path is not UTF-8")?,
            "--worker-class",
            "gthread",
            "--no-control-socket",
            "--log-level",
            "warning",
        ];
        argv.extend(args);
        let process = OwnedProcess::spawn(
            kind.name(),
            &gunicorn,
            &argv,
            &envs,
            &dir.path().join("gunicorn.log"),
        );
        let target = Target {
            base,
            token,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = target
                .http
                .get(format!("{}/ServiceProviderConfig", target.base))
                .bearer_auth(&target.token)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if Instant::now() > deadline || !process.is_running() {
                return Err(format!(
                    "gunicorn did not answer on {bind}:\n{}",
                    process.tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            process,
            target,
            _dir: dir,
        })
    }

    /// Stops gunicorn and waits until it is gone.
    async fn stop(self) {
        self.process.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.process.is_running() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hex_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("randomness for a bearer token");
    hex::encode(b)
}
