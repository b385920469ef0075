"""neurocds against the Python reference pipeline, side by side in one run (issue 18).

Each round takes a study neither has seen (a fresh synthetic patient, loaded into Orthanc and
the FHIR server by bench/side_by_side.sh) and analyses it twice, once with each:

  neurocds   order-select sent → order-sign answered with the decision (the service finds the
             ImagingStudy on the FHIR server, queues the analysis, a worker runs it); the stage
             timings are the ones the audit trail recorded for that decision;
  reference  bench/reference_pipeline.py in this (warm) process: QIDO-RS → decision.

Who goes first alternates, so that each pays for Orthanc's cold cache in half the rounds; the
table shows medians and ranges over all rounds, the ratio reference / neurocds per stage and end
to end, and the end-to-end ratio for the rounds where each went first ("cold PACS") and
second ("warm PACS").

  python bench/side_by_side.py LOADED_JSONL SERVICE_BASE KEYS_DIR ISS FHIR_BASE DATABASE_URL DICOMWEB_BASE [RESULTS_JSON]

RESULTS_JSON, when given, receives the medians and the ratio for bench/compare.py.
"""
import json, statistics, subprocess, sys, time, uuid
from pathlib import Path

import jwt, requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_pipeline import Reference  # noqa: E402

loaded, base, keys, iss, fhir, database_url, dicomweb = sys.argv[1:8]
results_json = sys.argv[8] if len(sys.argv) > 8 else None
keys = Path(keys)
kid = sorted(p.stem for p in (keys / "keys").glob("*.pem"))[0]
pem = (keys / "keys" / f"{kid}.pem").read_bytes()
STAGES = ["series_metadata", "retrieval", "assembly", "preprocessing", "inference"]


def token(aud):
    now = int(time.time())
    return jwt.encode({"iss": iss, "aud": aud, "iat": now, "exp": now + 280, "jti": str(uuid.uuid4())}, pem,
                      algorithm="ES384", headers={"kid": kid, "typ": "JWT"})


