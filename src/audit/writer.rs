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

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use diesel_async::{AsyncPgConnection, pooled_connection::deadpool::Pool};
use tokio::sync::{mpsc, oneshot};

use super::{
    append::{PendingDecision, append_decisions},
    content::{Committed, DecisionContent},
    error::{AuditError, acquire},
    records::DecisionRecord,
};

/// Most decisions committed in one transaction.
pub const MAX_BATCH: usize = 64;
/// Decisions that may wait for the writer; past it, appends are refused.
pub const QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<i64, String>>;

/// One committed batch, as operators see it (metrics).
#[derive(Debug, Clone, Copy)]
pub struct WrittenBatch {
    /// Decisions committed together.
    pub decisions: usize,
    /// From the oldest decision's queueing to the commit: how long a hook waited for its row.
    pub lag: Duration,
}

/// Called after every committed batch (set once, e.g. by the metrics).
pub type WriteObserver = Box<dyn Fn(WrittenBatch) + Send + Sync>;

/// The handle hooks append through. Cheap to clone.
#[derive(Clone)]
pub struct DecisionWriter {
    queue: mpsc::Sender<(PendingDecision, Reply)>,
    observer: Arc<OnceLock<WriteObserver>>,
}

impl DecisionWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(pool: Pool<AsyncPgConnection>, acquire_timeout: Duration) -> DecisionWriter {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let observer: Arc<OnceLock<WriteObserver>> = Arc::default();
        tokio::spawn(run(pool, acquire_timeout, jobs, observer.clone()));
        DecisionWriter { queue, observer }
    }

    /// Reports every committed batch to `observer` (the first observer set stays).
    pub fn observe(&self, observer: WriteObserver) {
        let _ = self.observer.set(observer);
    }

    /// Queues `record` (naming `content`, when given, which is stored with it unless it already
    /// is) and waits for its commit; returns its `seq`.
    ///
    /// The record's canonical content is computed here, on the caller's task, so that hooks on
    /// every worker share that work and the writer only hashes and inserts.
    pub async fn append(&self, record: DecisionRecord, content: Option<Arc<DecisionContent>>) -> Result<i64, AuditError> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send((PendingDecision::new(record, content), reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AuditError::Unavailable(format!("the decision log's write queue is full ({QUEUE} waiting)")),
            mpsc::error::TrySendError::Closed(_) => AuditError::Unavailable("the decision log writer has stopped".into()),
        })?;
        match answer.await {
            Ok(result) => result.map_err(AuditError::Append),
            Err(_) => Err(AuditError::Unavailable("the decision log writer has stopped".into())),
        }
    }
}

async fn run(pool: Pool<AsyncPgConnection>, acquire_timeout: Duration, mut jobs: mpsc::Receiver<(PendingDecision, Reply)>, observer: Arc<OnceLock<WriteObserver>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut committed = Committed::default();
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (records, replies): (Vec<PendingDecision>, Vec<Reply>) = batch.drain(..).unzip();
        match write(&pool, acquire_timeout, &records, &committed).await {
            Ok(seqs) => {
                if let (Some(observe), Some(oldest)) = (observer.get(), records.iter().map(|r| r.queued_at).min()) {
                    observe(WrittenBatch { decisions: records.len(), lag: oldest.elapsed() });
                }
                committed.remember(records.iter().filter_map(|r| r.content.as_deref()).map(|c| c.sha256.as_str()));
                for (reply, seq) in replies.into_iter().zip(seqs) {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(e) if records.len() == 1 => {
                committed.forget();
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, records = records.len(), "a batch of decisions failed; appending them one by one");
                committed.forget();
                for (record, reply) in records.iter().zip(replies) {
                    let result = write(&pool, acquire_timeout, std::slice::from_ref(record), &committed).await;
                    if result.is_ok() {
                        committed.remember(record.content.as_deref().map(|c| c.sha256.as_str()));
                    }
                    let _ = reply.send(result.and_then(|seqs| seqs.first().copied().ok_or_else(|| "no seq returned".to_owned())));
                }
            }
        }
    }
}

async fn write(pool: &Pool<AsyncPgConnection>, acquire_timeout: Duration, records: &[PendingDecision], committed: &Committed) -> Result<Vec<i64>, String> {
    let mut conn = acquire(pool, acquire_timeout).await.map_err(|e| e.to_string())?;
    append_decisions(&mut conn, records, committed).await.map_err(|e| e.to_string())
}
