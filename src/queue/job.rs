//! What the queue holds and hands out: the key of an analysis, its priority, how long its
//! result stands, where a hook finds it, and what a worker claims.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fhir::study::PriorStudy;

/// Identifies one analysis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnalysisKey {
    pub patient_ref: String,
    pub study_uid: String,
    pub model_version: String,
    /// The client that asked: its issuer, and `#tenant` when the token names one.
    pub client: String,
    /// The DICOMweb base URL(s) the study resolved to, sorted, space-separated.
    pub source: String,
}

impl AnalysisKey {
    /// A short digest naming this key in wake-ups (`NOTIFY` payloads carry no patient or URL).
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.patient_ref, &self.study_uid, &self.model_version, &self.client, &self.source] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// How soon a job should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Queued ahead of any order (a PACS notification): nobody is waiting yet.
    Backfill = 0,
    /// order-select: warming up before the order is signed.
    WarmUp = 1,
    /// order-sign: a clinician is waiting for it.
    Waiting = 2,
}

/// How long a finished analysis stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Finality {
    /// The pixels settled it: served to every later hook with the same key.
    Final,
    /// Served for this many seconds, then redone.
    Expires { seconds: u64 },
    /// Failed: tried again after a back-off, at most `worker.max_attempts` times in all.
    Retry,
}

/// What a hook finds when it queues an analysis.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Queued or running: wait for it (or not).
    Pending,
    /// Finished; the stored result.
    Done(Value),
    /// Failed, and waiting for its next attempt (or dead): the failure, not to be cached.
    Failed(Value),
    /// The queue holds `hooks.max_pending_analyses` unfinished jobs already.
    Full(usize),
}

/// A job a worker claimed: its study, and the claim that fences its lease.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub key: AnalysisKey,
    pub study: PriorStudy,
    /// This claim's id: renewals and the finish name it.
    pub claim: uuid::Uuid,
    /// Runs before this one that did not finish (failures, and workers lost mid-run).
    pub attempts: u32,
    /// The trace context of the hook that queued it, when it had one.
    pub traceparent: Option<String>,
}

/// A dead-lettered analysis, as operators see it (no patient identifiers beyond the reference).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub study_uid: String,
    pub client: String,
    pub model_version: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub died_at: Option<time::OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub queued_at: Option<time::OffsetDateTime>,
}

/// Jobs by state, for the queue page and `/metrics`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Depth {
    pub queued: u64,
    pub running: u64,
    pub dead: u64,
    /// Seconds the oldest ready job has waited.
    pub oldest_wait_s: f64,
}
