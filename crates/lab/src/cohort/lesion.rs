//! Lesion models: glioblastoma-like and lymphoma-like, after the imaging-feature table of
//! `clinical-context.md` ("Imaging features that separate them").
//!
//! | feature            | GBM-like                                 | lymphoma-like                         |
//! |--------------------|------------------------------------------|---------------------------------------|
//! | enhancement        | thick irregular ring around necrosis     | solid, homogeneous, avid              |
//! | T2 of enhancing    | heterogeneous, hyperintense              | iso- to hypointense to grey matter    |
//! | oedema             | marked, with mass effect                 | less for the lesion's size            |
//! | location           | hemispheric white matter, cortex-near    | periventricular, deep grey, callosal  |
//! | number             | usually one                              | multiple in 20-40 %                   |
//! | haemorrhage        | common                                   | rare                                  |
//!
//! Overlap is built in twice: every feature is drawn from overlapping ranges, and a "mimic"
//! case (`CohortSpec::mimic_fraction`) draws its whole presentation from the other diagnosis
//! (a solid deep GBM, a necrotic hemispheric lymphoma in an immunocompromised patient). Mimics
//! are indistinguishable by construction, which caps the achievable AUC below 1.

use rand::Rng;
use rand::rngs::StdRng;

use super::spec::Diagnosis;
use super::anatomy::{Anatomy, ramp};
use super::rng;

/// Lattice spacing of the lesion's noise fields (irregular margin, patchy enhancement).
const NOISE_CELL_MM: f64 = 4.5;

/// Where oedema ends, in decay lengths beyond the margin; (1 - x)³ over this range decays like
/// exp(-x / decay length) near the margin.
const OEDEMA_REACH: f64 = 3.0;

/// Three smooth random fields in [-1, 1] on a small lattice around one lesion (value noise).
#[derive(Debug, Clone)]
struct NoiseField {
    origin: [f64; 3],
    dims: [usize; 3],
    values: Vec<[f32; 3]>,
}

impl NoiseField {
    fn random(rng: &mut StdRng, centre: [f64; 3], half_extent: f64) -> Self {
        let n = (2.0 * half_extent / NOISE_CELL_MM).ceil() as usize + 2;
        let origin = centre.map(|c| c - half_extent - NOISE_CELL_MM);
        let values = (0..n * n * n).map(|_| [0; 3].map(|_: i32| rng.random_range(-1.0f32..1.0))).collect();
        Self { origin, dims: [n, n, n], values }
    }

    /// Trilinear interpolation with smoothstep weights; clamps outside the lattice.
    #[inline]
    fn sample(&self, q: [f64; 3]) -> [f32; 3] {
        let mut idx = [0usize; 3];
        let mut frac = [0f32; 3];
        for a in 0..3 {
            let u = ((q[a] - self.origin[a]) / NOISE_CELL_MM).clamp(0.0, (self.dims[a] - 2) as f64 - 1e-6);
            idx[a] = u as usize;
            let f = (u - idx[a] as f64) as f32;
            frac[a] = f * f * (3.0 - 2.0 * f);
        }
        let [nx, ny, _] = self.dims;
        let mut out = [0f32; 3];
        for corner in 0..8 {
            let (cx, cy, cz) = (corner & 1, (corner >> 1) & 1, (corner >> 2) & 1);
            let w = (if cx == 1 { frac[0] } else { 1.0 - frac[0] })
                * (if cy == 1 { frac[1] } else { 1.0 - frac[1] })
                * (if cz == 1 { frac[2] } else { 1.0 - frac[2] });
            let v = self.values[(idx[2] + cz) * nx * ny + (idx[1] + cy) * nx + idx[0] + cx];
            for k in 0..3 {
                out[k] += w * v[k];
            }
        }
        out
    }
}

