//! The case report opened from the EHR by a SMART App Launch: the EHR (npm `oidc-provider` on
//! loopback, `scripts/oidc_provider.mjs`, as its SMART authorization server) registers a launch
//! with the card's `appContext`, headless Chromium opens `/launch?iss&launch`, the clinician
//! signs in at the EHR, and neurocds shows the case report — only for the launch's patient.

use serde_json::{Value, json};

use crate::{
    helpers::{OidcProvider, TestApp, brain_mri_hook, ehr_client, free_port, peer, spawn_app_on},
    hooks::{decisions, patient_with_prior_mr, seed_fhir},
    sso::{browse_at, user},
};

const SIGN: &str = "neurocds-brain-mri-order-sign";
const SECRET: &str = "a-smart-client-secret-for-the-tests";

/// An EHR whose authorization server knows neurocds as a confidential SMART app, and neurocds
/// with that EHR registered for SMART launch.
async fn app_launched_from_an_ehr() -> (TestApp, OidcProvider) {
    app_launched_from_an_ehr_with(json!({})).await
}

/// As [`app_launched_from_an_ehr`], with more of the EHR's configuration (its stand-in page).
async fn app_launched_from_an_ehr_with(more: Value) -> (TestApp, OidcProvider) {
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/launch/callback");
    let op = OidcProvider::start_with(
        json!([{ "client_id": "neurocds-smart", "client_secret": SECRET, "redirect_uris": [callback] }]),
        json!([{ "username": "dr.house", "password": "house-pass", "name": "Dr House", "groups": [], "fhirUser": "Practitioner/dr-1" }]),
        more,
    );
    let client = ehr_client(json!({ "smart": { "client_id": "neurocds-smart", "client_secret": SECRET } }));
    let app = spawn_app_on(port, json!({ "trust": { "clients": [client] } })).await;
    (app, op)
}

/// The EHR registers a launch (what its card link click does) and returns the URL it opens.
async fn ehr_launch(app: &TestApp, op: &OidcProvider, patient: &str, app_context: &str) -> String {
    let r: Value = app.http.post(format!("{}/ehr/launches", op.issuer)).json(&json!({ "patient": patient, "appContext": app_context })).send().await.expect("register a launch").json().await.expect("a launch id");
    let iss = format!("{}/fhir", op.issuer);
    let q = url::form_urlencoded::Serializer::new(String::new()).append_pair("iss", &iss).append_pair("launch", r["launch"].as_str().expect("launch")).finish();
    format!("/launch?{q}")
}

#[tokio::test]
async fn a_clinician_launched_from_the_card_sees_that_patients_case_report_and_nothing_else() {
    let (app, op) = app_launched_from_an_ehr().await;
    let body = brain_mri_hook("order-sign", "p-smart", Some(json!({ "patient": null, "priorImaging": null })), None);
    assert_eq!(app.hook(SIGN, &body).await.0, 200);
    let decision = decisions(&app).await[0].record.decision_id;
    let context = neurocds::cds::card::app_context_for(decision);
    let own = ehr_launch(&app, &op, "p-smart", &context).await;
    let other = ehr_launch(&app, &op, "p-someone-else", &context).await;
    let clinician = user("dr.house", "house-pass");
    let results = browse_at(
        &app,
        &op,
        json!([
            { "kind": "sign-in", "start": own, "user": clinician, "visit": ["/audit"], "screenshot": "smart-launch-case-report.png" },
            { "kind": "sign-in", "start": other, "user": clinician },
        ]),
    )
    .await;
    let (launched, wrong_patient) = (&results[0], &results[1]);
    assert_eq!(launched["at_provider"], true, "the EHR's authorization server asked who is there: {launched:#}");
    let report = &launched["after_sign_in"];
    assert_eq!((report["url"].as_str(), report["status"].as_u64()), (Some(format!("{}/reports/{decision}", app.base).as_str()), Some(200)), "{report:#}");
    assert!(report["h1"].as_str().is_some_and(|h| h.starts_with("Case report")), "{report:#}");
    // The launch opens that report, not the staff pages.
    let log = &launched["pages"][0];
    assert!(log["url"].as_str().is_some_and(|u| u.contains("/login")), "the decision log still asks for staff sign-in: {log:#}");
    // A launch for another patient does not open this patient's report.
    let refused = &wrong_patient["after_sign_in"];
    assert_eq!((refused["status"].as_u64(), refused["h1"].as_str()), (Some(403), Some("Not for your role")), "{refused:#}");
    assert!(refused["text"].as_str().is_some_and(|t| t.contains("not about the patient")), "{refused:#}");
}

#[tokio::test]
async fn a_launch_from_a_fhir_server_of_no_registered_ehr_is_refused_without_a_request() {
    let (app, _op) = app_launched_from_an_ehr().await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
    let r = no_redirects.get(format!("{}/launch?iss=https%3A%2F%2Ffhir.elsewhere.example%2Fr4&launch=x", app.base)).send().await.expect("GET /launch");
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap_or_default();
    assert!(text.contains("not registered") && !text.contains("elsewhere.example"), "a refusal that names no target: {text}");
}

#[tokio::test]
async fn on_the_ehr_page_the_cards_case_report_link_launches_the_report_for_that_patient() {
    let cards = tempfile::NamedTempFile::new().expect("a cards file");
    let (app, op) = app_launched_from_an_ehr_with(json!({ "ehr": { "cards_file": cards.path() } })).await;
    // A real card: the prior MR sits on a PACS that does not answer, so it is an info card.
    let fhir = peer("NEUROCDS_TEST_FHIR");
    let patient = format!("p{}", uuid::Uuid::new_v4().simple());
    seed_fhir(&fhir, None, &patient_with_prior_mr(&patient, "http://127.0.0.1:9/dicom-web")).await;
    let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, None, Some((&fhir, None)))).await;
    assert_eq!(status, 200, "{resp}");
    let link = &resp["cards"][0]["links"][0];
    let decision = decisions(&app).await[0].record.decision_id;
    assert_eq!((link["type"].as_str(), link["url"].as_str()), (Some("smart"), Some(format!("{}/launch", app.base).as_str())), "{link:#}");
    assert_eq!(link["appContext"].as_str().and_then(neurocds::cds::card::decision_in), Some(decision), "{link:#}");
    // The EHR shows the card; the clinician clicks its link.
    let shown = json!([{ "patient": { "id": patient, "name": "Demo, Patient" }, "order": "MRI brain with and without contrast", "cards": resp["cards"] }]);
    std::fs::write(cards.path(), shown.to_string()).expect("write the EHR's cards");
    let results = browse_at(
        &app,
        &op,
        json!([{ "kind": "ehr-launch", "ehr": format!("{}/ehr", op.issuer), "user": user("dr.house", "house-pass"), "screenshot_ehr": "ehr-cards.png", "screenshot": "ehr-launched-case-report.png" }]),
    )
    .await;
    let r = &results[0];
    assert_eq!(r["ehr"]["cards"][0]["smart_links"].as_array().map(Vec::len), Some(1), "{r:#}");
    assert_eq!(r["at_provider"], true);
    let report = &r["after_sign_in"];
    assert_eq!((report["url"].as_str(), report["status"].as_u64()), (Some(format!("{}/reports/{decision}", app.base).as_str()), Some(200)), "{report:#}");
}
