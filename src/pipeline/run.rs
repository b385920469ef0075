//! Runs analyses: one per (patient, study, model, client, DICOMweb source), shared by every hook
//! that asks for it.
//!
//! A hook asks [`Pipeline::request`] for the analysis of a study. The shared `analyses` table
//! decides who runs it (so concurrent hooks, on any worker or replica, run it once); the runner
//! publishes the result in-process through a `watch` channel and in the database. order-select
//! does not wait; order-sign waits up to its budget ([`Pipeline::wait`]).
//!
//! Every failure becomes an [`Analysis`] with outcome `abstained` (the data cannot support an
//! estimate) or `unavailable` (something was down or full; the next hook retries).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{Semaphore, watch};

use super::{
    analysis::{Analysis, ModelInfo, UsedSeries},
    cache::FinishedAnalyses,
};
use crate::{
    audit::{
        Database,
        analyses::{AnalysisKey, Claim, Finality},
    },
    config::Settings,
    dicomweb::DicomWebClient,
    fhir::study::PriorStudy,
    metrics::Metrics,
};
use neurocds_analysis::{
    decision::{Outcome, effective_thresholds, recommend},
    imaging::{
        Volume,
        preprocess::{self, Recipe},
        series::{SeriesRules, select_series},
    },
    inference::{Engine, InferenceError, ModelInput},
};

/// A place in `max_pending_analyses`, held until the last piece of an analysis's work ends.
type Hold = Arc<tokio::sync::OwnedSemaphorePermit>;

/// Longest any one analysis may run before it is declared unavailable.
const ANALYSIS_DEADLINE: Duration = Duration::from_secs(120);
/// How often a hook waiting on another replica's analysis looks at the database.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("too many analyses in flight ({0}); try again shortly")]
    Overloaded(usize),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// Where a hook stands with an analysis.
pub enum Ticket {
    Ready(Arc<Analysis>),
    /// Running in this process.
    Local(watch::Receiver<Option<Arc<Analysis>>>),
    /// Running elsewhere (another replica): poll the database.
    Remote(AnalysisKey),
}

#[derive(Clone)]
pub struct Pipeline {
    db: Database,
    engine: Engine,
    dicomweb: DicomWebClient,
    rules: Arc<SeriesRules>,
    settings: Arc<Settings>,
    inflight: Arc<Mutex<HashMap<AnalysisKey, watch::Receiver<Option<Arc<Analysis>>>>>>,
    finished: Arc<FinishedAnalyses>,
    permits: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
    metrics: Metrics,
}

impl Pipeline {
    pub fn new(db: Database, engine: Engine, dicomweb: DicomWebClient, rules: SeriesRules, settings: Arc<Settings>, runtime: tokio::runtime::Handle, metrics: Metrics) -> Pipeline {
        let permits = Arc::new(Semaphore::new(settings.hooks.max_pending_analyses));
        let finished = Arc::new(FinishedAnalyses::new(settings.hooks.cached_analyses));
        Pipeline { db, engine, dicomweb, rules: Arc::new(rules), settings, inflight: Arc::default(), finished, permits, runtime, metrics }
    }

