//! Sign-in benchmark, on SQLite and loopback, on whatever cores the machine has:
//!
//! 1. server-side CPU of an ID-token check (signature, claims; the JWKS cached),
//!    the part of an OIDC callback that does not wait for the IdP;
//! 2. server-side CPU of a SAML ACS verification (xmlsec signature, samael's
//!    checks and ours), on a response signed by the samlify test IdP;
//! 3. session checks/s through `GET /sso/session`, 64 concurrent keep-alive
//!    clients over 1,000 live sessions, with p50/p99;
//! 4. session checks/s in-process (the service layer without HTTP);
//! 5. the role recompute a RoleMapping change starts, over 100,000 members of
//!    ten 10,000-member groups (`IDSYNC_BENCH_MEMBERS` for another count);
//! 6. role assignments: user creates carrying two assignments, and a PATCH of
//!    the assignment of a 10,000-member group (every member's effective
//!    assignments move, with an audit entry each).
//!
//! Run with `cargo bench --bench signin`. Prints numbers; asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Json, Router, routing::get};
use idsync::{
    admin::OidcDoc,
    scim::schema::ResourceKind,
    service::{
        scim::context::WorkspaceCtx,
        sso::oidc::{Discovery, OidcClient},
        store::{AuditEntry, ObjectKind, SessionRecord, now_millis},
    },
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::json;

const CLIENTS: usize = 64;
const SESSIONS: usize = 1000;
const HTTP_CHECKS: usize = 200_000;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (clock ticks of 1/100 s).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

async fn id_token_checks() {
    let pem = std::fs::read(support::repo_root().join("tests/data/jwt-signing.pem")).expect("key");
    let key = EncodingKey::from_rsa_pem(&pem).expect("RSA key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("JWK");
    jwk.common.key_id = Some("k1".into());
    let jwks = json!({"keys": [jwk]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/jwks", get(move || async move { Json(jwks.clone()) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let d = Discovery {
        issuer: "https://idp.example.test".into(),
        authorization_endpoint: "https://idp.example.test/auth".into(),
        token_endpoint: "https://idp.example.test/token".into(),
        jwks_uri: format!("http://{addr}/jwks"),
        userinfo_endpoint: None,
    };
    let cfg = OidcDoc {
        issuer: d.issuer.clone(),
        client_id: "bench".into(),
        ..Default::default()
    };
    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"iss": d.issuer, "aud": "bench", "sub": "u", "email": "a@acme.com",
                "iat": now, "exp": now + 600, "nonce": "n"}),
        &key,
    )
    .expect("signed");
    let client = OidcClient::new(idsync::outbound::Guarded::with_defaults());
    client
        .validate_id_token(&d, &cfg, &token, "n", now)
        .await
        .expect("valid");
    let n = 5000;
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    for _ in 0..n {
        client
            .validate_id_token(&d, &cfg, &token, "n", now)
            .await
            .expect("valid");
    }
    let per = (cpu_seconds() - cpu) / n as f64 * 1e3;
    println!(
        "ID-token check (RS256, 2048-bit, JWKS cached)   {n} checks   {:.3} ms CPU each   {:.0} checks/s on one core",
        per,
        n as f64 / wall.elapsed().as_secs_f64()
    );
}

async fn saml_checks() {
    use idsync::service::sso::saml::{self, SamlSp, SpEndpoints};
    let f = support::signin::SignInFixture::start_with_saml(
        support::Db::Sqlite,
        json!({"domains": ["acme.io"]}),
        json!({"alice": {"email": "alice@acme.io", "groups": ["admins"]}}),
        None,
        true,
    )
    .await;
    let post = f.saml_unsolicited("alice").await;
    let view = f
        .admin
        .get_object(ObjectKind::SsoConnection, "acme", "entra")
        .await
        .expect("connection")
        .expect("exists");
    let cfg: idsync::admin::SamlDoc =
        serde_json::from_value(view.spec["saml"].clone()).expect("SAML settings");
    let sp = SamlSp::new(idsync::outbound::Guarded::with_defaults());
    let metadata = sp.idp_metadata(&cfg).await.expect("IdP metadata");
    let entity_id = format!("{}/sso/acme/saml/entra", f.base);
    let ends = SpEndpoints {
        acs_url: format!("{entity_id}/acs"),
        entity_id: entity_id.clone(),
    };
    let n = 500;
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    for _ in 0..n {
        let provider = sp.provider(&cfg, &metadata, &ends, true).expect("provider");
        let xml = saml::decode_response(&post.response).expect("a response");
        saml::verify(provider, xml, None, &entity_id)
            .await
            .expect("verifies");
    }
    let per = (cpu_seconds() - cpu) / n as f64 * 1e3;
    println!(
        "SAML ACS verification (RSA-SHA256, xmlsec)      {n} checks   {:.3} ms CPU each   {:.0} checks/s",
        per,
        n as f64 / wall.elapsed().as_secs_f64()
    );
}

