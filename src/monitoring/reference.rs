//! The validation cohort the model card reports, as model monitoring compares with it: every
//! held-out study of the ensemble's evaluation (`models/ensemble/validation/evaluation.json`,
//! written by `neurocds-lab evaluate`) with its calibrated probability, its members' spread and
//! the advice the operating points give it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use neurocds_analysis::{decision::recommend, inference::manifest::Thresholds};

/// What the evaluation says about each held-out study (the fields monitoring reads).
#[derive(Debug, Deserialize)]
struct Evaluation {
    model: String,
    version: String,
    predictions: Vec<Prediction>,
}

#[derive(Debug, Deserialize)]
struct Prediction {
    calibrated: f64,
    spread: f64,
    abstain_reason: Option<String>,
}

/// The held-out cohort's outputs, ready to bin.
#[derive(Debug, Clone)]
pub struct ValidationReference {
    /// `name@version`, as decisions record it.
    pub model_version: String,
    pub studies: usize,
    pub calibrated: Vec<f64>,
    pub spread: Vec<f64>,
    /// `biopsy`, `resection-planning`, `tumour-board`, or `withheld` (the ensemble abstained).
    pub advice: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read the validation cohort at {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the validation cohort at {path} is not an evaluation report: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("the validation cohort at {path} evaluates {found}, not the loaded {expected}")]
    OtherModel { path: PathBuf, found: String, expected: String },
    #[error("the validation cohort at {path} holds no prediction")]
    Empty { path: PathBuf },
}

impl ValidationReference {
    /// Reads the evaluation at `path`, which must be of `model_version` (`name@version`); each
    /// study's advice follows `thresholds`, the operating points the service uses.
    pub fn load(path: &Path, model_version: &str, thresholds: &Thresholds) -> Result<ValidationReference, ReferenceError> {
        let bytes = std::fs::read(path).map_err(|source| ReferenceError::Read { path: path.to_owned(), source })?;
        let e: Evaluation = serde_json::from_slice(&bytes).map_err(|source| ReferenceError::Parse { path: path.to_owned(), source })?;
        let found = format!("{}@{}", e.model, e.version);
        if found != model_version {
            return Err(ReferenceError::OtherModel { path: path.to_owned(), found, expected: model_version.to_owned() });
        }
        if e.predictions.is_empty() {
            return Err(ReferenceError::Empty { path: path.to_owned() });
        }
        let advice = e
            .predictions
            .iter()
            .map(|p| match &p.abstain_reason {
                Some(_) => "withheld".to_owned(),
                None => recommend(p.calibrated, thresholds).as_str().to_owned(),
            })
            .collect();
        Ok(ValidationReference {
            model_version: found,
            studies: e.predictions.len(),
            calibrated: e.predictions.iter().map(|p| p.calibrated).collect(),
            spread: e.predictions.iter().map(|p| p.spread).collect(),
            advice,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/ensemble/validation/evaluation.json");
    const OPERATING_POINTS: Thresholds = Thresholds { lymphoma_likely: 0.779, gbm_likely: 0.226 };

    #[test]
    fn the_shipped_evaluation_is_the_reference_of_the_shipped_ensemble() {
        let r = ValidationReference::load(Path::new(SHIPPED), "neurocds-gbm-pcnsl@1.0.0", &OPERATING_POINTS).expect("the shipped evaluation");
        assert_eq!(r.studies, 761, "every held-out study: validation, prospective and external");
        assert_eq!(r.calibrated.len(), r.studies);
        assert!(r.calibrated.iter().all(|p| (0.0..=1.0).contains(p)));
        let count = |a: &str| r.advice.iter().filter(|x| *x == a).count();
        assert_eq!(count("withheld"), 40, "the studies whose members disagreed");
        assert!(count("biopsy") > 100 && count("resection-planning") > 100 && count("tumour-board") > 0);
        assert_eq!(count("biopsy") + count("resection-planning") + count("tumour-board") + count("withheld"), r.studies);
    }

    #[test]
    fn an_evaluation_of_another_model_is_refused_by_name() {
        let e = ValidationReference::load(Path::new(SHIPPED), "neurocds-gbm-pcnsl@2.0.0", &OPERATING_POINTS).expect_err("another version");
        assert!(e.to_string().contains("evaluates neurocds-gbm-pcnsl@1.0.0, not the loaded neurocds-gbm-pcnsl@2.0.0"), "{e}");
        let missing = ValidationReference::load(Path::new("/nonexistent/evaluation.json"), "m@1", &OPERATING_POINTS).expect_err("no file");
        assert!(missing.to_string().starts_with("cannot read the validation cohort at /nonexistent/evaluation.json"), "{missing}");
    }
}
