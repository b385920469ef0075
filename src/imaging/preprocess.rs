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
//! 5. lesion: enhancing voxels (robust z above [`ENHANCING_Z`]) inside the brain, connected
//!    components, the one with the most enhancement wins; abstain when there is none or when it
//!    touches the volume's edge;
//! 6. crop a cube of `shape × spacing_mm` aligned with the patient axes (L, P, S) and centred on
//!    the lesion, sampled from the original series with 2×2×2 supersampling (a cheap box filter
//!    against aliasing), normalised with the statistics of step 4.
//!
//! Speed: the working grid is at most a few hundred thousand voxels, so the whole recipe runs in
//! tens of milliseconds for a 176×256×256 study on one core.

use ndarray::Array3;
use serde::{Deserialize, Serialize};

use super::keyimage::{self, KeyImages};
use super::volume::Volume;

/// Names this recipe. Recorded in the model manifest and the audit trail; a model trained on one
/// recipe must not be fed another.
pub const RECIPE_VERSION: &str = "neurocds-prep/1";

/// Robust z-score above which a T1c voxel counts as enhancing.
const ENHANCING_Z: f32 = 2.0;
/// Smallest enhancing component that counts as a lesion (vessels and noise are smaller).
const MIN_LESION_ML: f64 = 0.25;
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
    /// Centroid of the enhancing lesion in patient coordinates (LPS, mm).
    pub lesion_centre_lps: [f64; 3],
    /// Index of the T1c slice (k) nearest the lesion centre: the instance a key image cites.
    pub lesion_t1c_slice: usize,
    pub key_images: KeyImages,
}

/// Why no input could be prepared. The service shows the reason and gives no probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("preprocessing declined ({kind:?}): {reason}")]
pub struct Abstention {
    pub kind: AbstentionKind,
    pub reason: String,
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
    NoEnhancingLesion,
    /// The lesion is cut by the edge of the imaged volume: its extent is unknown.
    LesionAtEdge,
}

fn abstain(kind: AbstentionKind, reason: impl Into<String>) -> Abstention {
    Abstention { kind, reason: reason.into() }
}

/// Runs the recipe on one study. See the module documentation for the steps.
pub fn prepare(t1c: &Volume, t2: &Volume, recipe: &Recipe) -> Result<Prepared, Abstention> {
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
    let a1 = Affine::from_volume(t1c);
    let a2 = Affine::from_volume(t2);
    let (Some(a1_inv), Some(a2_inv)) = (a1.inverse(), a2.inverse()) else {
        return Err(abstain(CoregistrationImpossible, "a series has a singular orientation matrix"));
    };

    // Step 2: the working grid, along the T1c voxel axes at the recipe's spacing.
    let sp = recipe.spacing_mm;
    let (nk, nj, ni) = t1c.data.dim();
    let step = [sp / t1c.spacing[0], sp / t1c.spacing[1], sp / t1c.spacing[2]];
    let dims = [
        ((nk - 1) as f64 / step[2]).floor() as usize + 1,
        ((nj - 1) as f64 / step[1]).floor() as usize + 1,
        ((ni - 1) as f64 / step[0]).floor() as usize + 1,
    ];
    // working (a, b, c) → T1c index (i, j, k)
    let grid_to_t1 = Affine::scale(step);
    let grid_to_t2 = a2_inv.compose(&a1).compose(&grid_to_t1);
    let (w1, w2) = rayon::join(|| resample(&t1c.data, &grid_to_t1, dims), || resample(&t2.data, &grid_to_t2, dims));
    let voxel_ml = sp * sp * sp / 1000.0;

    // Step 3: head mask.
    let mask = head_mask(&w1, &w2);
    let head_voxels = mask.iter().filter(|&&m| m).count();
    if (head_voxels as f64) * voxel_ml < MIN_HEAD_ML {
        return Err(abstain(NoHead, format!("only {:.0} mL of the T1c volume looks like tissue", head_voxels as f64 * voxel_ml)));
    }

    // Step 4: robust statistics inside the brain.
    let inner = erode(&mask, BRAIN_DEPTH_MM / sp);
    let s1 = RobustStats::inside(&w1, &inner).ok_or_else(|| abstain(NoHead, "the T1c series is flat inside the brain"))?;
    let s2 = RobustStats::inside(&w2, &inner).ok_or_else(|| abstain(NoHead, "the T2 series is flat inside the brain (or does not cover it)"))?;

    // Step 5: the enhancing lesion.
    let candidates = Array3::from_shape_fn(w1.dim(), |ix| inner[ix] && s1.z(w1[ix]) > ENHANCING_Z);
    let lesion = largest_enhancing_component(&candidates, &w1, &s1).filter(|c| c.voxels.len() as f64 * voxel_ml >= MIN_LESION_ML);
    let Some(lesion) = lesion else {
        return Err(abstain(NoEnhancingLesion, "no enhancing lesion of at least 0.25 mL was found on T1c"));
    };
    if lesion.touches_edge(dims) {
        return Err(abstain(LesionAtEdge, "the enhancing lesion touches the edge of the imaged volume"));
    }
    let lesion_volume_ml = lesion.voxels.len() as f64 * voxel_ml;
    let t1c_lesion_mean = lesion.voxels.iter().map(|&ix| s1.z(w1[ix]) as f64).sum::<f64>() / lesion.voxels.len() as f64;
    let centroid_grid = lesion.centroid();
    let centroid_t1 = grid_to_t1.apply(centroid_grid);
    let lesion_centre_lps = a1.apply(centroid_t1);
    let lesion_t1c_slice = (centroid_t1[2].round().max(0.0) as usize).min(nk - 1);

    // Step 6: the crop.
    let data = crop(t1c, t2, &a1_inv, &a2_inv, &s1, &s2, lesion_centre_lps, recipe);

    let mut lesion_mask = Array3::from_elem(dims, false);
    for &ix in &lesion.voxels {
        lesion_mask[ix] = true;
    }
    let grid_from_lps = grid_to_t1.inverse().map(|g| g.compose(&a1_inv));
    let key_images = match grid_from_lps {
        Some(g) => keyimage::render(t1c, t2, &a1, &a1_inv, &a2_inv, &lesion_mask, &g, lesion_centre_lps),
        None => KeyImages::default(),
    };
    Ok(Prepared { data, shape: recipe.shape, lesion_volume_ml, t1c_lesion_mean, lesion_centre_lps, lesion_t1c_slice, key_images })
}

