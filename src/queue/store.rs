//! The queue: its rules, and one SQL statement per step of a job's life (the life is in the
//! module above).

use std::{sync::Arc, time::Duration};

use diesel::{
    QueryableByName,
    sql_types::{BigInt, Double, Integer, Jsonb, Nullable, SmallInt, Text, Timestamptz},
};
use diesel_async::RunQueryDsl;
use serde_json::Value;

use super::{
    events::{self, Event, Events},
    job::{AnalysisKey, Claimed, DeadLetter, Depth, Finality, Priority, Status},
};
use crate::{
    audit::{AuditError, Database},
    config::{HookSettings, WorkerSettings},
    fhir::study::PriorStudy,
};

/// `WHERE` for one key; binds $1–$5.
/// What queuing a job afresh resets: its clocks, attempts, result and claim.
const AFRESH: &str = "queued_at = now(), run_after = now(), attempts = 0, result = NULL, finished_at = NULL, until_at = NULL, \
                      started_at = NULL, lease_until = NULL, claim = NULL, worker = NULL, last_error = NULL";

const KEY: &str = "patient_ref = $1 AND study_uid = $2 AND model_version = $3 AND client = $4 AND source = $5";

macro_rules! bind_key {
    ($query:expr, $key:expr) => {
        $query
            .bind::<Text, _>(&$key.patient_ref)
            .bind::<Text, _>(&$key.study_uid)
            .bind::<Text, _>(&$key.model_version)
            .bind::<Text, _>(&$key.client)
            .bind::<Text, _>(&$key.source)
    };
}

#[derive(QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    result: Option<Value>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    backing_off: bool,
}

impl StateRow {
    fn status(self) -> Status {
        match (self.state.as_str(), self.result) {
            ("done", Some(v)) => Status::Done(v),
            ("dead", Some(v)) => Status::Failed(v),
            ("queued", Some(v)) if self.backing_off => Status::Failed(v),
            _ => Status::Pending,
        }
    }
}

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = Text)]
    patient_ref: String,
    #[diesel(sql_type = Text)]
    study_uid: String,
    #[diesel(sql_type = Text)]
    model_version: String,
    #[diesel(sql_type = Text)]
    client: String,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    job: Option<Value>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

#[derive(QueryableByName)]
struct DeadRow {
    #[diesel(sql_type = Text)]
    study_uid: String,
    #[diesel(sql_type = Text)]
    client: String,
    #[diesel(sql_type = Text)]
    model_version: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    finished_at: Option<time::OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    queued_at: Option<time::OffsetDateTime>,
}

#[derive(QueryableByName)]
struct DepthRow {
    #[diesel(sql_type = BigInt)]
    queued: i64,
    #[diesel(sql_type = BigInt)]
    running: i64,
    #[diesel(sql_type = BigInt)]
    dead: i64,
    #[diesel(sql_type = Double)]
    oldest_wait_s: f64,
}

#[derive(QueryableByName)]
struct ResultRow {
    #[diesel(sql_type = Nullable<Jsonb>)]
    result: Option<Value>,
}

/// The queue: the database, the rules that bound it, and the wake-ups.
#[derive(Clone)]
pub struct Queue {
    db: Database,
    rules: Arc<Rules>,
    events: Events,
}

/// The settings the queue's SQL reads.
#[derive(Debug, Clone)]
struct Rules {
    max_pending: usize,
    lease: Duration,
    max_attempts: u32,
    retry_base_s: u64,
    retry_max_s: u64,
    poll: Duration,
}

impl Queue {
    pub fn new(db: Database, hooks: &HookSettings, worker: &WorkerSettings, events: Events) -> Queue {
        let rules = Rules {
            max_pending: hooks.max_pending_analyses,
            lease: Duration::from_secs(worker.lease_s.max(1)),
            max_attempts: worker.max_attempts.max(1),
            retry_base_s: hooks.retry_backoff_s,
            retry_max_s: hooks.retry_max_s,
            poll: Duration::from_millis(worker.poll_ms.max(10)),
        };
        Queue { db, rules: Arc::new(rules), events }
    }

    /// Wake-ups from this process and, through `LISTEN`, from every other.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// How long a claim holds a job without renewal.
    pub fn lease(&self) -> Duration {
        self.rules.lease
    }

    /// How often workers and waiting hooks look at the table when no wake-up came.
    pub fn poll(&self) -> Duration {
        self.rules.poll
    }

    pub fn max_attempts(&self) -> u32 {
        self.rules.max_attempts
    }

