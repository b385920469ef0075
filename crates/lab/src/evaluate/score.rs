//! Scoring: the members run on every study, then discrimination, calibration, operating points,
//! subgroups and ensemble size per held-out group.

use std::{collections::BTreeMap, path::Path};

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use tch::{CModule, Device, Kind, Tensor};

use neurocds_analysis::inference::{
    engine::{out_of_distribution, summarise},
    manifest::Manifest,
};

use super::{
    error::EvaluateError,
    report::{AbstainedStudy, ChosenMember, EnsembleSizeRow, EvaluationReport, GroupReport, Prediction, ReportSettings, Subgroup, WithoutMimics},
    study::LabelledStudy,
};
use crate::{
    dataset::{Case, CaseInput, Split, SplitPlan},
    metrics::{self, Interval},
};

/// Loads every member (hash-checked) on the CPU in evaluation mode.
pub fn load_members(manifest: &Manifest, dir: &Path) -> Result<Vec<CModule>, EvaluateError> {
    manifest
        .verified_member_paths(dir)?
        .into_iter()
        .map(|file| {
            let mut m = CModule::load_on_device(&file, Device::Cpu).map_err(|source| EvaluateError::Load { file, source })?;
            m.set_eval();
            Ok(m)
        })
        .collect()
}

/// P(PCNSL) of every member on every input: `[member][case]`. Batches of 32, no gradients.
pub fn member_probabilities(members: &[CModule], inputs: &[&[f32]], shape: [usize; 3]) -> Result<Vec<Vec<f64>>, EvaluateError> {
    let _guard = tch::no_grad_guard();
    let [d, h, w] = shape.map(|x| x as i64);
    let mut out = vec![Vec::with_capacity(inputs.len()); members.len()];
    for chunk in inputs.chunks(32) {
        let flat: Vec<f32> = chunk.iter().flat_map(|x| x.iter().copied()).collect();
        let batch = Tensor::from_slice(&flat).view([chunk.len() as i64, 2, d, h, w]);
        for (mi, m) in members.iter().enumerate() {
            let forward = |source| EvaluateError::Forward { member: mi, source };
            let logits = m.forward_ts(&[&batch]).map_err(forward)?;
            let p = logits.f_softmax(-1, Kind::Float).and_then(|p| p.f_select(1, 1)).map_err(forward)?;
            let p = Vec::<f32>::try_from(&p).map_err(forward)?;
            out[mi].extend(p.into_iter().map(f64::from));
        }
    }
    Ok(out)
}

/// Runs the ensemble on every prepared case and reports the held-out groups.
pub fn evaluate_cases(
    manifest: &Manifest,
    members: &[CModule],
    cases: &[Case],
    plan: Option<SplitPlan>,
    settings: &ReportSettings,
    cohort: String,
) -> Result<EvaluationReport, EvaluateError> {
    let split_of = |c: &Case| match plan {
        Some(p) => p.split(c),
        None if c.external => Split::External,
        None => Split::Prospective,
    };
    let studies: Vec<LabelledStudy> = cases.iter().map(|c| LabelledStudy::from_case(c, split_of(c))).collect();
    evaluate_studies(manifest, members, &studies, settings, cohort)
}

