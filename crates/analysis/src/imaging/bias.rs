//! Intensity non-uniformity ("bias field") on the working grid: the slow multiplicative shading
//! that receive coils and 1.5 T body coils lay over an MR image, estimated as a smooth surface and
//! divided out.
//!
//! Why the lesion finder needs it: enhancement is measured in robust z-scores of the brain's own
//! intensities. Under a strong field (30 % across the head is common on older 1.5 T systems) the
//! brain's intensity spread widens, every z-score shrinks, and a tumour's rim in the darker half
//! of the head barely clears the enhancement threshold — it breaks into thin patches that are
//! rightly rejected as vessels. Flattening the field first gives the rim back its contrast.
//!
//! The method is a deliberately small cousin of N4: the logarithm of intensity inside the brain
//! is fitted with a plane in the grid's coordinates (four terms: a head-wide gradient), by least
//! squares trimmed iteratively to the voxels near the fit (the dominant tissue), so that tumour,
//! CSF and grey/white contrast do not pull it. A plane cannot follow a lesion, only the head-wide
//! shading, so dividing it out keeps every lesion's contrast against its surroundings. A
//! quadratic surface was tried and refused: where the field of view cuts the head it
//! extrapolates, and at the cut edge it lifted noise into "enhancement" that passed the scope
//! gate on five normal brains in 131 (BENCHMARKS.md, "Scope gate").
//!
//! The field is used by the lesion finder only; the model's input is normalised as before (its
//! recipe is [`super::preprocess::RECIPE_VERSION`]).

use ndarray::Array3;

use super::morphology::quantiles_by;

/// Terms of the fitted log-field: 1, x, y, z.
const TERMS: usize = 4;
/// Rounds of fitting, each keeping the voxels whose residual lies within [`KEEP_BAND`] robust
/// standard deviations of the last fit.
const ROUNDS: usize = 4;
const KEEP_BAND: f64 = 1.0;
/// The field is clamped to this range of log-intensity (a factor of e^±0.7 ≈ 0.5–2), so the
/// plane's extrapolation beyond the brain cannot invent contrast.
const MAX_LOG_FIELD: f64 = 0.7;
/// Every `STRIDE`-th voxel along each axis enters the fit (the field is smooth).
const STRIDE: usize = 2;
/// Too few usable voxels for a fit: no correction.
const MIN_SAMPLES: usize = 500;

/// Divides a smooth multiplicative field, fitted inside `brain`, out of `image`. Returns the
/// image unchanged when the brain holds too few positive voxels to fit one.
pub(crate) fn flatten(image: &Array3<f32>, brain: &Array3<bool>) -> Array3<f32> {
    match fit(image, brain) {
        Some(field) => {
            let mut out = image.clone();
            let (nk, nj, ni) = out.dim();
            // The plane's terms tabulated per axis: the same products, summed in the same order
            // as [`LogField::log_at`], so every voxel gets exactly its number.
            let [along_k, along_j, along_i] = field.terms_along([nk, nj, ni]);
            let constant = field.constant_term();
            if let Some(values) = out.as_slice_mut() {
                for (row, values) in values.chunks_exact_mut(ni.max(1)).enumerate() {
                    let (k, j) = (row / nj.max(1), row % nj.max(1));
                    for (v, &term_i) in values.iter_mut().zip(&along_i) {
                        let log = [constant, along_k[k], along_j[j], term_i].into_iter().sum::<f64>().clamp(-MAX_LOG_FIELD, MAX_LOG_FIELD);
                        *v *= (-log).exp() as f32;
                    }
                }
            } else {
                out.indexed_iter_mut().for_each(|(ix, v)| *v *= (-field.log_at(ix)).exp() as f32);
            }
            out
        }
        None => image.clone(),
    }
}

/// A fitted log-field: the plane's coefficients over coordinates centred and scaled to the
/// grid.
struct LogField {
    coefficients: [f64; TERMS],
    centre: [f64; 3],
    scale: f64,
}

impl LogField {
    fn log_at(&self, (k, j, i): (usize, usize, usize)) -> f64 {
        let p = basis([(k as f64 - self.centre[0]) / self.scale, (j as f64 - self.centre[1]) / self.scale, (i as f64 - self.centre[2]) / self.scale]);
        p.iter().zip(&self.coefficients).map(|(a, b)| a * b).sum::<f64>().clamp(-MAX_LOG_FIELD, MAX_LOG_FIELD)
    }

    /// `basis[0] · coefficient[0]`, the first product [`LogField::log_at`] sums.
    fn constant_term(&self) -> f64 {
        basis([0.0; 3])[0] * self.coefficients[0]
    }

    /// The products [`LogField::log_at`] sums for each index along `k`, `j` and `i` (each depends
    /// on one axis only).
    fn terms_along(&self, dims: [usize; 3]) -> [Vec<f64>; 3] {
        std::array::from_fn(|axis| (0..dims[axis]).map(|n| (n as f64 - self.centre[axis]) / self.scale * self.coefficients[axis + 1]).collect())
    }
}

fn basis([x, y, z]: [f64; 3]) -> [f64; TERMS] {
    [1.0, x, y, z]
}

