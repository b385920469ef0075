//! The synthetic cohort as a specification: determinism, label balance, the imaging features
//! that separate GBM from lymphoma (with overlap), site effects and MR contrasts.

use neurocds_lab::cohort::{CohortSpec, Diagnosis, SITES, SeriesKind, SyntheticCase, generate_case};
use neurocds_analysis::imaging::Volume;

fn spec(seed: u64) -> CohortSpec {
    CohortSpec::new(seed, 1000)
}

/// Mean of the voxels within `radius_mm` of an LPS point.
fn mean_near(volume: &Volume, centre: [f64; 3], radius_mm: f64) -> f64 {
    let a = volume.affine;
    let (mut sum, mut n) = (0.0, 0usize);
    for ((k, j, i), v) in volume.data.indexed_iter() {
        let p = [0, 1, 2].map(|r| a[r][0] * i as f64 + a[r][1] * j as f64 + a[r][2] * k as f64 + a[r][3]);
        let d2: f64 = (0..3).map(|r| (p[r] - centre[r]).powi(2)).sum();
        if d2 <= radius_mm * radius_mm {
            sum += *v as f64;
            n += 1;
        }
    }
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Median of the voxels brighter than a tenth of the maximum (roughly: the head).
fn head_median(volume: &Volume) -> f64 {
    let max = volume.data.iter().cloned().fold(0.0f32, f32::max);
    let mut head: Vec<f32> = volume.data.iter().cloned().filter(|&v| v > 0.1 * max).collect();
    let mid = head.len() / 2;
    let (_, m, _) = head.select_nth_unstable_by(mid, f32::total_cmp);
    *m as f64
}

fn assert_same_case(a: &SyntheticCase, b: &SyntheticCase) {
    assert_eq!(a.patient_id, b.patient_id);
    assert_eq!(a.label, b.label);
    assert_eq!((a.age, a.sex, &a.site, a.acquired_on), (b.age, b.sex, &b.site, b.acquired_on));
    assert_eq!(a.study_uid, b.study_uid);
    assert_eq!(a.lesion_centre_lps, b.lesion_centre_lps);
    assert_eq!(a.t1c.data, b.t1c.data);
    assert_eq!(a.t2.data, b.t2.data);
    assert_eq!(a.t1c.affine, b.t1c.affine);
}

#[test]
fn the_same_seed_and_index_give_the_same_case_whatever_was_generated_before() {
    let s = spec(11);
    let alone = generate_case(&s, 5);
    let _ = generate_case(&s, 4);
    let after_others = generate_case(&s, 5);
    assert_same_case(&alone, &after_others);
    assert_eq!(alone.render_series(SeriesKind::Flair).data, after_others.render_series(SeriesKind::Flair).data);
}

#[test]
fn different_seeds_or_indices_give_different_cases_and_uids() {
    let a = generate_case(&spec(11), 5);
    let b = generate_case(&spec(11), 6);
    let c = generate_case(&spec(12), 5);
    assert_ne!(a.study_uid, b.study_uid);
    assert_ne!(a.study_uid, c.study_uid);
    assert_ne!(a.patient_id, c.patient_id);
    assert_ne!(a.t1c.series_uid, a.t2.series_uid);
    assert!(a.study_uid.starts_with("2.25.") && a.study_uid.len() <= 64);
}

#[test]
fn t1c_and_t2_share_grid_frame_of_reference_and_sit_on_the_site_geometry() {
    let case = generate_case(&spec(2), 0);
    let site = case.site_profile();
    assert_eq!(case.t1c.data.shape(), case.t2.data.shape());
    assert_eq!(case.t1c.affine, case.t2.affine);
    assert_eq!(case.t1c.frame_of_reference_uid, case.t2.frame_of_reference_uid);
    assert_eq!(case.t1c.frame_of_reference_uid.as_deref(), Some(case.frame_of_reference_uid.as_str()));
    assert_eq!(case.t1c.data.shape(), &[site.slices, site.matrix[1], site.matrix[0]]);
    assert_eq!(case.t1c.spacing, [site.pixel_spacing_mm, site.pixel_spacing_mm, site.slice_spacing_mm()]);
    assert_eq!(case.site, site.name);
    assert_eq!(case.external, site.external);
}

#[test]
fn cohort_labels_follow_the_requested_lymphoma_fraction() {
    for (fraction, n, expected) in [(0.5, 20, 10.0), (0.3, 20, 6.0)] {
        let mut s = spec(4);
        s.pcnsl_fraction = fraction;
        let pcnsl = (0..n).filter(|&i| generate_case(&s, i).label == Diagnosis::Pcnsl).count();
        assert!((pcnsl as f64 - expected).abs() <= 1.0, "fraction {fraction}: {pcnsl} of {n}");
    }
}

#[test]
fn gbm_cases_have_a_larger_necrotic_fraction_and_a_darker_centre_than_lymphoma_on_average() {
    let s = spec(21);
    let (mut gbm, mut pcnsl) = (Vec::new(), Vec::new());
    for i in 0..36 {
        let case = generate_case(&s, i);
        // Centre darkness: T1c near the lesion centre relative to the head's median signal.
        let centre = mean_near(&case.t1c, case.lesion_centre_lps, 4.0) / head_median(&case.t1c);
        let row = (case.truth.necrotic_fraction(), centre, case.phenotype.clone());
        match case.label {
            Diagnosis::Gbm => gbm.push(row),
            Diagnosis::Pcnsl => pcnsl.push(row),
        }
    }
    let mean = |v: &[(f64, f64, String)], f: fn(&(f64, f64, String)) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let (gbm_necrosis, pcnsl_necrosis) = (mean(&gbm, |r| r.0), mean(&pcnsl, |r| r.0));
    let (gbm_centre, pcnsl_centre) = (mean(&gbm, |r| r.1), mean(&pcnsl, |r| r.1));
    assert!(gbm_necrosis > pcnsl_necrosis + 0.1, "necrotic fraction GBM {gbm_necrosis:.2} vs PCNSL {pcnsl_necrosis:.2}");
    assert!(gbm_centre < pcnsl_centre * 0.8, "centre signal GBM {gbm_centre:.2} vs PCNSL {pcnsl_centre:.2}");
    // Overlap: the separation is not perfect in either direction.
    let ring_lymphoma_or_solid_gbm = gbm.iter().filter(|r| r.2 != "ring-necrotic").count()
        + pcnsl.iter().filter(|r| r.2 == "ring-necrotic").count();
    assert!(ring_lymphoma_or_solid_gbm > 0, "no solid GBM and no necrotic lymphoma in 36 cases");
}

#[test]
fn overlap_keeps_a_single_obvious_feature_from_separating_the_classes() {
    // Rank-based AUC of "necrotic fraction" as a GBM score: informative, but far from perfect.
    let s = spec(33);
    let cases: Vec<(bool, f64)> = (0..60)
        .map(|i| generate_case(&s, i))
        .map(|c| (c.label == Diagnosis::Gbm, c.truth.necrotic_fraction()))
        .collect();
    let (pos, neg): (Vec<&(bool, f64)>, Vec<&(bool, f64)>) = cases.iter().partition(|c| c.0);
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p.1 > n.1 { 1.0 } else if p.1 == n.1 { 0.5 } else { 0.0 };
        }
    }
    let auc = wins / (pos.len() * neg.len()) as f64;
    assert!((0.7..0.97).contains(&auc), "necrosis-only AUC {auc:.3}");
}

