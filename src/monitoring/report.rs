//! The figures: from the analyses of the window and the baseline period (and the validation
//! cohort), each watched quantity binned on both sides, with its drift and whether it alerts.
//! Pure: no database, no clock ([`Monitor`](super::Monitor) supplies both).

use serde::Serialize;
use serde_json::Value;

use super::{
    drift::{Bin, Binning, Sample, bins, ks, psi},
    reference::ValidationReference,
};
use crate::audit::{monitoring::MonitoredAnalysis, query::RecommendationSummary};

/// A quantity model monitoring watches: its name (a Prometheus label value), title, binning and
/// what it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// The calibrated P(lymphoma) of analyses the ensemble estimated.
    Probability,
    /// The spread of the members' probabilities.
    Spread,
    /// What the operating points made of each estimate (or that the ensemble withheld it).
    Advice,
    /// Every analysis's outcome and reason class (scope gate, failed stage…).
    Outcome,
    LesionVolume,
    T1cLesionMean,
    /// The mean normalised T2 intensity over the enhancing lesion.
    T2LesionMean,
    Vendor,
    /// The T1c's magnetic field strength: 1.5 T, 3 T, other.
    FieldStrength,
    T1cAcquisition,
    T1cRecognition,
    T2Recognition,
}

/// What a quantity's live distribution is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Against {
    /// The held-out studies of the model card's evaluation.
    Validation,
    /// The same model's analyses in the period before the window.
    Baseline,
}

impl Against {
    pub fn as_str(self) -> &'static str {
        match self {
            Against::Validation => "validation",
            Against::Baseline => "baseline",
        }
    }

    /// For people: `validation cohort` or `baseline period`.
    pub fn label(self) -> &'static str {
        match self {
            Against::Validation => "validation cohort",
            Against::Baseline => "baseline period",
        }
    }
}

const TENTHS: &[f64] = &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
const SPREAD: &[f64] = &[0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, f64::INFINITY];
const VOLUME_ML: &[f64] = &[f64::NEG_INFINITY, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, f64::INFINITY];
const Z_MEAN: &[f64] = &[f64::NEG_INFINITY, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 8.0, f64::INFINITY];
/// The T2 over an enhancing lesion sits nearer the brain's own (z around 0 to 3).
const Z_MEAN_T2: &[f64] = &[f64::NEG_INFINITY, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.5, f64::INFINITY];