fn fit(image: &Array3<f32>, brain: &Array3<bool>) -> Option<LogField> {
    let (nk, nj, ni) = image.dim();
    let centre = [nk as f64 / 2.0, nj as f64 / 2.0, ni as f64 / 2.0];
    let scale = (nk.max(nj).max(ni) as f64 / 2.0).max(1.0);
    // Every STRIDE-th voxel along each axis, in C order.
    let mut samples: Vec<([f64; TERMS], f64)> = Vec::new();
    for k in (0..nk).step_by(STRIDE) {
        for j in (0..nj).step_by(STRIDE) {
            for i in (0..ni).step_by(STRIDE) {
                let v = image[(k, j, i)];
                if v > 0.0 && brain[(k, j, i)] {
                    samples.push((basis([(k as f64 - centre[0]) / scale, (j as f64 - centre[1]) / scale, (i as f64 - centre[2]) / scale]), (v as f64).ln()));
                }
            }
        }
    }
    if samples.len() < MIN_SAMPLES {
        return None;
    }
    let mut keep = vec![true; samples.len()];
    let mut coefficients = [0.0; TERMS];
    for _ in 0..ROUNDS {
        coefficients = least_squares(samples.iter().zip(&keep).filter(|(_, k)| **k).map(|(s, _)| s))?;
        let residuals: Vec<f64> = samples.iter().map(|(p, y)| y - p.iter().zip(&coefficients).map(|(a, b)| a * b).sum::<f64>()).collect();
        let (median, spread) = median_and_spread(&residuals)?;
        for (k, r) in keep.iter_mut().zip(&residuals) {
            *k = (r - median).abs() <= KEEP_BAND * spread;
        }
        if keep.iter().filter(|&&k| k).count() < MIN_SAMPLES {
            return None;
        }
    }
    // The field's level is arbitrary (robust normalisation follows): drop the constant term, so
    // corrected intensities stay in the range of the originals.
    Some(LogField { coefficients: { coefficients[0] = 0.0; coefficients }, centre, scale })
}

/// Median and robust standard deviation (IQR / 1.349) of `values`.
fn median_and_spread(values: &[f64]) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    // By selection: the elements a sort would put at these ranks, in linear time.
    let [q1, median, q3] = quantiles_by(v, [0.25, 0.5, 0.75], f64::total_cmp)?;
    let spread = (q3 - q1) / 1.349;
    Some((median, spread.max(1e-6)))
}

/// Solves the normal equations of `samples` by Gaussian elimination with partial pivoting;
/// `None` when they are singular (too few distinct positions).
fn least_squares<'a>(samples: impl Iterator<Item = &'a ([f64; TERMS], f64)>) -> Option<[f64; TERMS]> {
    let mut a = [[0.0f64; TERMS + 1]; TERMS];
    for (p, y) in samples {
        for r in 0..TERMS {
            for c in 0..TERMS {
                a[r][c] += p[r] * p[c];
            }
            a[r][TERMS] += p[r] * y;
        }
    }
    for col in 0..TERMS {
        let pivot = (col..TERMS).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        for row in 0..TERMS {
            if row != col {
                let f = a[row][col] / a[col][col];
                for c in col..=TERMS {
                    a[row][c] -= f * a[col][c];
                }
            }
        }
    }
    Some(std::array::from_fn(|r| a[r][TERMS] / a[r][r]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ball(n: usize) -> Array3<bool> {
        let c = n as f64 / 2.0;
        Array3::from_shape_fn((n, n, n), |(k, j, i)| (k as f64 - c).powi(2) + (j as f64 - c).powi(2) + (i as f64 - c).powi(2) < (0.4 * n as f64).powi(2))
    }

    /// Robust spread of `image` inside `mask`, relative to its median.
    fn relative_spread(image: &Array3<f32>, mask: &Array3<bool>) -> f64 {
        let v: Vec<f64> = image.iter().zip(mask).filter(|(_, m)| **m).map(|(x, _)| *x as f64).collect();
        let (median, spread) = median_and_spread(&v).unwrap();
        spread / median
    }

    #[test]
    fn a_shaded_uniform_brain_comes_out_flat() {
        let n = 40;
        let brain = ball(n);
        // A 40 % shading from front to back and 20 % from left to right.
        let shaded = Array3::from_shape_fn((n, n, n), |(k, j, _)| (100.0 * (0.4 * (k as f64 / n as f64 - 0.5) + 0.2 * (j as f64 / n as f64 - 0.5)).exp()) as f32);
        let flat = flatten(&shaded, &brain);
        assert!(relative_spread(&shaded, &brain) > 0.05);
        assert!(relative_spread(&flat, &brain) < 0.005, "{}", relative_spread(&flat, &brain));
    }

    #[test]
    fn a_lesion_keeps_its_contrast_against_the_brain_around_it() {
        let n = 40;
        let brain = ball(n);
        let lesion = |k: usize, j: usize, i: usize| (k as f64 - 14.0).powi(2) + (j as f64 - 20.0).powi(2) + (i as f64 - 20.0).powi(2) < 16.0;
        let shaded = Array3::from_shape_fn((n, n, n), |(k, j, i)| {
            let tissue = if lesion(k, j, i) { 200.0 } else { 100.0 };
            (tissue * (0.5 * (k as f64 / n as f64 - 0.5)).exp()) as f32
        });
        let flat = flatten(&shaded, &brain);
        let ratio = flat[(14, 20, 20)] / flat[(14, 20, 27)];
        assert!((ratio - 2.0).abs() < 0.05, "lesion / neighbour = {ratio}");
        assert!((flat[(10, 20, 20)] / flat[(30, 20, 20)] - 1.0).abs() < 0.02, "the shading is gone");
    }

    #[test]
    fn too_little_brain_leaves_the_image_as_it_is() {
        let image = Array3::from_elem((6, 6, 6), 5.0f32);
        let brain = Array3::from_elem((6, 6, 6), true);
        assert_eq!(flatten(&image, &brain), image);
    }
}
