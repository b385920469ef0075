//! Binary morphology on the preprocessing working grid: connected components, hole filling,
//! and the chamfer distance from a mask's surface. Shared by the head mask
//! ([`super::preprocess`]) and the lesion finder ([`super::lesion`]).
//!
//! Flood fills work on flat C-order indices (a `u32`-sized number per voxel on the stack, no
//! ndarray bounds checks in the inner loop).

use ndarray::Array3;

use super::geometry::in_c_order;

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
pub(crate) fn quantiles<const N: usize>(values: Vec<f32>, qs: [f64; N]) -> [f32; N] {
    quantiles_by(values, qs, f32::total_cmp).unwrap_or([0.0; N])
}

/// The nearest-rank quantiles `qs` (ascending) of `values` under the total order `cmp`: each is
/// the element a full sort by `cmp` would put at rank `round((n - 1) · q)`, found by selection
/// (linear time) in what lies above the last. `None` for no values.
pub(crate) fn quantiles_by<T: Copy, const N: usize>(mut values: Vec<T>, qs: [f64; N], cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> Option<[T; N]> {
    let first = *values.first()?;
    let mut out = [first; N];
    let last = values.len() - 1;
    let mut from = 0;
    for (slot, q) in out.iter_mut().zip(qs) {
        let rank = ((last as f64 * q).round() as usize).max(from);
        let (_, v, _) = values[from..].select_nth_unstable_by(rank - from, &cmp);
        *slot = *v;
        from = rank;
    }
    Some(out)
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

    #[inline]
    pub(crate) fn unflat(&self, f: usize) -> (usize, usize, usize) {
        let k = f / (self.nj * self.ni);
        let in_plane = f - k * self.nj * self.ni;
        let j = in_plane / self.ni;
        (k, j, in_plane - j * self.ni)
    }

    /// Calls `visit` with the flat index of every voxel on the grid's faces, each once.
    fn for_each_on_face(&self, mut visit: impl FnMut(usize)) {
        let (nk, nj, ni) = (self.nk, self.nj, self.ni);
        for k in 0..nk {
            for j in 0..nj {
                let row = (k * nj + j) * ni;
                if k == 0 || j == 0 || k + 1 == nk || j + 1 == nj {
                    (row..row + ni).for_each(&mut visit);
                } else if ni > 0 {
                    visit(row);
                    if ni > 1 {
                        visit(row + ni - 1);
                    }
                }
            }
        }
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

/// The largest 6-connected component of `mask`, as a mask (of equal sizes the last in C order
/// of their first voxels, as `components(mask).max_by_key(len)` picks); all `false` for none.
/// Labels in place of lists: no coordinates are collected for the pieces that are dropped.
pub(crate) fn largest_component(mask: &Array3<bool>) -> Array3<bool> {
    let labels = Labels::of(&in_c_order(mask), true, &Grid::of(mask));
    let mut size = vec![0usize; labels.count];
    for &l in labels.of_voxel.iter().filter(|&&l| l != Labels::NONE) {
        size[l as usize] += 1;
    }
    // Roots in ascending order are components in the C order of their first voxels.
    let best = (0..labels.count).filter(|&l| size[l] > 0).max_by_key(|&l| size[l]).map(|l| l as u32);
    let out: Vec<bool> = labels.of_voxel.iter().map(|&l| l != Labels::NONE && Some(l) == best).collect();
    Array3::from_shape_vec(mask.dim(), out).unwrap_or_else(|_| Array3::from_elem(mask.dim(), false))
}

/// Marks as inside every background voxel that cannot reach the volume's faces.
pub(crate) fn fill_holes(mask: &mut Array3<bool>) {
    let grid = Grid::of(mask);
    let labels = Labels::of(&in_c_order(mask), false, &grid);
    // A background piece reaches the faces when one of its voxels lies on them.
    let mut outside = vec![false; labels.count];
    grid.for_each_on_face(|f| {
        if let Some(l) = labels.at(f) {
            outside[l] = true;
        }
    });
    for (m, &l) in mask.iter_mut().zip(&labels.of_voxel) {
        *m = !(l != Labels::NONE && outside[l as usize]);
    }
}

/// The 6-connected components of the voxels equal to `value`, labelled in two raster passes
/// with a union-find (each voxel looks only at the three neighbours before it, so memory is
/// read in order, not in a flood fill's jumps). A component's label is the provisional label of
/// its first voxel in C order, so ascending labels are components in that order.
struct Labels {
    /// Each voxel's component, or [`Labels::NONE`] for voxels not equal to the value.
    of_voxel: Vec<u32>,
    /// Labels are below this (not all are used: merged provisional labels are not roots).
    count: usize,
}

impl Labels {
    const NONE: u32 = u32::MAX;

    fn of(flat: &[bool], value: bool, grid: &Grid) -> Labels {
        let (nk, nj, ni) = (grid.nk, grid.nj, grid.ni);
        let plane = nj * ni;
        let mut of_voxel = vec![Labels::NONE; flat.len()];
        // parent[l] <= l: a merge always hangs the later root under the earlier.
        let mut parent: Vec<u32> = Vec::new();
        let mut f = 0;
        for k in 0..nk {
            for j in 0..nj {
                for i in 0..ni {
                    if flat[f] == value {
                        let mut label = Labels::NONE;
                        for (exists, before) in [(i > 0, 1), (j > 0, ni), (k > 0, plane)] {
                            if !exists || of_voxel[f - before] == Labels::NONE {
                                continue;
                            }
                            let root = find(&mut parent, of_voxel[f - before]);
                            label = if label == Labels::NONE {
                                root
                            } else {
                                let (first, later) = (label.min(root), label.max(root));
                                parent[later as usize] = first;
                                first
                            };
                        }
                        if label == Labels::NONE {
                            label = parent.len() as u32;
                            parent.push(label);
                        }
                        of_voxel[f] = label;
                    }
                    f += 1;
                }
            }
        }
        // Every label to its root, in ascending order (a parent is resolved before its children).
        for l in 0..parent.len() {
            parent[l] = parent[parent[l] as usize];
        }
        for l in of_voxel.iter_mut().filter(|l| **l != Labels::NONE) {
            *l = parent[*l as usize];
        }
        Labels { of_voxel, count: parent.len() }
    }

    fn at(&self, f: usize) -> Option<usize> {
        let l = self.of_voxel[f];
        (l != Labels::NONE).then_some(l as usize)
    }
}

/// The root of `label`, halving the path on the way.
fn find(parent: &mut [u32], mut label: u32) -> u32 {
    while parent[label as usize] != label {
        let grandparent = parent[parent[label as usize] as usize];
        parent[label as usize] = grandparent;
        label = grandparent;
    }
    label
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
    // Away from the faces every neighbour exists: the half-neighbourhood as flat distances
    // behind a voxel in raster order (ahead of it on the backward pass).
    let behind: Vec<(usize, u32)> = half.iter().map(|&(dk, dj, di, w)| ((-(dk * (nj * ni) as isize + dj * ni as isize + di)) as usize, w)).collect();
    let pass = |forward: bool, dist: &mut Vec<u32>| {
        for kk in 0..nk {
            let k = if forward { kk } else { nk - 1 - kk };
            for jj in 0..nj {
                let j = if forward { jj } else { nj - 1 - jj };
                let inner_row = k > 0 && k + 1 < nk && j > 0 && j + 1 < nj;
                for ii in 0..ni {
                    let i = if forward { ii } else { ni - 1 - ii };
                    let here = index(k, j, i);
                    if dist[here] == 0 {
                        continue;
                    }
                    let mut best = dist[here];
                    if inner_row && i > 0 && i + 1 < ni {
                        for &(back, w) in &behind {
                            let there = if forward { here - back } else { here + back };
                            best = best.min(dist[there] + w);
                        }
                        dist[here] = best;
                        continue;
                    }
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

    /// A pseudo-random mask of several pieces, ties in size included.
    fn speckled(dims: (usize, usize, usize), seed: u64) -> ndarray::Array3<bool> {
        ndarray::Array3::from_shape_fn(dims, |(k, j, i)| {
            let mut x = seed ^ (k as u64).wrapping_mul(73_856_093) ^ (j as u64).wrapping_mul(19_349_663) ^ (i as u64).wrapping_mul(83_492_791);
            x ^= x >> 13;
            x = x.wrapping_mul(0x5bd1e995);
            x ^= x >> 15;
            x % 5 < 2
        })
    }

    #[test]
    fn the_largest_component_is_the_one_listing_every_component_picks() {
        for (seed, dims) in [(1, (9, 11, 13)), (2, (1, 1, 7)), (3, (5, 5, 5)), (4, (16, 3, 20)), (5, (2, 2, 2))] {
            let mask = speckled(dims, seed);
            let mut expected = ndarray::Array3::from_elem(dims, false);
            if let Some(biggest) = super::components(&mask).into_iter().max_by_key(|c| c.len()) {
                for ix in biggest {
                    expected[ix] = true;
                }
            }
            assert_eq!(super::largest_component(&mask), expected, "seed {seed}, {dims:?}");
        }
        let empty = ndarray::Array3::from_elem((3, 4, 5), false);
        assert_eq!(super::largest_component(&empty), empty);
        // Two blocks of eight: the later one, as max_by_key picks the last of equals.
        let two = ndarray::Array3::from_shape_fn((4, 4, 8), |(k, j, i)| k < 2 && j < 2 && (i < 2 || (4..6).contains(&i)));
        let later = ndarray::Array3::from_shape_fn((4, 4, 8), |(k, j, i)| k < 2 && j < 2 && (4..6).contains(&i));
        assert_eq!(super::largest_component(&two), later);
    }

    /// The chamfer transform with every neighbour bounds-checked, as it was written first.
    fn depth_map_checked(mask: &ndarray::Array3<bool>) -> Vec<u32> {
        let (nk, nj, ni) = mask.dim();
        let mut dist: Vec<u32> = mask.iter().map(|&m| if m { u32::MAX / 2 } else { 0 }).collect();
        let mut half = Vec::new();
        for dk in -1isize..=0 {
            for dj in -1isize..=1 {
                for di in -1isize..=1 {
                    if dk < 0 || (dk == 0 && (dj < 0 || (dj == 0 && di < 0))) {
                        half.push((dk, dj, di, [0, 3, 4, 5][(dk.abs() + dj.abs() + di.abs()) as usize]));
                    }
                }
            }
        }
        for forward in [true, false] {
            let order: Vec<usize> = if forward { (0..nk * nj * ni).collect() } else { (0..nk * nj * ni).rev().collect() };
            for here in order {
                let (k, j, i) = ((here / (nj * ni)) as isize, (here / ni % nj) as isize, (here % ni) as isize);
                if dist[here] == 0 {
                    continue;
                }
                for &(dk, dj, di, w) in &half {
                    let s = if forward { 1 } else { -1 };
                    let (k2, j2, i2) = (k + s * dk, j + s * dj, i + s * di);
                    if (0..nk as isize).contains(&k2) && (0..nj as isize).contains(&j2) && (0..ni as isize).contains(&i2) {
                        dist[here] = dist[here].min(dist[(k2 as usize * nj + j2 as usize) * ni + i2 as usize] + w);
                    }
                }
            }
        }
        dist
    }

    #[test]
    fn the_depth_map_is_the_checked_chamfer_transform() {
        for (seed, dims) in [(1, (9, 11, 13)), (2, (1, 1, 7)), (3, (5, 5, 5)), (4, (16, 3, 20)), (5, (2, 2, 2)), (6, (12, 12, 12))] {
            let mask = speckled(dims, seed).mapv(|m| !m);
            assert_eq!(super::depth_map(&mask).into_raw_vec_and_offset().0, depth_map_checked(&mask), "seed {seed}, {dims:?}");
        }
        let full = ndarray::Array3::from_elem((7, 8, 9), true);
        assert_eq!(super::depth_map(&full).into_raw_vec_and_offset().0, depth_map_checked(&full));
    }

    /// Hole filling by a flood fill from the faces, as it was written first.
    fn fill_holes_by_flooding(mask: &ndarray::Array3<bool>) -> ndarray::Array3<bool> {
        let grid = super::Grid::of(mask);
        let flat: Vec<bool> = mask.iter().copied().collect();
        let mut outside = vec![false; flat.len()];
        let mut stack: Vec<usize> = Vec::new();
        grid.for_each_on_face(|f| {
            if !flat[f] {
                outside[f] = true;
                stack.push(f);
            }
        });
        while let Some(p) = stack.pop() {
            grid.for_each_neighbour(p, |q| {
                if !flat[q] && !outside[q] {
                    outside[q] = true;
                    stack.push(q);
                }
            });
        }
        ndarray::Array3::from_shape_vec(mask.dim(), outside.into_iter().map(|o| !o).collect()).unwrap()
    }

    #[test]
    fn holes_are_filled_as_a_flood_from_the_faces_fills_them() {
        for (seed, dims) in [(1, (9, 11, 13)), (2, (1, 1, 7)), (3, (5, 5, 5)), (4, (16, 3, 20)), (5, (2, 2, 2)), (7, (14, 15, 16))] {
            for mask in [speckled(dims, seed), speckled(dims, seed).mapv(|m| !m)] {
                let mut filled = mask.clone();
                super::fill_holes(&mut filled);
                assert_eq!(filled, fill_holes_by_flooding(&mask), "seed {seed}, {dims:?}");
            }
        }
    }

    #[test]
    fn every_face_voxel_is_visited_once_and_no_other() {
        for (nk, nj, ni) in [(1, 1, 1), (1, 3, 4), (3, 1, 4), (4, 5, 1), (2, 2, 2), (5, 6, 7)] {
            let grid = super::Grid { nk, nj, ni };
            let mut seen = vec![0u8; nk * nj * ni];
            grid.for_each_on_face(|f| seen[f] += 1);
            for (f, n) in seen.iter().enumerate() {
                let (k, j, i) = grid.unflat(f);
                let on_face = k == 0 || j == 0 || i == 0 || k + 1 == nk || j + 1 == nj || i + 1 == ni;
                assert_eq!(*n, u8::from(on_face), "({k}, {j}, {i}) in {nk}×{nj}×{ni}");
            }
        }
    }
}
