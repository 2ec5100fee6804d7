//! Lifecycle events, written in the transaction of the change (a transactional
//! outbox): what a product reads back with `GET /workspaces/{ws}/events`.

use idsync::{admin::EventView, service::store::ObjectKind};
use reqwest::Method;
use serde_json::json;

use crate::{
    on_both_databases,
    support::{Db, scim::ScimFixture},
};

async fn all_events(f: &ScimFixture, workspace: &str) -> Vec<EventView> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = f.admin.events(workspace, after, 2).await.expect("events");
        if page.items.is_empty() {
            return events;
        }
        assert!(page.items.iter().all(|e| e.seq > after), "ordered by seq");
        after = page.next;
        events.extend(page.items);
    }
}

fn types(events: &[EventView]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

async fn every_change_has_its_event_and_no_refused_one_does(db: Db) {
    let f = ScimFixture::start(db, json!({"domains": ["acme.com"]})).await;
    f.admin
        .put_object(
            ObjectKind::RoleMapping,
            "acme",
            "roles",
            &json!({"defaultRole": "member", "rules": [{"equals": "Admins", "role": "admin"}]}),
        )
        .await
        .expect("mapping");
    let ada = f.create_user("ada@acme.com").await;
    // Refused (the userName is taken): rolled back, so no event.
    let taken = f
        .call(
            Method::POST,
            "/Users",
            Some(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": "ADA@acme.com"}),
            ),
        )
        .await;
    taken.assert_error(409, Some("uniqueness"));
    let admins = f.create_group("Admins", &[&ada]).await;
    f.patch(
        &format!("/Users/{ada}"),
        json!({"Operations": [{"op": "replace", "path": "displayName", "value": "Ada L."}]}),
    )
    .await;
    let bob = f.create_user("bob@acme.com").await;
    f.patch(
        &format!("/Groups/{admins}"),
        json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": bob}]}]}),
    )
    .await;
    f.patch(
        &format!("/Users/{ada}"),
        json!({"Operations": [{"op": "replace", "path": "active", "value": false}]}),
    )
    .await;
    f.call(Method::DELETE, &format!("/Groups/{admins}"), None)
        .await;

    let all = all_events(&f, "acme").await;
    // The fixture's SCIM token registration came first.
    assert_eq!(all[0].kind, "scim_credential.rotated", "{all:#?}");
    let events: Vec<EventView> = all[1..].to_vec();
    assert_eq!(
        types(&events),
        [
            "member.created",
            "member.role_changed",
            "group.created",
            "member.updated",
            "member.created",
            "group.members_added",
            "member.role_changed",
            "member.deactivated",
            "member.role_changed",
            "member.role_changed",
            "group.deleted",
        ],
        "{events:#?}"
    );
    let created = &events[0];
    assert_eq!(created.data["userName"], "ada@acme.com");
    assert_eq!(created.data["active"], true);
    assert!(created.id.starts_with("evt_"));
    let promoted = &events[1];
    assert_eq!(
        promoted.data["changed"],
        json!({"from": "member", "to": "admin"})
    );
    assert_eq!(promoted.data["role"], "admin");
    assert_eq!(
        events[3].data["changed"],
        json!({"attributes": ["displayName"]})
    );
    assert_eq!(events[3].data["displayName"], "Ada L.");
    assert_eq!(
        events[5].data["changed"],
        json!({"members": [bob], "count": 1})
    );
    assert_eq!(events[7].data["active"], false);
    // Ids are stable across reads; sequences are per workspace and dense.
    let again = all_events(&f, "acme").await;
    assert_eq!(
        again.iter().map(|e| &e.id).collect::<Vec<_>>(),
        all.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<i64>>());
    f.stop().await;
}

/// Credentials and connections make events that name them, never a secret;
/// another workspace has its own sequence; a cascade delete takes the
/// workspace's events with it.
async fn events_never_carry_secrets_and_stay_in_their_workspace(db: Db) {
    let f = ScimFixture::start(db, json!({"domains": ["acme.com"]})).await;
    let token = f.issue_token("acme").await;
    f.admin
        .put_object(
            ObjectKind::Workspace,
            "globex",
            "globex",
            &json!({"domains": ["globex.com"]}),
        )
        .await
        .expect("a second workspace");
    f.issue_token("globex").await;
    let acme = all_events(&f, "acme").await;
    let rotated: Vec<&EventView> = acme
        .iter()
        .filter(|e| e.kind == "scim_credential.rotated")
        .collect();
    assert!(!rotated.is_empty(), "{acme:#?}");
    let text = serde_json::to_string(&acme).expect("JSON");
    assert!(!text.contains(&token), "a token in an event: {text}");
    let secret_part = token.rsplit('_').next().expect("a secret part");
    assert!(!text.contains(secret_part), "{text}");
    let globex = all_events(&f, "globex").await;
    assert_eq!(globex[0].seq, 1, "{globex:#?}");
    assert!(globex.iter().all(|e| e.workspace == "globex"));

    f.admin
        .delete_object(ObjectKind::Workspace, "globex", "globex", true)
        .await
        .expect("cascade");
    f.admin
        .put_object(
            ObjectKind::Workspace,
            "globex",
            "globex",
            &json!({"domains": ["globex.com"]}),
        )
        .await
        .expect("claimed again");
    let after = all_events(&f, "globex").await;
    assert!(
        after.is_empty(),
        "the next claimant reads nothing: {after:#?}"
    );
    f.stop().await;
}

/// A PEM certificate valid until `not_after` (Unix seconds), self-signed.
fn certificate_until(not_after: i64) -> String {
    use openssl::{
        asn1::Asn1Time, ec::EcGroup, ec::EcKey, hash::MessageDigest, nid::Nid, pkey::PKey,
        x509::X509Builder,
    };
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("key");
    let mut cert = X509Builder::new().expect("builder");
    cert.set_pubkey(&key).expect("key");
    let not_before = Asn1Time::from_unix(not_after - 400 * 86_400).expect("time");
    cert.set_not_before(&not_before).expect("not before");
    cert.set_not_after(&Asn1Time::from_unix(not_after).expect("time"))
        .expect("not after");
    cert.sign(&key, MessageDigest::sha256()).expect("signed");
    String::from_utf8(cert.build().to_pem().expect("PEM")).expect("PEM is ASCII")
}

/// The product hears before a customer's IdP certificate expires: once per
/// threshold (30, 7, 1 days, expired), for the last-expiring certificate, and
/// not at all once a replacement valid for a year sits beside it.
async fn an_expiring_idp_certificate_is_announced_once_per_threshold(db: Db) {
    let f = ScimFixture::start(db, json!({"domains": ["acme.com"]})).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let day = 86_400;
    let old = certificate_until(now + 5 * day + 3600);
    let saml = |certificates: Vec<&str>| {
        json!({"protocol": "saml", "saml": {
            "entityId": "https://idp.example.com", "ssoUrl": "https://idp.example.com/sso",
            "certificates": certificates}})
    };
    let admin = &f.admin;
    let put = |doc: serde_json::Value| async move {
        admin
            .put_object(ObjectKind::SsoConnection, "acme", "okta", &doc)
            .await
            .expect("connection")
    };
    put(saml(vec![&old])).await;
    let sso = &f.service.state.sso;
    let watch = |at: i64| async move { sso.watch_certificates(at * 1000).await.expect("watch") };
    assert_eq!(
        watch(now).await,
        1,
        "5 days left crosses the 7-day threshold"
    );
    assert_eq!(watch(now + 60).await, 0, "announced once");
    assert_eq!(
        watch(now + 4 * day + 12 * 3600).await,
        1,
        "under a day left"
    );
    let warnings: Vec<EventView> = all_events(&f, "acme")
        .await
        .into_iter()
        .filter(|e| e.kind == "sso_connection.certificate_expiring")
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    let first = &warnings[0].data;
    assert_eq!(first["name"], "okta", "{first}");
    assert_eq!(first["certificate"]["daysLeft"], 5, "{first}");
    assert_eq!(first["certificate"]["expired"], false, "{first}");
    let not_after = jiff::Timestamp::from_second(now + 5 * day + 3600).expect("in range");
    assert_eq!(first["certificate"]["notAfter"], not_after.to_string());
    assert_eq!(warnings[1].data["certificate"]["daysLeft"], 0);

    let new = certificate_until(now + 365 * day);
    put(saml(vec![&old, &new])).await;
    assert_eq!(
        watch(now + 6 * day).await,
        0,
        "the old certificate expiring beside its replacement is a rotation"
    );
    put(saml(vec![&new])).await;
    assert_eq!(watch(now + 340 * day).await, 1, "the new one's turn comes");
    f.stop().await;
}

on_both_databases!(
    every_change_has_its_event_and_no_refused_one_does,
    events_never_carry_secrets_and_stay_in_their_workspace,
    an_expiring_idp_certificate_is_announced_once_per_threshold
);