/// A 3×4 affine map `y = M·[x, 1]` between index spaces and patient space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Affine(pub [[f64; 4]; 3]);

impl Affine {
    pub(crate) fn from_volume(v: &Volume) -> Affine {
        Affine([v.affine[0], v.affine[1], v.affine[2]])
    }

    fn scale(s: [f64; 3]) -> Affine {
        Affine([[s[0], 0.0, 0.0, 0.0], [0.0, s[1], 0.0, 0.0], [0.0, 0.0, s[2], 0.0]])
    }

    pub(crate) fn apply(&self, x: [f64; 3]) -> [f64; 3] {
        let m = &self.0;
        std::array::from_fn(|r| m[r][0] * x[0] + m[r][1] * x[1] + m[r][2] * x[2] + m[r][3])
    }

    /// `self ∘ other`: first `other`, then `self`.
    pub(crate) fn compose(&self, other: &Affine) -> Affine {
        let (a, b) = (&self.0, &other.0);
        let mut out = [[0.0; 4]; 3];
        for r in 0..3 {
            for c in 0..4 {
                out[r][c] = (0..3).map(|k| a[r][k] * b[k][c]).sum::<f64>() + if c == 3 { a[r][3] } else { 0.0 };
            }
        }
        Affine(out)
    }

    pub(crate) fn inverse(&self) -> Option<Affine> {
        let m = &self.0;
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        if !det.is_finite() || det.abs() < 1e-12 {
            return None;
        }
        let inv = |r: usize, c: usize| {
            // cofactor of (c, r) over det: the adjugate is the transposed cofactor matrix
            let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
            let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
            (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) / det
        };
        let mut out = [[0.0; 4]; 3];
        for r in 0..3 {
            for c in 0..3 {
                out[r][c] = inv(r, c);
            }
            out[r][3] = -(0..3).map(|k| out[r][k] * m[k][3]).sum::<f64>();
        }
        Some(Affine(out))
    }
}

