//! The durable analysis queue, against a real PostgreSQL: one job per key, claimed by one worker
//! at a time under a lease, taken over when its worker stops renewing, retried after a back-off,
//! dead-lettered after `worker.max_attempts`, ordered by priority, bounded — and a hook waiting
//! on one replica woken by a worker finishing on another.
//!
//! These services run no embedded worker: the test plays the workers through the queue's API.

use std::time::{Duration, Instant};

use neurocds::{
    fhir::study::PriorStudy,
    pipeline::run::Ticket,
    queue::{AnalysisKey, Finality, Priority, Queue, Status},
};
use serde_json::{Value, json};

use crate::helpers::{Idp, STAFF_ISS, TestApp, spawn_app_with};

/// A service with no embedded worker and short clocks: 3 s leases, two attempts, 1 s back-off.
async fn app_with(more: Value) -> TestApp {
    let idp = staff_idp();
    let mut config = json!({
        "worker": { "embedded": false, "lease_s": 3, "max_attempts": 2, "poll_ms": 200 },
        "hooks": { "retry_backoff_s": 1, "retry_max_s": 2, "max_pending_analyses": 8 },
        "staff": { "issuer": STAFF_ISS, "jwks": idp.jwks() },
    });
    if let (Some(c), Some(m)) = (config.as_object_mut(), more.as_object()) {
        for (k, v) in m {
            c.insert(k.clone(), v.clone());
        }
    }
    spawn_app_with(config).await
}

fn staff_idp() -> &'static Idp {
    static IDP: std::sync::OnceLock<Idp> = std::sync::OnceLock::new();
    IDP.get_or_init(Idp::new)
}

fn queue(app: &TestApp) -> &Queue {
    app.app.pipeline.queue()
}

fn study(uid: &str) -> PriorStudy {
    PriorStudy {
        reference: Some(format!("ImagingStudy/{uid}")),
        study_uid: uid.into(),
        started: None,
        description: Some("MR brain".into()),
        dicomweb: Some("http://127.0.0.1:1/dicom-web".into()),
        series_dicomweb: Default::default(),
    }
}

fn key(app: &TestApp, uid: &str) -> AnalysisKey {
    app.app.pipeline.key_for("https://ehr.example", "Patient/p-queue", &study(uid))
}

fn result(outcome: &str) -> Value {
    json!({ "outcome": outcome, "reason": format!("{outcome} in the test") })
}

#[tokio::test]
async fn an_analysis_is_queued_once_and_claimed_by_one_worker_at_a_time() {
    let app = app_with(json!({})).await;
    let (q, k) = (queue(&app), key(&app, "2.25.1"));
    assert_eq!(q.enqueue(&k, &study("2.25.1"), Priority::WarmUp).await.unwrap(), Status::Pending);
    assert_eq!(q.enqueue(&k, &study("2.25.1"), Priority::Waiting).await.unwrap(), Status::Pending, "asked again: the same job");
    let first = q.claim("worker-a").await.unwrap().expect("the job is claimed");
    assert_eq!((first.key.clone(), first.study.study_uid.as_str(), first.attempts), (k.clone(), "2.25.1", 0));
    assert!(q.claim("worker-b").await.unwrap().is_none(), "a claimed job is no one else's while its lease holds");
    assert!(q.renew(&first).await.unwrap());
    assert!(q.finish(&first, Finality::Final, &result("recommended"), None).await.unwrap());
    assert_eq!(q.status(&k).await.unwrap(), Some(Status::Done(result("recommended"))));
    assert_eq!(q.enqueue(&k, &study("2.25.1"), Priority::Waiting).await.unwrap(), Status::Done(result("recommended")), "a final result is served, not redone");
    assert!(q.claim("worker-b").await.unwrap().is_none());
}

#[tokio::test]
async fn a_worker_that_stops_renewing_loses_its_job_to_another_and_cannot_finish_it() {
    let app = app_with(json!({})).await;
    let (q, k) = (queue(&app), key(&app, "2.25.2"));
    q.enqueue(&k, &study("2.25.2"), Priority::Waiting).await.unwrap();
    let stalled = q.claim("worker-a").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let taken = q.claim("worker-b").await.unwrap().expect("the expired lease is taken over");
    assert_eq!(taken.key, k);
    assert_eq!(taken.attempts, 1, "the lost run counts as an attempt");
    assert!(!q.renew(&stalled).await.unwrap(), "the first worker learns it lost the job");
    assert!(!q.finish(&stalled, Finality::Final, &result("recommended"), None).await.unwrap(), "and cannot record a result");
    assert!(q.finish(&taken, Finality::Final, &result("out-of-scope"), None).await.unwrap());
    assert_eq!(q.status(&k).await.unwrap(), Some(Status::Done(result("out-of-scope"))));
}

