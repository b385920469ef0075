//! Reporting statistics for a binary classifier, as TRIPOD+AI asks for them: AUC with a
//! stratified bootstrap interval and DeLong's variance (the fast mid-rank form of Sun & Xu 2014),
//! paired DeLong comparison, operating-point metrics, calibration (intercept, slope, Brier,
//! reliability bins) and logistic (Platt) fitting.
//!
//! Labels are `true` for the positive class (PCNSL); a higher score means more likely positive.
//! Pure functions over slices; `scripts/check_metrics.py` checks them against scikit-learn.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// Mid-ranks (1-based, ties averaged) of `x`.
fn midranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = rank;
        }
        i = j + 1;
    }
    ranks
}

fn split(scores: &[f64], labels: &[bool]) -> (Vec<f64>, Vec<f64>) {
    let pos = scores.iter().zip(labels).filter(|(_, l)| **l).map(|(s, _)| *s).collect();
    let neg = scores.iter().zip(labels).filter(|(_, l)| !**l).map(|(s, _)| *s).collect();
    (pos, neg)
}

/// Area under the ROC curve (Mann–Whitney, ties count one half). `NaN` without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let (pos, neg) = split(scores, labels);
    auc_split(&pos, &neg)
}

fn auc_split(pos: &[f64], neg: &[f64]) -> f64 {
    let (m, n) = (pos.len(), neg.len());
    if m == 0 || n == 0 {
        return f64::NAN;
    }
    let all: Vec<f64> = pos.iter().chain(neg).copied().collect();
    let r = midranks(&all);
    let sum_pos: f64 = r[..m].iter().sum();
    (sum_pos - (m * (m + 1)) as f64 / 2.0) / (m * n) as f64
}

/// DeLong's estimate for one or more scorers on the same patients: their AUCs and the
/// covariance matrix of those AUCs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeLong {
    pub aucs: Vec<f64>,
    pub covariance: Vec<Vec<f64>>,
}

/// Fast DeLong (Sun & Xu 2014): O(k · n log n) for `k` scorers.
pub fn delong(scorers: &[&[f64]], labels: &[bool]) -> DeLong {
    let k = scorers.len();
    let m = labels.iter().filter(|l| **l).count();
    let n = labels.len() - m;
    let mut aucs = Vec::with_capacity(k);
    let mut v01 = Vec::with_capacity(k); // per positive
    let mut v10 = Vec::with_capacity(k); // per negative
    for s in scorers {
        let (pos, neg) = split(s, labels);
        let tx = midranks(&pos);
        let ty = midranks(&neg);
        let all: Vec<f64> = pos.iter().chain(&neg).copied().collect();
        let tz = midranks(&all);
        let sum_pos: f64 = tz[..m].iter().sum();
        aucs.push((sum_pos - (m * (m + 1)) as f64 / 2.0) / (m * n) as f64);
        v01.push((0..m).map(|i| (tz[i] - tx[i]) / n as f64).collect::<Vec<_>>());
        v10.push((0..n).map(|j| 1.0 - (tz[m + j] - ty[j]) / m as f64).collect::<Vec<_>>());
    }
    let cov = |v: &[Vec<f64>], a: usize, b: usize| {
        let len = v[a].len();
        if len < 2 {
            return 0.0;
        }
        let ma = v[a].iter().sum::<f64>() / len as f64;
        let mb = v[b].iter().sum::<f64>() / len as f64;
        v[a].iter().zip(&v[b]).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / (len - 1) as f64
    };
    let covariance = (0..k).map(|a| (0..k).map(|b| cov(&v01, a, b) / m as f64 + cov(&v10, a, b) / n as f64).collect()).collect();
    DeLong { aucs, covariance }
}

/// An estimate with a 95 % interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

