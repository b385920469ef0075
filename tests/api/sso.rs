//! Staff single sign-on, as the hospital's people meet it: Debian's headless Chromium
//! (`tests/support/sso_browser.mjs`) opens a page, is sent to the hospital's identity provider
//! (npm `oidc-provider` on loopback, `scripts/oidc_provider.mjs`), signs in with a user
//! name and password, and comes back to the page it asked for, with the role its groups give.
//! The refusals are tried the same way: a replayed code, a tampered `state`, a forged `nonce`,
//! an open-redirect `return_to`, a user without a role, an expired session.

use serde_json::{Value, json};

use crate::{
    helpers::{Idp, OidcProvider, STAFF_ISS, TestApp, artefacts_dir, brain_mri_hook, free_port, python, spawn_app_on},
    hooks::decisions,
};

const SIGN: &str = "neurocds-brain-mri-order-sign";
const SECRET: &str = "a-client-secret-for-the-tests";

pub fn user(username: &str, password: &str) -> Value {
    json!({ "username": username, "password": password })
}

/// The identity provider's users: one per role, and one the hospital gave no neurocds group.
fn users() -> Value {
    json!([
        { "username": "dr.onc", "password": "onc-pass", "name": "Dr Neuro Oncologist", "groups": ["staff", "neurocds-neuro-oncology"] },
        { "username": "compliance", "password": "comp-pass", "name": "Compliance Officer", "groups": ["neurocds-compliance"] },
        { "username": "radiographer", "password": "rad-pass", "name": "A Radiographer", "groups": ["staff", "radiology"] },
    ])
}

/// A provider with neurocds registered as a confidential client, and neurocds configured to
/// sign staff in there (sessions lasting `lifetime_s`).
async fn app_with_sso(lifetime_s: u64) -> (TestApp, OidcProvider) {
    app_with_sso_and_tokens_of(lifetime_s, &Idp::new()).await
}

/// As [`app_with_sso`], with machine clients' bearer tokens from `idp`.
async fn app_with_sso_and_tokens_of(lifetime_s: u64, idp: &Idp) -> (TestApp, OidcProvider) {
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/auth/callback");
    let op = OidcProvider::start(json!([{ "client_id": "neurocds", "client_secret": SECRET, "redirect_uris": [callback] }]), users());
    let key = hex::encode((0..64).map(|_| rand::random::<u8>()).collect::<Vec<u8>>());
    let app = spawn_app_on(
        port,
        json!({
            "staff": {
                "issuer": STAFF_ISS, "jwks": idp.jwks(),
                "sso": { "issuer_url": op.issuer, "client_id": "neurocds", "client_secret": SECRET, "scopes": ["profile", "groups"], "session_lifetime_s": lifetime_s, "session_key": key }
            }
        }),
    )
    .await;
    (app, op)
}

/// One decision in the log (a brain MRI order for a patient with no prior MR), for its report.
async fn a_decision(app: &TestApp) -> String {
    let body = brain_mri_hook("order-sign", "p-sso", Some(json!({ "patient": null, "priorImaging": null })), None);
    let (status, _) = app.hook(SIGN, &body).await;
    assert_eq!(status, 200);
    decisions(app).await[0].record.decision_id.to_string()
}

/// Runs the browser script (off the runtime thread: the service answers on it meanwhile).
pub async fn browse_at(app: &TestApp, op: &OidcProvider, flows: Value) -> Vec<Value> {
    let scenario = json!({ "base": app.base, "idp": op.issuer, "artefacts": artefacts_dir(), "flows": flows });
    let node_modules = python().join("node/node_modules");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node").args(["tests/support/sso_browser.mjs", &scenario.to_string()]).env("NODE_PATH", &node_modules).current_dir(env!("CARGO_MANIFEST_DIR")).output()
    })
    .await
    .expect("the browser task")
    .expect("node runs (installed by scripts/bootstrap.sh)");
    assert!(out.status.success(), "the browser script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("the browser script printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    for r in &results {
        assert!(r.get("error").is_none(), "a browser flow failed: {r:#}");
    }
    results
}

