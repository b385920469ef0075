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
