//! Volume assembly from real DICOM files, checked against independent decoders: Debian's
//! dcm2niix (grid, affine and every voxel) and pydicom (pixel sums per transfer syntax). Every
//! refusal names its reason.
//!
//!     cargo test --release --test volume_assembly

#[path = "../../../tests/support/dicom_fixtures.rs"]
mod dicom_fixtures;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_fixtures::{assert_same_as_nifti, dcm2niix, fixtures, read_files};
use neurocds_analysis::imaging::{Volume, VolumeError};

fn assemble(name: &str) -> Volume {
    let s = fixtures().series(name);
    Volume::assemble(&s.series_uid, &read_files(&s.files)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn set_ds(obj: &mut dicom_object::DefaultDicomObject, tag: dicom_core::Tag, values: &[f64]) {
    let text: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
    obj.put(DataElement::new(tag, VR::DS, PrimitiveValue::Strs(text.into())));
}

#[test]
fn axial_series_with_rescale_matches_dcm2niix_voxel_for_voxel() {
    let s = fixtures().series("t1c_axial");
    let v = assemble("t1c_axial");
    assert_eq!(v.dims(), [s.cols, s.rows, s.slices]);
    assert_same_as_nifti(&v, &dcm2niix(&s.dir), 0.01);
}

#[test]
fn tilted_oblique_series_matches_dcm2niix_voxel_for_voxel() {
    let s = fixtures().series("t1c_tilted");
    let v = assemble("t1c_tilted");
    // The slice axis is tilted 20 degrees from the patient's z axis.
    let step = [v.affine[0][2], v.affine[1][2], v.affine[2][2]];
    let cos = step[2] / v.spacing[2];
    assert!((cos - 20f64.to_radians().cos()).abs() < 1e-3, "slice axis {step:?}");
    assert_same_as_nifti(&v, &dcm2niix(&s.dir), 0.01);
}

#[test]
fn enhanced_multiframe_sagittal_series_matches_dcm2niix_voxel_for_voxel() {
    let s = fixtures().series("t1c_enhanced_sag");
    let v = assemble("t1c_enhanced_sag");
    assert_eq!(v.dims(), [s.cols, s.rows, s.slices]);
    assert_same_as_nifti(&v, &dcm2niix(&s.dir), 0.01);
}

#[test]
fn inverted_t2_series_matches_dcm2niix_voxel_for_voxel() {
    let s = fixtures().series("t2_axial");
    assert_same_as_nifti(&assemble("t2_axial"), &dcm2niix(&s.dir), 0.01);
}

#[test]
fn slice_spacing_comes_from_positions_not_slice_thickness() {
    // The FLAIR fixture has 5 mm slices every 6 mm.
    let v = assemble("flair");
    assert!((v.spacing[2] - 6.0).abs() < 1e-3, "spacing {:?}", v.spacing);
}

#[test]
fn rescale_slope_and_intercept_are_applied_as_pydicom_does() {
    for name in ["t1c_axial", "t1c_enhanced_sag", "t2_axial"] {
        let s = fixtures().series(name);
        let ours: f64 = assemble(name).data.iter().map(|&x| x as f64).sum();
        let pydicom = s.pixel_sum.expect("pydicom decoded the fixture");
        assert!((ours - pydicom).abs() <= 1e-6 * pydicom.abs(), "{name}: ours {ours}, pydicom {pydicom}");
    }
}

#[test]
fn instance_order_does_not_change_the_volume() {
    let s = fixtures().series("t2_axial");
    let mut objs = read_files(&s.files);
    let sorted = Volume::assemble(&s.series_uid, &objs).expect("sorted");
    objs.reverse();
    objs.swap(3, 17);
    let shuffled = Volume::assemble(&s.series_uid, &objs).expect("shuffled");
    assert_eq!(sorted.affine, shuffled.affine);
    assert_eq!(sorted.data, shuffled.data);
}

#[test]
fn native_transfer_syntaxes_decode_to_the_same_pixels_as_pydicom() {
    let baseline = assemble("explicit_le");
    for name in ["explicit_le", "implicit_le", "big_endian", "deflate", "rle"] {
        let s = fixtures().series(name);
        let v = assemble(name);
        assert_eq!(v.data, baseline.data, "{name} decodes to other pixels than explicit little endian");
        let ours: f64 = v.data.iter().map(|&x| x as f64).sum();
        assert_eq!(Some(ours), s.pixel_sum, "{name}: pixel sum differs from pydicom's");
    }
}

#[test]
fn jpeg_2000_lossless_decodes_to_the_same_pixels_as_explicit_little_endian() {
    let baseline = assemble("explicit_le");
    let s = fixtures().series("jpeg2000_lossless");
    match Volume::assemble(&s.series_uid, &read_files(&s.files)) {
        Ok(v) => assert_eq!(v.data, baseline.data),
        // Without the `openjp2` feature the refusal must still name the syntax.
        Err(e) => panic!("JPEG 2000 lossless: {e}"),
    }
}

#[test]
fn jpeg_ls_is_refused_naming_the_transfer_syntax_uid_and_name() {
    let s = fixtures().series("jpeg_ls_lossless");
    let err = Volume::assemble(&s.series_uid, &read_files(&s.files)).expect_err("JPEG-LS has no decoder in this build");
    let text = err.to_string();
    assert!(matches!(err, VolumeError::UnsupportedTransferSyntax { .. }), "{text}");
    assert!(text.contains("1.2.840.10008.1.2.4.80") && text.contains("JPEG-LS"), "{text}");
}

#[test]
fn a_single_instance_series_is_refused_as_a_single_slice() {
    let mosaic = &fixtures().manifest.siemens_mosaic;
    let err = Volume::assemble("1.2.3", &read_files(std::slice::from_ref(mosaic))).expect_err("one slice");
    assert!(matches!(err, VolumeError::SingleSlice { .. }), "{err}");
    assert!(err.to_string().contains("single slice"), "{err}");
}

#[test]
fn no_instances_is_refused() {
    let err = Volume::assemble("1.2.3", &[]).expect_err("nothing");
    assert!(matches!(err, VolumeError::NoInstances { .. }), "{err}");
}

#[test]
fn a_missing_slice_is_refused_as_irregular_spacing() {
    let s = fixtures().series("t2_axial");
    let mut objs = read_files(&s.files);
    objs.remove(10);
    let err = Volume::assemble(&s.series_uid, &objs).expect_err("gap");
    assert!(matches!(err, VolumeError::IrregularSpacing { gap_mm, median_mm, .. } if (gap_mm - 2.0 * median_mm).abs() < 1e-3), "{err}");
    assert!(err.to_string().contains("missing slice"), "{err}");
}

#[test]
fn a_duplicated_position_is_refused() {
    let s = fixtures().series("t2_axial");
    let mut objs = read_files(&s.files);
    let ipp = objs[4].element(tags::IMAGE_POSITION_PATIENT).expect("IPP").to_multi_float64().expect("numbers");
    set_ds(&mut objs[5], tags::IMAGE_POSITION_PATIENT, &ipp);
    let err = Volume::assemble(&s.series_uid, &objs).expect_err("duplicate");
    assert!(matches!(err, VolumeError::DuplicatePositions { .. }), "{err}");
    assert!(err.to_string().contains("share the slice position"), "{err}");
}

#[test]
fn mixed_orientations_are_refused() {
    let s = fixtures().series("t2_axial");
    let mut objs = read_files(&s.files);
    set_ds(&mut objs[7], tags::IMAGE_ORIENTATION_PATIENT, &[0.0, 1.0, 0.0, 0.0, 0.0, -1.0]);
    let err = Volume::assemble(&s.series_uid, &objs).expect_err("mixed");
    assert!(matches!(err, VolumeError::MixedOrientations { .. }), "{err}");
    assert!(err.to_string().contains("mixed orientations"), "{err}");
}

#[test]
fn different_image_sizes_are_refused() {
    let s = fixtures().series("t2_axial");
    let mut objs = read_files(&s.files);
    objs[2].put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(128u16)));
    let err = Volume::assemble(&s.series_uid, &objs).expect_err("sizes");
    assert!(matches!(err, VolumeError::DifferentDimensions { found_rows: 128, .. }), "{err}");
}