impl Quantity {
    pub const ALL: [Quantity; 12] = [
        Quantity::Probability,
        Quantity::Spread,
        Quantity::Advice,
        Quantity::Outcome,
        Quantity::LesionVolume,
        Quantity::T1cLesionMean,
        Quantity::T2LesionMean,
        Quantity::Vendor,
        Quantity::FieldStrength,
        Quantity::T1cAcquisition,
        Quantity::T1cRecognition,
        Quantity::T2Recognition,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Quantity::Probability => "calibrated_probability",
            Quantity::Spread => "member_spread",
            Quantity::Advice => "advice",
            Quantity::Outcome => "outcome",
            Quantity::LesionVolume => "lesion_volume_ml",
            Quantity::T1cLesionMean => "t1c_lesion_mean",
            Quantity::T2LesionMean => "t2_lesion_mean",
            Quantity::Vendor => "vendor",
            Quantity::FieldStrength => "t1c_field_strength",
            Quantity::T1cAcquisition => "t1c_acquisition",
            Quantity::T1cRecognition => "t1c_recognition",
            Quantity::T2Recognition => "t2_recognition",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Quantity::Probability => "Calibrated probability of lymphoma",
            Quantity::Spread => "Spread of the members' probabilities",
            Quantity::Advice => "Advice given to estimated studies",
            Quantity::Outcome => "Outcome of every analysis",
            Quantity::LesionVolume => "Enhancing lesion volume",
            Quantity::T1cLesionMean => "Mean normalised T1c intensity in the lesion",
            Quantity::T2LesionMean => "Mean normalised T2 intensity in the lesion",
            Quantity::Vendor => "Scanner vendor (T1c)",
            Quantity::FieldStrength => "Magnetic field strength (T1c)",
            Quantity::T1cAcquisition => "T1c acquisition",
            Quantity::T1cRecognition => "How the T1c was recognised",
            Quantity::T2Recognition => "How the T2 was recognised",
        }
    }

    fn binning(self) -> Binning {
        match self {
            Quantity::Probability => Binning::Numeric { edges: TENTHS, unit: "" },
            Quantity::Spread => Binning::Numeric { edges: SPREAD, unit: "" },
            Quantity::LesionVolume => Binning::Numeric { edges: VOLUME_ML, unit: " mL" },
            Quantity::T1cLesionMean => Binning::Numeric { edges: Z_MEAN, unit: "" },
            Quantity::T2LesionMean => Binning::Numeric { edges: Z_MEAN_T2, unit: "" },
            Quantity::Advice => Binning::Categorical { order: &["biopsy", "resection-planning", "tumour-board", "withheld"] },
            Quantity::Outcome => Binning::Categorical { order: &["recommended"] },
            Quantity::Vendor => Binning::Categorical { order: &["siemens", "ge", "philips", "canon", "other", "unknown"] },
            Quantity::FieldStrength => Binning::Categorical { order: &["1.5T", "3T", "other", "unknown"] },
            Quantity::T1cAcquisition => Binning::Categorical { order: &["3D", "2D", "unknown"] },
            Quantity::T1cRecognition | Quantity::T2Recognition => Binning::Categorical { order: &[] },
        }
    }

    /// The validation cohort records outputs only; inputs are compared with the weeks before.
    fn against(self, validation: Option<&ValidationReference>) -> Against {
        match (self, validation) {
            (Quantity::Probability | Quantity::Spread | Quantity::Advice, Some(_)) => Against::Validation,
            _ => Against::Baseline,
        }
    }

    /// This quantity's values among `analyses`.
    fn sample(self, analyses: &[&MonitoredAnalysis]) -> Sample {
        let mut s = Sample::default();
        for a in analyses {
            let input = |key: &str| a.monitoring.as_ref().and_then(|m| m.get("inputs")).and_then(|i| i.get(key)).filter(|v| !v.is_null());
            let text = |key: &str| input(key).and_then(Value::as_str).map(str::to_owned);
            match self {
                Quantity::Probability => s.numbers.extend(a.calibrated_probability),
                Quantity::Spread => s.numbers.extend(a.member_spread),
                Quantity::Advice => {
                    if a.calibrated_probability.is_some() {
                        s.categories.push(a.recommendation.clone().unwrap_or_else(|| "withheld".into()));
                    }
                }
                Quantity::Outcome => s.categories.push(outcome_class(a)),
                Quantity::LesionVolume => s.numbers.extend(input("lesion_volume_ml").and_then(Value::as_f64)),
                Quantity::T1cLesionMean => s.numbers.extend(input("t1c_lesion_mean").and_then(Value::as_f64)),
                Quantity::T2LesionMean => s.numbers.extend(input("t2_lesion_mean").and_then(Value::as_f64)),
                // Inputs exist only where the series were chosen; older decisions have none.
                Quantity::Vendor => s.categories.extend(has_inputs(a).then(|| vendor(text("manufacturer").as_deref()).to_owned())),
                Quantity::FieldStrength => s.categories.extend(has_inputs(a).then(|| field_strength(input("t1c_field_strength_t").and_then(Value::as_f64)).to_owned())),
                Quantity::T1cAcquisition => s.categories.extend(has_inputs(a).then(|| text("t1c_acquisition").unwrap_or_else(|| "unknown".into()))),
                Quantity::T1cRecognition => s.categories.extend(text("t1c_recognition")),
                Quantity::T2Recognition => s.categories.extend(text("t2_recognition")),
            }
        }
        s
    }

    fn validation_sample(self, v: &ValidationReference) -> Sample {
        match self {
            Quantity::Probability => Sample { numbers: v.calibrated.clone(), categories: Vec::new() },
            Quantity::Spread => Sample { numbers: v.spread.clone(), categories: Vec::new() },
            Quantity::Advice => Sample { numbers: Vec::new(), categories: v.advice.clone() },
            _ => Sample::default(),
        }
    }
}