async fn session_checks() {
    let db = support::TestDb::new(support::Db::Sqlite).await;
    let service = support::start_service(&db.url).await;
    let state = service.state.clone();
    let admin = support::client(&service);
    admin
        .put_object(
            ObjectKind::Workspace,
            "acme",
            "acme",
            &json!({"domains": ["acme.com"]}),
        )
        .await
        .expect("workspace");
    let ctx = WorkspaceCtx::load(state.admin.store(), "acme")
        .await
        .expect("store")
        .expect("workspace");
    let user = state
        .scim
        .create(
            &ctx,
            ResourceKind::User,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "alice@acme.com"}),
            &Default::default(),
        )
        .await
        .expect("user");
    let user_id = user.resource().expect("a created user").body["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut cookies = Vec::new();
    for _ in 0..SESSIONS {
        let now = now_millis();
        let minted = state
            .sso
            .sessions
            .mint(now)
            .await
            .expect("store")
            .expect("random");
        let record = SessionRecord {
            assignments: None,
            workspace: "acme".into(),
            user_id: user_id.clone(),
            user_name: "alice@acme.com".into(),
            role: Some("member".into()),
            connection: Some("okta".into()),
            created_at: now,
            expires_at: now + 3_600_000,
        };
        let entry = AuditEntry {
            actor: "bench".into(),
            action: "sign_in".into(),
            ..Default::default()
        };
        state
            .admin
            .store()
            .insert_session(&minted.id, &record, &entry)
            .await
            .expect("session");
        cookies.push(minted.cookie);
    }
    let cookies = Arc::new(cookies);

    // In-process.
    let n = 200_000;
    let started = Instant::now();
    for i in 0..n {
        state
            .sso
            .sessions
            .check(&cookies[i % SESSIONS], now_millis())
            .await
            .expect("store")
            .expect("live");
    }
    println!(
        "session check, in-process (1 task)              {n} checks   {:.0} checks/s",
        n as f64 / started.elapsed().as_secs_f64()
    );

    // API keys: no cache, so each check is one point read of the key and its
    // principal, plus a SHA-256.
    let key = state
        .admin
        .keys()
        .issue(
            &idsync::service::api_keys::KeyRequest {
                workspace: "acme",
                principal_id: &user_id,
                name: "bench",
                expires_at: None,
                issued_by: "bench",
                actor: "bench",
            },
            now_millis(),
        )
        .await
        .expect("a key");
    let started = Instant::now();
    for _ in 0..n {
        state
            .admin
            .keys()
            .check(key.key.expose(), now_millis())
            .await
            .expect("store")
            .expect("live");
    }
    println!(
        "API key check, in-process (1 task)             {n} checks   {:.0} checks/s",
        n as f64 / started.elapsed().as_secs_f64()
    );

    // Over HTTP.
    let http = reqwest::Client::new();
    let url = format!("{}/sso/session", support::base_url(&service));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (http, url, next, cookies) = (http.clone(), url.clone(), next.clone(), cookies.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= HTTP_CHECKS {
                    break;
                }
                let t = Instant::now();
                match http
                    .get(&url)
                    .header(
                        "cookie",
                        format!("idsync_session={}", cookies[i % SESSIONS]),
                    )
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => failures += 1,
                }
                latencies.push(t.elapsed());
            }
            (latencies, failures)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(HTTP_CHECKS);
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t.await.expect("client task");
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "GET /sso/session, {CLIENTS} clients, {SESSIONS} sessions     {HTTP_CHECKS} checks   {:.0} checks/s   p50 {:.2} ms   p99 {:.2} ms   failures {failures}",
        HTTP_CHECKS as f64 / elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    service.stop().await.expect("stop");
}

