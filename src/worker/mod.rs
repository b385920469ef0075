//! The worker: claims analyses from the queue, runs them, records their results.
//!
//! One runs inside `serve` by default (`worker.embedded`); `neurocds worker` runs one alone, on
//! a GPU machine for instance (`startup::worker`). Either way it is the same loop:
//!
//! 1. wait for a free place (`worker.concurrency`), then claim the most urgent ready job;
//! 2. run it ([`Analyser::analyse`]) under `worker.analysis_deadline_s`, renewing the lease every third of
//!    `worker.lease_s`; if the lease was lost (this worker stalled, another took the job over),
//!    stop and drop the result;
//! 3. record the result, which wakes the hooks waiting for it; a failure goes back to the queue
//!    for a later attempt, or to the dead letter after `worker.max_attempts`.
//!
//! With no job ready it sleeps until a `NOTIFY` says one was queued, or `worker.poll_ms` passes
//! (back-offs and expired leases come due without a wake-up). On stop it gives the jobs it
//! holds back to the queue, so another worker starts them at once rather than after the lease.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use crate::{
    config::Settings,
    metrics::Metrics,
    pipeline::{
        analyse::{Analyser, Hold},
        analysis::Analysis,
    },
    queue::{Claimed, Event, Queue},
};
use neurocds_analysis::decision::Outcome;

/// A worker. Cheap to clone; clones share their places and their claims.
#[derive(Clone)]
pub struct Worker {
    queue: Queue,
    analyser: Analyser,
    settings: Arc<Settings>,
    metrics: Metrics,
    /// `host:pid`, recorded with each claim (the queue page shows who holds what).
    name: Arc<str>,
    places: Arc<Semaphore>,
    /// The claims this worker holds now, given back on stop.
    held: Arc<Mutex<HashMap<uuid::Uuid, Claimed>>>,
    stop: Arc<watch::Sender<bool>>,
}

