//! End to end through the real peers: synthetic DICOM studies in Orthanc, their records in the
//! FHIR server, signed EHR tokens, PostgreSQL and the shipped ensemble.

use std::{path::PathBuf, process::Command, sync::OnceLock};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, brain_mri_hook, peer, python, spawn_app_with},
    hooks::decisions,
};

const SELECT: &str = "neurocds-brain-mri-order-select";
const SIGN: &str = "neurocds-brain-mri-order-sign";

pub struct Cohort {
    dir: PathBuf,
    rows: Vec<Value>,
}

/// A small synthetic cohort written once per test run with `neurocds synth`.
fn cohort() -> &'static Cohort {
    static C: OnceLock<Cohort> = OnceLock::new();
    C.get_or_init(|| synth("tumours", &["--patients", "16", "--seed", "4242"]))
}

/// Studies a hospital sends that are not a GBM-versus-lymphoma question: normal brains and
/// extra-axial masses, with the full normal enhancing anatomy.
fn out_of_scope_cohort() -> &'static Cohort {
    static C: OnceLock<Cohort> = OnceLock::new();
    C.get_or_init(|| synth("out-of-scope", &["--patients", "6", "--seed", "4343", "--normal-fraction", "0.5", "--extra-axial-fraction", "0.5"]))
}

/// Two tumour studies of their own, for suites that point them at misbehaving peers.
pub fn small_cohort() -> &'static Cohort {
    static C: OnceLock<Cohort> = OnceLock::new();
    C.get_or_init(|| synth("small", &["--patients", "2", "--seed", "4545"]))
}

/// Studies of their own, for the test that deletes one from Orthanc and sends it again (so that
/// Orthanc's change feed sees it arrive).
pub fn arrivals_cohort() -> &'static Cohort {
    static C: OnceLock<Cohort> = OnceLock::new();
    C.get_or_init(|| synth("arrivals", &["--patients", "2", "--seed", "4646"]))
}

/// The `nth` tumour (not a mimic) of `cohort`.
pub fn pick_from(cohort: &Cohort, nth: usize) -> Value {
    cohort.rows.iter().filter(|r| r["mimic"] == false).nth(nth).cloned().expect("a tumour in the cohort")
}

/// `neurocds-lab synth --quiet --out DIR ARGS`, through the lab's library (a dev-dependency:
/// the service binary never links it).
fn synth(name: &str, args: &[&str]) -> Cohort {
    #[derive(clap::Parser)]
    struct Synth {
        #[command(flatten)]
        args: neurocds_lab::cohort::cli::SynthArgs,
    }
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(remove_stale_cohorts);
    let dir = std::env::temp_dir().join(format!("neurocds-e2e-{name}-{}", std::process::id()));
    let argv = ["synth", "--quiet", "--out", dir.to_str().expect("a UTF-8 temp dir")].into_iter().chain(args.iter().copied());
    let parsed = <Synth as clap::Parser>::try_parse_from(argv).expect("synth arguments");
    neurocds_lab::cohort::cli::run(parsed.args).expect("neurocds-lab synth");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let rows = manifest.get("patients").cloned().unwrap_or(manifest).as_array().cloned().unwrap();
    Cohort { dir, rows }
}