/// Runs the ensemble on every prepared study outside the development split and reports the
/// held-out groups.
pub fn evaluate_studies(manifest: &Manifest, members: &[CModule], studies: &[LabelledStudy], settings: &ReportSettings, cohort: String) -> Result<EvaluationReport, EvaluateError> {
    let mut preprocessing_abstentions: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut abstained_studies = Vec::new();
    let mut development_skipped = 0;
    let mut ready: Vec<(&LabelledStudy, &CaseInput)> = Vec::new();
    for st in studies {
        if st.split == Split::Development {
            development_skipped += 1;
            continue;
        }
        match &st.input {
            Ok(input) => ready.push((st, input.as_ref())),
            Err((reason, detail)) => {
                *preprocessing_abstentions.entry(st.split.as_str().into()).or_default().entry(reason.clone()).or_default() += 1;
                abstained_studies.push(AbstainedStudy { patient_id: st.patient_id.clone(), split: st.split, reason: reason.clone(), detail: detail.clone() });
            }
        }
    }
    if ready.is_empty() {
        return Err(EvaluateError::Empty(format!("every held-out case was declined: {}", serde_json::to_string(&preprocessing_abstentions).unwrap_or_default())));
    }
    let inputs: Vec<&[f32]> = ready.iter().map(|(_, i)| i.data.as_slice()).collect();
    let per_member = member_probabilities(members, &inputs, manifest.input.shape)?;
    let predictions: Vec<Prediction> = ready
        .iter()
        .enumerate()
        .map(|(n, (st, input))| {
            let probs: Vec<f64> = per_member.iter().map(|m| m[n]).collect();
            let engine_input = neurocds_analysis::inference::ModelInput { data: Vec::new(), lesion_volume_ml: input.lesion_volume_ml, t1c_lesion_mean: input.t1c_lesion_mean };
            let out = summarise(probs, manifest, manifest.max_member_spread, out_of_distribution(manifest, &engine_input));
            Prediction {
                patient_id: st.patient_id.clone(),
                split: st.split,
                pcnsl: st.pcnsl,
                members: out.member_probabilities,
                mean: out.mean_probability,
                calibrated: out.calibrated_probability,
                spread: out.spread,
                abstain_reason: out.abstain_reason,
                mimic: st.mimic,
            }
        })
        .collect();
    let validation_chosen = validation_chosen_member(&predictions).or(settings.validation_chosen_member);
    let mut groups = Vec::new();
    for (name, wanted) in [
        ("external", &[Split::External][..]),
        ("prospective", &[Split::Prospective][..]),
        ("validation", &[Split::Validation][..]),
        ("all_held_out", &[Split::Validation, Split::Prospective, Split::External][..]),
    ] {
        let (subset, group_studies): (Vec<&Prediction>, Vec<&LabelledStudy>) =
            predictions.iter().zip(&ready).filter(|(p, _)| wanted.contains(&p.split)).map(|(p, (st, _))| (p, *st)).unzip();
        let pcnsl = subset.iter().filter(|p| p.pcnsl).count();
        if pcnsl == 0 || pcnsl == subset.len() {
            continue;
        }
        let chosen = validation_chosen.filter(|_| !wanted.contains(&Split::Validation));
        groups.push(group_report(name, &subset, &group_studies, manifest, settings, chosen));
    }
    Ok(EvaluationReport {
        model: manifest.name.clone(),
        version: manifest.version.clone(),
        ensemble_sha256: manifest.ensemble_hash(),
        cohort,
        command: None,
        prevalence: settings.prevalence,
        bootstrap_resamples: settings.bootstrap_resamples,
        preprocessing_abstentions,
        abstained_studies,
        development_skipped,
        groups,
        predictions,
    })
}

/// The member with the highest AUC on the validation split, if the cohort has one with both
/// classes.
fn validation_chosen_member(predictions: &[Prediction]) -> Option<usize> {
    let validation: Vec<&Prediction> = predictions.iter().filter(|p| p.split == Split::Validation).collect();
    let labels: Vec<bool> = validation.iter().map(|p| p.pcnsl).collect();
    if !labels.contains(&true) || !labels.contains(&false) {
        return None;
    }
    let aucs = member_columns(&validation).iter().map(|s| metrics::auc(s, &labels)).collect::<Vec<_>>();
    best_of(&aucs)
}

/// Each member's probabilities as one column over `preds`.
fn member_columns(preds: &[&Prediction]) -> Vec<Vec<f64>> {
    let n_members = preds.first().map_or(0, |p| p.members.len());
    (0..n_members).map(|m| preds.iter().map(|p| p.members[m]).collect()).collect()
}

/// Index of the highest AUC (the first of equals).
pub(crate) fn best_of(aucs: &[f64]) -> Option<usize> {
    (0..aucs.len()).rev().max_by(|&a, &b| aucs[a].total_cmp(&aucs[b]))
}

/// The ensemble (`ensemble` scores) against member `member`.
fn against_member(ensemble: &[f64], member_scores: &[Vec<f64>], member_aucs: &[f64], member: usize, labels: &[bool]) -> Option<ChosenMember> {
    let scores = member_scores.get(member)?;
    Some(ChosenMember { member, member_auc: member_aucs[member], ensemble_vs_member: metrics::delong_paired(ensemble, scores, labels) })
}

/// Ensemble against its best member on the group's non-mimic cases; `None` unless every case
/// carries the generator's mimic flag and both classes remain.
fn without_mimics(preds: &[&Prediction]) -> Option<WithoutMimics> {
    let flags: Option<Vec<bool>> = preds.iter().map(|p| p.mimic).collect();
    let flags = flags?;
    let kept: Vec<&Prediction> = preds.iter().zip(&flags).filter(|(_, m)| !**m).map(|(p, _)| *p).collect();
    let labels: Vec<bool> = kept.iter().map(|p| p.pcnsl).collect();
    let pcnsl = labels.iter().filter(|l| **l).count();
    if pcnsl == 0 || pcnsl == labels.len() {
        return None;
    }
    let ensemble: Vec<f64> = kept.iter().map(|p| p.calibrated).collect();
    let member_scores = member_columns(&kept);
    let member_aucs: Vec<f64> = member_scores.iter().map(|s| metrics::auc(s, &labels)).collect();
    let best = against_member(&ensemble, &member_scores, &member_aucs, best_of(&member_aucs)?, &labels)?;
    Some(WithoutMimics {
        patients: kept.len(),
        pcnsl,
        mimics: preds.len() - kept.len(),
        auc: metrics::delong_interval(&ensemble, &labels),
        member_aucs,
        best_member: best,
    })
}