    /// Waits up to `budget` for the job `key` to finish; `None` when the budget ran out first.
    /// Wake-ups cut the wait short; without them (the listening connection down) it looks every
    /// `worker.poll_ms`.
    pub async fn wait(&self, key: &AnalysisKey, budget: Duration) -> Option<Result<Value, Value>> {
        let deadline = tokio::time::Instant::now() + budget;
        let digest = key.digest();
        // Subscribe before the first look, so that a finish between the two is not missed.
        let mut wakeups = self.events.subscribe();
        loop {
            match self.status(key).await {
                Ok(Some(Status::Done(v))) => return Some(Ok(v)),
                Ok(Some(Status::Failed(v))) => return Some(Err(v)),
                _ => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return None;
            }
            let until = deadline.min(now + self.rules.poll);
            loop {
                tokio::select! {
                    event = wakeups.recv() => match event {
                        Ok(Event::Finished(d)) if d == digest => break,
                        Ok(_) => continue,
                        // Lagged or closed: look at the table.
                        Err(_) => break,
                    },
                    _ = tokio::time::sleep_until(until) => break,
                }
            }
        }
    }

    /// Dead letters, newest first.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, AuditError> {
        dead_letters(&self.db, limit).await
    }

    /// Jobs by state now.
    pub async fn depth(&self) -> Result<Depth, AuditError> {
        depth(&self.db).await
    }
}

/// The job's field holding the `traceparent` of the hook that queued it: the analysis's span
/// joins that hook's trace, in whichever process claims it.
const TRACE_CONTEXT: &str = crate::telemetry::traces::TRACEPARENT;

/// A queued job: the study as the hook resolved it, and the hook's trace context.
fn job_of(study: &PriorStudy) -> Result<Value, AuditError> {
    let mut job = serde_json::to_value(study).map_err(|e| AuditError::Append(format!("cannot serialise the job: {e}")))?;
    if let (Some(fields), Some(tp)) = (job.as_object_mut(), crate::telemetry::traces::current_traceparent()) {
        fields.insert(TRACE_CONTEXT.into(), Value::String(tp));
    }
    Ok(job)
}

impl Queue {
    /// Queues the analysis of `study` under `key` unless it is queued, running or finished
    /// already (or finished, dead or failed recently: see [`Status`]); raises a queued job's
    /// priority to `priority`.
    pub async fn enqueue(&self, key: &AnalysisKey, study: &PriorStudy, priority: Priority) -> Result<Status, AuditError> {
        let job = job_of(study)?;
        // Back-fill may take half the queue at most: a PACS announcing a thousand studies never
        // leaves a clinician's hook without a place.
        let bound = if priority == Priority::Backfill { (self.rules.max_pending / 2).max(1) } else { self.rules.max_pending };
        let mut conn = self.db.conn().await?;
        // A new job, or a finished or dead one whose time ran out, is queued — within the bound.
        let queued = bind_key!(
            diesel::sql_query(format!(
                "INSERT INTO analyses (patient_ref, study_uid, model_version, client, source, state, job, priority, queued_at, run_after, attempts) \
                 SELECT $1, $2, $3, $4, $5, 'queued', $6, $7, now(), now(), 0 \
                 WHERE (SELECT count(*) FROM analyses WHERE state IN ('queued', 'running')) < $8 \
                 ON CONFLICT (patient_ref, study_uid, model_version, client, source) DO UPDATE \
                   SET state = 'queued', job = EXCLUDED.job, priority = EXCLUDED.priority, {AFRESH} \
                   WHERE analyses.state IN ('done', 'dead') AND analyses.until_at IS NOT NULL AND analyses.until_at <= now()"
            )),
            key
        )
        .bind::<Jsonb, _>(&job)
        .bind::<SmallInt, _>(priority as i16)
        .bind::<BigInt, _>(bound as i64)
        .execute(&mut conn)
        .await
        .map_err(AuditError::query("queuing an analysis"))?;
        if queued > 0 {
            // After the insert committed: a worker woken by this finds the row.
            diesel::sql_query(format!("SELECT pg_notify('{}', '')", events::QUEUED)).execute(&mut conn).await.map_err(AuditError::query("announcing a queued analysis"))?;
            self.events.publish(Event::Queued);
            return Ok(Status::Pending);
        }
        let rows: Vec<StateRow> = bind_key!(
            diesel::sql_query(format!(
                "WITH bump AS (UPDATE analyses SET priority = $6 WHERE {KEY} AND state IN ('queued', 'running') AND priority < $6 RETURNING 1) \
                 SELECT state, result, run_after > now() AS backing_off FROM analyses WHERE {KEY}"
            )),
            key
        )
        .bind::<SmallInt, _>(priority as i16)
        .load(&mut conn)
        .await
        .map_err(AuditError::query("reading an analysis"))?;
        Ok(rows.into_iter().next().map(StateRow::status).unwrap_or(Status::Full(bound)))
    }