def body(hook, patient, instance):
    order = {"resourceType": "ServiceRequest", "id": "mri-order-1", "status": "draft", "intent": "order",
             "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "70553"}]},
             "subject": {"reference": f"Patient/{patient}"}}
    b = {"hook": hook, "hookInstance": instance, "fhirServer": fhir,
         "context": {"userId": "Practitioner/bench", "patientId": patient,
                     "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}}}
    if hook == "order-select":
        b["context"]["selections"] = ["ServiceRequest/mri-order-1"]
    return b


def audited(instance):
    sql = f"SELECT stage_timings_ms::text, outcome, calibrated_probability FROM decisions WHERE hook_instance = '{instance}' ORDER BY seq DESC LIMIT 1"
    out = subprocess.run(["psql", database_url, "-At", "-F", "\t", "-c", sql], capture_output=True, text=True, check=True).stdout.strip("\n")
    if not out:
        return {}, "not audited", None
    stages, outcome, p = out.split("\t")
    return json.loads(stages), outcome, (float(p) if p else None)


session = requests.Session()


def neurocds(patient):
    urls = {h: f"{base}/cds-services/neurocds-brain-mri-{h}" for h in ("order-select", "order-sign")}
    toks = {h: token(u) for h, u in urls.items()}
    sign = str(uuid.uuid4())
    t0 = time.perf_counter()
    session.post(urls["order-select"], json=body("order-select", patient, str(uuid.uuid4())), headers={"Authorization": f"Bearer {toks['order-select']}"}, timeout=60)
    r = session.post(urls["order-sign"], json=body("order-sign", patient, sign), headers={"Authorization": f"Bearer {toks['order-sign']}"}, timeout=60)
    wall = (time.perf_counter() - t0) * 1000.0
    stages, outcome, p = audited(sign)
    if r.status_code != 200 or "inference" not in stages:
        raise Skipped(f"neurocds answered HTTP {r.status_code}, {outcome}, without running the ensemble")
    return wall, {k: float(v) for k, v in stages.items()}, p


class Skipped(Exception):
    """A round that cannot be compared: one side did not reach the ensemble."""


def study_of(patient):
    bundle = session.get(f"{fhir}/ImagingStudy", params={"patient": patient}, timeout=30).json()
    study = bundle["entry"][0]["resource"]
    return next(i["value"] for i in study["identifier"] if i["value"].startswith("urn:oid:")).removeprefix("urn:oid:")


reference = Reference(Path(__file__).resolve().parent.parent / "models" / "ensemble")
patients = [json.loads(line)["patient_id"] for line in Path(loaded).read_text().splitlines()]
rounds = []
for r, patient in enumerate(patients):
    study = study_of(patient)
    order = ["neurocds", "reference"] if r % 2 == 0 else ["reference", "neurocds"]
    row = {"patient": patient, "first": order[0]}
    try:
        for who in order:
            if who == "neurocds":
                row["neurocds_total"], row["neurocds"], row["neurocds_p"] = neurocds(patient)
            else:
                t0 = time.perf_counter()
                try:
                    stages, result = reference.run(dicomweb, study)
                except RuntimeError as e:
                    raise Skipped(f"the reference stopped: {e}")
                row["reference_total"] = (time.perf_counter() - t0) * 1000.0
                row["reference"], row["reference_p"] = stages, result["calibrated_probability"]
    except Skipped as e:
        print(f"round {r + 1}: {patient} skipped: {e}", file=sys.stderr)
        continue
    rounds.append(row)
    print(f"round {r + 1}: {patient} ({order[0]} first): neurocds {row['neurocds_total']:.0f} ms, reference {row['reference_total']:.0f} ms; "
          f"P(lymphoma) {row['neurocds_p']:.3f} / {row['reference_p']:.3f}", file=sys.stderr)


def summary(values):
    return f"{statistics.median(values):.0f} ms ({min(values):.0f}–{max(values):.0f})"


if len(rounds) < 7:
    raise SystemExit(f"only {len(rounds)} comparable rounds; at least 7 are needed")
print(f"\n{len(rounds)} rounds, one unseen study each (two series from the loopback Orthanc); who went first alternated.\n")
print("| stage | neurocds, median (range) | Python reference, median (range) | reference / neurocds (medians) |")
print("|---|---|---|---|")
for name in STAGES + ["end to end"]:
    if name == "end to end":
        ours, theirs = [r["neurocds_total"] for r in rounds], [r["reference_total"] for r in rounds]
        label = "**end to end** (neurocds: order-select sent → order-sign answered; reference: QIDO-RS → result)"
    else:
        ours, theirs = [r["neurocds"].get(name, 0.0) for r in rounds], [r["reference"][name] for r in rounds]
        label = name
    ratio = statistics.median(theirs) / max(statistics.median(ours), 0.5)
    print(f"| {label} | {summary(ours)} | {summary(theirs)} | {ratio:.2f}× |")
for first in ("neurocds", "reference"):
    picked = [r for r in rounds if r["first"] == first]
    if picked:
        ratios = [r["reference_total"] / r["neurocds_total"] for r in picked]
        print(f"\n{first} first ({len(picked)} rounds): end-to-end ratio reference / neurocds, median {statistics.median(ratios):.2f}× (min {min(ratios):.2f}, max {max(ratios):.2f})")
print("\nneurocds also records series_selection (in series_metadata above for the reference) and answers through the hooks (JWT, FHIR look-up, queue, audit row); "
      "the reference does none of that.")
if results_json:
    e2e = [r["neurocds_total"] for r in rounds]
    metrics = {
        "side_by_side_e2e_ratio": {"value": statistics.median([r["reference_total"] for r in rounds]) / statistics.median(e2e), "better": "higher", "unit": "x"},
        "side_by_side_neurocds_e2e_median_ms": {"value": statistics.median(e2e), "better": "lower", "unit": "ms"},
    }
    for name in STAGES:
        metrics[f"side_by_side_neurocds_{name}_ms"] = {"value": statistics.median([r["neurocds"].get(name, 0.0) for r in rounds]), "better": "lower", "unit": "ms"}
    Path(results_json).write_text(json.dumps({"metrics": metrics}, indent=1))