fn group_report(name: &str, preds: &[&Prediction], studies: &[&LabelledStudy], manifest: &Manifest, settings: &ReportSettings, validation_chosen: Option<usize>) -> GroupReport {
    let labels: Vec<bool> = preds.iter().map(|p| p.pcnsl).collect();
    let calibrated: Vec<f64> = preds.iter().map(|p| p.calibrated).collect();
    let member_scores = member_columns(preds);
    let member_aucs: Vec<Interval> = member_scores.iter().map(|s| metrics::delong_interval(s, &labels)).collect();
    let estimates: Vec<f64> = member_aucs.iter().map(|a| a.estimate).collect();
    let best_member = best_of(&estimates).unwrap_or(0);
    let ensemble_vs_best_member = match member_scores.get(best_member) {
        Some(best) => metrics::delong_paired(&calibrated, best, &labels),
        None => metrics::delong_paired(&calibrated, &calibrated, &labels),
    };
    let validation_chosen_member = validation_chosen.and_then(|m| against_member(&calibrated, &member_scores, &estimates, m, &labels));
    let t = manifest.thresholds;
    let mut recommendations = [[0usize; 2]; 3];
    for p in preds {
        let row = if p.calibrated >= t.lymphoma_likely {
            0
        } else if p.calibrated < t.gbm_likely {
            2
        } else {
            1
        };
        recommendations[row][if p.pcnsl { 0 } else { 1 }] += 1;
    }
    GroupReport {
        name: name.to_string(),
        patients: preds.len(),
        pcnsl: labels.iter().filter(|l| **l).count(),
        engine_abstentions: preds.iter().filter(|p| p.abstain_reason.is_some()).count(),
        auc_bootstrap: metrics::bootstrap_auc(&calibrated, &labels, settings.bootstrap_resamples, settings.seed),
        auc_delong: metrics::delong_interval(&calibrated, &labels),
        member_aucs,
        best_member,
        ensemble_vs_best_member,
        validation_chosen_member,
        without_mimics: without_mimics(preds),
        lymphoma_likely: metrics::operating_point(&calibrated, &labels, t.lymphoma_likely, settings.prevalence),
        not_gbm_likely: metrics::operating_point(&calibrated, &labels, t.gbm_likely, settings.prevalence),
        recommendations,
        calibration: metrics::calibration(&calibrated, &labels, 10),
        subgroups: subgroups(preds, studies),
        ensemble_size: ensemble_size(&member_scores, &labels, settings.seed),
    }
}

/// AUC per value of every attribute the studies carry (in the order they first appear); a study
/// without an attribute is left out of that attribute's rows.
fn subgroups(preds: &[&Prediction], studies: &[&LabelledStudy]) -> Vec<Subgroup> {
    let mut attributes: Vec<&'static str> = Vec::new();
    for st in studies {
        for (a, _) in &st.attributes {
            if !attributes.contains(a) {
                attributes.push(a);
            }
        }
    }
    let mut out = Vec::new();
    for attribute in attributes {
        let mut by_value: BTreeMap<&str, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
        for (p, st) in preds.iter().zip(studies) {
            if let Some((_, value)) = st.attributes.iter().find(|(a, _)| *a == attribute) {
                let e = by_value.entry(value.as_str()).or_default();
                e.0.push(p.calibrated);
                e.1.push(p.pcnsl);
            }
        }
        for (value, (scores, labels)) in by_value {
            let pcnsl = labels.iter().filter(|l| **l).count();
            let auc = (pcnsl > 0 && pcnsl < labels.len()).then(|| metrics::delong_interval(&scores, &labels));
            out.push(Subgroup { attribute: attribute.into(), value: value.into(), patients: labels.len(), pcnsl, auc });
        }
    }
    out
}

/// Up to this many random member subsets per ensemble size.
const SUBSETS_PER_SIZE: usize = 30;

