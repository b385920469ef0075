//! `/metrics`: Prometheus exposition with OpenTelemetry names, checked by Prometheus's own tools.

use std::{
    io::Write,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::helpers::{TestApp, brain_mri_hook, free_port, spawn_app, spawn_app_with};

/// A hook whose draft order is not a brain MRI (a chest X-ray): answered with no card.
async fn a_chest_xray_order(app: &TestApp) {
    let mut body = brain_mri_hook("order-select", "p-metrics", None, None);
    body["context"]["draftOrders"]["entry"][0]["resource"]["code"] = json!({ "coding": [{ "system": "http://loinc.org", "code": "36643-5", "display": "XR Chest 2V" }] });
    let (status, cards) = app.hook("neurocds-brain-mri-order-select", &body).await;
    assert_eq!((status, cards), (200, json!({ "cards": [] })));
}

async fn scrape(url: &str) -> String {
    let r = reqwest::get(url).await.expect("scrape /metrics");
    assert_eq!(r.status(), 200, "/metrics answers without a token");
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    r.text().await.unwrap()
}

/// `promtool check metrics`: Prometheus's linter for an exposition (names, units, help, types).
fn promtool_accepts(exposition: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/bootstrap.sh installs it)");
    promtool.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool check metrics:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn requests_are_counted_by_route_pattern_and_hooks_by_outcome_and_promtool_accepts_the_exposition() {
    let app = spawn_app().await;
    reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    let report = reqwest::get(format!("{}/reports/0b4a6a5e-0000-4000-8000-000000000001", app.base)).await.unwrap();
    let report_status = report.status().as_u16();
    let missing = reqwest::get(format!("{}/wp-admin/setup-config.php", app.base)).await.unwrap();
    assert_eq!(missing.status(), 404);
    a_chest_xray_order(&app).await;
    // Hooks refused before they are answered are counted too, by why; an unknown service id
    // (caller-controlled text) never becomes a label.
    let body = brain_mri_hook("order-sign", "p-metrics", None, None);
    let no_token = app.http.post(app.service_url("neurocds-brain-mri-order-sign")).json(&body).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let (status, _) = app.hook("neurocds-brain-mri-order-sign", &json!({ "hook": "order-sign" })).await;
    assert_eq!(status, 400);
    let (status, _) = app.hook("no-such-service-x1", &body).await;
    assert_eq!(status, 404);

    let text = scrape(&format!("{}/metrics", app.base)).await;
    promtool_accepts(&text);
    assert!(text.contains(r#"http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/healthz"} 1"#), "{text}");
    assert!(
        text.contains(&format!(r#"http_server_request_duration_seconds_count{{http_request_method="GET",http_response_status_code="{report_status}",http_route="/reports/{{id}}"}} 1"#)),
        "the route pattern, never the id:\n{text}"
    );
    assert!(!text.contains("0b4a6a5e"), "no path, id or patient in a label");
    assert!(text.contains(r#"http_route="unmatched""#) && !text.contains("wp-admin"), "{text}");
    assert!(text.contains(r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/healthz",le="0.005"}"#), "OTel buckets: {text}");
    assert!(text.contains(r#"neurocds_hooks_total{card="none",cds_service="neurocds-brain-mri-order-select",hook="order-select",outcome="not-brain-mri"} 1"#), "{text}");
    for outcome in ["unauthorized", "bad-request"] {
        let series = format!(r#"neurocds_hooks_total{{card="none",cds_service="neurocds-brain-mri-order-sign",hook="order-sign",outcome="{outcome}"}} 1"#);
        assert!(text.contains(&series), "{series}:\n{text}");
    }
    assert!(!text.contains("no-such-service-x1"), "{text}");
    assert!(text.contains(r#"neurocds_model_info{device="cpu","#), "{text}");
    assert!(text.contains("neurocds_analyses_capacity 32") && text.contains("neurocds_inference_queue_capacity 16"), "{text}");
    assert!(!text.contains("p-metrics"), "no patient in a label");
}

#[tokio::test]
async fn metrics_on_a_management_port_are_not_served_on_the_service_port() {
    let management = free_port();
    let app = spawn_app_with(json!({ "metrics": { "listen": format!("127.0.0.1:{management}") } })).await;
    let on_service_port = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(on_service_port.status(), 404);
    reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    let text = scrape(&format!("http://127.0.0.1:{management}/metrics")).await;
    assert!(text.contains(r#"http_route="/healthz""#), "the service port's requests, counted: {text}");
    promtool_accepts(&text);
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let app = spawn_app_with(json!({ "metrics": { "enabled": false } })).await;
    assert_eq!(reqwest::get(format!("{}/metrics", app.base)).await.unwrap().status(), 404);
    reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    // Off means off: requests are not timed either (what `make bench` compares against).
    let gauges = neurocds::metrics::Gauges { queue: None, worker_running: 0, analyses_capacity: 0, inference_queue_depth: 0, inference_queue_capacity: 0 };
    let text = app.app.metrics.render(&gauges);
    assert!(!text.contains("http_server_request_duration_seconds_count"), "{text}");
}

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    fn scraping(target: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("neurocds-prometheus-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: neurocds\n    static_configs:\n      - targets: ['{target}']\n");
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/bootstrap.sh installs it)");
        Prometheus { child, dir, port }
    }

    async fn query(&self, q: &str) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let Ok(r) = reqwest::Client::new().get(url).query(&[("query", q)]).send().await else { return Vec::new() };
        let body: Value = r.json().await.unwrap_or(Value::Null);
        body["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_service() {
    let app = spawn_app().await;
    let target = app.base.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::scraping(&target);
    let mut seen = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen = prometheus.query(r#"up{job="neurocds"} == 1"#).await;
        if !seen.is_empty() && !prometheus.query("neurocds_model_info").await.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 1, "Prometheus scraped the service within 30 s");
    let info = prometheus.query("neurocds_model_info").await;
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0]["metric"]["device"], "cpu");
    // A scrape is counted once it is answered, so the second scrape is the first to show one.
    let mut scrapes = Vec::new();
    for _ in 0..20 {
        scrapes = prometheus.query(r#"http_server_request_duration_seconds_count{http_route="/metrics"}"#).await;
        if !scrapes.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!scrapes.is_empty(), "its own scrapes are counted too");
}

/// The Grafana dashboard's queries parse as PromQL: `promtool check rules` reads each as a
/// recording rule. (The unit test `metrics::tests::the_grafana_dashboard_refers_only_to_metrics_that_exist`
/// checks the metric names.)
#[test]
fn the_grafana_dashboard_queries_are_valid_promql() {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string("deploy/grafana/neurocds.json").expect("deploy/grafana/neurocds.json")).expect("the dashboard is JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() > 15, "{exprs:?}");
    let rules: Vec<Value> = exprs.iter().enumerate().map(|(i, e)| json!({ "record": format!("neurocds:dashboard_query_{i}"), "expr": e })).collect();
    let file = std::env::temp_dir().join(format!("neurocds-dashboard-rules-{}.yml", uuid::Uuid::new_v4().simple()));
    // JSON is YAML: promtool reads it as a rules file.
    std::fs::write(&file, json!({ "groups": [{ "name": "dashboard", "rules": rules }] }).to_string()).expect("write the rules file");
    let out = Command::new("promtool").args(["check", "rules"]).arg(&file).output().expect("promtool (Debian package prometheus)");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "promtool check rules:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
