//! The evaluation's results as data: what `evaluation.json` holds and `report.md` shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    dataset::{Split, SplitPlan},
    metrics::{Calibration, Interval, OperatingPoint, PairedTest},
};

/// Knobs of the report.
#[derive(Debug, Clone, Copy)]
pub struct ReportSettings {
    /// Prevalence of PCNSL at which PPV and NPV are also reported.
    pub prevalence: f64,
    pub bootstrap_resamples: usize,
    pub seed: u64,
    /// The member the training's validation split chose (from the model card), for cohorts
    /// without a validation split of their own.
    pub validation_chosen_member: Option<usize>,
}

impl Default for ReportSettings {
    fn default() -> Self {
        // PCNSL is a small minority of enhancing masses in the GBM-vs-PCNSL differential.
        ReportSettings { prevalence: 0.10, bootstrap_resamples: 2000, seed: 7, validation_chosen_member: None }
    }
}

/// A study that could not be scored, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbstainedStudy {
    pub patient_id: String,
    pub split: Split,
    pub reason: String,
    pub detail: String,
}

/// One case's ensemble output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prediction {
    pub patient_id: String,
    pub split: Split,
    pub pcnsl: bool,
    pub members: Vec<f64>,
    pub mean: f64,
    pub calibrated: f64,
    pub spread: f64,
    /// The engine's reason for abstaining (out of distribution, members disagree), if any.
    pub abstain_reason: Option<String>,
    /// Generator ground truth (synthetic cohorts only): the case mimics the other diagnosis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mimic: Option<bool>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub model: String,
    pub version: String,
    pub ensemble_sha256: String,
    pub cohort: String,
    /// The command that produced this report, to reproduce it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub prevalence: f64,
    pub bootstrap_resamples: usize,
    /// Cases preprocessing declined, by split and reason (for a DICOM folder also studies whose
    /// files are missing or unreadable, or whose T1c/T2 could not be found or assembled).
    pub preprocessing_abstentions: BTreeMap<String, BTreeMap<String, usize>>,
    /// Each of those cases, with the detail (series, file) that explains it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abstained_studies: Vec<AbstainedStudy>,
    /// Labelled studies in the development split (used for training), not scored.
    #[serde(default)]
    pub development_skipped: usize,
    pub groups: Vec<GroupReport>,
    pub predictions: Vec<Prediction>,
}

/// Metrics on one set of patients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupReport {
    pub name: String,
    pub patients: usize,
    pub pcnsl: usize,
    /// Of these, how many the engine would abstain on (out of distribution, disagreement).
    /// They are included in every metric below, so the numbers are not flattered by abstention.
    pub engine_abstentions: usize,
    pub auc_bootstrap: Interval,
    pub auc_delong: Interval,
    pub member_aucs: Vec<Interval>,
    /// The member with the highest AUC on these same patients. Chosen after seeing their
    /// labels, so it is an optimistic bar: among members of equal skill it is simply the one
    /// whose noise fell luckiest on this sample.
    pub best_member: usize,
    /// Ensemble (a) against the best single member (b), paired DeLong.
    pub ensemble_vs_best_member: PairedTest,
    /// Ensemble against the member with the highest AUC on the validation split: the member a
    /// single-model deployment would have shipped, judged on patients that did not choose it.
    /// Absent when the cohort has no validation split, and for groups that contain it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_chosen_member: Option<ChosenMember>,
    /// The same comparisons on the cases a model can tell apart: synthetic cohorts only, with
    /// the generator's mimics (imaging drawn from the other diagnosis) left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_mimics: Option<WithoutMimics>,
    /// "Lymphoma likely": calibrated P(PCNSL) ≥ `thresholds.lymphoma_likely`.
    pub lymphoma_likely: OperatingPoint,
    /// PCNSL-positive meaning "not GBM likely": P ≥ `thresholds.gbm_likely`. Its sensitivity
    /// is the share of lymphomas that escape a "GBM likely" (resection) recommendation.
    pub not_gbm_likely: OperatingPoint,
    /// Recommendation × histology counts: `[lymphoma_likely, tumour_board, gbm_likely]` each
    /// as `[pcnsl, gbm]`.
    pub recommendations: [[usize; 2]; 3],
    pub calibration: Calibration,
    pub subgroups: Vec<Subgroup>,
    pub ensemble_size: Vec<EnsembleSizeRow>,
}

/// A member picked by a rule, and the ensemble against it (paired DeLong, ensemble = a).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChosenMember {
    pub member: usize,
    pub member_auc: f64,
    pub ensemble_vs_member: PairedTest,
}

/// Ensemble and members on a group's non-mimic cases (synthetic cohorts only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithoutMimics {
    pub patients: usize,
    pub pcnsl: usize,
    /// Mimic cases left out.
    pub mimics: usize,
    pub auc: Interval,
    pub member_aucs: Vec<f64>,
    /// Best member on these patients, and the ensemble against it.
    pub best_member: ChosenMember,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subgroup {
    pub attribute: String,
    pub value: String,
    pub patients: usize,
    pub pcnsl: usize,
    /// DeLong interval; absent where the subgroup lacks a class.
    pub auc: Option<Interval>,
}

/// AUC and prediction stability over random subsets of `k` members.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleSizeRow {
    pub k: usize,
    pub subsets: usize,
    pub auc_mean: f64,
    pub auc_sd: f64,
    /// Mean over patients of the standard deviation of the k-member mean probability across
    /// subsets: how much a patient's answer depends on which members happen to be used.
    pub prediction_sd: f64,
}

/// What `train` records about its cohort in the manifest card.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingCohortRef {
    pub seed: u64,
    pub patients: usize,
    pub split_plan: SplitPlan,
    /// Where the brains came from (cards before templates existed: the phantom only).
    #[serde(default = "phantom_only")]
    pub anatomies: Vec<String>,
}

fn phantom_only() -> Vec<String> {
    vec!["phantom".to_string()]
}
