//! Workers that die: real `neurocds worker` processes against the service's PostgreSQL, killed
//! with SIGKILL mid-analysis, and a PACS that fails every attempt. No analysis is lost, and no
//! hook is left without a clinician-safe answer.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use diesel::{QueryableByName, sql_types::Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::{
    e2e::{load_from, pick_from, small_cohort},
    helpers::{TestApp, brain_mri_hook, free_port, peer, spawn_app_with, tiny_ensemble},
    hooks::decisions,
    hostile_peers::{forward, header, listen, prefetch_pointing_at, request_path},
    processes::{Process, neurocds},
};

const SELECT: &str = "neurocds-brain-mri-order-select";
const SIGN: &str = "neurocds-brain-mri-order-sign";

/// `neurocds worker` on `app`'s database with 3 s leases, once it is ready; and the port of its
/// `/readyz` and `/metrics`.
async fn worker(app: &TestApp) -> (Process, u16) {
    worker_with_lease(app, 3).await
}

async fn worker_with_lease(app: &TestApp, lease_s: u64) -> (Process, u16) {
    let port = free_port();
    let config = json!({
        "database": { "url": app.db_url, "pool_size": 4 },
        "egress": { "allowed_networks": ["127.0.0.0/8", "::1/128"] },
        "model": { "manifest": tiny_ensemble().join("manifest.json").to_string_lossy(), "threads": 1 },
        "worker": { "lease_s": lease_s, "poll_ms": 200, "listen": format!("127.0.0.1:{port}") },
    });
    let process = neurocds("worker", &config, &format!("http://127.0.0.1:{port}/readyz")).await;
    let ready: Value = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["role"], "worker", "{ready}");
    (process, port)
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    worker: Option<String>,
}

/// The state of the one analysis in `app`'s queue, and who holds (or held) it.
async fn the_analysis(app: &TestApp) -> Option<(String, Option<String>)> {
    let mut conn = AsyncPgConnection::establish(&app.db_url).await.unwrap();
    let rows: Vec<Row> = diesel::sql_query("SELECT state, worker FROM analyses").load(&mut conn).await.unwrap();
    rows.into_iter().next().map(|r| (r.state, r.worker))
}

