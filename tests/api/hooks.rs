use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_no_null_or_empty, brain_mri_hook, peer, spawn_app, spawn_app_with};

const SIGN: &str = "neurocds-brain-mri-order-sign";
const SELECT: &str = "neurocds-brain-mri-order-select";

pub async fn decisions(app: &TestApp) -> Vec<neurocds::audit::StoredDecision> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use neurocds::audit::schema::decisions::dsl::*;
    let mut conn = app.app.db.conn().await.unwrap();
    let mut rows = decisions.order(seq.asc()).select(neurocds::audit::StoredDecision::as_select()).load(&mut conn).await.unwrap();
    // As the compliance API reads them: the shared content put back, the report stamped.
    app.app.db.attach_contents(&mut rows).await.unwrap();
    rows.iter_mut().for_each(neurocds::fhir::report::stamp_stored);
    rows
}

/// The decision rows as stored, without their shared content.
pub async fn raw_decisions(app: &TestApp) -> Vec<neurocds::audit::StoredDecision> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use neurocds::audit::schema::decisions::dsl::*;
    let mut conn = app.app.db.conn().await.unwrap();
    decisions.order(seq.asc()).select(neurocds::audit::StoredDecision::as_select()).load(&mut conn).await.unwrap()
}

/// PUTs resources on a FHIR server (the test EHR's), with its bearer token when it needs one.
pub async fn seed_fhir(base: &str, token: Option<&str>, resources: &[Value]) {
    let http = reqwest::Client::new();
    for r in resources {
        let url = format!("{base}/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        let mut req = http.put(&url).header("Content-Type", "application/fhir+json").body(r.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "seeding {url}: {} {}", resp.status(), resp.text().await.unwrap_or_default());
    }
}

/// A patient with one prior brain MR whose DICOMweb endpoint is `dicomweb`.
pub fn patient_with_prior_mr(patient: &str, dicomweb: &str) -> Vec<Value> {
    let study_uid = format!("2.25.{}", Uuid::new_v4().as_u128());
    vec![
        json!({ "resourceType": "Patient", "id": patient, "gender": "female", "birthDate": "1960-01-01" }),
        json!({ "resourceType": "Endpoint", "id": format!("pacs-{patient}"), "status": "active",
                "connectionType": { "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "dicom-wado-rs" },
                "payloadType": [{ "text": "DICOM" }], "address": dicomweb }),
        json!({ "resourceType": "ImagingStudy", "id": format!("mr-{patient}"), "status": "available",
                "subject": { "reference": format!("Patient/{patient}") },
                "identifier": [{ "system": "urn:dicom:uid", "value": format!("urn:oid:{study_uid}") }],
                "modality": [{ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR" }],
                "started": "2026-09-01T10:00:00Z", "description": "MRI BRAIN WITH AND WITHOUT CONTRAST",
                "series": [
                    { "uid": format!("{study_uid}.1"), "number": 1, "modality": { "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR" }, "description": "t2_tse_tra" },
                    { "uid": format!("{study_uid}.2"), "number": 2, "modality": { "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR" }, "description": "t1_mprage_tra_post" }
                ],
                "endpoint": [{ "reference": format!("Endpoint/pacs-{patient}") }] }),
    ]
}

/// r74, r77: no brain MRI among the orders → 200 with an empty cards array.
#[tokio::test]
async fn r74_r77_an_order_that_is_not_a_brain_mri_gets_an_empty_cards_array() {
    let app = spawn_app().await;
    let mut body = brain_mri_hook("order-sign", "p1", None, None);
    body["context"]["draftOrders"]["entry"][0]["resource"]["code"]["coding"][0]["code"] = json!("73721"); // MRI knee
    let (status, resp) = app.hook(SIGN, &body).await;
    assert_eq!(status, 200);
    assert_eq!(resp, json!({ "cards": [] }));
    assert!(decisions(&app).await.is_empty(), "no decision is recorded for orders we do not analyse");
}

#[tokio::test]
async fn order_select_only_considers_the_selected_orders() {
    let app = spawn_app().await;
    let mut body = brain_mri_hook("order-select", "p1", Some(json!({ "patient": null, "priorImaging": null })), None);
    body["context"]["selections"] = json!(["ServiceRequest/something-else"]);
    let (status, resp) = app.hook(SELECT, &body).await;
    assert_eq!((status, resp), (200, json!({ "cards": [] })));
}

/// r16: the service endpoint is {baseUrl}/cds-services/{id}; another id is not a service.
#[tokio::test]
async fn r16_an_unknown_service_id_is_404_with_an_operation_outcome() {
    let app = spawn_app().await;
    let (status, body) = app.hook("no-such-service", &brain_mri_hook("order-sign", "p1", None, None)).await;
    assert_eq!(status, 404);
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "not-found");
}

#[tokio::test]
async fn malformed_requests_are_400_with_an_operation_outcome_naming_the_problem() {
    let app = spawn_app().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "hook": "order-sign" }), "not valid CDS Hooks JSON"),
        (brain_mri_hook("order-select", "p1", None, None), "`hook` is `order-select`"),
        ({ let mut b = brain_mri_hook("order-sign", "p1", None, None); b["context"].as_object_mut().unwrap().remove("patientId"); b }, "context.patientId"),
        ({ let mut b = brain_mri_hook("order-sign", "p1", None, None); b["fhirAuthorization"] = json!({ "access_token": "x", "token_type": "Bearer" }); b }, "fhirAuthorization"),
        ({ let mut b = brain_mri_hook("order-sign", "p1", None, None); b["context"]["userId"] = json!("Patient/p1"); b }, "context.userId"),
    ];
    for (body, expected) in cases {
        let (status, resp) = app.hook(SIGN, &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(resp["resourceType"], "OperationOutcome");
        let d = resp["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(d.contains(expected), "{d:?} should mention {expected:?}");
    }
    let r = app.http.post(app.service_url(SIGN)).bearer_auth(app.token_for(SIGN)).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_hook_without_a_valid_token_is_401_and_records_nothing() {
    let app = spawn_app().await;
    let body = brain_mri_hook("order-sign", "p1", None, None);
    let no_token = app.http.post(app.service_url(SIGN)).json(&body).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let other_aud = crate::helpers::ehr().token("https://elsewhere.example/cds-services", &[]);
    let wrong = app.http.post(app.service_url(SIGN)).bearer_auth(other_aud).json(&body).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(decisions(&app).await.is_empty());
}

/// r54: data neither prefetched nor fetchable → 412 with an OperationOutcome.
#[tokio::test]
async fn r54_missing_prefetch_without_a_fhir_server_is_412() {
    let app = spawn_app().await;
    let (status, body) = app.hook(SIGN, &brain_mri_hook("order-sign", "p1", None, None)).await;
    assert_eq!(status, 412);
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(body["issue"][0]["diagnostics"].as_str().unwrap().contains("prefetch"));
}

/// A prefetch key sent as null means "the EHR looked and found nothing": no prior MR, no card,
/// one audit row saying why.
#[tokio::test]
async fn null_prefetch_means_no_prior_mr_which_is_audited_without_a_card() {
    let app = spawn_app().await;
    let body = brain_mri_hook("order-sign", "p1", Some(json!({ "patient": null, "priorImaging": null })), None);
    let (status, resp) = app.hook(SIGN, &body).await;
    assert_eq!((status, resp), (200, json!({ "cards": [] })));
    let rows = decisions(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].record.outcome, "unavailable");
    assert!(rows[0].record.reason.as_deref().unwrap().contains("no prior brain MR"));
    assert_eq!(rows[0].record.hook_instance, body["hookInstance"].as_str().unwrap());
    assert_eq!(rows[0].record.client_iss, crate::helpers::ISS);
}

/// The prefetch template stays inside the spec's query subset (no `_include`), so an EHR sends
/// the studies without their Endpoints: the service reads each referenced Endpoint from the
/// FHIR server and goes to the PACS it names (here one that is down, so the card is an info card
/// whose audited reason is the PACS's, not "no DICOMweb endpoint").
#[tokio::test]
async fn endpoints_missing_from_the_prefetch_are_read_by_reference_from_the_fhir_server() {
    let app = spawn_app().await;
    let fhir = peer("NEUROCDS_TEST_FHIR");
    let patient = format!("p{}", Uuid::new_v4().simple());
    let resources = patient_with_prior_mr(&patient, "http://127.0.0.1:9/dicom-web");
    seed_fhir(&fhir, None, &resources).await;
    let study_only = json!({ "resourceType": "Bundle", "type": "searchset", "entry": [{ "resource": resources[2] }] });
    let body = brain_mri_hook("order-sign", &patient, Some(json!({ "patient": resources[0], "priorImaging": study_only })), Some((&fhir, None)));
    let (status, resp) = app.hook(SIGN, &body).await;
    assert_eq!(status, 200, "{resp}");
    let rows = decisions(&app).await;
    assert_eq!(rows.len(), 1);
    let reason = rows[0].record.reason.clone().unwrap_or_default();
    assert_eq!(rows[0].record.outcome, "unavailable", "{reason}");
    assert!(reason.contains("request failed") && reason.contains("127.0.0.1:9"), "the PACS the Endpoint names was asked: {reason}");
}

/// r52, r60, r61: an OperationOutcome in prefetch is a failed fetch; the service fetches from
/// the EHR's FHIR server with the bearer token the EHR lent. Here the PACS is down, so the
/// order-sign card says the analysis is unavailable, and the decision is audited.
#[tokio::test]
async fn r52_r61_failed_prefetch_is_fetched_with_the_ehr_token_and_a_pacs_outage_gives_an_info_card() {
    let app = spawn_app().await;
    let fhir = peer("NEUROCDS_TEST_FHIR_AUTH");
    let token = peer("NEUROCDS_TEST_FHIR_TOKEN");
    let patient = format!("p{}", Uuid::new_v4().simple());
    seed_fhir(&fhir, Some(&token), &patient_with_prior_mr(&patient, "http://127.0.0.1:9/dicom-web")).await;
    let failed = json!({ "resourceType": "OperationOutcome", "issue": [{ "severity": "error", "code": "timeout" }] });
    let body = brain_mri_hook("order-sign", &patient, Some(json!({ "priorImaging": failed })), Some((&fhir, Some(&token))));
    let (status, resp) = app.hook(SIGN, &body).await;
    assert_eq!(status, 200, "{resp}");
    let cards = resp["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{resp}");
    let card = &cards[0];
    assert_eq!(card["indicator"], "info");
    assert!(card["summary"].as_str().unwrap().contains("unavailable"), "{card}");
    assert!(card.get("suggestions").is_none(), "no recommendation, so nothing to accept");
    assert_no_null_or_empty(&resp, "response");
    let rows = decisions(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].record.outcome, "unavailable");
    assert_eq!(rows[0].record.card_uuid.map(|u| u.to_string()).as_deref(), card["uuid"].as_str());
    assert!(rows[0].record.study_uid.is_some());
}