fn has_inputs(a: &MonitoredAnalysis) -> bool {
    a.monitoring.as_ref().and_then(|m| m.get("inputs")).is_some_and(|i| !i.is_null())
}

/// A field strength as monitoring counts it: the two clinical classes, anything else, or none.
pub fn field_strength(tesla: Option<f64>) -> &'static str {
    match tesla {
        Some(t) if (t - 1.5).abs() <= 0.25 => "1.5T",
        Some(t) if (t - 3.0).abs() <= 0.25 => "3T",
        Some(_) => "other",
        None => "unknown",
    }
}

/// `recommended`, or the outcome with its reason class (`out-of-scope: normal_anatomy_only`,
/// `unavailable: retrieval`…).
fn outcome_class(a: &MonitoredAnalysis) -> String {
    let class = a.monitoring.as_ref().and_then(|m| m.get("reason_class")).and_then(Value::as_str).unwrap_or("unrecorded");
    match (a.outcome.as_str(), class) {
        ("recommended", _) => "recommended".into(),
        (outcome, class) => format!("{outcome}: {class}"),
    }
}

/// The vendor a Manufacturer value names, from a closed set (scanners write it many ways).
pub fn vendor(manufacturer: Option<&str>) -> &'static str {
    let Some(m) = manufacturer.map(str::to_ascii_lowercase) else { return "unknown" };
    let has = |k: &str| m.contains(k);
    if has("siemens") {
        "siemens"
    } else if m.starts_with("ge ") || m == "ge" || has("general electric") || has("ge medical") || has("ge healthcare") {
        "ge"
    } else if has("philips") {
        "philips"
    } else if has("canon") || has("toshiba") {
        "canon"
    } else {
        "other"
    }
}

/// One quantity, both sides binned, and how far apart they are.
#[derive(Debug, Clone, Serialize)]
pub struct QuantityReport {
    pub name: &'static str,
    pub title: &'static str,
    pub against: Against,
    pub bins: Vec<Bin>,
    pub reference_n: usize,
    pub live_n: usize,
    pub psi: Option<f64>,
    /// Numeric quantities only.
    pub ks: Option<f64>,
    /// Share of live values outside the range the ensemble was trained on (the manifest's
    /// `ood` bounds), for the two inputs it checks.
    pub outside_training_range: Option<f64>,
    /// `stable`, `moderate`, `drift`, or `too-few` (fewer than `min_analyses` on a side).
    pub status: &'static str,
}

/// One model version's window.
#[derive(Debug, Clone, Serialize)]
pub struct VersionReport {
    pub model_version: String,
    /// The ensemble this process has loaded (the validation cohort is its).
    pub loaded: bool,
    pub analyses: usize,
    pub baseline_analyses: usize,
    /// Shares of the window's analyses by outcome.
    pub recommended: f64,
    pub abstained: f64,
    pub out_of_scope: f64,
    pub unavailable: f64,
    pub quantities: Vec<QuantityReport>,
    /// Feedback on the window's cards, by recommendation.
    pub overrides: Vec<RecommendationSummary>,
}

/// What the figures are judged by.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Judging {
    pub psi_alert: f64,
    pub min_analyses: usize,
}

/// Training-range bounds of the two inputs the ensemble checks (the manifest's `ood`).
pub type TrainingRange = neurocds_analysis::inference::manifest::OodBounds;