    /// Queues `key` afresh although it has a stored result: one this build cannot read (it was
    /// written by another version during an upgrade). Within the same bound as
    /// [`Queue::enqueue`]; a job queued or running meanwhile is left as it is.
    pub async fn redo(&self, key: &AnalysisKey, study: &PriorStudy, priority: Priority) -> Result<Status, AuditError> {
        let job = job_of(study)?;
        let bound = if priority == Priority::Backfill { (self.rules.max_pending / 2).max(1) } else { self.rules.max_pending };
        let mut conn = self.db.conn().await?;
        let queued = bind_key!(
            diesel::sql_query(format!(
                "UPDATE analyses SET state = 'queued', job = $6, priority = $7, {AFRESH} \
                 WHERE {KEY} AND result IS NOT NULL AND state <> 'running' \
                   AND (SELECT count(*) FROM analyses WHERE state IN ('queued', 'running')) < $8"
            )),
            key
        )
        .bind::<Jsonb, _>(&job)
        .bind::<SmallInt, _>(priority as i16)
        .bind::<BigInt, _>(bound as i64)
        .execute(&mut conn)
        .await
        .map_err(AuditError::query("queuing an analysis again"))?;
        if queued == 0 {
            drop(conn);
            return Ok(match self.status(key).await? {
                Some(Status::Pending) => Status::Pending,
                _ => Status::Full(bound),
            });
        }
        diesel::sql_query(format!("SELECT pg_notify('{}', '')", events::QUEUED)).execute(&mut conn).await.map_err(AuditError::query("announcing a queued analysis"))?;
        self.events.publish(Event::Queued);
        Ok(Status::Pending)
    }

    /// The operator's hand on the dead letter (`neurocds queue requeue`): queues the dead jobs
    /// again now, with their attempts reset — those of one study (`Some(uid)`), or all — once the
    /// cause (a PACS down, a bad series rule) is fixed. Returns how many were queued. Outside
    /// `hooks.max_pending_analyses` on purpose: an operator asked for exactly these.
    pub async fn requeue_dead(&self, study_uid: Option<&str>) -> Result<usize, AuditError> {
        let mut conn = self.db.conn().await?;
        let n = diesel::sql_query(format!(
            "UPDATE analyses SET state = 'queued', {AFRESH} WHERE state = 'dead' AND ($1::text IS NULL OR study_uid = $1)"
        ))
        .bind::<Nullable<Text>, _>(study_uid)
        .execute(&mut conn)
        .await
        .map_err(AuditError::query("queuing dead letters again"))?;
        if n > 0 {
            diesel::sql_query(format!("SELECT pg_notify('{}', '')", events::QUEUED)).execute(&mut conn).await.map_err(AuditError::query("announcing a queued analysis"))?;
            self.events.publish(Event::Queued);
        }
        Ok(n)
    }

    /// Where the job `key` stands; `None` when there is no such job.
    pub async fn status(&self, key: &AnalysisKey) -> Result<Option<Status>, AuditError> {
        let mut conn = self.db.conn().await?;
        let rows: Vec<StateRow> = bind_key!(diesel::sql_query(format!("SELECT state, result, run_after > now() AS backing_off FROM analyses WHERE {KEY}")), key)
            .load(&mut conn)
            .await
            .map_err(AuditError::query("reading an analysis"))?;
        Ok(rows.into_iter().next().map(StateRow::status))
    }

