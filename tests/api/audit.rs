use diesel_async::RunQueryDsl;
use serde_json::json;
use uuid::Uuid;

use crate::{
    helpers::{TestApp, brain_mri_hook, spawn_app},
    hooks::decisions,
};

const SIGN: &str = "neurocds-brain-mri-order-sign";

async fn three_decisions(app: &TestApp) {
    for _ in 0..3 {
        let body = brain_mri_hook("order-sign", &format!("p{}", Uuid::new_v4().simple()), Some(json!({ "patient": null, "priorImaging": null })), None);
        assert_eq!(app.hook(SIGN, &body).await.0, 200);
    }
}

#[tokio::test]
async fn each_decision_is_chained_to_the_one_before() {
    let app = spawn_app().await;
    three_decisions(&app).await;
    let rows = decisions(&app).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].prev_hash, neurocds::audit::chain::GENESIS);
    assert_eq!(rows[1].prev_hash, rows[0].content_hash);
    assert_eq!(rows[2].prev_hash, rows[1].content_hash);
    assert_eq!(app.app.db.verify_chains().await.unwrap(), (3, None));
}

/// Decisions from concurrent hooks are committed in batches (one multi-row INSERT each); the
/// batches still form one chain whose `seq` order is the chain's order.
#[tokio::test]
async fn concurrent_decisions_are_batched_into_one_unbroken_chain() {
    let app = spawn_app().await;
    let calls = (0..40).map(|_| {
        let body = brain_mri_hook("order-sign", &format!("p{}", Uuid::new_v4().simple()), Some(json!({ "patient": null, "priorImaging": null })), None);
        let app = &app;
        async move { app.hook(SIGN, &body).await.0 }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let rows = decisions(&app).await;
    assert_eq!(rows.len(), 40);
    for pair in rows.windows(2) {
        assert!(pair[0].seq < pair[1].seq);
        assert_eq!(pair[1].prev_hash, pair[0].content_hash, "row {} is chained to the row before it", pair[1].seq);
    }
    assert_eq!(app.app.db.verify_chains().await.unwrap(), (40, None));
}

#[tokio::test]
async fn the_database_refuses_update_and_delete_on_the_decision_log() {
    let app = spawn_app().await;
    three_decisions(&app).await;
    let mut conn = app.app.db.conn().await.unwrap();
    let update = diesel::sql_query("UPDATE decisions SET outcome = 'recommended'").execute(&mut conn).await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = diesel::sql_query("DELETE FROM decisions").execute(&mut conn).await;
    assert!(delete.unwrap_err().to_string().contains("append-only"));
    let truncate = diesel::sql_query("TRUNCATE decisions").execute(&mut conn).await;
    assert!(truncate.is_err());
}

/// Tampering as the database owner (triggers disabled) is caught, and the first altered row is
/// named — by the library and by `neurocds audit verify`.
#[tokio::test]
async fn audit_verify_names_the_first_row_altered_behind_the_triggers_back() {
    let app = spawn_app().await;
    three_decisions(&app).await;
    let rows = decisions(&app).await;
    let mut conn = app.app.db.conn().await.unwrap();
    diesel::sql_query("ALTER TABLE decisions DISABLE TRIGGER USER").execute(&mut conn).await.unwrap();
    diesel::sql_query(format!("UPDATE decisions SET outcome = 'recommended', recommendation = 'biopsy' WHERE seq = {}", rows[1].seq)).execute(&mut conn).await.unwrap();
    diesel::sql_query("ALTER TABLE decisions ENABLE TRIGGER USER").execute(&mut conn).await.unwrap();
    let (_, broken) = app.app.db.verify_chains().await.unwrap();
    let broken = broken.expect("the chain is broken");
    assert_eq!(broken.seq, rows[1].seq);
    assert!(broken.reason.contains("altered"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neurocds"))
        .args(["audit", "verify"])
        .env("DATABASE_URL", &app.db_url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "exit code 2 means: the chain is broken");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&rows[1].record.decision_id.to_string()), "{stdout}");
}

#[tokio::test]
async fn audit_verify_passes_on_an_intact_log() {
    let app = spawn_app().await;
    three_decisions(&app).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neurocds")).args(["audit", "verify"]).env("DATABASE_URL", &app.db_url).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 rows"));
}