#[test]
fn external_sites_differ_from_internal_ones_in_geometry_and_noise() {
    let internal: Vec<_> = SITES.iter().filter(|s| !s.external).collect();
    let external: Vec<_> = SITES.iter().filter(|s| s.external).collect();
    assert!(internal.len() >= 3 && external.len() >= 2);
    let internal_spacing: Vec<f64> = internal.iter().map(|s| s.slice_spacing_mm()).collect();
    assert!(external.iter().any(|s| !internal_spacing.contains(&s.slice_spacing_mm())));

    // Measured: background noise (air in the first slice's corner) relative to the head signal.
    let noise_of = |external: bool| -> f64 {
        let mut s = spec(8);
        s.external_fraction = if external { 1.0 } else { 0.0 };
        let ratios: Vec<f64> = (0..6)
            .map(|i| generate_case(&s, i))
            .inspect(|c| assert_eq!(c.external, external))
            .map(|c| {
                let corner: Vec<f64> = c.t2.data.slice(ndarray::s![.., 0..12, 0..12]).iter().map(|&v| v as f64).collect();
                let mean = corner.iter().sum::<f64>() / corner.len() as f64;
                mean / head_median(&c.t2)
            })
            .collect();
        ratios.iter().sum::<f64>() / ratios.len() as f64
    };
    let (internal_noise, external_noise) = (noise_of(false), noise_of(true));
    assert!(external_noise > internal_noise * 1.2, "noise floor internal {internal_noise:.4}, external {external_noise:.4}");
}

#[test]
fn t2_is_bright_where_t1_is_dark_because_csf_and_white_matter_swap() {
    let case = generate_case(&spec(5), 2);
    let max1 = case.t1c.data.iter().cloned().fold(0.0f32, f32::max);
    let pairs: Vec<(f64, f64)> = case
        .t1c
        .data
        .iter()
        .zip(case.t2.data.iter())
        .filter(|(a, _)| **a > 0.15 * max1)
        .map(|(&a, &b)| (a as f64, b as f64))
        .collect();
    let n = pairs.len() as f64;
    let (ma, mb) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let cov: f64 = pairs.iter().map(|p| (p.0 - ma) * (p.1 - mb)).sum::<f64>() / n;
    assert!(cov < 0.0, "T1c and T2 should be anticorrelated inside the head, covariance {cov}");
    // The T1 pre-contrast series is darker than T1c in the lesion (it does not enhance).
    let pre = case.render_series(SeriesKind::T1Pre);
    let c = case.lesion_centre_lps;
    let radius = 3.0 + case.truth.enhancing_ml.cbrt();
    assert!(mean_near(&pre, c, radius) < mean_near(&case.t1c, c, radius));
}

#[test]
fn demographics_follow_the_epidemiology_of_the_two_tumours() {
    let s = spec(9);
    let cases: Vec<_> = (0..30).map(|i| generate_case(&s, i)).collect();
    for c in &cases {
        assert!((19..=92).contains(&c.age), "age {}", c.age);
        assert!(c.acquired_on >= s.acquired_from && c.acquired_on <= s.acquired_to);
    }
    let years: std::collections::BTreeSet<i32> = cases.iter().map(|c| c.acquired_on.year()).collect();
    assert!(years.len() >= 5, "dates should spread over years for a temporal split: {years:?}");
}

