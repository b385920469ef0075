//! Synthetic cohorts: DICOM studies of GBM-like and lymphoma-like lesions, for training, the demo
//! and the end-to-end tests.
//!
//! A case is generated from `(seed, index)` alone, so any case of any cohort can be rebuilt in
//! isolation (a training loader asks for case 1234 without generating 0..1233):
//!
//! ```text
//!  (seed, index) ─► demographics, site, date ─► scene (phantom head + lesions) ─► render T1c, T2
//!                                                        │
//!                                                        └─► on demand: T1 pre, FLAIR, localiser
//! ```
//!
//! The brain is a procedural phantom, not a real scan; the lesion models follow
//! `clinical-context.md` (see `ASSUMPTIONS.md` beside this file for every assumption and its
//! source). Nothing here knows about HTTP, databases or tensors.

mod anatomy;
pub mod cli;
mod demographics;
pub mod dicom;
mod error;
mod lesion;
mod render;
mod rng;
mod sites;
mod spec;
pub mod template;

use serde::Serialize;
use time::{Date, Month};

use neurocds_analysis::imaging::Volume;

pub use error::CohortError;
pub use render::LocaliserImage;
pub use spec::{CohortSpec, Diagnosis, Presentation, SeriesKind, Sex, Vendor};
pub use sites::{SITES, SiteProfile};
pub use template::{AnatomySource, TemplateBrain, TemplateName};

/// Ground truth about the lesions as rendered (voxel counts times voxel volume), for tests and
/// error analysis; a model never sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LesionTruth {
    pub lesion_count: usize,
    pub enhancing_ml: f64,
    pub necrotic_ml: f64,
    pub oedema_ml: f64,
    /// The imaging mimics the other diagnosis by construction.
    pub mimic: bool,
}

impl LesionTruth {
    /// Necrotic share of the tumour (enhancing + necrotic) volume.
    pub fn necrotic_fraction(&self) -> f64 {
        let tumour = self.enhancing_ml + self.necrotic_ml;
        if tumour > 0.0 { self.necrotic_ml / tumour } else { 0.0 }
    }
}

/// One synthetic patient: demographics, where and when the MR was taken, and the two series the
/// model reads (T1 post-contrast and T2), co-registered on one grid.
#[derive(Debug, Clone)]
pub struct SyntheticCase {
    pub index: usize,
    pub patient_id: String,
    pub label: Diagnosis,
    /// Tumour, normal brain or extra-axial mass; `label` is only meaningful for a tumour.
    pub presentation: Presentation,
    pub age: u32,
    pub sex: Sex,
    pub site: String,
    pub external: bool,
    pub vendor: Vendor,
    pub field_strength_t: f64,
    pub acquired_on: Date,
    /// Seconds after midnight at which the session (the localiser) started.
    pub session_start_s: u32,
    pub study_uid: String,
    pub frame_of_reference_uid: String,
    pub t1c: Volume,
    pub t2: Volume,
    /// Centre of the largest lesion in LPS millimetres.
    pub lesion_centre_lps: [f64; 3],
    /// "ring-necrotic", "solid" or "multifocal".
    pub phenotype: String,
    pub truth: LesionTruth,
    scene: render::Scene,
}

impl SyntheticCase {
    /// The acquisition protocol of this case's site.
    pub fn site_profile(&self) -> &'static SiteProfile {
        &SITES[self.scene.site_index]
    }

    /// Renders another series of the same session on the same grid (T1 pre-contrast, FLAIR, or
    /// again T1c/T2); deterministic, so calling it twice gives the same voxels.
    pub fn render_series(&self, kind: SeriesKind) -> Volume {
        let ([volume], _) = self.scene.render([kind]);
        volume
    }

    /// The three-plane localiser (axial, coronal, sagittal), as acquired before the other series.
    pub fn localiser(&self) -> Vec<LocaliserImage> {
        self.scene.localiser()
    }

    /// The deterministic SOP Instance UID of image `instance` (1-based) of a series.
    pub fn sop_instance_uid(&self, kind: SeriesKind, instance: u32) -> String {
        self.scene.instance_uid(kind, instance)
    }

    /// A date of birth consistent with `age` on `acquired_on`, the same on every run.
    pub fn birth_date(&self) -> Date {
        let year = self.acquired_on.year() - self.age as i32;
        let anniversary = self
            .acquired_on
            .replace_year(year)
            .or_else(|_| Date::from_calendar_date(year, Month::February, 28))
            .unwrap_or(self.acquired_on);
        // Born 1-364 days before the anniversary: the patient turned `age` during the past year.
        anniversary - time::Duration::days(1 + (self.scene.case_hash() % 364) as i64)
    }

    /// A stable accession number for the study.
    pub fn accession_number(&self) -> String {
        format!("SYN{:010}", self.scene.case_hash() % 10_000_000_000)
    }

    /// The deterministic UID of one of this study's series.
    pub fn series_uid(&self, kind: SeriesKind) -> String {
        self.scene.series_uid(kind)
    }
}

/// What case `index` of `spec` presents, without rendering it (cheap).
pub fn generate_case_presentation(spec: &CohortSpec, index: usize) -> Presentation {
    demographics::plan_case(spec, index).presentation
}

/// Generates case `index` of the cohort `spec`; the same `(spec, index)` always gives the same
/// case, whatever else was generated before.
pub fn generate_case(spec: &CohortSpec, index: usize) -> SyntheticCase {
    let plan = demographics::plan_case(spec, index);
    let scene = render::Scene::build(spec, index, &plan);
    let ([t1c, t2], tally) = scene.render([SeriesKind::T1PostContrast, SeriesKind::T2]);
    let truth = LesionTruth {
        lesion_count: scene.lesion_count(),
        enhancing_ml: tally.enhancing_ml,
        necrotic_ml: tally.necrotic_ml,
        oedema_ml: tally.oedema_ml,
        mimic: scene.mimic,
    };
    let site = &SITES[scene.site_index];
    SyntheticCase {
        index,
        patient_id: plan.patient_id.clone(),
        label: plan.label,
        presentation: plan.presentation,
        age: plan.age,
        sex: plan.sex,
        site: site.name.to_string(),
        external: site.external,
        vendor: site.vendor,
        field_strength_t: site.field_strength_t,
        acquired_on: plan.acquired_on,
        session_start_s: plan.session_start_s,
        study_uid: scene.study_uid(),
        frame_of_reference_uid: scene.frame_of_reference_uid(),
        t1c,
        t2,
        lesion_centre_lps: scene.main_lesion_centre(),
        phenotype: scene.phenotype().to_string(),
        truth,
        scene,
    }
}
