//! Writing the evaluation: `evaluation.json`, the human-readable `report.md`, and the plots.

use std::{fmt::Write as _, path::Path};

use super::{
    error::EvaluateError,
    plot::{self, Canvas},
    report::{ChosenMember, EvaluationReport, Prediction},
};
use crate::{
    dataset::Split,
    metrics::{self, Interval},
};

/// Writes `evaluation.json`, `report.md` and per-group `roc-*.png`, `calibration-*.png`.
pub fn write_report(report: &EvaluationReport, dir: &Path) -> Result<(), EvaluateError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| EvaluateError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| EvaluateError::Write { path: dir.into(), source })?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| EvaluateError::Write { path: dir.join("evaluation.json"), source: e.into() })?;
    write("evaluation.json", &json)?;
    for g in &report.groups {
        let preds: Vec<&Prediction> = report.predictions.iter().filter(|p| group_contains(&g.name, p.split)).collect();
        let labels: Vec<bool> = preds.iter().map(|p| p.pcnsl).collect();
        let mut roc = Canvas::unit_square(480);
        roc.line((0.0, 0.0), (1.0, 1.0), plot::GREY, 2);
        for m in 0..preds.first().map_or(0, |p| p.members.len()) {
            let s: Vec<f64> = preds.iter().map(|p| p.members[m]).collect();
            roc.polyline(&metrics::roc_curve(&s, &labels), plot::LIGHT, 2);
        }
        let s: Vec<f64> = preds.iter().map(|p| p.calibrated).collect();
        roc.polyline(&metrics::roc_curve(&s, &labels), plot::BLUE, 3);
        let png = roc.png().map_err(|source| EvaluateError::Plot { what: format!("roc-{}", g.name), source })?;
        write(&format!("roc-{}.png", g.name), &png)?;

        let mut cal = Canvas::unit_square(480);
        cal.line((0.0, 0.0), (1.0, 1.0), plot::GREY, 2);
        let points: Vec<(f64, f64)> = g.calibration.bins.iter().filter(|b| b.count > 0).map(|b| (b.mean_predicted, b.observed)).collect();
        cal.polyline(&points, plot::ORANGE, 3);
        for p in &points {
            cal.marker(*p, plot::ORANGE, 9);
        }
        let png = cal.png().map_err(|source| EvaluateError::Plot { what: format!("calibration-{}", g.name), source })?;
        write(&format!("calibration-{}.png", g.name), &png)?;
    }
    write("report.md", markdown(report).as_bytes())
}

/// "Ensemble against its members": the after-the-fact best member, the member chosen on
/// validation, and (synthetic cohorts) both again without the generator's mimics.
fn members_section(md: &mut String, r: &EvaluationReport) {
    let vs = |c: &ChosenMember| format!("{:.4} (member {}) | {:+.4} ({})", c.member_auc, c.member, c.ensemble_vs_member.difference, p_value(c.ensemble_vs_member.p_value));
    let _ = writeln!(md, "\n## Ensemble against its members\n");
    let _ = writeln!(
        md,
        "Three bars. *Best on these patients* is the member with the highest AUC on the very patients being scored, chosen after seeing their labels: \
         an optimistic bar, since among members of equal skill it is the one whose noise fell luckiest. *Chosen on validation* is the member with the \
         highest validation AUC, the one a single-model deployment would have shipped, judged on patients that played no part in choosing it \
         (the cohort's own validation split, else the training validation recorded in the model card; n/a for groups containing that split). *Without mimics* (synthetic cohorts only) repeats the first \
         comparison without the cases whose imaging the generator drew from the other diagnosis: those no model can tell apart, so every model \
         ranks them by chance and they add the same noise to every AUC.\n"
    );
    let _ = writeln!(md, "| group | ensemble AUC | best on these patients | ensemble − it (p) | chosen on validation | ensemble − it (p) | without mimics: patients (mimics left out) | ensemble AUC | best member | ensemble − it (p) |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for g in &r.groups {
        let best = ChosenMember {
            member: g.best_member,
            member_auc: g.member_aucs.get(g.best_member).map_or(f64::NAN, |m| m.estimate),
            ensemble_vs_member: g.ensemble_vs_best_member,
        };
        let chosen = g.validation_chosen_member.as_ref().map_or("n/a | n/a".to_string(), vs);
        let clean = g.without_mimics.as_ref().map_or("n/a | n/a | n/a | n/a".to_string(), |w| {
            format!("{} ({}) | {:.4} | {}", w.patients, w.mimics, w.auc.estimate, vs(&w.best_member))
        });
        let _ = writeln!(md, "| {} | {:.4} | {} | {} | {} |", g.name, g.auc_delong.estimate, vs(&best), chosen, clean);
    }
}

fn group_contains(group: &str, split: Split) -> bool {
    match group {
        "all_held_out" => split != Split::Development,
        other => other == split.as_str(),
    }
}

fn ci(i: &Interval) -> String {
    format!("{:.3} ({:.3}–{:.3})", i.estimate, i.lower, i.upper)
}

/// `p = 0.123`, or `p < 0.001`.
fn p_value(p: f64) -> String {
    if p < 0.001 { "p < 0.001".into() } else { format!("p = {p:.3}") }
}

fn pct(x: f64) -> String {
    if x.is_nan() { "n/a".into() } else { format!("{:.1} %", 100.0 * x) }
}

/// Longest list of unscored studies in report.md (evaluation.json has all of them).
const MAX_LISTED_ABSTENTIONS: usize = 50;