/// One version's figures: `window` and `baseline` are its analyses in each period; `loaded`
/// when it is the ensemble this process runs.
pub fn version_report(
    model_version: &str,
    loaded: bool,
    window: &[&MonitoredAnalysis],
    baseline: &[&MonitoredAnalysis],
    validation: Option<&ValidationReference>,
    training: Option<&TrainingRange>,
    judging: Judging,
) -> VersionReport {
    let validation = validation.filter(|v| v.model_version == model_version);
    let quantities = Quantity::ALL
        .iter()
        .map(|&q| {
            let against = q.against(validation);
            let reference = match (against, validation) {
                (Against::Validation, Some(v)) => q.validation_sample(v),
                _ => q.sample(baseline),
            };
            let live = q.sample(window);
            let bins = bins(&q.binning(), &reference, &live);
            let psi = psi(&bins);
            let numeric = matches!(q.binning(), Binning::Numeric { .. });
            let range = training.and_then(|t| match q {
                Quantity::LesionVolume => Some(t.lesion_volume_ml),
                Quantity::T1cLesionMean => Some(t.t1c_lesion_mean),
                _ => None,
            });
            let outside = range.filter(|_| !live.numbers.is_empty()).map(|[lo, hi]| live.numbers.iter().filter(|&&x| x < lo || x > hi).count() as f64 / live.numbers.len() as f64);
            let status = match psi {
                _ if reference.len() < judging.min_analyses || live.len() < judging.min_analyses => "too-few",
                Some(p) if p > judging.psi_alert => "drift",
                Some(p) if p > 0.1 => "moderate",
                _ => "stable",
            };
            QuantityReport {
                name: q.name(),
                title: q.title(),
                against,
                reference_n: reference.len(),
                live_n: live.len(),
                psi,
                ks: if numeric { ks(&reference.numbers, &live.numbers) } else { None },
                outside_training_range: outside,
                status,
                bins,
            }
        })
        .collect();
    let share = |outcome: &str| if window.is_empty() { 0.0 } else { window.iter().filter(|a| a.outcome == outcome).count() as f64 / window.len() as f64 };
    VersionReport {
        model_version: model_version.to_owned(),
        loaded,
        analyses: window.len(),
        baseline_analyses: baseline.len(),
        recommended: share("recommended"),
        abstained: share("abstained"),
        out_of_scope: share("out-of-scope"),
        unavailable: share("unavailable"),
        quantities,
        overrides: Vec::new(),
    }
}