#[test]
fn a_missing_image_position_is_refused_naming_the_attribute() {
    let s = fixtures().series("t2_axial");
    let mut objs = read_files(&s.files);
    objs[0].remove_element(tags::IMAGE_POSITION_PATIENT);
    let err = Volume::assemble(&s.series_uid, &objs).expect_err("no IPP");
    assert!(matches!(err, VolumeError::MissingAttribute { attribute: "ImagePositionPatient", .. }), "{err}");
}

#[test]
fn a_slice_off_the_stack_line_is_refused() {
    let s = fixtures().series("t2_axial");
    let mut objs = read_files(&s.files);
    let mut ipp = objs[9].element(tags::IMAGE_POSITION_PATIENT).expect("IPP").to_multi_float64().expect("numbers");
    ipp[0] += 20.0;
    set_ds(&mut objs[9], tags::IMAGE_POSITION_PATIENT, &ipp);
    let err = Volume::assemble(&s.series_uid, &objs).expect_err("misaligned");
    assert!(matches!(err, VolumeError::MisalignedSlice { .. }), "{err}");
}

fn set_us(obj: &mut dicom_object::DefaultDicomObject, tag: dicom_core::Tag, value: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
}

/// Issue 15: headers that claim more pixels than a brain MR series could hold are refused by
/// name before any memory is sized from them (a failed allocation would abort the process).
#[test]
fn real_instances_claiming_a_giant_matrix_are_refused_before_any_pixel_memory_is_reserved() {
    let s = fixtures().series("t2_axial");
    let mut objs = read_files(&s.files);
    for obj in &mut objs {
        set_us(obj, tags::ROWS, 60_000);
        set_us(obj, tags::COLUMNS, 60_000);
    }
    let err = Volume::assemble(&s.series_uid, &objs).expect_err("over budget");
    assert!(matches!(err, VolumeError::OverBudget { what: "Rows", value: 60_000, .. }), "{err}");
    assert!(err.to_string().contains("over the limit"), "{err}");
}

