//! Measuring an enhancing component on the working grid: its size, thickness and length, how
//! bright it is against the brain around it, what surrounds it (brain, CSF, oedema), how broadly
//! it rests on the skull's inner surface, and how much of it was imaged. No verdict here: the
//! rules that read these measurements are in [`super::judge`].

use ndarray::Array3;

use super::report::Candidate;
use crate::imaging::morphology::{self, CHAMFER_UNIT};

/// Robust z-score above which a T1c voxel counts as enhancing.
pub(super) const ENHANCING_Z: f32 = 2.0;
/// Robust T2 z-score below which a voxel is darker than white matter: flowing blood (sinuses,
/// arteries, veins) or dura.
pub(super) const FLOW_VOID_Z: f32 = -2.0;
/// A candidate this close to a face of the volume that cuts through the head has no imaged
/// skull on that side (the brain mask runs to the cut).
const SKULL_UNSEEN_MM: f64 = 20.0;
/// Thickness of the surroundings examined around a candidate, in working-grid voxels.
const SHELL_VOXELS: usize = 2;

/// The working-grid images and masks the finder reads.
pub(crate) struct Scene<'a> {
    pub t1: &'a Array3<f32>,
    pub t2: &'a Array3<f32>,
    /// Robust z-score maps of T1c and T2 (brain statistics).
    pub z1: &'a dyn Fn(f32) -> f32,
    pub z2: &'a dyn Fn(f32) -> f32,
    /// Tissue of the head, and where the brain starts (below the scalp, skull and dura).
    pub head: &'a Array3<bool>,
    pub brain: &'a Array3<bool>,
    /// Whether the T2 series covers each working voxel.
    pub t2_covers: &'a dyn Fn((usize, usize, usize)) -> bool,
    /// Working-grid index `(a, b, c)` → patient coordinates.
    pub to_lps: &'a dyn Fn([f64; 3]) -> [f64; 3],
    pub spacing_mm: f64,
}

/// A box around a component with a margin, and the component, filled, inside it.
struct Local {
    origin: [usize; 3],
    dims: [usize; 3],
    /// The component with its enclosed voxels (necrosis), in box coordinates.
    mass: Array3<bool>,
}

impl Local {
    fn around(voxels: &[(usize, usize, usize)], grid: (usize, usize, usize), margin: usize) -> Local {
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        for &(k, j, i) in voxels {
            for (a, v) in [k, j, i].into_iter().enumerate() {
                lo[a] = lo[a].min(v);
                hi[a] = hi[a].max(v);
            }
        }
        let full = [grid.0, grid.1, grid.2];
        let origin: [usize; 3] = std::array::from_fn(|a| lo[a].saturating_sub(margin));
        let dims: [usize; 3] = std::array::from_fn(|a| (hi[a] + margin + 1).min(full[a]) - origin[a]);
        // One voxel of padding on every side so that hole filling sees an outside.
        let mut mass = Array3::from_elem((dims[0] + 2, dims[1] + 2, dims[2] + 2), false);
        for &(k, j, i) in voxels {
            mass[[k - origin[0] + 1, j - origin[1] + 1, i - origin[2] + 1]] = true;
        }
        // Close one-voxel gaps in a ring (dilate, fill, erode back), then keep the enhancing
        // voxels themselves whatever the erosion took.
        let closed = {
            let mut m = dilate(&mass, 1);
            fill_enclosed(&mut m);
            morphology::depth_map(&m).mapv(|d| d > CHAMFER_UNIT)
        };
        fill_enclosed(&mut mass);
        mass.zip_mut_with(&closed, |m, &c| *m |= c);
        Local { origin, dims, mass }
    }

    /// Global index of a padded box index, when it is inside the grid.
    fn global(&self, (k, j, i): (usize, usize, usize)) -> Option<(usize, usize, usize)> {
        let inside = (1..=self.dims[0]).contains(&k) && (1..=self.dims[1]).contains(&j) && (1..=self.dims[2]).contains(&i);
        inside.then(|| (k - 1 + self.origin[0], j - 1 + self.origin[1], i - 1 + self.origin[2]))
    }
}

