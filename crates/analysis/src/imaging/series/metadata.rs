//! What recognition reads and what it answers: a series' header fields, its class, and the
//! verdict on every series of a study.

use serde::{Deserialize, Serialize};

/// The header fields of one series that recognition needs, read from the DICOM JSON metadata
/// of its instances (first instance, or the functional groups of an enhanced multi-frame one).
/// Every field but the UID may be missing: archives differ in what they keep.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesMetadata {
    pub series_uid: String,
    pub modality: Option<String>,
    pub description: Option<String>,
    pub series_number: Option<i64>,
    pub manufacturer: Option<String>,
    /// MagneticFieldStrength (0018,0087), tesla.
    pub magnetic_field_strength_t: Option<f64>,
    pub repetition_time_ms: Option<f64>,
    pub echo_time_ms: Option<f64>,
    pub inversion_time_ms: Option<f64>,
    /// ScanningSequence values (SE, IR, GR, EP, RM).
    pub scanning_sequence: Vec<String>,
    /// SequenceVariant values (SK, MTC, SS, TRSS, SP, MP, OSP, NONE).
    pub sequence_variant: Vec<String>,
    pub contrast_bolus_agent: Option<String>,
    pub image_type: Vec<String>,
    /// "2D" or "3D".
    pub mr_acquisition_type: Option<String>,
    pub image_orientation: Option<[f64; 6]>,
    /// Row spacing, column spacing (mm).
    pub pixel_spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    pub rows: Option<u32>,
    pub columns: Option<u32>,
    pub instance_count: usize,
    /// Slices: instances times frames (an enhanced multi-frame series is one instance).
    pub slice_count: usize,
    /// AcquisitionTime, else SeriesTime, as DICOM TM text (HHMMSS.FFFFFF).
    pub acquisition_time: Option<String>,
    pub series_time: Option<String>,
    pub frame_of_reference_uid: Option<String>,
}

/// What a series is, as far as the model is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeriesClass {
    T1PostContrast,
    T2,
    T1Pre,
    Flair,
    Dwi,
    Localizer,
    Derived,
    Other,
}

/// The judgement on one series, for the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesVerdict {
    pub series_uid: String,
    pub description: Option<String>,
    pub class: SeriesClass,
    pub chosen: bool,
    pub reason: String,
}

/// The series chosen for the model (if any) and the verdict on every series of the study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesSelection {
    pub t1c: Option<String>,
    pub t2: Option<String>,
    pub verdicts: Vec<SeriesVerdict>,
}

/// The anatomical plane of a series, from its slice normal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plane {
    Axial,
    Coronal,
    Sagittal,
    Oblique,
}

impl Plane {
    pub(crate) fn of(meta: &SeriesMetadata, min_cosine: f64) -> Option<Plane> {
        let o = meta.image_orientation?;
        let n = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
        let norm = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        if norm < 1e-6 {
            return None;
        }
        let c = [n[0].abs() / norm, n[1].abs() / norm, n[2].abs() / norm];
        Some(if c[2] >= min_cosine {
            Plane::Axial
        } else if c[1] >= min_cosine {
            Plane::Coronal
        } else if c[0] >= min_cosine {
            Plane::Sagittal
        } else {
            Plane::Oblique
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Coronal => "coronal",
            Plane::Sagittal => "sagittal",
            Plane::Oblique => "oblique",
        }
    }
}
