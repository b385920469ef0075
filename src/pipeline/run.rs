//! What a hook asks of the analyses: one per (patient, study, model, client, DICOMweb source),
//! queued once and shared by every hook that asks for it.
//!
//! A hook asks [`Pipeline::request`] for the analysis of a study. A finished result comes from
//! this process's memory or from the queue's table; otherwise the analysis is queued (durably:
//! see `crate::queue`) for a worker, in this process or on another machine, to run.
//! order-select does not wait; order-sign waits up to its budget ([`Pipeline::wait`]), woken by
//! the worker's `NOTIFY`.

use std::{sync::Arc, time::Duration};

use super::{analysis::Analysis, cache::FinishedAnalyses};
use crate::{
    config::Settings,
    fhir::study::PriorStudy,
    queue::{AnalysisKey, Finality, Priority, Queue, Status},
};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("too many analyses queued ({0}); try again shortly")]
    Overloaded(usize),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// Where a hook stands with an analysis.
pub enum Ticket {
    /// Finished (or failed, and waiting for its next attempt): the result to answer with.
    Ready(Arc<Analysis>),
    /// Queued or running: [`Pipeline::wait`] for it.
    Queued(AnalysisKey),
}

#[derive(Clone)]
pub struct Pipeline {
    queue: Queue,
    finished: Arc<FinishedAnalyses>,
    settings: Arc<Settings>,
    /// `name@version` of the loaded ensemble: part of every key.
    model_version: String,
}

impl Pipeline {
    pub fn new(queue: Queue, model_version: String, settings: Arc<Settings>) -> Pipeline {
        let finished = Arc::new(FinishedAnalyses::new(settings.hooks.cached_analyses));
        Pipeline { queue, finished, settings, model_version }
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The analysis `client` (issuer, and `#tenant` when its token names one) asks for: bound to
    /// the DICOMweb source(s) the study resolved to, so that no other caller's data decides it.
    pub fn key_for(&self, client: &str, patient_ref: &str, study: &PriorStudy) -> AnalysisKey {
        let mut sources: Vec<&str> = study.dicomweb.iter().map(String::as_str).chain(study.series_dicomweb.values().map(String::as_str)).collect();
        sources.sort_unstable();
        sources.dedup();
        AnalysisKey {
            patient_ref: patient_ref.to_owned(),
            study_uid: study.study_uid.clone(),
            model_version: self.model_version.clone(),
            client: client.to_owned(),
            source: sources.join(" "),
        }
    }

    /// Caches `a` in memory when it is final; either way returns it shared.
    fn keep(&self, key: AnalysisKey, a: &Analysis) -> Arc<Analysis> {
        if a.finality(&self.settings.hooks) == Finality::Final { self.finished.insert(key, a) } else { Arc::new(a.clone()) }
    }

    /// Returns the finished analysis, or queues it (once, across hooks, replicas and workers)
    /// at `priority`.
    pub async fn request(&self, client: &str, patient_ref: &str, study: &PriorStudy, priority: Priority) -> Result<Ticket, PipelineError> {
        let key = self.key_for(client, patient_ref, study);
        if let Some(a) = self.finished.get(&key) {
            return Ok(Ticket::Ready(a));
        }
        match self.queue.enqueue(&key, study, priority).await? {
            Status::Done(v) | Status::Failed(v) => match read(v) {
                Some(a) => Ok(Ticket::Ready(self.keep(key, &a))),
                // Written by another version (an upgrade): run it again with this one.
                None => match self.queue.redo(&key, study, priority).await? {
                    Status::Full(n) => Err(PipelineError::Overloaded(n)),
                    _ => Ok(Ticket::Queued(key)),
                },
            },
            Status::Pending => Ok(Ticket::Queued(key)),
            Status::Full(n) => Err(PipelineError::Overloaded(n)),
        }
    }

    /// Waits for a ticket at most `budget`; `None` when the budget ran out first.
    pub async fn wait(&self, ticket: Ticket, budget: Duration) -> Option<Arc<Analysis>> {
        match ticket {
            Ticket::Ready(a) => Some(a),
            Ticket::Queued(_) if budget.is_zero() => None,
            Ticket::Queued(key) => {
                let (Ok(v) | Err(v)) = self.queue.wait(&key, budget).await?;
                read(v).map(|a| self.keep(key, &a))
            }
        }
    }
}

/// A stored result, or `None` (logged) when this build cannot read it.
fn read(v: serde_json::Value) -> Option<Analysis> {
    serde_json::from_value(v).map_err(|e| tracing::warn!(error = %e, "a stored analysis cannot be read by this build")).ok()
}