/// One lesion, in millimetres relative to the head centre.
#[derive(Debug, Clone)]
pub(crate) struct Lesion {
    pub centre: [f64; 3],
    pub semi: [f64; 3],
    /// Radius of the necrotic core as a fraction of the lesion radius (0 = solid).
    pub necrotic_fraction: f64,
    /// Relative amplitude of margin irregularity.
    irregularity: f64,
    /// T1 post-contrast signal of enhancing tumour (white matter = 0.85).
    pub enhancement: f64,
    /// Relative amplitude of patchy enhancement.
    heterogeneity: f64,
    /// T2 signal of the enhancing part (grey matter = 0.56, white matter = 0.36).
    pub t2_signal: f64,
    /// FLAIR signal of the enhancing part.
    pub flair_signal: f64,
    /// Decay length of vasogenic oedema beyond the margin (mm).
    oedema_mm: f64,
    /// Fraction of white matter replaced by oedema at the margin.
    oedema_strength: f64,
    /// Outward displacement of surrounding anatomy, as a fraction of the radius.
    push: f64,
    /// A haemorrhagic focus inside the tumour: centre and radius (mm).
    haemorrhage: Option<([f64; 3], f64)>,
    noise: NoiseField,
    /// Beyond this distance from the centre nothing of the lesion is visible.
    pub reach_mm: f64,
}

/// What a lesion contributes at one point (fractions of the voxel).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LesionSample {
    pub enhancing: f32,
    pub necrotic: f32,
    pub haemorrhage: f32,
    /// Share of white matter (and a little grey matter) turned into oedema.
    pub oedema: f32,
    /// Enhancement level of the enhancing part here (patchy in GBM).
    pub enhancement: f32,
    pub t2: f32,
    pub flair: f32,
}

impl Lesion {
    pub fn mean_radius(&self) -> f64 {
        (self.semi[0] + self.semi[1] + self.semi[2]) / 3.0
    }

    pub fn volume_ml(&self) -> f64 {
        4.0 / 3.0 * std::f64::consts::PI * self.semi[0] * self.semi[1] * self.semi[2] / 1000.0
    }

    /// The lesion at `q` (relative to the head centre, not displaced by mass effect).
    #[inline]
    pub fn sample(&self, q: [f64; 3], w: f64) -> Option<LesionSample> {
        let d = [q[0] - self.centre[0], q[1] - self.centre[1], q[2] - self.centre[2]];
        let dist2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
        if dist2 > self.reach_mm * self.reach_mm {
            return None;
        }
        let v = [d[0] / self.semi[0], d[1] / self.semi[1], d[2] / self.semi[2]];
        let rho = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        let radius = self.mean_radius();
        // Far outside the margin only the oedema is left, which needs no noise: it takes its
        // finger-like shape from the white matter it follows. Skipping the lattice there keeps
        // large oedematous GBMs cheap.
        let near = rho * (1.0 - self.irregularity) < 1.0 + 2.0 * w / radius;
        let n = if near { self.noise.sample(q) } else { [0.0; 3] };
        let rho_margin = rho * (1.0 + self.irregularity * n[0] as f64);
        let outside_mm = (rho_margin - 1.0) * radius;
        let tumour = 1.0 - ramp(outside_mm, w);
        let core = if self.necrotic_fraction > 0.02 {
            // The rim is thicker on one side than the other: the core radius wanders.
            let core_radius = self.necrotic_fraction * (1.0 + 0.3 * n[1] as f64);
            1.0 - ramp((rho_margin - core_radius) * radius, w)
        } else {
            0.0
        };
        let haem = match self.haemorrhage {
            Some((c, r)) => {
                let e = ((q[0] - c[0]).powi(2) + (q[1] - c[1]).powi(2) + (q[2] - c[2]).powi(2)).sqrt() - r;
                (1.0 - ramp(e, w)) * tumour
            }
            None => 0.0,
        };
        let necrotic = (core.min(tumour) - haem).max(0.0);
        let enhancing = (tumour - core.min(tumour) - haem.min(tumour - core.min(tumour))).max(0.0);
        // Oedema falls off over about `oedema_mm` and ends at `OEDEMA_REACH` decay lengths (a
        // compact profile, so the lesion's reach is finite).
        let x = outside_mm.max(0.0) / (OEDEMA_REACH * self.oedema_mm);
        let oedema = if x < 1.0 { self.oedema_strength * (1.0 - x).powi(3) } else { 0.0 };
        let patch = 1.0 + self.heterogeneity * n[2] as f64;
        Some(LesionSample {
            enhancing: enhancing as f32,
            necrotic: necrotic as f32,
            haemorrhage: haem as f32,
            oedema: oedema.clamp(0.0, 1.0) as f32,
            enhancement: (self.enhancement * patch) as f32,
            t2: (self.t2_signal * (1.0 + 0.5 * self.heterogeneity * n[1] as f64)) as f32,
            flair: self.flair_signal as f32,
        })
    }

