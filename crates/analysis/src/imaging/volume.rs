//! A 3-D scalar volume in patient space (DICOM LPS), assembled from one series.
//!
//! Assembly follows what MONAI Deploy's `DICOMSeriesToVolumeOperator` and dcm2niix do: every
//! frame (a classic single-frame instance, or one frame of an enhanced multi-frame instance with
//! its per-frame functional groups) is placed by its ImagePositionPatient projected on the slice
//! normal (the cross product of the ImageOrientationPatient row and column cosines); the slice
//! spacing comes from those positions, never from SliceThickness (which is the slab width and
//! may differ from the spacing when slices overlap or leave gaps). A stack that is not a regular
//! grid (mixed orientations, missing or duplicated slices, different image sizes) is refused
//! with a reason rather than silently resampled: the model must see the anatomy where it is.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use ndarray::{Array3, Axis};

use super::codestream;

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

/// Consecutive slice gaps may differ from the median gap by this fraction before the stack is
/// refused as irregular (a missing slice makes one gap twice the median).
pub const SPACING_TOLERANCE: f64 = 0.10;
/// Direction cosines of different frames may differ by this much and still count as one
/// orientation (scanners round them in the 5th-6th decimal).
const ORIENTATION_TOLERANCE: f64 = 1e-3;
/// Two slices closer than this (mm) along the normal sit at the same position.
const DUPLICATE_MM: f64 = 1e-3;

/// Why a series could not become a volume. Each variant names the series and, where one
/// instance is at fault, that instance.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("series {series_uid}: no instances")]
    NoInstances { series_uid: String },
    #[error("series {series_uid}: instance {sop_uid}: {attribute} is missing or unreadable")]
    MissingAttribute { series_uid: String, sop_uid: String, attribute: &'static str },
    #[error("series {series_uid}: instance {sop_uid}: {attribute} is invalid: {value}")]
    InvalidAttribute { series_uid: String, sop_uid: String, attribute: &'static str, value: String },
    #[error("series {series_uid}: instance {sop_uid}: transfer syntax {uid} ({name}) cannot be decoded by this build")]
    UnsupportedTransferSyntax { series_uid: String, sop_uid: String, uid: String, name: String },
    #[error("series {series_uid}: instance {sop_uid}: {samples} samples per pixel ({photometric}); only grey-scale images make a volume")]
    NotGreyscale { series_uid: String, sop_uid: String, samples: u16, photometric: String },
    #[error("series {series_uid}: instance {sop_uid}: pixel data cannot be decoded: {reason}")]
    Decode { series_uid: String, sop_uid: String, reason: String },
    #[error("series {series_uid}: instance {sop_uid} is {found_rows}x{found_columns} while the series is {rows}x{columns} (rows x columns)")]
    DifferentDimensions { series_uid: String, sop_uid: String, rows: u32, columns: u32, found_rows: u32, found_columns: u32 },
    #[error("series {series_uid}: instance {sop_uid} has PixelSpacing {found:?} while the series has {expected:?}")]
    DifferentPixelSpacing { series_uid: String, sop_uid: String, expected: [f64; 2], found: [f64; 2] },
    #[error("series {series_uid}: mixed orientations: instance {sop_uid} has ImageOrientationPatient {found:?}, the series {expected:?}")]
    MixedOrientations { series_uid: String, sop_uid: String, expected: Box<[f64; 6]>, found: Box<[f64; 6]> },
    #[error("series {series_uid}: a single slice is not a volume")]
    SingleSlice { series_uid: String },
    #[error("series {series_uid}: instances {first} and {second} share the slice position {position_mm:.3} mm along the normal")]
    DuplicatePositions { series_uid: String, first: String, second: String, position_mm: f64 },
    #[error("series {series_uid}: instance {sop_uid}: {what} is {value}, over the limit of {limit} for a brain MR series (checked before any pixel memory is reserved)")]
    OverBudget { series_uid: String, sop_uid: String, what: &'static str, value: u64, limit: u64 },
    #[error("series {series_uid}: instance {sop_uid}: its pixel data holds {have} bytes where its header claims {need}")]
    ShortPixelData { series_uid: String, sop_uid: String, need: u64, have: u64 },
    #[error("series {series_uid}: instance {sop_uid}: a compressed frame declares {declared:?} (columns, rows) where the instance is {columns}x{rows}")]
    CodestreamSize { series_uid: String, sop_uid: String, columns: u32, rows: u32, declared: (u32, u32) },
    #[error("series {series_uid}: instance {sop_uid}: frame {frame} is not a valid codestream: {reason}")]
    InvalidCodestream { series_uid: String, sop_uid: String, frame: usize, reason: String },
    #[error("series {series_uid}: irregular slice spacing: {gap_mm:.3} mm between slices {slice} and {next} where the median is {median_mm:.3} mm (a missing slice, or two stacks in one series)")]
    IrregularSpacing { series_uid: String, slice: usize, next: usize, gap_mm: f64, median_mm: f64 },
    #[error("series {series_uid}: slice {slice} lies {offset_mm:.3} mm off the line through the other slice positions")]
    MisalignedSlice { series_uid: String, slice: usize, offset_mm: f64 },
}

/// Budgets on what a series' headers may claim, checked before anything is sized from them: a
/// dozen tiny instances claiming 10⁶ × 10⁶ pixels must be refused, not allocated. Brain MR is
/// at most a few hundred 512 × 512 slices; these leave a wide margin.
pub const MAX_MATRIX: u64 = 4096;
pub const MAX_FRAMES: u64 = 4096;
/// 2²⁷ voxels: 512 MiB as f32.
pub const MAX_SERIES_VOXELS: u64 = 1 << 27;

/// One 2-D image of the stack: where it sits and where its pixels are.
struct Frame {
    instance: usize,
    frame: u32,
    sop_uid: String,
    position: [f64; 3],
    orientation: [f64; 6],
    pixel_spacing: [f64; 2],
    rows: u32,
    columns: u32,
}

type Obj = InMemDicomObject;

fn values_f64(obj: &Obj, tag: Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag).ok().flatten()?.to_multi_float64().ok()
}

fn first_item(obj: &Obj, seq: Tag) -> Option<&Obj> {
    obj.element_opt(seq).ok().flatten()?.items()?.first()
}

/// An attribute of one frame: the frame's own functional group, then the shared functional
/// groups, then the top level (classic single-frame objects keep it there).
fn frame_attr(obj: &Obj, frame: u32, macro_seq: Tag, attr: Tag) -> Option<Vec<f64>> {
    let per_frame = obj
        .element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .and_then(|items| items.get(frame as usize))
        .and_then(|item| first_item(item, macro_seq))
        .and_then(|m| values_f64(m, attr));
    per_frame
        .or_else(|| first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|s| first_item(s, macro_seq)).and_then(|m| values_f64(m, attr)))
        .or_else(|| values_f64(obj, attr))
}

