//! Geometry shared by preprocessing and key images: affine maps between voxel indices and
//! patient space (LPS, millimetres), and trilinear sampling.

use ndarray::Array3;

use super::volume::Volume;

/// A 3×4 affine map `y = M·[x, 1]` between index spaces and patient space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Affine(pub [[f64; 4]; 3]);

impl Affine {
    pub(crate) fn from_volume(v: &Volume) -> Affine {
        Affine([v.affine[0], v.affine[1], v.affine[2]])
    }

    pub(crate) fn scale(s: [f64; 3]) -> Affine {
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
/// the volume (half a voxel of tolerance at the faces, clamped). One sample; code that samples
/// a volume many times holds a [`Sampler`].
#[cfg(test)]
pub(crate) fn trilinear(data: &Array3<f32>, p: [f64; 3]) -> Option<f32> {
    Sampler::new(data).at(p)
}

/// Where one continuous index falls along an axis of `n` voxels: the two voxels it lies between
/// and how far from the first, as trilinear interpolation weighs them. Each axis is independent, so a
/// grid whose sample positions vary along one axis each can compute these once per row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tap {
    lo: usize,
    hi: usize,
    frac: f32,
}

/// The tap of index `x` on an axis of `n` voxels; `None` outside (beyond half a voxel from the
/// end voxels' centres).
#[inline(always)]
pub(crate) fn tap(x: f64, n: usize) -> Option<Tap> {
    if n == 0 || !(x >= -0.5 && x <= n as f64 - 0.5) {
        return None;
    }
    let x = x.clamp(0.0, (n - 1) as f64);
    // x >= 0 here, where truncation is the floor (and needs no libm call).
    let lo = x as usize;
    Some(Tap { lo, hi: (lo + 1).min(n - 1), frac: (x - lo as f64) as f32 })
}

/// `a`'s values in C order: borrowed when it is laid out so (every array built here is), copied
/// otherwise. What the flat-index code (sampling, labelling) reads.
pub(crate) fn in_c_order<T: Copy>(a: &Array3<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// Trilinear interpolation in one volume, through its flat C-order buffer (no ndarray shape
/// reads or index checks per voxel read): continuous index `(i, j, k)` (column, row, slice),
/// `None` outside the volume (half a voxel of tolerance at the faces, clamped), linear blends
/// along columns, then rows, then slices.
pub(crate) struct Sampler<'a> {
    data: std::borrow::Cow<'a, [f32]>,
    nk: usize,
    nj: usize,
    ni: usize,
}

impl<'a> Sampler<'a> {
    /// Borrows `data` when it is in standard layout (every volume built here is); copies it in
    /// C order otherwise.
    pub(crate) fn new(data: &'a Array3<f32>) -> Sampler<'a> {
        let (nk, nj, ni) = data.dim();
        Sampler { data: in_c_order(data), nk, nj, ni }
    }

    /// `[ni, nj, nk]`: voxels along the column, row and slice axes.
    pub(crate) fn dims(&self) -> [usize; 3] {
        [self.ni, self.nj, self.nk]
    }

    /// The value at continuous index `(i, j, k)`; `None` outside the volume.
    #[inline(always)]
    pub(crate) fn at(&self, [i, j, k]: [f64; 3]) -> Option<f32> {
        let (ti, tj, tk) = (tap(i, self.ni)?, tap(j, self.nj)?, tap(k, self.nk)?);
        Some(self.blend(ti, tj, tk))
    }

    /// The value between the voxels of three taps (column, row, slice).
    #[inline(always)]
    pub(crate) fn blend(&self, i: Tap, j: Tap, k: Tap) -> f32 {
        let d = &*self.data;
        let row = |k: usize, j: usize| (k * self.nj + j) * self.ni;
        let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
        let (r00, r01, r10, r11) = (row(k.lo, j.lo), row(k.lo, j.hi), row(k.hi, j.lo), row(k.hi, j.hi));
        let c00 = lerp(d[r00 + i.lo], d[r00 + i.hi], i.frac);
        let c01 = lerp(d[r01 + i.lo], d[r01 + i.hi], i.frac);
        let c10 = lerp(d[r10 + i.lo], d[r10 + i.hi], i.frac);
        let c11 = lerp(d[r11 + i.lo], d[r11 + i.hi], i.frac);
        lerp(lerp(c00, c01, j.frac), lerp(c10, c11, j.frac), k.frac)
    }
}

impl Affine {
    /// True when each output coordinate depends on its own input coordinate only (the
    /// off-diagonal terms are zero): then, for non-negative inputs, output `r` is exactly
    /// `apply` of input `r` with the other two set to 0, and a grid's sample positions can be
    /// computed per axis.
    pub(crate) fn is_axis_aligned(&self) -> bool {
        let m = &self.0;
        (0..3).all(|r| (0..3).all(|c| r == c || m[r][c] == 0.0))
    }

    /// The products `apply` sums, tabulated for a grid whose points take the values
    /// `positions[c]` along input coordinate `c`: `terms[c][r][x] = M[r][c] · positions[c][x]`.
    /// `apply` at `(positions[0][a], positions[1][b], positions[2][c])` is then exactly
    /// `((terms[0][r][a] + terms[1][r][b]) + terms[2][r][c]) + M[r][3]`, the same products summed
    /// in the same order, so a tabulated grid gets the same numbers bit for bit.
    pub(crate) fn terms(&self, positions: [&[f64]; 3]) -> [[Vec<f64>; 3]; 3] {
        std::array::from_fn(|c| std::array::from_fn(|r| positions[c].iter().map(|&x| self.0[r][c] * x).collect()))
    }

    /// Output `r` from the tabulated terms of input indices `(a, b, c)` (see [`Affine::terms`]).
    #[inline]
    pub(crate) fn from_terms(&self, terms: &[[Vec<f64>; 3]; 3], [a, b, c]: [usize; 3]) -> [f64; 3] {
        std::array::from_fn(|r| terms[0][r][a] + terms[1][r][b] + terms[2][r][c] + self.0[r][3])
    }
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
}
