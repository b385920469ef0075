//! How far one distribution has moved from another: the population stability index over fixed
//! bins, and the Kolmogorov–Smirnov distance over raw values.
//!
//! PSI = Σ (live − reference) · ln(live / reference) over the bins' shares. By the usual reading
//! under 0.1 is stable, 0.1–0.25 a moderate shift, over 0.25 a major one. An empty bin on one
//! side would make it infinite, so shares are floored at [`SHARE_FLOOR`].

use serde::Serialize;

/// The smallest share a bin counts with (an empty bin would make the index infinite).
pub const SHARE_FLOOR: f64 = 1e-4;

/// How a quantity is cut into bins.
#[derive(Debug, Clone)]
pub enum Binning {
    /// `edges[i] <= x < edges[i + 1]`; values outside fall into the first or last bin.
    Numeric { edges: &'static [f64], unit: &'static str },
    /// Named categories; the bins are those seen on either side, in the order given, then any
    /// other seen, sorted.
    Categorical { order: &'static [&'static str] },
}

/// One bin, as both sides fill it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bin {
    pub label: String,
    pub reference: u64,
    pub live: u64,
    pub reference_share: f64,
    pub live_share: f64,
}

/// Values of one quantity, numeric or categorical.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub numbers: Vec<f64>,
    pub categories: Vec<String>,
}

