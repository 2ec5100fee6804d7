//! The Helm chart (charts/idsync) as a platform team uses it: `helm lint` and
//! `helm template` over the values files, the values schema's refusals, the
//! alerts under `promtool`, and `helm install` into a real control plane where
//! the operator runs with exactly the chart's RBAC (a ServiceAccount token from
//! the TokenRequest API) and the examples become Ready.
//!
//! helm, promtool and the Prometheus Operator's CRDs come from
//! tests/e2e/tools.sh (built with `go install`, cached like the control plane);
//! scripts/test.sh builds them up front. A missing tool fails these tests with
//! the command that provides it; nothing is skipped.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::Duration,
};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, Config, config::KubeConfigOptions, config::Kubeconfig};
use serde_json::{Value, json};
use support::cluster::{ControlPlane, OidcProvider, OperatorProcess, ServiceProcess, eventually};
use support::repo_root;

const RELEASE: &str = "idsync";
const NAMESPACE: &str = "idsync-system";

fn chart() -> PathBuf {
    repo_root().join("charts/idsync")
}

/// Runs tests/e2e/tools.sh with `what` (bin or crds) and returns the directory.
fn tools(what: &str) -> PathBuf {
    static DIRS: OnceLock<std::sync::Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let dirs = DIRS.get_or_init(Default::default);
    let mut dirs = dirs.lock().unwrap_or_else(|e| e.into_inner());
    dirs.entry(what.to_string())
        .or_insert_with(|| {
            let out = Command::new(repo_root().join("tests/e2e/tools.sh"))
                .arg(what)
                .output()
                .expect("run tests/e2e/tools.sh");
            assert!(
                out.status.success(),
                "tests/e2e/tools.sh {what} failed (it builds helm and promtool with `go install`; run it by hand to see why):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

fn helm() -> Command {
    let mut cmd = Command::new(tools("bin").join("helm"));
    // Helm's own state (repositories, cache) stays out of the user's home.
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

fn promtool() -> Command {
    Command::new(tools("bin").join("promtool"))
}

fn run(mut cmd: Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `helm template` of release "idsync" in "idsync-system" with `args`; the
/// rendered objects. `monitoring` says whether the cluster serves
/// monitoring.coreos.com/v1 (as `--api-versions` tells helm).
fn template(args: &[&str], monitoring: bool) -> Vec<Value> {
    let mut cmd = helm();
    cmd.args(["template", RELEASE])
        .arg(chart())
        .args(["--namespace", NAMESPACE])
        .args(args);
    if monitoring {
        cmd.args(["--api-versions", "monitoring.coreos.com/v1"]);
    }
    let out = run(cmd);
    assert!(
        out.status.success(),
        "helm template {args:?}:\n{}",
        text(&out)
    );
    parse_objects(&String::from_utf8_lossy(&out.stdout))
}

fn parse_objects(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("helm's output is YAML")
        .into_iter()
        .filter(|v| v.is_object())
        .collect()
}

fn kinds(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for o in objects {
        *counts
            .entry(o["kind"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    counts
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn values_file(name: &str) -> String {
    chart().join("ci").join(name).display().to_string()
}

#[test]
fn chart_version_and_app_version_follow_the_crate() {
    let chart_yaml: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap())
            .unwrap();
    let crate_version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        chart_yaml["version"], crate_version,
        "Chart.yaml version must equal Cargo.toml's version"
    );
    assert_eq!(
        chart_yaml["appVersion"], crate_version,
        "Chart.yaml appVersion must equal Cargo.toml's version"
    );
}

#[test]
fn every_value_has_a_comment() {
    // Every `key: value` line needs a comment right above it, or must sit inside
    // a block whose key has one (e.g. `resources:` describes its requests and
    // limits). Keys that only open a block of commented values need none.
    let values = std::fs::read_to_string(chart().join("values.yaml")).unwrap();
    let mut parents: Vec<(usize, bool)> = Vec::new(); // (indent, commented)
    let mut previous_is_comment = false;
    let mut uncommented = Vec::new();
    for (i, line) in values.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            previous_is_comment = false;
            continue;
        }
        if trimmed.starts_with('#') {
            previous_is_comment = true;
            continue;
        }
        let indent = line.len() - trimmed.len();
        while parents.last().is_some_and(|(d, _)| *d >= indent) {
            parents.pop();
        }
        let described = previous_is_comment || parents.iter().any(|(_, c)| *c);
        previous_is_comment = false;
        let Some((key, rest)) = trimmed.split_once(':') else {
            continue;
        };
        if trimmed.starts_with("- ") {
            continue;
        }
        if rest.trim().is_empty() {
            parents.push((indent, described));
        } else if !described {
            uncommented.push(format!("line {}: {key}", i + 1));
        }
    }
    assert!(
        uncommented.is_empty(),
        "values.yaml values without a comment: {uncommented:?}"
    );
}

#[test]
fn lint_and_template_pass_for_every_values_file() {
    for values in [
        None,
        Some("namespace-scoped-values.yaml"),
        Some("postgres-values.yaml"),
        Some("monitoring-off-values.yaml"),
    ] {
        let mut cmd = helm();
        cmd.args(["lint", "--strict", "--namespace", NAMESPACE])
            .arg(chart());
        if let Some(v) = values {
            cmd.args(["--values", &values_file(v)]);
        }
        let out = run(cmd);
        assert!(
            out.status.success(),
            "helm lint with {values:?}:\n{}",
            text(&out)
        );
    }

    // Defaults, on a cluster with the Prometheus Operator.
    let all = template(&[], true);
    let k = kinds(&all);
    for (kind, n) in [
        ("CustomResourceDefinition", idsync::crdgen::all().len()),
        ("ClusterIdentityService", 1),
        ("Deployment", 2),
        ("ServiceMonitor", 2),
        ("PrometheusRule", 1),
        ("PodDisruptionBudget", 1),
        ("PersistentVolumeClaim", 1),
        ("ClusterRole", 2),
        ("ClusterRoleBinding", 2),
        ("Role", 1),
        ("RoleBinding", 1),
    ] {
        assert_eq!(k.get(kind), Some(&n), "{kind} count with defaults: {k:?}");
    }
    for crd in all
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{crd}"
        );
    }
    let operator = find(&all, "Deployment", "idsync-operator");
    assert_eq!(operator["spec"]["replicas"], 2);
    for deployment in all.iter().filter(|o| o["kind"] == "Deployment") {
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{c}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{c}");
            assert!(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "{c}");
            assert!(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "{c}");
            assert!(c["resources"]["requests"].is_object(), "{c}");
        }
    }
    let service = find(&all, "Deployment", "idsync-service");
    assert_eq!(service["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(
        service["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        45
    );
    // The dashboard is valid JSON and carries the sidecar's label.
    let dashboard = find(&all, "ConfigMap", "idsync-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let _: Value = serde_json::from_str(dashboard["data"]["idsync.json"].as_str().unwrap())
        .expect("the dashboard is JSON");

    // Without the monitoring API (and without forceRender), no monitoring objects.
    let plain = kinds(&template(&[], false));
    assert!(!plain.contains_key("ServiceMonitor") && !plain.contains_key("PrometheusRule"));
    let forced = kinds(&template(&["--set", "monitoring.forceRender=true"], false));
    assert_eq!(forced.get("PrometheusRule"), Some(&1));

    // Namespace-scoped: Roles in team-a and team-b, no cluster-wide access but
    // reading idsync's own CRDs.
    let scoped = template(
        &["--values", &values_file("namespace-scoped-values.yaml")],
        true,
    );
    let roles: BTreeSet<String> = scoped
        .iter()
        .filter(|o| o["kind"] == "Role")
        .map(|o| {
            format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from([
            "idsync-system/idsync-operator-lease".to_string(),
            "team-a/idsync-operator".to_string(),
            "team-b/idsync-operator".to_string(),
        ])
    );
    let cluster_roles: Vec<&Value> = scoped
        .iter()
        .filter(|o| o["kind"] == "ClusterRole")
        .collect();
    assert_eq!(cluster_roles.len(), 1, "{cluster_roles:?}");
    assert_eq!(
        cluster_roles[0]["rules"],
        json!([
            {
                "apiGroups": ["apiextensions.k8s.io"],
                "resources": ["customresourcedefinitions"],
                "resourceNames": ["identityservices.idsync.dev", "clusteridentityservices.idsync.dev", "workspaces.idsync.dev", "ssoconnections.idsync.dev", "scimtokens.idsync.dev", "rolemappings.idsync.dev", "roleapprovals.idsync.dev", "webhooks.idsync.dev"],
                "verbs": ["get"],
            },
            // The cluster-scoped kind, and namespace labels for its selector:
            // no Secret access outside the release namespace.
            {"apiGroups": ["idsync.dev"], "resources": ["clusteridentityservices"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["idsync.dev"], "resources": ["clusteridentityservices/status"], "verbs": ["patch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
        ])
    );
    let env = &find(&scoped, "Deployment", "idsync-operator")["spec"]["template"]["spec"]["containers"]
        [0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "IDSYNC_WATCH_NAMESPACES" && e["value"] == "team-a,team-b"),
        "{env}"
    );

    // PostgreSQL with 3 replicas: the URL from the Secret, no volume claim.
    let pg = template(&["--values", &values_file("postgres-values.yaml")], true);
    let service = find(&pg, "Deployment", "idsync-service");
    assert_eq!(service["spec"]["replicas"], 3);
    assert!(
        service["spec"]["strategy"].is_null(),
        "rolling updates with postgres"
    );
    let env = &service["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "IDSYNC_DATABASE_URL"
                && e["valueFrom"]["secretKeyRef"]["name"] == "idsync-database"),
        "{env}"
    );
    assert!(!kinds(&pg).contains_key("PersistentVolumeClaim"));
    assert_eq!(kinds(&pg).get("Ingress"), Some(&1));

    // Monitoring off, even where the API exists.
    let off = kinds(&template(
        &["--values", &values_file("monitoring-off-values.yaml")],
        true,
    ));
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(
            !off.contains_key(kind),
            "{kind} rendered with monitoring off"
        );
    }
}

#[test]
fn the_values_schema_refuses_wrong_values_with_a_readable_message() {
    for (args, expect) in [
        (
            vec!["--set", "identityService.store=mysql"],
            "at '/identityService/store': value must be one of 'sqlite', 'postgres'",
        ),
        (
            vec!["--set", "operator.replicas=-1"],
            "at '/operator/replicas': minimum: got -1, want 0",
        ),
        (
            vec!["--set", "identityService.replicas=3"],
            "at '/identityService/store': value must be 'postgres'",
        ),
        (
            vec!["--set", "identityService.store=postgres"],
            "at '/identityService/postgres/existingSecret': minLength: got 0, want 1",
        ),
        (
            vec!["--set", "image.pullPolicy=Sometimes"],
            "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            vec!["--set", "watchNamespaces[0]=Team_A"],
            "at '/watchNamespaces/0'",
        ),
        (
            vec!["--set", "operator.replica=3"],
            "additional properties 'replica' not allowed",
        ),
    ] {
        let mut cmd = helm();
        cmd.args(["template", RELEASE]).arg(chart()).args(&args);
        let out = run(cmd);
        let said = text(&out);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            said.contains(expect),
            "{args:?}: expected `{expect}` in:\n{said}"
        );
    }
    // The same values pass once consistent.
    let ok = template(
        &[
            "--set",
            "identityService.store=postgres",
            "--set",
            "identityService.replicas=3",
            "--set",
            "identityService.postgres.existingSecret=db",
        ],
        false,
    );
    assert_eq!(
        find(&ok, "Deployment", "idsync-service")["spec"]["replicas"],
        3
    );
}

/// The PrometheusRule's `spec` as a Prometheus rule file.
fn rules_file(dir: &Path) -> PathBuf {
    let objects = template(&[], true);
    let rule = find(&objects, "PrometheusRule", RELEASE);
    let path = dir.join("rules.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&rule["spec"]).unwrap()).unwrap();
    path
}

#[test]
fn alerts_pass_promtool_check_and_fire_only_when_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(dir.path());
    let mut cmd = promtool();
    cmd.args(["check", "rules"]).arg(&rules);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "promtool check rules:\n{}",
        text(&out)
    );

    // Every alert the chart defines has a unit test group, a severity, a
    // summary, a description and a runbook that exists in docs/runbooks/.
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(&rules).unwrap()).unwrap();
    let tests =
        std::fs::read_to_string(repo_root().join("tests/data/helm/alerts-test.yaml")).unwrap();
    let mut alerts = BTreeSet::new();
    for group in spec["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_string();
            assert!(
                ["warning", "critical"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                "{name} has no severity"
            );
            for key in ["summary", "description", "runbook_url"] {
                assert!(rule["annotations"][key].is_string(), "{name} has no {key}");
            }
            let runbook = rule["annotations"]["runbook_url"].as_str().unwrap();
            let page = runbook.rsplit('/').next().unwrap();
            assert!(
                repo_root().join("docs/runbooks").join(page).exists(),
                "{name}: runbook docs/runbooks/{page} is missing"
            );
            assert!(
                tests.contains(&format!("alertname: {name}\n")),
                "{name} has no promtool unit test in tests/data/helm/alerts-test.yaml"
            );
            alerts.insert(name);
        }
    }
    assert_eq!(alerts.len(), 16, "{alerts:?}");

    std::fs::copy(
        repo_root().join("tests/data/helm/alerts-test.yaml"),
        dir.path().join("alerts-test.yaml"),
    )
    .unwrap();
    let mut cmd = promtool();
    cmd.current_dir(dir.path())
        .args(["test", "rules", "alerts-test.yaml"]);
    let out = run(cmd);
    assert!(out.status.success(), "promtool test rules:\n{}", text(&out));
}

/// Metric names a PromQL expression uses (idsync's own and `up`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b(idsync_[a-z0-9_]+)\b|\b(up)\s*\{").unwrap();
    re.captures_iter(expr)
        .filter_map(|c| c.get(1).or_else(|| c.get(2)))
        .map(|m| m.as_str().to_string())
        .collect()
}

/// Metric families in a /metrics page: `# TYPE` names and every sample's
/// name, so a histogram's base name and its _bucket/_sum/_count all count.
fn exposed(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            names.extend(rest.split(' ').next().map(str::to_string));
        } else if !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

async fn client_for(kubeconfig: &Path) -> Client {
    support::cluster::install_crypto();
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

/// A kubeconfig that authenticates as ServiceAccount `sa` in `namespace` with a
/// token from the TokenRequest API (`kubectl create token`), nothing else.
fn service_account_kubeconfig(cp: &ControlPlane, namespace: &str, sa: &str) -> PathBuf {
    let (ok, token, err) = cp.kubectl_run(
        &["create", "token", sa, "-n", namespace, "--duration=2h"],
        None,
    );
    assert!(ok, "kubectl create token {sa}: {err}");
    let admin = std::fs::read_to_string(cp.dir.join("pki/admin.token")).unwrap();
    let config = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    assert!(config.contains(admin.trim()));
    let config = config
        .replace(admin.trim(), token.trim())
        .replace("namespace: default", &format!("namespace: {namespace}"))
        .replace("name: admin", &format!("name: {sa}"))
        .replace("user: admin", &format!("user: {sa}"));
    let path = cp.dir.join(format!("kubeconfig-{namespace}-{sa}"));
    std::fs::write(&path, config).unwrap();
    path
}

fn kubectl_as(cp: &ControlPlane, kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = cp.kubectl();
    cmd.env("KUBECONFIG", kubeconfig).args(args);
    let out = run(cmd);
    (out.status.success(), text(&out))
}

/// Installs the chart into `namespace`, created with the "restricted" Pod
/// Security Standard enforced and warned about: the apiserver's Pod Security
/// admission then warns on every Deployment whose pods would be refused, and
/// helm prints those warnings.
fn helm_install(cp: &ControlPlane, release: &str, namespace: &str, args: &[&str]) -> Vec<Value> {
    cp.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n  labels:\n    \
         pod-security.kubernetes.io/enforce: restricted\n    \
         pod-security.kubernetes.io/warn: restricted\n"
    ));
    let install = |verb: &[&str]| {
        let mut cmd = helm();
        cmd.env("KUBECONFIG", &cp.kubeconfig)
            .args(verb)
            .arg(release)
            .arg(chart())
            .args(["--namespace", namespace])
            .args(args);
        run(cmd)
    };
    let mut out = install(&["install"]);
    // Known race (chart README, "Installing"): the post-install hook that
    // creates the ClusterIdentityService can run before the apiserver serves
    // the CRDs the same release just created. The README's remedy is to run
    // the install again as an upgrade; anything else still fails the test.
    if !out.status.success() && text(&out).contains("ensure CRDs are installed first") {
        std::thread::sleep(std::time::Duration::from_secs(2));
        out = install(&["upgrade", "--install"]);
    }
    assert!(
        out.status.success(),
        "helm install {release}:\n{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("PodSecurity"),
        "pods of {release} would violate the restricted Pod Security Standard:\n{}",
        text(&out)
    );
    let mut cmd = helm();
    cmd.env("KUBECONFIG", &cp.kubeconfig).args([
        "get",
        "manifest",
        release,
        "--namespace",
        namespace,
    ]);
    let out = run(cmd);
    assert!(out.status.success(), "helm get manifest:\n{}", text(&out));
    parse_objects(&String::from_utf8_lossy(&out.stdout))
}

/// Every object of a release exists in the cluster (the apiserver accepted it).
fn assert_all_exist(cp: &ControlPlane, objects: &[Value], default_namespace: &str) {
    for o in objects {
        let kind = o["kind"].as_str().unwrap();
        let api_version = o["apiVersion"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        let resource = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let mut args = vec![
            "get".to_string(),
            resource.clone(),
            name.to_string(),
            "-o".into(),
            "name".into(),
        ];
        if ![
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ]
        .contains(&kind)
        {
            let ns = o["metadata"]["namespace"]
                .as_str()
                .unwrap_or(default_namespace);
            args.extend(["-n".to_string(), ns.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = cp.kubectl_run(&args, None);
        assert!(ok, "{resource} {name} not in the cluster: {out}{err}");
    }
}

async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Drives the traffic after which every metric family the alerts and the
/// dashboard use has a series: a SCIM user created and deactivated, a refused
/// SCIM token, a failed sign-in.
async fn drive_traffic(client: &Client, service: &ServiceProcess) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "idsync-examples");
    let secret = secrets.get("okta-scim-token").await.unwrap();
    let data = secret.data.unwrap();
    let token = String::from_utf8_lossy(&data["token"].0).into_owned();
    let base = String::from_utf8_lossy(&data["scimBaseUrl"].0).into_owned();
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/Users"))
        .bearer_auth(&token)
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "alice@octomil.com",
            "active": true,
            "emails": [{"value": "alice@octomil.com", "primary": true}],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    let deleted = http
        .delete(format!("{base}/Users/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let refused = http
        .get(format!("{base}/Users"))
        .bearer_auth("idsync_scim_not_a_token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // A callback with a state no browser was given: a failed OIDC sign-in.
    let failed = http
        .get(format!(
            "{}/sso/octomil/oidc/okta/callback?state=forged&code=x",
            service.url
        ))
        .send()
        .await
        .unwrap();
    assert!(failed.status().is_client_error(), "{}", failed.status());
}

#[tokio::test]
async fn installs_into_a_cluster_and_the_operator_works_with_only_its_rbac() {
    let dir = support::cluster::fresh_dir(env!("CARGO_TARGET_TMPDIR"), "helm-chart");
    let cp = ControlPlane::start(&dir.join("cluster"));

    // The Prometheus Operator's real ServiceMonitor and PrometheusRule CRDs, so
    // the chart detects the API and the apiserver checks its objects' schemas.
    let crds = tools("crds");
    let (ok, out, err) = cp.kubectl_run(
        &["apply", "--server-side", "-f", &crds.display().to_string()],
        None,
    );
    assert!(ok, "prometheus-operator CRDs: {out}{err}");
    // Right after the apply a CRD may have no status yet, which `kubectl
    // wait` reports as an error rather than waiting on: ask again.
    let wait = [
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        "--timeout=60s",
    ];
    let mut waited = cp.kubectl_run(&wait, None);
    for _ in 0..20 {
        if waited.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        waited = cp.kubectl_run(&wait, None);
    }
    let (ok, out, err) = waited;
    assert!(ok, "{out}{err}");

    // The identity service runs as a host process; the chart's
    // ClusterIdentityService points at it.
    let service_port = support::cluster::free_port();
    let service_url = format!("clusterIdentityService.url=http://127.0.0.1:{service_port}");
    let objects = helm_install(&cp, RELEASE, NAMESPACE, &["--set", &service_url]);
    let installed = kinds(&objects);
    for kind in [
        "CustomResourceDefinition",
        "ServiceMonitor",
        "PrometheusRule",
        "Deployment",
        "ClusterRole",
        "PodDisruptionBudget",
        "ConfigMap",
    ] {
        assert!(
            installed.contains_key(kind),
            "{kind} not installed: {installed:?}"
        );
    }
    let crd_names: Vec<String> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| format!("crd/{}", o["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(crd_names.len(), idsync::crdgen::all().len());
    let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    args.extend(crd_names.iter().map(String::as_str));
    let (ok, out, err) = cp.kubectl_run(&args, None);
    assert!(ok, "idsync CRDs not Established: {out}{err}");
    assert_all_exist(&cp, &objects, NAMESPACE);

    // An upgrade keeps the generated admin token (the operator's IdentityService
    // Secrets hold a copy of it).
    let admin_token = || {
        cp.kubectl_run(
            &[
                "get",
                "secret",
                "idsync-admin-token",
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.data.token}",
            ],
            None,
        )
        .1
    };
    let before = admin_token();
    assert_eq!(before.len(), 64, "a 48-character token, base64: {before}");
    let mut cmd = helm();
    cmd.env("KUBECONFIG", &cp.kubeconfig)
        .args(["upgrade", RELEASE])
        .arg(chart())
        .args(["--namespace", NAMESPACE, "--set", "operator.resync=1m"])
        .args(["--set", &service_url]);
    let out = run(cmd);
    assert!(out.status.success(), "helm upgrade:\n{}", text(&out));
    assert_eq!(
        admin_token(),
        before,
        "helm upgrade replaced the admin token"
    );

    // The operator as the chart's ServiceAccount, with nothing but its RBAC.
    let sa_config = service_account_kubeconfig(&cp, NAMESPACE, "idsync-operator");
    let as_operator = ControlPlane {
        dir: cp.dir.clone(),
        kubeconfig: sa_config.clone(),
    };
    for (verb, resource, allowed) in [
        ("list", "secrets", "yes"),
        ("delete", "secrets", "no"),
        ("patch", "scimtokens.idsync.dev --subresource=status", "yes"),
        ("update", "workspaces.idsync.dev", "no"),
        ("list", "pods", "no"),
        ("create", "deployments.apps", "no"),
    ] {
        let mut args = vec!["auth", "can-i", verb, "--all-namespaces"];
        args.extend(resource.split(' '));
        let (_, said) = kubectl_as(&cp, &sa_config, &args);
        assert_eq!(
            said.lines().next().unwrap_or(""),
            allowed,
            "can-i {verb} {resource}: {said}"
        );
    }

    // On the chart's generated admin token: the ClusterIdentityService uses it.
    let token = {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(before.trim())
            .expect("base64");
        String::from_utf8(decoded).expect("a text token")
    };
    let service = ServiceProcess::start_on(&dir, service_port, token);
    let clients = support::cluster::example_oidc_clients();
    let oidc = OidcProvider::start(&dir, clients, json!({}));
    let operator = OperatorProcess::start(
        &as_operator,
        &dir,
        "operator",
        "5s",
        &[
            "--lease-namespace",
            NAMESPACE,
            "--lease-name",
            "idsync-operator",
            "--operator-namespace",
            NAMESPACE,
        ],
    );
    let examples = support::cluster::examples_yaml(&service, &oidc);
    cp.apply(&examples);
    for kind in [
        "identityservices",
        "workspaces",
        "ssoconnections",
        "scimtokens",
        "rolemappings",
    ] {
        cp.wait_ready(kind, "idsync-examples", "--all", "120s");
    }
    // A tenant namespace, as the chart README says: labelled for the chart's
    // ClusterIdentityService, a Workspace naming it, no admin token there.
    cp.apply(
        r#"apiVersion: v1
kind: Namespace
metadata: {name: tenant, labels: {idsync.dev/tenant: enabled}}
---
apiVersion: idsync.dev/v1alpha1
kind: Workspace
metadata: {name: main, namespace: tenant}
spec:
  serviceRef: {kind: ClusterIdentityService, name: idsync}
  domains: [tenant.example.com]
"#,
    );
    let (ok, out, err) = cp.kubectl_run(
        &[
            "wait",
            "--for=condition=Ready",
            "clusteridentityservice/idsync",
            "--timeout=90s",
        ],
        None,
    );
    assert!(ok, "the chart's ClusterIdentityService: {out}{err}");
    cp.wait_ready("workspaces", "tenant", "main", "90s");
    let (_, secrets, _) = cp.kubectl_run(&["get", "secrets", "-n", "tenant", "-o", "name"], None);
    assert!(
        secrets.trim().is_empty(),
        "the tenant holds Secrets: {secrets}"
    );
    let log = std::fs::read_to_string(&operator.process.log).unwrap_or_default();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );

    // Every metric the alerts and the dashboard use is exported by a running
    // service or operator (after the traffic that creates its series).
    let admin = cp.client().await;
    // A Webhook, through the operator's RBAC, to a receiver that verifies
    // with the secret the operator made: its deliveries make their series.
    let secrets_file = dir.join("webhook-secrets");
    std::fs::write(&secrets_file, "").unwrap();
    let (_receiver, url, _) =
        support::webhooks::receiver(&dir, &format!("@{}", secrets_file.display()), "ok");
    cp.apply(&format!(
        "apiVersion: idsync.dev/v1alpha1\nkind: Webhook\nmetadata: {{name: product, namespace: idsync-examples}}\n\
         spec: {{workspaceRef: {{name: octomil}}, url: \"{url}\", eventTypes: [\"member.*\"]}}\n"
    ));
    cp.wait_ready("webhooks", "idsync-examples", "product", "60s");
    let signing = Api::<Secret>::namespaced(admin.clone(), "idsync-examples")
        .get("product-webhook-secret")
        .await
        .unwrap();
    let signing = String::from_utf8_lossy(&signing.data.unwrap()["secret"].0).into_owned();
    std::fs::write(&secrets_file, signing).unwrap();
    drive_traffic(&admin, &service).await;
    let metrics_url = format!("{}/metrics", service.url);
    eventually("a webhook delivery", Duration::from_secs(30), || async {
        let text = get_text(&metrics_url).await;
        text.contains("idsync_webhook_delivery_latency_seconds_bucket")
            .then_some(())
    })
    .await;
    let mut exported = exposed(&get_text(&metrics_url).await);
    exported.extend(exposed(&get_text(&operator.metrics_url).await));
    exported.insert("up".into()); // Prometheus's own, per scrape target
    let rule = find(&objects, "PrometheusRule", RELEASE);
    let mut used = BTreeMap::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            for name in metric_names(r["expr"].as_str().unwrap()) {
                used.entry(name)
                    .or_insert_with(|| r["alert"].as_str().unwrap().to_string());
            }
        }
    }
    let dashboard: Value = serde_json::from_str(
        find(&objects, "ConfigMap", "idsync-dashboard")["data"]["idsync.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        // A row panel has no queries.
        for target in panel["targets"].as_array().into_iter().flatten() {
            for name in metric_names(target["expr"].as_str().unwrap()) {
                used.entry(name)
                    .or_insert_with(|| format!("panel {}", panel["title"]));
            }
        }
    }
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exported.contains(*name))
        .map(|(name, by)| format!("{name} (used by {by})"))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics no running idsync exports: {missing:?}\nexported: {exported:?}"
    );
    // Stopped (and gone) before the namespace-scoped release starts, so only
    // that one can reconcile what follows.
    operator.process.signal("-TERM");
    eventually(
        "the cluster-wide operator to exit",
        Duration::from_secs(20),
        || async { (!operator.process.is_running()).then_some(()) },
    )
    .await;

    // A second release, watching team-a only: its operator reconciles there and
    // cannot read Secrets anywhere else.
    for ns in ["team-a", "team-b"] {
        cp.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
        ));
    }
    let scoped = helm_install(
        &cp,
        "idsync-scoped",
        "idsync-scoped",
        &[
            "--set",
            "crds.install=false",
            "--set",
            "watchNamespaces={team-a}",
            "--set",
            "identityService.enabled=false",
        ],
    );
    assert_all_exist(&cp, &scoped, "idsync-scoped");
    let scoped_config = service_account_kubeconfig(&cp, "idsync-scoped", "idsync-scoped-operator");
    let as_scoped = ControlPlane {
        dir: cp.dir.clone(),
        kubeconfig: scoped_config.clone(),
    };
    let scoped_operator = OperatorProcess::start(
        &as_scoped,
        &dir,
        "operator-scoped",
        "5s",
        &[
            "--lease-namespace",
            "idsync-scoped",
            "--lease-name",
            "idsync-scoped-operator",
            "--watch-namespaces",
            "team-a",
        ],
    );
    for ns in ["team-a", "team-b"] {
        cp.apply(&support::cluster::tenant_yaml(
            &service,
            ns,
            &format!("scoped-{ns}"),
        ));
    }
    cp.wait_ready("identityservices", "team-a", "--all", "90s");
    cp.wait_ready("workspaces", "team-a", "--all", "90s");
    // team-b is not watched: its Workspace gets no status from this operator.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, status, _) = cp.kubectl_run(
        &[
            "get",
            "workspace",
            "main",
            "-n",
            "team-b",
            "-o",
            "jsonpath={.status}",
        ],
        None,
    );
    assert!(status.trim().is_empty(), "team-b was reconciled: {status}");

    let scoped_client = client_for(&scoped_config).await;
    let inside: Api<Secret> = Api::namespaced(scoped_client.clone(), "team-a");
    assert!(inside.get("idsync-admin").await.is_ok());
    for (what, result) in [
        (
            "team-b",
            Api::<Secret>::namespaced(scoped_client.clone(), "team-b")
                .get("idsync-admin")
                .await
                .map(|_| ()),
        ),
        (
            "idsync-examples",
            Api::<Secret>::namespaced(scoped_client.clone(), "idsync-examples")
                .get("okta-scim-token")
                .await
                .map(|_| ()),
        ),
        (
            "all namespaces",
            Api::<Secret>::all(scoped_client.clone())
                .list(&Default::default())
                .await
                .map(|_| ()),
        ),
    ] {
        match result {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{what}: {status:?}"),
            other => {
                panic!("reading Secrets in {what} as the namespace-scoped operator: {other:?}")
            }
        }
    }
    let (_, said) = kubectl_as(
        &cp,
        &scoped_config,
        &["auth", "can-i", "list", "secrets", "-n", "team-b"],
    );
    assert_eq!(said.lines().next().unwrap_or(""), "no", "{said}");
    let log = std::fs::read_to_string(&scoped_operator.process.log).unwrap_or_default();

    // `helm uninstall` keeps the CRDs, and with them every user resource.
    let mut cmd = helm();
    cmd.env("KUBECONFIG", &cp.kubeconfig)
        .args(["uninstall", RELEASE, "--namespace", NAMESPACE]);
    let out = run(cmd);
    assert!(out.status.success(), "helm uninstall:\n{}", text(&out));
    for crd in &crd_names {
        let (ok, out, err) = cp.kubectl_run(&["get", crd], None);
        assert!(ok, "{crd} deleted by helm uninstall: {out}{err}");
    }
    let (ok, workspaces, err) = cp.kubectl_run(
        &["get", "workspaces", "-n", "idsync-examples", "-o", "name"],
        None,
    );
    let declared = examples.matches("\nkind: Workspace\n").count();
    assert!(declared >= 4, "the examples declare their Workspaces");
    assert!(
        ok && workspaces.lines().count() == declared,
        "{workspaces}{err}"
    );
    let (ok, out, err) = cp.kubectl_run(
        &["get", "deployment", "idsync-operator", "-n", NAMESPACE],
        None,
    );
    assert!(
        !ok,
        "the operator Deployment outlived helm uninstall: {out}{err}"
    );
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the scoped operator was refused something:\n{log}"
    );
}
