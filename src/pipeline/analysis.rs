//! The result of analysing one prior study: what was used, what the ensemble said, what it
//! advises, how long each stage took. Stored (as JSON) in the shared `analyses` table; what
//! the decisions on it share is stored once in the audit trail ([`SharedContent`]).

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::Instant,
};

use serde::{Deserialize, Serialize};

use neurocds_analysis::decision::{Outcome, Recommendation};
use neurocds_analysis::imaging::lesion::ScopeReport;
use neurocds_analysis::inference::EnsembleOutput;

/// The model that produced a result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub ensemble_sha256: String,
    pub member_sha256: Vec<String>,
    pub preprocessing_version: String,
}

/// What the model was given, in the terms the model card describes its inputs: what model
/// monitoring compares with the validation cohort and with earlier weeks (`crate::monitoring`).
/// Absent where the analysis stopped before the series were chosen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InputProfile {
    /// The T1c's Manufacturer (0008,0070), as the scanner writes it.
    pub manufacturer: Option<String>,
    /// The T1c's MagneticFieldStrength (0018,0087), tesla.
    pub t1c_field_strength_t: Option<f64>,
    /// The T1c's MRAcquisitionType: `2D` or `3D`.
    pub t1c_acquisition: Option<String>,
    /// How the T1c and the T2 were recognised ([`neurocds_analysis::imaging::recognition_path`]).
    pub t1c_recognition: Option<String>,
    pub t2_recognition: Option<String>,
    /// The kept lesion's enhancing volume and its mean normalised T1c intensity (after the
    /// scope gate: the two inputs whose training range the ensemble checks).
    pub lesion_volume_ml: Option<f64>,
    pub t1c_lesion_mean: Option<f64>,
    /// The mean normalised T2 intensity over the same lesion. Absent from analyses recorded
    /// before it was watched.
    pub t2_lesion_mean: Option<f64>,
}

/// A series the analysis used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UsedSeries {
    pub series_uid: String,
    pub description: Option<String>,
    pub instances: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Analysis {
    pub study_uid: String,
    pub study_reference: Option<String>,
    /// When the prior study was acquired (RFC 3339), as the ImagingStudy says.
    pub study_started: Option<String>,
    pub t1c: Option<UsedSeries>,
    pub t2: Option<UsedSeries>,
    /// Every series considered, with its class and the reason it was chosen or not.
    pub series_verdicts: serde_json::Value,
    pub model: ModelInfo,
    pub ensemble: Option<EnsembleOutput>,
    pub lesion_volume_ml: Option<f64>,
    pub outcome: Outcome,
    pub recommendation: Option<Recommendation>,
    /// Why the analysis abstained or was unavailable.
    pub reason: Option<String>,
    /// The stage that failed, when one did (for the audit trail and operators).
    pub failed_stage: Option<String>,
    pub stage_timings_ms: BTreeMap<String, u64>,
    /// Base64 PNGs of the axial T1c and T2 slices through the lesion, with its outline.
    pub key_images: Option<KeyImages>,
    /// The scope gate: every lesion candidate considered, why each was kept or rejected, and
    /// (when out of scope) the study's reason. `None` when the analysis stopped before it.
    #[serde(default)]
    pub scope: Option<ScopeReport>,
    /// The inputs model monitoring watches. Absent in results stored before it, and where the
    /// analysis stopped before the series were chosen.
    #[serde(default)]
    pub inputs: Option<InputProfile>,
    /// What every decision on this analysis shares, made by the first hook that records one.
    #[serde(skip)]
    pub shared: SharedContent,
}

/// A memo for the layer that answers hooks: what every decision on this analysis shares (the
/// audit content, the report ready to stamp), made once by the first hook that needs it, so a
/// hook answered from a finished analysis neither rebuilds nor re-serialises it. Its type is
/// the caller's (`cds::service`); this module only keeps it. Not part of the result: two
/// analyses are equal whatever their memos hold.
#[derive(Clone, Default)]
pub struct SharedContent(OnceLock<Arc<dyn std::any::Any + Send + Sync>>);

