//! Warm before anyone asks: a study arriving in the PACS is analysed before the order, through
//! `POST /notifications/imaging-study` — sent here by `scripts/orthanc_feed.py` following the
//! real Orthanc's change feed — so that order-select finds the result ready.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    e2e::{arrivals_cohort, load_from, pick_from},
    helpers::{TestApp, brain_mri_hook, ehr, peer, python, spawn_app_with, ISS},
    hooks::decisions,
};

const SELECT: &str = "neurocds-brain-mri-order-select";
const NOTIFY: &str = "/notifications/imaging-study";

/// Removes a study from the test Orthanc, so that loading it again is an arrival.
async fn forget_in_orthanc(study_uid: &str) {
    let orthanc = peer("NEUROCDS_TEST_ORTHANC");
    let http = reqwest::Client::new();
    let found: Vec<Value> = http.post(format!("{orthanc}/tools/lookup")).body(study_uid.to_owned()).send().await.unwrap().json().await.unwrap();
    for hit in found.iter().filter(|h| h["Type"] == "Study") {
        let id = hit["ID"].as_str().unwrap();
        assert!(http.delete(format!("{orthanc}/studies/{id}")).send().await.unwrap().status().is_success());
    }
}

async fn last_change() -> i64 {
    let orthanc = peer("NEUROCDS_TEST_ORTHANC");
    let page: Value = reqwest::get(format!("{orthanc}/changes?last")).await.unwrap().json().await.unwrap();
    page["Last"].as_i64().unwrap_or(0)
}

/// `scripts/orthanc_feed.py --once` from `since` (then from where it stopped, in `state`); the
/// JSON lines it printed.
fn feed_once(neurocds: &str, since: i64, state: &std::path::Path) -> Vec<Value> {
    let mut cmd = Command::new(python().join("tools-venv/bin/python"));
    cmd.args(["scripts/orthanc_feed.py", "--once", "--orthanc", &peer("NEUROCDS_TEST_ORTHANC"), "--fhir", &peer("NEUROCDS_TEST_FHIR"), "--neurocds", neurocds, "--iss", ISS])
        .arg("--keys")
        .arg(ehr().keys_dir())
        .arg("--state")
        .arg(state);
    if !state.exists() {
        cmd.args(["--since", &since.to_string()]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "orthanc_feed.py: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[tokio::test]
async fn a_study_arriving_in_orthanc_is_analysed_before_the_order_and_order_select_finds_it_ready() {
    let app = spawn_app_with(json!({ "worker": { "poll_ms": 200 } })).await;
    let row = pick_from(arrivals_cohort(), 0);
    let study_uid = row["study_uid"].as_str().unwrap().to_owned();
    forget_in_orthanc(&study_uid).await;
    let since = last_change().await;
    let patient = load_from(arrivals_cohort(), &row);

    // Orthanc declares the study stable a second after its last instance; the feed announces it.
    let state = std::env::temp_dir().join(format!("neurocds-feed-{}.state", uuid::Uuid::new_v4()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let announced = loop {
        // Off the test's runtime: the service's connections are made on it.
        let (base, state_file) = (app.base.clone(), state.clone());
        let lines = tokio::task::spawn_blocking(move || feed_once(&base, since, &state_file)).await.unwrap();
        if let Some(line) = lines.into_iter().find(|l| l["study_uid"] == study_uid.as_str()) {
            break line;
        }
        assert!(Instant::now() < deadline, "the feed never announced the study");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(announced["status"] == "queued" || announced["status"] == "ready", "{announced}");

    // The analysis runs with nobody waiting for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !analysed(&app, &study_uid).await {
        assert!(Instant::now() < deadline, "the announced study was not analysed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The order: order-select (which never waits) already has the result, and shows its card.
    let select = brain_mri_hook("order-select", &patient, None, Some((&peer("NEUROCDS_TEST_FHIR"), None)));
    let (status, resp) = app.hook(SELECT, &select).await;
    assert_eq!(status, 200, "{resp}");
    let rows = decisions(&app).await;
    let decision = rows.last().unwrap();
    assert_ne!(decision.record.outcome, "pending", "order-select found the analysis ready: {:?}", decision.record.reason);
    assert_eq!(decision.record.study_uid.as_deref(), Some(study_uid.as_str()));
    assert!(resp["cards"].as_array().is_some_and(|c| !c.is_empty()), "{resp}");
}

async fn analysed(app: &TestApp, study_uid: &str) -> bool {
    use diesel::{QueryableByName, sql_types::BigInt};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(&app.db_url).await.unwrap();
    let n: Vec<N> = diesel::sql_query("SELECT count(*) AS n FROM analyses WHERE study_uid = $1 AND state = 'done'")
        .bind::<diesel::sql_types::Text, _>(study_uid)
        .load(&mut conn)
        .await
        .unwrap();
    <[N]>::first(&n).is_some_and(|n| n.n > 0)
}

/// Only trusted clients may announce studies; a study that is not a brain MR, or whose subject
/// is not a patient, is named as skipped and not queued.
#[tokio::test]
async fn a_notification_needs_a_trusted_token_and_studies_outside_the_question_are_skipped() {
    let app = spawn_app_with(json!({ "worker": { "embedded": false } })).await;
    let url = format!("{}{NOTIFY}", app.base);
    let ct = json!({ "resourceType": "ImagingStudy", "id": "ct", "status": "available", "subject": { "reference": "Patient/p-1" },
        "identifier": [{ "system": "urn:dicom:uid", "value": "urn:oid:2.25.77" }],
        "modality": [{ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT" }], "description": "CT HEAD" });
    let group = json!({ "resourceType": "ImagingStudy", "id": "g", "status": "available", "subject": { "reference": "Group/g-1" },
        "modality": [{ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR" }], "description": "MRI BRAIN" });
    let bundle = json!({ "resourceType": "Bundle", "type": "collection", "entry": [{ "resource": ct }, { "resource": group }] });
    let unsigned = app.http.post(&url).json(&bundle).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let r = app.http.post(&url).bearer_auth(ehr().token(&url, &[])).json(&bundle).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    let statuses: Vec<&str> = body["studies"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["skipped", "skipped"], "{body}");
    assert_eq!(app.app.pipeline.queue().depth().await.unwrap().queued, 0);
    let not_fhir = app.http.post(&url).bearer_auth(ehr().token(&url, &[])).json(&json!({ "resourceType": "Patient" })).send().await.unwrap();
    assert_eq!(not_fhir.status(), 400);
}
