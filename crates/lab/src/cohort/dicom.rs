//! Writes a synthetic case as a DICOM MR study: one Part-10 file per image, Explicit VR Little
//! Endian, MR Image Storage, 16-bit unsigned pixels with RescaleSlope/Intercept.
//!
//! The session holds five series in acquisition order — localiser, T1 pre-contrast, T2, FLAIR,
//! T1 post-contrast — with vendor-style SeriesDescriptions and the header values a series
//! recogniser reads (TR, TE, TI, ScanningSequence, SequenceVariant, ContrastBolusAgent, ...).
//! The axial series share one FrameOfReferenceUID and one grid, so ImagePositionPatient of slice
//! `k` is exactly `Volume::affine · [0, 0, k, 1]`.
//!
//! Layout: `dir/<PatientID>/<SeriesNumber>_<kind>/<InstanceNumber>.dcm`.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use time::Date;

use super::render::LocaliserImage;
use super::spec::SeriesKind;
use super::{CohortError, SyntheticCase, Vendor};
use neurocds_analysis::imaging::Volume;

/// What `write_study` wrote.
#[derive(Debug, Clone)]
pub struct StudyFiles {
    pub study_dir: PathBuf,
    pub study_uid: String,
    pub series: Vec<SeriesFiles>,
}

/// One written series.
#[derive(Debug, Clone)]
pub struct SeriesFiles {
    pub kind: SeriesKind,
    pub series_uid: String,
    pub series_number: u32,
    pub description: String,
    pub files: Vec<PathBuf>,
}

impl StudyFiles {
    pub fn series(&self, kind: SeriesKind) -> Option<&SeriesFiles> {
        self.series.iter().find(|s| s.kind == kind)
    }

    pub fn file_count(&self) -> usize {
        self.series.iter().map(|s| s.files.len()).sum()
    }
}

/// SeriesNumber as the vendor numbers them: Philips counts in hundreds (101, 201, ...).
pub fn series_number(vendor: Vendor, kind: SeriesKind) -> u32 {
    match vendor {
        Vendor::Philips => kind.order() * 100 + 1,
        Vendor::Siemens | Vendor::Ge => kind.order(),
    }
}

/// Writes the whole session of `case` under `dir/<PatientID>/`; the distractor series (T1 pre,
/// FLAIR, localiser) are rendered here.
pub fn write_study(case: &SyntheticCase, dir: &Path) -> Result<StudyFiles, CohortError> {
    let study_dir = dir.join(&case.patient_id);
    let t1_pre = case.render_series(SeriesKind::T1Pre);
    let flair = case.render_series(SeriesKind::Flair);
    let localiser = case.localiser();
    let mut series = Vec::with_capacity(5);
    series.push(write_localiser(case, &study_dir, &localiser)?);
    for (kind, volume) in [
        (SeriesKind::T1Pre, &t1_pre),
        (SeriesKind::T2, &case.t2),
        (SeriesKind::Flair, &flair),
        (SeriesKind::T1PostContrast, &case.t1c),
    ] {
        series.push(write_axial_series(case, &study_dir, kind, volume)?);
    }
    Ok(StudyFiles { study_dir, study_uid: case.study_uid.clone(), series })
}

fn series_dir(study_dir: &Path, case: &SyntheticCase, kind: SeriesKind) -> Result<PathBuf, CohortError> {
    let path = study_dir.join(format!("{:03}_{}", series_number(case.vendor, kind), kind.slug()));
    std::fs::create_dir_all(&path).map_err(|source| CohortError::CreateDir { path: path.clone(), source })?;
    Ok(path)
}

