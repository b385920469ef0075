//! From two series (T1 post-contrast and T2) to the model's input: a two-channel crop centred on
//! the enhancing lesion, plus the lesion statistics the out-of-distribution check needs and the
//! key images a clinician sees.
//!
//! The steps, in order (the recipe is versioned as [`RECIPE_VERSION`]; training and the service
//! run this same function, so a change here is a new model input and needs a new version):
//!
//! 1. refuse series that do not share a frame of reference (no registration is attempted), or
//!    that have too few slices to hold a lesion in 3-D;
//! 2. resample T1c onto a coarse working grid (the recipe's spacing, along the T1c voxel axes)
//!    and T2 onto the same grid through patient coordinates (the two affines; trilinear);
//! 3. head mask: intensity threshold, largest connected component, holes filled; the brain is
//!    approximated by the head mask eroded by [`BRAIN_DEPTH_MM`] (scalp fat, skull, dura and the
//!    venous sinuses lie in that rim, and fat and sinuses are bright on T1c);
//! 4. robust normalisation per channel inside the brain: `(x − median) / (IQR / 1.349)`;
//! 5. lesion finding and the scope gate ([`super::lesion`]), on both channels with their smooth
//!    shading divided out ([`super::bias`]) and normalised again: enhancing components inside the
//!    brain are candidates, each kept or rejected as normal anatomy, extra-axial, too small or
//!    too little imaged; the study is out of scope (no input, no estimate) unless one is kept,
//!    and the most enhancing kept candidate is the lesion;
//! 6. crop a cube of `shape × spacing_mm` aligned with the patient axes (L, P, S) and centred on
//!    the lesion, sampled from the original series with 2×2×2 supersampling (a cheap box filter
//!    against aliasing), normalised with the statistics of step 4.
//!
//! Speed: the working grid is at most a few hundred thousand voxels, so the whole recipe runs in
//! tens of milliseconds for a 176×256×256 study on one core.

use std::time::{Duration, Instant};

use ndarray::Array3;
use serde::{Deserialize, Serialize};

use super::bias;
use super::geometry::{Affine, Sampler, Tap, tap};
use super::keyimage::{self, KeyImages};
use super::lesion::{self, Candidate, ScopeReason, ScopeReport};
use super::morphology::{erode, fill_holes, largest_component, percentile, quantiles};
use super::volume::Volume;

/// Names this recipe. Recorded in the model manifest and the audit trail; a model trained on one
/// recipe must not be fed another. `/2`: the lesion is found by [`super::lesion`] (scope gate,
/// coverage instead of refusing every lesion at the edge); for a lesion both recipes accept the
/// input is identical, so members trained on `/1` read `/2` inputs unchanged.
pub const RECIPE_VERSION: &str = "neurocds-prep/2";
/// Fewer slices than this cannot hold a lesion in three dimensions.
pub const MIN_SLICES: usize = 12;
/// Depth below the head's surface where the brain starts (scalp, skull, dura, sinuses above it).
const BRAIN_DEPTH_MM: f64 = 14.0;
/// Normalised intensities are clipped to this range so one bright artefact cannot dominate.
const CLIP: (f32, f32) = (-5.0, 15.0);
/// A head smaller than this is not a head (a localiser, an empty series).
const MIN_HEAD_ML: f64 = 100.0;

/// What the model expects: the crop's depth, height and width in voxels, and its isotropic
/// voxel size. Comes from the manifest's `input` section.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub shape: [usize; 3],
    pub spacing_mm: f64,
}

/// The model-ready input of one study and what was learnt on the way.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `[2, D, H, W]` float32 in C order; channel 0 is T1c, channel 1 is T2. Axis D runs from
    /// inferior to superior, H from anterior to posterior, W from right to left (LPS).
    pub data: Vec<f32>,
    pub shape: [usize; 3],
    /// Volume of the enhancing lesion in millilitres.
    pub lesion_volume_ml: f64,
    /// Mean normalised T1c intensity (robust z) over the enhancing lesion.
    pub t1c_lesion_mean: f64,
    /// Mean normalised T2 intensity (robust z) over the same voxels: what model monitoring
    /// watches of the T2 (the ensemble does not check it against a training range).
    pub t2_lesion_mean: f64,
    /// Centroid of the enhancing lesion in patient coordinates (LPS, mm).
    pub lesion_centre_lps: [f64; 3],
    /// Index of the T1c slice (k) nearest the lesion centre: the instance a key image cites.
    pub lesion_t1c_slice: usize,
    pub key_images: KeyImages,
    /// The lesion as measured by the finder, and every candidate considered.
    pub lesion: Candidate,
    pub scope: ScopeReport,
}