async fn until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The test Orthanc behind a door: while `held` is set, requests wait at the door.
async fn pacs_behind_a_door(held: Arc<AtomicBool>) -> String {
    let upstream = url::Url::parse(&peer("NEUROCDS_TEST_DICOMWEB")).unwrap();
    let origin = upstream.origin().ascii_serialization();
    let port = listen(move |socket, head| {
        let (origin, held) = (origin.clone(), held.clone());
        async move {
            while AtomicBool::load(&held, Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            forward(socket, &origin, &request_path(&head), header(&head, "accept").unwrap_or("*/*")).await;
        }
    })
    .await;
    format!("http://127.0.0.1:{port}{}", upstream.path().trim_end_matches('/'))
}

/// `kill -9` of a worker mid-analysis: its lease runs out, another worker takes the job over and
/// finishes it, and the clinician's order-sign gets the result.
#[tokio::test]
async fn a_worker_killed_mid_analysis_loses_its_job_to_another_that_finishes_it() {
    let app = spawn_app_with(json!({ "worker": { "embedded": false }, "hooks": { "order_sign_budget_ms": 60000 } })).await;
    let patient = load_from(small_cohort(), &pick_from(small_cohort(), 1));
    let held = Arc::new(AtomicBool::new(true));
    let pacs = pacs_behind_a_door(held.clone()).await;
    let prefetch = prefetch_pointing_at(&patient, &pacs).await;

    let (mut first, _) = worker(&app).await;
    let (status, _) = app.hook(SELECT, &brain_mri_hook("order-select", &patient, Some(prefetch.clone()), None)).await;
    assert_eq!(status, 200);
    let first_pid = format!(":{}", first.pid());
    until("the first worker to claim the analysis", Duration::from_secs(30), || async {
        matches!(the_analysis(&app).await, Some((s, Some(w))) if s == "running" && w.ends_with(&first_pid))
    })
    .await;

    // Mid-analysis (waiting on the PACS): SIGKILL, no chance to give the job back.
    first.kill();
    let killed = Instant::now();
    held.store(false, Ordering::SeqCst);
    let (second, second_port) = worker(&app).await;
    let second_pid = format!(":{}", second.pid());
    until("the second worker to finish the analysis", Duration::from_secs(90), || async {
        matches!(the_analysis(&app).await, Some((s, Some(w))) if s == "done" && w.ends_with(&second_pid))
    })
    .await;
    eprintln!("kill -9 of the worker → analysis finished by the other: {:?} (lease 3 s)", killed.elapsed());

    let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, Some(prefetch), None)).await;
    assert_eq!(status, 200, "{resp}");
    let rows = decisions(&app).await;
    let sign = rows.last().unwrap();
    assert!(!["unavailable", "pending"].contains(&sign.record.outcome.as_str()), "the order-sign gets the finished analysis: {:?} {:?}", sign.record.outcome, sign.record.reason);
    assert!(resp["cards"].as_array().is_some_and(|c| !c.is_empty()), "{resp}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{second_port}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("neurocds_analyses_total{") && !l.ends_with(" 0")), "{metrics}");
}

/// A PACS that fails every time: the analysis is tried `worker.max_attempts` times, then
/// dead-lettered with its error; the clinician gets an "unavailable" card, never a hang.
#[tokio::test]
async fn an_analysis_that_fails_every_attempt_is_dead_lettered_and_the_clinician_told_it_is_unavailable() {
    let app = spawn_app_with(json!({
        "worker": { "embedded": true, "max_attempts": 2, "poll_ms": 200, "lease_s": 30, "concurrency": 2, "listen": "127.0.0.1:0" },
        "hooks": { "retry_backoff_s": 1, "retry_max_s": 600, "order_sign_budget_ms": 20000 },
    }))
    .await;
    let patient = load_from(small_cohort(), &pick_from(small_cohort(), 1));
    let port = listen(|mut socket, _head| async move {
        use tokio::io::AsyncWriteExt;
        let _ = socket.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    })
    .await;
    let prefetch = prefetch_pointing_at(&patient, &format!("http://127.0.0.1:{port}/dicom-web")).await;
    let (status, _) = app.hook(SELECT, &brain_mri_hook("order-select", &patient, Some(prefetch.clone()), None)).await;
    assert_eq!(status, 200);
    until("the analysis to be dead-lettered", Duration::from_secs(30), || async { matches!(the_analysis(&app).await, Some((s, _)) if s == "dead") }).await;
    let dead = app.app.pipeline.queue().dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert!(dead[0].last_error.as_deref().is_some_and(|e| e.contains("503")), "{:?}", dead[0].last_error);

    let started = Instant::now();
    let (status, resp) = app.hook(SIGN, &brain_mri_hook("order-sign", &patient, Some(prefetch), None)).await;
    assert_eq!(status, 200, "{resp}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered at once, not after the budget: {:?}", started.elapsed());
    let rows = decisions(&app).await;
    assert_eq!(rows.last().unwrap().record.outcome, "unavailable");
    assert!(resp.to_string().to_lowercase().contains("unavailable"), "{resp}");
}

/// SIGTERM (a rolling update, a node drain): the worker stops claiming and gives its job back at
/// once — long before its 60 s lease would have run out — and another worker finishes it.
#[tokio::test]
async fn a_worker_stopped_with_sigterm_gives_its_job_back_at_once() {
    let app = spawn_app_with(json!({ "worker": { "embedded": false }, "hooks": { "order_sign_budget_ms": 60000 } })).await;
    let patient = load_from(small_cohort(), &pick_from(small_cohort(), 1));
    let held = Arc::new(AtomicBool::new(true));
    let pacs = pacs_behind_a_door(held.clone()).await;
    let prefetch = prefetch_pointing_at(&patient, &pacs).await;
    let (mut first, _) = worker_with_lease(&app, 60).await;
    let (status, _) = app.hook(SELECT, &brain_mri_hook("order-select", &patient, Some(prefetch.clone()), None)).await;
    assert_eq!(status, 200);
    let first_pid = format!(":{}", first.pid());
    until("the worker to claim the analysis", Duration::from_secs(30), || async {
        matches!(the_analysis(&app).await, Some((s, Some(w))) if s == "running" && w.ends_with(&first_pid))
    })
    .await;
    let stopped = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &first.pid().to_string()]).status().unwrap().success());
    until("the job to be given back", Duration::from_secs(10), || async { matches!(the_analysis(&app).await, Some((s, None)) if s == "queued") }).await;
    assert!(stopped.elapsed() < Duration::from_secs(10), "given back at once, not after the lease");
    let exited = first.child.wait().unwrap();
    assert!(exited.success(), "the worker exits cleanly on SIGTERM: {exited:?}");
    held.store(false, Ordering::SeqCst);
    let (_second, _) = worker(&app).await;
    until("another worker to finish it", Duration::from_secs(60), || async { matches!(the_analysis(&app).await, Some((s, _)) if s == "done") }).await;
}
