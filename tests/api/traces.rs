//! OpenTelemetry traces, end to end through real processes: `neurocds serve` (no embedded
//! worker) and a `neurocds worker`, both exporting OTLP/HTTP to a receiver here that decodes
//! with the official `opentelemetry-proto` definitions; a FHIR server and a PACS behind proxies
//! that record the `traceparent` each request carries. The EHR's trace is the one every span,
//! every outbound request, the log lines and the audited decision name.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use diesel::{QueryableByName, sql_types::Nullable, sql_types::Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, any_value},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    e2e::{load_from, pick_from, small_cohort},
    helpers::{brain_mri_hook, ehr, ehr_client, free_port, fresh_database, peer, tiny_ensemble},
    hostile_peers::{forward, header, listen, prefetch_pointing_at, request_path},
    processes::neurocds,
};

const SIGN: &str = "neurocds-brain-mri-order-sign";

/// A span as received, with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }
    fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }
    fn parent_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }
    fn attribute(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .map(text)
    }
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/HTTP receiver: `POST /v1/traces` bodies decoded as `ExportTraceServiceRequest`.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    let store = spans.clone();
    let port = listen(move |mut socket, head| {
        let store = store.clone();
        async move {
            let length: usize = header(&head, "content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
            let mut body = vec![0u8; length];
            if socket.read_exact(&mut body).await.is_err() {
                return;
            }
            let decoded = (request_path(&head) == "/v1/traces").then(|| ExportTraceServiceRequest::decode(body.as_slice()).ok()).flatten();
            let status = if let Some(request) = decoded {
                let mut store = store.lock().unwrap();
                for resource_spans in request.resource_spans {
                    let service = resource_spans.resource.iter().flat_map(|r| &r.attributes).find(|a| a.key == "service.name").and_then(|a| a.value.as_ref()).map(text).unwrap_or_default();
                    for scope in resource_spans.scope_spans {
                        store.extend(scope.spans.into_iter().map(|span| Received { service: service.clone(), span }));
                    }
                }
                "200 OK"
            } else {
                "400 Bad Request"
            };
            let answer = format!("HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    })
    .await;
    (format!("http://127.0.0.1:{port}"), spans)
}

/// `upstream` (a base URL) behind a proxy that records each request's path and `traceparent`.
async fn recording_proxy(upstream: &str) -> (String, Arc<Mutex<Vec<(String, Option<String>)>>>) {
    let upstream = url::Url::parse(upstream).unwrap();
    let origin = upstream.origin().ascii_serialization();
    let seen: Arc<Mutex<Vec<(String, Option<String>)>>> = Arc::default();
    let log = seen.clone();
    let port = listen(move |socket, head| {
        let (origin, log) = (origin.clone(), log.clone());
        async move {
            let path = request_path(&head);
            log.lock().unwrap().push((
                path.clone(),
                header(&head, "traceparent").map(str::to_owned),
            ));
            forward(
                socket,
                &origin,
                &path,
                header(&head, "accept").unwrap_or("*/*"),
            )
            .await;
        }
    })
    .await;
    (
        format!(
            "http://127.0.0.1:{port}{}",
            upstream.path().trim_end_matches('/')
        ),
        seen,
    )
}

#[derive(QueryableByName)]
struct StudyRow {
    #[diesel(sql_type = Text)]
    study_uid: String,
}

#[derive(QueryableByName)]
struct TraceRow {
    #[diesel(sql_type = Nullable<Text>)]
    trace_id: Option<String>,
}

#[tokio::test]
async fn a_hook_the_ehr_traced_is_one_trace_across_the_service_the_queue_a_worker_and_the_peers_it_asks()
 {
    let (collector, spans) = otlp_receiver().await;
    let patient = load_from(small_cohort(), &pick_from(small_cohort(), 0));
    let (pacs, pacs_seen) = recording_proxy(&peer("NEUROCDS_TEST_DICOMWEB")).await;
    let (fhir, fhir_seen) = recording_proxy(&peer("NEUROCDS_TEST_FHIR")).await;

    let (port, worker_port, db) = (free_port(), free_port(), fresh_database().await);
    let base = format!("http://127.0.0.1:{port}");
    let common = |service_name: &str| {
        json!({
            "database": { "url": db, "pool_size": 4 },
            "trust": { "clients": [ehr_client(json!({}))] },
            "egress": { "allowed_networks": ["127.0.0.0/8", "::1/128"] },
            "model": { "manifest": tiny_ensemble().join("manifest.json").to_string_lossy(), "threads": 1 },
            "traces": { "otlp_endpoint": collector, "service_name": service_name, "export_interval_ms": 200 },
        })
    };
    let mut serve_config = common("neurocds");
    serve_config["server"] =
        json!({ "listen": format!("127.0.0.1:{port}"), "public_base_url": base, "workers": 2 });
    serve_config["worker"] = json!({ "embedded": false });
    serve_config["hooks"] = json!({ "order_sign_budget_ms": 60000 });
    let serve = neurocds("serve", &serve_config, &format!("{base}/readyz")).await;
    let mut worker_config = common("neurocds-worker");
    worker_config["worker"] =
        json!({ "listen": format!("127.0.0.1:{worker_port}"), "poll_ms": 200 });
    let worker = neurocds(
        "worker",
        &worker_config,
        &format!("http://127.0.0.1:{worker_port}/readyz"),
    )
    .await;

    // The EHR's own trace: the hook is a child of its span.
    let (trace_id, ehr_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut prefetch = prefetch_pointing_at(&patient, &pacs).await;
    prefetch.as_object_mut().unwrap().remove("patient"); // fetched from the FHIR server instead
    let url = format!("{base}/cds-services/{SIGN}");
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(ehr().token(&url, &[]))
        .header("traceparent", format!("00-{trace_id}-{ehr_span}-01"))
        .json(&brain_mri_hook(
            "order-sign",
            &patient,
            Some(prefetch),
            Some((&fhir, None)),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["cards"].as_array().is_some_and(|c| !c.is_empty()),
        "{body}"
    );

    // Spans arrive in batches: wait for the worker's last stage and the hook's own span.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ours = loop {
        let ours: Vec<Received> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id() == trace_id)
            .cloned()
            .collect();
        let has = |name: &str| ours.iter().any(|s| s.span.name == name);
        if has("inference") && ours.iter().any(|s| s.span.kind == SpanKind::Server as i32) {
            break ours;
        }
        assert!(
            Instant::now() < deadline,
            "waited 30 s for the hook's spans; got {:#?}",
            ours.iter()
                .map(|s| (&s.service, &s.span.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let named = |name: &str| {
        ours.iter()
            .find(|s| s.span.name == name)
            .unwrap_or_else(|| panic!("no {name} span"))
    };

    // The service's server span is the EHR's span's child.
    let hook = ours
        .iter()
        .find(|s| s.span.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(hook.service, "neurocds");
    assert!(
        hook.span.name.starts_with("POST /cds-services/"),
        "{}",
        hook.span.name
    );
    assert_eq!(hook.parent_id(), ehr_span);
    // The analysis ran in the worker process, joined to the hook through the queue.
    let analysis = named("analysis");
    assert_eq!(analysis.service, "neurocds-worker");
    assert_eq!(
        analysis.parent_id(),
        hook.span_id(),
        "the analysis's parent is the hook that queued it"
    );
    for stage in [
        "series_metadata",
        "retrieval",
        "series_selection",
        "assembly",
        "preprocessing",
        "inference",
    ] {
        let s = named(stage);
        assert_eq!(
            s.parent_id(),
            analysis.span_id(),
            "{stage} is a stage of the analysis"
        );
        assert!(s.span.end_time_unix_nano >= s.span.start_time_unix_nano);
    }

    // Every request to a peer is a client span, and carried that span as its traceparent.
    let clients: Vec<&Received> = ours
        .iter()
        .filter(|s| s.span.kind == SpanKind::Client as i32)
        .collect();
    for (peer_name, seen) in [("fhir", &fhir_seen), ("dicomweb", &pacs_seen)] {
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty(), "the {peer_name} server was asked");
        for (path, traceparent) in seen {
            let traceparent = traceparent
                .unwrap_or_else(|| panic!("{peer_name} {path} came without a traceparent"));
            let parts: Vec<&str> = traceparent.split('-').collect();
            assert_eq!(parts[1], trace_id, "{peer_name} {path}");
            let span = clients
                .iter()
                .find(|c| c.span_id() == parts[2])
                .unwrap_or_else(|| panic!("{peer_name} {path}: no client span {}", parts[2]));
            assert_eq!(span.attribute("neurocds.peer").as_deref(), Some(peer_name));
            assert_eq!(
                span.attribute("http.response.status_code").as_deref(),
                Some("200"),
                "{peer_name} {path}"
            );
        }
    }

    // No span holds a URL, the patient or the study.
    let mut conn = AsyncPgConnection::establish(&db).await.unwrap();
    let studies: Vec<StudyRow> = diesel::sql_query("SELECT study_uid FROM analyses")
        .load(&mut conn)
        .await
        .unwrap();
    let study_uid = studies
        .into_iter()
        .next()
        .map(|r| r.study_uid)
        .expect("the analysis row");
    for s in &ours {
        assert!(s.span.events.is_empty(), "log lines stay in the logs, not on span {}: {:?}", s.span.name, s.span.events);
        for a in &s.span.attributes {
            let v = a.value.as_ref().map(text).unwrap_or_default();
            assert!(
                !v.contains(&patient) && !v.contains(&study_uid) && !v.contains("://"),
                "span {} attribute {} = {v}",
                s.span.name,
                a.key
            );
        }
    }

    // The decision and the log lines name the same trace.
    let rows: Vec<TraceRow> = diesel::sql_query("SELECT trace_id FROM decisions")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.trace_id.as_deref())
            .collect::<Vec<_>>(),
        vec![Some(trace_id)]
    );
    let logged = |log: &std::path::Path, message: &str| -> Vec<String> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        lines
            .iter()
            .filter(|l| l["message"] == message)
            .map(|l| l["span"]["trace_id"].as_str().unwrap_or("none").to_owned())
            .collect()
    };
    assert_eq!(
        logged(&serve.log, "hook answered"),
        vec![trace_id.to_owned()],
        "see {}",
        serve.log.display()
    );
    assert_eq!(
        logged(&worker.log, "analysis finished"),
        vec![trace_id.to_owned()],
        "see {}",
        worker.log.display()
    );
}