/// Why no input could be prepared. The service shows the reason and gives no probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("preprocessing declined ({kind:?}): {reason}")]
pub struct Abstention {
    pub kind: AbstentionKind,
    pub reason: String,
    /// The candidates considered, when the scope gate declined.
    pub scope: Option<ScopeReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbstentionKind {
    /// A required series (T1c or T2) is absent or has no voxels.
    SeriesMissing,
    /// The two series are in different frames of reference (or one has none), so voxels
    /// cannot be matched through patient coordinates.
    CoregistrationImpossible,
    TooFewSlices,
    /// Nothing that looks like a head (empty or flat image).
    NoHead,
    /// Out of scope: no enhancing component worth a look.
    NoEnhancingLesion,
    /// Out of scope: only normal enhancing anatomy (vessels, sinuses, dura, choroid plexus…).
    NormalAnatomyOnly,
    /// Out of scope: an extra-axial (dural-based) mass.
    ExtraAxialLesion,
    /// Out of scope: an enhancing lesion under 1 mL.
    LesionTooSmall,
    /// Too little of the lesion was imaged on T1c and T2.
    InsufficientCoverage,
    /// The series' geometry (voxel spacing, extent) is not a head's, or would need a working
    /// grid over [`MAX_WORKING_VOXELS`]: refused before any of it is allocated.
    ImplausibleGeometry,
}

/// Largest working grid preprocessing builds (a 256 mm head at 2 mm is 2²¹ voxels).
pub const MAX_WORKING_VOXELS: u64 = 1 << 24;
/// A series spanning more than this (mm) along any axis is not a head.
pub const MAX_EXTENT_MM: f64 = 1000.0;

impl AbstentionKind {
    /// The scope gate's kinds: the study is not a GBM-versus-lymphoma question.
    pub fn is_out_of_scope(self) -> bool {
        matches!(self, Self::NoEnhancingLesion | Self::NormalAnatomyOnly | Self::ExtraAxialLesion | Self::LesionTooSmall | Self::InsufficientCoverage)
    }
}

impl From<ScopeReason> for AbstentionKind {
    fn from(r: ScopeReason) -> Self {
        match r {
            ScopeReason::NoLesion => AbstentionKind::NoEnhancingLesion,
            ScopeReason::NormalAnatomyOnly => AbstentionKind::NormalAnatomyOnly,
            ScopeReason::ExtraAxialLesion => AbstentionKind::ExtraAxialLesion,
            ScopeReason::LesionTooSmall => AbstentionKind::LesionTooSmall,
            ScopeReason::InsufficientCoverage => AbstentionKind::InsufficientCoverage,
        }
    }
}

fn abstain(kind: AbstentionKind, reason: impl Into<String>) -> Abstention {
    Abstention { kind, reason: reason.into(), scope: None }
}

/// Runs the recipe on one study. See the module documentation for the steps.
pub fn prepare(t1c: &Volume, t2: &Volume, recipe: &Recipe) -> Result<Prepared, Abstention> {
    prepare_timed(t1c, t2, recipe, &mut Steps::default())
}

/// How long each step of [`prepare`] took, in order (what the preprocessing benchmark prints).
#[derive(Debug, Default)]
pub struct Steps {
    pub took: Vec<(&'static str, Duration)>,
    since: Option<Instant>,
}

impl Steps {
    fn start(&mut self) {
        self.since = Some(Instant::now());
    }