/// AUC with DeLong's normal-approximation 95 % interval (clipped to [0, 1]).
pub fn delong_interval(scores: &[f64], labels: &[bool]) -> Interval {
    let d = delong(&[scores], labels);
    let (a, se) = (d.aucs[0], d.covariance[0][0].max(0.0).sqrt());
    Interval { estimate: a, lower: (a - 1.959964 * se).max(0.0), upper: (a + 1.959964 * se).min(1.0) }
}

/// Paired DeLong test of two scorers on the same patients.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PairedTest {
    pub auc_a: f64,
    pub auc_b: f64,
    pub difference: f64,
    pub z: f64,
    /// Two-sided.
    pub p_value: f64,
}

pub fn delong_paired(a: &[f64], b: &[f64], labels: &[bool]) -> PairedTest {
    let d = delong(&[a, b], labels);
    let var = d.covariance[0][0] + d.covariance[1][1] - 2.0 * d.covariance[0][1];
    let difference = d.aucs[0] - d.aucs[1];
    let z = if var > 0.0 { difference / var.sqrt() } else { 0.0 };
    PairedTest { auc_a: d.aucs[0], auc_b: d.aucs[1], difference, z, p_value: (2.0 * normal_sf(z.abs())).min(1.0) }
}

/// Percentile 95 % interval of the AUC over `resamples` stratified bootstrap replicates
/// (positives and negatives resampled separately, so every replicate has both classes).
pub fn bootstrap_auc(scores: &[f64], labels: &[bool], resamples: usize, seed: u64) -> Interval {
    let (pos, neg) = split(scores, labels);
    let estimate = auc_split(&pos, &neg);
    if pos.is_empty() || neg.is_empty() || resamples == 0 {
        return Interval { estimate, lower: f64::NAN, upper: f64::NAN };
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bp = vec![0.0; pos.len()];
    let mut bn = vec![0.0; neg.len()];
    let mut reps: Vec<f64> = (0..resamples)
        .map(|_| {
            bp.iter_mut().for_each(|v| *v = pos[rng.random_range(0..pos.len())]);
            bn.iter_mut().for_each(|v| *v = neg[rng.random_range(0..neg.len())]);
            auc_split(&bp, &bn)
        })
        .collect();
    reps.sort_by(f64::total_cmp);
    let at = |q: f64| reps[((reps.len() - 1) as f64 * q).round() as usize];
    Interval { estimate, lower: at(0.025), upper: at(0.975) }
}

/// Survival function of the standard normal, `P(Z > z)`.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t * (-z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
        .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Sensitivity, specificity and predictive values when "positive" means `score >= threshold`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub true_positives: usize,
    pub false_positives: usize,
    pub true_negatives: usize,
    pub false_negatives: usize,
    pub sensitivity: f64,
    pub specificity: f64,
    /// At the sample's own prevalence.
    pub ppv: f64,
    pub npv: f64,
    /// At the prevalence the caller asked for (Bayes' rule on sensitivity and specificity).
    pub prevalence: f64,
    pub ppv_at_prevalence: f64,
    pub npv_at_prevalence: f64,
}

