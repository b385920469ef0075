//! Model monitoring: whether the ensemble still sees what it was validated on.
//!
//! Every few minutes (`monitoring.refresh_s`) each replica reads the analyses of the last
//! `window_days` and of the `baseline_days` before from the decision log (each analysis once;
//! [`crate::audit::monitoring`]) and compares, per model version:
//!
//! - the **outputs** — calibrated probability, members' spread, the advice the operating points
//!   give — with the **validation cohort**: the held-out studies of the loaded ensemble's
//!   evaluation ([`reference`]);
//! - the **inputs** the model card describes — lesion volume, lesion intensity, scanner vendor,
//!   T1c acquisition, how each series was recognised — and every analysis's **outcome** (by
//!   reason class: scope gate, failed stage) with the **baseline period**, since the evaluation
//!   records outputs only. The two inputs the ensemble range-checks also show the share outside
//!   the training range.
//!
//! Each comparison is a population stability index over fixed bins ([`drift`]), with the
//! Kolmogorov–Smirnov distance for numbers; feedback gives the override rate by
//! recommendation. A PSI above `psi_alert` with at least `min_analyses` on both sides is an
//! alert: logged once when it starts, shown on `/readyz` as "degraded" (never unready: drift is
//! for people to judge, not a reason to stop answering), on `/monitoring` and in the
//! `neurocds_model_*` gauges.

pub mod drift;
pub mod plot;
pub mod reference;
pub mod report;

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use serde::Serialize;
use time::OffsetDateTime;

use crate::{
    audit::{AuditError, Database, query::DecisionFilter},
    config::MonitoringSettings,
};
use reference::ValidationReference;
use report::{Judging, TrainingRange, VersionReport};

/// The figures at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    #[serde(with = "time::serde::rfc3339")]
    pub computed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub window_from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub baseline_from: OffsetDateTime,
    pub window_days: u32,
    pub baseline_days: u32,
    pub judging: Judging,
    /// Studies in the validation cohort (`None`: no reference could be read; see the log).
    pub validation_studies: Option<usize>,
    /// The loaded ensemble first, then other versions seen in the window, newest first.
    pub versions: Vec<VersionReport>,
    /// One line per quantity that drifted beyond the threshold.
    pub alerts: Vec<String>,
}

impl Snapshot {
    /// `degraded` when any quantity alerts, else `ok`.
    pub fn status(&self) -> &'static str {
        if self.alerts.is_empty() { "ok" } else { "degraded" }
    }

    /// When the figures were computed, as RFC 3339 text.
    pub fn computed_at_rfc3339(&self) -> String {
        self.computed_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    }
}

/// Computes the figures and keeps the latest.
pub struct Monitor {
    settings: MonitoringSettings,
    /// `name@version` of the loaded ensemble.
    loaded_version: String,
    validation: Option<ValidationReference>,
    training: Option<TrainingRange>,
    latest: RwLock<Option<Arc<Snapshot>>>,
}

impl Monitor {
    /// For the loaded ensemble `manifest`, whose advice follows `thresholds`. A validation
    /// cohort that cannot be read is logged, and outputs are then compared with the baseline
    /// period like inputs.
    pub fn new(settings: MonitoringSettings, manifest: &neurocds_analysis::inference::Manifest, thresholds: &neurocds_analysis::inference::manifest::Thresholds) -> Monitor {
        let loaded_version = format!("{}@{}", manifest.name, manifest.version);
        let validation = ValidationReference::load(&settings.reference, &loaded_version, thresholds)
            .map_err(|e| tracing::warn!(error = %e, "model monitoring: no validation cohort; outputs are compared with the baseline period"))
            .ok();
        Monitor { settings, loaded_version, validation, training: manifest.ood.clone(), latest: RwLock::new(None) }
    }

    fn judging(&self) -> Judging {
        Judging { psi_alert: self.settings.psi_alert, min_analyses: self.settings.min_analyses }
    }

    /// The last figures computed, if any.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.read().ok().and_then(|l| l.clone())
    }

    /// Computes the figures now from the decision log, keeps them, and logs an alert that was
    /// not there before (and its end).
    pub async fn refresh(&self, db: &Database) -> Result<Arc<Snapshot>, AuditError> {
        let now = OffsetDateTime::now_utc();
        let window_from = now - time::Duration::days(self.settings.window_days.into());
        let baseline_from = window_from - time::Duration::days(self.settings.baseline_days.into());
        let rows = db.monitored_analyses(baseline_from, self.settings.max_analyses).await?;
        let mut by_version: BTreeMap<&str, (Vec<_>, Vec<_>)> = BTreeMap::new();
        by_version.entry(self.loaded_version.as_str()).or_default();
        for a in &rows {
            let periods = by_version.entry(a.model_version.as_str()).or_default();
            if a.recorded_at >= window_from { periods.0.push(a) } else { periods.1.push(a) }
        }
        let judging = self.judging();
        let mut versions = Vec::new();
        for (version, (window, baseline)) in by_version {
            let loaded = version == self.loaded_version;
            // Versions no longer loaded matter only while they still answered in the window.
            if !loaded && window.is_empty() {
                continue;
            }
            let mut v = report::version_report(version, loaded, &window, &baseline, self.validation.as_ref(), self.training.as_ref(), judging);
            let filter = DecisionFilter { from: Some(window_from), model_version: Some(version.to_owned()), ..DecisionFilter::default() };
            v.overrides = db.summary(&filter).await?.by_recommendation;
            versions.push(v);
        }
        versions.sort_by_key(|v| (!v.loaded, std::cmp::Reverse(v.analyses)));
        let alerts = versions.iter().flat_map(|v| report::alerts(v, judging)).collect();
        let snapshot = Arc::new(Snapshot {
            computed_at: now,
            window_from,
            baseline_from,
            window_days: self.settings.window_days,
            baseline_days: self.settings.baseline_days,
            judging,
            validation_studies: self.validation.as_ref().map(|v| v.studies),
            versions,
            alerts,
        });
        self.keep(snapshot.clone());
        Ok(snapshot)
    }

    fn keep(&self, snapshot: Arc<Snapshot>) {
        let Ok(mut latest) = self.latest.write() else { return };
        let before: &[String] = latest.as_ref().map_or(&[], |s| &s.alerts);
        for alert in snapshot.alerts.iter().filter(|a| !before.contains(a)) {
            tracing::warn!(alert = %alert, "model monitoring: drift above the alert threshold");
        }
        if !before.is_empty() && snapshot.alerts.is_empty() {
            tracing::info!("model monitoring: no quantity drifts above the alert threshold any more");
        }
        *latest = Some(snapshot);
    }

    /// Recomputes every `refresh_s` until the process ends; a database that does not answer
    /// is logged and tried at the next turn (the last figures stay).
    pub fn spawn(self: Arc<Self>, db: Database) -> tokio::task::JoinHandle<()> {
        let every = Duration::from_secs(self.settings.refresh_s.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.refresh(&db).await {
                    tracing::warn!(error = %e, "model monitoring: cannot read the decision log");
                }
            }
        })
    }
}
