//! A 3-D scalar volume in patient space (DICOM LPS), assembled from one series.

use ndarray::Array3;

/// Voxels in `[slice, row, column]` order (k, j, i), with the affine that maps a voxel index
/// `(i, j, k)` (column, row, slice) to LPS millimetres: `xyz = affine · [i, j, k, 1]`.
#[derive(Debug, Clone)]
pub struct Volume {
    pub data: Array3<f32>,
    /// Row-major 4×4; the last row is `[0, 0, 0, 1]`.
    pub affine: [[f64; 4]; 4],
    /// Column, row and slice spacing in mm (derived from positions, not SliceThickness).
    pub spacing: [f64; 3],
    pub frame_of_reference_uid: Option<String>,
    pub series_uid: String,
}