/// Trilinear interpolation at continuous index `(i, j, k)` (column, row, slice); `None` outside
/// the volume (half a voxel of tolerance at the faces, clamped).
#[inline]
pub(crate) fn trilinear(data: &Array3<f32>, p: [f64; 3]) -> Option<f32> {
    let (nk, nj, ni) = data.dim();
    let [i, j, k] = p;
    let inside = |x: f64, n: usize| x >= -0.5 && x <= n as f64 - 0.5;
    if !(inside(i, ni) && inside(j, nj) && inside(k, nk)) {
        return None;
    }
    let clamp = |x: f64, n: usize| x.clamp(0.0, (n - 1) as f64);
    let (i, j, k) = (clamp(i, ni), clamp(j, nj), clamp(k, nk));
    let (i0, j0, k0) = (i.floor() as usize, j.floor() as usize, k.floor() as usize);
    let (i1, j1, k1) = ((i0 + 1).min(ni - 1), (j0 + 1).min(nj - 1), (k0 + 1).min(nk - 1));
    let (fi, fj, fk) = ((i - i0 as f64) as f32, (j - j0 as f64) as f32, (k - k0 as f64) as f32);
    let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
    let c00 = lerp(data[[k0, j0, i0]], data[[k0, j0, i1]], fi);
    let c01 = lerp(data[[k0, j1, i0]], data[[k0, j1, i1]], fi);
    let c10 = lerp(data[[k1, j0, i0]], data[[k1, j0, i1]], fi);
    let c11 = lerp(data[[k1, j1, i0]], data[[k1, j1, i1]], fi);
    Some(lerp(lerp(c00, c01, fj), lerp(c10, c11, fj), fk))
}

/// Samples `src` at every point of a grid `[c, b, a]` of `dims`, where `map` takes `(a, b, c)`
/// to a source index. Points outside the source read 0 (air). Slices in parallel.
fn resample(src: &Array3<f32>, map: &Affine, dims: [usize; 3]) -> Array3<f32> {
    use rayon::prelude::*;
    let plane = dims[1] * dims[2];
    let mut out = vec![0f32; dims[0] * plane];
    out.par_chunks_mut(plane.max(1)).enumerate().for_each(|(c, slice)| {
        for b in 0..dims[1] {
            for a in 0..dims[2] {
                slice[b * dims[2] + a] = trilinear(src, map.apply([a as f64, b as f64, c as f64])).unwrap_or(0.0);
            }
        }
    });
    Array3::from_shape_vec(dims, out).unwrap_or_else(|_| Array3::zeros(dims))
}

/// Tissue: brighter than a tenth of the bright end on either sequence; then the largest
/// connected piece (drops noise and detached objects) with its holes (ventricles, necrosis,
/// dark CSF on T1) filled.
fn head_mask(t1: &Array3<f32>, t2: &Array3<f32>) -> Array3<bool> {
    let thr1 = 0.1 * percentile(t1.iter().copied().collect(), 0.99);
    let thr2 = 0.1 * percentile(t2.iter().copied().collect(), 0.99);
    let raw = Array3::from_shape_fn(t1.dim(), |ix| t1[ix] > thr1 || t2[ix] > thr2);
    let comps = components(&raw);
    let mut mask = Array3::from_elem(t1.dim(), false);
    if let Some(biggest) = comps.into_iter().max_by_key(|c| c.len()) {
        for ix in biggest {
            mask[ix] = true;
        }
    }
    fill_holes(&mut mask);
    mask
}

