//! The pages as a member of staff sees them: Debian's headless Chromium, driven by npm
//! puppeteer-core (`tests/support/pages_browser.mjs`) with JavaScript switched off in the pages,
//! signs in with a staff token, filters the decision log through its form, opens a case report
//! from a row, the model card and model monitoring from the header. The script only reports what the browser shows;
//! the assertions are here. Full-page screenshots are kept in [`artefacts_dir`]:
//! `case-report.png` (checked here), `decision-log.png` and `model-card.png`.

use std::path::Path;

use serde_json::{Value, json};

use crate::{
    e2e::{load, pick, sign_for},
    helpers::{Idp, STAFF_ISS, TestApp, artefacts_dir, brain_mri_hook, ehr, python, spawn_app_with},
    hooks::decisions,
};

const SIGN: &str = "neurocds-brain-mri-order-sign";

async fn app(idp: &Idp) -> TestApp {
    spawn_app_with(json!({
        "staff": { "issuer": STAFF_ISS, "jwks": idp.jwks() },
        "model": { "manifest": "models/ensemble/manifest.json" },
        // Tests share two cores: give order-sign room to finish the analysis.
        "hooks": { "order_sign_budget_ms": 120000 }
    }))
    .await
}

/// Signs a brain MRI order; returns the decision it recorded and the card the clinician saw.
async fn sign(app: &TestApp, body: &Value) -> (neurocds::audit::StoredDecision, Value) {
    let (status, resp) = app.hook(SIGN, body).await;
    assert_eq!(status, 200, "{resp}");
    let hook_instance = body["hookInstance"].as_str().expect("a hookInstance");
    let decision = decisions(app).await.into_iter().find(|d| d.record.hook_instance == hook_instance).expect("the decision is in the log");
    (decision, resp["cards"][0].clone())
}

/// The clinician's answer to a card, through the CDS Hooks feedback endpoint.
async fn feedback(app: &TestApp, item: Value) {
    let url = format!("{}/feedback", app.service_url(SIGN));
    let r = app.http.post(&url).bearer_auth(ehr().token(&app.service_url(SIGN), &[])).json(&json!({ "feedback": [item] })).send().await.expect("feedback request");
    assert_eq!(r.status(), 200);
}

/// Runs the browser script (off the runtime thread: the service answers on it meanwhile).
async fn browse(scenario: Value) -> Value {
    let node_modules = python().join("node/node_modules");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .args(["tests/support/pages_browser.mjs", &scenario.to_string()])
            .env("NODE_PATH", &node_modules)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
    })
    .await
    .expect("the browser task")
    .expect("node runs (installed by scripts/bootstrap.sh)");
    assert!(out.status.success(), "the browser script failed (chromium and puppeteer-core come from scripts/bootstrap.sh):\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("the browser script printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The rows of the table with `id`, as the browser read them.
fn table<'a>(page: &'a Value, id: &str) -> &'a Vec<Value> {
    page["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["id"] == id)
        .and_then(|t| t["rows"].as_array())
        .unwrap_or_else(|| panic!("no table #{id} on {}", page["url"]))
}

/// Value of a key/value row (`<th>key</th><td>value</td>`) in any table on the page.
fn field<'a>(page: &'a Value, key: &str) -> &'a str {
    page["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["rows"].as_array().into_iter().flatten())
        .find(|r| r["key"] == key)
        .and_then(|r| r["value"].as_str())
        .unwrap_or_else(|| panic!("no `{key}` row on {}", page["url"]))
}

