//! From a scene (one patient's head, lesions and scanner) to voxels: tissue fractions per voxel,
//! MR contrast per series, bias field, Rician noise, the site's intensity scale and quantisation.
//!
//! All series of a case share one grid and one frame of reference, as co-registered axial series
//! of one session do when the patient keeps still. Several series can be rendered in one pass so
//! the tissue model is evaluated once per voxel; each series draws its noise from its own stream,
//! so a series is identical whether rendered alone or with others.

use ndarray::{Array2, Array3};
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};

use super::anatomy::{Anatomy, Tissue};
use super::demographics::CasePlan;
use super::lesion::{self, LesionSample, LesionSet};
use super::rng::{self, Stream, VoxelNoise};
use super::sites::{SITES, SiteProfile};
use super::spec::{CohortSpec, Diagnosis, Presentation, SeriesKind};
use super::template::AnatomySource;
use neurocds_analysis::imaging::Volume;

/// Largest stored pixel value (16-bit unsigned).
const MAX_STORED: f32 = 65535.0;


/// One image of the three-plane localiser.
#[derive(Debug, Clone)]
pub struct LocaliserImage {
    /// "axial", "coronal" or "sagittal".
    pub plane: &'static str,
    /// ImageOrientationPatient: row direction, then column direction (LPS unit vectors).
    pub orientation: [f64; 6],
    /// ImagePositionPatient of the first pixel's centre.
    pub position: [f64; 3],
    pub pixel_spacing_mm: f64,
    /// `[row, column]`, stored (rescaled) values like the volumes.
    pub data: Array2<f32>,
}

/// MR signal of each tissue on one series, before bias, noise and the site's scale.
#[derive(Debug, Clone, Copy)]
struct Contrast {
    wm: f32,
    gm: f32,
    csf: f32,
    fat: f32,
    bone: f32,
    choroid: f32,
    sinus: f32,
    /// Dura and falx.
    dura: f32,
    /// Arteries and cortical veins (flow voids on T2).
    vessel: f32,
    oedema: f32,
    necrosis: f32,
    haemorrhage: f32,
    /// Relative scale of the series (T2 images are stored brighter than T1 at most sites).
    series_scale: f32,
    /// Noise relative to the site's T1 noise.
    noise_factor: f32,
}

/// Signal values chosen so that the usual orderings hold: on T1 white matter > grey matter >
/// CSF; on T2 CSF > grey > white matter; on FLAIR the CSF is dark and oedema bright.
fn contrast(kind: SeriesKind) -> Contrast {
    let t1 = Contrast {
        wm: 0.85,
        gm: 0.60,
        csf: 0.18,
        fat: 1.0,
        bone: 0.06,
        choroid: 0.55,
        sinus: 0.35,
        dura: 0.45,
        vessel: 0.35,
        oedema: 0.58,
        necrosis: 0.30,
        haemorrhage: 0.80,
        series_scale: 1.0,
        noise_factor: 1.0,
    };
    match kind {
        SeriesKind::T1Pre => t1,
        // Gadolinium: choroid plexus and venous sinuses enhance too (normal enhancement that a
        // naive "brightest spot" lesion finder must not pick).
        SeriesKind::T1PostContrast => Contrast { choroid: 1.05, sinus: 1.15, dura: 1.1, vessel: 1.25, ..t1 },
        SeriesKind::T2 => Contrast {
            wm: 0.36,
            gm: 0.56,
            csf: 1.0,
            fat: 0.62,
            bone: 0.05,
            choroid: 0.6,
            sinus: 0.10,
            dura: 0.2,
            vessel: 0.08,
            oedema: 0.80,
            necrosis: 0.88,
            haemorrhage: 0.18,
            series_scale: 1.25,
            noise_factor: 1.1,
        },
        SeriesKind::Flair => Contrast {
            wm: 0.45,
            gm: 0.62,
            csf: 0.07,
            fat: 0.70,
            bone: 0.05,
            choroid: 0.40,
            sinus: 0.10,
            dura: 0.3,
            vessel: 0.1,
            oedema: 0.95,
            necrosis: 0.55,
            haemorrhage: 0.30,
            series_scale: 0.9,
            noise_factor: 1.2,
        },
        SeriesKind::Localiser => Contrast { series_scale: 0.5, noise_factor: 1.5, ..t1 },
    }
}

