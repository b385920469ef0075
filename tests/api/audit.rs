use std::{path::Path, process::Command};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use neurocds::audit::checkpoint;
use serde_json::json;
use uuid::Uuid;

use crate::{
    helpers::{TestApp, brain_mri_hook, fresh_database, spawn_app, spawn_app_with},
    hooks::{decisions, raw_decisions},
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

/// In production the service connects as a role granted `neurocds_service`, and migrations run
/// as the owner (`database.migrate_url`). That role appends and reads — and nothing else: no
/// UPDATE, DELETE, TRUNCATE or DROP, and no way to switch the append-only triggers off (the
/// decisions' shared contents included).
#[tokio::test]
async fn the_service_role_appends_and_reads_but_cannot_alter_delete_truncate_or_untrigger_the_logs() {
    let owner_url = fresh_database().await;
    let migrate = owner_url.clone();
    tokio::task::spawn_blocking(move || neurocds::audit::db::run_migrations(&migrate)).await.unwrap().unwrap();
    let role = format!("neurocds_app_{}", Uuid::new_v4().simple());
    let mut owner = AsyncPgConnection::establish(&owner_url).await.unwrap();
    diesel::sql_query(format!("CREATE ROLE {role} LOGIN IN ROLE neurocds_service")).execute(&mut owner).await.unwrap();
    let (scheme_user, rest) = owner_url.split_once('@').unwrap();
    let service_url = format!("{}://{role}@{rest}", scheme_user.split_once("://").unwrap().0);

    let app = spawn_app_with(json!({ "database": { "url": service_url, "migrate_url": owner_url } })).await;
    three_decisions(&app).await;
    assert_eq!(decisions(&app).await.len(), 3, "the service role appends and reads");
    let ready = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "readiness reads the migrations table as the service role");

    let mut service = AsyncPgConnection::establish(&service_url).await.unwrap();
    for statement in [
        "UPDATE decisions SET outcome = 'recommended'",
        "DELETE FROM decisions",
        "TRUNCATE decisions",
        "DROP TABLE decisions",
        "ALTER TABLE decisions DISABLE TRIGGER decisions_append_only",
        "ALTER TABLE decisions DISABLE TRIGGER ALL",
        "DROP TRIGGER decisions_append_only ON decisions",
        "DELETE FROM feedback",
        "TRUNCATE feedback",
        "ALTER TABLE feedback DISABLE TRIGGER USER",
        "UPDATE decision_contents SET content = '{}'",
        "DELETE FROM decision_contents",
        "TRUNCATE decision_contents",
        "ALTER TABLE decision_contents DISABLE TRIGGER USER",
        "SET session_replication_role = replica",
    ] {
        let error = diesel::sql_query(statement).execute(&mut service).await.expect_err(statement).to_string();
        assert!(error.contains("permission denied") || error.contains("must be owner"), "{statement}: {error}");
    }
    assert_eq!(app.app.db.verify_chains().await.unwrap(), (3, None));
}