    /// Where the anatomy seen at `q` came from before this lesion pushed it outwards.
    #[inline]
    pub fn displace(&self, q: [f64; 3]) -> [f64; 3] {
        let d = [q[0] - self.centre[0], q[1] - self.centre[1], q[2] - self.centre[2]];
        let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
        if r2 > self.reach_mm * self.reach_mm {
            return q;
        }
        let scale2 = (2.0 * self.mean_radius()).powi(2);
        // Tapered to exactly zero at the reach, so the displacement field stays continuous.
        let s = self.push * ((-r2 / scale2).exp() - (-self.reach_mm * self.reach_mm / scale2).exp()).max(0.0);
        [self.centre[0] + d[0] * (1.0 - s), self.centre[1] + d[1] * (1.0 - s), self.centre[2] + d[2] * (1.0 - s)]
    }
}

/// The presentation drawn for a case: which phenotype, where, how many.
#[derive(Debug, Clone)]
pub(crate) struct LesionSet {
    pub lesions: Vec<Lesion>,
    pub phenotype: &'static str,
}

/// Where in the brain a lesion sits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Territory {
    /// Lobar white matter near the cortex (typical GBM).
    Hemispheric,
    /// Against the lateral ventricle wall (typical lymphoma).
    Periventricular,
    /// Basal ganglia and thalamus.
    DeepGrey,
    /// Corpus callosum (both; the GBM "butterfly").
    Callosal,
}

/// Draws the lesions of one case. `looks_like` is the diagnosis whose imaging the case shows:
/// the true label, or the other one for a mimic.
pub(crate) fn draw_lesions(rng: &mut StdRng, looks_like: Diagnosis, anatomy: &Anatomy) -> LesionSet {
    match looks_like {
        Diagnosis::Gbm => draw_gbm(rng, anatomy),
        Diagnosis::Pcnsl => draw_lymphoma(rng, anatomy),
    }
}