fn text(obj: &Obj, tag: Tag) -> Option<String> {
    let s = obj.element_opt(tag).ok().flatten()?.to_str().ok()?.trim_end_matches(['\0', ' ']).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

impl Volume {
    /// Number of voxels along column (i), row (j) and slice (k).
    pub fn dims(&self) -> [usize; 3] {
        let (k, j, i) = self.data.dim();
        [i, j, k]
    }

    /// LPS position (mm) of the centre of voxel `(i, j, k)`.
    pub fn voxel_to_lps(&self, ijk: [f64; 3]) -> [f64; 3] {
        let a = &self.affine;
        let mut out = [0.0; 3];
        for (r, o) in out.iter_mut().enumerate() {
            *o = a[r][0] * ijk[0] + a[r][1] * ijk[1] + a[r][2] * ijk[2] + a[r][3];
        }
        out
    }

    /// Builds the volume of one series from its instances (any order): the geometry is checked
    /// and sorted first ([`StackPlan::new`]), then the pixels are decoded ([`StackPlan::decode`]).
    pub fn assemble(series_uid: &str, instances: &[DefaultDicomObject]) -> Result<Volume, VolumeError> {
        StackPlan::new(series_uid, instances)?.decode()
    }
}

/// The stack of one series, checked and sorted, before any pixel is decoded: the first half of
/// [`Volume::assemble`]. Its own type so that the two halves can be timed apart (the imaging
/// benchmark reports decode and assembly as stages); it borrows the instances it was made from,
/// so it cannot decode others.
pub struct StackPlan<'a> {
    series_uid: &'a str,
    instances: &'a [DefaultDicomObject],
    frames: Vec<Frame>,
    /// (position along the normal, index into `frames`), sorted by position.
    order: Vec<(f64, usize)>,
    rows: usize,
    cols: usize,
    affine: [[f64; 4]; 4],
    spacing: [f64; 3],
}