/// Removes the cohorts of earlier test runs whose process has ended: each run writes ~200 MB per
/// cohort, and nothing else removes them (they live in statics, which are never dropped).
fn remove_stale_cohorts() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("neurocds-e2e-").and_then(|rest| rest.rsplit('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn pick(label: &str, phenotype: &str, nth: usize) -> Value {
    cohort()
        .rows
        .iter()
        .filter(|r| r["label"] == label && r["phenotype"] == phenotype && r["mimic"] == false)
        .nth(nth)
        .cloned()
        .unwrap_or_else(|| panic!("no {label} {phenotype} case #{nth} in the test cohort"))
}

/// Uploads a patient's study to Orthanc and its records to FHIR; returns the FHIR patient id.
pub fn load(row: &Value) -> String {
    load_from(cohort(), row)
}

pub fn load_from(cohort: &Cohort, row: &Value) -> String {
    let out = Command::new(python().join("tools-venv/bin/python"))
        .args(["scripts/demo_ehr.py", "load", "--cohort"])
        .arg(&cohort.dir)
        .args(["--orthanc", &peer("NEUROCDS_TEST_ORTHANC"), "--dicomweb", &peer("NEUROCDS_TEST_DICOMWEB"), "--fhir", &peer("NEUROCDS_TEST_FHIR")])
        .args(["--patient", row["patient_id"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    line["patient_id"].as_str().unwrap().to_owned()
}

async fn app() -> TestApp {
    spawn_app_with(json!({
        "model": { "manifest": "models/ensemble/manifest.json" },
        // Tests share two cores: give order-sign room; the budget itself is tested below.
        "hooks": { "order_sign_budget_ms": 120000 }
    }))
    .await
}

/// An order-sign call for `patient` that points at the test FHIR server (no prefetch).
pub fn sign_for(patient: &str) -> Value {
    brain_mri_hook("order-sign", patient, None, Some((&peer("NEUROCDS_TEST_FHIR"), None)))
}

/// Validates FHIR R4 resources two independent ways (the official JSON Schema and
/// fhir.resources), and against our profiles in `fhir-profiles/` where they claim one.
pub fn validate(resources: &[Value]) {
    let file = std::env::temp_dir().join(format!("neurocds-fhir-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_string(resources).unwrap()).unwrap();
    for (venv, mode) in [("tools-venv", "schema"), ("fhir-r4-venv", "model"), ("tools-venv", "profile")] {
        let out = Command::new(python().join(venv).join("bin/python")).args(["scripts/validate_fhir.py", mode]).arg(&file).output().unwrap();
        assert!(out.status.success(), "{mode} validation failed:\n{}", String::from_utf8_lossy(&out.stdout));
    }
}

#[tokio::test]
async fn a_glioblastoma_like_study_is_advised_resection_planning_and_a_lymphoma_like_study_biopsy() {
    let app = app().await;
    for (label, phenotype, expected) in [("gbm", "ring-necrotic", "resection-planning"), ("pcnsl", "solid", "biopsy")] {
        let patient = load(&pick(label, phenotype, 0));
        let select = brain_mri_hook("order-select", &patient, None, Some((&peer("NEUROCDS_TEST_FHIR"), None)));
        let (status, _) = app.hook(SELECT, &select).await;
        assert_eq!(status, 200);
        let (status, resp) = app.hook(SIGN, &sign_for(&patient)).await;
        assert_eq!(status, 200, "{resp}");
        let card = &resp["cards"][0];
        crate::helpers::assert_no_null_or_empty(&resp, "response");
        let rows = decisions(&app).await;
        let row = rows.iter().rev().find(|d| d.record.patient_ref == format!("Patient/{patient}")).unwrap();
        assert_eq!(row.record.outcome, "recommended", "{label}: {:?} {card}", row.record.reason);
        assert_eq!(row.record.recommendation.as_deref(), Some(expected), "{label}: P(lymphoma) = {:?}", row.record.calibrated_probability);
        // The card: summary under 140, a suggestion for the next step, override reasons with display, an absolute link.
        assert!(card["summary"].as_str().unwrap().chars().count() < 140);
        assert_eq!(card["selectionBehavior"], "at-most-one");
        assert!(card["overrideReasons"].as_array().unwrap().iter().all(|r| r["display"].is_string()));
        assert_eq!(card["links"][0]["type"], "absolute");
        assert!(card["detail"].as_str().unwrap().contains("does not place or change orders"));
        // The DiagnosticReport it offers is valid R4, two independent ways.
        let report = card["suggestions"].as_array().unwrap().iter().flat_map(|s| s["actions"].as_array().unwrap()).find(|a| a["resource"]["resourceType"] == "DiagnosticReport").expect("the card offers the report")["resource"].clone();
        let stored: Value = row.record.report.clone().unwrap();
        // The log gives back the very report the card carried: stored once per analysis as a
        // template, stamped on reading with this decision's own identifiers.
        let bundle = neurocds::fhir::report::ReportBundle::from_value(&stored).expect("a stored report bundle");
        assert_eq!(bundle.card_resource(), report, "{label}: the logged report is the card's");
        validate(&[report, stored["provenance"].clone(), stored["device"].clone()]);
    }
    assert_eq!(app.app.db.verify_chains().await.unwrap().1, None);
    // What operations see: two analyses recommended, each stage timed, the peers asked.
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    let value = |series: &str| metrics.lines().find_map(|l| l.strip_prefix(series)).and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(value(r#"neurocds_analyses_total{outcome="recommended",reason="none"}"#), Some(2.0), "{metrics}");
    for stage in ["series_metadata", "retrieval", "assembly", "preprocessing", "inference"] {
        assert_eq!(value(&format!(r#"neurocds_analysis_stage_duration_seconds_count{{stage="{stage}"}}"#)), Some(2.0), "{stage}: {metrics}");
    }
    assert!(value(r#"http_client_request_duration_seconds_count{http_request_method="GET",outcome="200",peer="dicomweb"}"#).is_some_and(|n| n >= 4.0), "{metrics}");
    assert!(value(r#"http_client_request_duration_seconds_count{http_request_method="GET",outcome="200",peer="fhir"}"#).is_some_and(|n| n >= 2.0), "{metrics}");
    assert!(value(r#"neurocds_inference_batch_size_count{device="cpu"}"#).is_some_and(|n| n >= 2.0), "{metrics}");
    assert!(value(r#"neurocds_inference_queue_wait_seconds_count{device="cpu"}"#).is_some_and(|n| n >= 2.0), "{metrics}");
    // Every decision went through the audit writer: each select and sign, in some batches.
    assert!(value("neurocds_audit_write_batch_size_sum").is_some_and(|n| n >= 4.0), "{metrics}");
    assert!(value("neurocds_audit_write_lag_seconds_count").is_some_and(|n| n >= 1.0), "{metrics}");
    assert_eq!(value(r#"neurocds_hooks_total{card="shown",cds_service="neurocds-brain-mri-order-sign",hook="order-sign",outcome="recommended"}"#), Some(2.0), "{metrics}");
}

#[tokio::test]
async fn concurrent_hooks_for_the_same_study_run_the_analysis_once() {
    let app = app().await;
    let patient = load(&pick("gbm", "ring-necrotic", 1));
    let bodies: Vec<Value> = (0..4).map(|_| sign_for(&patient)).collect();
    let calls = bodies.iter().map(|b| app.hook(SIGN, b));
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|(s, _)| *s == 200));
    let rows = decisions(&app).await;
    assert_eq!(rows.len(), 4);
    let timings: Vec<&Value> = rows.iter().map(|d| &d.record.stage_timings_ms["retrieval"]).collect();
    assert!(timings.iter().all(|t| *t == timings[0] && !t.is_null()), "one analysis, shared: {timings:?}");

    // What the four decisions share is stored once: each row names it, none copies it.
    let raw = crate::hooks::raw_decisions(&app).await;
    let content = raw[0].record.content_sha256.clone().expect("a decision on an analysis names its content");
    assert!(raw.iter().all(|d| d.record.content_sha256.as_deref() == Some(&content) && d.record.report.is_none()), "one content, named by every row");
    let mut owner = AsyncPgConnection::establish(&app.db_url).await.unwrap();
    let stored: Vec<String> = diesel::sql_query("SELECT content_sha256 FROM decision_contents").load::<ContentName>(&mut owner).await.unwrap().into_iter().map(|c| c.content_sha256).collect();
    assert_eq!(stored, vec![content.clone()]);
    // Read back, each row has the series and the scope gate's candidates, and its own report.
    assert!(rows.iter().all(|d| d.record.series["lesion_candidates"]["version"] == "neurocds-lesion/3" && !d.record.series["verdicts"].is_null()));
    let ids: std::collections::HashSet<String> = rows.iter().map(|d| d.record.report.as_ref().unwrap()["diagnostic_report"]["identifier"][0]["value"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, rows.iter().map(|d| d.record.decision_id.to_string()).collect(), "each report is stamped with its own decision");
    assert_eq!(app.app.db.verify_chains().await.unwrap().1, None);

    // A content changed behind the triggers' back no longer hashes to the name its decisions hold.
    diesel::sql_query("ALTER TABLE decision_contents DISABLE TRIGGER USER").execute(&mut owner).await.unwrap();
    diesel::sql_query("UPDATE decision_contents SET content = jsonb_set(content, '{series,t1c,series_uid}', '\"1.2.3\"')").execute(&mut owner).await.unwrap();
    diesel::sql_query("ALTER TABLE decision_contents ENABLE TRIGGER USER").execute(&mut owner).await.unwrap();
    let broken = app.app.db.verify_chains().await.unwrap().1.expect("the changed content is found");
    assert_eq!((broken.table, broken.id.as_str()), ("decision_contents", content.as_str()));
}

/// With `fhir.write_reports`, the report a card offers is also filed on the EHR's FHIR server
/// after the answer — once, and the very report the card carried, identified by its decision.
#[tokio::test]
async fn with_write_reports_the_report_the_card_offers_is_filed_on_the_fhir_server() {
    let app = spawn_app_with(json!({
        "model": { "manifest": "models/ensemble/manifest.json" },
        "hooks": { "order_sign_budget_ms": 120000 },
        "fhir": { "write_reports": true }
    }))
    .await;
    let patient = load(&pick("gbm", "ring-necrotic", 0));
    let (status, resp) = app.hook(SIGN, &sign_for(&patient)).await;
    assert_eq!(status, 200, "{resp}");
    let offered = resp["cards"][0]["suggestions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["actions"].as_array().into_iter().flatten())
        .find(|a| a["resource"]["resourceType"] == "DiagnosticReport")
        .map(|a| a["resource"].clone())
        .expect("the card offers the DiagnosticReport");
    let decision = offered["identifier"][0]["value"].as_str().unwrap().to_owned();
    let search = format!("{}/DiagnosticReport?identifier={}|{decision}", peer("NEUROCDS_TEST_FHIR"), neurocds::fhir::report::ID_DECISION);
    let mut filed = Value::Null;
    for _ in 0..50 {
        filed = reqwest::get(&search).await.unwrap().json().await.unwrap();
        if filed["entry"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let entries = filed["entry"].as_array().unwrap_or_else(|| panic!("no report filed for decision {decision}: {filed}"));
    assert_eq!(entries.len(), 1, "filed once: {filed}");
    let report = &entries[0]["resource"];
    for field in ["identifier", "issued", "basedOn", "conclusion", "conclusionCode", "subject", "presentedForm"] {
        assert_eq!(report[field], offered[field], "{field}: the filed report is the one the card offered");
    }
}

#[derive(diesel::QueryableByName)]
struct ContentName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    content_sha256: String,
}

#[tokio::test]
async fn past_the_order_sign_budget_the_clinician_gets_an_answer_without_a_recommendation() {
    let app = spawn_app_with(json!({ "model": { "manifest": "models/ensemble/manifest.json" }, "hooks": { "order_sign_budget_ms": 1 } })).await;
    let patient = load(&pick("pcnsl", "solid", 1));
    let (status, resp) = app.hook(SIGN, &sign_for(&patient)).await;
    assert_eq!(status, 200);
    assert!(resp["cards"][0]["summary"].as_str().unwrap().contains("unavailable"), "{resp}");
    let row = &decisions(&app).await[0];
    assert_eq!(row.record.outcome, "unavailable");
    assert!(row.record.reason.as_deref().unwrap().contains("budget"));
}

#[tokio::test]
async fn a_study_without_a_t2_series_abstains_with_the_reason() {
    let app = app().await;
    let row = pick("gbm", "solid", 0);
    let patient = load(&row);
    // Remove the T2 series from the PACS (Orthanc's REST API), as if it was never sent.
    let orthanc = peer("NEUROCDS_TEST_ORTHANC");
    let http = reqwest::Client::new();
    let found: Value = http.post(format!("{orthanc}/tools/lookup")).body(row["t2_series_uid"].as_str().unwrap().to_owned()).send().await.unwrap().json().await.unwrap();
    let id = found[0]["ID"].as_str().unwrap();
    assert!(http.delete(format!("{orthanc}/series/{id}")).send().await.unwrap().status().is_success());
    let (status, resp) = app.hook(SIGN, &sign_for(&patient)).await;
    assert_eq!(status, 200);
    assert!(resp["cards"][0]["summary"].as_str().unwrap().contains("declined"), "{resp}");
    let d = &decisions(&app).await[0];
    assert_eq!(d.record.outcome, "abstained");
    assert!(d.record.reason.as_deref().unwrap().contains("T2"), "{:?}", d.record.reason);
}

#[tokio::test]
async fn a_normal_brain_and_an_extra_axial_mass_never_get_a_recommendation_and_the_audit_says_why() {
    let app = app().await;
    for (label, reasons) in [("normal-brain", &["no-lesion", "normal-anatomy-only", "lesion-too-small", "extra-axial-lesion", "insufficient-coverage"][..]), ("extra-axial", &["extra-axial-lesion"][..])] {
        let row = out_of_scope_cohort().rows.iter().find(|r| r["label"] == label).cloned().unwrap_or_else(|| panic!("no {label} study in the cohort"));
        let patient = load_from(out_of_scope_cohort(), &row);
        let (status, resp) = app.hook(SIGN, &sign_for(&patient)).await;
        assert_eq!(status, 200, "{resp}");
        let card = &resp["cards"][0];
        assert!(card["summary"].as_str().unwrap().contains("not applicable"), "{label}: {card}");
        assert!(card["suggestions"].as_array().is_none_or(|s| s.is_empty()), "{label}: no suggestion, ever: {card}");
        assert_eq!(card["indicator"], "info");
        let rows = decisions(&app).await;
        let d = rows.iter().rev().find(|d| d.record.patient_ref == format!("Patient/{patient}")).unwrap();
        assert_eq!(d.record.outcome, "out-of-scope", "{label}: {:?}", d.record.reason);
        assert_eq!(d.record.recommendation, None);
        assert_eq!(d.record.calibrated_probability, None, "the classifier never ran");
        let reason = d.record.reason.as_deref().unwrap();
        assert!(reasons.iter().any(|r| reason.contains(r)), "{label}: audited reason {reason:?}");
        let candidates = &d.record.series["lesion_candidates"];
        assert_eq!(candidates["version"], "neurocds-lesion/3");
        assert!(candidates["candidates"].as_array().unwrap().iter().all(|c| !c["rejection"].is_null()), "{label}: every candidate rejected: {candidates}");
    }
    // With `out_of_scope_answer = "none"` the same study is audited and shows no card.
    let quiet = spawn_app_with(json!({ "model": { "manifest": "models/ensemble/manifest.json" }, "hooks": { "order_sign_budget_ms": 120000, "out_of_scope_answer": "none" } })).await;
    let row = out_of_scope_cohort().rows.iter().find(|r| r["label"] == "normal-brain").cloned().unwrap();
    let patient = load_from(out_of_scope_cohort(), &row);
    let (status, resp) = quiet.hook(SIGN, &sign_for(&patient)).await;
    assert_eq!(status, 200);
    assert_eq!(resp["cards"], json!([]));
    assert_eq!(decisions(&quiet).await[0].record.outcome, "out-of-scope");
}

/// A DICOMweb server that knows no series at all: a PACS still ingesting, a typo in an
/// Endpoint, or a hostile server. Every request gets `200 []`.
async fn spawn_empty_dicomweb() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 16 * 1024];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]")
                    .await;
            });
        }
    });
    format!("http://{addr}/dicom-web")
}

/// Issue 15: an analysis belongs to where its pixels came from. A hook whose prefetch points
/// the study at a PACS without its series is declined ("series missing"); a later hook for the
/// same patient and study that resolves to the right PACS runs its own analysis instead of
/// being served the other one's abstention.
#[tokio::test]
async fn an_abstention_from_a_pacs_without_the_series_never_sticks_to_a_hook_that_reaches_the_right_pacs() {
    let app = app().await;
    let patient = load(&pick("pcnsl", "solid", 0));
    let fhir = peer("NEUROCDS_TEST_FHIR");
    let query = format!("{fhir}/ImagingStudy?patient={patient}&modality=MR&_include=ImagingStudy:endpoint");
    let mut bundle: Value = reqwest::get(&query).await.unwrap().json().await.unwrap();
    let elsewhere = spawn_empty_dicomweb().await;
    for entry in bundle["entry"].as_array_mut().expect("the study and its Endpoint") {
        if entry["resource"]["resourceType"] == "Endpoint" {
            entry["resource"]["address"] = json!(elsewhere);
        }
    }
    let misdirected = brain_mri_hook("order-sign", &patient, Some(json!({ "priorImaging": bundle })), Some((&fhir, None)));
    let (status, resp) = app.hook(SIGN, &misdirected).await;
    assert_eq!(status, 200, "{resp}");
    assert!(resp["cards"][0].get("suggestions").is_none(), "{resp}");
    let first = &decisions(&app).await[0];
    assert_eq!(first.record.outcome, "abstained");
    assert!(first.record.reason.as_deref().unwrap_or("").contains("series missing"), "{:?}", first.record.reason);

    let (status, resp) = app.hook(SIGN, &sign_for(&patient)).await;
    assert_eq!(status, 200, "{resp}");
    let rows = decisions(&app).await;
    let second = rows.iter().find(|d| d.record.decision_id != first.record.decision_id).expect("the second decision");
    assert_eq!(second.record.outcome, "recommended", "{:?}", second.record.reason);
    assert_eq!(second.record.recommendation.as_deref(), Some("biopsy"));
}