fn ensemble_size(member_scores: &[Vec<f64>], labels: &[bool], seed: u64) -> Vec<EnsembleSizeRow> {
    let n = member_scores.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for k in 1..=n {
        let mut subsets: Vec<Vec<usize>> = Vec::new();
        for _ in 0..SUBSETS_PER_SIZE * 4 {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut rng);
            let mut s = idx[..k].to_vec();
            s.sort_unstable();
            if !subsets.contains(&s) {
                subsets.push(s);
            }
            if subsets.len() == SUBSETS_PER_SIZE {
                break;
            }
        }
        let means: Vec<Vec<f64>> = subsets
            .iter()
            .map(|s| (0..labels.len()).map(|i| s.iter().map(|&m| member_scores[m][i]).sum::<f64>() / k as f64).collect())
            .collect();
        let aucs: Vec<f64> = means.iter().map(|m| metrics::auc(m, labels)).collect();
        let (auc_mean, auc_sd) = mean_sd(&aucs);
        let prediction_sd = (0..labels.len()).map(|i| mean_sd(&means.iter().map(|m| m[i]).collect::<Vec<_>>()).1).sum::<f64>() / labels.len().max(1) as f64;
        rows.push(EnsembleSizeRow { k, subsets: subsets.len(), auc_mean, auc_sd, prediction_sd });
    }
    rows
}

fn mean_sd(x: &[f64]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = if x.len() > 1 { x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(split: Split, pcnsl: bool, members: &[f64], mimic: Option<bool>) -> Prediction {
        let mean = members.iter().sum::<f64>() / members.len() as f64;
        Prediction {
            patient_id: String::new(),
            split,
            pcnsl,
            members: members.to_vec(),
            mean,
            calibrated: mean,
            spread: 0.0,
            abstain_reason: None,
            mimic,
        }
    }

    #[test]
    fn the_best_member_is_the_first_of_equal_aucs_and_there_is_none_without_members() {
        assert_eq!(best_of(&[0.8, 0.9, 0.9, 0.7]), Some(1));
        assert_eq!(best_of(&[]), None);
    }

    #[test]
    fn the_member_chosen_on_validation_is_chosen_on_validation_patients_alone() {
        // Member 0 ranks the validation patients perfectly and member 1 reverses them; on the
        // external patients it is the other way round.
        let predictions = vec![
            prediction(Split::Validation, true, &[0.9, 0.1], None),
            prediction(Split::Validation, false, &[0.1, 0.9], None),
            prediction(Split::External, true, &[0.1, 0.9], None),
            prediction(Split::External, false, &[0.9, 0.1], None),
        ];
        assert_eq!(validation_chosen_member(&predictions), Some(0));
        let external: Vec<&Prediction> = predictions.iter().filter(|p| p.split == Split::External).collect();
        let labels: Vec<bool> = external.iter().map(|p| p.pcnsl).collect();
        let aucs: Vec<f64> = member_columns(&external).iter().map(|s| metrics::auc(s, &labels)).collect();
        assert_eq!(best_of(&aucs), Some(1), "after the fact, the external patients favour member 1");
    }

    #[test]
    fn there_is_no_member_chosen_on_validation_without_both_classes_there() {
        let predictions = vec![prediction(Split::Validation, true, &[0.9, 0.1], None), prediction(Split::External, false, &[0.1, 0.9], None)];
        assert_eq!(validation_chosen_member(&predictions), None);
    }

    #[test]
    fn without_mimics_leaves_out_exactly_the_mimics_and_compares_the_ensemble_with_its_best_member_there() {
        let preds = vec![
            prediction(Split::External, true, &[0.9, 0.8], Some(false)),
            prediction(Split::External, true, &[0.7, 0.6], Some(false)),
            prediction(Split::External, false, &[0.2, 0.65], Some(false)),
            prediction(Split::External, false, &[0.1, 0.1], Some(false)),
            // A GBM that looks like a lymphoma: every member calls it PCNSL.
            prediction(Split::External, false, &[0.95, 0.95], Some(true)),
        ];
        let refs: Vec<&Prediction> = preds.iter().collect();
        let w = without_mimics(&refs).expect("every case carries the flag and both classes remain");
        assert_eq!((w.patients, w.pcnsl, w.mimics), (4, 2, 1));
        assert_eq!(w.member_aucs, vec![1.0, 0.75]);
        assert_eq!(w.best_member.member, 0);
        assert_eq!(w.auc.estimate, 1.0);
        assert_eq!(w.best_member.ensemble_vs_member.difference, 0.0);
    }

    #[test]
    fn without_mimics_is_absent_when_any_case_lacks_the_generator_flag() {
        let preds = [prediction(Split::External, true, &[0.9], Some(false)), prediction(Split::External, false, &[0.1], None)];
        let refs: Vec<&Prediction> = preds.iter().collect();
        assert!(without_mimics(&refs).is_none());
    }
}