    /// Ends the step `name` (started at the last lap).
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        if let Some(since) = self.since.replace(now) {
            self.took.push((name, now - since));
        }
    }
}

/// [`prepare`], recording in `steps` how long each step took (steps after an abstention are
/// missing).
pub fn prepare_timed(t1c: &Volume, t2: &Volume, recipe: &Recipe, steps: &mut Steps) -> Result<Prepared, Abstention> {
    use AbstentionKind::*;
    for (name, v) in [("T1c", t1c), ("T2", t2)] {
        if v.data.is_empty() {
            return Err(abstain(SeriesMissing, format!("the {name} series has no voxels")));
        }
        let slices = v.data.dim().0;
        if slices < MIN_SLICES {
            return Err(abstain(TooFewSlices, format!("the {name} series has {slices} slices; at least {MIN_SLICES} are needed")));
        }
    }
    match (&t1c.frame_of_reference_uid, &t2.frame_of_reference_uid) {
        (Some(a), Some(b)) if a == b => {}
        (Some(_), Some(_)) => return Err(abstain(CoregistrationImpossible, "T1c and T2 are in different frames of reference")),
        _ => return Err(abstain(CoregistrationImpossible, "a series has no frame of reference")),
    }
    if recipe.shape.contains(&0) || !(recipe.spacing_mm > 0.0) {
        return Err(abstain(SeriesMissing, format!("invalid recipe {recipe:?}")));
    }
    // Header spacing sizes everything below: a head's, or refused before anything is allocated.
    for v in [t1c, t2] {
        let (k, j, i) = v.data.dim();
        let extent = [i as f64 * v.spacing[0], j as f64 * v.spacing[1], k as f64 * v.spacing[2]];
        if v.spacing.iter().any(|s| !(s.is_finite() && *s > 1e-3)) || extent.iter().any(|e| *e > MAX_EXTENT_MM) {
            return Err(abstain(
                ImplausibleGeometry,
                format!("series {}: voxel spacing {:?} mm over {:?} voxels is not a head (limit {MAX_EXTENT_MM} mm per axis)", v.series_uid, v.spacing, [i, j, k]),
            ));
        }
    }
    let a1 = Affine::from_volume(t1c);
    let a2 = Affine::from_volume(t2);
    let (Some(a1_inv), Some(a2_inv)) = (a1.inverse(), a2.inverse()) else {
        return Err(abstain(CoregistrationImpossible, "a series has a singular orientation matrix"));
    };

    // Step 2: the working grid, along the T1c voxel axes at the recipe's spacing; checked
    // against the budget before it is allocated.
    let sp = recipe.spacing_mm;
    let (nk, nj, ni) = t1c.data.dim();
    let step = [sp / t1c.spacing[0], sp / t1c.spacing[1], sp / t1c.spacing[2]];
    let working = [0, 1, 2].map(|a| ([ni, nj, nk][a].saturating_sub(1) as f64 / step[a]).floor() + 1.0);
    if working.iter().product::<f64>() > MAX_WORKING_VOXELS as f64 {
        return Err(abstain(ImplausibleGeometry, format!("the working grid {working:?} would exceed {MAX_WORKING_VOXELS} voxels")));
    }
    let dims = [
        ((nk - 1) as f64 / step[2]).floor() as usize + 1,
        ((nj - 1) as f64 / step[1]).floor() as usize + 1,
        ((ni - 1) as f64 / step[0]).floor() as usize + 1,
    ];
    // working (a, b, c) → T1c index (i, j, k)
    let grid_to_t1 = Affine::scale(step);
    let grid_to_t2 = a2_inv.compose(&a1).compose(&grid_to_t1);
    steps.start();
    let (w1, w2) = rayon::join(|| resample(&t1c.data, &grid_to_t1, dims), || resample(&t2.data, &grid_to_t2, dims));
    steps.lap("resampling");
    let voxel_ml = sp * sp * sp / 1000.0;

    // Step 3: head mask.
    let mask = head_mask(&w1, &w2);
    steps.lap("head mask");
    let head_voxels = mask.iter().filter(|&&m| m).count();
    if (head_voxels as f64) * voxel_ml < MIN_HEAD_ML {
        return Err(abstain(NoHead, format!("only {:.0} mL of the T1c volume looks like tissue", head_voxels as f64 * voxel_ml)));
    }

    // Step 4: robust statistics inside the brain.
    let inner = erode(&mask, BRAIN_DEPTH_MM / sp);
    steps.lap("brain (eroded)");
    let (s1, s2) = rayon::join(|| RobustStats::inside(&w1, &inner), || RobustStats::inside(&w2, &inner));
    let s1 = s1.ok_or_else(|| abstain(NoHead, "the T1c series is flat inside the brain"))?;
    let s2 = s2.ok_or_else(|| abstain(NoHead, "the T2 series is flat inside the brain (or does not cover it)"))?;
    steps.lap("robust statistics");

    // Step 5: the lesion, or why the study is out of scope, on images whose shading (bias field)
    // is divided out and normalised again.
    let (f1, f2) = rayon::join(|| bias::flatten(&w1, &inner), || bias::flatten(&w2, &inner));
    steps.lap("bias field");
    let (flat1, flat2) = rayon::join(|| RobustStats::inside(&f1, &inner), || RobustStats::inside(&f2, &inner));
    steps.lap("flattened statistics");
    let flat1 = flat1.ok_or_else(|| abstain(NoHead, "the T1c series is flat inside the brain"))?;
    let flat2 = flat2.ok_or_else(|| abstain(NoHead, "the T2 series is flat inside the brain (or does not cover it)"))?;
    let z1 = |x: f32| flat1.z(x);
    let z2 = |x: f32| flat2.z(x);
    let t2_dims = t2.data.dim();
    let t2_covers = |(c, b, a): (usize, usize, usize)| {
        let [i, j, k] = grid_to_t2.apply([a as f64, b as f64, c as f64]);
        let inside = |x: f64, n: usize| x >= -0.5 && x <= n as f64 - 0.5;
        inside(i, t2_dims.2) && inside(j, t2_dims.1) && inside(k, t2_dims.0)
    };
    let to_lps = |g: [f64; 3]| a1.apply(grid_to_t1.apply(g));
    let scene = lesion::Scene { t1: &f1, t2: &f2, z1: &z1, z2: &z2, head: &mask, brain: &inner, t2_covers: &t2_covers, to_lps: &to_lps, spacing_mm: sp };
    let finding = match lesion::find(&scene) {
        Ok(f) => f,
        Err(report) => {
            let reason = report.out_of_scope.unwrap_or(ScopeReason::NoLesion);
            return Err(Abstention { kind: reason.into(), reason: format!("out of scope ({}): {}", reason.as_str(), reason.explanation()), scope: Some(report) });
        }
    };
    steps.lap("lesion finding");
    let lesion = Component { voxels: finding.voxels };
    let lesion_volume_ml = lesion.voxels.len() as f64 * voxel_ml;
    let t1c_lesion_mean = lesion.voxels.iter().map(|&ix| s1.z(w1[ix]) as f64).sum::<f64>() / lesion.voxels.len() as f64;
    let t2_lesion_mean = lesion.voxels.iter().map(|&ix| s2.z(w2[ix]) as f64).sum::<f64>() / lesion.voxels.len() as f64;
    let centroid_grid = lesion.centroid();
    let centroid_t1 = grid_to_t1.apply(centroid_grid);
    let lesion_centre_lps = a1.apply(centroid_t1);
    let lesion_t1c_slice = (centroid_t1[2].round().max(0.0) as usize).min(nk - 1);

    // Step 6: the crop.
    let data = crop(t1c, t2, &a1_inv, &a2_inv, &s1, &s2, lesion_centre_lps, recipe);
    steps.lap("crop");

    let mut lesion_mask = Array3::from_elem(dims, false);
    for &ix in &lesion.voxels {
        lesion_mask[ix] = true;
    }
    let grid_from_lps = grid_to_t1.inverse().map(|g| g.compose(&a1_inv));
    let key_images = match grid_from_lps {
        Some(g) => keyimage::render(t1c, t2, &a1, &a1_inv, &a2_inv, &lesion_mask, &g, lesion_centre_lps),
        None => KeyImages::default(),
    };
    steps.lap("key images");
    Ok(Prepared { data, shape: recipe.shape, lesion_volume_ml, t1c_lesion_mean, t2_lesion_mean, lesion_centre_lps, lesion_t1c_slice, key_images, lesion: finding.candidate, scope: finding.report })
}

/// Samples `src` at every point of a grid `[c, b, a]` of `dims`, where `map` takes `(a, b, c)`
/// to a source index. Points outside the source read 0 (air). Slices in parallel.
///
/// The sample positions are the same numbers as `map.apply` gives point by point, computed per
/// axis ([`Affine::terms`]); when the map is axis-aligned (the T1c onto its own grid) the
/// interpolation taps are too, so a voxel costs its eight reads and seven blends.
fn resample(src: &Array3<f32>, map: &Affine, dims: [usize; 3]) -> Array3<f32> {
    use rayon::prelude::*;
    let sampler = Sampler::new(src);
    let [ni, nj, nk] = sampler.dims();
    let plane = dims[1] * dims[2];
    let mut out = vec![0f32; dims[0] * plane];
    let grid = [dims[2], dims[1], dims[0]];
    if map.is_axis_aligned() {
        let along = |axis: usize, n: usize| -> Vec<Option<Tap>> {
            (0..grid[axis]).map(|x| tap(map.apply(std::array::from_fn(|r| if r == axis { x as f64 } else { 0.0 }))[axis], n)).collect()
        };
        let (ti, tj, tk) = (along(0, ni), along(1, nj), along(2, nk));
        out.par_chunks_mut(plane.max(1)).zip(tk.par_iter()).for_each(|(slice, tk)| {
            let Some(tk) = *tk else { return };
            for (row, tj) in slice.chunks_exact_mut(dims[2].max(1)).zip(&tj) {
                let Some(tj) = *tj else { continue };
                for (v, ti) in row.iter_mut().zip(&ti) {
                    if let Some(ti) = *ti {
                        *v = sampler.blend(ti, tj, tk);
                    }
                }
            }
        });
    } else {
        let indices = grid.map(|n| (0..n).map(|x| x as f64).collect::<Vec<f64>>());
        let terms = map.terms([&indices[0], &indices[1], &indices[2]]);
        out.par_chunks_mut(plane.max(1)).enumerate().for_each(|(c, slice)| {
            for (b, row) in slice.chunks_exact_mut(dims[2].max(1)).enumerate() {
                for (a, v) in row.iter_mut().enumerate() {
                    *v = sampler.at(map.from_terms(&terms, [a, b, c])).unwrap_or(0.0);
                }
            }
        });
    }
    Array3::from_shape_vec(dims, out).unwrap_or_else(|_| Array3::zeros(dims))
}

/// Tissue: brighter than a tenth of the bright end on either sequence; then the largest
/// connected piece (drops noise and detached objects) with its holes (ventricles, necrosis,
/// dark CSF on T1) filled.
fn head_mask(t1: &Array3<f32>, t2: &Array3<f32>) -> Array3<bool> {
    let (p1, p2) = rayon::join(|| percentile(t1.iter().copied().collect(), 0.99), || percentile(t2.iter().copied().collect(), 0.99));
    let (thr1, thr2) = (0.1 * p1, 0.1 * p2);
    let raw: Vec<bool> = t1.iter().zip(t2.iter()).map(|(a, b)| *a > thr1 || *b > thr2).collect();
    let raw = Array3::from_shape_vec(t1.dim(), raw).unwrap_or_else(|_| Array3::from_elem(t1.dim(), false));
    let mut mask = largest_component(&raw);
    fill_holes(&mut mask);
    mask
}

/// Median and IQR-derived scale of one channel inside a mask.
#[derive(Debug, Clone, Copy)]
struct RobustStats {
    median: f32,
    scale: f32,
}

impl RobustStats {
    fn inside(v: &Array3<f32>, mask: &Array3<bool>) -> Option<RobustStats> {
        let values: Vec<f32> = v.iter().zip(mask.iter()).filter(|(_, m)| **m).map(|(x, _)| *x).collect();
        let [q1, median, q3] = quantiles(values, [0.25, 0.5, 0.75]);
        // 1.349 × σ is the IQR of a normal distribution
        let scale = (q3 - q1) / 1.349;
        (scale.is_finite() && scale > 1e-6 * median.abs().max(1e-6)).then_some(RobustStats { median, scale })
    }

