//! Model monitoring through the running service: analyses recorded in the decision log are
//! compared with the shipped ensemble's validation cohort (`/audit/monitoring`), a drift beyond
//! the threshold turns `/readyz` to "degraded" while it stays ready, and the figures are
//! Prometheus gauges.
//!
//! The decisions are appended with the audit trail's own API (the hooks that record them in
//! production are exercised in `pages`, whose browser test reads the page after real analyses).

use std::sync::Arc;

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use neurocds::audit::{DecisionContent, records::{DecisionRecord, FeedbackRecord, now_micros}};

use crate::helpers::{Idp, STAFF_ISS, TestApp, ehr, spawn_app_with};

async fn app(idp: &Idp, monitoring: Value) -> TestApp {
    spawn_app_with(json!({
        "staff": { "issuer": STAFF_ISS, "jwks": idp.jwks() },
        "model": { "manifest": "models/ensemble/manifest.json" },
        "monitoring": monitoring,
    }))
    .await
}

/// One decision on patient `n`'s study, as a hook on a finished analysis records it.
fn decision(model_version: &str, n: u32, hook: &str, p: f64) -> DecisionRecord {
    let recommendation = if p >= 0.779 { "biopsy" } else if p <= 0.226 { "resection-planning" } else { "tumour-board" };
    DecisionRecord {
        decision_id: Uuid::new_v4(),
        recorded_at: now_micros(),
        hook: hook.into(),
        hook_instance: Uuid::new_v4().to_string(),
        service_id: format!("neurocds-brain-mri-{hook}"),
        client_iss: "https://ehr.test.neurocds.org".into(),
        user_ref: Some("Practitioner/dr-a".into()),
        patient_ref: format!("Patient/m{n}"),
        order_refs: json!(["ServiceRequest/o"]),
        study_uid: Some(format!("1.2.826.0.1.3680043.10.1.{n}")),
        series: Value::Null,
        model_version: Some(model_version.into()),
        member_hashes: json!([]),
        preprocessing_version: Some("neurocds-prep/2".into()),
        member_probabilities: json!([p, p, p, p, p]),
        ensemble_probability: Some(p),
        calibrated_probability: Some(p),
        member_spread: Some(0.02),
        recommendation: Some(recommendation.into()),
        outcome: "recommended".into(),
        silent: false,
        reason: None,
        card_uuid: Some(Uuid::new_v4()),
        stage_timings_ms: json!({}),
        report: None,
        content_sha256: None,
        trace_id: None,
    }
}