#[tokio::test]
async fn a_failure_is_retried_after_its_back_off_then_dead_lettered_and_shown_to_staff() {
    let app = app_with(json!({})).await;
    let (q, k) = (queue(&app), key(&app, "2.25.3"));
    q.enqueue(&k, &study("2.25.3"), Priority::Waiting).await.unwrap();
    let run = q.claim("worker-a").await.unwrap().unwrap();
    assert!(q.finish(&run, Finality::Retry, &result("unavailable"), Some("the PACS did not answer")).await.unwrap());
    assert_eq!(q.enqueue(&k, &study("2.25.3"), Priority::Waiting).await.unwrap(), Status::Failed(result("unavailable")), "meanwhile hooks get the failure at once");
    assert!(q.claim("worker-a").await.unwrap().is_none(), "not before its back-off");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = q.claim("worker-b").await.unwrap().expect("retried after the back-off");
    assert_eq!(again.attempts, 1);
    assert!(q.finish(&again, Finality::Retry, &result("unavailable"), Some("the PACS did not answer, again")).await.unwrap());
    assert_eq!(q.status(&k).await.unwrap(), Some(Status::Failed(result("unavailable"))), "dead: hooks get the failure");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(q.claim("worker-a").await.unwrap().is_none(), "a dead letter is not retried by the workers");

    // Staff see it, with its last error, on the page and in the compliance API.
    let staff = staff_idp().token(Some("compliance"));
    let api: Value = app.http.get(format!("{}/audit/queue", app.base)).bearer_auth(&staff).send().await.unwrap().json().await.unwrap();
    assert_eq!(api["depth"]["dead"], 1, "{api}");
    assert_eq!(api["dead"][0]["study_uid"], "2.25.3");
    assert_eq!(api["dead"][0]["attempts"], 2);
    assert_eq!(api["dead"][0]["last_error"], "the PACS did not answer, again");
    let page = app.http.get(format!("{}/queue", app.base)).bearer_auth(&staff).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("2.25.3") && page.contains("the PACS did not answer, again"), "{page}");
    assert_eq!(app.http.get(format!("{}/audit/queue", app.base)).send().await.unwrap().status(), 401, "not without a staff token");

    // After hooks.retry_max_s a hook asking for it queues it afresh.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(q.enqueue(&k, &study("2.25.3"), Priority::Waiting).await.unwrap(), Status::Pending);
    assert_eq!(q.claim("worker-a").await.unwrap().expect("queued afresh").attempts, 0);
}

#[tokio::test]
async fn a_clinician_signing_is_served_before_earlier_warm_ups_and_back_fill() {
    let app = app_with(json!({})).await;
    let q = queue(&app);
    q.enqueue(&key(&app, "2.25.10"), &study("2.25.10"), Priority::Backfill).await.unwrap();
    q.enqueue(&key(&app, "2.25.11"), &study("2.25.11"), Priority::WarmUp).await.unwrap();
    q.enqueue(&key(&app, "2.25.12"), &study("2.25.12"), Priority::Waiting).await.unwrap();
    // The back-fill job is signed for now: it moves up, ahead of the warm-up.
    q.enqueue(&key(&app, "2.25.10"), &study("2.25.10"), Priority::Waiting).await.unwrap();
    let mut order = Vec::new();
    while let Some(job) = q.claim("worker-a").await.unwrap() {
        order.push(job.study.study_uid);
    }
    // Among equals, first come first served: the raised job keeps its place in time.
    assert_eq!(order, ["2.25.10", "2.25.12", "2.25.11"]);
}

#[tokio::test]
async fn the_queue_holds_at_most_max_pending_analyses_unfinished_jobs() {
    let app = app_with(json!({ "hooks": { "retry_backoff_s": 1, "retry_max_s": 2, "max_pending_analyses": 2 } })).await;
    let q = queue(&app);
    for uid in ["2.25.20", "2.25.21"] {
        assert_eq!(q.enqueue(&key(&app, uid), &study(uid), Priority::WarmUp).await.unwrap(), Status::Pending);
    }
    assert_eq!(q.enqueue(&key(&app, "2.25.22"), &study("2.25.22"), Priority::Waiting).await.unwrap(), Status::Full(2));
    let job = q.claim("worker-a").await.unwrap().unwrap();
    q.finish(&job, Finality::Final, &result("recommended"), None).await.unwrap();
    assert_eq!(q.enqueue(&key(&app, "2.25.22"), &study("2.25.22"), Priority::Waiting).await.unwrap(), Status::Pending, "a finished job frees its place");
}

/// A PACS announcing its backlog fills half the queue at most: a clinician's hook still finds a
/// place.
#[tokio::test]
async fn announced_studies_fill_half_the_queue_at_most_and_hooks_still_find_room() {
    let app = app_with(json!({ "hooks": { "retry_backoff_s": 1, "retry_max_s": 2, "max_pending_analyses": 4 } })).await;
    let q = queue(&app);
    for uid in ["2.25.40", "2.25.41"] {
        assert_eq!(q.enqueue(&key(&app, uid), &study(uid), Priority::Backfill).await.unwrap(), Status::Pending);
    }
    assert_eq!(q.enqueue(&key(&app, "2.25.42"), &study("2.25.42"), Priority::Backfill).await.unwrap(), Status::Full(2), "back-fill stops at half");
    for uid in ["2.25.43", "2.25.44"] {
        assert_eq!(q.enqueue(&key(&app, uid), &study(uid), Priority::Waiting).await.unwrap(), Status::Pending, "hooks still find room");
    }
    assert_eq!(q.enqueue(&key(&app, "2.25.45"), &study("2.25.45"), Priority::Waiting).await.unwrap(), Status::Full(4));
}