fn column<'a>(rows: &'a [Value], name: &str) -> Vec<&'a str> {
    rows.iter().map(|r| r[name].as_str().unwrap_or_default()).collect()
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[tokio::test]
async fn in_a_browser_staff_sign_in_filter_the_decision_log_and_read_a_case_report_with_its_key_images() {
    let idp = Idp::new();
    let app = app(&idp).await;
    // Three decisions: a lymphoma-like study (biopsy), a glioblastoma-like one (resection
    // planning), and an order with no prior imaging (unavailable). The clinician overrides the
    // biopsy card and accepts the resection-planning one.
    let (lymphoma_row, glioblastoma_row) = (pick("pcnsl", "solid", 2), pick("gbm", "ring-necrotic", 2));
    let patients = tokio::task::spawn_blocking(move || (load(&lymphoma_row), load(&glioblastoma_row))).await.expect("loading the studies");
    let (lymphoma, lymphoma_card) = sign(&app, &sign_for(&patients.0)).await;
    let (glioblastoma, glioblastoma_card) = sign(&app, &sign_for(&patients.1)).await;
    let (no_prior, _) = sign(&app, &brain_mri_hook("order-sign", "no-prior-imaging", Some(json!({ "patient": null, "priorImaging": null })), None)).await;
    assert_eq!(lymphoma.record.recommendation.as_deref(), Some("biopsy"), "{:?}", lymphoma.record.reason);
    assert_eq!(glioblastoma.record.recommendation.as_deref(), Some("resection-planning"), "{:?}", glioblastoma.record.reason);
    assert_eq!(no_prior.record.outcome, "unavailable");
    feedback(&app, json!({
        "card": lymphoma_card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-26T10:00:00Z",
        "overrideReason": { "reason": { "system": "https://neurocds.org/fhir/CodeSystem/override-reason", "code": "clinical-picture-differs", "display": "The clinical picture points elsewhere" } }
    }))
    .await;
    feedback(&app, json!({
        "card": glioblastoma_card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-26T10:05:00Z",
        "acceptedSuggestions": [{ "id": glioblastoma_card["suggestions"][0]["uuid"] }]
    }))
    .await;

    let artefacts = artefacts_dir();
    let screenshot = artefacts.join("case-report.png");
    let _ = std::fs::remove_file(&screenshot);
    let seen = browse(json!({
        "base": app.base,
        "token": idp.token(Some("neuro-oncology")),
        "artefacts": artefacts,
        "filters": [
            { "outcome": "recommended" },
            { "outcome": "recommended", "recommendation": "biopsy" },
            { "feedback": "overridden" },
        ],
    }))
    .await;

    // No cookie yet: the browser lands on the sign-in form (a site without single sign-on); the
    // token pasted there opens the log.
    assert_eq!(seen["before_signin"]["url"], "/login?return_to=%2Faudit");
    assert_eq!(seen["before_signin"]["h1"], "Sign in");
    let log = &seen["audit"];
    assert_eq!(log["url"], "/audit");
    assert_eq!(log["h1"], "Decision log");
    let rows = table(log, "decisions");
    assert_eq!(rows.len(), 3, "every decision is listed: {rows:?}");
    let mut outcomes = column(rows, "Outcome");
    outcomes.sort();
    assert_eq!(outcomes, ["recommended", "recommended", "unavailable"]);
    assert!(log["text"].as_str().unwrap_or_default().contains("3 decisions: 2 recommended, 0 abstained, 0 out of scope, 1 unavailable, 0 pending."), "{}", log["text"]);
    // The override summary: the biopsy advice was overridden, the resection planning accepted.
    let overrides = table(log, "overrides");
    let counts = |rec: &str| {
        let r = overrides.iter().find(|r| r["Recommendation"] == rec).unwrap_or_else(|| panic!("no {rec} row in {overrides:?}"));
        ["Decisions", "With feedback", "Overridden", "Override rate"].map(|c| r[c].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(counts("biopsy"), ["1", "1", "1", "100 %"]);
    assert_eq!(counts("resection-planning"), ["1", "1", "0", "0 %"]);

    // Each filter, submitted through the form, narrows the rows and stays selected.
    let recommended = &seen["filtered"][0];
    assert!(recommended["url"].as_str().unwrap_or_default().contains("outcome=recommended"), "{}", recommended["url"]);
    assert_eq!(recommended["form"]["outcome"], "recommended");
    assert_eq!(column(table(recommended, "decisions"), "Outcome"), ["recommended", "recommended"]);
    let biopsies = table(&seen["filtered"][1], "decisions");
    assert_eq!(column(biopsies, "Recommendation"), ["biopsy"]);
    assert_eq!(column(biopsies, "Patient"), [lymphoma.record.patient_ref.as_str()]);
    let overridden = table(&seen["filtered"][2], "decisions");
    assert_eq!(overridden.len(), 1);
    assert_eq!(overridden[0]["href"], format!("/reports/{}", lymphoma.record.decision_id));

    // The case report of the overridden biopsy decision, opened from its row.
    let report = &seen["report"];
    assert_eq!(report["url"], format!("/reports/{}", lymphoma.record.decision_id));
    assert_eq!(report["badge"]["text"], neurocds_analysis::decision::Recommendation::Biopsy.headline());
    assert!(report["badge"]["class"].as_str().unwrap_or_default().contains("biopsy"));
    let p = lymphoma.record.calibrated_probability.expect("a calibrated probability");
    assert_eq!(field(report, "Calibrated probability of primary CNS lymphoma"), format!("{:.0} %", p * 100.0));
    assert_eq!(field(report, "Patient"), lymphoma.record.patient_ref);
    assert!(field(report, "Enhancing lesion volume").ends_with(" mL"), "{}", field(report, "Enhancing lesion volume"));
    // Key images: both slices decoded by the browser, with pixels, and on screen.
    let images = report["images"].as_array().expect("images");
    assert_eq!(column(images, "caption"), ["T1 post-contrast", "T2"]);
    for img in images {
        assert_eq!(img["complete"], true, "{img}");
        assert!(img["natural_width"].as_u64() > Some(0) && img["natural_height"].as_u64() > Some(0), "the image did not decode: {img}");
        assert!(img["shown_width"].as_u64() > Some(100), "the image is not shown: {img}");
    }
    // Ensemble members: each member's probability as recorded.
    let recorded: Vec<f64> = serde_json::from_value(lymphoma.record.member_probabilities.clone()).expect("member probabilities");
    let members = table(report, "members");
    assert_eq!(members.len(), recorded.len());
    assert_eq!(column(members, "P(lymphoma)"), recorded.iter().map(|p| format!("{p:.3}")).collect::<Vec<_>>());
    let answers = table(report, "feedback");
    assert_eq!(column(answers, "When"), ["2026-11-26T10:00:00Z"]);
    assert_eq!(column(answers, "Outcome"), ["overridden"]);
    assert_eq!(column(answers, "Reason"), ["The clinical picture points elsewhere"]);
    // Stage timings in the order the pipeline runs them.
    let stages: Vec<&str> = table(report, "timings").iter().filter_map(|r| r["key"].as_str()).collect();
    assert_eq!(stages.first(), Some(&"series metadata (DICOMweb)"), "{stages:?}");
    assert!(stages.contains(&"whole hook call"), "{stages:?}");
    // The trace id its hook's log lines and trace carry.
    let trace_id = lymphoma.record.trace_id.as_deref().expect("the decision's trace id");
    assert!(trace_id.len() == 32 && trace_id.chars().all(|c| c.is_ascii_hexdigit()), "{trace_id}");
    assert_eq!(field(report, "Trace id"), trace_id);
    assert!(report["text"].as_str().unwrap_or_default().contains("does not place or change orders"));

    // The screenshot is kept for people to look at.
    let (width, height) = png_size(&screenshot);
    assert_eq!(width, 1280);
    assert!(height > 900, "a full-page screenshot: {width}×{height}");

    // The model card: the manifest's numbers, readable (no raw JSON in the summary).
    let models = &seen["models"];
    let manifest = &app.app.model;
    assert_eq!(models["h1"], format!("Model card: {} {}", manifest.name, manifest.version));
    assert_eq!(table(models, "members").len(), manifest.members.len());
    assert!(field(models, "Calibration").starts_with("Platt scaling"), "{}", field(models, "Calibration"));
    let text = models["text"].as_str().unwrap_or_default();
    for limit in manifest.card["limits"].as_array().expect("the card lists its limits") {
        assert!(text.contains(limit.as_str().unwrap_or_default()), "limit not shown: {limit}");
    }
    let auc = &manifest.card["metrics"]["external"]["auc"];
    let sig3 = |k: &str| neurocds::web::model_card::sig3(auc[k].as_f64().expect("a number"));
    let external = table(models, "metrics").iter().find(|r| r["col0"] == "External").expect("an external-validation row");
    assert_eq!(external["AUC"], format!("{} ({}–{})", sig3("estimate"), sig3("lower"), sig3("upper")));

    // Model monitoring: the two analyses (the order with no prior imaging is no analysis),
    // their outputs against the validation cohort and their inputs as recorded by the analyses;
    // too few to judge, so no alert. The override shows in the feedback table.
    let monitoring = &seen["monitoring"];
    assert_eq!(monitoring["h1"], "Model monitoring");
    let version = format!("{}@{}", manifest.name, manifest.version);
    assert!(monitoring["text"].as_str().unwrap_or_default().contains(&format!("{version} (loaded)")), "{}", monitoring["text"]);
    assert_eq!(column(table(monitoring, "outcomes-0"), "Analyses in the window"), ["2"]);
    let drift = table(monitoring, "drift-0");
    let row = |title: &str| drift.iter().find(|r| r["Quantity"] == title).unwrap_or_else(|| panic!("no {title} row in {drift:?}"));
    let probability = row("Calibrated probability of lymphoma");
    assert_eq!((probability["Compared with"].as_str(), probability["Window values"].as_str(), probability["Status"].as_str()), (Some("validation cohort"), Some("2"), Some("too-few")));
    assert_eq!(probability["Reference values"], "761", "every held-out study of the evaluation");
    for title in ["How the T1c was recognised", "How the T2 was recognised", "Scanner vendor (T1c)", "Magnetic field strength (T1c)", "Enhancing lesion volume", "Mean normalised T2 intensity in the lesion"] {
        assert_eq!(row(title)["Window values"], "2", "{title}: recorded by both analyses");
        assert_eq!(row(title)["Compared with"], "baseline period");
    }
    let feedback_rows = table(monitoring, "overrides-0");
    let biopsy = feedback_rows.iter().find(|r| r["Recommendation"] == "biopsy").expect("a biopsy row");
    assert_eq!([&biopsy["Cards"], &biopsy["Overridden"], &biopsy["Override rate"]], ["1", "1", "100 %"]);
    // One plot per watched quantity, drawn on the page; the probability plot's window bars
    // hold the two estimates.
    let plots = monitoring["plots"].as_array().expect("plots");
    assert_eq!(plots.len(), 12, "{plots:?}");
    for plot in plots {
        assert!(plot["shown_width"].as_u64() > Some(300), "the plot is on screen: {plot}");
        assert!(plot["label"].as_str().unwrap_or_default().contains("this window (blue, "), "{plot}");
    }
    let probability_plot = plots.iter().find(|p| p["quantity"] == "calibrated_probability").expect("the probability plot");
    assert_eq!(probability_plot["reference_bars"], 10);
    let drawn: Vec<&str> = probability_plot["live_bars"].as_array().expect("bars").iter().filter(|b| b["height"].as_f64() > Some(0.0)).filter_map(|b| b["title"].as_str()).collect();
    assert!(!drawn.is_empty() && drawn.len() <= 2, "{drawn:?}");
    assert_eq!(drawn.iter().map(|t| t.rsplit_once('(').map_or(0, |(_, n)| n.trim_end_matches(')').parse::<u32>().unwrap_or(0))).sum::<u32>(), 2, "{drawn:?}");

    // Both analyses recorded their T1c scanner's field strength (the cohort's sites are 1.5 or 3 T).
    let field = plots.iter().find(|p| p["quantity"] == "t1c_field_strength").expect("the field-strength plot");
    let classes: Vec<&str> = field["live_bars"].as_array().expect("bars").iter().filter(|b| b["height"].as_f64() > Some(0.0)).filter_map(|b| b["title"].as_str()).collect();
    assert!(!classes.is_empty() && classes.iter().all(|t| t.starts_with("1.5T") || t.starts_with("3T")), "{classes:?}");

    // The pages work without JavaScript (the browser ran them with it off) and ship none.
    for page in [&seen["before_signin"], log, recommended, report, models, monitoring] {
        assert_eq!(page["scripts"], 0, "{} has script elements", page["url"]);
    }
}