#[tokio::test]
async fn a_fhir_server_that_refuses_the_token_gives_412() {
    let app = spawn_app().await;
    let fhir = peer("NEUROCDS_TEST_FHIR_AUTH");
    let body = brain_mri_hook("order-sign", "p1", None, Some((&fhir, Some("not-the-token"))));
    let (status, resp) = app.hook(SIGN, &body).await;
    assert_eq!(status, 412, "{resp}");
    assert!(resp["issue"][0]["diagnostics"].as_str().unwrap().contains("HTTP 401"));
}

/// Without fhirAuthorization the FHIR server is asked without a token (an open test server).
#[tokio::test]
async fn the_fhir_fallback_works_without_a_token_against_an_open_server() {
    let app = spawn_app().await;
    let fhir = peer("NEUROCDS_TEST_FHIR");
    let patient = format!("p{}", Uuid::new_v4().simple());
    seed_fhir(&fhir, None, &patient_with_prior_mr(&patient, "http://127.0.0.1:9/dicom-web")).await;
    let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, None, Some((&fhir, None)))).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(decisions(&app).await[0].record.outcome, "unavailable");
}

/// order-select never waits for the analysis: it answers at once, with no card by default, or
/// an "analysis running" info card when configured.
#[tokio::test]
async fn order_select_starts_the_analysis_and_answers_without_waiting() {
    for (answer, expected_cards) in [("none", 0), ("info-card", 1)] {
        let app = spawn_app_with(json!({ "hooks": { "order_select_answer": answer } })).await;
        let fhir = peer("NEUROCDS_TEST_FHIR");
        let patient = format!("p{}", Uuid::new_v4().simple());
        // A PACS that never answers: the analysis cannot finish, order-select must not care.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let pacs = format!("http://{}/dicom-web", silent.local_addr().unwrap());
        seed_fhir(&fhir, None, &patient_with_prior_mr(&patient, &pacs)).await;
        let (status, resp) = app.hook(SELECT, &brain_mri_hook("order-select", &patient, None, Some((&fhir, None)))).await;
        assert_eq!(status, 200, "{resp}");
        assert_eq!(resp["cards"].as_array().unwrap().len(), expected_cards, "{answer}: {resp}");
        assert_eq!(decisions(&app).await[0].record.outcome, "pending");
    }
}