fn draw_gbm(rng: &mut StdRng, anatomy: &Anatomy) -> LesionSet {
    let territory = pick(rng, &[(Territory::Hemispheric, 0.82), (Territory::Callosal, 0.08), (Territory::Periventricular, 0.06), (Territory::DeepGrey, 0.04)]);
    let radius = rng::uniform(rng, 13.0, 28.0);
    let centre = place(rng, territory, radius, anatomy);
    // Mostly ring-enhancing around necrosis; about 15 % solid.
    let solid = rng::chance(rng, 0.15);
    let necrotic_fraction = if solid { rng::uniform(rng, 0.0, 0.3) } else { rng::uniform(rng, 0.45, 0.78) };
    let t2_iso = rng::chance(rng, 0.15);
    let traits = LesionTraits {
        centre,
        radius,
        necrotic_fraction,
        irregularity: rng::uniform(rng, 0.12, 0.28),
        enhancement: rng::uniform(rng, 1.15, 1.5),
        heterogeneity: rng::uniform(rng, 0.12, 0.3),
        t2_signal: if t2_iso { rng::uniform(rng, 0.46, 0.58) } else { rng::uniform(rng, 0.58, 0.8) },
        flair_signal: rng::uniform(rng, 0.7, 0.9),
        oedema_mm: rng::uniform(rng, 7.0, 18.0),
        oedema_strength: rng::uniform(rng, 0.7, 1.0),
        push: rng::uniform(rng, 0.2, 0.4),
        haemorrhage: rng::chance(rng, 0.35),
    };
    let mut lesions = vec![Lesion::build(rng, traits)];
    // Multifocal GBM exists but is the exception.
    if rng::chance(rng, 0.08) {
        let r = radius * rng::uniform(rng, 0.35, 0.6);
        let c = place(rng, Territory::Hemispheric, r, anatomy);
        let traits = LesionTraits { centre: c, radius: r, necrotic_fraction: rng::uniform(rng, 0.0, 0.5), ..lesions[0].traits() };
        lesions.push(Lesion::build(rng, traits));
    }
    let phenotype = phenotype_of(&lesions);
    LesionSet { lesions, phenotype }
}

fn draw_lymphoma(rng: &mut StdRng, anatomy: &Anatomy) -> LesionSet {
    let territory = pick(rng, &[(Territory::Periventricular, 0.45), (Territory::DeepGrey, 0.22), (Territory::Callosal, 0.15), (Territory::Hemispheric, 0.18)]);
    let radius = rng::uniform(rng, 8.0, 20.0);
    let centre = place(rng, territory, radius, anatomy);
    // Necrosis is uncommon in immunocompetent patients (about 10 % here).
    let necrotic = rng::chance(rng, 0.1);
    let t2_bright = rng::chance(rng, 0.15);
    let base = LesionTraits {
        centre,
        radius,
        necrotic_fraction: if necrotic { rng::uniform(rng, 0.3, 0.6) } else { 0.0 },
        irregularity: rng::uniform(rng, 0.05, 0.16),
        enhancement: rng::uniform(rng, 1.25, 1.55),
        heterogeneity: rng::uniform(rng, 0.02, 0.1),
        t2_signal: if t2_bright { rng::uniform(rng, 0.58, 0.72) } else { rng::uniform(rng, 0.36, 0.56) },
        flair_signal: rng::uniform(rng, 0.55, 0.75),
        oedema_mm: rng::uniform(rng, 3.0, 10.0),
        oedema_strength: rng::uniform(rng, 0.45, 0.85),
        push: rng::uniform(rng, 0.08, 0.22),
        haemorrhage: rng::chance(rng, 0.03),
    };
    let mut lesions = vec![Lesion::build(rng, base)];
    // Multiple lesions in about 20-40 %.
    if rng::chance(rng, 0.3) {
        let extra = if rng::chance(rng, 0.7) { 1 } else { 2 };
        for _ in 0..extra {
            let r = radius * rng::uniform(rng, 0.4, 0.85);
            let t = pick(rng, &[(Territory::Periventricular, 0.5), (Territory::DeepGrey, 0.3), (Territory::Callosal, 0.2)]);
            let c = place(rng, t, r, anatomy);
            let traits = LesionTraits { centre: c, radius: r, haemorrhage: false, ..lesions[0].traits() };
            lesions.push(Lesion::build(rng, traits));
        }
    }
    let phenotype = phenotype_of(&lesions);
    LesionSet { lesions, phenotype }
}

