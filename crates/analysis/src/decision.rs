//! The decision policy: calibrated probability bands → recommendation.
//!
//! | calibrated P(lymphoma) | recommendation |
//! |---|---|
//! | ≥ `lymphoma_likely` | stereotactic biopsy before any resection; hold corticosteroids until tissue is obtained if clinically safe |
//! | ≤ `gbm_likely` | neurosurgical resection planning |
//! | in between | tumour-board review |
//!
//! Thresholds come from `[decision]` in the config, or from the model card when left at 0.

use serde::{Deserialize, Serialize};

use crate::inference::manifest::Thresholds;

/// The policy's thresholds as a site sets them (`[decision]` in the service's settings); 0 means
/// "the model card's value".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionSettings {
    pub lymphoma_likely: f64,
    pub gbm_likely: f64,
    pub max_member_spread: f64,
}

/// What neurocds advises. One name across code, database, API and pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recommendation {
    Biopsy,
    ResectionPlanning,
    TumourBoard,
}

impl Recommendation {
    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::Biopsy => "biopsy",
            Recommendation::ResectionPlanning => "resection-planning",
            Recommendation::TumourBoard => "tumour-board",
        }
    }

    pub fn headline(self) -> &'static str {
        match self {
            Recommendation::Biopsy => "CNS lymphoma likely: plan stereotactic biopsy before any resection",
            Recommendation::ResectionPlanning => "Glioblastoma likely: neurosurgical resection planning fits",
            Recommendation::TumourBoard => "Indeterminate (GBM vs CNS lymphoma): tumour board review",
        }
    }
}

/// How a hook's analysis ended. One name across code, database, API and pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A recommendation was made.
    Recommended,
    /// The analysis ran but declined to recommend (quality gate, disagreement, out of distribution).
    Abstained,
    /// The scope gate found no enhancing intra-axial mass that could be GBM or CNS lymphoma
    /// (a normal brain, only normal enhancing anatomy, an extra-axial mass, a lesion too small
    /// or too little imaged). Never a recommendation; the most common outcome in practice.
    OutOfScope,
    /// The analysis could not run (no prior MR, PACS down, queue full, time budget spent…).
    Unavailable,
    /// order-select: the analysis was started and is running.
    Pending,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Recommended => "recommended",
            Outcome::Abstained => "abstained",
            Outcome::OutOfScope => "out-of-scope",
            Outcome::Unavailable => "unavailable",
            Outcome::Pending => "pending",
        }
    }
}

/// The thresholds in force: config when set, else the model card's.
pub fn effective_thresholds(config: &DecisionSettings, card: &Thresholds) -> Thresholds {
    if config.lymphoma_likely > 0.0 && config.gbm_likely > 0.0 {
        Thresholds { lymphoma_likely: config.lymphoma_likely, gbm_likely: config.gbm_likely }
    } else {
        *card
    }
}

pub fn recommend(calibrated_p_lymphoma: f64, t: &Thresholds) -> Recommendation {
    if calibrated_p_lymphoma >= t.lymphoma_likely {
        Recommendation::Biopsy
    } else if calibrated_p_lymphoma <= t.gbm_likely {
        Recommendation::ResectionPlanning
    } else {
        Recommendation::TumourBoard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { lymphoma_likely: 0.7, gbm_likely: 0.3 };

    #[test]
    fn high_lymphoma_probability_recommends_biopsy() {
        assert_eq!(recommend(0.7, &T), Recommendation::Biopsy);
        assert_eq!(recommend(0.95, &T), Recommendation::Biopsy);
    }

    #[test]
    fn low_lymphoma_probability_recommends_resection_planning() {
        assert_eq!(recommend(0.3, &T), Recommendation::ResectionPlanning);
        assert_eq!(recommend(0.01, &T), Recommendation::ResectionPlanning);
    }

    #[test]
    fn probabilities_between_the_bands_go_to_tumour_board() {
        assert_eq!(recommend(0.31, &T), Recommendation::TumourBoard);
        assert_eq!(recommend(0.69, &T), Recommendation::TumourBoard);
    }

    #[test]
    fn config_thresholds_override_the_model_card_only_when_both_are_set() {
        let mut c = DecisionSettings { lymphoma_likely: 0.8, gbm_likely: 0.0, max_member_spread: 0.3 };
        assert_eq!(effective_thresholds(&c, &T).lymphoma_likely, 0.7);
        c.gbm_likely = 0.2;
        let t = effective_thresholds(&c, &T);
        assert_eq!((t.lymphoma_likely, t.gbm_likely), (0.8, 0.2));
    }
}
