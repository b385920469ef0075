//! Several replicas, one PostgreSQL: what one replica accepted, the others know.

use serde_json::json;

use crate::helpers::{TestApp, brain_mri_hook, ehr, spawn_app_with};

const SIGN: &str = "neurocds-brain-mri-order-sign";

/// Two replicas sharing the database and one public URL (the first's), as behind a load
/// balancer: tokens name the first's endpoints and are good at either.
async fn two_replicas(shared_replay_check: bool) -> (TestApp, TestApp) {
    let trust = json!({ "trust": { "shared_replay_check": shared_replay_check } });
    let first = spawn_app_with(trust.clone()).await;
    let mut second = trust;
    second["database"] = json!({ "url": first.db_url });
    second["server"] = json!({ "public_base_url": first.base });
    let second = spawn_app_with(second).await;
    (first, second)
}

async fn sign(replica: &TestApp, token: &str) -> u16 {
    let body = brain_mri_hook("order-sign", "p-replicas", Some(json!({ "patient": null, "priorImaging": null })), None);
    let r = replica.http.post(format!("{}/cds-services/{SIGN}", replica.base)).bearer_auth(token).json(&body).send().await.expect("hook request");
    r.status().as_u16()
}

/// r192 (jti protects against replay), across replicas: with `trust.shared_replay_check`, a
/// token accepted by one replica is refused by every other, and fresh tokens pass anywhere.
#[tokio::test]
async fn a_token_replayed_to_another_replica_is_refused_when_the_check_is_shared() {
    let (first, second) = two_replicas(true).await;
    let token = ehr().token(&first.service_url(SIGN), &[]);
    assert_eq!(sign(&first, &token).await, 200, "first use");
    assert_eq!(sign(&second, &token).await, 401, "replayed to the other replica");
    assert_eq!(sign(&first, &token).await, 401, "replayed to the same replica");
    assert_eq!(sign(&second, &ehr().token(&first.service_url(SIGN), &[])).await, 200, "a fresh token, either replica");
}

/// Without the shared check each replica still refuses a replay to itself.
#[tokio::test]
async fn without_the_shared_check_each_replica_refuses_replays_to_itself() {
    let (first, second) = two_replicas(false).await;
    let token = ehr().token(&first.service_url(SIGN), &[]);
    assert_eq!(sign(&second, &token).await, 200);
    assert_eq!(sign(&second, &token).await, 401);
}