impl Worker {
    pub fn new(queue: Queue, analyser: Analyser, settings: Arc<Settings>, metrics: Metrics) -> Worker {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "localhost".into());
        let name: Arc<str> = format!("{host}:{}", std::process::id()).into();
        let places = Arc::new(Semaphore::new(settings.worker.concurrency));
        let (stop, _) = watch::channel(false);
        Worker { queue, analyser, settings, metrics, name, places, held: Arc::default(), stop: Arc::new(stop) }
    }

    /// Analyses this worker is running now.
    pub fn running(&self) -> usize {
        self.settings.worker.concurrency.saturating_sub(self.places.available_permits())
    }

    pub fn analyser(&self) -> &Analyser {
        &self.analyser
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Stops claiming, and gives back the jobs this worker holds (the analyses still running
    /// are dropped: another worker starts them at once).
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        self.give_back().await;
    }

    /// Claims and runs jobs until [`Worker::stop`].
    pub async fn run(self) {
        let mut stop = self.stop.subscribe();
        tracing::info!(worker = %self.name, concurrency = self.settings.worker.concurrency, "analysis worker started");
        let mut wakeups = self.queue.events().subscribe();
        loop {
            if *stop.borrow() {
                break;
            }
            let place = tokio::select! {
                p = self.places.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = stop.changed() => break,
            };
            if *stop.borrow() {
                break;
            }
            match self.queue.claim(&self.name).await {
                Ok(Some(job)) => {
                    // Look for the next job at once: there may be more ready than one.
                    let span = crate::telemetry::traces::analysis_span(job.traceparent.as_deref(), job.attempts);
                    tokio::spawn(self.clone().work(job, Arc::new(place)).instrument(span));
                    continue;
                }
                Ok(None) => drop(place),
                Err(e) => {
                    drop(place);
                    tracing::warn!(error = %e, "analysis worker: cannot claim from the queue; trying again");
                }
            }
            let nap = tokio::time::sleep(self.queue.poll());
            tokio::pin!(nap);
            loop {
                tokio::select! {
                    e = wakeups.recv() => match e {
                        Ok(Event::Queued) | Err(_) => break,
                        Ok(Event::Finished(_)) => continue,
                    },
                    _ = &mut nap => break,
                    _ = stop.changed() => break,
                }
            }
        }
        tracing::info!(worker = %self.name, "analysis worker stopped");
    }

    /// Gives the jobs this worker holds back to the queue.
    async fn give_back(&self) {
        let held: Vec<Claimed> = self.held.lock().map(|mut h| h.drain().map(|(_, c)| c).collect()).unwrap_or_default();
        for job in held {
            if let Err(e) = self.queue.give_back(&job).await {
                tracing::warn!(error = %e, "analysis worker: could not give a job back; its lease will run out");
            }
        }
    }

    /// Runs one claimed job to its end.
    async fn work(self, job: Claimed, hold: Hold) {
        if job.attempts >= self.queue.max_attempts() {
            // Every worker that opened it before stopped without finishing (killed, out of
            // memory): running it again would do the same.
            let reason = format!("the workers running this analysis stopped {} times without finishing", job.attempts);
            let analysis = self.analyser.failed(&job.study, "analysis", Outcome::Unavailable, reason.clone(), BTreeMap::new());
            let value = serde_json::to_value(&analysis).unwrap_or_default();
            if let Err(e) = self.queue.dead_letter(&job, &value, &reason).await {
                tracing::error!(error = %e, "could not dead-letter an analysis");
            }
            return;
        }
        if let Ok(mut h) = self.held.lock() {
            h.insert(job.claim, job.clone());
        }
        let ran = {
            let (analyser, study, hold) = (self.analyser.clone(), job.study.clone(), hold.clone());
            // A task of its own, so that a panic in it is an unavailable result here.
            tokio::spawn(async move { analyser.analyse(&study, hold).await }.instrument(tracing::Span::current()))
        };
        let abort = ran.abort_handle();
        let deadline = Duration::from_secs(self.settings.worker.analysis_deadline_s);
        let analysis = tokio::select! {
            r = tokio::time::timeout(deadline, ran) => match r {
                Ok(Ok(a)) => Some(a),
                Ok(Err(e)) => {
                    tracing::error!(panicked = e.is_panic(), "an analysis stopped unexpectedly");
                    Some(self.analyser.failed(&job.study, "analysis", Outcome::Unavailable, "the analysis stopped unexpectedly".into(), BTreeMap::new()))
                }
                Err(_) => {
                    abort.abort();
                    Some(self.analyser.failed(&job.study, "analysis", Outcome::Unavailable, format!("the analysis took longer than {} s", deadline.as_secs()), BTreeMap::new()))
                }
            },
            () = self.keep_lease(&job) => {
                abort.abort();
                tracing::warn!("analysis worker: lost the lease on a job (another worker took it over); stopped it");
                None
            }
        };
        // Given back meanwhile (stopping): the result is not this worker's to record.
        let still_held = self.held.lock().map(|mut h| h.remove(&job.claim).is_some()).unwrap_or(false);
        if let (Some(analysis), true) = (analysis, still_held) {
            self.record(&job, &analysis).await;
        }
        drop(hold);
    }

    /// Renews `job`'s lease every third of it; returns only when the lease is lost.
    async fn keep_lease(&self, job: &Claimed) {
        let mut tick = tokio::time::interval(self.queue.lease() / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match self.queue.renew(job).await {
                Ok(true) => {}
                Ok(false) => return,
                // The database is away: keep working; if it stays away the lease runs out and
                // the finish is refused, which is the right outcome.
                Err(e) => tracing::warn!(error = %e, "analysis worker: could not renew a lease"),
            }
        }
    }

    async fn record(&self, job: &Claimed, analysis: &Analysis) {
        tracing::info!(outcome = analysis.outcome.as_str(), reason_class = analysis.reason_class(), attempts = job.attempts, "analysis finished");
        self.metrics.analysis(analysis.outcome.as_str(), analysis.reason_class(), &analysis.stage_timings_ms);
        let value = serde_json::to_value(analysis).unwrap_or_default();
        let error = (analysis.outcome == Outcome::Unavailable).then(|| analysis.reason.clone().unwrap_or_default());
        match self.queue.finish(job, analysis.finality(&self.settings.hooks), &value, error.as_deref()).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("analysis worker: a job was taken over before it finished; its result was dropped"),
            Err(e) => tracing::error!(error = %e, "could not record an analysis result; its lease will run out and it will run again"),
        }
    }
}