/// The alerts of a version, as log and `/readyz` lines (no PHI: names and numbers only).
pub fn alerts(v: &VersionReport, judging: Judging) -> Vec<String> {
    v.quantities
        .iter()
        .filter(|q| q.status == "drift")
        .map(|q| format!("{}: {} PSI {:.2} against the {} (alert above {})", v.model_version, q.name, q.psi.unwrap_or_default(), q.against.label(), judging.psi_alert))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const JUDGING: Judging = Judging { psi_alert: 0.25, min_analyses: 50 };

    fn analysis(outcome: &str, p: Option<f64>, monitoring: Value) -> MonitoredAnalysis {
        let recommendation = p.map(|p| if p >= 0.779 { "biopsy" } else if p <= 0.226 { "resection-planning" } else { "tumour-board" }.to_owned());
        MonitoredAnalysis {
            recorded_at: time::OffsetDateTime::UNIX_EPOCH,
            model_version: "m@1".into(),
            outcome: outcome.into(),
            recommendation,
            calibrated_probability: p,
            member_spread: p.map(|_| 0.05),
            monitoring: Some(monitoring),
        }
    }

    fn estimated(p: f64, manufacturer: &str) -> MonitoredAnalysis {
        analysis("recommended", Some(p), json!({ "reason_class": "none", "inputs": { "manufacturer": manufacturer, "t1c_acquisition": "3D", "t1c_recognition": "T1 timing + contrast agent", "t2_recognition": "T2 timing", "lesion_volume_ml": 12.0, "t1c_lesion_mean": 4.0 } }))
    }

    fn validation(n: usize) -> ValidationReference {
        let calibrated: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
        ValidationReference {
            model_version: "m@1".into(),
            studies: n,
            advice: calibrated.iter().map(|&p| if p >= 0.779 { "biopsy" } else if p <= 0.226 { "resection-planning" } else { "tumour-board" }.to_owned()).collect(),
            spread: vec![0.05; n],
            calibrated,
        }
    }

    fn quantity<'a>(v: &'a VersionReport, name: &str) -> &'a QuantityReport {
        v.quantities.iter().find(|q| q.name == name).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn probabilities_piling_up_at_one_end_alert_against_the_validation_cohort() {
        let reference = validation(400);
        let window: Vec<MonitoredAnalysis> = (0..80).map(|i| estimated(0.9 + 0.001 * i as f64, "SIEMENS")).collect();
        let rows: Vec<&MonitoredAnalysis> = window.iter().collect();
        let v = version_report("m@1", true, &rows, &[], Some(&reference), None, JUDGING);
        let p = quantity(&v, "calibrated_probability");
        assert_eq!((p.against, p.reference_n, p.live_n), (Against::Validation, 400, 80));
        assert_eq!(p.status, "drift", "{p:?}");
        assert!(p.ks.expect("a numeric quantity") > 0.85);
        assert_eq!(quantity(&v, "advice").status, "drift");
        let lines = alerts(&v, JUDGING);
        assert!(lines.iter().any(|l| l.starts_with("m@1: calibrated_probability PSI ") && l.ends_with("against the validation cohort (alert above 0.25)")), "{lines:?}");
        // Inputs have no baseline here: nothing to judge them by.
        assert_eq!(quantity(&v, "vendor").status, "too-few");
    }

    #[test]
    fn a_window_like_the_validation_cohort_is_stable_and_few_analyses_are_not_judged() {
        let reference = validation(400);
        let window: Vec<MonitoredAnalysis> = (0..100).map(|i| estimated((i as f64 + 0.5) / 100.0, "GE MEDICAL SYSTEMS")).collect();
        let rows: Vec<&MonitoredAnalysis> = window.iter().collect();
        let v = version_report("m@1", true, &rows, &[], Some(&reference), None, JUDGING);
        assert_eq!(quantity(&v, "calibrated_probability").status, "stable");
        assert!(alerts(&v, JUDGING).is_empty());
        let few = version_report("m@1", true, &rows[..10], &[], Some(&reference), None, JUDGING);
        assert_eq!(quantity(&few, "calibrated_probability").status, "too-few");
    }

    #[test]
    fn inputs_and_outcomes_are_compared_with_the_baseline_period() {
        let before: Vec<MonitoredAnalysis> = (0..60).map(|_| estimated(0.5, "SIEMENS")).collect();
        let mut now: Vec<MonitoredAnalysis> = (0..30).map(|_| estimated(0.5, "Philips Medical Systems")).collect();
        now.extend((0..30).map(|_| analysis("out-of-scope", None, json!({ "reason_class": "normal_anatomy_only", "inputs": { "manufacturer": "Philips" } }))));
        let (w, b): (Vec<_>, Vec<_>) = (now.iter().collect(), before.iter().collect());
        let v = version_report("m@1", true, &w, &b, None, Some(&TrainingRange { lesion_volume_ml: [1.0, 10.0], t1c_lesion_mean: [1.0, 8.0] }), JUDGING);
        let vendor = quantity(&v, "vendor");
        assert_eq!((vendor.against, vendor.status), (Against::Baseline, "drift"));
        assert_eq!(vendor.bins.iter().map(|b| (b.label.as_str(), b.reference, b.live)).collect::<Vec<_>>(), [("siemens", 60, 0), ("philips", 0, 60)]);
        let outcome = quantity(&v, "outcome");
        assert_eq!(outcome.bins.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(), ["recommended", "out-of-scope: normal_anatomy_only"]);
        assert_eq!(v.out_of_scope, 0.5);
        // Without a validation cohort, outputs too are judged against the baseline.
        assert_eq!(quantity(&v, "calibrated_probability").against, Against::Baseline);
        // Every lesion of 12 mL is outside a training range of 1-10 mL.
        assert_eq!(quantity(&v, "lesion_volume_ml").outside_training_range, Some(1.0));
    }

    #[test]
    fn manufacturer_values_name_a_vendor_from_a_closed_set() {
        for (m, v) in [("SIEMENS", "siemens"), ("Siemens Healthineers", "siemens"), ("GE MEDICAL SYSTEMS", "ge"), ("GE Healthcare", "ge"), ("Philips Medical Systems", "philips"), ("TOSHIBA_MEC", "canon"), ("Canon Medical Systems", "canon"), ("Hitachi", "other"), ("Gemini Imaging", "other")] {
            assert_eq!(vendor(Some(m)), v, "{m}");
        }
        assert_eq!(vendor(None), "unknown");
    }

    #[test]
    fn field_strengths_fall_in_the_two_clinical_classes_or_other() {
        for (t, class) in [(Some(1.5), "1.5T"), (Some(1.494), "1.5T"), (Some(3.0), "3T"), (Some(2.89), "3T"), (Some(0.55), "other"), (Some(7.0), "other"), (None, "unknown")] {
            assert_eq!(field_strength(t), class, "{t:?}");
        }
    }

    #[test]
    fn a_site_moving_from_three_to_one_and_a_half_tesla_is_an_input_drift() {
        let at = |tesla: f64| analysis("recommended", Some(0.5), json!({ "reason_class": "none", "inputs": { "manufacturer": "SIEMENS", "t1c_field_strength_t": tesla } }));
        let before: Vec<MonitoredAnalysis> = (0..60).map(|_| at(3.0)).collect();
        let now: Vec<MonitoredAnalysis> = (0..60).map(|_| at(1.5)).collect();
        let (w, b): (Vec<_>, Vec<_>) = (now.iter().collect(), before.iter().collect());
        let v = version_report("m@1", true, &w, &b, None, None, JUDGING);
        let q = quantity(&v, "t1c_field_strength");
        assert_eq!((q.against, q.status), (Against::Baseline, "drift"));
        assert_eq!(q.bins.iter().map(|b| (b.label.as_str(), b.reference, b.live)).collect::<Vec<_>>(), [("1.5T", 0, 60), ("3T", 60, 0)]);
    }

    #[test]
    fn a_t2_that_turns_brighter_over_the_lesion_is_an_input_drift_and_older_analyses_without_it_are_not_counted() {
        let t2 = |z: Option<f64>| analysis("recommended", Some(0.5), json!({ "reason_class": "none", "inputs": { "manufacturer": "SIEMENS", "t2_lesion_mean": z } }));
        let mut before: Vec<MonitoredAnalysis> = (0..60).map(|i| t2(Some(0.6 + 0.01 * i as f64))).collect();
        before.extend((0..20).map(|_| t2(None)));
        let now: Vec<MonitoredAnalysis> = (0..60).map(|i| t2(Some(2.1 + 0.01 * i as f64))).collect();
        let (w, b): (Vec<_>, Vec<_>) = (now.iter().collect(), before.iter().collect());
        let v = version_report("m@1", true, &w, &b, None, None, JUDGING);
        let q = quantity(&v, "t2_lesion_mean");
        assert_eq!((q.against, q.status), (Against::Baseline, "drift"));
        assert_eq!(q.bins.iter().map(|b| b.reference).sum::<u64>(), 60, "analyses recorded before the T2 was watched are left out");
        assert_eq!(q.bins.iter().map(|b| b.live).sum::<u64>(), 60);
    }
}