/// Fills what a ring encloses: in 3-D, and slice by slice along each axis (a rim with a gap in
/// 3-D is usually closed in some plane).
fn fill_enclosed(mass: &mut Array3<bool>) {
    morphology::fill_holes(mass);
    let (nk, nj, ni) = mass.dim();
    for axis in 0..3 {
        let n = [nk, nj, ni][axis];
        for s in 0..n {
            let mut slice = match axis {
                0 => mass.slice(ndarray::s![s..s + 1, .., ..]).to_owned(),
                1 => mass.slice(ndarray::s![.., s..s + 1, ..]).to_owned(),
                _ => mass.slice(ndarray::s![.., .., s..s + 1]).to_owned(),
            };
            if !slice.iter().any(|&m| m) {
                continue;
            }
            morphology::fill_holes_2d(&mut slice, axis);
            let mut target = match axis {
                0 => mass.slice_mut(ndarray::s![s..s + 1, .., ..]),
                1 => mass.slice_mut(ndarray::s![.., s..s + 1, ..]),
                _ => mass.slice_mut(ndarray::s![.., .., s..s + 1]),
            };
            target.zip_mut_with(&slice, |t, &f| *t |= f);
        }
    }
}


/// Measures one component (`rank` by summed enhancement `score`); its verdict is left to
/// [`super::judge`].
pub(super) fn measure(scene: &Scene, rank: usize, score: f64, voxels: &[(usize, usize, usize)]) -> Candidate {
    let sp = scene.spacing_mm;
    let voxel_ml = sp.powi(3) / 1000.0;
    let grid = scene.t1.dim();
    let local = Local::around(voxels, grid, SHELL_VOXELS + 1);
    let mass_voxels = local.mass.iter().filter(|&&m| m).count();
    let mass_ml = mass_voxels as f64 * voxel_ml;

    // Thickness: the deepest point of the filled mass (chamfer units; a face voxel is 1 voxel).
    let depth = morphology::depth_map(&local.mass);
    let deepest = depth.iter().copied().max().unwrap_or(0) as f64 / CHAMFER_UNIT as f64;
    let thickness_mm = (2.0 * deepest - 1.0).max(0.0) * sp;
    let length_mm = longest_axis_voxels(&local.mass) * sp;
    let flow_void = voxels.iter().filter(|&&ix| (scene.z2)(scene.t2[ix]) < FLOW_VOID_Z).count() as f64 / voxels.len().max(1) as f64;

    // The surroundings: dilate the mass by SHELL_VOXELS (26-neighbourhood) and classify.
    let shell = dilate(&local.mass, SHELL_VOXELS);
    let (mut n, mut csf, mut brain, mut oedema) = (0usize, 0usize, 0usize, 0usize);
    let mut brain_z1 = 0.0f64;
    for ((ix, &s), &m) in shell.indexed_iter().zip(local.mass.iter()) {
        if !s || m {
            continue;
        }
        let Some(g) = local.global(ix) else { continue };
        n += 1;
        if !scene.head[g] {
            continue;
        }
        let (z1, z2) = ((scene.z1)(scene.t1[g]), (scene.z2)(scene.t2[g]));
        if z1 < -2.5 && z2 > 1.5 {
            csf += 1;
        } else if scene.brain[g] && (-2.5..=ENHANCING_Z).contains(&z1) && z2 > -2.5 {
            brain += 1;
            brain_z1 += z1 as f64;
            if z2 > 2.0 {
                oedema += 1;
            }
        }
    }
    let share = |x: usize| if n == 0 { 0.0 } else { x as f64 / n as f64 };

    // Contact with the inner surface of the skull, and with the edge of the imaged volume:
    // voxels of the mass next to head tissue that is not brain (dura, skull, bone-dark voxels),
    // or on the grid's faces; each over the mass's equatorial cross-section.
    let radius_vox = (3.0 * mass_voxels as f64 / (4.0 * std::f64::consts::PI)).cbrt();
    let equator = std::f64::consts::PI * radius_vox * radius_vox;
    let (mut surface, mut edge, mut t2_in) = (0usize, 0usize, 0usize);
    let (gk, gj, gi) = grid;
    for (ix, &m) in local.mass.indexed_iter() {
        if !m {
            continue;
        }
        let Some(g) = local.global(ix) else { continue };
        if (scene.t2_covers)(g) {
            t2_in += 1;
        }
        let (k, j, i) = g;
        if k == 0 || j == 0 || i == 0 || k + 1 == gk || j + 1 == gj || i + 1 == gi {
            edge += 1;
        }
        let mut touches = false;
        for (dk, dj, di) in [(-1i64, 0i64, 0i64), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)] {
            let (k2, j2, i2) = (k as i64 + dk, j as i64 + dj, i as i64 + di);
            if k2 < 0 || j2 < 0 || i2 < 0 || k2 >= gk as i64 || j2 >= gj as i64 || i2 >= gi as i64 {
                continue;
            }
            let q = (k2 as usize, j2 as usize, i2 as usize);
            // The skull's inner surface: head tissue outside the brain, or (where the field of
            // view cuts the head and the brain mask runs to the edge) bone and dura, dark on
            // both T1c and T2 as nothing inside the brain is.
            let skull_like = (scene.z1)(scene.t1[q]) < -2.5 && (scene.z2)(scene.t2[q]) < -1.0;
            if scene.head[q] && (!scene.brain[q] || skull_like) {
                touches = true;
            }
        }
        surface += usize::from(touches);
    }
    let surface_contact = if equator > 0.0 { surface as f64 / equator } else { 0.0 };
    let skull_unseen = {
        let reach = (SKULL_UNSEEN_MM / sp).ceil() as usize;
        let (lo, hi) = voxels.iter().fold(([usize::MAX; 3], [0usize; 3]), |(mut lo, mut hi), &(k, j, i)| {
            for (a, v) in [k, j, i].into_iter().enumerate() {
                lo[a] = lo[a].min(v);
                hi[a] = hi[a].max(v);
            }
            (lo, hi)
        });
        let full = [gk, gj, gi];
        (0..3).any(|a| (lo[a] < reach && head_on_face(scene.head, a, 0)) || (hi[a] + reach >= full[a] && head_on_face(scene.head, a, full[a] - 1)))
    };
    let t1c_coverage = sphere_share_imaged(edge as f64 / equator.max(1e-9));
    let t2_coverage = if mass_voxels == 0 { 0.0 } else { t2_in as f64 / mass_voxels as f64 };

    let n_vox = voxels.len() as f64;
    let centroid = {
        let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
        for &(k, j, i) in voxels {
            a += i as f64;
            b += j as f64;
            c += k as f64;
        }
        [a / n_vox, b / n_vox, c / n_vox]
    };
    Candidate {
        rank,
        enhancing_ml: n_vox * voxel_ml,
        mass_ml,
        centre_lps: (scene.to_lps)(centroid),
        mean_enhancement_z: score / n_vox,
        local_contrast: if brain == 0 { score / n_vox } else { score / n_vox - brain_z1 / brain as f64 },
        thickness_mm,
        length_mm,
        flow_void,
        csf_around: share(csf),
        brain_around: share(brain),
        oedema_around: share(oedema),
        surface_contact,
        t1c_coverage,
        t2_coverage,
        skull_unseen,
        rejection: None,
    }
}

