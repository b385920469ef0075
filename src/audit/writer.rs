//! Group commit for the decision log.
//!
//! The chain makes appends sequential: each row needs the hash of the row before it, so every
//! append holds the chain's advisory lock while it reads the head, inserts and commits. One
//! transaction per hook would cap the whole service at one commit round trip per decision, and
//! under load every hook would queue for the lock holding a pooled connection.
//!
//! Instead, hooks hand their records to one writer task per process, which takes whatever has
//! queued (up to [`MAX_BATCH`]), appends it in one transaction and one multi-row `INSERT`, and answers each hook with its
//! `seq` after the commit. A hook still gets its answer only once its decision is durable; under
//! load the batches grow and the per-decision cost falls. Across replicas the advisory lock keeps
//! the writers of different processes in turn.
//!
//! ```text
//!  hook ─┐                       ┌─ BEGIN; lock; read head; INSERT n rows; COMMIT ─┐
//!  hook ─┼─▶ queue (bounded) ─▶ writer                                            ├─▶ seq to each hook
//!  hook ─┘                       └─────────────────────────────────────────────────┘
//! ```
//!
//! A full queue is refused at once ([`AuditError::Unavailable`], which the hook answers 503),
//! never waited on. If a batch fails, its records are retried one by one, so one bad record
//! cannot sink the others.

use std::time::Duration;

use diesel_async::{AsyncPgConnection, pooled_connection::deadpool::Pool};
use tokio::sync::{mpsc, oneshot};

use super::{
    append::{PendingDecision, append_decisions},
    error::{AuditError, acquire},
    records::DecisionRecord,
};

/// Most decisions committed in one transaction.
pub const MAX_BATCH: usize = 64;
/// Decisions that may wait for the writer; past it, appends are refused.
pub const QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<i64, String>>;

/// The handle hooks append through. Cheap to clone.
#[derive(Clone)]
pub struct DecisionWriter {
    queue: mpsc::Sender<(PendingDecision, Reply)>,
}

impl DecisionWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(pool: Pool<AsyncPgConnection>, acquire_timeout: Duration) -> DecisionWriter {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, acquire_timeout, jobs));
        DecisionWriter { queue }
    }

    /// Queues `record` and waits for its commit; returns its `seq`.
    ///
    /// The record's canonical content is computed here, on the caller's task, so that hooks on
    /// every worker share that work and the writer only hashes and inserts.
    pub async fn append(&self, record: DecisionRecord) -> Result<i64, AuditError> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send((PendingDecision::new(record), reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AuditError::Unavailable(format!("the decision log's write queue is full ({QUEUE} waiting)")),
            mpsc::error::TrySendError::Closed(_) => AuditError::Unavailable("the decision log writer has stopped".into()),
        })?;
        match answer.await {
            Ok(result) => result.map_err(AuditError::Append),
            Err(_) => Err(AuditError::Unavailable("the decision log writer has stopped".into())),
        }
    }
}

async fn run(pool: Pool<AsyncPgConnection>, acquire_timeout: Duration, mut jobs: mpsc::Receiver<(PendingDecision, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (records, replies): (Vec<PendingDecision>, Vec<Reply>) = batch.drain(..).unzip();
        match write(&pool, acquire_timeout, &records).await {
            Ok(seqs) => {
                for (reply, seq) in replies.into_iter().zip(seqs) {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(e) if records.len() == 1 => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, records = records.len(), "a batch of decisions failed; appending them one by one");
                for (record, reply) in records.iter().zip(replies) {
                    let result = write(&pool, acquire_timeout, std::slice::from_ref(record)).await;
                    let _ = reply.send(result.and_then(|seqs| seqs.first().copied().ok_or_else(|| "no seq returned".to_owned())));
                }
            }
        }
    }
}

async fn write(pool: &Pool<AsyncPgConnection>, acquire_timeout: Duration, records: &[PendingDecision]) -> Result<Vec<i64>, String> {
    let mut conn = acquire(pool, acquire_timeout).await.map_err(|e| e.to_string())?;
    append_decisions(&mut conn, records).await.map_err(|e| e.to_string())
}
