//! `neurocds-lab scope-check`: the scope gate on the studies a hospital sends — tumours, normal
//! brains and extra-axial masses, all with the full normal enhancing anatomy — run through the
//! service's own preprocessing, ensemble and decision policy.
//!
//! The safety target it reports: **no recommendation, ever, for a normal brain or an extra-axial
//! mass**; and, for tumours, the share that still gets one (coverage) and its AUC.
//!
//! ```text
//! neurocds-lab scope-check --seed 20261205 --patients 400 --out eval/scope
//! ```

use std::{collections::BTreeMap, path::PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use neurocds_analysis::decision::{DecisionSettings, Recommendation, effective_thresholds, recommend};
use neurocds_analysis::imaging::preprocess::prepare;
use neurocds_analysis::inference::{Manifest, ModelInput, engine};

use crate::cohort::{self, CohortSpec, Diagnosis, Presentation};
use crate::evaluate::{EvaluateError, load_members, member_probabilities};

#[derive(Debug, clap::Args)]
pub struct ScopeCheckArgs {
    /// The ensemble's manifest.
    #[arg(long, default_value = "models/ensemble/manifest.json")]
    pub model: PathBuf,
    #[arg(long, default_value_t = 20261205)]
    pub seed: u64,
    #[arg(long, default_value_t = 400)]
    pub patients: usize,
    /// Share of normal brains.
    #[arg(long, default_value_t = 0.4)]
    pub normal: f64,
    /// Share of extra-axial (meningioma-like) masses.
    #[arg(long, default_value_t = 0.2)]
    pub extra_axial: f64,
    /// Where the brains come from (`phantom`, `colin27`, `mni152`, comma-separated); `mni152`
    /// is the external-anatomy set.
    #[arg(long, default_value = "phantom")]
    pub anatomy: String,
    /// Where report.md and scope.json go.
    #[arg(long)]
    pub out: PathBuf,
}

/// What happened to one study.
#[derive(Debug, Clone, Serialize)]
pub struct StudyOutcome {
    pub patient_id: String,
    pub presentation: Presentation,
    /// Tumours only: histology.
    pub pcnsl: Option<bool>,
    /// The scope gate's reason, when it declined.
    pub out_of_scope: Option<String>,
    /// Why the ensemble declined (spread, out of distribution), when it did.
    pub abstained: Option<String>,
    pub recommendation: Option<Recommendation>,
    pub calibrated: Option<f64>,
    /// Every lesion candidate the gate considered (for error analysis).
    pub candidates: Vec<neurocds_analysis::imaging::lesion::Candidate>,
    /// What the generator drew (for error analysis; nothing above saw it): the lesions as
    /// rendered, the main lesion's centre, the site.
    pub truth: cohort::LesionTruth,
    pub lesion_centre_lps: [f64; 3],
    pub site: String,
}

/// The report: counts per presentation, and the tumours' AUC.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeCheckReport {
    pub cohort: String,
    pub model: String,
    pub preprocessing_version: String,
    pub by_presentation: BTreeMap<String, PresentationSummary>,
    /// Tumours with a recommendation / all tumours.
    pub tumour_coverage: f64,
    /// AUC on the tumours that got an estimate, and intention-to-diagnose (declined = 0.5).
    pub tumour_auc: Option<f64>,
    pub tumour_auc_intention_to_diagnose: Option<f64>,
    pub studies: Vec<StudyOutcome>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PresentationSummary {
    pub studies: usize,
    pub out_of_scope: BTreeMap<String, usize>,
    pub passed_scope_gate: usize,
    pub ensemble_abstained: usize,
    pub recommended: usize,
}

impl ScopeCheckArgs {
    pub fn run(self) -> Result<(), EvaluateError> {
        let report = run(&self)?;
        std::fs::create_dir_all(&self.out).map_err(|e| EvaluateError::Write { path: self.out.clone(), source: e })?;
        let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
        std::fs::write(self.out.join("scope.json"), json).map_err(|e| EvaluateError::Write { path: self.out.join("scope.json"), source: e })?;
        let md = markdown(&report);
        std::fs::write(self.out.join("report.md"), &md).map_err(|e| EvaluateError::Write { path: self.out.join("report.md"), source: e })?;
        println!("{md}");
        Ok(())
    }
}

pub fn run(args: &ScopeCheckArgs) -> Result<ScopeCheckReport, EvaluateError> {
    let manifest = Manifest::load(&args.model)?;
    let dir = args.model.parent().map(PathBuf::from).unwrap_or_default();
    let members = load_members(&manifest, &dir)?;
    let mut spec = CohortSpec::hospital_mix(args.seed, args.patients, args.normal, args.extra_axial);
    spec.anatomies = cohort::template::parse_anatomies(&args.anatomy).map_err(|e| EvaluateError::CohortSpec(e.to_string()))?;
    spec.validate().map_err(|e| EvaluateError::CohortSpec(e.to_string()))?;
    let recipe = manifest.input.recipe();
    let bar = crate::dataset::progress(args.patients as u64, "scope-check");
    let prepared: Vec<_> = (0..args.patients)
        .into_par_iter()
        .map(|index| {
            let case = cohort::generate_case(&spec, index);
            let result = prepare(&case.t1c, &case.t2, &recipe);
            bar.inc(1);
            let drawn = (case.truth, case.lesion_centre_lps, case.site);
            (case.patient_id, case.presentation, case.label, drawn, result)
        })
        .collect();
    bar.finish();
    let ready: Vec<&[f32]> = prepared.iter().filter_map(|(.., r)| r.as_ref().ok().map(|p| p.data.as_slice())).collect();
    let per_member = if ready.is_empty() { Vec::new() } else { member_probabilities(&members, &ready, manifest.input.shape)? };
    let thresholds = effective_thresholds(&DecisionSettings { lymphoma_likely: 0.0, gbm_likely: 0.0, max_member_spread: 0.0 }, &manifest.thresholds);
    let mut n = 0;
    let mut studies = Vec::new();
    for (patient_id, presentation, label, (truth, centre, site), result) in &prepared {
        let pcnsl = (*presentation == Presentation::Tumour).then_some(*label == Diagnosis::Pcnsl);
        let mut s = StudyOutcome {
            patient_id: patient_id.clone(),
            presentation: *presentation,
            pcnsl,
            out_of_scope: None,
            abstained: None,
            recommendation: None,
            calibrated: None,
            candidates: Vec::new(),
            truth: *truth,
            lesion_centre_lps: *centre,
            site: site.clone(),
        };
        match result {
            Err(a) => {
                s.candidates = a.scope.as_ref().map(|r| r.candidates.clone()).unwrap_or_default();
                match a.scope.as_ref().and_then(|r| r.out_of_scope) {
                    Some(reason) => s.out_of_scope = Some(reason.as_str().into()),
                    None => s.abstained = Some(format!("{:?}", a.kind)),
                }
            }
            Ok(p) => {
                s.candidates = p.scope.candidates.clone();
                let probs: Vec<f64> = per_member.iter().map(|m| m[n]).collect();
                n += 1;
                let input = ModelInput { data: Vec::new(), lesion_volume_ml: p.lesion_volume_ml, t1c_lesion_mean: p.t1c_lesion_mean };
                let out = engine::summarise(probs, &manifest, manifest.max_member_spread, engine::out_of_distribution(&manifest, &input));
                s.calibrated = Some(out.calibrated_probability);
                match out.abstain_reason {
                    Some(r) => s.abstained = Some(r),
                    None => s.recommendation = Some(recommend(out.calibrated_probability, &thresholds)),
                }
            }
        }
        studies.push(s);
    }
    let mut by_presentation: BTreeMap<String, PresentationSummary> = BTreeMap::new();
    for s in &studies {
        let e = by_presentation.entry(s.presentation.as_str().into()).or_default();
        e.studies += 1;
        match &s.out_of_scope {
            Some(r) => *e.out_of_scope.entry(r.clone()).or_default() += 1,
            None if s.abstained.is_none() || s.calibrated.is_some() => e.passed_scope_gate += 1,
            None => {}
        }
        e.ensemble_abstained += usize::from(s.calibrated.is_some() && s.abstained.is_some());
        e.recommended += usize::from(s.recommendation.is_some());
    }
    let tumours: Vec<&StudyOutcome> = studies.iter().filter(|s| s.presentation == Presentation::Tumour).collect();
    let estimated: Vec<(bool, f64)> = tumours.iter().filter(|s| s.recommendation.is_some()).filter_map(|s| Some((s.pcnsl?, s.calibrated?))).collect();
    let itd: Vec<(bool, f64)> = tumours.iter().filter_map(|s| Some((s.pcnsl?, if s.recommendation.is_some() { s.calibrated? } else { 0.5 }))).collect();
    Ok(ScopeCheckReport {
        cohort: format!(
            "synthetic hospital mix seed={} patients={} normal={} extra_axial={} anatomy={} (full normal enhancing anatomy)",
            args.seed,
            args.patients,
            args.normal,
            args.extra_axial,
            args.anatomy.replace(',', "+")
        ),
        model: format!("{}@{} ({})", manifest.name, manifest.version, manifest.ensemble_hash()),
        preprocessing_version: manifest.preprocessing_version.clone(),
        tumour_coverage: if tumours.is_empty() { 0.0 } else { estimated.len() as f64 / tumours.len() as f64 },
        tumour_auc: auc(&estimated),
        tumour_auc_intention_to_diagnose: auc(&itd),
        by_presentation,
        studies,
    })
}

/// Mann–Whitney AUC (ties count half, `metrics::auc`); `None` without both classes.
fn auc(scored: &[(bool, f64)]) -> Option<f64> {
    let (labels, scores): (Vec<bool>, Vec<f64>) = scored.iter().copied().unzip();
    Some(crate::metrics::auc(&scores, &labels)).filter(|a| a.is_finite())
}

pub fn markdown(r: &ScopeCheckReport) -> String {
    use std::fmt::Write;
    let mut md = String::new();
    let _ = writeln!(md, "# Scope gate on a hospital mix\n");
    let _ = writeln!(md, "- Cohort: {}\n- Model: {}\n- Preprocessing: {}\n- Reproduce: `{}`\n", r.cohort, r.model, r.preprocessing_version, crate::evaluate::command_line());
    let _ = writeln!(md, "| presentation | studies | out of scope (by reason) | passed the gate | ensemble declined | **recommended** |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (name, s) in &r.by_presentation {
        let reasons = s.out_of_scope.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(md, "| {name} | {} | {} | {} | {} | **{}** |", s.studies, reasons, s.passed_scope_gate, s.ensemble_abstained, s.recommended);
    }
    let f = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into());
    let _ = writeln!(md, "\nTumours: a recommendation for {:.1} %; AUC on those {}; intention-to-diagnose AUC (declined scored 0.5) {}.", 100.0 * r.tumour_coverage, f(r.tumour_auc), f(r.tumour_auc_intention_to_diagnose));
    md
}

#[cfg(test)]
mod tests {
    use super::auc;

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(auc(&[(true, 0.9), (false, 0.1)]), Some(1.0));
        assert_eq!(auc(&[(true, 0.5), (false, 0.5)]), Some(0.5));
        assert_eq!(auc(&[(true, 0.5)]), None);
    }
}
