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
}

#[tokio::test]
async fn the_tch_engine_runs_a_forward_pass_on_the_cpu() {
    let app = spawn_app().await;
    let engine = app.app.pipeline.engine();
    let [d, h, w] = engine.manifest().input.shape;
    let input = neurocds::inference::ModelInput { data: vec![0.5; 2 * d * h * w], lesion_volume_ml: 10.0, t1c_lesion_mean: 2.0 };
    let out = engine.predict(input).await.expect("forward pass");
    assert_eq!(out.member_probabilities.len(), 3);
    assert!(out.member_probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!((out.mean_probability - out.member_probabilities.iter().sum::<f64>() / 3.0).abs() < 1e-9);
}
