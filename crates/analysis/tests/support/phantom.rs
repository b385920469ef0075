//! A synthetic head for preprocessing tests and benchmarks: an ellipsoid with cortex, grey/white
//! texture and ventricles, an optional enhancing sphere, deterministic speckle; T1c or T2
//! contrast, in a shared frame of reference. Shared by `tests/preprocess_recipe.rs` and
//! `benches/preprocess.rs`.
#![allow(dead_code)]

use ndarray::Array3;
use neurocds_analysis::imaging::Volume;

/// Deterministic speckle in [-1, 1].
pub fn noise(k: usize, j: usize, i: usize) -> f32 {
    let mut x = (k as u64).wrapping_mul(73_856_093) ^ (j as u64).wrapping_mul(19_349_663) ^ (i as u64).wrapping_mul(83_492_791);
    x ^= x >> 13;
    x = x.wrapping_mul(0x5bd1e995);
    x ^= x >> 15;
    (x % 2001) as f32 / 1000.0 - 1.0
}

pub struct Phantom {
    pub dims: (usize, usize, usize),
    /// Size of the grid the head is drawn for; a volume with fewer slices is a slab through it.
    pub anatomy_dims: (usize, usize, usize),
    pub spacing: [f64; 3],
    /// Lesion centre in mm from the volume's origin (x, y, z), radius mm; `None`: no lesion.
    pub lesion: Option<([f64; 3], f64)>,
    pub lesion_t1: f32,
    pub lesion_t2: f32,
    pub frame: &'static str,
    pub origin: [f64; 3],
}

impl Phantom {
    pub fn head() -> Phantom {
        Phantom {
            dims: (64, 96, 96),
            anatomy_dims: (64, 96, 96),
            spacing: [2.0, 2.0, 2.5],
            lesion: Some(([110.0, 80.0, 90.0], 9.0)),
            lesion_t1: 260.0,
            lesion_t2: 70.0,
            frame: "1.2.3.4",
            origin: [-96.0, -120.0, -80.0],
        }
    }

    /// `t1`: the T1c series; otherwise T2 (CSF bright, lesion as given).
    pub fn volume(&self, t1: bool) -> Volume {
        let (nk, nj, ni) = self.anatomy_dims;
        let [si, sj, sk] = self.spacing;
        let centre = [ni as f64 * si / 2.0, nj as f64 * sj / 2.0, nk as f64 * sk / 2.0];
        let radii = [0.42 * ni as f64 * si, 0.45 * nj as f64 * sj, 0.42 * nk as f64 * sk];
        let data = Array3::from_shape_fn(self.dims, |(k, j, i)| {
            let p = [i as f64 * si, j as f64 * sj, k as f64 * sk];
            let r = ((0..3).map(|a| ((p[a] - centre[a]) / radii[a]).powi(2)).sum::<f64>()).sqrt();
            if let Some((c, rad)) = self.lesion {
                let d = ((0..3).map(|a| (p[a] - c[a]).powi(2)).sum::<f64>()).sqrt();
                if d < rad {
                    let v = if t1 { self.lesion_t1 } else { self.lesion_t2 };
                    return v + 5.0 * noise(k, j, i);
                }
            }
            let tissue = if r > 1.0 {
                0.0
            } else if r > 0.9 {
                if t1 { 90.0 } else { 120.0 } // cortex
            } else if r < 0.2 {
                if t1 { 30.0 } else { 250.0 } // ventricles
            } else if (i / 6 + j / 6 + k / 6) % 2 == 0 {
                if t1 { 110.0 } else { 80.0 } // white matter
            } else if t1 {
                85.0
            } else {
                110.0
            };
            if tissue == 0.0 { 2.0 * noise(k, j, i).abs() } else { tissue + 6.0 * noise(k, j, i) }
        });
        let o = self.origin;
        Volume {
            data,
            affine: [[si, 0.0, 0.0, o[0]], [0.0, sj, 0.0, o[1]], [0.0, 0.0, sk, o[2]], [0.0, 0.0, 0.0, 1.0]],
            spacing: self.spacing,
            frame_of_reference_uid: Some(self.frame.to_string()),
            series_uid: if t1 { "t1c".into() } else { "t2".into() },
        }
    }
}