/// Whether head tissue reaches face `index` (0 or last) of axis `axis`: the field of view cuts
/// the head there.
fn head_on_face(head: &Array3<bool>, axis: usize, index: usize) -> bool {
    head.index_axis(ndarray::Axis(axis), index).iter().filter(|&&h| h).count() > 20
}

/// Length (voxels) of the mask along its principal axis: √(12 λ₁), the length of a uniform rod
/// with the same variance, λ₁ the largest eigenvalue of the voxel coordinates' covariance.
fn longest_axis_voxels(mask: &Array3<bool>) -> f64 {
    let pts: Vec<[f64; 3]> = mask.indexed_iter().filter(|(_, m)| **m).map(|((k, j, i), _)| [k as f64, j as f64, i as f64]).collect();
    if pts.len() < 2 {
        return pts.len() as f64;
    }
    let n = pts.len() as f64;
    let mean: [f64; 3] = std::array::from_fn(|a| pts.iter().map(|p| p[a]).sum::<f64>() / n);
    let mut cov = [[0.0; 3]; 3];
    for p in &pts {
        for a in 0..3 {
            for b in 0..3 {
                cov[a][b] += (p[a] - mean[a]) * (p[b] - mean[b]) / n;
            }
        }
    }
    // Power iteration: the covariance is symmetric positive semi-definite.
    let mut v = [1.0, 0.7, 0.4];
    let mut lambda = 0.0;
    for _ in 0..50 {
        let w: [f64; 3] = std::array::from_fn(|a| (0..3).map(|b| cov[a][b] * v[b]).sum());
        let norm = (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt();
        if norm < 1e-12 {
            return 1.0;
        }
        lambda = norm;
        v = w.map(|x| x / norm);
    }
    (12.0 * lambda).sqrt()
}

/// Share of a sphere left when a plane cuts it so that the cut face has `ratio` times the area
/// of the sphere's equator (the part containing the centre; 1 when uncut).
fn sphere_share_imaged(ratio: f64) -> f64 {
    if ratio <= 0.0 {
        return 1.0;
    }
    // cut face area / equator = 1 − (h / r)², h the plane's distance from the centre.
    let h = (1.0 - ratio.min(1.0)).sqrt();
    // cap beyond the plane: π (r − h)² (2r + h) / 3 of 4π r³ / 3
    let cap = (1.0 - h).powi(2) * (2.0 + h) / 4.0;
    1.0 - cap
}

/// Dilation by `steps` voxels in the 26-neighbourhood (within the array).
fn dilate(mask: &Array3<bool>, steps: usize) -> Array3<bool> {
    let (nk, nj, ni) = mask.dim();
    let mut current = mask.clone();
    for _ in 0..steps {
        let prev = current.clone();
        for ((k, j, i), &m) in prev.indexed_iter() {
            if !m {
                continue;
            }
            for k2 in k.saturating_sub(1)..=(k + 1).min(nk - 1) {
                for j2 in j.saturating_sub(1)..=(j + 1).min(nj - 1) {
                    for i2 in i.saturating_sub(1)..=(i + 1).min(ni - 1) {
                        current[[k2, j2, i2]] = true;
                    }
                }
            }
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uncut_sphere_is_wholly_imaged_and_a_halved_one_half() {
        assert_eq!(sphere_share_imaged(0.0), 1.0);
        assert!((sphere_share_imaged(1.0) - 0.5).abs() < 1e-12);
        let s = sphere_share_imaged(0.5);
        assert!(s > 0.9 && s < 0.96, "{s}");
    }

    #[test]
    fn a_rod_is_longer_than_a_ball_of_the_same_volume() {
        let rod = Array3::from_shape_fn((40, 3, 3), |_| true);
        let ball = Array3::from_shape_fn((9, 9, 9), |(k, j, i)| (k as f64 - 4.0).powi(2) + (j as f64 - 4.0).powi(2) + (i as f64 - 4.0).powi(2) <= 16.0);
        let (r, b) = (longest_axis_voxels(&rod), longest_axis_voxels(&ball));
        assert!((r - 40.0).abs() < 1.0, "{r}");
        assert!(b < 8.0, "{b}");
    }

    #[test]
    fn a_ring_is_filled_to_a_mass() {
        // A hollow cube with one open face: 3-D filling cannot close it, slice-wise filling can.
        let mut m = Array3::from_shape_fn((9, 9, 9), |(k, j, i)| {
            let on = |x: usize| x == 1 || x == 7;
            let inside = |x: usize| (1..=7).contains(&x);
            inside(k) && inside(j) && inside(i) && (on(j) || on(i) || k == 1)
        });
        fill_enclosed(&mut m);
        assert!(m[[4, 4, 4]]);
        assert!(!m[[0, 4, 4]]);
    }
}