fn write_axial_series(case: &SyntheticCase, study_dir: &Path, kind: SeriesKind, volume: &Volume) -> Result<SeriesFiles, CohortError> {
    let dir = series_dir(study_dir, case, kind)?;
    let site = case.site_profile();
    let slope = site.rescale_slope;
    let shape = volume.data.shape();
    let (slices, rows, cols) = (shape[0], shape[1], shape[2]);
    let (centre, width) = window(volume.data.iter().copied());
    let a = volume.affine;
    let mut files = Vec::with_capacity(slices);
    for k in 0..slices {
        let instance = k as u32 + 1;
        let mut ds = common_header(case, kind, instance);
        let position = [0, 1, 2].map(|r| a[r][2] * k as f64 + a[r][3]);
        let row_dir = unit([a[0][0], a[1][0], a[2][0]]);
        let col_dir = unit([a[0][1], a[1][1], a[2][1]]);
        ds.ds(tags::IMAGE_POSITION_PATIENT, &position);
        ds.ds(tags::IMAGE_ORIENTATION_PATIENT, &[row_dir[0], row_dir[1], row_dir[2], col_dir[0], col_dir[1], col_dir[2]]);
        ds.ds(tags::SLICE_LOCATION, &[position[2]]);
        ds.ds(tags::PIXEL_SPACING, &[volume.spacing[1], volume.spacing[0]]);
        ds.ds(tags::SLICE_THICKNESS, &[site.slice_thickness_mm]);
        ds.ds(tags::SPACING_BETWEEN_SLICES, &[volume.spacing[2]]);
        let pixels = volume.data.index_axis(ndarray::Axis(0), k);
        ds.pixels(rows, cols, pixels.iter().copied(), slope, centre, width);
        let path = dir.join(format!("{instance:04}.dcm"));
        ds.write(&path)?;
        files.push(path);
    }
    Ok(SeriesFiles {
        kind,
        series_uid: volume.series_uid.clone(),
        series_number: series_number(case.vendor, kind),
        description: site.protocol(kind).description.to_string(),
        files,
    })
}

fn write_localiser(case: &SyntheticCase, study_dir: &Path, images: &[LocaliserImage]) -> Result<SeriesFiles, CohortError> {
    let kind = SeriesKind::Localiser;
    let dir = series_dir(study_dir, case, kind)?;
    let site = case.site_profile();
    let mut files = Vec::with_capacity(images.len());
    for (n, image) in images.iter().enumerate() {
        let instance = n as u32 + 1;
        let mut ds = common_header(case, kind, instance);
        ds.ds(tags::IMAGE_POSITION_PATIENT, &image.position);
        ds.ds(tags::IMAGE_ORIENTATION_PATIENT, &image.orientation);
        ds.ds(tags::PIXEL_SPACING, &[image.pixel_spacing_mm, image.pixel_spacing_mm]);
        ds.ds(tags::SLICE_THICKNESS, &[8.0]);
        let (centre, width) = window(image.data.iter().copied());
        let (rows, cols) = image.data.dim();
        ds.pixels(rows, cols, image.data.iter().copied(), site.rescale_slope, centre, width);
        let path = dir.join(format!("{instance:04}.dcm"));
        ds.write(&path)?;
        files.push(path);
    }
    Ok(SeriesFiles {
        kind,
        series_uid: case.series_uid(kind),
        series_number: series_number(case.vendor, kind),
        description: site.localiser.description.to_string(),
        files,
    })
}