/// An extra-axial, dural-based enhancing mass (meningioma-like): round, homogeneous, avid,
/// T2 iso to grey matter, little oedema, sitting on the inner table of the skull over the
/// convexity, parasagittally or at the skull base, taking the place of the brain beneath it. Out of scope for the
/// GBM-versus-lymphoma question (ASSUMPTIONS.md).
pub(crate) fn draw_extra_axial(rng: &mut StdRng, anatomy: &Anatomy) -> LesionSet {
    let radius = rng::uniform(rng, 9.0, 24.0);
    let side = if rng.random::<bool>() { 1.0 } else { -1.0 };
    // A direction from the head centre: convexity, parasagittal (near the midline, high) or
    // low (sphenoid wing, posterior fossa).
    let u: [f64; 3] = match rng.random_range(0..3) {
        0 => [side * rng::uniform(rng, 0.6, 1.0), rng::uniform(rng, -0.7, 0.7), rng::uniform(rng, 0.0, 0.6)],
        1 => [side * rng::uniform(rng, 0.08, 0.25), rng::uniform(rng, -0.6, 0.6), rng::uniform(rng, 0.8, 1.0)],
        _ => [side * rng::uniform(rng, 0.4, 0.8), rng::uniform(rng, -0.8, 0.8), rng::uniform(rng, -0.5, -0.2)],
    };
    let n = (u[0] * u[0] + u[1] * u[1] + u[2] * u[2]).sqrt();
    let [a, b, c] = anatomy.semi;
    let mean = (a + b + c) / 3.0;
    // Centre a little inside the inner table: most of the sphere is intracranial, with a broad
    // flat base on the dura (the tumour is clipped to the intracranial space when rendered).
    let depth = anatomy.inner_table_mm() + radius * rng::uniform(rng, 0.2, 0.45);
    // Along the ray through `u`, find the point at that depth below the deformed scalp (the
    // deformation moves the surface by several millimetres, more than the margin to the dura).
    let at = |f: f64| [u[0] / n * a * f, u[1] / n * b * f, u[2] / n * c * f];
    let mut f = 1.0 - depth / mean;
    for _ in 0..8 {
        f += (anatomy.depth_at(at(f)) - depth) / mean;
    }
    let centre = at(f);
    let traits = LesionTraits {
        centre,
        radius,
        necrotic_fraction: 0.0,
        irregularity: rng::uniform(rng, 0.03, 0.08),
        enhancement: rng::uniform(rng, 1.25, 1.6),
        heterogeneity: rng::uniform(rng, 0.02, 0.06),
        t2_signal: rng::uniform(rng, 0.45, 0.68),
        flair_signal: rng::uniform(rng, 0.5, 0.7),
        oedema_mm: rng::uniform(rng, 2.0, 8.0),
        oedema_strength: rng::uniform(rng, 0.0, 0.6),
        // It displaces the brain by replacing it; the phantom's displacement field would bend
        // the skull outwards too, so none is applied.
        push: 0.0,
        haemorrhage: false,
    };
    LesionSet { lesions: vec![Lesion::build(rng, traits)], phenotype: "extra-axial" }
}

fn phenotype_of(lesions: &[Lesion]) -> &'static str {
    if lesions.len() > 1 {
        "multifocal"
    } else if lesions.first().is_some_and(|l| l.necrotic_fraction >= 0.3) {
        "ring-necrotic"
    } else {
        "solid"
    }
}

/// The drawn characteristics of a lesion before its noise fields are made.
#[derive(Debug, Clone, Copy)]
struct LesionTraits {
    centre: [f64; 3],
    radius: f64,
    necrotic_fraction: f64,
    irregularity: f64,
    enhancement: f64,
    heterogeneity: f64,
    t2_signal: f64,
    flair_signal: f64,
    oedema_mm: f64,
    oedema_strength: f64,
    push: f64,
    haemorrhage: bool,
}