pub fn operating_point(scores: &[f64], labels: &[bool], threshold: f64, prevalence: f64) -> OperatingPoint {
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for (&s, &l) in scores.iter().zip(labels) {
        match (s >= threshold, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let ratio = |a: usize, b: usize| if a + b == 0 { f64::NAN } else { a as f64 / (a + b) as f64 };
    let (sens, spec) = (ratio(tp, fn_), ratio(tn, fp));
    let ppv_p = sens * prevalence / (sens * prevalence + (1.0 - spec) * (1.0 - prevalence));
    let npv_p = spec * (1.0 - prevalence) / (spec * (1.0 - prevalence) + (1.0 - sens) * prevalence);
    OperatingPoint {
        threshold,
        true_positives: tp,
        false_positives: fp,
        true_negatives: tn,
        false_negatives: fn_,
        sensitivity: sens,
        specificity: spec,
        ppv: ratio(tp, fp),
        npv: ratio(tn, fn_),
        prevalence,
        ppv_at_prevalence: ppv_p,
        npv_at_prevalence: npv_p,
    }
}

/// ROC curve points `(false positive rate, true positive rate)` from (0,0) to (1,1).
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let m = labels.iter().filter(|l| **l).count().max(1) as f64;
    let n = labels.iter().filter(|l| !**l).count().max(1) as f64;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (idx, &o) in order.iter().enumerate() {
        if labels[o] { tp += 1.0 } else { fp += 1.0 }
        let tie_follows = order.get(idx + 1).is_some_and(|&next| scores[next] == scores[o]);
        if !tie_follows {
            points.push((fp / n, tp / m));
        }
    }
    points
}

/// Calibration of probabilities against outcomes (Van Calster et al. 2019).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    /// Calibration-in-the-large: intercept of `logit P(y) = α + logit(p)`; ideal 0.
    pub intercept: f64,
    /// Slope of `logit P(y) = α + β·logit(p)`; ideal 1, < 1 means over-confident.
    pub slope: f64,
    pub brier: f64,
    pub bins: Vec<ReliabilityBin>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub observed: f64,
}

/// Logit with probabilities clamped away from 0 and 1 (as the engine's calibration does).
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

pub fn calibration(probabilities: &[f64], labels: &[bool], n_bins: usize) -> Calibration {
    let x: Vec<f64> = probabilities.iter().map(|&p| logit(p)).collect();
    let y: Vec<f64> = labels.iter().map(|&l| if l { 1.0 } else { 0.0 }).collect();
    let (slope, _) = fit_logistic(&x, &y, true);
    let (_, intercept) = fit_logistic_with_offset(&x, &y);
    let brier = probabilities.iter().zip(&y).map(|(p, y)| (p - y).powi(2)).sum::<f64>() / y.len().max(1) as f64;
    let bins = (0..n_bins)
        .map(|b| {
            let (lower, upper) = (b as f64 / n_bins as f64, (b + 1) as f64 / n_bins as f64);
            let members: Vec<usize> =
                (0..probabilities.len()).filter(|&i| probabilities[i] >= lower && (probabilities[i] < upper || (b + 1 == n_bins && probabilities[i] <= upper))).collect();
            let count = members.len();
            let mean = |f: &dyn Fn(usize) -> f64| if count == 0 { f64::NAN } else { members.iter().map(|&i| f(i)).sum::<f64>() / count as f64 };
            ReliabilityBin { lower, upper, count, mean_predicted: mean(&|i| probabilities[i]), observed: mean(&|i| y[i]) }
        })
        .collect();
    Calibration { intercept, slope, brier, bins }
}

/// Maximum-likelihood logistic regression `P(y=1) = σ(a·x + b)` by Newton's method with step
/// halving; targets may be soft (Platt's smoothed labels). With `fit_slope == false`, `a` stays 0.
/// Returns `(a, b)`.
pub fn fit_logistic(x: &[f64], y: &[f64], fit_slope: bool) -> (f64, f64) {
    newton(x, y, None, fit_slope)
}

/// Intercept-only logistic regression with `x` as a fixed offset: `P(y=1) = σ(x + b)`. Returns
/// `(1, b)`.
pub fn fit_logistic_with_offset(x: &[f64], y: &[f64]) -> (f64, f64) {
    let (_, b) = newton(x, y, Some(x), false);
    (1.0, b)
}