#[test]
fn a_series_whose_frames_add_up_past_the_voxel_budget_is_refused() {
    let s = fixtures().series("t2_axial");
    let mut objs = read_files(&s.files);
    for obj in &mut objs {
        set_us(obj, tags::ROWS, 4000);
        set_us(obj, tags::COLUMNS, 4000);
    }
    let err = Volume::assemble(&s.series_uid, &objs).expect_err("over budget");
    assert!(matches!(err, VolumeError::OverBudget { limit: neurocds_analysis::imaging::volume::MAX_SERIES_VOXELS, .. }), "{err}");
}

/// Fuzzer finding (part10_volume, 2026-12-06): headers within the budgets but claiming more
/// pixels than the instance's native pixel data holds made assembly size and zero the whole
/// volume before decoding found the data short. Refused from the byte counts now.
#[test]
fn native_pixel_data_shorter_than_the_header_claims_is_refused_before_the_volume_is_sized() {
    let s = fixtures().series("t2_axial");
    let mut objs = read_files(&s.files);
    for obj in &mut objs {
        set_us(obj, tags::ROWS, 1000);
        set_us(obj, tags::COLUMNS, 1000);
    }
    let err = Volume::assemble(&s.series_uid, &objs).expect_err("short pixel data");
    assert!(matches!(err, VolumeError::ShortPixelData { need: 2_000_000, .. }), "{err}");
}

/// A decoder sizes its output from the codestream, not from Rows and Columns: a compressed
/// frame that declares another size than its instance is refused before any decoder runs.
#[test]
fn a_compressed_frame_declaring_another_size_than_its_instance_is_refused_before_decoding() {
    let s = fixtures().series("jpeg2000_lossless");
    let mut objs = read_files(&s.files);
    for obj in &mut objs {
        set_us(obj, tags::ROWS, 32);
        set_us(obj, tags::COLUMNS, 32);
    }
    let err = Volume::assemble(&s.series_uid, &objs).expect_err("size mismatch");
    assert!(matches!(err, VolumeError::CodestreamSize { columns: 32, rows: 32, declared: (64, 64), .. }), "{err}");
}