/// The `q`-quantile (nearest rank) of `values`; 0 for none.
fn percentile(mut values: Vec<f32>, q: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let rank = ((values.len() - 1) as f64 * q).round() as usize;
    let (_, v, _) = values.select_nth_unstable_by(rank, f32::total_cmp);
    *v
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
        let median = percentile(values.clone(), 0.5);
        let q1 = percentile(values.clone(), 0.25);
        let q3 = percentile(values, 0.75);
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


/// Flat (C-order) index arithmetic on a `[k, j, i]` grid, for the flood fills: a `u32` per voxel
/// on the stack instead of a tuple, and no ndarray bounds checks in the inner loop.
struct Grid {
    nk: usize,
    nj: usize,
    ni: usize,
}

impl Grid {
    fn of<T>(a: &Array3<T>) -> Grid {
        let (nk, nj, ni) = a.dim();
        Grid { nk, nj, ni }
    }

    fn unflat(&self, f: usize) -> (usize, usize, usize) {
        (f / (self.nj * self.ni), (f / self.ni) % self.nj, f % self.ni)
    }

    fn on_face(&self, f: usize) -> bool {
        let (k, j, i) = self.unflat(f);
        k == 0 || j == 0 || i == 0 || k + 1 == self.nk || j + 1 == self.nj || i + 1 == self.ni
    }

    /// Calls `visit` with each 6-neighbour of flat index `f` inside the grid.
    #[inline]
    fn for_each_neighbour(&self, f: usize, mut visit: impl FnMut(usize)) {
        let (k, j, i) = self.unflat(f);
        let plane = self.nj * self.ni;
        if i > 0 {
            visit(f - 1);
        }
        if i + 1 < self.ni {
            visit(f + 1);
        }
        if j > 0 {
            visit(f - self.ni);
        }
        if j + 1 < self.nj {
            visit(f + self.ni);
        }
        if k > 0 {
            visit(f - plane);
        }
        if k + 1 < self.nk {
            visit(f + plane);
        }
    }
}

/// 6-connected components of the `true` voxels, each as its list of indices.
fn components(mask: &Array3<bool>) -> Vec<Vec<(usize, usize, usize)>> {
    let grid = Grid::of(mask);
    let flat: Vec<bool> = mask.iter().copied().collect();
    let mut seen = vec![false; flat.len()];
    let mut out = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..flat.len() {
        if !flat[start] || seen[start] {
            continue;
        }
        let mut comp = Vec::new();
        seen[start] = true;
        stack.push(start);
        while let Some(p) = stack.pop() {
            comp.push(grid.unflat(p));
            grid.for_each_neighbour(p, |q| {
                if flat[q] && !seen[q] {
                    seen[q] = true;
                    stack.push(q);
                }
            });
        }
        out.push(comp);
    }
    out
}

/// Marks as inside every background voxel that cannot reach the volume's faces.
fn fill_holes(mask: &mut Array3<bool>) {
    let grid = Grid::of(mask);
    let flat: Vec<bool> = mask.iter().copied().collect();
    let mut outside = vec![false; flat.len()];
    let mut stack: Vec<usize> = (0..flat.len()).filter(|&f| !flat[f] && grid.on_face(f)).collect();
    for &f in &stack {
        outside[f] = true;
    }
    while let Some(p) = stack.pop() {
        grid.for_each_neighbour(p, |q| {
            if !flat[q] && !outside[q] {
                outside[q] = true;
                stack.push(q);
            }
        });
    }
    for (m, o) in mask.iter_mut().zip(outside) {
        *m = !o;
    }
}

/// The voxels of `mask` deeper than `depth` voxels below its surface, by a two-pass 3-4-5
/// chamfer distance transform (within about 8 % of Euclidean, one pass each way, no per-voxel
/// allocation). Beyond the volume's faces counts as inside, so a head cut by the field of view
/// keeps its voxels there and a lesion at the cut is still found (and then refused as
/// [`AbstentionKind::LesionAtEdge`]), not silently lost.
fn erode(mask: &Array3<bool>, depth: f64) -> Array3<bool> {
    let (nk, nj, ni) = mask.dim();
    const FAR: u32 = u32::MAX / 2;
    let mut dist: Vec<u32> = mask.iter().map(|&m| if m { FAR } else { 0 }).collect();
    // Half of the 26-neighbourhood that precedes a voxel in raster order, with chamfer weights
    // (3 face, 4 edge, 5 corner; 3 = one voxel).
    let mut half = Vec::new();
    for dk in -1isize..=0 {
        for dj in -1isize..=1 {
            for di in -1isize..=1 {
                let before = dk < 0 || (dk == 0 && (dj < 0 || (dj == 0 && di < 0)));
                if before {
                    let weight = match dk.abs() + dj.abs() + di.abs() {
                        1 => 3,
                        2 => 4,
                        _ => 5,
                    };
                    half.push((dk, dj, di, weight));
                }
            }
        }
    }
    let index = |k: usize, j: usize, i: usize| (k * nj + j) * ni + i;
    let pass = |forward: bool, dist: &mut Vec<u32>| {
        for kk in 0..nk {
            let k = if forward { kk } else { nk - 1 - kk };
            for jj in 0..nj {
                let j = if forward { jj } else { nj - 1 - jj };
                for ii in 0..ni {
                    let i = if forward { ii } else { ni - 1 - ii };
                    let here = index(k, j, i);
                    if dist[here] == 0 {
                        continue;
                    }
                    let mut best = dist[here];
                    for &(dk, dj, di, w) in &half {
                        let (dk, dj, di) = if forward { (dk, dj, di) } else { (-dk, -dj, -di) };
                        let (k2, j2, i2) = (k as isize + dk, j as isize + dj, i as isize + di);
                        if k2 < 0 || j2 < 0 || i2 < 0 || k2 >= nk as isize || j2 >= nj as isize || i2 >= ni as isize {
                            continue;
                        }
                        best = best.min(dist[index(k2 as usize, j2 as usize, i2 as usize)] + w);
                    }
                    dist[here] = best;
                }
            }
        }
    };
    pass(true, &mut dist);
    pass(false, &mut dist);
    let threshold = (depth * 3.0).round() as u32;
    Array3::from_shape_vec(mask.dim(), dist.into_iter().map(|d| d > threshold).collect()).unwrap_or_else(|_| mask.clone())
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

    fn touches_edge(&self, dims: [usize; 3]) -> bool {
        self.voxels.iter().any(|&(k, j, i)| k == 0 || j == 0 || i == 0 || k + 1 == dims[0] || j + 1 == dims[1] || i + 1 == dims[2])
    }
}

/// The component carrying the most enhancement (sum of robust z): a big, avid lesion beats a
/// vessel or a speck of noise.
fn largest_enhancing_component(candidates: &Array3<bool>, t1: &Array3<f32>, s: &RobustStats) -> Option<Component> {
    components(candidates)
        .into_iter()
        .map(|voxels| {
            let score: f64 = voxels.iter().map(|&ix| s.z(t1[ix]) as f64).sum();
            (score, voxels)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, voxels)| Component { voxels })
}

/// The `[2, D, H, W]` crop around `centre` (LPS), aligned with the patient axes.
#[allow(clippy::too_many_arguments)]
fn crop(t1c: &Volume, t2: &Volume, a1_inv: &Affine, a2_inv: &Affine, s1: &RobustStats, s2: &RobustStats, centre: [f64; 3], recipe: &Recipe) -> Vec<f32> {
    let [d, h, w] = recipe.shape;
    let sp = recipe.spacing_mm;
    let n = d * h * w;
    let mut out = vec![0f32; 2 * n];
    // Sub-voxel offsets of the 2×2×2 supersampling, in mm.
    let q = sp / 4.0;
    let offsets: [[f64; 3]; 8] = std::array::from_fn(|o| {
        let sgn = |bit: usize| if o >> bit & 1 == 1 { q } else { -q };
        [sgn(0), sgn(1), sgn(2)]
    });
    let half = |len: usize| (len as f64 - 1.0) / 2.0;
    let air1 = s1.normalise(0.0);
    let air2 = s2.normalise(0.0);
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let p = [
                    centre[0] + (x as f64 - half(w)) * sp,
                    centre[1] + (y as f64 - half(h)) * sp,
                    centre[2] + (z as f64 - half(d)) * sp,
                ];
                let (mut v1, mut v2) = (0.0f32, 0.0f32);
                for o in &offsets {
                    let po = [p[0] + o[0], p[1] + o[1], p[2] + o[2]];
                    v1 += trilinear(&t1c.data, a1_inv.apply(po)).map_or(air1, |v| s1.normalise(v));
                    v2 += trilinear(&t2.data, a2_inv.apply(po)).map_or(air2, |v| s2.normalise(v));
                }
                let flat = (z * h + y) * w + x;
                out[flat] = v1 / 8.0;
                out[n + flat] = v2 / 8.0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_inverse_composes_to_identity() {
        let a = Affine([[0.0, 0.9, 0.1, -20.0], [1.2, 0.0, 0.0, 5.0], [0.0, -0.2, 3.0, 40.0]]);
        let inv = a.inverse().unwrap();
        let p = [3.0, -7.5, 11.0];
        let back = inv.apply(a.apply(p));
        for (x, y) in p.iter().zip(back) {
            assert!((x - y).abs() < 1e-9, "{p:?} came back as {back:?}");
        }
    }

    #[test]
    fn trilinear_reproduces_a_linear_ramp_between_voxels() {
        let v = Array3::from_shape_fn((4, 5, 6), |(k, j, i)| (i + 10 * j + 100 * k) as f32);
        let got = trilinear(&v, [2.25, 1.5, 0.75]).unwrap();
        assert!((got - (2.25 + 15.0 + 75.0)).abs() < 1e-4, "{got}");
        assert!(trilinear(&v, [-1.0, 0.0, 0.0]).is_none());
    }

    #[test]
    fn hole_filling_closes_an_enclosed_cavity_but_not_an_open_one() {
        let mut m = Array3::from_shape_fn((7, 7, 7), |(k, j, i)| (1..6).contains(&k) && (1..6).contains(&j) && (1..6).contains(&i));
        m[[3, 3, 3]] = false;
        fill_holes(&mut m);
        assert!(m[[3, 3, 3]]);
        assert!(!m[[0, 0, 0]]);
    }
}
