//! The compliance API and the pages: staff tokens with a role open them; EHR tokens do not.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Idp, STAFF_ISS, TestApp, brain_mri_hook, ehr, spawn_app_with};

const SIGN: &str = "neurocds-brain-mri-order-sign";

async fn app_with_staff(idp: &Idp) -> TestApp {
    spawn_app_with(json!({ "staff": { "issuer": STAFF_ISS, "jwks": idp.jwks() } })).await
}

async fn decisions_for(app: &TestApp, n: usize) {
    for _ in 0..n {
        let body = brain_mri_hook("order-sign", &format!("p{}", Uuid::new_v4().simple()), Some(json!({ "patient": null, "priorImaging": null })), None);
        assert_eq!(app.hook(SIGN, &body).await.0, 200);
    }
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = app.http.get(format!("{}{path}", app.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn only_staff_tokens_with_a_role_open_the_decision_log() {
    let idp = Idp::new();
    let app = app_with_staff(&idp).await;
    assert_eq!(get(&app, "/audit/decisions", None).await.status(), 401);
    let ehr_token = ehr().token(&format!("{}/audit/decisions", app.base), &[]);
    assert_eq!(get(&app, "/audit/decisions", Some(&ehr_token)).await.status(), 401, "EHR tokens do not open the log");
    assert_eq!(get(&app, "/audit/decisions", Some(&idp.token(None))).await.status(), 403, "a staff token without a role");
    assert_eq!(get(&app, "/audit/decisions", Some(&idp.token(Some("compliance")))).await.status(), 200);
    assert_eq!(get(&app, "/audit/decisions", Some(&idp.token(Some("neuro-oncology")))).await.status(), 200);
}

#[tokio::test]
async fn the_decision_log_filters_pages_and_exports() {
    let idp = Idp::new();
    let app = app_with_staff(&idp).await;
    decisions_for(&app, 3).await;
    let t = idp.token(Some("compliance"));
    let page1: Value = get(&app, "/audit/decisions?limit=2", Some(&t)).await.json().await.unwrap();
    assert_eq!(page1["decisions"].as_array().unwrap().len(), 2);
    let next = page1["next"].as_str().expect("a next page");
    let page2: Value = get(&app, &format!("{next}&limit=2"), Some(&t)).await.json().await.unwrap();
    assert_eq!(page2["decisions"].as_array().unwrap().len(), 1);
    assert!(page2["next"].is_null());
    let none: Value = get(&app, "/audit/decisions?outcome=recommended", Some(&t)).await.json().await.unwrap();
    assert!(none["decisions"].as_array().unwrap().is_empty());
    let unavailable: Value = get(&app, "/audit/decisions?outcome=unavailable&practitioner=dr-1", Some(&t)).await.json().await.unwrap();
    assert_eq!(unavailable["decisions"].as_array().unwrap().len(), 3);

    let csv = get(&app, "/audit/decisions?format=csv", Some(&t)).await.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("seq,decision_id,recorded_at"));

    let bundle: Value = get(&app, "/audit/decisions?format=fhir", Some(&t)).await.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 3);
    assert_eq!(bundle["entry"][0]["resource"]["resourceType"], "AuditEvent");

    let summary: Value = get(&app, "/audit/summary", Some(&t)).await.json().await.unwrap();
    assert_eq!(summary["decisions"], 3);
    assert_eq!(summary["unavailable"], 3);
}

#[tokio::test]
async fn the_pages_render_for_staff_and_send_browsers_without_a_token_to_sign_in() {
    let idp = Idp::new();
    let app = app_with_staff(&idp).await;
    decisions_for(&app, 1).await;
    let t = idp.token(Some("neuro-oncology"));
    let audit = get(&app, "/audit?outcome=unavailable", Some(&t)).await;
    assert_eq!(audit.status(), 200);
    let html = audit.text().await.unwrap();
    assert!(html.contains("Decision log") && html.contains("/reports/"), "{html}");
    let id = html.split("/reports/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let report = get(&app, &format!("/reports/{id}"), Some(&t)).await;
    assert_eq!(report.status(), 200);
    assert!(report.text().await.unwrap().contains(&id));
    assert_eq!(get(&app, "/models", Some(&t)).await.status(), 200);

    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let browser = no_redirect.get(format!("{}/audit", app.base)).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(browser.status(), 303);
    let signin = no_redirect.post(format!("{}/login", app.base)).header("Content-Type", "application/x-www-form-urlencoded").body(format!("token={t}")).send().await.unwrap();
    assert_eq!(signin.status(), 303);
    let cookie = signin.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let with_cookie = no_redirect.get(format!("{}/audit", app.base)).header("Cookie", cookie.split(';').next().unwrap()).send().await.unwrap();
    assert_eq!(with_cookie.status(), 200);
}

/// The per-route rule table: both roles read the log, only compliance takes it out in bulk, and
/// the log page offers the export only to those who may use it.
#[tokio::test]
async fn only_compliance_exports_the_decision_log() {
    let idp = Idp::new();
    let app = app_with_staff(&idp).await;
    decisions_for(&app, 1).await;
    let (compliance, neuro) = (idp.token(Some("compliance")), idp.token(Some("neuro-oncology")));
    for export in ["/audit/decisions?format=csv", "/audit/decisions?format=fhir"] {
        assert_eq!(get(&app, export, Some(&neuro)).await.status(), 403, "{export}");
        assert_eq!(get(&app, export, Some(&compliance)).await.status(), 200, "{export}");
    }
    assert_eq!(get(&app, "/audit/summary", Some(&neuro)).await.status(), 200);
    let neuro_page = get(&app, "/audit", Some(&neuro)).await.text().await.unwrap();
    assert!(!neuro_page.contains("Export this page"), "the export link is not offered to neuro-oncology");
    let compliance_page = get(&app, "/audit", Some(&compliance)).await.text().await.unwrap();
    assert!(compliance_page.contains("Export this page"), "{compliance_page}");
}

/// Pages and API answers carry patient data: no cache may keep them, and the pages run no
/// script, load nothing from elsewhere and cannot be framed.
#[tokio::test]
async fn staff_answers_are_not_cached_and_pages_are_locked_down() {
    let idp = Idp::new();
    let app = app_with_staff(&idp).await;
    decisions_for(&app, 1).await;
    let t = idp.token(Some("compliance"));
    for path in ["/audit", "/models", "/audit/decisions", "/audit/summary", "/login"] {
        let r = get(&app, path, Some(&t)).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["cache-control"], "no-store", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
}

/// A JWKS served over HTTP whose content the test replaces (the IdP rotating its key).
struct JwksServer {
    url: String,
    body: std::sync::Arc<std::sync::Mutex<String>>,
}

impl JwksServer {
    async fn start(jwks: String) -> JwksServer {
        let body = std::sync::Arc::new(std::sync::Mutex::new(jwks));
        let shared = body.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/jwks.json", listener.local_addr().unwrap().port());
        let server = actix_web::HttpServer::new(move || {
            let shared = shared.clone();
            actix_web::App::new().route("/jwks.json", actix_web::web::get().to(move || {
                let text = shared.lock().unwrap().clone();
                async move { actix_web::HttpResponse::Ok().content_type("application/json").body(text) }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        JwksServer { url, body }
    }

    fn serve(&self, jwks: String) {
        *self.body.lock().unwrap() = jwks;
    }
}

/// The staff JWKS is not read once for the life of the process: a token signed with the
/// identity provider's new key is accepted as soon as the new set is published.
#[tokio::test]
async fn a_rotated_staff_key_is_fetched_when_a_token_names_it() {
    let (old, new) = (Idp::with_kid("idp-2025"), Idp::with_kid("idp-2026"));
    let jwks = JwksServer::start(old.jwks()).await;
    let app = spawn_app_with(json!({ "staff": { "issuer": STAFF_ISS, "jwks_url": jwks.url } })).await;
    assert_eq!(get(&app, "/audit/summary", Some(&old.token(Some("compliance")))).await.status(), 200);

    jwks.serve(new.jwks());
    assert_eq!(get(&app, "/audit/summary", Some(&new.token(Some("compliance")))).await.status(), 200, "the rotated key is fetched");
    // Unknown kids cannot make it fetch on every request: one refresh per 30 s at most.
    let stranger = Idp::with_kid("not-published");
    jwks.serve(stranger.jwks());
    assert_eq!(get(&app, "/audit/summary", Some(&stranger.token(Some("compliance")))).await.status(), 401, "refresh throttled");
}