/// The human-readable report.
pub fn markdown(r: &EvaluationReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Validation report: {} {}\n", r.model, r.version);
    let _ = writeln!(md, "- Ensemble SHA-256 (over member hashes): `{}`", r.ensemble_sha256);
    let _ = writeln!(md, "- Cohort: {}", r.cohort);
    if let Some(command) = &r.command {
        let _ = writeln!(md, "- Reproduce: `{command}`");
    }
    let _ = writeln!(md, "- AUC intervals: stratified bootstrap ({} patient resamples, percentile) and DeLong (fast mid-rank form)", r.bootstrap_resamples);
    let _ = writeln!(md, "- PPV/NPV are also given at an assumed PCNSL prevalence of {:.0} %", 100.0 * r.prevalence);
    let _ = writeln!(md, "- Probabilities are the calibrated ensemble P(PCNSL); engine abstentions (out of distribution, member disagreement) are counted but kept in every metric.\n");
    if r.development_skipped > 0 {
        let _ = writeln!(md, "Studies in the development split (not scored): {}\n", r.development_skipped);
    }
    if !r.preprocessing_abstentions.is_empty() {
        let _ = writeln!(md, "Cases preprocessing declined (not scored): {}\n", serde_json::to_string(&r.preprocessing_abstentions).unwrap_or_default());
        let _ = writeln!(md, "| patient | split | reason | detail |\n|---|---|---|---|");
        for a in r.abstained_studies.iter().take(MAX_LISTED_ABSTENTIONS) {
            let _ = writeln!(md, "| {} | {} | {} | {} |", a.patient_id, a.split.as_str(), a.reason, a.detail.replace('|', "\\|"));
        }
        if r.abstained_studies.len() > MAX_LISTED_ABSTENTIONS {
            let _ = writeln!(md, "\n({} more in evaluation.json)", r.abstained_studies.len() - MAX_LISTED_ABSTENTIONS);
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Summary\n\n| group | patients (PCNSL) | AUC, bootstrap 95 % CI | AUC, DeLong 95 % CI | best member AUC | ensemble − best member (p) | calibration slope | intercept | Brier |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for g in &r.groups {
        let _ = writeln!(
            md,
            "| {} | {} ({}) | {} | {} | {:.3} (member {}) | {:+.3} (p = {:.3}) | {:.2} | {:+.2} | {:.3} |",
            g.name,
            g.patients,
            g.pcnsl,
            ci(&g.auc_bootstrap),
            ci(&g.auc_delong),
            g.member_aucs.get(g.best_member).map_or(f64::NAN, |m| m.estimate),
            g.best_member,
            g.ensemble_vs_best_member.difference,
            g.ensemble_vs_best_member.p_value,
            g.calibration.slope,
            g.calibration.intercept,
            g.calibration.brier
        );
    }
    members_section(&mut md, r);
    for g in &r.groups {
        let _ = writeln!(md, "\n## {} ({} patients, {} PCNSL; engine would abstain on {})\n", g.name, g.patients, g.pcnsl, g.engine_abstentions);
        let _ = writeln!(md, "![ROC]({}) ![calibration]({})\n", format_args!("roc-{}.png", g.name), format_args!("calibration-{}.png", g.name));
        let _ = writeln!(md, "ROC: x = 1 − specificity, y = sensitivity (blue: ensemble; light: members). Calibration: x = predicted, y = observed, deciles of predicted probability; grey = ideal.\n");
        let _ = writeln!(md, "| operating point | threshold | sensitivity | specificity | PPV | NPV | PPV @ {:.0} % | NPV @ {:.0} % |", 100.0 * r.prevalence, 100.0 * r.prevalence);
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for (label, op) in [("lymphoma likely (P ≥ t)", &g.lymphoma_likely), ("not GBM likely (P ≥ t)", &g.not_gbm_likely)] {
            let _ = writeln!(
                md,
                "| {label} | {:.3} | {} | {} | {} | {} | {} | {} |",
                op.threshold,
                pct(op.sensitivity),
                pct(op.specificity),
                pct(op.ppv),
                pct(op.npv),
                pct(op.ppv_at_prevalence),
                pct(op.npv_at_prevalence)
            );
        }
        let rec = &g.recommendations;
        let _ = writeln!(md, "\n| recommendation | PCNSL | GBM |\n|---|---|---|");
        for (label, row) in ["lymphoma likely → biopsy", "tumour board", "GBM likely → resection planning"].iter().zip(rec) {
            let _ = writeln!(md, "| {label} | {} | {} |", row[0], row[1]);
        }
        let _ = writeln!(md, "\n| member | AUC (DeLong 95 % CI) |\n|---|---|");
        for (m, a) in g.member_aucs.iter().enumerate() {
            let _ = writeln!(md, "| {m} | {} |", ci(a));
        }
        let _ = writeln!(md, "\n| subgroup | patients (PCNSL) | AUC (DeLong 95 % CI) |\n|---|---|---|");
        for s in &g.subgroups {
            let auc = s.auc.as_ref().map_or("n/a (one class)".to_string(), ci);
            let _ = writeln!(md, "| {} = {} | {} ({}) | {} |", s.attribute, s.value, s.patients, s.pcnsl, auc);
        }
        let _ = writeln!(md, "\n| ensemble size k | subsets | AUC mean ± SD | per-patient SD of P |\n|---|---|---|---|");
        for row in &g.ensemble_size {
            let _ = writeln!(md, "| {} | {} | {:.3} ± {:.3} | {:.4} |", row.k, row.subsets, row.auc_mean, row.auc_sd, row.prediction_sd);
        }
    }
    md
}
