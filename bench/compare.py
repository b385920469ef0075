"""Compare benchmark results with the committed baseline (issue 18): a report, never a test.

  python bench/compare.py RESULTS_JSON [BASELINE_JSON]      (default bench/baseline.json)

Both files hold {"metrics": {name: {"value": number, "better": "higher" | "lower", "unit": text}}}
(the baseline also says which machine and commit it came from). Every metric present in both is
printed with its change; one that got worse by more than 20 % is flagged REGRESSION. Absolute
figures only compare on the baseline's machine; the ratios measured side by side in one run
(`…_ratio`) hold across machines. Exit status 0 whatever the figures: `make bench` reports,
it does not gate.
"""
import json, sys
from pathlib import Path

THRESHOLD = 0.20

results = json.loads(Path(sys.argv[1]).read_text())
baseline = json.loads(Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).with_name("baseline.json")).read_text())
print(f"\n== against the baseline ({baseline.get('machine', 'machine unknown')}, commit {baseline.get('commit', '?')}, {baseline.get('date', '?')})")
print("| metric | baseline | now | change | |")
print("|---|---|---|---|---|")
flagged = 0
for name, now in results["metrics"].items():
    base = baseline["metrics"].get(name)
    if base is None:
        print(f"| {name} | — | {now['value']:.4g} {now.get('unit', '')} | new | |")
        continue
    b, n = float(base["value"]), float(now["value"])
    change = (n - b) / b if b else 0.0
    worse = -change if now.get("better", base.get("better")) == "higher" else change
    flag = "**REGRESSION**" if worse > THRESHOLD else ("better" if worse < -THRESHOLD else "")
    flagged += worse > THRESHOLD
    print(f"| {name} | {b:.4g} {base.get('unit', '')} | {n:.4g} {now.get('unit', '')} | {change:+.0%} | {flag} |")
print(f"\n{flagged} regression(s) over {THRESHOLD:.0%}" + (" — compare only on the baseline's machine for absolute figures" if flagged else ""))