    /// Analyses holding a place in `hooks.max_pending_analyses` now (running, or their blocking
    /// work still winding down).
    pub fn in_flight(&self) -> usize {
        self.settings.hooks.max_pending_analyses.saturating_sub(self.permits.available_permits())
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The analysis `client` (issuer, and `#tenant` when its token names one) asks for: bound to
    /// the DICOMweb source(s) the study resolved to, so that no other caller's data decides it.
    pub fn key_for(&self, client: &str, patient_ref: &str, study: &PriorStudy) -> AnalysisKey {
        let m = self.engine.manifest();
        let mut sources: Vec<&str> = study.dicomweb.iter().map(String::as_str).chain(study.series_dicomweb.values().map(String::as_str)).collect();
        sources.sort_unstable();
        sources.dedup();
        AnalysisKey {
            patient_ref: patient_ref.to_owned(),
            study_uid: study.study_uid.clone(),
            model_version: format!("{}@{}", m.name, m.version),
            client: client.to_owned(),
            source: sources.join(" "),
        }
    }

    /// Caches `a` in memory when it is final; either way returns it shared.
    fn keep(&self, key: AnalysisKey, a: &Analysis) -> Arc<Analysis> {
        if a.finality(&self.settings.hooks) == Finality::Final { self.finished.insert(key, a) } else { Arc::new(a.clone()) }
    }

    /// Returns the finished analysis, or starts it (once, across hooks and replicas).
    pub async fn request(&self, client: &str, patient_ref: &str, study: &PriorStudy) -> Result<Ticket, PipelineError> {
        let key = self.key_for(client, patient_ref, study);
        if let Some(a) = self.finished.get(&key) {
            return Ok(Ticket::Ready(a));
        }
        if let Some(rx) = self.inflight.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(Ticket::Local(rx));
        }
        match self.db.claim_analysis(&key).await? {
            Claim::Done(v) | Claim::Failed(v) => match serde_json::from_value::<Analysis>(v) {
                Ok(a) => Ok(Ticket::Ready(self.keep(key, &a))),
                // A result this build cannot read (older format): run it again.
                Err(_) => self.start(key, study.clone()),
            },
            Claim::Running => Ok(Ticket::Remote(key)),
            Claim::Mine => self.start(key, study.clone()),
        }
    }

