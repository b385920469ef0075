//! The reporting statistics agree with scikit-learn, SciPy and a direct O(m·n) DeLong
//! (`scripts/check_metrics.py`) on the same predictions, to 1e-6 (1e-4 for iterative fits).
//!
//! Needs the tools venv (`~/.cache/neurocds/tools-venv`, or `NEUROCDS_TOOLS_PYTHON`); without it
//! the test fails and says so, rather than passing untested.

use std::{path::PathBuf, process::Command};

use neurocds_lab::metrics;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn tools_python() -> PathBuf {
    std::env::var_os("NEUROCDS_TOOLS_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/neurocds/tools-venv/bin/python")
    })
}

/// Two correlated scorers on 400 patients, rounded to two decimals so that ties occur.
fn predictions() -> (Vec<bool>, Vec<f64>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(11);
    let mut labels = Vec::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let y = i % 3 == 0;
        let shared: f64 = rng.random_range(-1.0..1.0);
        let za = if y { 0.9 } else { -0.9 } + shared + rng.random_range(-1.2..1.2);
        let zb = if y { 0.6 } else { -0.6 } + shared + rng.random_range(-1.5..1.5);
        labels.push(y);
        a.push((metrics::sigmoid(za) * 100.0).round() / 100.0);
        b.push((metrics::sigmoid(zb) * 100.0).round() / 100.0);
    }
    (labels, a, b)
}

#[test]
fn auc_delong_brier_and_calibration_agree_with_sklearn_and_a_direct_delong() {
    let (labels, a, b) = predictions();
    let d = metrics::delong(&[&a, &b], &labels);
    let paired = metrics::delong_paired(&a, &b, &labels);
    let cal = metrics::calibration(&a, &labels, 10);
    assert!((metrics::auc(&a, &labels) - d.aucs[0]).abs() < 1e-12);
    let json = serde_json::json!({
        "labels": labels.iter().map(|&l| u8::from(l)).collect::<Vec<_>>(),
        "a": a, "b": b,
        "rust": {
            "auc_a": d.aucs[0], "auc_b": d.aucs[1],
            "var_a": d.covariance[0][0], "var_b": d.covariance[1][1], "cov_ab": d.covariance[0][1],
            "z": paired.z, "p_value": paired.p_value,
            "brier_a": cal.brier, "slope_a": cal.slope, "intercept_a": cal.intercept,
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.json");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let python = tools_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_metrics.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (set NEUROCDS_TOOLS_PYTHON to a Python with scikit-learn): {e}", python.display()));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "oracle disagrees:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bootstrap_interval_brackets_the_estimate_and_narrows_with_more_patients() {
    let (labels, a, _) = predictions();
    let full = metrics::bootstrap_auc(&a, &labels, 1000, 3);
    assert!(full.lower < full.estimate && full.estimate < full.upper, "{full:?}");
    let half = metrics::bootstrap_auc(&a[..200], &labels[..200], 1000, 3);
    assert!(full.upper - full.lower < half.upper - half.lower, "full {full:?} half {half:?}");
}