impl Lesion {
    fn build(rng: &mut StdRng, t: LesionTraits) -> Lesion {
        let semi = [0; 3].map(|_: i32| t.radius * rng::uniform(rng, 0.8, 1.2));
        let haemorrhage = t.haemorrhage.then(|| {
            let off = [0; 3].map(|_: i32| rng::uniform(rng, -0.4, 0.4) * t.radius);
            ([t.centre[0] + off[0], t.centre[1] + off[1], t.centre[2] + off[2]], t.radius * rng::uniform(rng, 0.12, 0.25))
        });
        let max_semi = semi.iter().cloned().fold(0.0, f64::max);
        let reach_mm = max_semi * (1.0 + t.irregularity) + OEDEMA_REACH * t.oedema_mm + 4.0;
        // The noise is only sampled near the margin (see `sample`).
        let noise = NoiseField::random(rng, t.centre, max_semi * (1.0 + 2.0 * t.irregularity) + 8.0);
        Lesion {
            centre: t.centre,
            semi,
            necrotic_fraction: t.necrotic_fraction,
            irregularity: t.irregularity,
            enhancement: t.enhancement,
            heterogeneity: t.heterogeneity,
            t2_signal: t.t2_signal,
            flair_signal: t.flair_signal,
            oedema_mm: t.oedema_mm,
            oedema_strength: t.oedema_strength,
            push: t.push,
            haemorrhage,
            noise,
            reach_mm,
        }
    }

    fn traits(&self) -> LesionTraits {
        LesionTraits {
            centre: self.centre,
            radius: self.mean_radius(),
            necrotic_fraction: self.necrotic_fraction,
            irregularity: self.irregularity,
            enhancement: self.enhancement,
            heterogeneity: self.heterogeneity,
            t2_signal: self.t2_signal,
            flair_signal: self.flair_signal,
            oedema_mm: self.oedema_mm,
            oedema_strength: self.oedema_strength,
            push: self.push,
            haemorrhage: self.haemorrhage.is_some(),
        }
    }
}

fn pick<T: Copy>(rng: &mut StdRng, options: &[(T, f64)]) -> T {
    let total: f64 = options.iter().map(|o| o.1).sum();
    let mut u = rng::uniform(rng, 0.0, total);
    for &(value, weight) in options {
        u -= weight;
        if u < 0.0 {
            return value;
        }
    }
    options[options.len() - 1].0
}

/// A lesion centre in `territory` that keeps a lesion of `radius` inside the brain.
fn place(rng: &mut StdRng, territory: Territory, radius: f64, anatomy: &Anatomy) -> [f64; 3] {
    let side = if rng.random::<bool>() { 1.0 } else { -1.0 };
    let brain = anatomy.brain_semi();
    let inside = |c: [f64; 3]| {
        let r = ((c[0] / brain[0]).powi(2) + (c[1] / brain[1]).powi(2) + (c[2] / brain[2]).powi(2)).sqrt();
        r * brain[0].min(brain[1]).min(brain[2]) + radius * 0.7 < brain[0].min(brain[1]).min(brain[2])
    };
    let mut candidate = [0.0; 3];
    for _ in 0..64 {
        candidate = match territory {
            Territory::Hemispheric => [side * rng::uniform(rng, 18.0, 52.0), rng::uniform(rng, -62.0, 62.0), rng::uniform(rng, -25.0, 48.0)],
            Territory::Periventricular => [side * rng::uniform(rng, 14.0, 26.0), rng::uniform(rng, -28.0, 30.0), rng::uniform(rng, 4.0, 26.0)],
            Territory::DeepGrey => [side * rng::uniform(rng, 8.0, 26.0), rng::uniform(rng, -12.0, 14.0), rng::uniform(rng, -6.0, 8.0)],
            Territory::Callosal => {
                let genu = rng.random::<bool>();
                [side * rng::uniform(rng, 0.0, 8.0), if genu { rng::uniform(rng, -34.0, -22.0) } else { rng::uniform(rng, 24.0, 34.0) }, rng::uniform(rng, 14.0, 22.0)]
            }
        };
        if inside(candidate) {
            return candidate;
        }
    }
    // The territories lie well inside any head this generator makes; this is a last resort
    // that keeps the lesion central rather than failing.
    candidate.map(|c| c * 0.5)
}