    /// Claims the most urgent ready job (or one whose worker's lease ran out) for `worker`.
    /// A job this build cannot read is dead-lettered on the spot, and the next one claimed.
    pub async fn claim(&self, worker: &str) -> Result<Option<Claimed>, AuditError> {
        loop {
            let claim = uuid::Uuid::new_v4();
            let mut conn = self.db.conn().await?;
            let rows: Vec<ClaimRow> = diesel::sql_query(
                "UPDATE analyses a SET state = 'running', claim = $1, worker = $2, started_at = now(), \
                   lease_until = now() + make_interval(secs => $3), \
                   attempts = a.attempts + CASE WHEN a.state = 'running' THEN 1 ELSE 0 END \
                 FROM (SELECT patient_ref, study_uid, model_version, client, source FROM analyses \
                       WHERE (state = 'queued' AND run_after <= now()) OR (state = 'running' AND lease_until < now()) \
                       ORDER BY priority DESC, queued_at LIMIT 1 FOR UPDATE SKIP LOCKED) n \
                 WHERE a.patient_ref = n.patient_ref AND a.study_uid = n.study_uid AND a.model_version = n.model_version \
                   AND a.client = n.client AND a.source = n.source \
                 RETURNING a.patient_ref, a.study_uid, a.model_version, a.client, a.source, a.job, a.attempts",
            )
            .bind::<diesel::sql_types::Uuid, _>(claim)
            .bind::<Text, _>(worker)
            .bind::<Double, _>(self.rules.lease.as_secs_f64())
            .load(&mut conn)
            .await
            .map_err(AuditError::query("claiming an analysis"))?;
            drop(conn);
            let Some(row) = rows.into_iter().next() else { return Ok(None) };
            let key = AnalysisKey { patient_ref: row.patient_ref, study_uid: row.study_uid, model_version: row.model_version, client: row.client, source: row.source };
            let attempts = row.attempts.max(0) as u32;
            match row.job.clone().map(serde_json::from_value::<PriorStudy>) {
                Some(Ok(study)) => {
                    let traceparent = row.job.as_ref().and_then(|j| j.get(TRACE_CONTEXT)).and_then(Value::as_str).map(str::to_owned);
                    return Ok(Some(Claimed { key, study, claim, attempts, traceparent }));
                }
                _ => {
                    let unreadable = "this job cannot be read by this build";
                    self.end(&key, claim, &self.dead_set(), &serde_json::json!({ "reason": unreadable }), Some(unreadable)).await?;
                }
            }
        }
    }

    /// Extends `claimed`'s lease; false when the job is no longer this claim's (taken over after
    /// the lease ran out, or finished by someone else): its worker must stop.
    pub async fn renew(&self, claimed: &Claimed) -> Result<bool, AuditError> {
        let mut conn = self.db.conn().await?;
        let n = bind_key!(diesel::sql_query(format!("UPDATE analyses SET lease_until = now() + make_interval(secs => $7) WHERE {KEY} AND claim = $6 AND state = 'running'")), claimed.key)
            .bind::<diesel::sql_types::Uuid, _>(claimed.claim)
            .bind::<Double, _>(self.rules.lease.as_secs_f64())
            .execute(&mut conn)
            .await
            .map_err(AuditError::query("renewing a lease"))?;
        Ok(n == 1)
    }

    /// Records the end of `claimed`'s run and wakes whoever waits for it: `done` (final, or
    /// until it expires) with its result, or, for a failure, queued again after the back-off —
    /// dead once it has failed `worker.max_attempts` times. False when the job was no longer
    /// this claim's (the result is dropped).
    pub async fn finish(&self, claimed: &Claimed, finality: Finality, result: &Value, error: Option<&str>) -> Result<bool, AuditError> {
        if finality == Finality::Retry && claimed.attempts + 1 >= self.rules.max_attempts {
            return self.dead_letter(claimed, result, error.unwrap_or("failed")).await;
        }
        let set = match finality {
            Finality::Final => "state = 'done', until_at = NULL, attempts = 0".to_owned(),
            Finality::Expires { seconds } => format!("state = 'done', until_at = now() + make_interval(secs => {seconds}::double precision), attempts = 0"),
            Finality::Retry => {
                let (base, max) = (self.rules.retry_base_s, self.rules.retry_max_s);
                format!(
                    "state = 'queued', attempts = attempts + 1, until_at = NULL, \
                     run_after = now() + make_interval(secs => least({max}::double precision, {base}::double precision * power(2, least(attempts, 20))))"
                )
            }
        };
        self.end(&claimed.key, claimed.claim, &set, result, error).await
    }

    /// Gives `claimed` back to the queue untouched (this worker is shutting down).
    pub async fn give_back(&self, claimed: &Claimed) -> Result<bool, AuditError> {
        let mut conn = self.db.conn().await?;
        let n = bind_key!(diesel::sql_query(format!("UPDATE analyses SET state = 'queued', lease_until = NULL, claim = NULL, worker = NULL, run_after = now() WHERE {KEY} AND claim = $6 AND state = 'running'")), claimed.key)
            .bind::<diesel::sql_types::Uuid, _>(claimed.claim)
            .execute(&mut conn)
            .await
            .map_err(AuditError::query("giving an analysis back"))?;
        if n == 1 {
            diesel::sql_query(format!("SELECT pg_notify('{}', '')", events::QUEUED)).execute(&mut conn).await.map_err(AuditError::query("announcing a queued analysis"))?;
        }
        Ok(n == 1)
    }