/// A hook waiting on one replica is woken by `NOTIFY` when a worker elsewhere finishes: long
/// before its own look at the table (every 10 s here) would have found the result.
#[tokio::test]
async fn a_hook_waiting_on_one_replica_is_woken_when_a_worker_elsewhere_finishes() {
    let waiting = app_with(json!({ "worker": { "embedded": false, "lease_s": 3, "max_attempts": 2, "poll_ms": 10000 } })).await;
    let elsewhere = app_with(json!({ "database": { "url": waiting.db_url, "pool_size": 4 } })).await;
    // Let both processes' listening connections come up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let k = key(&waiting, "2.25.30");
    queue(&waiting).enqueue(&k, &study("2.25.30"), Priority::Waiting).await.unwrap();
    let started = Instant::now();
    let waiter = {
        let (q, k) = (queue(&waiting).clone(), k.clone());
        tokio::spawn(async move { q.wait(&k, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = queue(&elsewhere).claim("worker-elsewhere").await.unwrap().expect("the other replica's worker claims it");
    queue(&elsewhere).finish(&job, Finality::Final, &result("recommended"), None).await.unwrap();
    let got = waiter.await.unwrap();
    assert_eq!(got, Some(Ok(result("recommended"))));
    assert!(started.elapsed() < Duration::from_secs(5), "woken by the notification, not by polling: {:?}", started.elapsed());
}

/// Issue 17: a result stored by another version (an upgrade changed its format) is not served
/// as "did not finish" until it expires: the next hook queues the study again for this build.
#[tokio::test]
async fn a_stored_result_this_build_cannot_read_is_analysed_again_on_the_next_hook() {
    let app = app_with(json!({})).await;
    let (pipeline, q) = (&app.app.pipeline, queue(&app));
    let (client, patient, s) = ("https://ehr.example", "Patient/p-queue", study("2.25.9"));
    assert!(matches!(pipeline.request(client, patient, &s, Priority::Waiting).await.unwrap(), Ticket::Queued(_)));
    let run = q.claim("worker-old").await.unwrap().expect("queued by the hook");
    let from_another_version = json!({ "format": "from another version", "outcome": "recommended" });
    assert!(q.finish(&run, Finality::Final, &from_another_version, None).await.unwrap());

    assert!(matches!(pipeline.request(client, patient, &s, Priority::Waiting).await.unwrap(), Ticket::Queued(_)), "not servable, so queued");
    let again = q.claim("worker-new").await.unwrap().expect("the study is analysed again");
    assert_eq!((again.key, again.attempts), (key(&app, "2.25.9"), 0));
    assert!(matches!(pipeline.request(client, patient, &s, Priority::Waiting).await.unwrap(), Ticket::Queued(_)), "once, while it runs");
    assert!(q.claim("worker-other").await.unwrap().is_none(), "and claimed once");
}

/// Issue 17: once the cause of a dead letter is fixed, an operator sends it back to the workers
/// (`neurocds queue requeue --study UID`), attempts reset; other dead letters stay where they are.
#[tokio::test]
async fn an_operator_requeues_a_dead_letter_by_hand() {
    let app = app_with(json!({})).await;
    let q = queue(&app);
    for uid in ["2.25.11", "2.25.12"] {
        q.enqueue(&key(&app, uid), &study(uid), Priority::Waiting).await.unwrap();
        let run = q.claim("worker-a").await.unwrap().unwrap();
        assert!(q.dead_letter(&run, &result("unavailable"), "the PACS was down").await.unwrap());
    }
    assert_eq!(q.depth().await.unwrap().dead, 2);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neurocds")).args(["queue", "requeue", "--study", "2.25.11"]).env("DATABASE_URL", &app.db_url).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 dead-lettered"), "{}", String::from_utf8_lossy(&out.stdout));
    let again = q.claim("worker-b").await.unwrap().expect("the requeued study is claimed");
    assert_eq!((again.key, again.attempts), (key(&app, "2.25.11"), 0));
    assert!(q.claim("worker-b").await.unwrap().is_none(), "the other dead letter stays dead");
    assert_eq!(q.depth().await.unwrap().dead, 1);

    let none = std::process::Command::new(env!("CARGO_BIN_EXE_neurocds")).args(["queue", "requeue"]).env("DATABASE_URL", &app.db_url).output().unwrap();
    assert!(!none.status.success(), "a study or --all must be named");
}
