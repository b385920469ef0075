//! Binary morphology on the preprocessing working grid: connected components, hole filling,
//! and the chamfer distance from a mask's surface. Shared by the head mask
//! ([`super::preprocess`]) and the lesion finder ([`super::lesion`]).
//!
//! Flood fills work on flat C-order indices (a `u32`-sized number per voxel on the stack, no
//! ndarray bounds checks in the inner loop).

use ndarray::Array3;

/// The `q`-quantile (nearest rank) of `values`; 0 for none.
pub(crate) fn percentile(mut values: Vec<f32>, q: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let rank = ((values.len() - 1) as f64 * q).round() as usize;
    let (_, v, _) = values.select_nth_unstable_by(rank, f32::total_cmp);
    *v
}

/// Several quantiles of `values` at once, each exactly what [`percentile`] gives, from one
/// copy: `qs` ascending, each rank selected in what lies above the last. 0 for none.
pub(crate) fn quantiles<const N: usize>(mut values: Vec<f32>, qs: [f64; N]) -> [f32; N] {
    let mut out = [0.0; N];
    if values.is_empty() {
        return out;
    }
    let last = values.len() - 1;
    let mut from = 0;
    for (slot, q) in out.iter_mut().zip(qs) {
        let rank = ((last as f64 * q).round() as usize).max(from);
        let (_, v, _) = values[from..].select_nth_unstable_by(rank - from, f32::total_cmp);
        *slot = *v;
        from = rank;
    }
    out
}

/// Flat (C-order) index arithmetic on a `[k, j, i]` grid, for the flood fills: a `u32` per voxel
/// on the stack instead of a tuple, and no ndarray bounds checks in the inner loop.
pub(crate) struct Grid {
    nk: usize,
    nj: usize,
    ni: usize,
}

impl Grid {
    pub(crate) fn of<T>(a: &Array3<T>) -> Grid {
        let (nk, nj, ni) = a.dim();
        Grid { nk, nj, ni }
    }

    pub(crate) fn unflat(&self, f: usize) -> (usize, usize, usize) {
        (f / (self.nj * self.ni), (f / self.ni) % self.nj, f % self.ni)
    }

    pub(crate) fn on_face(&self, f: usize) -> bool {
        let (k, j, i) = self.unflat(f);
        k == 0 || j == 0 || i == 0 || k + 1 == self.nk || j + 1 == self.nj || i + 1 == self.ni
    }

    /// Calls `visit` with each 6-neighbour of flat index `f` inside the grid.
    #[inline]
    pub(crate) fn for_each_neighbour(&self, f: usize, mut visit: impl FnMut(usize)) {
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
pub(crate) fn components(mask: &Array3<bool>) -> Vec<Vec<(usize, usize, usize)>> {
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
pub(crate) fn fill_holes(mask: &mut Array3<bool>) {
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

/// Chamfer units per voxel step along an axis (3-4-5 weights: face, edge, corner).
pub(crate) const CHAMFER_UNIT: u32 = 3;

/// The voxels of `mask` deeper than `depth` voxels below its surface (see [`depth_map`]).
pub(crate) fn erode(mask: &Array3<bool>, depth: f64) -> Array3<bool> {
    let threshold = (depth * CHAMFER_UNIT as f64).round() as u32;
    depth_map(mask).mapv(|d| d > threshold)
}

/// Depth of every voxel of `mask` below its surface, in chamfer units ([`CHAMFER_UNIT`] per
/// voxel; 0 outside the mask), by a two-pass 3-4-5 chamfer distance transform (within about
/// 8 % of Euclidean, one pass each way, no per-voxel allocation). Beyond the volume's faces
/// counts as inside, so a head cut by the field of view keeps its voxels there and a lesion at
/// the cut is still found (and its coverage judged), not silently lost.
pub(crate) fn depth_map(mask: &Array3<bool>) -> Array3<u32> {
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
    Array3::from_shape_vec(mask.dim(), dist).unwrap_or_else(|_| Array3::zeros(mask.dim()))
}


/// [`fill_holes`] within one plane: `mask` is one voxel thick along `axis`, and only the
/// plane's own edges count as outside (4-neighbourhood).
pub(crate) fn fill_holes_2d(mask: &mut Array3<bool>, axis: usize) {
    let mut plane = mask.index_axis_mut(ndarray::Axis(axis), 0);
    let (nr, nc) = plane.dim();
    let mut outside = ndarray::Array2::from_elem((nr, nc), false);
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for r in 0..nr {
        for c in 0..nc {
            if (r == 0 || c == 0 || r + 1 == nr || c + 1 == nc) && !plane[[r, c]] {
                outside[[r, c]] = true;
                stack.push((r, c));
            }
        }
    }
    while let Some((r, c)) = stack.pop() {
        let mut visit = |r2: usize, c2: usize| {
            if !plane[[r2, c2]] && !outside[[r2, c2]] {
                outside[[r2, c2]] = true;
                stack.push((r2, c2));
            }
        };
        if r > 0 {
            visit(r - 1, c);
        }
        if r + 1 < nr {
            visit(r + 1, c);
        }
        if c > 0 {
            visit(r, c - 1);
        }
        if c + 1 < nc {
            visit(r, c + 1);
        }
    }
    plane.zip_mut_with(&outside, |m, &o| *m = !o);
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_are_each_what_percentile_gives() {
        // Duplicates and negatives; sizes where ranks coincide.
        for n in [1usize, 2, 3, 4, 7, 100, 1001] {
            let values: Vec<f32> = (0..n).map(|i| ((i * 7919 % 97) as f32 - 40.0) / 3.0).collect();
            let qs = [0.0, 0.25, 0.5, 0.5, 0.75, 0.99, 1.0];
            let together = super::quantiles(values.clone(), qs);
            let apart = qs.map(|q| super::percentile(values.clone(), q));
            assert_eq!(together.map(f32::to_bits), apart.map(f32::to_bits), "n = {n}");
        }
        assert_eq!(super::quantiles(Vec::new(), [0.5]), [0.0]);
    }
}