impl<'a> StackPlan<'a> {
    /// Reads every frame's geometry and refuses a stack that is not a regular grid.
    pub fn new(series_uid: &'a str, instances: &'a [DefaultDicomObject]) -> Result<StackPlan<'a>, VolumeError> {
        let sid = || series_uid.to_string();
        if instances.is_empty() {
            return Err(VolumeError::NoInstances { series_uid: sid() });
        }
        let frames = collect_frames(series_uid, instances)?;
        let first = &frames[0];
        for f in &frames[1..] {
            if (f.rows, f.columns) != (first.rows, first.columns) {
                return Err(VolumeError::DifferentDimensions { series_uid: sid(), sop_uid: f.sop_uid.clone(), rows: first.rows, columns: first.columns, found_rows: f.rows, found_columns: f.columns });
            }
            if f.orientation.iter().zip(&first.orientation).any(|(a, b)| (a - b).abs() > ORIENTATION_TOLERANCE) {
                return Err(VolumeError::MixedOrientations { series_uid: sid(), sop_uid: f.sop_uid.clone(), expected: Box::new(first.orientation), found: Box::new(f.orientation) });
            }
            if f.pixel_spacing.iter().zip(&first.pixel_spacing).any(|(a, b)| (a - b).abs() > 1e-3 * b.abs().max(1e-3)) {
                return Err(VolumeError::DifferentPixelSpacing { series_uid: sid(), sop_uid: f.sop_uid.clone(), expected: first.pixel_spacing, found: f.pixel_spacing });
            }
        }
        if frames.len() < 2 {
            return Err(VolumeError::SingleSlice { series_uid: sid() });
        }

        let o = first.orientation;
        let (row_dir, col_dir) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
        let normal = cross(row_dir, col_dir);
        let mut order: Vec<(f64, usize)> = frames.iter().enumerate().map(|(i, f)| (dot(f.position, normal), i)).collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0));

        let gaps: Vec<f64> = order.windows(2).map(|w| w[1].0 - w[0].0).collect();
        if let Some(k) = gaps.iter().position(|g| *g < DUPLICATE_MM) {
            return Err(VolumeError::DuplicatePositions { series_uid: sid(), first: frames[order[k].1].sop_uid.clone(), second: frames[order[k + 1].1].sop_uid.clone(), position_mm: order[k].0 });
        }
        let mut sorted_gaps = gaps.clone();
        sorted_gaps.sort_by(f64::total_cmp);
        let median = sorted_gaps[sorted_gaps.len() / 2];
        if let Some(k) = gaps.iter().position(|g| (g - median).abs() > SPACING_TOLERANCE * median) {
            return Err(VolumeError::IrregularSpacing { series_uid: sid(), slice: k, next: k + 1, gap_mm: gaps[k], median_mm: median });
        }

        // The slice axis is the mean step between positions: for a stack acquired with a tilt
        // (positions not along the normal) this keeps every slice where the scanner put it.
        let n = order.len();
        let p0 = frames[order[0].1].position;
        let last = frames[order[n - 1].1].position;
        let step = sub(last, p0).map(|d| d / (n - 1) as f64);
        let step_len = norm(step);
        for (k, &(_, fi)) in order.iter().enumerate() {
            let expected = [p0[0] + k as f64 * step[0], p0[1] + k as f64 * step[1], p0[2] + k as f64 * step[2]];
            let off = norm(sub(frames[fi].position, expected));
            if off > SPACING_TOLERANCE * step_len {
                return Err(VolumeError::MisalignedSlice { series_uid: sid(), slice: k, offset_mm: off });
            }
        }

        let (rows, cols) = (first.rows as usize, first.columns as usize);
        let [dr, dc] = first.pixel_spacing;
        let affine = [
            [row_dir[0] * dc, col_dir[0] * dr, step[0], p0[0]],
            [row_dir[1] * dc, col_dir[1] * dr, step[1], p0[1]],
            [row_dir[2] * dc, col_dir[2] * dr, step[2], p0[2]],
            [0.0, 0.0, 0.0, 1.0],
        ];
        Ok(StackPlan { series_uid, instances, frames, order, rows, cols, affine, spacing: [dc, dr, step_len] })
    }

    /// Number of voxels the volume will have along column (i), row (j) and slice (k).
    pub fn dims(&self) -> [usize; 3] {
        [self.cols, self.rows, self.frames.len()]
    }

    /// Decodes the pixels into the sorted grid: the second half of [`Volume::assemble`].
    pub fn decode(self) -> Result<Volume, VolumeError> {
        self.decode_from(None)
    }

    /// Decodes every instance with dicom-pixeldata's general decoder, none by the direct path:
    /// the reference the direct path is tested against (it gives the same numbers, slower).
    #[doc(hidden)]
    pub fn decode_generically(self) -> Result<Volume, VolumeError> {
        self.decode_from(Some(0))
    }

    fn decode_from(self, generic_from: Option<usize>) -> Result<Volume, VolumeError> {
        let data = decode_stack(self.series_uid, self.instances, &self.frames, &self.order, self.rows, self.cols, generic_from)?;
        Ok(Volume {
            data,
            affine: self.affine,
            spacing: self.spacing,
            frame_of_reference_uid: text(&self.instances[self.frames[self.order[0].1].instance], tags::FRAME_OF_REFERENCE_UID),
            series_uid: self.series_uid.to_string(),
        })
    }
}

