//! The scope gate, specified on generated studies with the full normal enhancing anatomy (falx,
//! dural venous sinuses, choroid plexus, Sylvian and cortical vessels, pituitary): a normal brain
//! or an extra-axial mass never yields a model input — so never an estimate, never a
//! recommendation — and an intra-axial tumour still does.
//!
//! The same holds on real brains: the MNI152 template (never used in training or tuning) inside
//! the generator's head, with the same enhancing anatomy.
//!
//! The large-sample figures (≥ 300 studies per kind) come from `neurocds-lab scope-check`
//! (BENCHMARKS.md, "Scope gate"); these tests hold the property on every run.

use neurocds_analysis::imaging::{
    lesion::{Rejection, ScopeReason},
    preprocess::{Recipe, prepare},
};
use neurocds_lab::cohort::{self, CohortSpec, Presentation};
use rayon::prelude::*;

const RECIPE: Recipe = Recipe { shape: [32, 32, 32], spacing_mm: 2.0 };

/// The scope gate's answer for the first `n` studies of `presentation` in a hospital mix.
fn gate(seed: u64, presentation: Presentation, n: usize) -> Vec<(String, Result<neurocds_analysis::imaging::lesion::Candidate, ScopeReason>)> {
    gate_on(CohortSpec::hospital_mix(seed, 100_000, 0.4, 0.3), presentation, n)
}

/// The same on the external-anatomy brain (MNI152; made by `scripts/bootstrap.sh`).
fn gate_on_mni152(seed: u64, presentation: Presentation, n: usize) -> Vec<(String, Result<neurocds_analysis::imaging::lesion::Candidate, ScopeReason>)> {
    let mut spec = CohortSpec::hospital_mix(seed, 100_000, 0.4, 0.3);
    spec.anatomies = cohort::template::parse_anatomies("mni152").expect("the MNI152 template map (scripts/bootstrap.sh makes it)");
    gate_on(spec, presentation, n)
}

fn gate_on(spec: CohortSpec, presentation: Presentation, n: usize) -> Vec<(String, Result<neurocds_analysis::imaging::lesion::Candidate, ScopeReason>)> {
    let indices: Vec<usize> = (0..).filter(|&i| cohort::generate_case_presentation(&spec, i) == presentation).take(n).collect();
    indices
        .into_par_iter()
        .map(|i| {
            let case = cohort::generate_case(&spec, i);
            let answer = match prepare(&case.t1c, &case.t2, &RECIPE) {
                Ok(p) => Ok(p.lesion),
                Err(a) => Err(a.scope.and_then(|s| s.out_of_scope).unwrap_or_else(|| panic!("{}: declined outside the scope gate: {}", case.patient_id, a.reason))),
            };
            (case.patient_id, answer)
        })
        .collect()
}

#[test]
fn a_normal_brain_with_enhancing_sinuses_falx_choroid_plexus_and_vessels_never_gets_a_model_input() {
    for (patient, answer) in gate(11, Presentation::NormalBrain, 24) {
        // The reason is audited and usually "normal anatomy only"; what must hold is that no
        // normal brain ever reaches the classifier.
        if let Ok(lesion) = answer {
            panic!("{patient}: a normal brain passed the scope gate with {lesion:?}");
        }
    }
}

#[test]
fn an_extra_axial_dural_based_mass_never_gets_a_model_input() {
    let answers = gate(12, Presentation::ExtraAxial, 16);
    for (patient, answer) in &answers {
        assert!(answer.is_err(), "{patient}: an extra-axial mass passed the scope gate with {answer:?}");
    }
    let named = answers.iter().filter(|(_, a)| *a == Err(ScopeReason::ExtraAxialLesion)).count();
    assert!(named * 2 >= answers.len(), "most are named extra-axial: {answers:?}");
}

#[test]
fn intra_axial_tumours_among_the_same_normal_anatomy_still_pass_the_gate() {
    let answers = gate(13, Presentation::Tumour, 24);
    let passed = answers.iter().filter(|(_, a)| a.is_ok()).count();
    let declined: Vec<_> = answers.iter().filter(|(_, a)| a.is_err()).collect();
    assert!(passed * 10 >= answers.len() * 8, "{passed} of {} tumours passed; declined: {declined:?}", answers.len());
}

#[test]
fn every_candidate_in_a_normal_brain_is_named_for_the_anatomy_it_is() {
    let spec = CohortSpec::hospital_mix(14, 100_000, 1.0, 0.0);
    let case = cohort::generate_case(&spec, 0);
    let abstention = prepare(&case.t1c, &case.t2, &RECIPE).err().expect("out of scope");
    let scope = abstention.scope.expect("the scope gate's report");
    assert!(scope.candidates.iter().all(|c| c.rejection.is_some()), "{:?}", scope.candidates);
    // The report ranks candidates as a naive finder would have (most enhancement first).
    assert!(scope.candidates.windows(2).all(|w| w[0].rank < w[1].rank));
    assert!(scope.candidates.iter().all(|c| c.rejection != Some(Rejection::ExtraAxial) || c.surface_contact > 0.0));
}

#[test]
fn a_normal_mni152_brain_with_the_full_enhancing_anatomy_never_gets_a_model_input() {
    for (patient, answer) in gate_on_mni152(21, Presentation::NormalBrain, 16) {
        if let Ok(lesion) = answer {
            panic!("{patient}: a normal MNI152 brain passed the scope gate with {lesion:?}");
        }
    }
}

#[test]
fn an_extra_axial_mass_on_an_mni152_brain_never_gets_a_model_input() {
    for (patient, answer) in gate_on_mni152(22, Presentation::ExtraAxial, 12) {
        assert!(answer.is_err(), "{patient}: an extra-axial mass passed the scope gate with {answer:?}");
    }
}

#[test]
fn intra_axial_tumours_in_an_mni152_brain_pass_the_gate() {
    let answers = gate_on_mni152(23, Presentation::Tumour, 16);
    let passed = answers.iter().filter(|(_, a)| a.is_ok()).count();
    assert!(passed * 10 >= answers.len() * 8, "{passed} of {} tumours passed: {answers:?}", answers.len());
}