/// The voxel grid of the axial series.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub cols: usize,
    pub rows: usize,
    pub slices: usize,
    /// LPS position of voxel (0, 0, 0).
    pub origin: [f64; 3],
    /// Column, row and slice spacing (mm).
    pub spacing: [f64; 3],
}

/// Lesion volumes as rendered, summed over voxels.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub enhancing_ml: f64,
    pub necrotic_ml: f64,
    pub oedema_ml: f64,
}

/// Everything needed to render any series of one case.
#[derive(Debug, Clone)]
pub(crate) struct Scene {
    seed: u64,
    index: usize,
    pub site_index: usize,
    pub mimic: bool,
    anatomy: Anatomy,
    /// `phantom`, `colin27` or `mni152`.
    pub anatomy_source: &'static str,
    lesions: LesionSet,
    /// LPS position of the head centre in the scanner.
    head_centre: [f64; 3],
    pub grid: Grid,
    /// Per-axis coefficients (linear, quadratic) of the log bias field, per 100 mm.
    bias: [[f64; 2]; 3],
    /// Receiver gain of this session.
    gain: f64,
}

impl Scene {
    pub fn build(spec: &CohortSpec, index: usize, plan: &CasePlan) -> Scene {
        let site = &SITES[plan.site_index];
        let mut rng = rng::stream_rng(spec.seed, index, Stream::Anatomy, 0);
        let mut anatomy = Anatomy::random(&mut rng, plan.age);
        if spec.enhancing_anatomy {
            let mut extra = rng::stream_rng(spec.seed, index, Stream::Anatomy, 1);
            anatomy.add_enhancing_anatomy(&mut extra);
        }
        let source = match spec.anatomies.len() {
            0 | 1 => spec.anatomies.first(),
            n => {
                let mut pick = rng::stream_rng(spec.seed, index, Stream::Anatomy, 2);
                spec.anatomies.get(rng::uniform(&mut pick, 0.0, n as f64) as usize)
            }
        };
        if let Some(AnatomySource::Template(brain)) = source {
            let mut fit = rng::stream_rng(spec.seed, index, Stream::Anatomy, 3);
            anatomy.use_template(&mut fit, brain.clone());
        }
        let anatomy_source = source.map(|s| s.name()).unwrap_or("phantom");
        let head_centre = [rng::uniform(&mut rng, -5.0, 5.0), rng::uniform(&mut rng, 0.0, 25.0), rng::uniform(&mut rng, -20.0, 20.0)];
        // The technologist centres the slab on the head, covering vertex to skull base.
        let centre = [
            head_centre[0] + rng::uniform(&mut rng, -4.0, 4.0),
            head_centre[1] + rng::uniform(&mut rng, -4.0, 4.0),
            head_centre[2] + 10.0 + rng::uniform(&mut rng, -5.0, 5.0),
        ];
        let spacing = [site.pixel_spacing_mm, site.pixel_spacing_mm, site.slice_spacing_mm()];
        let [cols, rows] = site.matrix;
        let dims = [cols, rows, site.slices];
        let origin = [0, 1, 2].map(|a| centre[a] - (dims[a] as f64 - 1.0) / 2.0 * spacing[a]);
        let grid = Grid { cols, rows, slices: site.slices, origin, spacing };
        let bias = [0; 3].map(|_: i32| {
            [rng::uniform(&mut rng, -1.0, 1.0) * site.bias, rng::uniform(&mut rng, -0.5, 0.5) * site.bias]
        });
        let gain = rng::uniform(&mut rng, 0.85, 1.15);

        let mut lesion_rng = rng::stream_rng(spec.seed, index, Stream::Lesions, 0);
        let looks_like = match (plan.label, plan.mimic) {
            (label, false) => label,
            (Diagnosis::Gbm, true) => Diagnosis::Pcnsl,
            (Diagnosis::Pcnsl, true) => Diagnosis::Gbm,
        };
        let lesions = match plan.presentation {
            Presentation::Tumour => lesion::draw_lesions(&mut lesion_rng, looks_like, &anatomy),
            Presentation::NormalBrain => lesion::LesionSet { lesions: Vec::new(), phenotype: "normal" },
            Presentation::ExtraAxial => lesion::draw_extra_axial(&mut lesion_rng, &anatomy),
        };
        Scene {
            seed: spec.seed,
            index,
            site_index: plan.site_index,
            mimic: plan.mimic,
            anatomy,
            anatomy_source,
            lesions,
            head_centre,
            grid,
            bias,
            gain,
        }
    }

