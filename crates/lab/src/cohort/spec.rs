//! The vocabulary of a cohort: what it looks like ([`CohortSpec`]) and the kinds its cases are
//! drawn from (diagnosis, presentation, sex, scanner vendor, series).

use serde::Serialize;
use time::{Date, Month};

use super::{error::CohortError, template::AnatomySource};

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

/// The series of a synthetic session, in acquisition order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesKind {
    /// Three-plane localiser (scout).
    Localiser,
    /// T1-weighted, before contrast.
    T1Pre,
    /// T2-weighted (TSE/FSE).
    T2,
    /// T2 FLAIR (fluid-attenuated inversion recovery).
    Flair,
    /// T1-weighted after gadolinium.
    T1PostContrast,
}

impl SeriesKind {
    pub const ALL: [SeriesKind; 5] =
        [SeriesKind::Localiser, SeriesKind::T1Pre, SeriesKind::T2, SeriesKind::Flair, SeriesKind::T1PostContrast];

    /// Position in the session (1-based), the basis of SeriesNumber.
    pub fn order(self) -> u32 {
        match self {
            SeriesKind::Localiser => 1,
            SeriesKind::T1Pre => 2,
            SeriesKind::T2 => 3,
            SeriesKind::Flair => 4,
            SeriesKind::T1PostContrast => 5,
        }
    }

    /// Seconds after the localiser at which the series starts; contrast is injected after FLAIR.
    pub fn start_offset_s(self) -> u32 {
        match self {
            SeriesKind::Localiser => 0,
            SeriesKind::T1Pre => 95,
            SeriesKind::T2 => 340,
            SeriesKind::Flair => 610,
            SeriesKind::T1PostContrast => 1080,
        }
    }

    /// A short stable name (file names, UID derivation).
    pub fn slug(self) -> &'static str {
        match self {
            SeriesKind::Localiser => "localiser",
            SeriesKind::T1Pre => "t1",
            SeriesKind::T2 => "t2",
            SeriesKind::Flair => "flair",
            SeriesKind::T1PostContrast => "t1c",
        }
    }
}
