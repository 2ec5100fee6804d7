//! A real Kubernetes control plane (tests/e2e/control-plane.sh), and the idsync
//! stack on top of it: `idsync serve` and `idsync operator` as real processes.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use kube::{Client, Config, config::KubeConfigOptions, config::Kubeconfig};

use super::{process::OwnedProcess, repo_root};

pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A clean working directory `name` under the target directory. A previous run's
/// control plane there may still be stopping (its watchdog polls once a second),
/// so it is stopped before the directory is wiped.
pub fn fresh_dir(tmp: &str, name: &str) -> PathBuf {
    let dir = Path::new(tmp).join(name);
    let _ = Command::new(repo_root().join("tests/e2e/control-plane.sh"))
        .arg("stop")
        .arg(dir.join("cluster"))
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// A control plane this test binary started; it stops when the binary exits.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    pub fn start(dir: &Path) -> Self {
        let script = repo_root().join("tests/e2e/control-plane.sh");
        let out = Command::new(&script)
            .arg("start")
            .arg(dir)
            .env(
                "IDSYNC_CONTROL_PLANE_OWNER_PID",
                std::process::id().to_string(),
            )
            .output()
            .expect("run control-plane.sh");
        assert!(
            out.status.success(),
            "control-plane.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let kubeconfig = PathBuf::from(stdout.lines().last().expect("kubeconfig path").trim());
        Self {
            dir: dir.to_path_buf(),
            kubeconfig,
        }
    }

    pub async fn client(&self) -> Client {
        install_crypto();
        let kc = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("client config");
        Client::try_from(config).expect("client")
    }

    /// kubectl from the same build, pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let bin = std::env::var("IDSYNC_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/idsync")
            })
            .join("k8s-v1.36.3/bin/kubectl");
        let mut cmd = Command::new(bin);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    pub fn kubectl_run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use std::io::Write;
        let mut cmd = self.kubectl();
        cmd.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Installs `crds/` and waits until every CRD is Established.
    pub fn install_crds(&self) {
        let crds = repo_root().join("crds");
        let (ok, out, err) = self.kubectl_run(&["apply", "-f", &crds.display().to_string()], None);
        assert!(ok, "installing crds/: {out}{err}");
        let (ok, out, err) = self.kubectl_run(
            &[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ],
            None,
        );
        assert!(ok, "CRDs not established: {out}{err}");
    }

    /// Waits until `kind` `name` (or `--all`) in `ns` is Ready; on timeout, fails
    /// with the objects' YAML (their conditions say why).
    pub fn wait_ready(&self, kind: &str, ns: &str, name: &str, timeout: &str) {
        let (ok, out, err) = self.kubectl_run(
            &[
                "wait",
                "--for=condition=Ready",
                kind,
                name,
                "-n",
                ns,
                &format!("--timeout={timeout}"),
            ],
            None,
        );
        assert!(
            ok,
            "{kind}/{name} in {ns} not Ready: {out}{err}\n{}",
            self.kubectl_run(&["get", kind, name, "-n", ns, "-o", "yaml"], None)
                .1
        );
    }

    pub fn apply(&self, yaml: &str) {
        let (ok, out, err) = self.kubectl_run(&["apply", "-f", "-"], Some(yaml));
        assert!(ok, "kubectl apply failed: {out}{err}");
    }
}

/// `idsync serve` on a SQLite file (or any database), as a real process.
pub struct ServiceProcess {
    pub url: String,
    pub admin_token: String,
    pub process: OwnedProcess,
}