/// Replaces each instance's RLE fragments with what `spoil` makes of them.
fn spoil_rle(spoil: impl Fn(&[u8]) -> Vec<u8>) -> (String, Vec<dicom_object::DefaultDicomObject>) {
    let s = fixtures().series("rle");
    let mut objs = read_files(&s.files);
    for obj in &mut objs {
        let pixel = obj.element(tags::PIXEL_DATA).expect("pixel data");
        let fragments: Vec<Vec<u8>> = pixel.value().fragments().expect("encapsulated").iter().map(|f| spoil(f)).collect();
        let value = dicom_core::value::Value::from(dicom_core::value::PixelFragmentSequence::new(Vec::<u32>::new(), fragments));
        obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, value));
    }
    (s.series_uid.clone(), objs)
}

fn rle_refusal(spoil: impl Fn(&[u8]) -> Vec<u8>) -> VolumeError {
    let (series_uid, objs) = spoil_rle(spoil);
    let err = Volume::assemble(&series_uid, &objs).expect_err("a spoilt RLE frame is refused");
    assert!(matches!(err, VolumeError::InvalidCodestream { .. }), "{err}");
    err
}

/// Issue 15 (RLE decode budget): the RLE decoder trusts the segment count in a frame's header
/// (it sized a table from it, and sliced past the fragment's end); such a frame is refused by
/// name before any decoder runs.
#[test]
fn an_rle_frame_claiming_four_billion_segments_is_refused_before_decoding() {
    let err = rle_refusal(|f| {
        let mut f = f.to_vec();
        f[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        f
    });
    assert!(err.to_string().contains("segments"), "{err}");
}

/// A frame too short to hold the 64-byte RLE header is refused, not sliced past its end.
#[test]
fn an_rle_frame_shorter_than_its_header_is_refused() {
    rle_refusal(|f| f[..10].to_vec());
}

/// A segment that unpacks to fewer bytes than Rows x Columns made the decoder index past its
/// buffer (a panic); it is refused from the PackBits run lengths, without unpacking.
#[test]
fn an_rle_segment_that_unpacks_to_fewer_pixels_than_the_frame_is_refused() {
    rle_refusal(|f| {
        // The same number of segments, each one literal run of one byte.
        let segments = u32::from_le_bytes(f[..4].try_into().unwrap());
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(&segments.to_le_bytes());
        for k in 0..segments as usize {
            header[4 + 4 * k..8 + 4 * k].copy_from_slice(&(64 + 2 * k as u32).to_le_bytes());
        }
        (0..segments).fold(header, |mut frame, _| {
            frame.extend_from_slice(&[0x00, 0x07]);
            frame
        })
    });
}

/// Segment offsets must lie inside the frame, in order.
#[test]
fn rle_segment_offsets_pointing_outside_the_frame_are_refused() {
    rle_refusal(|f| {
        let mut f = f.to_vec();
        f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        f
    });
}

/// The honest RLE series still decodes after the checks (same pixels as explicit little endian).
#[test]
fn an_rle_series_rebuilt_fragment_by_fragment_still_decodes() {
    let (series_uid, objs) = spoil_rle(|f| f.to_vec());
    assert_eq!(Volume::assemble(&series_uid, &objs).expect("honest RLE").data, assemble("explicit_le").data);
}

/// Issue 18: the direct path for native 16-bit single-frame instances gives dicom-pixeldata's
/// numbers bit for bit — with rescale, with BitsStored below 16 and garbage in the high bits,
/// and for signed pixels — and the instances it does not take (enhanced multi-frame) still
/// decode the general way.
#[test]
fn the_direct_decoding_path_gives_the_general_decoders_numbers_bit_for_bit() {
    use neurocds_analysis::imaging::StackPlan;
    let same = |name: &str, objs: &[dicom_object::DefaultDicomObject], uid: &str| {
        let direct = StackPlan::new(uid, objs).expect("plan").decode().expect("direct");
        let general = StackPlan::new(uid, objs).expect("plan").decode_generically().expect("general");
        assert_eq!(direct.data.shape(), general.data.shape(), "{name}");
        let differ = direct.data.iter().zip(general.data.iter()).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{name}: {differ} voxels differ");
    };
    for name in ["t1c_axial", "t2_axial", "flair", "explicit_le", "implicit_le", "t1c_enhanced_sag"] {
        let s = fixtures().series(name);
        same(name, &read_files(&s.files), &s.series_uid);
    }
    let s = fixtures().series("t2_axial");
    let spoil = |bits_stored: u16, signed: bool| {
        let mut objs = read_files(&s.files);
        for obj in &mut objs {
            set_us(obj, tags::BITS_STORED, bits_stored);
            set_us(obj, tags::HIGH_BIT, bits_stored - 1);
            set_us(obj, tags::PIXEL_REPRESENTATION, signed as u16);
            set_ds(obj, tags::RESCALE_SLOPE, &[2.5]);
            set_ds(obj, tags::RESCALE_INTERCEPT, &[-1024.0]);
            let pixels: Vec<u16> = obj.element(tags::PIXEL_DATA).unwrap().to_multi_int::<u16>().unwrap().iter().enumerate().map(|(i, p)| p | ((i as u16 % 7) << 13)).collect();
            obj.put(DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())));
        }
        objs
    };
    same("12 bits stored, garbage above", &spoil(12, false), &s.series_uid);
    same("signed, 12 bits stored", &spoil(12, true), &s.series_uid);
    same("signed, 16 bits stored", &spoil(16, true), &s.series_uid);
}