/// Patient, study, series, equipment and MR acquisition attributes shared by every image of a
/// series.
fn common_header(case: &SyntheticCase, kind: SeriesKind, instance: u32) -> Dataset {
    let site = case.site_profile();
    let protocol = site.protocol(kind);
    let mut ds = Dataset::new();
    let sop_uid = case.sop_instance_uid(kind, instance);
    let study_time = case.session_start_s;
    let series_time = study_time + kind.start_offset_s();

    ds.str(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    ds.str(tags::IMAGE_TYPE, VR::CS, image_type(case.vendor, kind));
    ds.str(tags::SOP_CLASS_UID, VR::UI, uids::MR_IMAGE_STORAGE);
    ds.str(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid);
    ds.str(tags::STUDY_DATE, VR::DA, &da(case.acquired_on));
    ds.str(tags::SERIES_DATE, VR::DA, &da(case.acquired_on));
    ds.str(tags::ACQUISITION_DATE, VR::DA, &da(case.acquired_on));
    ds.str(tags::CONTENT_DATE, VR::DA, &da(case.acquired_on));
    ds.str(tags::STUDY_TIME, VR::TM, &tm(study_time));
    ds.str(tags::SERIES_TIME, VR::TM, &tm(series_time));
    ds.str(tags::ACQUISITION_TIME, VR::TM, &tm(series_time));
    ds.str(tags::CONTENT_TIME, VR::TM, &tm(series_time + 20));
    ds.str(tags::ACCESSION_NUMBER, VR::SH, &case.accession_number());
    ds.str(tags::MODALITY, VR::CS, "MR");
    ds.str(tags::MANUFACTURER, VR::LO, case.vendor.manufacturer());
    ds.str(tags::INSTITUTION_NAME, VR::LO, &case.site);
    ds.str(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    ds.str(tags::STUDY_DESCRIPTION, VR::LO, "MRI BRAIN W WO CONTRAST");
    ds.str(tags::SERIES_DESCRIPTION, VR::LO, protocol.description);
    ds.str(tags::MANUFACTURER_MODEL_NAME, VR::LO, site.model);
    ds.str(tags::PATIENT_NAME, VR::PN, &format!("SYNTHETIC^CASE{:05}", case.index));
    ds.str(tags::PATIENT_ID, VR::LO, &case.patient_id);
    ds.str(tags::PATIENT_BIRTH_DATE, VR::DA, &da(case.birth_date()));
    ds.str(tags::PATIENT_SEX, VR::CS, case.sex.dicom_code());
    ds.str(tags::PATIENT_AGE, VR::AS, &format!("{:03}Y", case.age.min(999)));
    ds.str(tags::BODY_PART_EXAMINED, VR::CS, "BRAIN");

    if kind == SeriesKind::T1PostContrast {
        let agent = match case.vendor {
            Vendor::Siemens => "Gadovist",
            Vendor::Ge => "GADAVIST 7.5ML",
            Vendor::Philips => "Gd",
        };
        ds.str(tags::CONTRAST_BOLUS_AGENT, VR::LO, agent);
        ds.str(tags::CONTRAST_BOLUS_ROUTE, VR::LO, "IV");
        ds.str(tags::CONTRAST_BOLUS_INGREDIENT, VR::CS, "GADOLINIUM");
        ds.ds(tags::CONTRAST_BOLUS_VOLUME, &[7.5]);
    }
    ds.str(tags::SCANNING_SEQUENCE, VR::CS, protocol.scanning_sequence);
    ds.str(tags::SEQUENCE_VARIANT, VR::CS, protocol.sequence_variant);
    ds.str(tags::MR_ACQUISITION_TYPE, VR::CS, protocol.acquisition_type);
    ds.ds(tags::REPETITION_TIME, &[protocol.repetition_time_ms]);
    ds.ds(tags::ECHO_TIME, &[protocol.echo_time_ms]);
    if let Some(ti) = protocol.inversion_time_ms {
        ds.ds(tags::INVERSION_TIME, &[ti]);
    }
    ds.ds(tags::IMAGING_FREQUENCY, &[42.577_478 * case.field_strength_t]);
    ds.ds(tags::MAGNETIC_FIELD_STRENGTH, &[case.field_strength_t]);
    ds.is(tags::ECHO_TRAIN_LENGTH, protocol.echo_train_length as i64);
    ds.ds(tags::FLIP_ANGLE, &[protocol.flip_angle_deg]);
    ds.str(tags::PATIENT_POSITION, VR::CS, "HFS");

    ds.str(tags::STUDY_INSTANCE_UID, VR::UI, &case.study_uid);
    ds.str(tags::SERIES_INSTANCE_UID, VR::UI, &case.series_uid(kind));
    ds.str(tags::STUDY_ID, VR::SH, "1");
    ds.is(tags::SERIES_NUMBER, series_number(case.vendor, kind) as i64);
    ds.is(tags::ACQUISITION_NUMBER, 1);
    ds.is(tags::INSTANCE_NUMBER, instance as i64);
    ds.str(tags::FRAME_OF_REFERENCE_UID, VR::UI, &case.frame_of_reference_uid);
    ds.str(tags::POSITION_REFERENCE_INDICATOR, VR::LO, "");
    ds
}

fn image_type(vendor: Vendor, kind: SeriesKind) -> &'static str {
    match (kind, vendor) {
        (SeriesKind::Localiser, _) => "ORIGINAL\\PRIMARY\\LOCALIZER",
        (_, Vendor::Siemens) => "ORIGINAL\\PRIMARY\\M\\ND\\NORM",
        (_, Vendor::Ge) => "ORIGINAL\\PRIMARY\\OTHER",
        (_, Vendor::Philips) => "ORIGINAL\\PRIMARY\\M_SE\\M\\SE",
    }
}

/// A display window covering the bulk of the stored values (the 99.5th percentile, sampled).
fn window(values: impl Iterator<Item = f32>) -> (f64, f64) {
    let mut sample: Vec<f32> = values.step_by(7).collect();
    if sample.is_empty() {
        return (0.5, 1.0);
    }
    let at = ((sample.len() - 1) as f64 * 0.995) as usize;
    let (_, high, _) = sample.select_nth_unstable_by(at, f32::total_cmp);
    let high = (*high as f64).max(1.0);
    (high / 2.0, high)
}

fn unit(v: [f64; 3]) -> [f64; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if n > 0.0 { v.map(|x| x / n) } else { v }
}

fn da(date: Date) -> String {
    format!("{:04}{:02}{:02}", date.year(), u8::from(date.month()), date.day())
}

fn tm(seconds: u32) -> String {
    let s = seconds % 86_400;
    format!("{:02}{:02}{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A decimal string of at most 16 characters (the DS limit), as short as the value allows.
fn ds_value(x: f64) -> String {
    let x = if x.abs() < 1e-9 { 0.0 } else { x };
    for precision in (0..=8).rev() {
        let mut s = format!("{x:.precision$}");
        if s.contains('.') {
            s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        if s == "-0" {
            s = "0".to_string();
        }
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{x:.0}")
}

/// An image's data set under construction.
struct Dataset {
    obj: InMemDicomObject,
}

impl Dataset {
    fn new() -> Self {
        Self { obj: InMemDicomObject::new_empty() }
    }

    fn str(&mut self, tag: Tag, vr: VR, value: &str) {
        self.obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }

    fn ds(&mut self, tag: Tag, values: &[f64]) {
        let text: Vec<String> = values.iter().map(|&v| ds_value(v)).collect();
        self.str(tag, VR::DS, &text.join("\\"));
    }

    fn is(&mut self, tag: Tag, value: i64) {
        self.str(tag, VR::IS, &value.to_string());
    }

    fn us(&mut self, tag: Tag, value: u16) {
        self.obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
    }

    /// Image pixel module: values are real-world (rescaled) values; they are stored as
    /// `round(value / slope)`, which the renderer made exact.
    fn pixels(&mut self, rows: usize, cols: usize, values: impl Iterator<Item = f32>, slope: f64, centre: f64, width: f64) {
        self.us(tags::SAMPLES_PER_PIXEL, 1);
        self.str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
        self.us(tags::ROWS, rows as u16);
        self.us(tags::COLUMNS, cols as u16);
        self.us(tags::BITS_ALLOCATED, 16);
        self.us(tags::BITS_STORED, 16);
        self.us(tags::HIGH_BIT, 15);
        self.us(tags::PIXEL_REPRESENTATION, 0);
        self.ds(tags::WINDOW_CENTER, &[centre.round()]);
        self.ds(tags::WINDOW_WIDTH, &[width.round()]);
        self.ds(tags::RESCALE_INTERCEPT, &[0.0]);
        self.ds(tags::RESCALE_SLOPE, &[slope]);
        self.str(tags::RESCALE_TYPE, VR::LO, "US");
        let inv = 1.0 / slope;
        let mut bytes = Vec::with_capacity(rows * cols * 2);
        for v in values {
            let stored = (v as f64 * inv).round().clamp(0.0, u16::MAX as f64) as u16;
            bytes.extend_from_slice(&stored.to_le_bytes());
        }
        self.obj.put(DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(bytes)));
    }

    fn write(self, path: &Path) -> Result<(), CohortError> {
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
        let file = self
            .obj
            .with_meta(meta)
            .map_err(|e| CohortError::DicomMeta { path: path.to_path_buf(), message: e.to_string() })?;
        file.write_to_file(path).map_err(|e| CohortError::DicomWrite { path: path.to_path_buf(), message: e.to_string() })
    }
}

/// Our implementation class UID (a fixed 2.25 UUID-derived UID) and version name (≤ 16 chars).
const IMPLEMENTATION_CLASS_UID: &str = "2.25.302842591447375373781416786612536462427";
const IMPLEMENTATION_VERSION_NAME: &str = "NEUROCDS_SYNTH1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit_the_sixteen_character_limit() {
        for x in [0.0, -0.0, 1.0, 0.9375, -123.456789012345, 12345678.123456789, 1e-12, 2.7350427350, -0.000001] {
            let s = ds_value(x);
            assert!(s.len() <= 16, "{x} -> {s}");
            let back: f64 = s.parse().unwrap_or(f64::NAN);
            assert!((back - x).abs() < 1e-5 * x.abs().max(1.0), "{x} -> {s}");
        }
    }

    #[test]
    fn times_are_hhmmss() {
        assert_eq!(tm(7 * 3600 + 5 * 60 + 9), "070509");
    }
}