/// The byte length of native (not encapsulated) pixel data; `None` when it is encapsulated
/// (its decoded size is only known by decoding) or absent.
fn native_pixel_bytes(obj: &DefaultDicomObject) -> Option<u64> {
    let element = obj.element_opt(tags::PIXEL_DATA).ok().flatten()?;
    element.value().primitive().map(|p| p.calculate_byte_len() as u64)
}

/// Every frame of every instance with its geometry, before any pixel is decoded.
fn collect_frames(series_uid: &str, instances: &[DefaultDicomObject]) -> Result<Vec<Frame>, VolumeError> {
    let mut frames = Vec::new();
    // Pixels each instance's header claims, checked against its data once every budget holds.
    let mut claimed = Vec::with_capacity(instances.len());
    for (idx, obj) in instances.iter().enumerate() {
        let sop_uid = text(obj, tags::SOP_INSTANCE_UID).unwrap_or_else(|| format!("#{idx}"));
        let missing = |attribute| VolumeError::MissingAttribute { series_uid: series_uid.into(), sop_uid: sop_uid.clone(), attribute };
        let invalid = |attribute, value: String| VolumeError::InvalidAttribute { series_uid: series_uid.into(), sop_uid: sop_uid.clone(), attribute, value };
        let int = |tag, name| -> Result<u32, VolumeError> {
            let v = values_f64(obj, tag).and_then(|v| v.first().copied()).ok_or_else(|| missing(name))?;
            if v < 1.0 || v.fract() != 0.0 || v > u32::MAX as f64 {
                return Err(invalid(name, v.to_string()));
            }
            Ok(v as u32)
        };
        let rows = int(tags::ROWS, "Rows")?;
        let columns = int(tags::COLUMNS, "Columns")?;
        let n_frames = match obj.element_opt(tags::NUMBER_OF_FRAMES).ok().flatten() {
            Some(_) => int(tags::NUMBER_OF_FRAMES, "NumberOfFrames")?,
            None => 1,
        };
        let over = |what, value: u64, limit| VolumeError::OverBudget { series_uid: series_uid.into(), sop_uid: sop_uid.clone(), what, value, limit };
        for (what, value) in [("Rows", rows), ("Columns", columns)] {
            if value as u64 > MAX_MATRIX {
                return Err(over(what, value as u64, MAX_MATRIX));
            }
        }
        let total_frames = frames.len() as u64 + n_frames as u64;
        if total_frames > MAX_FRAMES {
            return Err(over("the number of frames in the series", total_frames, MAX_FRAMES));
        }
        let voxels = total_frames * rows as u64 * columns as u64;
        if voxels > MAX_SERIES_VOXELS {
            return Err(over("the number of voxels in the series", voxels, MAX_SERIES_VOXELS));
        }
        // The decoder builds a table of 2^BitsStored values per frame and trusts the header:
        // BitsStored 29 in 16-bit pixels sized 2 GiB, 31 aborts (fuzz finding 9). Only what an
        // MR image can be is decoded.
        let allocated = int(tags::BITS_ALLOCATED, "BitsAllocated")?;
        if allocated != 8 && allocated != 16 {
            return Err(invalid("BitsAllocated", format!("{allocated} (grey-scale MR pixels are 8 or 16 bits)")));
        }
        let stored = int(tags::BITS_STORED, "BitsStored")?;
        if stored > allocated {
            return Err(invalid("BitsStored", format!("{stored} (more than the {allocated} bits allocated)")));
        }
        if let Some(high_bit) = values_f64(obj, tags::HIGH_BIT).and_then(|v| v.first().copied())
            && !(0.0..allocated as f64).contains(&high_bit)
        {
            return Err(invalid("HighBit", format!("{high_bit} (outside the {allocated} bits allocated)")));
        }
        if let Some(representation) = values_f64(obj, tags::PIXEL_REPRESENTATION).and_then(|v| v.first().copied())
            && representation != 0.0
            && representation != 1.0
        {
            return Err(invalid("PixelRepresentation", format!("{representation} (0 unsigned or 1 signed)")));
        }
        claimed.push((sop_uid.clone(), rows, columns, n_frames, allocated));
        for frame in 0..n_frames {
            let position = frame_attr(obj, frame, tags::PLANE_POSITION_SEQUENCE, tags::IMAGE_POSITION_PATIENT).ok_or_else(|| missing("ImagePositionPatient"))?;
            let orientation = frame_attr(obj, frame, tags::PLANE_ORIENTATION_SEQUENCE, tags::IMAGE_ORIENTATION_PATIENT).ok_or_else(|| missing("ImageOrientationPatient"))?;
            let spacing = frame_attr(obj, frame, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING).ok_or_else(|| missing("PixelSpacing"))?;
            let position: [f64; 3] = position.as_slice().try_into().map_err(|_| invalid("ImagePositionPatient", format!("{position:?}")))?;
            let orientation: [f64; 6] = orientation.as_slice().try_into().map_err(|_| invalid("ImageOrientationPatient", format!("{orientation:?}")))?;
            let pixel_spacing: [f64; 2] = spacing.as_slice().try_into().map_err(|_| invalid("PixelSpacing", format!("{spacing:?}")))?;
            if pixel_spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(invalid("PixelSpacing", format!("{pixel_spacing:?}")));
            }
            let (r, c) = ([orientation[0], orientation[1], orientation[2]], [orientation[3], orientation[4], orientation[5]]);
            // Unit, orthogonal direction cosines; anything else is not a plane we can place.
            if (norm(r) - 1.0).abs() > 1e-2 || (norm(c) - 1.0).abs() > 1e-2 || dot(r, c).abs() > 1e-2 {
                return Err(invalid("ImageOrientationPatient", format!("{orientation:?} (not two orthogonal unit vectors)")));
            }
            frames.push(Frame { instance: idx, frame, sop_uid: sop_uid.clone(), position, orientation, pixel_spacing, rows, columns });
        }
    }
    // Native pixel data must hold what the header claims; otherwise the volume would be sized
    // (and zeroed) from the headers before the short data is found out.
    // Compressed frames must declare the instance's own size: a decoder sizes its output from
    // the codestream, not from Rows and Columns.
    for (obj, (sop_uid, rows, columns, n_frames, bits)) in instances.iter().zip(claimed) {
        if let Some(have) = native_pixel_bytes(obj) {
            let need = (rows as u64 * columns as u64 * n_frames as u64 * bits as u64).div_ceil(8);
            if have < need {
                return Err(VolumeError::ShortPixelData { series_uid: series_uid.into(), sop_uid, need, have });
            }
        }
        let fragments = obj.element_opt(tags::PIXEL_DATA).ok().flatten().and_then(|e| e.value().fragments()).unwrap_or_default();
        if obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']) == codestream::RLE_LOSSLESS {
            check_rle_frames(series_uid, &sop_uid, obj, fragments, rows, columns, n_frames)?;
        }
        for declared in fragments.iter().filter_map(|f| codestream::declared_size(f)) {
            if declared != (columns, rows) {
                return Err(VolumeError::CodestreamSize { series_uid: series_uid.into(), sop_uid, columns, rows, declared });
            }
        }
    }
    Ok(frames)
}

