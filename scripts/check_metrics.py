#!/usr/bin/env python3
"""Independent oracle for neurocds' reporting statistics (crates/lab/src/metrics.rs).

Reads a JSON file written by `tests/evaluate_metrics_match_sklearn.rs`:
    {"labels": [0|1, ...], "a": [p, ...], "b": [p, ...],
     "rust": {"auc_a", "auc_b", "var_a", "var_b", "cov_ab", "z", "p_value",
              "brier_a", "slope_a", "intercept_a"}}
and recomputes every number with scikit-learn / SciPy and a direct O(m*n) DeLong (DeLong,
DeLong & Clarke-Pearson 1988: the placement-value form, not the mid-rank shortcut the Rust code
uses). Exits 1 and says which number disagrees if any differs by more than its tolerance.

Usage: check_metrics.py PREDICTIONS.json
"""
import json
import sys

import numpy as np
from scipy import optimize, stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

TOL = 1e-6          # AUC, DeLong variances, z, p
TOL_FIT = 1e-4      # iterative logistic fits (optimiser tolerance, not arithmetic)


def delong_direct(labels, *scorers):
    """AUCs and their covariance from placement values, O(m*n) per scorer."""
    pos = labels == 1
    m, n = pos.sum(), (~pos).sum()
    v10, v01, aucs = [], [], []
    for s in scorers:
        x, y = s[pos], s[~pos]
        psi = (x[:, None] > y[None, :]).astype(float) + 0.5 * (x[:, None] == y[None, :])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))  # one per positive
        v01.append(psi.mean(axis=0))  # one per negative
    s10 = np.cov(np.array(v10))
    s01 = np.cov(np.array(v01))
    return np.array(aucs), np.atleast_2d(s10) / m + np.atleast_2d(s01) / n


def main(path):
    data = json.load(open(path))
    y = np.array(data["labels"], dtype=int)
    a = np.array(data["a"], dtype=float)
    b = np.array(data["b"], dtype=float)
    r = data["rust"]
    aucs, cov = delong_direct(y, a, b)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (aucs[0] - aucs[1]) / np.sqrt(var)
    p = 2 * stats.norm.sf(abs(z))

    logit = np.log(np.clip(a, 1e-6, 1 - 1e-6) / (1 - np.clip(a, 1e-6, 1 - 1e-6)))
    slope = LogisticRegression(penalty=None, tol=1e-12, max_iter=10000).fit(logit[:, None], y).coef_[0][0]

    def nll(alpha):
        zz = logit + alpha
        return np.sum(np.logaddexp(0, zz) - y * zz)

    intercept = optimize.minimize_scalar(nll, bracket=(-1, 1), tol=1e-12).x

    checks = [
        ("auc_a (sklearn)", r["auc_a"], roc_auc_score(y, a), TOL),
        ("auc_b (sklearn)", r["auc_b"], roc_auc_score(y, b), TOL),
        ("auc_a (direct DeLong)", r["auc_a"], aucs[0], TOL),
        ("var_a", r["var_a"], cov[0, 0], TOL),
        ("var_b", r["var_b"], cov[1, 1], TOL),
        ("cov_ab", r["cov_ab"], cov[0, 1], TOL),
        ("z", r["z"], z, TOL),
        ("p_value", r["p_value"], p, TOL),
        ("brier_a", r["brier_a"], brier_score_loss(y, a), TOL),
        ("slope_a", r["slope_a"], slope, TOL_FIT),
        ("intercept_a", r["intercept_a"], intercept, TOL_FIT),
    ]
    failed = False
    for name, got, want, tol in checks:
        ok = abs(got - want) <= tol
        failed |= not ok
        print(f"{'ok ' if ok else 'BAD'} {name}: rust {got:.10f} oracle {want:.10f} (tol {tol:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
