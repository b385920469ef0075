use serde_json::Value;

use crate::helpers::{ehr, spawn_app};

/// r4, r5, r6, r7, r8, r9, r10, r12, r13, r29, r36, r55, r59
#[tokio::test]
async fn r4_r13_discovery_lists_order_select_and_order_sign_with_prefetch_templates() {
    let app = spawn_app().await;
    let url = format!("{}/cds-services", app.base);
    let r = app.http.get(&url).bearer_auth(ehr().token(&url, &[])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    let services = body["services"].as_array().expect("a services array");
    let hooks: Vec<&str> = services.iter().map(|s| s["hook"].as_str().unwrap()).collect();
    assert_eq!(hooks, ["order-select", "order-sign"]);
    for s in services {
        for field in ["id", "title", "description", "usageRequirements"] {
            assert!(s[field].as_str().is_some_and(|v| !v.is_empty()), "{field} missing in {s}");
        }
        let prefetch = s["prefetch"].as_object().unwrap();
        for (_, template) in prefetch {
            let t = template.as_str().unwrap();
            // r55/r59: tokens are {{context.<field>}}
            assert!(t.contains("{{context.patientId}}"), "{t}");
        }
        assert!(prefetch["priorImaging"].as_str().unwrap().starts_with("ImagingStudy?"));
    }
}

/// r176, r177: discovery, like every endpoint, needs the EHR's signed JWT.
#[tokio::test]
async fn r176_discovery_without_a_token_is_401_with_no_detail() {
    let app = spawn_app().await;
    let r = app.http.get(format!("{}/cds-services", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["diagnostics"], "unauthorized");
}

#[tokio::test]
async fn browser_clients_get_cors_preflight_answers() {
    let app = spawn_app().await;
    let r = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/cds-services/neurocds-brain-mri-order-sign", app.base))
        .header("Origin", "https://sandbox.cds-hooks.org")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(r.headers().contains_key("access-control-allow-origin"));
    let allowed = r.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("authorization"));
}

/// A real EHR-side client (npm @medplum/core MedplumClient) discovers the services and calls
/// order-sign with a signed token.
#[tokio::test]
async fn medplum_client_discovers_and_calls_the_order_sign_service() {
    let app = spawn_app().await;
    let discovery = format!("{}/cds-services", app.base);
    let (t1, t2) = (ehr().token(&discovery, &[]), ehr().token(&app.service_url("neurocds-brain-mri-order-sign"), &[]));
    let mut body = crate::helpers::brain_mri_hook("order-sign", "p1", Some(serde_json::json!({ "patient": null, "priorImaging": null })), None);
    body["context"]["draftOrders"]["entry"][0]["resource"]["code"]["coding"][0]["code"] = serde_json::json!("73721");
    let node_modules = crate::helpers::python().join("node/node_modules");
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .args(["--experimental-websocket", "tests/support/medplum_cds_client.mjs", &base, &t1, &t2, &body.to_string()])
            .env("NODE_PATH", &node_modules)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
    })
    .await
    .unwrap()
    .expect("node");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["services"], serde_json::json!(["neurocds-brain-mri-order-select", "neurocds-brain-mri-order-sign"]));
    assert_eq!(result["answer"], serde_json::json!({ "cards": [] }));
}
