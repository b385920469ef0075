use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_ok_without_credentials() {
    let app = spawn_app().await;
    let r = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn readyz_reports_database_schema_model_and_device() {
    let app = spawn_app().await;
    let r = reqwest::get(format!("{}/readyz", app.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["migrations"], "current");
    assert_eq!(body["model"]["members"], 3);
    assert_eq!(body["device"], "cpu");
    assert_eq!(body["analyses"], "in-process");
}

/// A `serve` replica whose analyses run in separate workers loads no ensemble: it reads the
/// manifest for the model's identity and nothing else, so it starts (and is ready) even where
/// the member files are absent, and keeps no libtorch memory.
#[tokio::test]
async fn a_serve_replica_without_an_embedded_worker_loads_no_ensemble() {
    let only_manifest = tempfile::tempdir().unwrap();
    std::fs::copy(crate::helpers::tiny_ensemble().join("manifest.json"), only_manifest.path().join("manifest.json")).unwrap();
    let manifest = only_manifest.path().join("manifest.json");
    let app = crate::helpers::spawn_app_with(serde_json::json!({ "worker": { "embedded": false }, "model": { "manifest": manifest } })).await;
    assert!(app.app.engine.is_none());
    let body: Value = reqwest::get(format!("{}/readyz", app.base)).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["analyses"], "in-workers");
    assert_eq!(body["device"], Value::Null);
    assert_eq!(body["model"]["members"], 3, "the identity still comes from the manifest");

    // The same settings with the embedded worker must load the members, and cannot.
    let settings = crate::helpers::settings_on(crate::helpers::free_port(), serde_json::json!({ "worker": { "embedded": true }, "model": { "manifest": manifest } })).await;
    assert!(neurocds::startup::Application::build(settings).await.is_err(), "an embedded worker needs the member files");
}

#[tokio::test]
async fn the_tch_engine_runs_a_forward_pass_on_the_cpu() {
    let app = spawn_app().await;
    let engine = app.app.engine.clone().expect("the embedded worker's ensemble");
    let [d, h, w] = engine.manifest().input.shape;
    let input = neurocds_analysis::inference::ModelInput { data: vec![0.5; 2 * d * h * w], lesion_volume_ml: 10.0, t1c_lesion_mean: 2.0 };
    let out = engine.predict(input).await.expect("forward pass");
    assert_eq!(out.member_probabilities.len(), 3);
    assert!(out.member_probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!((out.mean_probability - out.member_probabilities.iter().sum::<f64>() / 3.0).abs() < 1e-9);
}

/// `neurocds serve` logs JSON lines on stderr; a line written while a request is handled
/// carries that request's id, and a refused token is named by its reason, never by its text.
#[tokio::test]
async fn a_log_line_written_for_a_request_carries_its_request_id_and_never_the_token() {
    use std::process::{Command, Stdio};

    let port = crate::helpers::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_neurocds"))
        .arg("serve")
        .env("DATABASE_URL", crate::helpers::fresh_database().await)
        .env("NEUROCDS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("NEUROCDS_SERVER__PUBLIC_BASE_URL", &base)
        .env("NEUROCDS_MODEL__MANIFEST", crate::helpers::tiny_ensemble().join("manifest.json"))
        .env("NEUROCDS_MODEL__THREADS", "1")
        .env("NEUROCDS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("neurocds serve starts");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..300 {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let secret = "eyJhbGciOiJub25lIn0.eyJzZWNyZXQiOiJkby1ub3QtbG9nLW1lIn0.c2lnbmF0dXJl";
    let refused = if up {
        http.post(format!("{base}/cds-services/neurocds-brain-mri-order-sign?code=query-stays-out")).bearer_auth(secret).json(&crate::helpers::brain_mri_hook("order-sign", "p1", None, None)).send().await.map(|r| r.status().as_u16())
    } else {
        Ok(0)
    };
    let _ = serve.kill();
    let output = serve.wait_with_output().expect("the service's stderr");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(up, "the service came up: {log}");
    assert_eq!(refused.ok(), Some(401), "{log}");

    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))).collect();
    let refusal = lines.iter().find(|l| l["message"].as_str().is_some_and(|m| m.starts_with("refused a CDS client token"))).unwrap_or_else(|| panic!("no refusal logged: {log}"));
    let request_id = refusal["span"]["request_id"].as_str().unwrap_or_default();
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "the refusal names its request: {refusal}");
    assert!(!log.contains(secret) && !log.contains("do-not-log-me"), "the token stays out of the log: {log}");
    // Queries hold patients and authorisation codes: the request's path is logged, not its query.
    assert!(!log.contains("query-stays-out"), "the query stays out of the log: {log}");
    assert_eq!(refusal["span"]["url.path"], "/cds-services/neurocds-brain-mri-order-sign", "{refusal}");
    let trace_id = refusal["span"]["trace_id"].as_str().unwrap_or_default();
    assert!(trace_id.len() == 32 && trace_id.chars().all(|c| c.is_ascii_hexdigit()) && trace_id != "0".repeat(32), "the refusal names its trace: {refusal}");
}