fn newton(x: &[f64], y: &[f64], offset: Option<&[f64]>, fit_slope: bool) -> (f64, f64) {
    let off = |i: usize| offset.map_or(0.0, |o| o[i]);
    let nll = |a: f64, b: f64| -> f64 {
        (0..x.len())
            .map(|i| {
                let z = if offset.is_some() { off(i) + b } else { a * x[i] + b };
                // log(1 + e^z) − y z, computed stably
                let softplus = if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
                softplus - y[i] * z
            })
            .sum()
    };
    let (mut a, mut b) = (if fit_slope { 1.0 } else { 0.0 }, 0.0);
    let mut current = nll(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..x.len() {
            let z = if offset.is_some() { off(i) + b } else { a * x[i] + b };
            let p = sigmoid(z);
            let w = p * (1.0 - p);
            let r = p - y[i];
            ga += r * x[i];
            gb += r;
            haa += w * x[i] * x[i];
            hab += w * x[i];
            hbb += w;
        }
        let (da, db) = if fit_slope {
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-300 {
                break;
            }
            ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det)
        } else {
            if hbb < 1e-300 {
                break;
            }
            (0.0, gb / hbb)
        };
        let mut step = 1.0;
        loop {
            let (na, nb) = (a - step * da, b - step * db);
            let next = nll(na, nb);
            if next <= current || step < 1e-8 {
                a = na;
                b = nb;
                let improvement = current - next;
                current = next;
                if improvement.abs() < 1e-12 * (1.0 + current.abs()) {
                    return (a, b);
                }
                break;
            }
            step /= 2.0;
        }
    }
    (a, b)
}

/// Platt scaling on `logit(p)` with Platt's smoothed targets, which keep the fit finite when
/// the validation set happens to be separable. Returns `(a, b)` for
/// `p' = σ(a·logit(p) + b)`.
pub fn platt(probabilities: &[f64], labels: &[bool]) -> (f64, f64) {
    let n_pos = labels.iter().filter(|l| **l).count() as f64;
    let n_neg = labels.len() as f64 - n_pos;
    let (hi, lo) = ((n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0));
    let x: Vec<f64> = probabilities.iter().map(|&p| logit(p)).collect();
    let y: Vec<f64> = labels.iter().map(|&l| if l { hi } else { lo }).collect();
    fit_logistic(&x, &y, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_separating_scores_have_auc_one_and_reversed_scores_zero() {
        let labels = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), 0.0);
    }

    #[test]
    fn ties_between_classes_count_one_half() {
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), 0.5);
    }

    #[test]
    fn delong_auc_equals_mann_whitney_auc() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.55];
        let l = [false, false, true, true, false, false, true, true];
        let d = delong(&[&s], &l);
        assert!((d.aucs[0] - auc(&s, &l)).abs() < 1e-12);
        assert!(d.covariance[0][0] > 0.0);
    }

    #[test]
    fn a_scorer_compared_with_itself_shows_no_difference() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2];
        let l = [false, false, true, true, false, true];
        let t = delong_paired(&s, &s, &l);
        assert_eq!(t.difference, 0.0);
        assert!((t.p_value - 1.0).abs() < 1e-6, "{t:?}");
    }

    #[test]
    fn normal_tail_matches_known_quantiles() {
        assert!((normal_sf(1.959964) - 0.025).abs() < 1e-6);
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn ppv_at_low_prevalence_is_lower_than_in_a_balanced_sample() {
        let s = [0.9, 0.8, 0.7, 0.3, 0.2, 0.6];
        let l = [true, true, true, false, false, false];
        let op = operating_point(&s, &l, 0.5, 0.05);
        assert_eq!((op.true_positives, op.false_positives), (3, 1));
        assert!(op.ppv_at_prevalence < op.ppv);
    }

    #[test]
    fn platt_scaling_of_well_calibrated_probabilities_is_near_identity() {
        // p = σ(x) and y drawn as the deterministic expected fraction in each of many bins.
        let mut p = Vec::new();
        let mut l = Vec::new();
        for i in 1..100 {
            let prob = i as f64 / 100.0;
            for j in 0..100 {
                p.push(prob);
                l.push((j as f64) < prob * 100.0);
            }
        }
        let (a, b) = platt(&p, &l);
        assert!((a - 1.0).abs() < 0.1 && b.abs() < 0.1, "a={a} b={b}");
        let c = calibration(&p, &l, 10);
        assert!((c.slope - 1.0).abs() < 0.1 && c.intercept.abs() < 0.1, "{c:?}");
    }
}
