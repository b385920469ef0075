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