impl ServiceProcess {
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let token = format!("e2e-admin-{}", idsync::token::random_id().unwrap());
        Self::start_on(dir, port, token)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the service URL ends with its port")
    }

    /// Kills the service and waits until its port is closed.
    pub fn kill(self) {
        self.process.signal("-KILL");
        let ready = format!("{}/readyz", self.url);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &ready])
                .status()
                .is_ok_and(|s| s.success())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the service on `port` with `token` (again, after [`Self::kill`]:
    /// the same database under `dir`).
    pub fn start_on(dir: &Path, port: u16, token: String) -> Self {
        let database = format!("sqlite://{}", dir.join("idsync.db").display());
        Self::start_replica(dir, "serve", port, token, &database)
    }

    /// A replica called `name` (its log is `<name>.log` under `dir`) on
    /// `database`, beside others on the same one.
    pub fn start_replica(dir: &Path, name: &str, port: u16, token: String, database: &str) -> Self {
        Self::start_replica_with(dir, (name, port), token, database, &[])
    }

    /// The same with `extra` flags (a `--public-url` the replicas share).
    pub fn start_replica_with(
        dir: &Path,
        (name, port): (&str, u16),
        token: String,
        database: &str,
        extra: &[String],
    ) -> Self {
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, &token).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let mut args = vec![
            "serve".to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--database-url".into(),
            database.to_string(),
            "--admin-token-file".into(),
            token_file.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let process = OwnedProcess::spawn(
            "idsync serve",
            Path::new(env!("CARGO_BIN_EXE_idsync")),
            args,
            &[],
            &dir.join(format!("{name}.log")),
        );
        wait_http_ok(&format!("{url}/readyz"), Duration::from_secs(30), || {
            process.tail()
        });
        Self {
            url,
            admin_token: token,
            process,
        }
    }

    pub fn admin(&self) -> idsync::admin::AdminClient {
        idsync::admin::AdminClient::new(&self.url, &self.admin_token, None).unwrap()
    }
}

/// `idsync operator` against a control plane, as a real process.
/// The control plane with idsync's CRDs, the identity service, and an
/// operator resyncing every `resync` (holding its lease in `default`), all
/// under `dir`.
pub fn start_stack(dir: &Path, resync: &str) -> (ControlPlane, ServiceProcess, OperatorProcess) {
    let cp = ControlPlane::start(&dir.join("cluster"));
    cp.install_crds();
    let service = ServiceProcess::start(dir);
    let operator = OperatorProcess::start(
        &cp,
        dir,
        "operator",
        resync,
        &["--lease-namespace", "default"],
    );
    (cp, service, operator)
}

pub struct OperatorProcess {
    pub metrics_url: String,
    pub process: OwnedProcess,
}

