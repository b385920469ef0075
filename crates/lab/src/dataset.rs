//! Labelled cases for training and evaluation: synthetic patients run through the service's own
//! preprocessing ([`crate::imaging::preprocess::prepare`]), kept in memory, and assigned to the
//! study's three temporal stages plus the external test set.
//!
//! The split rule (after Moassefi et al. 2026): internal cases are ordered by acquisition date;
//! the earliest 70 % develop the model, the next 15 % validate it (calibration, thresholds) and
//! the latest 15 % play the prospective cohort. Every case from an outside institution is held
//! out as the external test set, whatever its date.

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use time::Date;

use crate::cohort::{self, CohortSpec, Diagnosis};
use neurocds_analysis::imaging::preprocess::{AbstentionKind, Recipe, prepare};

/// One patient: who, where, when, the truth, and the model input (or why there is none).
#[derive(Debug, Clone)]
pub struct Case {
    pub index: usize,
    pub patient_id: String,
    /// Histology: `true` for PCNSL.
    pub pcnsl: bool,
    pub age: u32,
    pub sex: String,
    pub site: String,
    pub external: bool,
    pub vendor: String,
    pub field_strength_t: f64,
    pub acquired_on: Date,
    /// Generator ground truth: the imaging was drawn from the other diagnosis, so no model can
    /// tell this case apart (error analysis only; never a model input).
    pub mimic: bool,
    pub input: Result<CaseInput, AbstentionKind>,
}

/// The prepared crop and the lesion statistics of one case.
#[derive(Debug, Clone)]
pub struct CaseInput {
    pub data: Vec<f32>,
    pub lesion_volume_ml: f64,
    pub t1c_lesion_mean: f64,
}

/// Where a case sits in the study design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Development,
    Validation,
    Prospective,
    External,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Development, Split::Validation, Split::Prospective, Split::External];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Development => "development",
            Split::Validation => "validation",
            Split::Prospective => "prospective",
            Split::External => "external",
        }
    }
}

/// The date boundaries of the temporal design, recorded in the manifest so `evaluate` can
/// rebuild the same split from the same cohort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPlan {
    /// Internal cases acquired on or before this date develop the model.
    pub development_until: Date,
    /// Internal cases after `development_until` and on or before this date validate it; later
    /// ones are the prospective cohort.
    pub validation_until: Date,
}

impl SplitPlan {
    /// Cuts the internal cases' dates at the 70th and 85th percentiles.
    pub fn from_cases(cases: &[Case]) -> Option<SplitPlan> {
        let mut dates: Vec<Date> = cases.iter().filter(|c| !c.external).map(|c| c.acquired_on).collect();
        if dates.len() < 3 {
            return None;
        }
        dates.sort();
        let at = |q: f64| dates[((dates.len() - 1) as f64 * q).round() as usize];
        Some(SplitPlan { development_until: at(0.70), validation_until: at(0.85) })
    }

    pub fn split(&self, case: &Case) -> Split {
        if case.external {
            Split::External
        } else if case.acquired_on <= self.development_until {
            Split::Development
        } else if case.acquired_on <= self.validation_until {
            Split::Validation
        } else {
            Split::Prospective
        }
    }
}

/// Generates and prepares cases `0..spec.patients` in parallel (rayon), with a progress bar.
/// Volumes are dropped as soon as their crop exists, so memory holds only the crops.
pub fn generate(spec: &CohortSpec, recipe: &Recipe, progress_label: &str) -> Vec<Case> {
    let bar = progress(spec.patients as u64, progress_label);
    let cases: Vec<Case> = (0..spec.patients)
        .into_par_iter()
        .map(|index| {
            let case = cohort::generate_case(spec, index);
            let input = prepare(&case.t1c, &case.t2, recipe)
                .map(|p| CaseInput { data: p.data, lesion_volume_ml: p.lesion_volume_ml, t1c_lesion_mean: p.t1c_lesion_mean })
                .map_err(|a| a.kind);
            bar.inc(1);
            Case {
                index,
                patient_id: case.patient_id,
                pcnsl: case.label == Diagnosis::Pcnsl,
                age: case.age,
                sex: case.sex.dicom_code().to_string(),
                site: case.site,
                external: case.external,
                vendor: format!("{:?}", case.vendor).to_lowercase(),
                field_strength_t: case.field_strength_t,
                acquired_on: case.acquired_on,
                mimic: case.truth.mimic,
                input,
            }
        })
        .collect();
    bar.finish();
    cases
}

/// A progress bar on stderr; hidden when stderr is not a terminal (CI logs stay readable).
pub fn progress(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:>14} [{elapsed_precise}] {bar:40} {pos}/{len} (eta {eta})") {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar
}