/// RLE frames are checked before the decoder sees them (see [`codestream::check_rle`]): one
/// fragment per frame, each decoding to exactly this instance's image.
fn check_rle_frames(series_uid: &str, sop_uid: &str, obj: &DefaultDicomObject, fragments: &[Vec<u8>], rows: u32, columns: u32, n_frames: u32) -> Result<(), VolumeError> {
    let invalid = |frame: usize, reason: String| VolumeError::InvalidCodestream { series_uid: series_uid.into(), sop_uid: sop_uid.into(), frame, reason };
    if fragments.len() != n_frames as usize {
        return Err(invalid(0, format!("{} RLE fragments for {n_frames} frames (RLE has one fragment per frame)", fragments.len())));
    }
    let small = |tag, default: f64| values_f64(obj, tag).and_then(|v| v.first().copied()).unwrap_or(default).clamp(0.0, u16::MAX as f64) as u16;
    let shape = codestream::RleFrame { rows, columns, bits_allocated: small(tags::BITS_ALLOCATED, 16.0), samples_per_pixel: small(tags::SAMPLES_PER_PIXEL, 1.0) };
    fragments.iter().enumerate().try_for_each(|(frame, fragment)| codestream::check_rle(fragment, shape).map_err(|reason| invalid(frame, reason)))
}