    /// The dead letter: the job stops, with its last error, until a hook asks for it again after
    /// `hooks.retry_max_s`. For a failure on the last attempt, and for a job whose workers kept
    /// dying under it.
    pub async fn dead_letter(&self, claimed: &Claimed, result: &Value, error: &str) -> Result<bool, AuditError> {
        // The error stays in the table (the queue page): it may quote a URL or a UID.
        tracing::warn!(attempts = claimed.attempts + 1, "an analysis failed every attempt: dead-lettered");
        self.end(&claimed.key, claimed.claim, &self.dead_set(), result, Some(error)).await
    }

    fn dead_set(&self) -> String {
        format!("state = 'dead', attempts = attempts + 1, until_at = now() + make_interval(secs => {}::double precision)", self.rules.retry_max_s)
    }

    async fn end(&self, key: &AnalysisKey, claim: uuid::Uuid, set: &str, result: &Value, error: Option<&str>) -> Result<bool, AuditError> {
        let mut conn = self.db.conn().await?;
        let n = bind_key!(
            diesel::sql_query(format!(
                "UPDATE analyses SET {set}, result = $7, last_error = $8, finished_at = now(), lease_until = NULL, claim = NULL \
                 WHERE {KEY} AND claim = $6 AND state = 'running'"
            )),
            key
        )
        .bind::<diesel::sql_types::Uuid, _>(claim)
        .bind::<Jsonb, _>(result)
        .bind::<Nullable<Text>, _>(error)
        .execute(&mut conn)
        .await
        .map_err(AuditError::query("finishing an analysis"))?;
        if n == 1 {
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(events::FINISHED)
                .bind::<Text, _>(key.digest())
                .execute(&mut conn)
                .await
                .map_err(AuditError::query("announcing a finished analysis"))?;
        }
        self.events.publish(Event::Finished(key.digest()));
        Ok(n == 1)
    }

    /// The latest finished analysis of a study for a client's decision (the case report): any
    /// tenant of the issuer, any source.
    pub async fn latest_done(&self, patient_ref: &str, study_uid: &str, model_version: &str, client_iss: &str) -> Result<Option<Value>, AuditError> {
        let mut conn = self.db.conn().await?;
        let rows: Vec<ResultRow> = diesel::sql_query(
            "SELECT result FROM analyses \
             WHERE patient_ref = $1 AND study_uid = $2 AND model_version = $3 AND state = 'done' \
               AND (client = $4 OR starts_with(client, $4 || '#')) \
             ORDER BY finished_at DESC LIMIT 1",
        )
        .bind::<Text, _>(patient_ref)
        .bind::<Text, _>(study_uid)
        .bind::<Text, _>(model_version)
        .bind::<Text, _>(client_iss)
        .load(&mut conn)
        .await
        .map_err(AuditError::query("reading an analysis"))?;
        Ok(rows.into_iter().next().and_then(|r| r.result))
    }
}

async fn dead_letters(db: &Database, limit: i64) -> Result<Vec<DeadLetter>, AuditError> {
    let mut conn = db.conn().await?;
    let rows: Vec<DeadRow> = diesel::sql_query(
        "SELECT study_uid, client, model_version, attempts, last_error, finished_at, queued_at FROM analyses \
         WHERE state = 'dead' ORDER BY finished_at DESC LIMIT $1",
    )
    .bind::<BigInt, _>(limit)
    .load(&mut conn)
    .await
    .map_err(AuditError::query("listing dead letters"))?;
    Ok(rows
        .into_iter()
        .map(|r| DeadLetter { study_uid: r.study_uid, client: r.client, model_version: r.model_version, attempts: r.attempts.max(0) as u32, last_error: r.last_error, died_at: r.finished_at, queued_at: r.queued_at })
        .collect())
}

async fn depth(db: &Database) -> Result<Depth, AuditError> {
    let mut conn = db.conn().await?;
    let rows: Vec<DepthRow> = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE state = 'queued') AS queued, count(*) FILTER (WHERE state = 'running') AS running, \
                count(*) FILTER (WHERE state = 'dead') AS dead, \
                coalesce(extract(epoch FROM now() - min(queued_at) FILTER (WHERE state = 'queued' AND run_after <= now())), 0)::double precision AS oldest_wait_s \
         FROM analyses WHERE state <> 'done'",
    )
    .load(&mut conn)
    .await
    .map_err(AuditError::query("measuring the queue"))?;
    Ok(rows.into_iter().next().map(|r| Depth { queued: r.queued.max(0) as u64, running: r.running.max(0) as u64, dead: r.dead.max(0) as u64, oldest_wait_s: r.oldest_wait_s }).unwrap_or_default())
}
