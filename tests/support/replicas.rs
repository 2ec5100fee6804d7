//! Several `idsync serve` replicas on one PostgreSQL behind a real load
//! balancer (HAProxy from Debian, round-robin, no stickiness, health-checked
//! on `/readyz`), all as processes that stop with the test binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    cluster::{ServiceProcess, free_port, wait_http_ok},
    process::OwnedProcess,
};

/// Debian's HAProxy (`scripts/install-deps.sh` installs it).
const HAPROXY: &str = "/usr/sbin/haproxy";

pub struct Replicas {
    pub dir: PathBuf,
    pub database: String,
    pub replicas: Vec<ServiceProcess>,
    /// The balancer's base URL: what an IdP or browser is given.
    pub url: String,
    pub admin_token: String,
    _balancer: OwnedProcess,
}

impl Replicas {
    /// `n` replicas on a fresh database of the test PostgreSQL, under `dir`.
    pub async fn start(dir: &Path, n: usize) -> Self {
        let database = super::postgres::shared().fresh_database().await;
        let admin_token = format!("e2e-admin-{}", idsync::token::random_id().expect("random"));
        let replicas: Vec<ServiceProcess> = (0..n)
            .map(|i| {
                let name = format!("replica-{i}");
                ServiceProcess::start_replica(
                    dir,
                    &name,
                    free_port(),
                    admin_token.clone(),
                    &database,
                )
            })
            .collect();
        let port = free_port();
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(port, &replicas)).expect("haproxy.cfg");
        let balancer = OwnedProcess::spawn(
            "haproxy",
            Path::new(HAPROXY),
            ["-db", "-f", &config.display().to_string()],
            &[],
            &dir.join("haproxy.log"),
        );
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(&format!("{url}/readyz"), Duration::from_secs(20), || {
            balancer.tail()
        });
        Self {
            dir: dir.to_path_buf(),
            database,
            replicas,
            url,
            admin_token,
            _balancer: balancer,
        }
    }

    /// The balancer's process id.
    pub fn balancer_pid(&self) -> Option<u32> {
        self._balancer.pid()
    }

    /// An admin client through the balancer.
    pub fn admin(&self) -> idsync::admin::AdminClient {
        idsync::admin::AdminClient::new(&self.url, &self.admin_token, None).expect("client")
    }
}

/// Round-robin per request (HAProxy balances each request of a kept-alive
/// client connection on its own), a replica out after two failed checks
/// half a second apart, back after one; a request whose connection a dead
/// replica refused (nothing of it sent) goes to another one.
fn haproxy_config(port: u16, replicas: &[ServiceProcess]) -> String {
    let servers: String = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| format!("  server r{i} 127.0.0.1:{} check\n", r.port()))
        .collect();
    format!(
        "global\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  retries 2\n  option redispatch 1\n\
         frontend scim\n  bind 127.0.0.1:{port}\n  default_backend idsync\n\
         backend idsync\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n\
         \x20 default-server inter 500ms fall 2 rise 1\n{servers}"
    )
}
