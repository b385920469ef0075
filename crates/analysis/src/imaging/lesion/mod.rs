//! Lesion finding and the scope gate: "is there an enhancing intra-axial mass that is plausibly
//! glioblastoma or CNS lymphoma?", asked before any classifier sees the study.
//!
//! Most brain MRIs sent to neurocds show no such mass. Gadolinium also brightens normal
//! structures — dural venous sinuses, the falx and dura, the choroid plexus, vessels, the
//! pituitary — and fat is bright on T1 with or without contrast. A finder that takes "the
//! brightest blob" for a tumour sends normal brains to biopsy. So every enhancing component is a
//! *candidate* with measured features, and each is kept or rejected for a named reason:
//!
//! | rejection | what it looks like | normal or out-of-scope structure |
//! |---|---|---|
//! | [`Rejection::TooSmall`] | filled volume under [`MIN_TUMOUR_ML`] | vessel cross-sections, noise, small metastases |
//! | [`Rejection::ThinStructure`] | no point deeper than [`MIN_THICKNESS_MM`] / 2 inside it, or longer than `judge::MAX_ELONGATION` × its thickness | vessels, sinuses, falx, tentorium, dura |
//! | [`Rejection::Faint`] | less than `judge::MIN_LOCAL_CONTRAST` brighter than the brain around it | coil shading over white matter |
//! | [`Rejection::FlowVoid`] | much of it darker than white matter on T2 | venous sinuses, arteries, veins, dura |
//! | [`Rejection::Intraventricular`] | its surroundings are mostly CSF | choroid plexus |
//! | [`Rejection::OutsideParenchyma`] | its surroundings are mostly not brain | skull base, orbits, scalp, marrow, sinuses, pituitary |
//! | [`Rejection::ExtraAxial`] | a broad face on the inner surface of the skull | meningioma-like dural-based mass, confluence of sinuses |
//! | [`Rejection::InsufficientCoverage`] | too little of it imaged on T1c or T2 | lesion cut by the field of view |
//!
//! The study is in scope only when at least one candidate is kept; the largest kept one (by
//! summed enhancement) becomes *the* lesion. Otherwise the whole study is out of scope for one
//! [`ScopeReason`], which the service records and shows instead of any recommendation: no code
//! path builds a model input without a kept candidate ([`Finding`] is the only way to one).
//!
//! All measurements are on the preprocessing working grid (isotropic, [`super::preprocess`]),
//! in robust z-scores of the brain's own T1c and T2 intensities, so they do not depend on a
//! vendor's intensity scale.
//!
//! The finder is in three parts: [`measure`] takes each enhancing component's measurements on the
//! images, [`judge`] applies the rules (the thresholds above, in order) and names the study's
//! reason, and `report` holds what both hand on (the candidates, the gate's answer).

use ndarray::Array3;

use super::morphology;

mod judge;
mod measure;
mod report;

pub use judge::{MIN_COVERAGE, MIN_THICKNESS_MM, MIN_TUMOUR_ML};
pub(crate) use measure::Scene;
pub use report::{Candidate, Finding, Rejection, ScopeReason, ScopeReport};

use measure::{ENHANCING_Z, FLOW_VOID_Z};

/// Names this lesion finder and its thresholds; recorded with every decision.
pub const LESION_FINDING_VERSION: &str = "neurocds-lesion/3";

/// Enhancing components smaller than this are noise; they are counted, not listed.
const MIN_CANDIDATE_ML: f64 = 0.25;
/// Candidates listed in a report (the most enhancing first).
const MAX_LISTED: usize = 8;

/// Finds the lesion, or says why the study is out of scope.
pub(crate) fn find(scene: &Scene) -> Result<Finding, ScopeReport> {
    let dims = scene.t1.dim();
    // Bright on T1c and not a flow void on T2: a venous sinus or artery that touches a tumour
    // must not merge with it into one component.
    let enhancing = Array3::from_shape_fn(dims, |ix| scene.brain[ix] && (scene.z1)(scene.t1[ix]) > ENHANCING_Z && (scene.z2)(scene.t2[ix]) >= FLOW_VOID_Z);
    let voxel_ml = scene.spacing_mm.powi(3) / 1000.0;
    let mut scored: Vec<(f64, Vec<(usize, usize, usize)>)> = morphology::components(&enhancing)
        .into_iter()
        .map(|v| (v.iter().map(|&ix| (scene.z1)(scene.t1[ix]) as f64).sum::<f64>(), v))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let specks = scored.iter().filter(|(_, v)| (v.len() as f64) * voxel_ml < MIN_CANDIDATE_ML).count();
    let mut candidates = Vec::new();
    let mut kept: Option<(Candidate, Vec<(usize, usize, usize)>)> = None;
    for (rank, (score, voxels)) in scored.into_iter().filter(|(_, v)| (v.len() as f64) * voxel_ml >= MIN_CANDIDATE_ML).enumerate() {
        let mut candidate = measure::measure(scene, rank + 1, score, &voxels);
        candidate.rejection = judge::judge(&candidate);
        if candidate.rejection.is_none() && kept.is_none() {
            kept = Some((candidate.clone(), voxels));
        }
        if candidates.len() < MAX_LISTED {
            candidates.push(candidate);
        }
    }
    match kept {
        Some((candidate, voxels)) => {
            if !candidates.iter().any(|c| c.rank == candidate.rank) {
                candidates.push(candidate.clone());
            }
            let report = ScopeReport { version: LESION_FINDING_VERSION.into(), out_of_scope: None, candidates, specks };
            Ok(Finding { voxels, candidate, report })
        }
        None => {
            let reason = judge::reason_for(&candidates);
            Err(ScopeReport { version: LESION_FINDING_VERSION.into(), out_of_scope: Some(reason), candidates, specks })
        }
    }
}