/// Silent mode: the client's hooks are analysed and audited, and answered with no card.
#[tokio::test]
async fn a_silent_client_gets_no_card_but_the_decision_is_audited() {
    let app = spawn_app_with(json!({ "trust": { "clients": [crate::helpers::ehr_client(json!({ "silent": true }))] } })).await;
    let fhir = peer("NEUROCDS_TEST_FHIR");
    let patient = format!("p{}", Uuid::new_v4().simple());
    seed_fhir(&fhir, None, &patient_with_prior_mr(&patient, "http://127.0.0.1:9/dicom-web")).await;
    let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, None, Some((&fhir, None)))).await;
    assert_eq!((status, resp), (200, json!({ "cards": [] })));
    let rows = decisions(&app).await;
    assert!(rows[0].record.silent);
    assert!(rows[0].record.card_uuid.is_none());
}

/// A graceful stop (what SIGTERM does) lets a hook already in flight finish, answered and
/// audited, and takes no new connections.
#[tokio::test]
async fn a_graceful_stop_lets_a_hook_in_flight_finish_and_be_audited() {
    let app = spawn_app_with(json!({ "hooks": { "order_sign_budget_ms": 1500 } })).await;
    let fhir = peer("NEUROCDS_TEST_FHIR");
    let patient = format!("p{}", Uuid::new_v4().simple());
    // A PACS that never answers keeps order-sign busy for its whole budget.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pacs = format!("http://{}/dicom-web", silent.local_addr().unwrap());
    seed_fhir(&fhir, None, &patient_with_prior_mr(&patient, &pacs)).await;
    let body = brain_mri_hook("order-sign", &patient, None, Some((&fhir, None)));

    let stop_while_in_flight = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        app.server.stop(true).await;
    };
    let ((status, resp), ()) = tokio::join!(app.hook(SIGN, &body), stop_while_in_flight);

    assert_eq!(status, 200, "the hook in flight is answered: {resp}");
    let rows = decisions(&app).await;
    assert_eq!(rows.len(), 1, "and its decision is in the audit trail");
    assert_eq!(rows[0].record.hook, "order-sign");
    let after = reqwest::Client::new().get(format!("{}/healthz", app.base)).send().await;
    assert!(after.is_err(), "a stopped server takes no new connections: {after:?}");
}

/// A hook call whose prefetch is far beyond actix's 256 KiB default is read (the limit is
/// `server.max_request_bytes`); one over the configured limit gets 413.
#[tokio::test]
async fn a_megabyte_prefetch_is_accepted_and_a_body_over_the_configured_limit_gets_413() {
    let patient = format!("p{}", Uuid::new_v4().simple());
    let big = "x".repeat(1024 * 1024);
    let prefetch = json!({
        "patient": { "resourceType": "Patient", "id": patient, "text": { "status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{big}</div>") } },
        "priorImaging": { "resourceType": "Bundle", "type": "searchset", "entry": [] }
    });
    let body = brain_mri_hook("order-sign", &patient, Some(prefetch), None);
    let app = spawn_app().await;
    let (status, resp) = app.hook(SIGN, &body).await;
    assert_eq!(status, 200, "{resp}");

    let small = spawn_app_with(json!({ "server": { "max_request_bytes": 65536 } })).await;
    let (status, _) = small.hook(SIGN, &body).await;
    assert_eq!(status, 413);
}
