//! The imaging sites of the synthetic cohort: three internal "development" sites of one academic
//! centre and three outside institutions, each with its own scanner, geometry, noise, bias field,
//! intensity scale and series naming.
//!
//! External sites differ on purpose (thicker or thinner slices, coarser or finer pixels, more
//! noise, stronger bias fields, another vendor's names) because that shift is what makes outside
//! MRIs hard for a model; see `ASSUMPTIONS.md`.

use super::spec::Vendor;
use super::spec::SeriesKind;

/// How one series is acquired at a site: the header values a series recogniser reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesProtocol {
    /// SeriesDescription in the vendor's style.
    pub description: &'static str,
    pub repetition_time_ms: f64,
    pub echo_time_ms: f64,
    pub inversion_time_ms: Option<f64>,
    pub flip_angle_deg: f64,
    /// ScanningSequence (0018,0020), backslash-separated.
    pub scanning_sequence: &'static str,
    /// SequenceVariant (0018,0021), backslash-separated.
    pub sequence_variant: &'static str,
    /// MRAcquisitionType: "2D" or "3D".
    pub acquisition_type: &'static str,
    pub echo_train_length: u32,
}

/// One site's scanner and protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteProfile {
    /// InstitutionName.
    pub name: &'static str,
    pub external: bool,
    pub vendor: Vendor,
    pub model: &'static str,
    pub field_strength_t: f64,
    /// In-plane pixel spacing (square pixels).
    pub pixel_spacing_mm: f64,
    /// Columns × rows of the axial series.
    pub matrix: [usize; 2],
    pub slice_thickness_mm: f64,
    /// Gap between slices; SpacingBetweenSlices = thickness + gap.
    pub slice_gap_mm: f64,
    pub slices: usize,
    /// Noise SD relative to white matter signal on T1 (before the intensity scale).
    pub noise: f64,
    /// Peak relative amplitude of the receive-coil bias field across the head.
    pub bias: f64,
    /// Stored value of white matter on T1; vendors scale very differently.
    pub intensity_scale: f64,
    /// RescaleSlope of the stored pixels (Philips writes odd slopes; the others 1).
    pub rescale_slope: f64,
    /// Multiplies the grey/white matter difference (3 T and 3D T1 show more contrast).
    pub grey_white_contrast: f64,
    /// Relative frequency among the sites of its kind (internal or external).
    pub weight: f64,
    pub localiser: SeriesProtocol,
    pub t1_pre: SeriesProtocol,
    pub t2: SeriesProtocol,
    pub flair: SeriesProtocol,
    pub t1_post: SeriesProtocol,
}

impl SiteProfile {
    pub fn protocol(&self, kind: SeriesKind) -> &SeriesProtocol {
        match kind {
            SeriesKind::Localiser => &self.localiser,
            SeriesKind::T1Pre => &self.t1_pre,
            SeriesKind::T2 => &self.t2,
            SeriesKind::Flair => &self.flair,
            SeriesKind::T1PostContrast => &self.t1_post,
        }
    }

    /// Distance between slice centres.
    pub fn slice_spacing_mm(&self) -> f64 {
        self.slice_thickness_mm + self.slice_gap_mm
    }
}

const fn proto(
    description: &'static str,
    tr: f64,
    te: f64,
    ti: Option<f64>,
    flip: f64,
    scanning_sequence: &'static str,
    sequence_variant: &'static str,
    acquisition_type: &'static str,
    etl: u32,
) -> SeriesProtocol {
    SeriesProtocol {
        description,
        repetition_time_ms: tr,
        echo_time_ms: te,
        inversion_time_ms: ti,
        flip_angle_deg: flip,
        scanning_sequence,
        sequence_variant,
        acquisition_type,
        echo_train_length: etl,
    }
}