async fn role_recompute() {
    use idsync::service::scim::roles;
    let members: usize = std::env::var("IDSYNC_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let db = support::TestDb::new(support::Db::Sqlite).await;
    let service = support::start_service(&db.url).await;
    let state = service.state.clone();
    let admin = support::client(&service);
    admin
        .put_object(
            ObjectKind::Workspace,
            "acme",
            "acme",
            &json!({"domains": ["acme.com"]}),
        )
        .await
        .expect("workspace");
    let ctx = WorkspaceCtx::load(state.admin.store(), "acme")
        .await
        .expect("store")
        .expect("workspace");
    let started = Instant::now();
    let groups = 10;
    let per_group = members.div_ceil(groups);
    for g in 0..groups {
        let mut ids = Vec::with_capacity(per_group);
        for i in 0..per_group.min(members - g * per_group) {
            let user = state
                .scim
                .create(
                    &ctx,
                    ResourceKind::User,
                    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                           "userName": format!("u{g}-{i}@acme.com")}),
                    &Default::default(),
                )
                .await
                .expect("user");
            ids.push(json!({"value": user.resource().expect("a created user").body["id"]}));
        }
        state
            .scim
            .create(
                &ctx,
                ResourceKind::Group,
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                       "displayName": format!("team-{g}"), "members": ids}),
                &Default::default(),
            )
            .await
            .expect("group");
    }
    println!(
        "  (provisioned {members} members in {groups} groups in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    // Every member of team-0..4 becomes admin; the rest keeps member.
    let rules: Vec<_> = (0..5)
        .map(|g| json!({"equals": format!("team-{g}"), "role": "admin"}))
        .collect();
    admin
        .put_object(
            ObjectKind::RoleMapping,
            "acme",
            "default",
            &json!({"rules": rules}),
        )
        .await
        .expect("mapping");
    // The PUT started the background run; time a run of the same code here.
    while state.scim.recomputing("acme") {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin
        .put_object(
            ObjectKind::RoleMapping,
            "acme",
            "default",
            &json!({"rules": rules[..2]}),
        )
        .await
        .expect("mapping");
    while state.scim.recomputing("acme") {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let seen = roles::recompute_workspace(&state.scim, "acme")
        .await
        .expect("recompute");
    let took = wall.elapsed().as_secs_f64();
    println!(
        "role recompute after a RoleMapping change       {seen} members   {took:.2} s   {:.0} members/s   {:.1} µs CPU each (nothing moved: every role already right)",
        seen as f64 / took,
        (cpu_seconds() - cpu) / seen as f64 * 1e6
    );
    // Now a change that moves 30,000 roles, timed in the background as it runs.
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    admin
        .put_object(
            ObjectKind::RoleMapping,
            "acme",
            "default",
            &json!({"rules": rules}),
        )
        .await
        .expect("mapping");
    while state.scim.recomputing("acme") {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = wall.elapsed().as_secs_f64();
    let moved = state
        .admin
        .audit(&idsync::service::store::AuditFilter {
            workspace: Some("acme".into()),
            action: Some("role_changed".into()),
            since: Some(now_millis() - (took * 1000.0) as i64 - 1000),
            limit: i64::MAX,
            ..Default::default()
        })
        .await
        .expect("audit")
        .len();
    println!(
        "role recompute in the background, roles moving  {members} members   {took:.2} s   {:.0} members/s   {moved} role_changed entries   {:.1} µs CPU per member",
        members as f64 / took,
        (cpu_seconds() - cpu) / members as f64 * 1e6
    );
    service.stop().await.expect("stop");
}

fn main() {
    support::cluster::install_crypto();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "sign-in benchmark on {} cores (load average: {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    rt.block_on(async {
        id_token_checks().await;
        saml_checks().await;
        session_checks().await;
        role_recompute().await;
        role_assignments().await;
    });
}

async fn role_assignments() {
    let db = support::TestDb::new(support::Db::Sqlite).await;
    let service = support::start_service(&db.url).await;
    let state = service.state.clone();
    let values = ["owner", "editor", "consumer", "operator", "viewer"];
    let workspace = json!({"domains": ["acme.com"], "policy": {"roleAssignments": {"types": [
        {"name": "account_type", "values": ["admin"]},
        {"prefix": "workspace_", "values": values},
    ]}}});
    support::client(&service)
        .put_object(ObjectKind::Workspace, "acme", "acme", &workspace)
        .await
        .expect("workspace");
    let ctx = WorkspaceCtx::load(state.admin.store(), "acme")
        .await
        .expect("store")
        .expect("workspace");
    let members = 10_000;
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut ids = Vec::with_capacity(members);
    for i in 0..members {
        let user = state
            .scim
            .create(
                &ctx,
                ResourceKind::User,
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                       "userName": format!("a{i}@acme.com"),
                       "roles": [{"type": "account_type", "value": "admin"},
                                 {"type": "workspace_prod", "value": values[i % 5]}]}),
                &Default::default(),
            )
            .await
            .expect("user");
        ids.push(json!({"value": user.resource().expect("a created user").body["id"]}));
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "user creates with 2 assignments (in-process)   {members} users   {:.0} creates/s   {:.1} µs CPU each",
        members as f64 / took,
        (cpu_seconds() - cpu) / members as f64 * 1e6
    );
    let group = state
        .scim
        .create(
            &ctx,
            ResourceKind::Group,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                   "displayName": "everyone", "members": ids}),
            &Default::default(),
        )
        .await
        .expect("group");
    let group_id = group.resource().expect("a created group").body["id"]
        .as_str()
        .expect("id")
        .to_string();
    for value in ["owner", "viewer"] {
        let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "roles[type eq \"workspace_dev\"].value", "value": value}]});
        let (started, cpu) = (Instant::now(), cpu_seconds());
        // As Okta asks: the answer leaves the 10,000 members out.
        let proj = idsync::service::scim::render::Projection::parse(None, Some("members"))
            .expect("a projection");
        state
            .scim
            .patch(
                &ctx,
                ResourceKind::Group,
                &group_id,
                &patch,
                &Default::default(),
                &proj,
            )
            .await
            .expect("patch");
        println!(
            "PATCH a 10,000-member group's assignment        workspace_dev={value:<6}   {:.2} s   {:.1} µs CPU per member",
            started.elapsed().as_secs_f64(),
            (cpu_seconds() - cpu) / members as f64 * 1e6
        );
    }
    service.stop().await.expect("stop");
}