    fn site(&self) -> &'static SiteProfile {
        &SITES[self.site_index]
    }

    pub fn phenotype(&self) -> &'static str {
        self.lesions.phenotype
    }

    pub fn lesion_count(&self) -> usize {
        self.lesions.lesions.len()
    }

    /// LPS centre of the largest lesion.
    pub fn main_lesion_centre(&self) -> [f64; 3] {
        let main = self.lesions.lesions.iter().max_by(|a, b| a.volume_ml().total_cmp(&b.volume_ml()));
        let c = main.map(|l| l.centre).unwrap_or([0.0; 3]);
        [c[0] + self.head_centre[0], c[1] + self.head_centre[1], c[2] + self.head_centre[2]]
    }

    pub fn study_uid(&self) -> String {
        derived_uid(self.seed, self.index, "study")
    }

    pub fn frame_of_reference_uid(&self) -> String {
        derived_uid(self.seed, self.index, "frame-of-reference")
    }

    pub fn series_uid(&self, kind: SeriesKind) -> String {
        derived_uid(self.seed, self.index, &format!("series/{}", kind.slug()))
    }

    pub fn instance_uid(&self, kind: SeriesKind, instance: u32) -> String {
        derived_uid(self.seed, self.index, &format!("instance/{}/{instance}", kind.slug()))
    }

    /// A stable number for things like the accession number and the birthday offset.
    pub fn case_hash(&self) -> u64 {
        rng::mix(rng::case_seed(self.seed, self.index, Stream::Demographics, 1))
    }

    /// The affine of the axial grid: voxel (i, j, k) → LPS mm.
    pub fn affine(&self) -> [[f64; 4]; 4] {
        let g = &self.grid;
        [
            [g.spacing[0], 0.0, 0.0, g.origin[0]],
            [0.0, g.spacing[1], 0.0, g.origin[1]],
            [0.0, 0.0, g.spacing[2], g.origin[2]],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    /// Partial-volume width: thick slices blur boundaries more than fine pixels do.
    fn pv_width(&self) -> f64 {
        0.5 * (self.site().pixel_spacing_mm + self.site().slice_thickness_mm)
    }

    fn noise_rng(&self, kind: SeriesKind) -> StdRng {
        rng::stream_rng(self.seed, self.index, Stream::Noise, kind.order() as u64)
    }

    /// Tissue and lesion at head-relative point `q`, with this point's tabulated fields.
    #[inline]
    fn sample(&self, q: [f64; 3], deform: f64, fold: f64, w: f64) -> (Tissue, Option<LesionSample>) {
        let mut anatomical = q;
        let mut combined: Option<LesionSample> = None;
        for l in &self.lesions.lesions {
            if let Some(s) = l.sample(q, w) {
                anatomical = l.displace(anatomical);
                combined = Some(match combined {
                    None => s,
                    Some(c) => merge(c, s),
                });
            }
        }
        (self.anatomy.tissue(anatomical, deform, fold, w), combined)
    }

    /// Renders the given series on the axial grid in one pass; also returns the lesion volumes.
    pub fn render<const N: usize>(&self, kinds: [SeriesKind; N]) -> ([Volume; N], Tally) {
        let site = self.site();
        let g = self.grid;
        let w = self.pv_width();
        let axis = |a: usize, n: usize| -> Vec<f64> {
            (0..n).map(|i| g.origin[a] + i as f64 * g.spacing[a] - self.head_centre[a]).collect()
        };
        let (qx, qy, qz) = (axis(0, g.cols), axis(1, g.rows), axis(2, g.slices));
        let table = |q: &[f64], f: &dyn Fn(f64) -> f64| -> Vec<f64> { q.iter().map(|&v| f(v)).collect() };
        let (fx, fy, fz) = (
            table(&qx, &|v| self.anatomy.fold[0].eval(v)),
            table(&qy, &|v| self.anatomy.fold[1].eval(v)),
            table(&qz, &|v| self.anatomy.fold[2].eval(v)),
        );
        let (dx, dy, dz) = (
            table(&qx, &|v| self.anatomy.deform[0].eval(v)),
            table(&qy, &|v| self.anatomy.deform[1].eval(v)),
            table(&qz, &|v| self.anatomy.deform[2].eval(v)),
        );
        let bias_axis = |a: usize, q: &[f64]| -> Vec<f32> {
            q.iter().map(|&v| (self.bias[a][0] * v / 100.0 + self.bias[a][1] * (v / 100.0).powi(2)).exp() as f32).collect()
        };
        let (bx, by, bz) = (bias_axis(0, &qx), bias_axis(1, &qy), bias_axis(2, &qz));

        let contrasts = kinds.map(contrast);
        let gw = site.grey_white_contrast as f32;
        let mut noise = kinds.map(|k| VoxelNoise::new(self.noise_rng(k)));
        let sd = kinds.map(|k| (site.noise * 0.85) as f32 * contrast(k).noise_factor);
        let out_scale = kinds.map(|k| (site.intensity_scale / 0.85 * self.gain) as f32 * contrast(k).series_scale);
        let slope = site.rescale_slope as f32;
        let inv_slope = 1.0 / slope;
        let n = g.cols * g.rows * g.slices;
        let mut data: [Vec<f32>; N] = kinds.map(|_| Vec::with_capacity(n));
        let voxel_ml = g.spacing[0] * g.spacing[1] * g.spacing[2] / 1000.0;
        let mut tally = Tally::default();

        for k in 0..g.slices {
            for j in 0..g.rows {
                for i in 0..g.cols {
                    let q = [qx[i], qy[j], qz[k]];
                    let (t, lesion) = self.sample(q, dx[i] + dy[j] + dz[k], fx[i] + fy[j] + fz[k], w);
                    let mix = Mix::new(t, lesion);
                    if lesion.is_some() {
                        tally.enhancing_ml += mix.enhancing as f64 * voxel_ml;
                        tally.necrotic_ml += mix.necrotic as f64 * voxel_ml;
                        tally.oedema_ml += mix.oedema as f64 * voxel_ml;
                    }
                    let bias = bx[i] * by[j] * bz[k];
                    // About half the grid is air around the head: no signal, only noise.
                    let air = lesion.is_none() && t.is_empty();
                    for s in 0..N {
                        let signal = if air { 0.0 } else { mix.signal(&contrasts[s], kinds[s], gw) * bias };
                        let (n1, n2) = noise[s].pair();
                        // Magnitude images: Gaussian noise on both channels gives Rician noise.
                        let re = signal + sd[s] * n1;
                        let im = sd[s] * n2;
                        let value = (re * re + im * im).sqrt() * out_scale[s];
                        // Non-negative, so adding one half and truncating rounds (and is much
                        // cheaper than `f32::round`).
                        let stored = (value * inv_slope + 0.5).min(MAX_STORED) as u32 as f32;
                        data[s].push(stored * slope);
                    }
                }
            }
        }

        let affine = self.affine();
        let volumes = {
            let mut index = 0;
            data.map(|voxels| {
                let kind = kinds[index];
                index += 1;
                let array = Array3::from_shape_vec((g.slices, g.rows, g.cols), voxels)
                    .unwrap_or_else(|_| Array3::zeros((g.slices, g.rows, g.cols)));
                Volume {
                    data: array,
                    affine,
                    spacing: g.spacing,
                    frame_of_reference_uid: Some(self.frame_of_reference_uid()),
                    series_uid: self.series_uid(kind),
                }
            })
        };
        (volumes, tally)
    }

    /// The three-plane localiser: 128 × 128 pixels of 2 mm through the head centre.
    pub fn localiser(&self) -> Vec<LocaliserImage> {
        const SIZE: usize = 128;
        const PIXEL: f64 = 2.0;
        let site = self.site();
        let w = 0.5 * (PIXEL + 8.0); // thick localiser slices
        let c = contrast(SeriesKind::Localiser);
        let mut noise = VoxelNoise::new(self.noise_rng(SeriesKind::Localiser));
        let sd = (site.noise * 0.85) as f32 * c.noise_factor;
        let scale = (site.intensity_scale / 0.85 * self.gain) as f32 * c.series_scale;
        let slope = site.rescale_slope as f32;
        let planes: [(&'static str, [f64; 6]); 3] = [
            ("axial", [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            ("coronal", [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]),
            ("sagittal", [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]),
        ];
        let centre = self.head_centre;
        let half = (SIZE as f64 - 1.0) / 2.0 * PIXEL;
        planes
            .iter()
            .map(|&(plane, o)| {
                let position = [0, 1, 2].map(|a| centre[a] - half * o[a] - half * o[3 + a]);
                let data = Array2::from_shape_fn((SIZE, SIZE), |(r, col)| {
                    let p = [0, 1, 2].map(|a| position[a] + col as f64 * PIXEL * o[a] + r as f64 * PIXEL * o[3 + a]);
                    let q = [p[0] - centre[0], p[1] - centre[1], p[2] - centre[2]];
                    let (t, lesion) = self.sample(q, self.anatomy.deform_at(q), self.anatomy.fold_at(q), w);
                    let signal = Mix::new(t, lesion).signal(&c, SeriesKind::Localiser, site.grey_white_contrast as f32);
                    let (n1, n2) = noise.pair();
                    let re = signal + sd * n1;
                    let im = sd * n2;
                    let value = (re * re + im * im).sqrt() * scale;
                    ((value / slope + 0.5).min(MAX_STORED) as u32) as f32 * slope
                });
                LocaliserImage { plane, orientation: o, position, pixel_spacing_mm: PIXEL, data }
            })
            .collect()
    }
}

/// Two lesions overlapping the same voxel (rare): fractions add, levels follow the larger one.
fn merge(a: LesionSample, b: LesionSample) -> LesionSample {
    let main = if b.enhancing > a.enhancing { b } else { a };
    LesionSample {
        enhancing: (a.enhancing + b.enhancing).min(1.0),
        necrotic: (a.necrotic + b.necrotic).min(1.0),
        haemorrhage: (a.haemorrhage + b.haemorrhage).min(1.0),
        oedema: a.oedema.max(b.oedema),
        ..main
    }
}

/// The tissue composition of one voxel once the lesion has replaced and swollen the brain.
struct Mix {
    t: Tissue,
    oedema: f32,
    enhancing: f32,
    necrotic: f32,
    haemorrhage: f32,
    lesion: LesionSample,
}

impl Mix {
    #[inline]
    fn new(mut t: Tissue, lesion: Option<LesionSample>) -> Mix {
        let Some(l) = lesion else {
            return Mix { t, oedema: 0.0, enhancing: 0.0, necrotic: 0.0, haemorrhage: 0.0, lesion: LesionSample::default() };
        };
        // Tumour grows only inside the skull; it displaces whatever brain or CSF was there.
        let inside = t.intracranial;
        let enhancing = l.enhancing * inside;
        let necrotic = l.necrotic * inside;
        let haemorrhage = l.haemorrhage * inside;
        let tumour = (enhancing + necrotic + haemorrhage).min(1.0);
        let keep = 1.0 - tumour;
        t.wm *= keep;
        t.gm *= keep;
        t.csf *= keep;
        t.choroid *= keep;
        t.sinus *= keep;
        t.dura *= keep;
        t.vessel *= keep;
        // Vasogenic oedema spreads along white matter and largely spares the cortex.
        let wm_oedema = t.wm * l.oedema;
        let gm_oedema = t.gm * l.oedema * 0.25;
        t.wm -= wm_oedema;
        t.gm -= gm_oedema;
        Mix { t, oedema: wm_oedema + gm_oedema, enhancing, necrotic, haemorrhage, lesion: l }
    }

    #[inline]
    fn signal(&self, c: &Contrast, kind: SeriesKind, grey_white: f32) -> f32 {
        let gm = c.wm + (c.gm - c.wm) * grey_white;
        let enhancing = match kind {
            SeriesKind::T1PostContrast => self.lesion.enhancement,
            SeriesKind::T2 => self.lesion.t2,
            SeriesKind::Flair => self.lesion.flair,
            // Before contrast the cellular tumour is slightly T1-hypointense to white matter.
            SeriesKind::T1Pre | SeriesKind::Localiser => 0.62,
        };
        let t = &self.t;
        t.wm * c.wm
            + t.gm * gm
            + t.csf * c.csf
            + t.fat * c.fat
            + t.bone * c.bone
            + t.choroid * c.choroid
            + t.sinus * c.sinus
            + t.dura * c.dura
            + t.vessel * c.vessel
            + self.oedema * c.oedema
            + self.enhancing * enhancing
            + self.necrotic * c.necrosis
            + self.haemorrhage * c.haemorrhage
    }
}

/// A DICOM UID of the form `2.25.<decimal>` from a name-based 128-bit value (UUID version 8
/// layout over SHA-256), so the same case always gets the same UIDs and different cases,
/// seeds or purposes never share one.
pub(crate) fn derived_uid(seed: u64, index: usize, purpose: &str) -> String {
    let digest = Sha256::digest(format!("neurocds-synth|{seed}|{index}|{purpose}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0F) | 0x80; // version 8 (custom)
    bytes[8] = (bytes[8] & 0x3F) | 0x80; // RFC 4122 variant
    format!("2.25.{}", u128::from_be_bytes(bytes))
}
