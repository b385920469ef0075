use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{TestApp, brain_mri_hook, ehr, ehr_client, peer, spawn_app, spawn_app_with},
    hooks::{decisions, patient_with_prior_mr, seed_fhir},
};

const SIGN: &str = "neurocds-brain-mri-order-sign";

/// A card the service really returned (the PACS is down, so it is an info card).
async fn a_card(app: &TestApp) -> Value {
    let fhir = peer("NEUROCDS_TEST_FHIR");
    let patient = format!("p{}", Uuid::new_v4().simple());
    seed_fhir(&fhir, None, &patient_with_prior_mr(&patient, "http://127.0.0.1:9/dicom-web")).await;
    let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, None, Some((&fhir, None)))).await;
    assert_eq!(status, 200);
    resp["cards"][0].clone()
}

async fn post_feedback(app: &TestApp, body: &Value) -> u16 {
    let url = format!("{}/feedback", app.service_url(SIGN));
    app.http.post(&url).bearer_auth(crate::helpers::ehr().token(&app.service_url(SIGN), &[])).json(body).send().await.unwrap().status().as_u16()
}

async fn feedback_rows(app: &TestApp) -> Vec<neurocds::audit::StoredFeedback> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use neurocds::audit::schema::feedback::dsl::*;
    let mut conn = app.app.db.conn().await.unwrap();
    feedback.order(seq.asc()).select(neurocds::audit::StoredFeedback::as_select()).load(&mut conn).await.unwrap()
}

/// r148: the feedback endpoint stores the outcome against the decision the card came from.
#[tokio::test]
async fn r148_an_override_with_its_reason_is_stored_against_the_cards_decision() {
    let app = spawn_app().await;
    let card = a_card(&app).await;
    let body = json!({ "feedback": [{
        "card": card["uuid"], "outcome": "overridden",
        "overrideReason": { "reason": { "system": "https://neurocds.org/fhir/CodeSystem/override-reason", "code": "clinical-picture-differs", "display": "The clinical picture points elsewhere" }, "userComment": "known MS" },
        "outcomeTimestamp": "2026-11-26T10:00:00Z" }] });
    assert_eq!(post_feedback(&app, &body).await, 200);
    let rows = feedback_rows(&app).await;
    assert_eq!(rows.len(), 1);
    let decision = &decisions(&app).await[0];
    assert_eq!(rows[0].record.decision_id, Some(decision.record.decision_id));
    assert_eq!(rows[0].record.outcome, "overridden");
    assert_eq!(rows[0].record.override_reason.as_ref().unwrap()["reason"]["code"], "clinical-picture-differs");
}

#[tokio::test]
async fn feedback_that_breaks_the_spec_is_400_and_stores_nothing() {
    let app = spawn_app().await;
    let card = a_card(&app).await;
    let good = json!({ "card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-26T10:00:00Z" });
    let cases = [
        json!({ "feedback": [good.clone(), { "card": "not-a-uuid", "outcome": "accepted", "outcomeTimestamp": "2026-11-26T10:00:00Z" }] }),
        json!({ "feedback": [{ "card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-26T10:00:00Z" }] }),
        json!({ "feedback": [{ "card": card["uuid"], "outcome": "maybe", "outcomeTimestamp": "2026-11-26T10:00:00Z" }] }),
        json!({ "feedback": [{ "card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "yesterday" }] }),
        json!({ "feedback": [] }),
        // cds-fb-3: an empty overrideReason is not a reason.
        json!({ "feedback": [{ "card": card["uuid"], "outcome": "overridden", "overrideReason": {}, "outcomeTimestamp": "2026-11-26T10:00:00Z" }] }),
        json!({ "feedback": [{ "card": card["uuid"], "outcome": "overridden", "overrideReason": { "reason": {} }, "outcomeTimestamp": "2026-11-26T10:00:00Z" }] }),
    ];
    for c in cases {
        assert_eq!(post_feedback(&app, &c).await, 400, "{c}");
    }
    assert!(feedback_rows(&app).await.is_empty());
}

/// Only the client a card was given to may say what became of it: another trusted client's
/// feedback on that card, and feedback on a card nobody was given, are answered alike (404) and
/// store nothing, so no client can move another's override rates.
#[tokio::test]
async fn feedback_on_a_card_given_to_another_client_is_404_and_stores_nothing() {
    const OTHER: &str = "https://other-ehr.test.neurocds.org";
    let app = spawn_app_with(json!({ "trust": { "clients": [ehr_client(json!({})), { "iss": OTHER, "jwks": ehr().jwks() }] } })).await;
    let card = a_card(&app).await;
    let item = |card: &Value| json!({ "feedback": [{ "card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-26T10:00:00Z" }] });
    let url = format!("{}/feedback", app.service_url(SIGN));
    let from_other = ehr().token(&app.service_url(SIGN), &["--iss", OTHER]);
    let r = app.http.post(&url).bearer_auth(from_other).json(&item(&card["uuid"])).send().await.unwrap();
    assert_eq!(r.status(), 404, "another client's card");
    let foreign_text = r.text().await.unwrap();

    let nobodys = json!(Uuid::new_v4());
    let r = app.http.post(&url).bearer_auth(ehr().token(&app.service_url(SIGN), &[])).json(&item(&nobodys)).send().await.unwrap();
    assert_eq!(r.status(), 404, "a card nobody was given");
    let unknown_text = r.text().await.unwrap();
    assert_eq!(foreign_text.replace(card["uuid"].as_str().unwrap(), "X"), unknown_text.replace(nobodys.as_str().unwrap(), "X"), "the two answers tell nothing apart");
    assert!(feedback_rows(&app).await.is_empty());

    assert_eq!(post_feedback(&app, &item(&card["uuid"])).await, 200, "the client it was given to");
}

#[tokio::test]
async fn feedback_without_a_token_is_401() {
    let app = spawn_app().await;
    let url = format!("{}/feedback", app.service_url(SIGN));
    let r = app.http.post(&url).json(&json!({ "feedback": [] })).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