fn content(n: u32) -> Arc<DecisionContent> {
    Arc::new(DecisionContent::new(json!({
        "series": { "study": n },
        "report": null,
        "monitoring": { "reason_class": "none", "inputs": { "manufacturer": "SIEMENS", "t1c_acquisition": "3D", "t1c_recognition": "T1 timing + contrast agent", "t2_recognition": "T2 timing", "lesion_volume_ml": 14.0, "t1c_lesion_mean": 4.2 } },
    })))
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = app.http.get(format!("{}{path}", app.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn quantity<'a>(version: &'a Value, name: &str) -> &'a Value {
    version["quantities"].as_array().and_then(|q| q.iter().find(|q| q["name"] == name)).unwrap_or_else(|| panic!("no {name} in {version}"))
}

#[tokio::test]
async fn estimates_piling_up_at_one_end_drift_from_the_validation_cohort_and_readyz_says_degraded_but_stays_ready() {
    let idp = Idp::new();
    let app = app(&idp, json!({ "min_analyses": 20, "psi_alert": 0.25 })).await;
    let version = format!("{}@{}", app.app.model.name, app.app.model.version);
    // 25 analyses, every one estimated at P(lymphoma) ≈ 0.95: biopsy advice for all, far from
    // the validation cohort's spread of estimates. Each study has order-select and order-sign
    // decisions: an analysis counts once. One clinician overrides a biopsy card.
    let mut cards = Vec::new();
    for n in 0..25 {
        for hook in ["order-select", "order-sign"] {
            let d = decision(&version, n, hook, 0.95 - 0.001 * n as f64);
            cards.push((d.decision_id, d.card_uuid.expect("a card")));
            app.app.db.append_decision_with(d, content(n)).await.expect("append a decision");
        }
    }
    let (decision_id, card_uuid) = cards[1];
    let at = OffsetDateTime::now_utc();
    let feedback = FeedbackRecord { feedback_id: Uuid::new_v4(), recorded_at: now_micros(), card_uuid, decision_id: Some(decision_id), service_id: "neurocds-brain-mri-order-sign".into(), client_iss: "https://ehr.test.neurocds.org".into(), outcome: "overridden".into(), outcome_at: at, accepted_suggestions: json!([]), override_reason: None };
    app.app.db.append_feedback(&feedback).await.expect("append feedback");

    let staff = idp.token(Some("compliance"));
    let (status, figures) = get(&app, "/audit/monitoring", Some(&staff)).await;
    assert_eq!(status, 200, "{figures}");
    let loaded = &figures["versions"][0];
    assert_eq!((loaded["model_version"].as_str(), loaded["loaded"].as_bool()), (Some(version.as_str()), Some(true)));
    assert_eq!(loaded["analyses"], 25, "each study once, however many hooks");
    assert_eq!(figures["validation_studies"], 761);
    let probability = quantity(loaded, "calibrated_probability");
    assert_eq!((probability["against"].as_str(), probability["reference_n"].as_u64(), probability["live_n"].as_u64()), (Some("validation"), Some(761), Some(25)));
    assert_eq!(probability["status"], "drift", "{probability}");
    assert!(probability["psi"].as_f64() > Some(1.0) && probability["ks"].as_f64() > Some(0.5), "{probability}");
    let advice = quantity(loaded, "advice");
    let biopsy = advice["bins"].as_array().and_then(|b| b.iter().find(|b| b["label"] == "biopsy")).expect("a biopsy bin");
    assert_eq!(biopsy["live"], 25);
    // Inputs have no earlier period here: recorded, not judged.
    let vendor = quantity(loaded, "vendor");
    assert_eq!((vendor["against"].as_str(), vendor["live_n"].as_u64(), vendor["status"].as_str()), (Some("baseline"), Some(25), Some("too-few")));
    assert_eq!(quantity(loaded, "lesion_volume_ml")["outside_training_range"], 0.0);
    let overrides = loaded["overrides"].as_array().expect("overrides");
    let biopsy = overrides.iter().find(|o| o["recommendation"] == "biopsy").expect("biopsy");
    assert_eq!((biopsy["decisions"].as_u64(), biopsy["overridden"].as_u64()), (Some(50), Some(1)));
    let alerts: Vec<&str> = figures["alerts"].as_array().expect("alerts").iter().filter_map(Value::as_str).collect();
    assert!(alerts.iter().any(|a| a.starts_with(&format!("{version}: calibrated_probability PSI "))), "{alerts:?}");

    // Ready, but degraded, and why; the gauges say the same.
    let (status, ready) = get(&app, "/readyz", None).await;
    assert_eq!(status, 200, "drift never makes the service unready: {ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["monitoring"]["status"], "degraded");
    assert_eq!(ready["monitoring"]["alerts"].as_array().map(Vec::len), Some(alerts.len()));
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.expect("scrape").text().await.expect("text");
    assert!(text.contains(&format!(r#"neurocds_model_window_analyses{{model_version="{version}"}} 25"#)), "{text}");
    assert!(text.contains(&format!(r#"neurocds_model_drift_alerts{{model_version="{version}"}} {}"#, alerts.len())), "{text}");
    assert!(text.contains(&format!(r#"neurocds_model_drift_psi{{against="validation",model_version="{version}",quantity="calibrated_probability"}}"#)), "{text}");
    assert!(text.contains(&format!(r#"neurocds_model_override_ratio{{model_version="{version}",recommendation="biopsy"}} 1"#)), "{text}");
    assert!(!text.contains("Patient/m"), "no patient in a label");
}

#[tokio::test]
async fn without_enough_analyses_nothing_alerts_and_only_staff_read_the_figures() {
    let idp = Idp::new();
    let app = app(&idp, json!({})).await;
    let version = format!("{}@{}", app.app.model.name, app.app.model.version);
    for n in 0..5 {
        app.app.db.append_decision_with(decision(&version, n, "order-sign", 0.97), content(n)).await.expect("append a decision");
    }
    let (status, figures) = get(&app, "/audit/monitoring", Some(&idp.token(Some("neuro-oncology")))).await;
    assert_eq!(status, 200);
    assert_eq!(figures["versions"][0]["analyses"], 5);
    assert_eq!(quantity(&figures["versions"][0], "calibrated_probability")["status"], "too-few", "5 of the 50 needed");
    assert_eq!(figures["alerts"], json!([]));
    let (_, ready) = get(&app, "/readyz", None).await;
    assert_eq!(ready["status"], "ready");
    // Neither an anonymous caller nor the EHR's token opens it.
    let (status, refusal) = get(&app, "/audit/monitoring", None).await;
    assert_eq!((status, refusal["resourceType"].as_str()), (401, Some("OperationOutcome")));
    let ehr_token = ehr().token(&format!("{}/audit/monitoring", app.base), &[]);
    assert_eq!(get(&app, "/audit/monitoring", Some(&ehr_token)).await.0, 401);
}
