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
mod lesion;
mod render;
mod rng;
mod sites;
pub mod template;

use serde::Serialize;
use time::{Date, Month};

use neurocds_analysis::imaging::Volume;

pub use render::{LocaliserImage, SeriesKind};
pub use sites::{SITES, SiteProfile};
pub use template::{AnatomySource, TemplateBrain, TemplateName};

/// Errors of cohort generation and writing; each says which case, file or step failed.
#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    #[error("invalid cohort specification: {0}")]
    InvalidSpec(String),
    #[error("could not create directory {path}: {source}")]
    CreateDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("could not write {path}: {source}")]
    WriteFile { path: std::path::PathBuf, source: std::io::Error },
    #[error("could not build DICOM file meta for {path}: {message}")]
    DicomMeta { path: std::path::PathBuf, message: String },
    #[error("could not write DICOM file {path}: {message}")]
    DicomWrite { path: std::path::PathBuf, message: String },
    #[error("could not serialise the manifest: {0}")]
    Manifest(#[from] serde_json::Error),
}

/// What a cohort looks like: how many patients, how many lymphomas, how many outside scans.
/// Every case depends only on this and its index.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortSpec {
    pub seed: u64,
    pub patients: usize,
    /// Share of PCNSL cases (0.5 for balanced training; about 0.3 or less for a realistic mix).
    pub pcnsl_fraction: f64,
    /// Share of studies from outside institutions; "nearly half" in the reference study.
    pub external_fraction: f64,
    /// Share of cases whose imaging mimics the other diagnosis (solid GBM, necrotic deep
    /// lymphoma). This is what keeps the best achievable AUC below 1.
    pub mimic_fraction: f64,
    /// Acquisition dates are spread uniformly over this range (inclusive).
    pub acquired_from: Date,
    pub acquired_to: Date,
    /// Shares of studies that are out of scope, as most brain MRIs in a hospital are: a normal
    /// brain, or an extra-axial (dural-based, meningioma-like) enhancing mass. 0 in training
    /// cohorts; the scope gate's evaluation sets use them.
    pub normal_fraction: f64,
    pub extra_axial_fraction: f64,
    /// Draw the full normal enhancing anatomy (falx, transverse and straight sinuses, cortical
    /// and Sylvian vessels, pituitary, variable choroid plexus) besides the superior sagittal
    /// sinus and choroid plexus every case has.
    pub enhancing_anatomy: bool,
    /// Where the brains come from; each case draws one of these with equal chance (its own
    /// random stream, so a phantom-only cohort is unchanged). The phantom by default.
    pub anatomies: Vec<AnatomySource>,
}

impl CohortSpec {
    /// A balanced cohort with the defaults documented in `ASSUMPTIONS.md`.
    pub fn new(seed: u64, patients: usize) -> Self {
        Self {
            seed,
            patients,
            pcnsl_fraction: 0.5,
            external_fraction: 0.45,
            mimic_fraction: 0.08,
            // Both dates are valid calendar dates; the fallbacks cannot be reached.
            acquired_from: Date::from_calendar_date(2015, Month::January, 1).unwrap_or(Date::MIN),
            acquired_to: Date::from_calendar_date(2025, Month::December, 31).unwrap_or(Date::MAX),
            normal_fraction: 0.0,
            extra_axial_fraction: 0.0,
            enhancing_anatomy: false,
            anatomies: vec![AnatomySource::Phantom],
        }
    }

    /// What a hospital sends: `normal` normal brains and `extra_axial` dural-based masses per
    /// tumour case share, all with the full normal enhancing anatomy.
    pub fn hospital_mix(seed: u64, patients: usize, normal: f64, extra_axial: f64) -> Self {
        Self { normal_fraction: normal, extra_axial_fraction: extra_axial, enhancing_anatomy: true, ..Self::new(seed, patients) }
    }

    /// Rejects fractions outside [0, 1] and an empty date range.
    pub fn validate(&self) -> Result<(), CohortError> {
        for (name, value) in [
            ("pcnsl_fraction", self.pcnsl_fraction),
            ("external_fraction", self.external_fraction),
            ("mimic_fraction", self.mimic_fraction),
            ("normal_fraction", self.normal_fraction),
            ("extra_axial_fraction", self.extra_axial_fraction),
            ("normal_fraction + extra_axial_fraction", self.normal_fraction + self.extra_axial_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(CohortError::InvalidSpec(format!("{name} = {value} is not in [0, 1]")));
            }
        }
        if self.anatomies.is_empty() {
            return Err(CohortError::InvalidSpec("no anatomy to draw brains from".into()));
        }
        if self.acquired_to < self.acquired_from {
            return Err(CohortError::InvalidSpec(format!(
                "acquisition range ends ({}) before it starts ({})",
                self.acquired_to, self.acquired_from
            )));
        }
        Ok(())
    }
}

/// The histological diagnosis (the label the model learns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Diagnosis {
    /// Glioblastoma, IDH-wildtype.
    Gbm,
    /// CNS diffuse large B-cell lymphoma.
    Pcnsl,
}

impl Diagnosis {
    pub fn as_str(self) -> &'static str {
        match self {
            Diagnosis::Gbm => "gbm",
            Diagnosis::Pcnsl => "pcnsl",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Sex {
    #[serde(rename = "M")]
    Male,
    #[serde(rename = "F")]
    Female,
}

impl Sex {
    /// The DICOM PatientSex code.
    pub fn dicom_code(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Siemens,
    Ge,
    Philips,
}

impl Vendor {
    /// The DICOM Manufacturer string as these vendors write it.
    pub fn manufacturer(self) -> &'static str {
        match self {
            Vendor::Siemens => "SIEMENS",
            Vendor::Ge => "GE MEDICAL SYSTEMS",
            Vendor::Philips => "Philips Medical Systems",
        }
    }
}

/// What a study shows. Only tumours carry a meaningful [`Diagnosis`]; the others are the
/// out-of-scope studies on which no recommendation may ever be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Presentation {
    /// An enhancing intra-axial tumour (GBM-like or lymphoma-like).
    Tumour,
    /// No lesion: only normal anatomy, some of which enhances.
    NormalBrain,
    /// A dural-based enhancing mass outside the brain (meningioma-like).
    ExtraAxial,
}

impl Presentation {
    pub fn as_str(self) -> &'static str {
        match self {
            Presentation::Tumour => "tumour",
            Presentation::NormalBrain => "normal-brain",
            Presentation::ExtraAxial => "extra-axial",
        }
    }
}

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
