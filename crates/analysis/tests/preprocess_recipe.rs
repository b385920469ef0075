//! `imaging::preprocess::prepare` on phantoms (`tests/support/phantom.rs`): a head (ellipsoid with grey/white
//! texture and ventricles) with an enhancing sphere, in two series that share a frame of reference.

use std::time::Instant;

use neurocds_analysis::imaging::{
    Volume,
    preprocess::{AbstentionKind, Recipe, prepare},
};

const RECIPE: Recipe = Recipe { shape: [32, 32, 32], spacing_mm: 2.0 };

#[path = "support/phantom.rs"]
mod phantom;
use phantom::Phantom;

fn kind_of(t1: &Volume, t2: &Volume) -> AbstentionKind {
    match prepare(t1, t2, &RECIPE) {
        Ok(p) => panic!("expected an abstention, got a lesion at {:?}", p.lesion_centre_lps),
        Err(a) => a.kind,
    }
}

#[test]
fn enhancing_sphere_is_found_cropped_and_measured() {
    let ph = Phantom::head();
    let p = prepare(&ph.volume(true), &ph.volume(false), &RECIPE).unwrap();
    let ([cx, cy, cz], r) = ph.lesion.unwrap();
    let expected = [cx + ph.origin[0], cy + ph.origin[1], cz + ph.origin[2]];
    for a in 0..3 {
        assert!((p.lesion_centre_lps[a] - expected[a]).abs() < 2.0, "centre {:?} vs {expected:?}", p.lesion_centre_lps);
    }
    let true_ml = 4.0 / 3.0 * std::f64::consts::PI * r.powi(3) / 1000.0;
    assert!((p.lesion_volume_ml - true_ml).abs() < 0.4 * true_ml, "volume {} mL vs {true_ml}", p.lesion_volume_ml);
    assert!(p.t1c_lesion_mean > 3.0);
    assert_eq!(p.data.len(), 2 * 32 * 32 * 32);
    assert!(p.data.iter().all(|v| v.is_finite()));
    // The crop's centre voxel is lesion: bright on T1c, dark on T2.
    let centre = (16 * 32 + 16) * 32 + 16;
    assert!(p.data[centre] > 3.0, "T1c at centre {}", p.data[centre]);
    assert!(p.data[32 * 32 * 32 + centre] < 0.0, "T2 at centre {}", p.data[32 * 32 * 32 + centre]);
    assert_eq!(p.lesion_t1c_slice, (cz / ph.spacing[2]).round() as usize);
    for png in [&p.key_images.t1c_png, &p.key_images.t2_png] {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}

#[test]
fn t2_in_another_voxel_grid_is_matched_through_patient_coordinates() {
    let ph = Phantom::head();
    let t1 = ph.volume(true);
    // Same anatomy, T2 sampled on a grid shifted by 10 mm with coarser slices.
    let shifted = Phantom { spacing: [2.0, 2.0, 5.0], dims: (32, 96, 96), anatomy_dims: (32, 96, 96), ..Phantom::head() };
    let t2 = shifted.volume(false);
    let p = prepare(&t1, &t2, &RECIPE).unwrap();
    let centre = (16 * 32 + 16) * 32 + 16;
    assert!(p.data[32 * 32 * 32 + centre] < 0.0, "T2 at the lesion centre should be dark: {}", p.data[32 * 32 * 32 + centre]);
}

#[test]
fn series_in_different_frames_of_reference_are_refused() {
    let ph = Phantom::head();
    let t2 = Phantom { frame: "9.9.9", ..Phantom::head() }.volume(false);
    assert_eq!(kind_of(&ph.volume(true), &t2), AbstentionKind::CoregistrationImpossible);
}

#[test]
fn head_without_enhancement_has_no_lesion() {
    let ph = Phantom { lesion: None, ..Phantom::head() };
    assert_eq!(kind_of(&ph.volume(true), &ph.volume(false)), AbstentionKind::NoEnhancingLesion);
}

#[test]
fn a_lesion_half_cut_by_the_top_of_the_volume_was_too_little_imaged() {
    // A slab of 36 slices × 2.5 mm through the head ends at z = 87.5 mm, inside the lesion
    // (centre z = 90 mm, radius 9 mm): about half of it is missing.
    let ph = Phantom { dims: (36, 96, 96), ..Phantom::head() };
    assert_eq!(kind_of(&ph.volume(true), &ph.volume(false)), AbstentionKind::InsufficientCoverage);
}

#[test]
fn a_lesion_grazed_by_the_top_of_the_volume_is_decided_from_what_was_imaged() {
    // A 14 mm lesion (11 mL) centred at z = 90 mm; the slab ends at z = 100 mm: only a thin cap
    // of it is missing.
    let ph = Phantom { dims: (41, 96, 96), lesion: Some(([110.0, 80.0, 90.0], 14.0)), ..Phantom::head() };
    let p = prepare(&ph.volume(true), &ph.volume(false), &RECIPE).unwrap();
    assert!(p.lesion.t1c_coverage >= 0.8 && p.lesion.t1c_coverage < 1.0, "coverage recorded: {}", p.lesion.t1c_coverage);
    assert_eq!(p.scope.out_of_scope, None);
}

#[test]
fn a_small_lesion_under_an_unimaged_vertex_is_not_judged() {
    // The slab ends at z = 97.5 mm, through the head: the skull above the 3 mL lesion was never
    // imaged, and a mass that small there could as well be dural-based.
    let ph = Phantom { dims: (40, 96, 96), ..Phantom::head() };
    assert_eq!(kind_of(&ph.volume(true), &ph.volume(false)), AbstentionKind::InsufficientCoverage);
}

#[test]
fn a_handful_of_slices_is_too_few() {
    let ph = Phantom { dims: (6, 96, 96), anatomy_dims: (6, 96, 96), spacing: [2.0, 2.0, 5.0], ..Phantom::head() };
    assert_eq!(kind_of(&ph.volume(true), &ph.volume(false)), AbstentionKind::TooFewSlices);
}

#[test]
fn a_full_resolution_study_is_prepared_into_the_models_grid() {
    // Speed is measured by the benchmark (BENCHMARKS.md), never asserted in a test.
    let ph = Phantom { dims: (176, 256, 256), anatomy_dims: (176, 256, 256), spacing: [0.9, 0.9, 1.0], lesion: Some(([150.0, 100.0, 100.0], 12.0)), ..Phantom::head() };
    let (t1, t2) = (ph.volume(true), ph.volume(false));
    let start = Instant::now();
    let p = prepare(&t1, &t2, &RECIPE).unwrap();
    println!("prepare 176x256x256: {:?}", start.elapsed());
    assert_eq!(p.data.len(), 2 * RECIPE.shape.iter().product::<usize>());
    assert!(p.data.iter().all(|v| v.is_finite()));
}

/// Issue 15: header spacing sizes the working grid, so an absurd spacing is refused before the
/// grid is allocated (100 km voxels would ask for ~10¹⁸ working voxels).
#[test]
fn a_series_with_absurd_voxel_spacing_is_refused_before_its_working_grid_is_allocated() {
    let ph = Phantom { spacing: [1e5, 1e5, 1e5], ..Phantom::head() };
    assert_eq!(kind_of(&ph.volume(true), &ph.volume(false)), AbstentionKind::ImplausibleGeometry);
}

#[test]
fn a_series_with_zero_spacing_is_refused() {
    let ph = Phantom { spacing: [0.0, 1.0, 1.0], ..Phantom::head() };
    assert_eq!(kind_of(&ph.volume(true), &ph.volume(false)), AbstentionKind::ImplausibleGeometry);
}

/// FNV-1a over the bits of every value: any change to one number changes it.
fn fingerprint(values: &[f32]) -> u64 {
    values.iter().flat_map(|v| v.to_bits().to_le_bytes()).fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Issue 18: preprocessing made faster gives the model the same numbers, bit for bit. The
/// fingerprints are those of `neurocds-prep/2` as of commit 8690bac (before the quantiles were
/// taken from one copy and the statistics and the crop ran in parallel); a change to the recipe
/// must change them here, on purpose, with a new `RECIPE_VERSION`.
#[test]
fn the_model_input_of_a_phantom_is_the_same_bit_for_bit() {
    let ph = Phantom::head();
    let p = prepare(&ph.volume(true), &ph.volume(false), &RECIPE).unwrap();
    let full = Phantom { dims: (176, 256, 256), anatomy_dims: (176, 256, 256), spacing: [0.9, 0.9, 1.0], lesion: Some(([150.0, 100.0, 100.0], 12.0)), ..Phantom::head() };
    let q = prepare(&full.volume(true), &full.volume(false), &RECIPE).unwrap();
    let got = (fingerprint(&p.data), p.lesion_volume_ml.to_bits(), fingerprint(&q.data), q.lesion_volume_ml.to_bits());
    println!("fingerprints: {got:?}");
    assert_eq!(got, EXPECTED_FINGERPRINTS);
}

const EXPECTED_FINGERPRINTS: (u64, u64, u64, u64) = (15_001_629_361_597_573_722, 4_615_252_869_332_265_337, 1_759_711_630_730_615_175, 4_620_242_857_719_391_847);