fn neurocds_cli(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_neurocds")).args(args).env("DATABASE_URL", db_url).output().unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Rewrites the decision chain from `from` (an index into `rows`) on, as an owner who knows the
/// hashing would: `mutate` changes that row, and every later row is re-linked and re-hashed, so
/// the chain verifies again.
async fn rewrite_chain(app: &TestApp, from: usize, mutate: impl Fn(&mut neurocds::audit::DecisionRecord)) {
    let rows = raw_decisions(app).await;
    let mut conn = AsyncPgConnection::establish(&app.db_url).await.unwrap();
    diesel::sql_query("ALTER TABLE decisions DISABLE TRIGGER USER").execute(&mut conn).await.unwrap();
    let mut prev = rows[from].prev_hash.clone();
    for (i, row) in rows.iter().enumerate().skip(from) {
        let mut record = row.record.clone();
        if i == from {
            mutate(&mut record);
        }
        let hash = neurocds::audit::chain::content_hash(&prev, &record);
        diesel::sql_query(format!("UPDATE decisions SET outcome = '{}', prev_hash = '{prev}', content_hash = '{hash}' WHERE seq = {}", record.outcome, row.seq))
            .execute(&mut conn)
            .await
            .unwrap();
        prev = hash;
    }
    diesel::sql_query("ALTER TABLE decisions ENABLE TRIGGER USER").execute(&mut conn).await.unwrap();
}

/// The chain alone cannot tell that its newest rows were cut off, nor that it was rebuilt from
/// some row on. A signed checkpoint kept outside the database can: `audit verify --checkpoint`
/// names the checkpoint and the row.
#[tokio::test]
async fn a_signed_checkpoint_catches_rows_cut_off_the_end_and_a_rebuilt_chain() {
    let app = spawn_app().await;
    three_decisions(&app).await;
    let dir = tempfile::tempdir().unwrap();
    assert!(neurocds_cli(&app.db_url, &["audit", "keygen", "--out", path(dir.path())]).status.success());
    let (key, public, file) = (dir.path().join("checkpoint-key.pem"), dir.path().join("checkpoint-key.pub.pem"), dir.path().join("checkpoints.jsonl"));
    let checkpoint_now = || neurocds_cli(&app.db_url, &["audit", "checkpoint", "--key", path(&key), "--out", path(&file)]);
    let verify = || neurocds_cli(&app.db_url, &["audit", "verify", "--checkpoint", path(&file), "--public-key", path(&public)]);

    assert!(checkpoint_now().status.success());
    three_decisions(&app).await;
    assert!(checkpoint_now().status.success());
    let out = verify();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 checkpoint(s)"));

    // The newest decision deleted behind the triggers' back: the chain still holds...
    let rows = decisions(&app).await;
    let mut conn = AsyncPgConnection::establish(&app.db_url).await.unwrap();
    diesel::sql_query("ALTER TABLE decisions DISABLE TRIGGER USER").execute(&mut conn).await.unwrap();
    diesel::sql_query(format!("DELETE FROM decisions WHERE seq = {}", rows[5].seq)).execute(&mut conn).await.unwrap();
    diesel::sql_query("ALTER TABLE decisions ENABLE TRIGGER USER").execute(&mut conn).await.unwrap();
    assert_eq!(app.app.db.verify_chains().await.unwrap(), (5, None), "the chain alone does not see a cut end");
    // ...but the second checkpoint names the row that is gone.
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("line 2") && stdout.contains(&format!("seq {}", rows[5].seq)) && stdout.contains("cut back"), "{stdout}");

    // A chain rebuilt from the first checkpoint's head on verifies by itself, not against it.
    rewrite_chain(&app, 2, |r| r.outcome = "recommended".into()).await;
    assert_eq!(app.app.db.verify_chains().await.unwrap(), (5, None), "a rebuilt chain verifies by itself");
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("line 1") && stdout.contains(&format!("seq {}", rows[2].seq)) && stdout.contains("rewritten"), "{stdout}");
}

/// With `audit.checkpoint_key` and `audit.checkpoint_file` set, the service anchors the heads
/// itself, every `checkpoint_interval_s` while the logs grow.
#[tokio::test]
async fn the_service_writes_signed_checkpoints_while_the_log_grows() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = checkpoint::SigningKey::generate(dir.path()).unwrap();
    let file = dir.path().join("checkpoints.jsonl");
    let app = spawn_app_with(json!({ "audit": { "checkpoint_key": path(&key), "checkpoint_file": path(&file), "checkpoint_interval_s": 1 } })).await;
    three_decisions(&app).await;
    let newest = decisions(&app).await.last().unwrap().seq;
    let public = checkpoint::PublicKey::load(&public).unwrap();
    let mut anchored = false;
    for _ in 0..50 {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().filter_map(|l| serde_json::from_str::<checkpoint::Checkpoint>(l).ok()).any(|c| c.decisions.seq == newest) {
            anchored = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(anchored, "no checkpoint names decision seq {newest}: {}", std::fs::read_to_string(&file).unwrap_or_default());
    let (lines, broken) = checkpoint::verify(&app.app.db, &public, &file).await.unwrap();
    assert_eq!(broken, None);
    assert!(lines >= 1);
}

/// A lock held elsewhere (a maintenance transaction, a stuck session) fails the service's
/// statement after `database.lock_timeout_ms` instead of holding its connection without end.
#[tokio::test]
async fn a_lock_held_elsewhere_fails_the_statement_instead_of_hanging_it() {
    use diesel_async::SimpleAsyncConnection;
    let app = spawn_app_with(json!({ "database": { "lock_timeout_ms": 300 } })).await;
    three_decisions(&app).await;
    let mut maintenance = AsyncPgConnection::establish(&app.db_url).await.unwrap();
    maintenance.batch_execute("BEGIN; LOCK TABLE decisions IN ACCESS EXCLUSIVE MODE").await.unwrap();

    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), app.app.db.verify_chains()).await;
    let failed = waited.expect("the statement fails after lock_timeout, it does not wait for the lock");
    assert!(failed.is_err(), "the table was locked: {failed:?}");

    maintenance.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(app.app.db.verify_chains().await.unwrap(), (3, None), "the pool works again once the lock is gone");
}