/// Decodes each instance once (rescale slope/intercept applied, per frame for enhanced MR) and
/// writes its frames into their sorted slots.
///
/// Single-frame, uncompressed 16-bit grey-scale instances — most MR series — take a direct path
/// ([`native_single_frame`]); every other instance, and every instance at or after
/// `generic_from`, goes through dicom-pixeldata's decoder.
fn decode_stack(
    series_uid: &str,
    instances: &[DefaultDicomObject],
    frames: &[Frame],
    order: &[(f64, usize)],
    rows: usize,
    cols: usize,
    generic_from: Option<usize>,
) -> Result<Array3<f32>, VolumeError> {
    let mut slot_of = vec![0usize; frames.len()];
    for (k, &(_, fi)) in order.iter().enumerate() {
        slot_of[fi] = k;
    }
    let mut data = Array3::<f32>::zeros((frames.len(), rows, cols));
    let plane = rows * cols;
    let mut fi = 0;
    for (idx, obj) in instances.iter().enumerate() {
        let sop_uid = frames.iter().find(|f| f.instance == idx).map(|f| f.sop_uid.clone()).unwrap_or_default();
        check_decodable(series_uid, &sop_uid, obj)?;
        let decode_err = |reason: String| VolumeError::Decode { series_uid: series_uid.into(), sop_uid: sop_uid.clone(), reason };
        if fi < frames.len() && frames[fi].instance == idx && generic_from.is_none_or(|from| idx < from) {
            let mut dst = data.index_axis_mut(Axis(0), slot_of[fi]);
            if let Some(dst) = dst.as_slice_mut()
                && native_single_frame(obj, dst)
            {
                fi += 1;
                continue;
            }
        }
        let decoded = obj.decode_pixel_data().map_err(|e| decode_err(e.to_string()))?;
        while fi < frames.len() && frames[fi].instance == idx {
            let pixels: Vec<f32> = decoded.to_vec_frame(frames[fi].frame).map_err(|e| decode_err(format!("frame {}: {e}", frames[fi].frame)))?;
            if pixels.len() != plane {
                return Err(decode_err(format!("frame {} has {} pixels, expected {rows}x{cols}", frames[fi].frame, pixels.len())));
            }
            let mut dst = data.index_axis_mut(Axis(0), slot_of[fi]);
            dst.iter_mut().zip(pixels).for_each(|(d, p)| *d = p);
            fi += 1;
        }
    }
    Ok(data)
}

