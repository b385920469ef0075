//! What lesion finding hands on: each candidate with its measurements and verdict, and the
//! study's answer (a lesion in scope, or the reason it is out of scope).

use serde::{Deserialize, Serialize};

/// Why a candidate is not a lesion in scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rejection {
    TooSmall,
    Faint,
    ThinStructure,
    FlowVoid,
    Intraventricular,
    OutsideParenchyma,
    ExtraAxial,
    InsufficientCoverage,
}

impl Rejection {
    /// What a clinician reads in the case report.
    pub fn explanation(self) -> &'static str {
        match self {
            Rejection::TooSmall => "smaller than a mass this service advises on (under 1 mL)",
            Rejection::ThinStructure => "thin, tubular or sheet-like: a vessel, dural sinus, falx or dura",
            Rejection::Faint => "barely brighter than the brain around it: no real enhancement (coil shading, grey matter)",
            Rejection::FlowVoid => "dark on T2 like flowing blood or dura: a venous sinus, vessel or dural fold",
            Rejection::Intraventricular => "surrounded by CSF inside a ventricle: choroid plexus",
            Rejection::OutsideParenchyma => "not surrounded by brain tissue: skull base, orbit, scalp, marrow or pituitary region",
            Rejection::ExtraAxial => "rests broadly on the inner surface of the skull: extra-axial (dural-based, meningioma-like)",
            Rejection::InsufficientCoverage => "too little of it, or of the skull beside it, was imaged on T1c or T2",
        }
    }
}

/// One enhancing component and what was measured on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// 1 = the most enhancement (summed robust z), the one a naive finder would have taken.
    pub rank: usize,
    /// Enhancing voxels, mL.
    pub enhancing_ml: f64,
    /// Enhancing voxels with what they enclose (necrosis), mL.
    pub mass_ml: f64,
    /// Centre of the enhancing voxels, patient coordinates (LPS, mm).
    pub centre_lps: [f64; 3],
    pub mean_enhancement_z: f64,
    /// Twice the depth of its deepest point, mm.
    pub thickness_mm: f64,
    /// Its length along its longest axis (a rod of the same spread), mm.
    pub length_mm: f64,
    /// Share of its enhancing voxels darker than white matter on T2 (flow voids, dura).
    pub flow_void: f64,
    /// Its mean T1c z minus that of the brain around it.
    pub local_contrast: f64,
    /// Shares of its surroundings (a shell [`SHELL_VOXELS`] thick) that look like CSF, brain
    /// tissue, and vasogenic oedema (T2-bright brain: the T2 correlate).
    pub csf_around: f64,
    pub brain_around: f64,
    pub oedema_around: f64,
    /// Area it shares with the inner surface of the skull, over its equatorial cross-section.
    pub surface_contact: f64,
    /// Estimated share of the mass inside the imaged volume (T1c) and sampled by T2.
    pub t1c_coverage: f64,
    pub t2_coverage: f64,
    /// The field of view cuts the head within [`SKULL_UNSEEN_MM`] of it: the skull and dura
    /// beside it were not imaged, so whether it is intra- or extra-axial cannot be told.
    #[serde(default)]
    pub skull_unseen: bool,
    /// `None`: kept.
    pub rejection: Option<Rejection>,
}

/// Why a study is out of scope: the audited reason, one per study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScopeReason {
    /// No enhancing component worth a look.
    NoLesion,
    /// Every candidate is normal enhancing anatomy (vessels, sinuses, dura, choroid plexus, …).
    NormalAnatomyOnly,
    /// An enhancing mass outside the brain (dural-based, meningioma-like).
    ExtraAxialLesion,
    /// An enhancing lesion, but too small to advise on.
    LesionTooSmall,
    /// A lesion, but too little of it was imaged in both series.
    InsufficientCoverage,
}

impl ScopeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeReason::NoLesion => "no-lesion",
            ScopeReason::NormalAnatomyOnly => "normal-anatomy-only",
            ScopeReason::ExtraAxialLesion => "extra-axial-lesion",
            ScopeReason::LesionTooSmall => "lesion-too-small",
            ScopeReason::InsufficientCoverage => "insufficient-coverage",
        }
    }

    pub fn explanation(self) -> &'static str {
        match self {
            ScopeReason::NoLesion => "no enhancing intra-axial lesion was found",
            ScopeReason::NormalAnatomyOnly => "the only enhancement found is normal anatomy (vessels, venous sinuses, dura, choroid plexus, skull base)",
            ScopeReason::ExtraAxialLesion => "the enhancing mass is extra-axial (dural-based, meningioma-like), not a glioblastoma or CNS lymphoma question",
            ScopeReason::LesionTooSmall => "the enhancing lesion is smaller than 1 mL",
            ScopeReason::InsufficientCoverage => "too little of the lesion was imaged on both T1c and T2",
        }
    }
}

/// The candidates of a study and the gate's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeReport {
    pub version: String,
    /// `None`: in scope (the kept candidate is the lesion).
    pub out_of_scope: Option<ScopeReason>,
    pub candidates: Vec<Candidate>,
    /// Enhancing specks too small to list.
    pub specks: usize,
}

/// A lesion in scope: the only input to the crop and the classifier.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Enhancing voxels of the kept candidate on the working grid, `(c, b, a)`.
    pub voxels: Vec<(usize, usize, usize)>,
    pub candidate: Candidate,
    pub report: ScopeReport,
}