fn text(page: &Value) -> &str {
    page["text"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn staff_sign_in_at_the_hospital_identity_provider_and_land_on_the_page_they_asked_for_within_their_role() {
    let (app, op) = app_with_sso(3600).await;
    let report = format!("/reports/{}", a_decision(&app).await);
    let results = browse_at(
        &app,
        &op,
        json!([
            { "kind": "sign-in", "start": report, "user": user("dr.onc", "onc-pass"), "visit": ["/audit", "/audit/decisions?format=csv", "/models"],
              "replay_callback": true, "sign_out": true, "screenshot": "sso-case-report.png" },
            { "kind": "sign-in", "start": "/audit", "user": user("compliance", "comp-pass"), "visit": ["/audit/decisions?format=csv"] },
            { "kind": "sign-in", "start": "/audit", "user": user("radiographer", "rad-pass") },
            { "kind": "sign-in", "start": "/login?return_to=https%3A%2F%2Fevil.example%2Fphish", "user": user("dr.onc", "onc-pass") },
        ]),
    )
    .await;
    let (onc, compliance, no_role, open_redirect) = (&results[0], &results[1], &results[2], &results[3]);

    // The neuro-oncologist asked for a case report, signed in at the provider, and got it.
    assert_eq!(onc["at_provider"], true, "{onc:#}");
    let landed = &onc["after_sign_in"];
    assert_eq!((landed["url"].as_str(), landed["status"].as_u64()), (Some(format!("{}{report}", app.base).as_str()), Some(200)), "{landed:#}");
    assert_eq!(landed["signout_form"], true);
    assert!(text(landed).contains("Dr Neuro Oncologist") && text(landed).contains("neuro-oncology"), "the header names who is signed in: {}", text(landed));
    // Their role opens the decision log and the model card, not the export.
    let status_of = |r: &Value, path: &str| r["pages"].as_array().and_then(|p| p.iter().find(|p| p["path"] == path)).map(|p| (p["status"].as_u64(), p["h1"].clone(), p["text"].clone()));
    assert_eq!(status_of(onc, "/audit").map(|s| s.0), Some(Some(200)));
    assert_eq!(status_of(onc, "/models").map(|s| s.0), Some(Some(200)));
    let export = status_of(onc, "/audit/decisions?format=csv").expect("the export was tried");
    assert_eq!(export.0, Some(403), "{export:?}");
    assert!(export.2.as_str().unwrap_or_default().contains("does not open the decision log export"), "a 403 page that says why: {export:?}");
    // The provider's answer works once: replayed, it signs nobody in.
    assert!(onc["callback"].as_str().is_some_and(|c| c.contains("code=")), "{onc:#}");
    assert_eq!(onc["replayed"]["status"], 400, "{:#}", onc["replayed"]);
    assert!(text(&onc["replayed"]).contains("already used"));
    // Signing out ends the session: the next page sends the browser back to the provider.
    assert_eq!(onc["signed_out"]["h1"], "Signed out");
    let back_to_provider = onc["after_sign_out"]["requests"].as_array().expect("requests").iter().any(|u| u.as_str().is_some_and(|u| u.starts_with(&format!("{}/auth?", op.issuer))));
    assert!(back_to_provider, "after signing out, /audit asks the provider again: {:#}", onc["after_sign_out"]);

    // Compliance exports the log.
    let export = &compliance["pages"][0];
    assert_eq!(export["status"], 200, "{export:#}");
    assert!(export["content_type"].as_str().is_some_and(|c| c.starts_with("text/csv")), "{export:#}");

    // A member of staff without a neurocds group is signed in, and told so on a 403 page.
    let refused = &no_role["after_sign_in"];
    assert_eq!((refused["status"].as_u64(), refused["h1"].as_str()), (Some(403), Some("Not for your role")), "{refused:#}");
    assert!(text(refused).contains("no neurocds role"));

    // A return path to another site is not followed: the sign-in lands on the decision log.
    assert_eq!(open_redirect["after_sign_in"]["url"], format!("{}/audit", app.base), "{open_redirect:#}");
}

#[tokio::test]
async fn a_tampered_state_or_a_forged_nonce_signs_nobody_in() {
    let (app, op) = app_with_sso(3600).await;
    let results = browse_at(&app, &op, json!([{ "kind": "tampered-state", "user": user("compliance", "comp-pass") }, { "kind": "bad-nonce", "user": user("compliance", "comp-pass") }])).await;
    let (state, nonce) = (&results[0], &results[1]);
    assert_eq!(state["tampered"]["status"], 400, "{state:#}");
    assert_eq!(state["tampered"]["h1"], "Sign-in failed");
    // The tampered answer used up the sign-in: the genuine one, arriving after it, is refused too.
    assert_eq!(state["genuine_after"]["status"], 400, "{state:#}");
    assert_eq!(nonce["result"]["status"], 401, "{nonce:#}");
    assert!(text(&nonce["result"]).contains("could not be verified"), "{nonce:#}");
}

#[tokio::test]
async fn an_expired_sign_in_is_sent_back_to_the_identity_provider() {
    let (app, op) = app_with_sso(2).await;
    let results = browse_at(&app, &op, json!([{ "kind": "sign-in", "start": "/audit", "user": user("compliance", "comp-pass"), "wait_s": 3, "revisit": ["/audit"] }])).await;
    let again = &results[0]["revisits"][0];
    let requests: Vec<&str> = again["requests"].as_array().expect("requests").iter().filter_map(Value::as_str).collect();
    assert!(requests.iter().any(|u| u.starts_with(&format!("{}/auth?", op.issuer))), "the expired session asked the provider again: {requests:?}");
    assert!(requests.iter().any(|u| u.starts_with(&format!("{}/auth/callback", app.base))), "{requests:?}");
    // The provider's own session was still open: back on the page without typing a password.
    assert_eq!((again["url"].as_str(), again["status"].as_u64(), again["login_form"].as_bool()), (Some(format!("{}/audit", app.base).as_str()), Some(200), Some(false)), "{again:#}");
}

#[tokio::test]
async fn with_single_sign_on_the_pages_take_no_pasted_token_and_machine_clients_keep_their_bearer_tokens() {
    let idp = Idp::new();
    let (app, _op) = app_with_sso_and_tokens_of(3600, &idp).await;
    let token = idp.token(Some("compliance"));
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
    // The token form is not offered, nor taken.
    let posted = no_redirects.post(format!("{}/login", app.base)).header("content-type", "application/x-www-form-urlencoded").body(format!("token={token}")).send().await.expect("POST /login");
    assert_eq!(posted.status(), 303);
    assert!(posted.headers().get("set-cookie").is_none(), "no staff cookie is set");
    // A staff-token cookie opens no page: the browser is sent to sign in.
    let page = no_redirects.get(format!("{}/audit", app.base)).header("accept", "text/html").header("cookie", format!("neurocds_staff={token}")).send().await.expect("GET /audit");
    assert_eq!(page.status(), 303);
    assert!(page.headers()["location"].to_str().is_ok_and(|l| l.starts_with("/login?return_to=%2Faudit")));
    // The compliance API still takes the bearer token.
    let api = app.http.get(format!("{}/audit/decisions", app.base)).bearer_auth(&token).send().await.expect("GET /audit/decisions");
    assert_eq!(api.status(), 200);
}