/// Fuzz finding 9 (part10_volume, campaign of 2026-12-07): an 8 KB instance of 16-bit pixels
/// claiming BitsStored 29 took over a second and 2 GiB — the decoder builds a table of 2^BitsStored
/// values per frame from the header — and BitsStored 31 would have aborted the process. The
/// pixel format is checked with the other header budgets, before anything is sized or decoded.
#[test]
fn fuzz_finding_bits_stored_beyond_bits_allocated_is_refused_before_decoding() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/fuzz/part10-bits-stored-29.dcm");
    let first = dicom_object::open_file(path).expect("the finding is a readable Part-10 file");
    // A second slice of the same kind, 1 mm on, so that nothing but the pixel format is wrong.
    let mut second = first.clone();
    set_ds(&mut second, tags::IMAGE_POSITION_PATIENT, &[0.0, 0.0, 1.0]);
    second.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.826.0.1.3680043.10.1145.9.3")));
    let err = Volume::assemble("1.2.3", &[first, second]).expect_err("refused");
    assert!(matches!(err, VolumeError::InvalidAttribute { attribute: "BitsStored", .. }), "{err}");
    assert!(err.to_string().contains("29"), "{err}");
}

/// Every pixel format an MR image cannot have is refused by name, from the header alone.
#[test]
fn pixel_formats_an_mr_image_cannot_have_are_refused_naming_the_attribute() {
    let s = fixtures().series("t2_axial");
    let refusal = |tag, value: u16| {
        let mut objs = read_files(&s.files);
        objs.iter_mut().for_each(|obj| set_us(obj, tag, value));
        Volume::assemble(&s.series_uid, &objs).expect_err("refused")
    };
    for (tag, value, attribute) in [
        (tags::BITS_STORED, 31, "BitsStored"),
        (tags::BITS_STORED, 17, "BitsStored"),
        (tags::BITS_STORED, 0, "BitsStored"),
        (tags::BITS_ALLOCATED, 32, "BitsAllocated"),
        (tags::BITS_ALLOCATED, 12, "BitsAllocated"),
        (tags::HIGH_BIT, 16, "HighBit"),
        (tags::PIXEL_REPRESENTATION, 2, "PixelRepresentation"),
    ] {
        let err = refusal(tag, value);
        assert!(matches!(&err, VolumeError::InvalidAttribute { attribute: a, .. } if *a == attribute), "{attribute} {value}: {err}");
    }
}