    fn start(&self, key: AnalysisKey, study: PriorStudy) -> Result<Ticket, PipelineError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let db = self.db.clone();
                let k = key.clone();
                // Give the claim back so the next hook can try.
                self.runtime.spawn(async move {
                    let now = Finality::Retry { base_seconds: 0, max_seconds: 0 };
                    let _ = db.finish_analysis(&k, now, &serde_json::json!({"reason": "overloaded"})).await;
                });
                return Err(PipelineError::Overloaded(self.settings.hooks.max_pending_analyses));
            }
        };
        let (tx, rx) = watch::channel(None);
        if let Ok(mut m) = self.inflight.lock() {
            m.insert(key.clone(), rx.clone());
        }
        let this = self.clone();
        // Spawned on the main multi-thread runtime, not the actix worker's: the analysis
        // outlives the request that started it.
        self.runtime.spawn(async move {
            // The permit is shared with the analysis's blocking work (assembly, preprocessing):
            // when the deadline aborts the task, a thread still busy with its pixels keeps its
            // place in `max_pending_analyses` until it returns, so abandoned work cannot pile up
            // beyond the bound.
            let permit: Hold = Arc::new(permit);
            // The analysis runs as a task of its own, so that a panic in it is an unavailable
            // result here (recorded, retried later) rather than a claim left behind.
            let worker = {
                let (this, study, hold) = (this.clone(), study.clone(), permit.clone());
                tokio::spawn(async move { this.analyse(&study, hold).await })
            };
            let abort = worker.abort_handle();
            let analysis = match tokio::time::timeout(ANALYSIS_DEADLINE, worker).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    tracing::error!(panicked = e.is_panic(), "an analysis stopped unexpectedly");
                    this.failed(&study, "analysis", Outcome::Unavailable, "the analysis stopped unexpectedly".into(), BTreeMap::new())
                }
                Err(_) => {
                    abort.abort();
                    this.failed(&study, "analysis", Outcome::Unavailable, format!("the analysis took longer than {} s", ANALYSIS_DEADLINE.as_secs()), BTreeMap::new())
                }
            };
            this.metrics.analysis(analysis.outcome.as_str(), analysis.reason_class(), &analysis.stage_timings_ms);
            let value = serde_json::to_value(&analysis).unwrap_or_default();
            if let Err(e) = this.db.finish_analysis(&key, analysis.finality(&this.settings.hooks), &value).await {
                tracing::error!(error = %e, "could not record the analysis result");
            }
            let analysis = this.keep(key.clone(), &analysis);
            let _ = tx.send(Some(analysis));
            if let Ok(mut m) = this.inflight.lock() {
                m.remove(&key);
            }
        });
        Ok(Ticket::Local(rx))
    }

    /// Waits for a ticket at most `budget`; `None` when the budget ran out first.
    pub async fn wait(&self, ticket: Ticket, budget: Duration) -> Option<Arc<Analysis>> {
        match ticket {
            Ticket::Ready(a) => Some(a),
            Ticket::Local(mut rx) => {
                let r = tokio::time::timeout(budget, rx.wait_for(Option::is_some)).await;
                r.ok().and_then(|r| r.ok()).and_then(|g| g.clone())
            }
            Ticket::Remote(key) => {
                let deadline = Instant::now() + budget;
                loop {
                    if let Ok(Some(Claim::Done(v) | Claim::Failed(v))) = self.db.analysis_state(&key).await
                        && let Ok(a) = serde_json::from_value::<Analysis>(v)
                    {
                        return Some(self.keep(key, &a));
                    }
                    if Instant::now() + POLL > deadline {
                        return None;
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    fn model_info(&self) -> ModelInfo {
        let m = self.engine.manifest();
        ModelInfo {
            name: m.name.clone(),
            version: m.version.clone(),
            ensemble_sha256: m.ensemble_hash(),
            member_sha256: m.members.iter().map(|x| x.sha256.clone()).collect(),
            preprocessing_version: m.preprocessing_version.clone(),
        }
    }

    fn failed(&self, study: &PriorStudy, stage: &str, outcome: Outcome, reason: String, timings: BTreeMap<String, u64>) -> Analysis {
        Analysis {
            study_uid: study.study_uid.clone(),
            study_reference: study.reference.clone(),
            study_started: study.started.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            t1c: None,
            t2: None,
            series_verdicts: serde_json::Value::Array(Vec::new()),
            model: self.model_info(),
            ensemble: None,
            lesion_volume_ml: None,
            outcome,
            recommendation: None,
            reason: Some(reason),
            failed_stage: Some(stage.to_owned()),
            stage_timings_ms: timings,
            key_images: None,
            scope: None,
            shared: Default::default(),
        }
    }

    /// study → series → volumes → preprocessing → ensemble → recommendation. `hold` goes with
    /// every piece of blocking work, which outlives an aborted task.
    async fn analyse(&self, study: &PriorStudy, hold: Hold) -> Analysis {
        let mut timings = BTreeMap::new();
        let mut clock = Instant::now();
        let mut lap = |name: &str, timings: &mut BTreeMap<String, u64>| {
            timings.insert(name.to_owned(), clock.elapsed().as_millis() as u64);
            clock = Instant::now();
        };
        let Some(base) = study.dicomweb.clone().or_else(|| study.series_dicomweb.values().next().cloned()) else {
            return self.failed(study, "series_metadata", Outcome::Unavailable, "no DICOMweb endpoint for the study".into(), timings);
        };
        let metadata = match self.dicomweb.series_metadata(&base, &study.study_uid).await {
            Ok(m) => m,
            Err(e) => return self.failed(study, "series_metadata", Outcome::Unavailable, e.to_string(), timings),
        };
        lap("series_metadata", &mut timings);
        let selection = select_series(&self.rules, &metadata);
        let verdicts = serde_json::to_value(&selection.verdicts).unwrap_or_default();
        let used = |uid: &Option<String>| {
            uid.as_ref().and_then(|u| metadata.iter().find(|m| &m.series_uid == u)).map(|m| UsedSeries { series_uid: m.series_uid.clone(), description: m.description.clone(), instances: m.instance_count })
        };
        let (t1c_used, t2_used) = (used(&selection.t1c), used(&selection.t2));
        lap("series_selection", &mut timings);
        let with_series = |mut a: Analysis| {
            a.series_verdicts = verdicts.clone();
            a.t1c = t1c_used.clone();
            a.t2 = t2_used.clone();
            a
        };
        let (Some(t1c_uid), Some(t2_uid)) = (selection.t1c.clone(), selection.t2.clone()) else {
            let missing = if selection.t1c.is_none() { "no T1 post-contrast series" } else { "no T2-weighted series" };
            return with_series(self.failed(study, "series_selection", Outcome::Abstained, format!("series missing: {missing} in the prior study"), timings));
        };
        let t1c_base = study.dicomweb_for(&t1c_uid).unwrap_or(&base).to_owned();
        let t2_base = study.dicomweb_for(&t2_uid).unwrap_or(&base).to_owned();
        let (t1c_objs, t2_objs) = tokio::join!(
            self.dicomweb.retrieve_series(&t1c_base, &study.study_uid, &t1c_uid),
            self.dicomweb.retrieve_series(&t2_base, &study.study_uid, &t2_uid)
        );
        let (t1c_objs, t2_objs) = match (t1c_objs, t2_objs) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return with_series(self.failed(study, "retrieval", Outcome::Unavailable, e.to_string(), timings)),
        };
        lap("retrieval", &mut timings);
        let held = hold.clone();
        let assembled = tokio::task::spawn_blocking(move || {
            let _held = held;
            let a = Volume::assemble(&t1c_uid, &t1c_objs);
            drop(t1c_objs);
            let b = Volume::assemble(&t2_uid, &t2_objs);
            (a, b)
        })
        .await;
        let (t1c, t2) = match assembled {
            Ok((Ok(a), Ok(b))) => (a, b),
            Ok((Err(e), _)) | Ok((_, Err(e))) => return with_series(self.failed(study, "assembly", Outcome::Abstained, e.to_string(), timings)),
            Err(e) => return with_series(self.failed(study, "assembly", Outcome::Unavailable, format!("volume assembly stopped: {e}"), timings)),
        };
        lap("assembly", &mut timings);
        let m = self.engine.manifest();
        let recipe = Recipe { shape: m.input.shape, spacing_mm: m.input.spacing_mm };
        let held = hold.clone();
        let prepared = match tokio::task::spawn_blocking(move || {
            let _held = held;
            preprocess::prepare(&t1c, &t2, &recipe)
        })
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(abstention)) if abstention.kind.is_out_of_scope() => {
                // The scope gate: no enhancing intra-axial mass to ask about. No input is built,
                // the ensemble never runs, and no recommendation can follow.
                let mut a = with_series(self.failed(study, "scope", Outcome::OutOfScope, abstention.reason, timings));
                a.scope = abstention.scope;
                return a;
            }
            Ok(Err(abstention)) => return with_series(self.failed(study, "preprocessing", Outcome::Abstained, abstention.reason, timings)),
            Err(e) => return with_series(self.failed(study, "preprocessing", Outcome::Unavailable, format!("preprocessing stopped: {e}"), timings)),
        };
        lap("preprocessing", &mut timings);
        let key_images = crate::pipeline::analysis::KeyImages::from(&prepared.key_images);
        let scope = prepared.scope;
        let lesion_volume_ml = prepared.lesion_volume_ml;
        let input = ModelInput { data: prepared.data, lesion_volume_ml, t1c_lesion_mean: prepared.t1c_lesion_mean };
        let output = match self.engine.predict(input).await {
            Ok(o) => o,
            Err(e @ (InferenceError::Overloaded | InferenceError::WorkerGone)) => return with_series(self.failed(study, "inference", Outcome::Unavailable, e.to_string(), timings)),
            Err(e) => return with_series(self.failed(study, "inference", Outcome::Abstained, e.to_string(), timings)),
        };
        lap("inference", &mut timings);
        let thresholds = effective_thresholds(&self.settings.decision, &m.thresholds);
        let (outcome, recommendation, reason) = match &output.abstain_reason {
            Some(r) => (Outcome::Abstained, None, Some(r.clone())),
            None => (Outcome::Recommended, Some(recommend(output.calibrated_probability, &thresholds)), None),
        };
        Analysis {
            study_uid: study.study_uid.clone(),
            study_reference: study.reference.clone(),
            study_started: study.started.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            t1c: t1c_used,
            t2: t2_used,
            series_verdicts: verdicts,
            model: self.model_info(),
            ensemble: Some(output),
            lesion_volume_ml: Some(lesion_volume_ml),
            outcome,
            recommendation,
            reason,
            failed_stage: None,
            stage_timings_ms: timings,
            key_images: Some(key_images),
            scope: Some(scope),
            shared: Default::default(),
        }
    }
}