/// All sites; the first three are internal.
pub static SITES: [SiteProfile; 6] = [
    SiteProfile {
        name: "Northfield Clinic Rochester",
        external: false,
        vendor: Vendor::Siemens,
        model: "Skyra",
        field_strength_t: 3.0,
        pixel_spacing_mm: 1.0,
        matrix: [176, 208],
        slice_thickness_mm: 3.0,
        slice_gap_mm: 0.0,
        slices: 50,
        noise: 0.025,
        bias: 0.10,
        intensity_scale: 900.0,
        rescale_slope: 1.0,
        grey_white_contrast: 1.0,
        weight: 0.45,
        localiser: proto("localizer", 8.6, 4.0, None, 20.0, "GR", "SP", "2D", 1),
        t1_pre: proto("t1_tse_tra", 650.0, 10.0, None, 150.0, "SE", "SK\\SP\\OSP", "2D", 3),
        t2: proto("t2_tse_tra", 6000.0, 98.0, None, 150.0, "SE", "SK\\SP\\OSP", "2D", 15),
        flair: proto("t2_tirm_tra_dark-fluid", 9000.0, 81.0, Some(2500.0), 150.0, "SE\\IR", "SK\\SP\\MP\\OSP", "2D", 16),
        t1_post: proto("t1_tse_tra_post", 650.0, 10.0, None, 150.0, "SE", "SK\\SP\\OSP", "2D", 3),
    },
    SiteProfile {
        name: "Northfield Clinic Jacksonville",
        external: false,
        vendor: Vendor::Ge,
        model: "DISCOVERY MR750",
        field_strength_t: 3.0,
        pixel_spacing_mm: 0.9375,
        matrix: [180, 216],
        slice_thickness_mm: 4.0,
        slice_gap_mm: 0.0,
        slices: 38,
        noise: 0.03,
        bias: 0.12,
        intensity_scale: 2200.0,
        rescale_slope: 1.0,
        grey_white_contrast: 0.95,
        weight: 0.30,
        localiser: proto("3-PL LOC", 5.2, 1.6, None, 30.0, "GR", "SS\\SP", "2D", 1),
        t1_pre: proto("AX T1 SE", 550.0, 12.0, None, 90.0, "SE", "NONE", "2D", 1),
        t2: proto("AX T2 FSE", 5200.0, 102.0, None, 111.0, "SE", "SK", "2D", 18),
        flair: proto("AX T2 FLAIR", 9500.0, 128.0, Some(2375.0), 90.0, "SE\\IR", "SK\\SP", "2D", 24),
        t1_post: proto("AX T1 SE +C", 550.0, 12.0, None, 90.0, "SE", "NONE", "2D", 1),
    },
    SiteProfile {
        name: "Northfield Clinic Phoenix",
        external: false,
        vendor: Vendor::Siemens,
        model: "Aera",
        field_strength_t: 1.5,
        pixel_spacing_mm: 1.1,
        matrix: [160, 192],
        slice_thickness_mm: 3.0,
        slice_gap_mm: 0.3,
        slices: 46,
        noise: 0.04,
        bias: 0.10,
        intensity_scale: 700.0,
        rescale_slope: 1.0,
        grey_white_contrast: 0.85,
        weight: 0.25,
        localiser: proto("localizer", 8.6, 4.0, None, 20.0, "GR", "SP", "2D", 1),
        t1_pre: proto("T1 SE AX", 500.0, 9.5, None, 90.0, "SE", "SP", "2D", 1),
        t2: proto("T2 TSE AX", 4500.0, 95.0, None, 150.0, "SE", "SK\\SP\\OSP", "2D", 13),
        flair: proto("FLAIR AX", 9000.0, 85.0, Some(2500.0), 150.0, "SE\\IR", "SK\\SP\\MP\\OSP", "2D", 15),
        t1_post: proto("T1 SE AX POST GAD", 500.0, 9.5, None, 90.0, "SE", "SP", "2D", 1),
    },
    SiteProfile {
        name: "Lakeside Regional Medical Center",
        external: true,
        vendor: Vendor::Philips,
        model: "Ingenia",
        field_strength_t: 3.0,
        pixel_spacing_mm: 1.2,
        matrix: [148, 176],
        slice_thickness_mm: 2.0,
        slice_gap_mm: 0.0,
        slices: 76,
        noise: 0.03,
        bias: 0.25,
        intensity_scale: 1400.0,
        rescale_slope: 2.7350427350,
        grey_white_contrast: 1.15,
        weight: 0.35,
        localiser: proto("Survey", 11.0, 4.6, None, 15.0, "GR", "SS", "2D", 1),
        t1_pre: proto("3D T1W TFE", 8.1, 3.7, None, 8.0, "GR", "SS\\SP\\MP", "3D", 160),
        t2: proto("T2W_TSE", 3000.0, 80.0, None, 90.0, "SE", "SK", "2D", 15),
        flair: proto("T2W_FLAIR", 11000.0, 125.0, Some(2800.0), 90.0, "SE\\IR", "SK\\MP", "2D", 32),
        t1_post: proto("3D T1W TFE +GD", 8.1, 3.7, None, 8.0, "GR", "SS\\SP\\MP", "3D", 160),
    },
    SiteProfile {
        name: "Prairie Valley Imaging",
        external: true,
        vendor: Vendor::Ge,
        model: "SIGNA Explorer",
        field_strength_t: 1.5,
        pixel_spacing_mm: 0.86,
        matrix: [200, 240],
        slice_thickness_mm: 5.0,
        slice_gap_mm: 1.0,
        slices: 26,
        noise: 0.055,
        bias: 0.22,
        intensity_scale: 1600.0,
        rescale_slope: 1.0,
        grey_white_contrast: 0.8,
        weight: 0.35,
        localiser: proto("LOC", 6.0, 1.8, None, 30.0, "GR", "SS\\SP", "2D", 1),
        t1_pre: proto("AX T1", 480.0, 14.0, None, 90.0, "SE", "NONE", "2D", 1),
        t2: proto("AX T2 FRFSE", 4800.0, 105.0, None, 90.0, "SE", "SK", "2D", 20),
        flair: proto("AX FLAIR", 8800.0, 120.0, Some(2200.0), 90.0, "SE\\IR", "SK\\SP", "2D", 20),
        t1_post: proto("AX T1 POST", 480.0, 14.0, None, 90.0, "SE", "NONE", "2D", 1),
    },
    SiteProfile {
        name: "St Brendan Community Hospital",
        external: true,
        vendor: Vendor::Siemens,
        model: "Avanto",
        field_strength_t: 1.5,
        pixel_spacing_mm: 1.15,
        matrix: [152, 184],
        slice_thickness_mm: 5.0,
        slice_gap_mm: 0.5,
        slices: 28,
        noise: 0.06,
        bias: 0.30,
        intensity_scale: 500.0,
        rescale_slope: 1.0,
        grey_white_contrast: 0.8,
        weight: 0.30,
        localiser: proto("AAHead_Scout", 8.0, 3.7, None, 20.0, "GR", "SP", "2D", 1),
        t1_pre: proto("t1_se_tra", 520.0, 8.7, None, 90.0, "SE", "SP", "2D", 1),
        t2: proto("t2_tse_tra_320", 4000.0, 99.0, None, 150.0, "SE", "SK\\SP\\OSP", "2D", 11),
        flair: proto("t2_tirm_tra_FLAIR", 8500.0, 88.0, Some(2440.0), 150.0, "SE\\IR", "SK\\SP\\MP\\OSP", "2D", 13),
        t1_post: proto("t1_se_tra_KM", 520.0, 8.7, None, 90.0, "SE", "SP", "2D", 1),
    },
];