/// Writes the one frame of `obj` into `dst` (rows × columns, row-major) when its pixel data is
/// native little-endian 16-bit grey-scale with no per-frame functional groups, with exactly the
/// numbers dicom-pixeldata's decoder gives (its modality LUT: the sample masked to BitsStored,
/// sign-extended when PixelRepresentation is 1, then `slope × x + intercept` in f64, as f32) but
/// without its copies and without building a 2^BitsStored-entry table per frame. Returns
/// `false`, having written nothing, for anything else; the caller then decodes it the general way.
fn native_single_frame(obj: &DefaultDicomObject, dst: &mut [f32]) -> bool {
    use dicom_core::value::PrimitiveValue;
    const NATIVE_LITTLE_ENDIAN: [&str; 2] = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"];
    if !NATIVE_LITTLE_ENDIAN.contains(&obj.meta().transfer_syntax().trim_end_matches(['\0', ' '])) {
        return false;
    }
    let int = |tag| obj.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u32>().ok());
    let frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1);
    let grouped = [tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE].iter().any(|t| obj.element_opt(*t).ok().flatten().is_some());
    let (Some(16), Some(stored @ 1..=16), Some(representation @ 0..=1), Some(1)) = (int(tags::BITS_ALLOCATED), int(tags::BITS_STORED), int(tags::PIXEL_REPRESENTATION), int(tags::SAMPLES_PER_PIXEL)) else {
        return false;
    };
    if frames != 1 || grouped || !text(obj, tags::PHOTOMETRIC_INTERPRETATION).is_some_and(|p| p.starts_with("MONOCHROME")) {
        return false;
    }
    let factor = |tag, default: f64| obj.element_opt(tag).ok().flatten().and_then(|e| e.to_finite_float64().ok()).unwrap_or(default);
    let (slope, intercept) = (factor(tags::RESCALE_SLOPE, 1.0), factor(tags::RESCALE_INTERCEPT, 0.0));
    let size = 1u32 << stored;
    let value = |sample: u16| {
        let i = sample as u32 & (size - 1);
        let x = if representation == 1 && i >= size / 2 { i as f64 - size as f64 } else { i as f64 };
        (slope * x + intercept) as f32
    };
    let Ok(element) = obj.element(tags::PIXEL_DATA) else { return false };
    match element.value().primitive() {
        Some(PrimitiveValue::U16(samples)) if samples.len() == dst.len() => dst.iter_mut().zip(samples.iter()).for_each(|(d, &s)| *d = value(s)),
        Some(PrimitiveValue::U8(bytes)) if bytes.len() == 2 * dst.len() => dst.iter_mut().zip(bytes.chunks_exact(2)).for_each(|(d, b)| *d = value(u16::from_le_bytes([b[0], b[1]]))),
        _ => return false,
    }
    true
}

/// Refuses, with the transfer syntax's UID and name, an instance whose pixel data this build
/// cannot decode, and any colour image.
fn check_decodable(series_uid: &str, sop_uid: &str, obj: &DefaultDicomObject) -> Result<(), VolumeError> {
    let uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_string();
    match TransferSyntaxRegistry.get(&uid) {
        Some(ts) if ts.can_decode_all() => {}
        Some(ts) => {
            return Err(VolumeError::UnsupportedTransferSyntax { series_uid: series_uid.into(), sop_uid: sop_uid.into(), uid, name: ts.name().to_string() });
        }
        None => {
            return Err(VolumeError::UnsupportedTransferSyntax { series_uid: series_uid.into(), sop_uid: sop_uid.into(), uid, name: "unknown transfer syntax".into() });
        }
    }
    let samples = values_f64(obj, tags::SAMPLES_PER_PIXEL).and_then(|v| v.first().copied()).unwrap_or(1.0) as u16;
    let photometric = text(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    if samples != 1 || !photometric.starts_with("MONOCHROME") {
        return Err(VolumeError::NotGreyscale { series_uid: series_uid.into(), sop_uid: sop_uid.into(), samples, photometric });
    }
    Ok(())
}