impl OperatorProcess {
    pub fn start(cp: &ControlPlane, dir: &Path, name: &str, resync: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let mut args = vec![
            "operator".to_string(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{port}"),
            "--resync".into(),
            resync.into(),
            "--identity".into(),
            name.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = OwnedProcess::spawn(
            name,
            Path::new(env!("CARGO_BIN_EXE_idsync")),
            args,
            &[
                ("KUBECONFIG", cp.kubeconfig.display().to_string()),
                ("RUST_LOG", "info,kube=warn".into()),
            ],
            &dir.join(format!("{name}.log")),
        );
        let metrics_url = format!("http://127.0.0.1:{port}/metrics");
        wait_http_ok(&metrics_url, Duration::from_secs(30), || process.tail());
        Self {
            metrics_url,
            process,
        }
    }

    /// The value of one metric series (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(&self.metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Sum of every series of a metric name whose labels contain all of `labels`.
    pub async fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        metric_sum_at(&self.metrics_url, name, labels).await
    }
}

/// Sum of every series of metric `name` at `metrics_url` whose labels
/// contain all of `labels` (0 when the process does not answer).
pub async fn metric_sum_at(metrics_url: &str, name: &str, labels: &[&str]) -> f64 {
    let Ok(r) = reqwest::get(metrics_url).await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn wait_http_ok(url: &str, timeout: Duration, tail: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = std::process::Command::new("curl")
            .args(["-sf", "-o", "/dev/null", url])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer in {timeout:?}:\n{}",
            tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A real OpenID Provider (oidc-provider from npm) on 127.0.0.1.
pub struct OidcProvider {
    pub issuer: String,
    pub process: OwnedProcess,
}

impl OidcProvider {
    pub fn start(dir: &Path, clients: serde_json::Value, accounts: serde_json::Value) -> Self {
        let idp_dir = repo_root().join("tests/idp");
        assert!(
            idp_dir.join("node_modules/oidc-provider").exists(),
            "tests/idp/node_modules is missing: run `npm ci --prefix tests/idp` (scripts/test.sh does)"
        );
        let port = free_port();
        let process = OwnedProcess::spawn(
            "oidc-provider",
            Path::new("node"),
            [
                idp_dir.join("oidc-provider.mjs").display().to_string(),
                port.to_string(),
            ],
            &[
                ("IDP_CLIENTS", clients.to_string()),
                ("IDP_ACCOUNTS", accounts.to_string()),
                ("IDSYNC_OWNER_PID", std::process::id().to_string()),
            ],
            &dir.join("oidc-provider.log"),
        );
        let issuer = format!("http://127.0.0.1:{port}");
        wait_http_ok(
            &format!("{issuer}/.well-known/openid-configuration"),
            Duration::from_secs(30),
            || process.tail(),
        );
        Self { issuer, process }
    }
}

/// The OIDC clients the examples name, as the local OpenID Provider registers them.
pub fn example_oidc_clients() -> serde_json::Value {
    serde_json::json!([
        {"client_id": "octomil-idsync", "client_secret": "okta-example-secret", "redirect_uris": ["http://127.0.0.1/cb"]},
        {"client_id": "brightpath-idsync", "client_secret": "google-example-secret", "redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "client_secret_post"}
    ])
}

/// The examples as a platform team would apply them, with the admin token and
/// service URL of this stack, and the OIDC issuers pointed at the local IdP (the
/// machine has no internet to reach Okta or Google).
pub fn examples_yaml(service: &ServiceProcess, oidc: &OidcProvider) -> String {
    let mut yaml = String::new();
    for file in [
        "00-identity-service.yaml",
        "okta-oidc.yaml",
        "entra-saml.yaml",
        "google-oidc.yaml",
        "tecton-okta.yaml",
    ] {
        yaml.push_str(&std::fs::read_to_string(repo_root().join("examples").join(file)).unwrap());
        yaml.push_str("\n---\n");
    }
    yaml.replace(
        "REPLACE-WITH-THE-ADMIN-TOKEN-OF-YOUR-IDENTITY-SERVICE",
        &service.admin_token,
    )
    .replace("http://127.0.0.1:8080", &service.url)
    .replace("https://octomil.okta.com", &oidc.issuer)
    .replace("https://tecton.okta.com", &oidc.issuer)
    .replace("https://accounts.google.com", &oidc.issuer)
    .replace("0oa8f5j3ecb5w3dF35d7", "octomil-idsync")
    .replace(
        "1234567890-brightpath.apps.googleusercontent.com",
        "brightpath-idsync",
    )
}

/// A namespace `ns` with an IdentityService (and its admin token Secret) for
/// `service`, and a Workspace `main` with id `workspace_id`.
pub fn tenant_yaml(service: &ServiceProcess, ns: &str, workspace_id: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: idsync-admin, namespace: {ns}}}
stringData: {{token: {token}}}
---
apiVersion: idsync.dev/v1alpha1
kind: IdentityService
metadata: {{name: idsync, namespace: {ns}}}
spec:
  url: {url}
  adminTokenSecretRef: {{name: idsync-admin, key: token}}
---
apiVersion: idsync.dev/v1alpha1
kind: Workspace
metadata: {{name: main, namespace: {ns}}}
spec:
  serviceRef: {{name: idsync}}
  workspaceId: {workspace_id}
  domains: [{workspace_id}.example.com]
"#,
        token = service.admin_token,
        url = service.url,
    )
}

/// One key of a Secret, as text (None when the Secret or the key is missing).
pub async fn secret_value(client: &Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), ns);
    let secret = api.get_opt(name).await.ok()??;
    secret
        .data?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

/// The status a SCIM client gets with `token` at a SCIM base URL (0 when the
/// service does not answer).
pub async fn scim_status(base_url: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base_url}/ServiceProviderConfig"))
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}