impl Sample {
    pub fn len(&self) -> usize {
        self.numbers.len() + self.categories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Both samples binned the same way.
pub fn bins(binning: &Binning, reference: &Sample, live: &Sample) -> Vec<Bin> {
    let (labels, index): (Vec<String>, Box<dyn Fn(&Sample) -> Vec<u64>>) = match binning {
        Binning::Numeric { edges, unit } => {
            let labels = numeric_labels(edges, unit);
            let n = labels.len();
            let count = move |s: &Sample| {
                let mut counts = vec![0u64; n];
                for &x in s.numbers.iter().filter(|x| x.is_finite()) {
                    // The number of inner edges at or below x is the bin.
                    let i = edges[1..edges.len() - 1].iter().filter(|&&e| e <= x).count();
                    counts[i] += 1;
                }
                counts
            };
            (labels, Box::new(count))
        }
        Binning::Categorical { order } => {
            let mut labels: Vec<String> = order.iter().map(|s| s.to_string()).collect();
            let mut others: Vec<String> = reference.categories.iter().chain(&live.categories).filter(|c| !labels.contains(c)).cloned().collect();
            others.sort();
            others.dedup();
            labels.extend(others);
            let known = labels.clone();
            let count = move |s: &Sample| known.iter().map(|l| s.categories.iter().filter(|c| *c == l).count() as u64).collect();
            (labels, Box::new(count))
        }
    };
    let (r, l) = (index(reference), index(live));
    let share = |c: u64, total: u64| if total == 0 { 0.0 } else { c as f64 / total as f64 };
    let (rt, lt) = (r.iter().sum::<u64>(), l.iter().sum::<u64>());
    let mut out: Vec<Bin> = labels
        .into_iter()
        .zip(r.iter().zip(&l))
        .map(|(label, (&reference, &live))| Bin { label, reference, live, reference_share: share(reference, rt), live_share: share(live, lt) })
        .collect();
    // Categories named in `order` but seen on neither side say nothing.
    if matches!(binning, Binning::Categorical { .. }) {
        out.retain(|b| b.reference + b.live > 0);
    }
    out
}

fn numeric_labels(edges: &[f64], unit: &str) -> Vec<String> {
    let n = edges.len() - 1;
    (0..n)
        .map(|i| {
            let (lo, hi) = (edges[i], edges[i + 1]);
            match (i, lo.is_finite(), hi.is_finite()) {
                (0, false, _) => format!("< {hi}{unit}"),
                (_, _, false) => format!("≥ {lo}{unit}"),
                _ => format!("{lo}–{hi}{unit}"),
            }
        })
        .collect()
}

/// The population stability index of `live` against `reference`; `None` when a side is empty.
pub fn psi(bins: &[Bin]) -> Option<f64> {
    let (rt, lt) = (bins.iter().map(|b| b.reference).sum::<u64>(), bins.iter().map(|b| b.live).sum::<u64>());
    if rt == 0 || lt == 0 {
        return None;
    }
    Some(
        bins.iter()
            .map(|b| {
                let (r, l) = (b.reference_share.max(SHARE_FLOOR), b.live_share.max(SHARE_FLOOR));
                (l - r) * (l / r).ln()
            })
            .sum(),
    )
}

/// The Kolmogorov–Smirnov distance: the largest gap between the two empirical cumulative
/// distributions. `None` when a side has no value.
pub fn ks(reference: &[f64], live: &[f64]) -> Option<f64> {
    let sorted = |v: &[f64]| {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (a, b) = (sorted(reference), sorted(live));
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (mut i, mut j, mut gap) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        gap = gap.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    Some(gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENTHS: &[f64] = &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

    fn numbers(v: impl IntoIterator<Item = f64>) -> Sample {
        Sample { numbers: v.into_iter().collect(), categories: Vec::new() }
    }

    fn uniform(n: usize) -> Sample {
        numbers((0..n).map(|i| (i as f64 + 0.5) / n as f64))
    }

    #[test]
    fn the_same_distribution_is_stable_and_a_moved_one_is_not() {
        let binning = Binning::Numeric { edges: TENTHS, unit: "" };
        let same = bins(&binning, &uniform(1000), &uniform(300));
        assert!(psi(&same).expect("both sides have values") < 0.01);
        // Every live value in the top fifth: a major shift.
        let high = numbers((0..300).map(|i| 0.8 + 0.2 * (i as f64 + 0.5) / 300.0));
        let moved = bins(&binning, &uniform(1000), &high);
        assert!(psi(&moved).expect("both sides have values") > 0.25, "{moved:?}");
        assert_eq!(moved.iter().map(|b| b.live).sum::<u64>(), 300);
        assert_eq!(moved[8].live + moved[9].live, 300);
    }

    #[test]
    fn psi_matches_a_worked_example() {
        // Two bins, 50/50 against 80/20: 0.3·ln(1.6) + (−0.3)·ln(0.4) = 0.4159.
        let b = |reference, live, rs, ls| Bin { label: String::new(), reference, live, reference_share: rs, live_share: ls };
        let value = psi(&[b(50, 80, 0.5, 0.8), b(50, 20, 0.5, 0.2)]).expect("a value");
        assert!((value - 0.4159).abs() < 1e-3, "{value}");
    }

    #[test]
    fn an_empty_side_has_no_index() {
        let binning = Binning::Numeric { edges: TENTHS, unit: "" };
        assert_eq!(psi(&bins(&binning, &uniform(10), &Sample::default())), None);
        assert_eq!(ks(&[], &[0.5]), None);
    }

    #[test]
    fn values_outside_the_edges_fall_into_the_end_bins_and_labels_say_so() {
        let binning = Binning::Numeric { edges: &[f64::NEG_INFINITY, 1.0, 10.0, f64::INFINITY], unit: " mL" };
        let b = bins(&binning, &numbers([0.5, 5.0, 50.0]), &numbers([-3.0, 1.0, 1e9]));
        assert_eq!(b.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(), ["< 1 mL", "1–10 mL", "≥ 10 mL"]);
        assert_eq!(b.iter().map(|b| (b.reference, b.live)).collect::<Vec<_>>(), [(1, 1), (1, 1), (1, 1)]);
    }

    #[test]
    fn categories_keep_the_given_order_then_the_rest_sorted_and_unseen_ones_drop() {
        let binning = Binning::Categorical { order: &["siemens", "ge", "philips"] };
        let cats = |v: &[&str]| Sample { numbers: Vec::new(), categories: v.iter().map(|s| s.to_string()).collect() };
        let b = bins(&binning, &cats(&["siemens", "siemens", "zeta"]), &cats(&["philips", "alpha"]));
        assert_eq!(b.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(), ["siemens", "philips", "alpha", "zeta"]);
        assert_eq!(b[0].reference_share, 2.0 / 3.0);
        assert_eq!(b[1].live_share, 0.5);
    }

    #[test]
    fn ks_is_the_largest_gap_between_the_cumulative_distributions() {
        assert_eq!(ks(&[0.1, 0.2, 0.3], &[0.1, 0.2, 0.3]), Some(0.0));
        assert_eq!(ks(&[0.1, 0.2], &[0.8, 0.9]), Some(1.0));
        let d = ks(&[0.1, 0.2, 0.3, 0.4], &[0.3, 0.4]).expect("a value");
        assert!((d - 0.5).abs() < 1e-12, "{d}");
    }
}