impl SharedContent {
    /// The memo, made by `make` the first time; `None` only if it was first made as another type.
    pub fn get_or_init<T: Send + Sync + 'static>(&self, make: impl FnOnce() -> T) -> Option<Arc<T>> {
        self.0.get_or_init(|| Arc::new(make())).clone().downcast::<T>().ok()
    }
}

impl std::fmt::Debug for SharedContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "SharedContent(made)" } else { "SharedContent(empty)" })
    }
}

impl PartialEq for SharedContent {
    fn eq(&self, _: &SharedContent) -> bool {
        true
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyImages {
    pub t1c_png_base64: String,
    pub t2_png_base64: String,
}

impl Analysis {
    /// Why it ended as it did, as a class from a closed set (for metrics, never free text): the
    /// scope gate's reason, the stage that failed, `ensemble` for an estimate withheld after
    /// inference, `none` for a recommendation.
    pub fn reason_class(&self) -> &str {
        if let Some(reason) = self.scope.as_ref().and_then(|s| s.out_of_scope) {
            reason.as_str()
        } else if let Some(stage) = &self.failed_stage {
            stage
        } else if self.reason.is_some() {
            "ensemble"
        } else {
            "none"
        }
    }

    /// What order-sign shows when its budget ran out before the analysis finished.
    pub fn pending_placeholder(study: &crate::fhir::study::PriorStudy, reason: Option<String>) -> Analysis {
        Analysis {
            study_uid: study.study_uid.clone(),
            study_reference: study.reference.clone(),
            study_started: None,
            t1c: None,
            t2: None,
            series_verdicts: serde_json::Value::Array(Vec::new()),
            model: ModelInfo { name: String::new(), version: String::new(), ensemble_sha256: String::new(), member_sha256: Vec::new(), preprocessing_version: String::new() },
            ensemble: None,
            lesion_volume_ml: None,
            outcome: Outcome::Unavailable,
            recommendation: None,
            reason,
            failed_stage: Some("time-budget".into()),
            stage_timings_ms: BTreeMap::new(),
            key_images: None,
            scope: None,
            inputs: None,
            shared: SharedContent::default(),
        }
    }

    /// A retryable failure (the PACS was down, the queue was full…): the next hook tries again.
    pub fn is_transient_failure(&self) -> bool {
        self.outcome == Outcome::Unavailable
    }

    /// How long this result stands (see `queue`): an estimate or an out-of-scope
    /// finding is settled by the pixels; an abstention is served for `hooks.abstention_ttl_s`
    /// (the PACS may still be ingesting, or send other pixels next time); a failure is retried
    /// after the back-off.
    pub fn finality(&self, hooks: &crate::config::HookSettings) -> crate::queue::Finality {
        use crate::queue::Finality;
        match self.outcome {
            Outcome::Recommended | Outcome::OutOfScope => Finality::Final,
            Outcome::Abstained => Finality::Expires { seconds: hooks.abstention_ttl_s },
            Outcome::Unavailable | Outcome::Pending => Finality::Retry,
        }
    }
}

impl From<&neurocds_analysis::imaging::keyimage::KeyImages> for KeyImages {
    fn from(k: &neurocds_analysis::imaging::keyimage::KeyImages) -> Self {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        KeyImages { t1c_png_base64: b64(&k.t1c_png), t2_png_base64: b64(&k.t2_png) }
    }
}

/// Each stage's wall time, in milliseconds, as the analysis records it (`stage_timings_ms`),
/// and a span per stage under the span current when it started (see [`crate::telemetry::traces`]).
pub struct Stopwatch {
    clock: Instant,
    since: std::time::SystemTime,
    spans: crate::telemetry::traces::StageParent,
    pub timings: BTreeMap<String, u64>,
}

impl Stopwatch {
    pub fn start() -> Stopwatch {
        Stopwatch { clock: Instant::now(), since: std::time::SystemTime::now(), spans: crate::telemetry::traces::StageParent::current(), timings: BTreeMap::new() }
    }

    /// Records the time since the last lap as stage `name`.
    pub fn lap(&mut self, name: &str) {
        self.timings.insert(name.to_owned(), self.clock.elapsed().as_millis() as u64);
        let now = std::time::SystemTime::now();
        self.spans.stage(name, self.since, now);
        self.clock = Instant::now();
        self.since = now;
    }
}
