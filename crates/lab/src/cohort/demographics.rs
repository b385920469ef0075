//! Who the patient is, where and when they were scanned: everything about a case except the
//! images. Drawn from the epidemiology in `clinical-context.md` ("age, sex" row).

use time::{Date, Duration, Weekday};

use super::rng::{self, Stream};
use super::sites::SITES;
use super::spec::{CohortSpec, Diagnosis, Presentation, Sex};

/// The non-image facts of one case.
#[derive(Debug, Clone)]
pub(crate) struct CasePlan {
    pub patient_id: String,
    pub label: Diagnosis,
    pub age: u32,
    pub sex: Sex,
    pub site_index: usize,
    pub acquired_on: Date,
    pub session_start_s: u32,
    /// The imaging of this case mimics the other diagnosis.
    pub mimic: bool,
    pub presentation: Presentation,
}

pub(crate) fn plan_case(spec: &CohortSpec, index: usize) -> CasePlan {
    let mut rng = rng::stream_rng(spec.seed, index, Stream::Demographics, 0);
    let label = label_of(spec, index);

    // GBM: median about 64-65, men about 1.6 : 1. CNS-DLBCL: median about 65-67, men slightly
    // more often (clinical-context.md, "The question").
    let (age_mean, age_sd, p_male) = match label {
        Diagnosis::Gbm => (64.0, 12.5, 1.6 / 2.6),
        Diagnosis::Pcnsl => (66.0, 11.5, 0.55),
    };
    let age = rng::normal(&mut rng, age_mean, age_sd).round().clamp(19.0, 92.0) as u32;
    let sex = if rng::chance(&mut rng, p_male) { Sex::Male } else { Sex::Female };

    // Site is drawn independently of the label: otherwise a model could learn the scanner
    // instead of the tumour.
    let external = rng::chance(&mut rng, spec.external_fraction);
    let site_index = weighted_site(&mut rng, external);

    let days = (spec.acquired_to - spec.acquired_from).whole_days().max(0);
    let offset = (rng::uniform(&mut rng, 0.0, (days + 1) as f64) as i64).min(days);
    let acquired_on = weekday_on_or_before(spec.acquired_from + Duration::days(offset), spec.acquired_from);
    let session_start_s = (7.0 * 3600.0 + rng::uniform(&mut rng, 0.0, 11.5 * 3600.0)) as u32;
    let mimic = rng::chance(&mut rng, spec.mimic_fraction);
    // Its own stream, so that adding out-of-scope studies changes no tumour case.
    let presentation = {
        let mut r = rng::stream_rng(spec.seed, index, Stream::Demographics, 7);
        let u = rng::uniform(&mut r, 0.0, 1.0);
        if u < spec.normal_fraction {
            Presentation::NormalBrain
        } else if u < spec.normal_fraction + spec.extra_axial_fraction {
            Presentation::ExtraAxial
        } else {
            Presentation::Tumour
        }
    };

    CasePlan {
        patient_id: format!("SYN{:06X}-{index:05}", rng::mix(spec.seed) & 0xFF_FFFF),
        label,
        age,
        sex,
        site_index,
        acquired_on,
        session_start_s,
        mimic,
        presentation,
    }
}

/// The label of case `index`. A Weyl sequence (index × golden ratio, shifted by the seed) rather
/// than a coin flip, so that any run of cases holds the requested share of lymphomas to within
/// one case — a 40-case smoke cohort is balanced, not 14/26.
pub(crate) fn label_of(spec: &CohortSpec, index: usize) -> Diagnosis {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    let shift = (rng::mix(spec.seed ^ 0x1ABE1) >> 11) as f64 / (1u64 << 53) as f64;
    let u = (index as f64 * GOLDEN + shift).fract();
    if u < spec.pcnsl_fraction { Diagnosis::Pcnsl } else { Diagnosis::Gbm }
}

fn weighted_site(rng: &mut rand::rngs::StdRng, external: bool) -> usize {
    let candidates: Vec<usize> = (0..SITES.len()).filter(|&i| SITES[i].external == external).collect();
    let total: f64 = candidates.iter().map(|&i| SITES[i].weight).sum();
    let mut pick = rng::uniform(rng, 0.0, total);
    for &i in &candidates {
        pick -= SITES[i].weight;
        if pick < 0.0 {
            return i;
        }
    }
    // Rounding can leave `pick` a hair above zero after the last candidate.
    candidates.last().copied().unwrap_or(0)
}

/// Outpatient MRI is mostly done on weekdays: move a weekend date back to the Friday, unless
/// that would leave the cohort's date range.
fn weekday_on_or_before(date: Date, earliest: Date) -> Date {
    let back = match date.weekday() {
        Weekday::Saturday => 1,
        Weekday::Sunday => 2,
        _ => 0,
    };
    let moved = date - Duration::days(back);
    if moved < earliest { date } else { moved }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_run_of_cases_holds_the_requested_lymphoma_share_to_within_two_cases() {
        for seed in [0, 1, 99] {
            let mut spec = CohortSpec::new(seed, 0);
            spec.pcnsl_fraction = 0.3;
            for n in [10, 37, 100, 1000] {
                let pcnsl = (0..n).filter(|&i| label_of(&spec, i) == Diagnosis::Pcnsl).count();
                let expected = 0.3 * n as f64;
                assert!((pcnsl as f64 - expected).abs() <= 2.0, "seed {seed}, n {n}: {pcnsl} lymphomas");
            }
        }
    }

    #[test]
    fn gbm_patients_are_mostly_men_and_about_sixty_four() {
        let spec = CohortSpec::new(5, 0);
        let gbm: Vec<CasePlan> =
            (0..4000).map(|i| plan_case(&spec, i)).filter(|p| p.label == Diagnosis::Gbm).collect();
        let men = gbm.iter().filter(|p| p.sex == Sex::Male).count() as f64 / gbm.len() as f64;
        let mut ages: Vec<u32> = gbm.iter().map(|p| p.age).collect();
        ages.sort_unstable();
        let median = ages[ages.len() / 2];
        assert!((0.57..0.66).contains(&men), "male share {men}");
        assert!((62..=66).contains(&median), "median age {median}");
    }

    #[test]
    fn acquisition_dates_stay_in_range_and_fall_on_weekdays() {
        let spec = CohortSpec::new(3, 0);
        for i in 0..500 {
            let plan = plan_case(&spec, i);
            assert!(plan.acquired_on >= spec.acquired_from && plan.acquired_on <= spec.acquired_to);
            assert!(!matches!(plan.acquired_on.weekday(), Weekday::Saturday | Weekday::Sunday));
        }
    }
}