    #[inline]
    fn z(&self, x: f32) -> f32 {
        (x - self.median) / self.scale
    }

    #[inline]
    fn normalise(&self, x: f32) -> f32 {
        self.z(x).clamp(CLIP.0, CLIP.1)
    }
}


/// An enhancing component on the working grid.
struct Component {
    voxels: Vec<(usize, usize, usize)>,
}

impl Component {
    /// Centroid as working-grid `(a, b, c)` (column, row, slice).
    fn centroid(&self) -> [f64; 3] {
        let n = self.voxels.len() as f64;
        let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
        for &(k, j, i) in &self.voxels {
            a += i as f64;
            b += j as f64;
            c += k as f64;
        }
        [a / n, b / n, c / n]
    }
}

/// The `[2, D, H, W]` crop around `centre` (LPS), aligned with the patient axes.
#[allow(clippy::too_many_arguments)]
fn crop(t1c: &Volume, t2: &Volume, a1_inv: &Affine, a2_inv: &Affine, s1: &RobustStats, s2: &RobustStats, centre: [f64; 3], recipe: &Recipe) -> Vec<f32> {
    use rayon::prelude::*;
    let [d, h, w] = recipe.shape;
    let sp = recipe.spacing_mm;
    let n = d * h * w;
    let mut out = vec![0f32; 2 * n];
    // Sub-voxel offsets of the 2×2×2 supersampling, in mm: sample `o` is offset by +q along axis
    // `a` when bit `a` of `o` is set, by -q otherwise.
    let q = sp / 4.0;
    let half = |len: usize| (len as f64 - 1.0) / 2.0;
    // The samples' patient coordinates along each axis (`2 · index + bit`), and the products
    // each series' inverse affine sums over them ([`Affine::terms`]): the positions are computed
    // per axis, never per voxel, and are the same numbers.
    let along = |axis: usize, len: usize| -> Vec<f64> {
        (0..len)
            .flat_map(|x| {
                let p = centre[axis] + (x as f64 - half(len)) * sp;
                [p + -q, p + q]
            })
            .collect()
    };
    let positions = [along(0, w), along(1, h), along(2, d)];
    let positions = [&positions[0][..], &positions[1][..], &positions[2][..]];
    let (terms1, terms2) = (a1_inv.terms(positions), a2_inv.terms(positions));
    let air1 = s1.normalise(0.0);
    let air2 = s2.normalise(0.0);
    // One plane of both channels per task (the same arithmetic per voxel as one loop).
    let (ch1, ch2) = out.split_at_mut(n);
    let (v1s, v2s) = (Sampler::new(&t1c.data), Sampler::new(&t2.data));
    ch1.par_chunks_mut(h * w).zip(ch2.par_chunks_mut(h * w)).enumerate().for_each(|(z, (plane1, plane2))| {
        for y in 0..h {
            for x in 0..w {
                let (mut v1, mut v2) = (0.0f32, 0.0f32);
                for o in 0..8 {
                    let at = [2 * x + (o & 1), 2 * y + (o >> 1 & 1), 2 * z + (o >> 2 & 1)];
                    v1 += v1s.at(a1_inv.from_terms(&terms1, at)).map_or(air1, |v| s1.normalise(v));
                    v2 += v2s.at(a2_inv.from_terms(&terms2, at)).map_or(air2, |v| s2.normalise(v));
                }
                plane1[y * w + x] = v1 / 8.0;
                plane2[y * w + x] = v2 / 8.0;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hole_filling_closes_an_enclosed_cavity_but_not_an_open_one() {
        let mut m = Array3::from_shape_fn((7, 7, 7), |(k, j, i)| (1..6).contains(&k) && (1..6).contains(&j) && (1..6).contains(&i));
        m[[3, 3, 3]] = false;
        fill_holes(&mut m);
        assert!(m[[3, 3, 3]]);
        assert!(!m[[0, 0, 0]]);
    }
}
